//! OpenTelemetry traces, received by a real OTLP/HTTP receiver started here: a server that takes
//! `POST /v1/traces` as the OpenTelemetry Protocol specifies it for HTTP (a protobuf
//! `ExportTraceServiceRequest` body, `Content-Type: application/x-protobuf`; answered 200 with an
//! `ExportTraceServiceResponse`), decoded with the protocol's published definitions
//! (`opentelemetry-proto`). The daemon is the real binary, configured as an operator would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

use crate::helpers::*;
use crate::process::{ADMIN, admin_call as admin, serve_with};

/// A span as the receiver took it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
    /// The trace ids it links to.
    links: Vec<String>,
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    let value = |kv: &KeyValue| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    };
    attributes.iter().map(|kv| (kv.key.clone(), value(kv))).collect()
}

/// An OTLP/HTTP receiver on loopback: its base address, and the spans it was sent.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    async fn traces(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> impl IntoResponse {
        let request = ExportTraceServiceRequest::decode(body).expect("a protobuf ExportTraceServiceRequest");
        for resource in request.resource_spans {
            let service = text(&resource.resource.map(|r| r.attributes).unwrap_or_default())
                .remove("service.name")
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.lock().unwrap().push(Received {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    attributes: text(&span.attributes),
                    links: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
                });
            }
        }
        let answer = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
        ([(header::CONTENT_TYPE, "application/x-protobuf")], answer)
    }
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(traces)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, spans)
}

