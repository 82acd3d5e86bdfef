//! Request extractors shared by the routes.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::{ApiError, ErrorCode};

/// A JSON request body whose errors answer in the API's error shape, naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

/// The ids a route's path names (`/webhooks/{id}`), parsed. A segment that cannot be such an id
/// names nothing, so it answers 404, as an id that names nothing does, and no store is asked.
pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(ids)) => Ok(Ids(ids)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::new(ErrorCode::NotFound, "nothing has this id"))
            }
            Err(other) => {
                tracing::error!(error = %other.body_text(), "a route's path does not fit its handler");
                Err(ApiError::new(ErrorCode::Internal, "the route cannot read its path"))
            }
        }
    }
}

/// Tells an absent key (`None`) from an explicit `null` (`Some(None)`), for PATCH bodies.
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
