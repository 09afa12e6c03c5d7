//! `GET|POST /v1/verify` and `GET /v1/tokens/{token}`: a token verified by the issuer its `iss`
//! selects; every answer carries the request id.

use super::error::{ApiError, JSON};
use super::extract::RequestId;
use super::observe::By;
use crate::issuers::Issuer;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jwtd_core::{Error, Reason, Verified};
use jwtd_gate::extract::extract;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Verifies with the issuer the token's `iss` selects.
pub(super) async fn check(
    state: &AppState,
    token: &str,
) -> Result<(Arc<Issuer>, Arc<Verified>), (Option<String>, Error)> {
    state
        .runtime()
        .engine
        .issuers
        .verify(token, jwtd_core::unix_now())
        .await
}

fn missing() -> Error {
    Error::new(Reason::MissingToken, "no token in the request (Authorization: Bearer, or the configured cookie or query parameter)")
}

/// Shared body of `/v1/verify` (`with_header`: 200 `{"issuer", "iss", "header", "claims"}`)
/// and `/v1/tokens/{token}` (200 with the claims alone).
async fn verify_token(
    state: &AppState,
    endpoint: &'static str,
    token: Option<String>,
    rid: &RequestId,
    with_header: bool,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some(token) = token else {
        let e = missing();
        state
            .series
            .observe(endpoint, started, By::Nobody, Err(&e), rid, None);
        return Err(e.into());
    };
    match check(state, &token).await {
        Ok((issuer, v)) => {
            state.series.observe(
                endpoint,
                started,
                By::Issuer(&issuer),
                Ok(()),
                rid,
                Some(&token),
            );
            let body = if with_header {
                // `issuer`: the configured issuer's name; `iss`: the token's own `iss` claim
                // (null when the token has none, or one that is not a string).
                format!(
                    "{{\"issuer\":{},\"iss\":{},\"header\":{},\"claims\":{}}}",
                    Value::from(issuer.name.as_str()),
                    Value::from(v.iss()),
                    v.header.json(),
                    v.claims_json()
                )
            } else {
                v.claims_json().to_owned()
            };
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, JSON)], body).into_response())
        }
        Err((issuer, e)) => {
            state.series.observe(
                endpoint,
                started,
                By::Named(issuer.as_deref()),
                Err(&e),
                rid,
                Some(&token),
            );
            Err(e.into())
        }
    }
}

/// A request refused before any token was verified (several tokens).
fn refuse_request(state: &AppState, e: Error, rid: &RequestId) -> ApiError {
    state
        .series
        .observe("verify", Instant::now(), By::Nobody, Err(&e), rid, None);
    e.into()
}

/// `GET /v1/verify`: the token from the request (header, cookie or query parameter, as
/// configured).
pub(super) async fn verify(
    State(state): State<Arc<AppState>>,
    rid: RequestId,
    req: Request,
) -> impl IntoResponse {
    let found = extract(
        req.headers(),
        req.uri().query(),
        &state.runtime().config.tokens,
    );
    let answer = match found {
        Ok(token) => verify_token(&state, "verify", token, &rid, true).await,
        Err(e) => Err(refuse_request(&state, e, &rid)),
    };
    (rid, answer)
}

/// `POST /v1/verify`: the token from the request, or from a JSON body `{"token": "..."}`; not
/// both.
pub(super) async fn verify_post(
    State(state): State<Arc<AppState>>,
    rid: RequestId,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> impl IntoResponse {
    let answer = match extract(&headers, uri.query(), &state.runtime().config.tokens) {
        Err(e) => Err(refuse_request(&state, e, &rid)),
        Ok(token) => {
            let in_body = serde_json::from_slice::<Map<String, Value>>(&body)
                .ok()
                .and_then(|m| m.get("token").and_then(Value::as_str).map(str::to_owned));
            match (token, in_body) {
                (Some(_), Some(_)) => Err(refuse_request(
                    &state,
                    Error::new(
                        Reason::MultipleTokens,
                        "the request carries more than one token: send exactly one token, one way",
                    ),
                    &rid,
                )),
                (t, b) => verify_token(&state, "verify", t.or(b), &rid, true).await,
            }
        }
    };
    (rid, answer)
}

/// `GET /v1/tokens/{token}`: the token in the path; 200 with its claims.
pub(super) async fn token_path(
    State(state): State<Arc<AppState>>,
    rid: RequestId,
    Path(token): Path<String>,
) -> impl IntoResponse {
    let answer = verify_token(&state, "tokens", Some(token), &rid, false).await;
    (rid, answer)
}
