//! What the endpoints take from a request besides its body: the request id, the admin key
//! ([`AdminAuth`] and the `[admin] protect_status` variants) and the introspection client.
//!
//! Secrets are compared in constant time; a failed authentication is counted
//! (`jwtd_auth_failures_total{endpoint}`), logged at most once per 10 s per endpoint, and
//! answered only after [`AUTH_FAILURE_DELAY`].

use super::error::ApiError;
use super::observe::LogGate;
use crate::{AppState, Runtime};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponseParts, ResponseParts};
use std::convert::Infallible;
use std::sync::Arc;

/// A request id (from [`jwtd_gate::RequestId`], the generator the proxy shares): the
/// client's `X-Request-Id` when the configuration trusts it (`trust_request_id`) and it is
/// 1-64 visible ASCII characters, else `jwtd-<counter in hex>`. As a response part, it sets
/// `X-Request-Id`.
#[derive(Clone, Debug)]
pub(super) struct RequestId(jwtd_gate::RequestId);

impl RequestId {
    /// The id of a request with `headers`.
    pub(super) fn of(headers: &HeaderMap, state: &AppState) -> RequestId {
        RequestId::of_in(headers, &state.runtime_guard())
    }

    /// [`RequestId::of`] under a runtime already loaded (one atomic load fewer on `/auth`).
    pub(super) fn of_in(headers: &HeaderMap, rt: &Runtime) -> RequestId {
        RequestId(jwtd_gate::RequestId::of(
            headers,
            rt.config.trust_request_id,
        ))
    }

    /// The id, for logs.
    pub(super) fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromRequestParts<Arc<AppState>> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<RequestId, Infallible> {
        Ok(RequestId::of(&parts.headers, state))
    }
}

impl IntoResponseParts for RequestId {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Infallible> {
        res.headers_mut().insert(
            jwtd_gate::request_id::X_REQUEST_ID,
            self.0.into_header_value(),
        );
        Ok(res)
    }
}

/// The admin: `Authorization: Bearer <[admin] api key>` (exactly one `Authorization` header),
/// compared in constant time. A handler that takes it runs for the admin only; anyone else
/// gets [`ApiError::AdminKeyRequired`] after the failure delay, or [`ApiError::NO_ADMIN`] when
/// the admin API is off.
pub(super) struct AdminAuth;

impl AdminAuth {
    async fn check(rt: &Runtime, parts: &Parts, state: &AppState) -> Result<AdminAuth, ApiError> {
        let Some(key) = &rt.admin_key else {
            return Err(ApiError::NO_ADMIN);
        };
        let given = single_authorization(&parts.headers)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map_or(&[][..], |(_, t)| t.trim().as_bytes());
        if ct_eq(given, key) {
            return Ok(AdminAuth);
        }
        auth_failed(Guarded::Admin, &RequestId::of(&parts.headers, state)).await;
        Err(ApiError::AdminKeyRequired)
    }
}

impl FromRequestParts<Arc<AppState>> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<AdminAuth, ApiError> {
        AdminAuth::check(&state.runtime(), parts, state).await
    }
}

/// True when `[admin] protect_status` is on.
fn status_protected(rt: &Runtime) -> bool {
    rt.config.admin.as_ref().is_some_and(|a| a.protect_status)
}

/// `/metrics`: open, or the admin's only ([`AdminAuth`]) under `[admin] protect_status`.
pub(super) struct StatusAuth;

impl FromRequestParts<Arc<AppState>> for StatusAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<StatusAuth, ApiError> {
        let rt = state.runtime();
        if status_protected(&rt) {
            AdminAuth::check(&rt, parts, state).await?;
        }
        Ok(StatusAuth)
    }
}

/// Whether `/readyz` may say which issuers have no keys: always, unless `[admin]
/// protect_status` is on; then only to the admin. A probe without credentials is not an
/// authentication failure (not counted, not delayed): it just gets no details.
pub(super) struct StatusDetails(pub(super) bool);

impl FromRequestParts<Arc<AppState>> for StatusDetails {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<StatusDetails, Infallible> {
        let rt = state.runtime();
        let shown = !status_protected(&rt)
            || (parts.headers.contains_key(header::AUTHORIZATION)
                && AdminAuth::check(&rt, parts, state).await.is_ok());
        Ok(StatusDetails(shown))
    }
}

