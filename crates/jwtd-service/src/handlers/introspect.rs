//! `POST /introspect`: RFC 7662 token introspection for an authenticated client.

use super::error::{ApiError, JSON};
use super::extract::{IntrospectionClient, RequestId};
use super::observe::By;
use super::verify::check;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// The form's `token`: 200 with its claims and `"active": true`, or `{"active":false}` for
/// any token jwtd does not accept; 400 `invalid_request` without a `token`.
pub(super) async fn introspect(
    State(state): State<Arc<AppState>>,
    _client: IntrospectionClient,
    rid: RequestId,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let token = std::str::from_utf8(&body).ok().and_then(|form| {
        form.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| *k == "token")
                .map(|(_, v)| v.to_owned())
        })
    });
    let token = token.ok_or(ApiError::InvalidRequest(None))?;
    let body = match check(&state, &token).await {
        Ok((issuer, v)) => {
            state.series.observe(
                "introspect",
                started,
                By::Issuer(&issuer),
                Ok(()),
                &rid,
                Some(&token),
            );
            // `active` last: a token's own "active" claim never decides it.
            let mut m = v.claims();
            m.insert("active".into(), Value::Bool(true));
            Value::Object(m).to_string()
        }
        Err((issuer, e)) => {
            state.series.observe(
                "introspect",
                started,
                By::Named(issuer.as_deref()),
                Err(&e),
                &rid,
                Some(&token),
            );
            "{\"active\":false}".to_owned()
        }
    };
    let headers = [
        (header::CONTENT_TYPE, JSON),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((StatusCode::OK, headers, body).into_response())
}
