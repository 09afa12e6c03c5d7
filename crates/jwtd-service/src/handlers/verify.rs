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
use jwtd_gate::ClientCert;
use serde_json::{Map, Value};
use std::net::SocketAddr;
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

/// The request a token's bindings are checked against: how the token came, the request
/// itself (for a DPoP proof: its scheme, `https` over jwtd's TLS listener, else `http`; its
/// `Host`), and its client certificate (RFC 8705), as `/auth` reads it.
struct BindingContext<'a> {
    presented: Presented,
    scheme: &'static str,
    method: &'a str,
    host: &'a str,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
    client_cert: ClientCert<'a>,
}

/// The client certificate of an API request, as `/auth` reads it: from a trusted proxy
/// (`trusted_proxies`), the one it forwards (`[forwarded] client_cert`) or else the TLS
/// peer's; from anyone else, the TLS peer's (when jwtd terminates TLS with client
/// certificates).
fn client_cert_of<'a>(
    state: &AppState,
    peer: Option<SocketAddr>,
    cert: Option<&'a [u8]>,
) -> ClientCert<'a> {
    let trusted = peer.is_some_and(|p| state.runtime().trusted_proxies.contains(p.ip()));
    match (trusted, cert) {
        (true, tls) => ClientCert::Trusted { tls },
        (false, Some(der)) => ClientCert::Der(der),
        (false, None) => ClientCert::None,
    }
}

/// The binding checks of a verified token, as the engine makes them for `/auth` under the
/// issuer's settings: RFC 8705 (`[issuer.mtls] mode`, against the request's client
/// certificate), then DPoP (`[issuer.dpop] mode`, the proof against this request, its
/// binding, the replay cache; the proof's `jti` consumed last).
async fn check_binding(
    state: &AppState,
    issuer: &Issuer,
    token: &str,
    v: &Verified,
    cx: &BindingContext<'_>,
) -> Result<(), jwtd_gate::Denial> {
    let rt = state.runtime();
    let refused = |error: Error| jwtd_gate::Denial {
        error,
        issuer: Some(issuer.name.clone()),
        scope: None,
        resource_metadata: None,
        dpop: None,
    };
    let mode = issuer.config.mtls_mode();
    if mode != jwtd_gate::mtls::Mode::Off {
        let cert = jwtd_gate::mtls::resolve(
            cx.client_cert,
            cx.headers,
            rt.engine.forwarded_cert.as_ref(),
        )
        .map_err(refused)?;
        jwtd_gate::mtls::check(mode, v, cert.as_ref()).map_err(refused)?;
    }
    let d = rt.engine.dpop.of_or_default(&issuer.name);
    let target = ProofTarget {
        method: cx.method,
        scheme: cx.scheme,
        host: cx.host,
        path_and_query: cx.path_and_query,
        headers: cx.headers,
    };
    let now = jwtd_core::unix_now();
    let denied = |(error, c): (Error, jwtd_gate::dpop::DpopChallenge)| jwtd_gate::Denial {
        dpop: Some(Box::new(c)),
        ..refused(error)
    };
    match jwtd_gate::dpop::check(d, None, &target, cx.presented, token, v, now) {
        Ok(Some(p)) => p.consume(now).await.map_err(denied),
        Ok(None) => Ok(()),
        Err(e) => Err(denied(e)),
    }
}

/// Shared body of `/v1/verify` (`with_header`: 200 `{"issuer", "iss", "header", "claims"}`)
/// and `/v1/tokens/{token}` (200 with the claims alone). The issuer's binding checks
/// ([`check_binding`]: mTLS, DPoP) apply to the token as `cx` says it was presented.
async fn verify_token(
    state: &AppState,
    endpoint: &'static str,
    token: Option<String>,
    rid: &RequestId,
    with_header: bool,
    cx: BindingContext<'_>,
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
        Ok((issuer, v)) => match check_binding(state, &issuer, &token, &v, &cx).await {
            Err(d) => Err((Some(issuer.name.clone()), d)),
            Ok(()) => Ok((issuer, v)),
        },
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
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let cert = req
        .extensions()
        .get::<jwtd_gate::mtls::PeerCertificate>()
        .map(|c| &*c.0);
    let answer = match found {
        Ok(token) => {
            let cx = BindingContext {
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
                client_cert: client_cert_of(&state, peer, cert),
            };
            let token = token.map(|(t, _)| t.to_owned());
            verify_token(&state, "verify", token, &rid, true, cx).await
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
    ext: axum::http::Extensions,
    body: Bytes,
) -> impl IntoResponse {
    // The connection's facts the server put there: TLS, the peer, its certificate.
    let tls = ext.get::<crate::server::OverTls>().is_some();
    let peer = ext
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let cert = ext.get::<jwtd_gate::mtls::PeerCertificate>().map(|c| &*c.0);
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
                    let cx = BindingContext {
                        presented,
                        scheme: scheme_of(tls),
                        method: "POST",
                        host: headers
                            .get(header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or(""),
                        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
                        headers: &headers,
                        client_cert: client_cert_of(&state, peer, cert),
                    };
                    verify_token(&state, "verify", t.or(b), &rid, true, cx).await
                }
            }
            }
        };
    (rid, answer)
}

/// `GET /v1/tokens/{token}`: the token in the path; 200 with its claims. A token in the path
/// is a bearer use with no proof of possession: the issuer's binding checks run with no DPoP
/// proof and no client certificate, so a sender-bound token (`cnf.jkt`, `cnf["x5t#S256"]`)
/// is refused (`dpop_token_bound_as_bearer`, `mtls_certificate_missing`), never vouched for
/// without its proof (docs/security.md, "Sender-bound tokens at the API").
pub(super) async fn token_path(
    State(state): State<Arc<AppState>>,
    rid: RequestId,
    Path(token): Path<String>,
) -> impl IntoResponse {
    let headers = HeaderMap::new();
    let cx = BindingContext {
        presented: Presented::Bearer,
        scheme: "https",
        method: "GET",
        host: "",
        path_and_query: "/",
        headers: &headers,
        client_cert: ClientCert::None,
    };
    let answer = verify_token(&state, "tokens", Some(token), &rid, false, cx).await;
    (rid, answer)
}