/// The introspection client, authenticated with HTTP Basic (`[introspection] client_id` and
/// its secret, both compared in full in constant time; exactly one `Authorization` header).
/// Anyone else gets [`ApiError::InvalidClient`] after the failure delay, or
/// [`ApiError::NO_INTROSPECTION`] when introspection is off.
pub(super) struct IntrospectionClient;

impl FromRequestParts<Arc<AppState>> for IntrospectionClient {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<IntrospectionClient, ApiError> {
        let rt = state.runtime();
        let (Some(cfg), Some(secret)) = (&rt.config.introspection, &rt.introspection_secret) else {
            return Err(ApiError::NO_INTROSPECTION);
        };
        // Exactly one Authorization header: with several, which one a proxy or upstream reads
        // differs (RFC 6750 section 3.1 / RFC 7235).
        let authorized = single_authorization(&parts.headers)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b)| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .is_some_and(|raw| {
                let (id, pw) = match raw.iter().position(|&c| c == b':') {
                    Some(i) => (&raw[..i], &raw[i + 1..]),
                    None => (&raw[..], &[][..]),
                };
                // Both compared in full, in constant time, before deciding.
                let id_ok = ct_eq(id, cfg.client_id.as_bytes());
                let pw_ok = ct_eq(pw, secret);
                id_ok & pw_ok
            });
        if authorized {
            return Ok(IntrospectionClient);
        }
        auth_failed(
            Guarded::Introspection,
            &RequestId::of(&parts.headers, state),
        )
        .await;
        Err(ApiError::InvalidClient)
    }
}

/// The request's `Authorization` header when it has exactly one.
fn single_authorization(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    match (all.next(), all.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Compares a presented credential with the expected secret in constant time. An empty
/// expected value never matches (an empty secret must not mean "no authentication").
///
/// Both sides are first MACed under a key drawn at random once per process, and the
/// fixed-length tags compared: neither the content nor the length of the secret shows in the
/// timing.
fn ct_eq(given: &[u8], expected: &[u8]) -> bool {
    use aws_lc_rs::hmac;
    static KEY: std::sync::OnceLock<hmac::Key> = std::sync::OnceLock::new();
    if expected.is_empty() {
        return false;
    }
    let key = KEY.get_or_init(|| {
        let mut raw = [0u8; 32];
        // Should randomness fail, the key is still independent of every secret and the
        // comparison exact (HMAC-SHA256 collisions aside).
        let _ = jwtd_core::fill_random(&mut raw);
        hmac::Key::new(hmac::HMAC_SHA256, &raw)
    });
    let (a, b) = (hmac::sign(key, given), hmac::sign(key, expected));
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

/// How long a failed admin or introspection authentication waits before it is answered.
const AUTH_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// At most one log line per this many seconds per endpoint for failed authentications (the
/// count of the others is in the next line and in `jwtd_auth_failures_total`).
const AUTH_FAILURE_LOG_EVERY: u64 = 10;

/// What a failed authentication tried to reach.
#[derive(Clone, Copy)]
enum Guarded {
    Admin,
    Introspection,
}

/// Counts (`jwtd_auth_failures_total{endpoint}`), logs (rate-limited) and delays a failed
/// admin or introspection authentication.
async fn auth_failed(guarded: Guarded, rid: &RequestId) {
    static GATES: [LogGate; 2] = [
        LogGate::new(AUTH_FAILURE_LOG_EVERY),
        LogGate::new(AUTH_FAILURE_LOG_EVERY),
    ];
    let (endpoint, gate) = match guarded {
        Guarded::Admin => ("admin", &GATES[0]),
        Guarded::Introspection => ("introspect", &GATES[1]),
    };
    metrics::counter!("jwtd_auth_failures_total", "endpoint" => endpoint).increment(1);
    if let Some(suppressed) = gate.pass() {
        tracing::warn!(
            endpoint,
            request_id = rid.as_str(),
            suppressed,
            "authentication failed (further failures within {AUTH_FAILURE_LOG_EVERY} s are counted, not logged)"
        );
    }
    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
}