/// The real binary exporting to `otlp`, with `more` settings: it, its address and a client.
fn traced_daemon(
    dir: &std::path::Path,
    otlp: &str,
    more: &[(&str, &str)],
) -> (crate::process::Daemon, String, reqwest::Client) {
    let mut env = vec![
        ("CHATBUNDLE_TELEMETRY__OTLP_ENDPOINT", otlp),
        // The SDK's batch delay (OTEL_BSP_SCHEDULE_DELAY, 5 s by default), short for the test.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    env.extend_from_slice(more);
    let (daemon, addr) = serve_with(dir, &env);
    chatbundle::tls::use_ring();
    (daemon, format!("http://{addr}"), reqwest::Client::new())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_and_its_delivery_are_one_trace_which_the_receiver_joins() {
    let (otlp, spans) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, daemon, http) =
        traced_daemon(dir.path(), &otlp, &[("CHATBUNDLE_TELEMETRY__SERVICE_NAME", "chatbundle-test")]);
    let ws = admin(
        &http,
        reqwest::Method::POST,
        format!("{daemon}/api/v1/workspaces"),
        json!({"name": "traced", "owner_email": "owner@example.com", "granularity": "1h"}),
    )
    .await;
    let ws_id = ws["id"].as_str().unwrap().to_string();
    let ingest_key = ws["ingest_key"].as_str().unwrap().to_string();
    let immediate = Receiver::start().await;
    let bundled = Receiver::start().await;
    let hooks = format!("{daemon}/api/v1/workspaces/{ws_id}/webhooks");
    let webhook = admin(
        &http,
        reqwest::Method::POST,
        hooks.clone(),
        json!({"url": immediate.url, "granularity": "none"}),
    )
    .await;
    admin(&http, reqwest::Method::POST, hooks, json!({"url": bundled.url})).await;

    let sent = http
        .post(format!("{daemon}/api/v1/workspaces/{ws_id}/messages"))
        .bearer_auth(&ingest_key)
        .json(&message("m-1", "c-1", "traced hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);

    // The receiver is told the trace it joins: W3C traceparent, version 00, sampled.
    let got = immediate.wait_for(1).await.remove(0);
    let traceparent = got.header("traceparent").to_string();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{traceparent}");
    let (trace_id, attempt_id) = (parts[1].to_string(), parts[2].to_string());

    let named = |name: &str| -> Option<Received> {
        spans.lock().unwrap().iter().find(|s| s.name == name && s.trace_id == trace_id).cloned()
    };
    let (request, commit, attempt) =
        eventually("the request's, its commit's and the attempt's spans", || async {
            Some((
                named("POST /api/v1/workspaces/{id}/messages")?,
                named("ingest commit")?,
                named("delivery attempt")?,
            ))
        })
        .await;
    assert_eq!(request.service, "chatbundle-test");
    assert_eq!(request.attributes["http.route"], "/api/v1/workspaces/{id}/messages");
    assert_eq!(request.attributes["http.response.status_code"], "202");
    assert_eq!(commit.parent_span_id, request.span_id, "the commit within the request");
    assert_eq!(commit.attributes["workspace.id"], ws_id);
    assert_eq!(commit.attributes["accepted"], "1");
    // The delivery, made later by the worker from the stored queue, goes on with the request's trace.
    assert_eq!(attempt.span_id, attempt_id, "the header names the attempt's own span");
    assert_eq!(attempt.parent_span_id, request.span_id);
    assert_eq!(attempt.attributes["webhook.id"], webhook["id"].as_str().unwrap());
    assert_eq!(attempt.attributes["workspace.id"], ws_id);
    assert_eq!(attempt.attributes["attempt"], "1");
    assert_eq!(attempt.attributes["http.response.status_code"], "200");
    assert!(attempt.attributes.contains_key("chat.id"));

    // A window's close is a trace of its own, and so is the delivery of the bundle it made, linked
    // to the trace its message came in.
    admin(&http, reqwest::Method::POST, format!("{daemon}/api/v1/workspaces/{ws_id}/flush"), json!({})).await;
    let bundle = bundled.wait_for(1).await.remove(0);
    let bundle_trace = bundle.header("traceparent").split('-').nth(1).unwrap().to_string();
    assert_ne!(bundle_trace, trace_id);
    let bundle_attempt = eventually("the bundle's attempt", || async {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "delivery attempt" && s.trace_id == bundle_trace)
            .cloned()
    })
    .await;
    assert_eq!(bundle_attempt.parent_span_id, "", "the root of its trace");
    assert_eq!(bundle_attempt.links, vec![trace_id.clone()], "linked to its message's trace");
    let close = eventually("the close's span", || async {
        spans.lock().unwrap().iter().find(|s| s.name == "window close").cloned()
    })
    .await;
    assert_eq!(close.attributes["workspace.id"], ws_id);
    assert_eq!(close.attributes["bundles"], "1");

    // Nothing that authenticates is in a span: not the ingest key, the admin token or a secret.
    let everything = format!("{:?}", spans.lock().unwrap());
    for secret in [ingest_key.as_str(), ADMIN] {
        assert!(!everything.contains(secret), "{secret} left the daemon in a span");
    }
}

/// Without `[telemetry] otlp_endpoint` nothing is traced: a delivery carries no `traceparent`.
#[tokio::test]
async fn without_an_endpoint_a_delivery_carries_no_trace() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "none"})).await;
    app.ingest(&ws, &message("m-1", "c-1", "untraced")).await;
    let got = receiver.wait_for(1).await.remove(0);
    assert!(got.headers.get("traceparent").is_none(), "{:?}", got.headers);
}

/// An e-mail (here a member's invitation, through the outbox) is a span of its own, with its
/// attempt and outcome; the recipient's address is not an attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn an_email_is_a_span_of_its_own() {
    let (otlp, spans) = otlp_receiver().await;
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, daemon, http) = traced_daemon(dir.path(), &otlp, &[("CHATBUNDLE_SMTP__URL", &smtp.url())]);
    let ws = admin(
        &http,
        reqwest::Method::POST,
        format!("{daemon}/api/v1/workspaces"),
        json!({"name": "mailed", "owner_email": "owner@example.com"}),
    )
    .await;
    let members = format!("{daemon}/api/v1/workspaces/{}/members", ws["id"].as_str().unwrap());
    admin(&http, reqwest::Method::POST, members, json!({"email": "mia@acme.example", "role": "viewer"}))
        .await;
    smtp.wait_for(1).await;
    let email = eventually("the e-mail's span", || async {
        spans.lock().unwrap().iter().find(|s| s.name == "e-mail").cloned()
    })
    .await;
    assert_eq!(email.attributes["outcome"], "sent");
    assert_eq!(email.attributes["attempt"], "1");
    assert_eq!(email.parent_span_id, "", "a trace of its own");
    assert!(!format!("{:?}", email.attributes).contains("mia@acme.example"));
}
