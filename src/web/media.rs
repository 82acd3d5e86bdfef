//! `GET /media/{token}`: a message's file, fetched from its channel with its source's credentials
//! at the moment the link is opened and streamed through (never stored). The signed token is the
//! only credential, as a transcript's is: it names a message and one of its attachments, and it
//! expires ([`crate::domain::LinkKey`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use futures::StreamExt;
use tracing::{info, instrument, warn};

use crate::domain::{LinkRefusal, SourceId};
use crate::service::AppState;
use crate::vendors::media::MediaError;

#[instrument(skip_all)]
pub async fn file(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (seq, index) = match state.link_key.check(&token, state.clock.now()) {
        Ok(found) => found,
        Err(LinkRefusal::Expired) => {
            return answer(StatusCode::GONE, "This link has expired", "Open the conversation for a new one.");
        }
        Err(LinkRefusal::Invalid) => return not_found(),
    };
    let found = match state.store.message_at(seq).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "a media link's message could not be read");
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The file cannot be fetched right now.",
            );
            response.headers_mut().insert(RETRY_AFTER, crate::http::error::RETRY_AFTER_SECONDS.into());
            return response;
        }
    };
    let Some((_, chat, message)) = found else { return not_found() };
    let Some(attachment) = message.attachments.get(index) else { return not_found() };
    let source = match state.store.get_source(&SourceId::stored(chat.source_key.as_str())).await {
        Ok(Some(source)) => source,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "a media link's source could not be read");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The file cannot be fetched right now.",
            );
        }
    };
    let fetched = match state.vendors.fetch_media(&source, attachment).await {
        Ok(fetched) => fetched,
        Err(MediaError::Unavailable(why)) => {
            return answer(StatusCode::NOT_FOUND, "This file cannot be fetched", &why);
        }
        Err(MediaError::Vendor(why)) => {
            warn!(source_id = %source.id, reason = %why, "a channel did not give a file");
            return answer(StatusCode::BAD_GATEWAY, "The channel did not give the file", &why);
        }
    };
    let max = state.vendors.max_media_bytes();
    if fetched.content_length().is_some_and(|length| length > max) {
        return answer(
            StatusCode::BAD_GATEWAY,
            "This file is too large",
            "It is larger than this server passes on.",
        );
    }
    let content_type = fetched
        .headers()
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let length = fetched.content_length();
    info!(source_id = %source.id, "a media link was opened");
    // Streamed through as it comes, cut off past the cap when the length was not said up front.
    let mut passed: u64 = 0;
    let stream = fetched.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        passed += chunk.len() as u64;
        if passed > max {
            return Err(std::io::Error::other("the file is larger than media_max_mib"));
        }
        Ok(chunk)
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, length.into());
    }
    // What a vendor serves is shown as a file, never as a page of this site.
    headers.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    response
}

fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, "Not found", "This link does not lead to a file.")
}

/// A small page saying what happened (the link's own reasons hold no secret).
fn answer(status: StatusCode, title: &str, detail: &str) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><h1>{title}</h1><p>{}</p></html>",
        escape(detail),
        title = escape(title)
    );
    (status, Html(page)).into_response()
}
