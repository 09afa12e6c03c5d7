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
use jwtd_gate::dpop::{Presented, ProofTarget};
use jwtd_gate::extract::extract_presented;
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

/// The request's scheme: `https` over jwtd's TLS listener.
fn scheme_of(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

fn missing() -> Error {
    Error::new(Reason::MissingToken, "no token in the request (Authorization: Bearer, or the configured cookie or query parameter)")
}

/// The `/v1/verify` request a DPoP proof is checked against: how the token came, and the
/// request itself (its scheme: `https` over jwtd's TLS listener, else `http`; its `Host`).
struct DpopContext<'a> {
    presented: Presented,
    scheme: &'static str,
    method: &'a str,
    host: &'a str,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
}

/// The DPoP step of `/v1/verify` for a verified token: the issuer's `[issuer.dpop]` mode, the
/// proof (against the `/v1/verify` request) and its binding, the replay cache.
async fn check_dpop(
    state: &AppState,
    issuer: &Issuer,
    token: &str,
    v: &Verified,
    cx: &DpopContext<'_>,
) -> Result<(), ApiError> {
    let rt = state.runtime();
    let d = rt.engine.dpop.of_or_default(&issuer.name);
    let target = ProofTarget {
        method: cx.method,
        scheme: cx.scheme,
        host: cx.host,
        path_and_query: cx.path_and_query,
        headers: cx.headers,
    };
    let now = jwtd_core::unix_now();
    let denied = |(error, c): (Error, jwtd_gate::dpop::DpopChallenge)| {
        ApiError::Denied(jwtd_gate::Denial {
            error,
            issuer: Some(issuer.name.clone()),
            scope: None,
            resource_metadata: None,
            dpop: Some(Box::new(c)),
        })
    };
    match jwtd_gate::dpop::check(d, None, &target, cx.presented, token, v, now) {
        Ok(Some(p)) => p.consume(now).await.map_err(denied),
        Ok(None) => Ok(()),
        Err(e) => Err(denied(e)),
    }
}

/// Shared body of `/v1/verify` (`with_header`: 200 `{"issuer", "iss", "header", "claims"}`)
/// and `/v1/tokens/{token}` (200 with the claims alone). With `dpop` (`/v1/verify`), the
/// issuer's DPoP settings apply to the token as it was presented.
async fn verify_token(
    state: &AppState,
    endpoint: &'static str,
    token: Option<String>,
    rid: &RequestId,
    with_header: bool,
    dpop: Option<DpopContext<'_>>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some(token) = token else {
        let e = missing();
        state
            .series
            .observe(endpoint, started, By::Nobody, Err(&e), rid, None);
        return Err(e.into());
    };
    let checked = match check(state, &token).await {
        Ok((issuer, v)) => {
            let dpop = match &dpop {
                Some(cx) => Some(check_dpop(state, &issuer, &token, &v, cx).await),
                None => None,
            };
            match dpop {
                Some(Err(ApiError::Denied(d))) => Err((Some(issuer.name.clone()), d)),
                _ => Ok((issuer, v)),
            }
        }
        Err((issuer, e)) => Err((issuer, jwtd_gate::Denial::new(e))),
    };
    match checked {
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
        Err((issuer, d)) => {
            state.series.observe(
                endpoint,
                started,
                By::Named(issuer.as_deref()),
                Err(&d.error),
                rid,
                Some(&token),
            );
            Err(match d.dpop {
                Some(_) => ApiError::Denied(d),
                None => d.error.into(),
            })
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
    let found = extract_presented(
        req.headers(),
        req.uri().query(),
        &state.runtime().config.tokens,
        true,
    );
    let answer = match found {
        Ok(token) => {
            let cx = DpopContext {
                presented: token.map_or(Presented::Bearer, |(_, p)| p),
                scheme: scheme_of(req.extensions().get::<crate::server::OverTls>().is_some()),
                method: req.method().as_str(),
                host: req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or(""),
                path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                headers: req.headers(),
            };
            let token = token.map(|(t, _)| t.to_owned());
            verify_token(&state, "verify", token, &rid, true, Some(cx)).await
        }
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
    tls: Option<axum::Extension<crate::server::OverTls>>,
    body: Bytes,
) -> impl IntoResponse {
    let answer =
        match extract_presented(&headers, uri.query(), &state.runtime().config.tokens, true) {
            Err(e) => Err(refuse_request(&state, e, &rid)),
            Ok(found) => {
                let presented = found.map_or(Presented::Bearer, |(_, p)| p);
                let token = found.map(|(t, _)| t.to_owned());
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
                (t, b) => {
                    let cx = DpopContext {
                        presented,
                        scheme: scheme_of(tls.is_some()),
                        method: "POST",
                        host: headers
                            .get(header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or(""),
                        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
                        headers: &headers,
                    };
                    verify_token(&state, "verify", t.or(b), &rid, true, Some(cx)).await
                }
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
    // A token in the path has no DPoP proof to go with it: no DPoP check.
    let answer = verify_token(&state, "tokens", Some(token), &rid, false, None).await;
    (rid, answer)
}
