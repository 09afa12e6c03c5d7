//! [`ApiError`]: every refusal the service answers, each with its status, body and headers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jwtd_core::Error;
use serde_json::Value;

/// `Content-Type` of the JSON answers.
pub(super) const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Why a request is refused, and how the refusal reads on the wire. Token refusals take their
/// status, body and challenge from the one table in `jwtd_gate::refusal`; the others are the
/// service's own (admin and introspection authentication, features not configured, bad
/// request bodies, the signing key ring).
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A token refused (missing, invalid, revoked, several tokens, keys or revocation list
    /// unavailable): [`bearer_error`].
    Token(Error),
    /// A request the decision engine refused (`/auth`): the same table, with the RFC 6750
    /// `scope` challenge parameter when the rule needs scopes the token lacks.
    Denied(jwtd_gate::Denial),
    /// 404 with a line of text: what the endpoint serves is not configured in this process.
    NotFound(&'static str),
    /// 401 `{"error":"invalid_token","message":"an admin API key is required"}` with
    /// `WWW-Authenticate: Bearer realm="jwtd-admin"`.
    AdminKeyRequired,
    /// 401 `{"error":"invalid_client"}` with `WWW-Authenticate: Basic realm="jwtd"`: the
    /// introspection client did not authenticate (RFC 7662 section 2.1).
    InvalidClient,
    /// 400 `{"error":"invalid_request"}`, with a `"message"` saying what is wrong when known.
    InvalidRequest(Option<String>),
    /// 503 `{"error":"no_signing_key"}`: no key of the ring signs now.
    NoSigningKey,
    /// 500 `{"error": <message>}`.
    Internal(String),
    /// 500 in text: the system random source failed.
    RandomSource,
}

impl ApiError {
    /// 404: no `[admin]` API key.
    pub(super) const NO_ADMIN: ApiError = ApiError::NotFound("the admin API is not configured\n");
    /// 404: no `[introspection]`.
    pub(super) const NO_INTROSPECTION: ApiError =
        ApiError::NotFound("introspection is not configured\n");
    /// 404: no `[signing]`.
    pub(super) const NO_SIGNING: ApiError = ApiError::NotFound("signing is not configured\n");
    /// 404: no `[revocation]`.
    pub(super) const NO_REVOCATION: ApiError = ApiError::NotFound("revocation is not configured\n");
    /// 404: the process exports no Prometheus metrics (the state was built without a handle,
    /// see `AppState::with_metrics`).
    pub(super) const NO_METRICS: ApiError =
        ApiError::NotFound("metrics are not exported by this process\n");

    /// 400 with `message`.
    pub(super) fn invalid(message: String) -> ApiError {
        ApiError::InvalidRequest(Some(message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Token(e) => bearer_error(&e),
            ApiError::Denied(d) => refusal(jwtd_gate::refusal::http_denial(&d)),
            ApiError::NotFound(text) => (StatusCode::NOT_FOUND, text).into_response(),
            ApiError::AdminKeyRequired => challenge(
                json_response(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": "invalid_token", "message": "an admin API key is required"}),
                ),
                "Bearer realm=\"jwtd-admin\"",
            ),
            ApiError::InvalidClient => challenge(
                json_response(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": "invalid_client"}),
                ),
                "Basic realm=\"jwtd\"",
            ),
            ApiError::InvalidRequest(message) => {
                let mut body = serde_json::json!({"error": "invalid_request"});
                if let Some(m) = message {
                    body["message"] = Value::from(m);
                }
                json_response(StatusCode::BAD_REQUEST, body)
            }
            ApiError::NoSigningKey => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "no_signing_key"}),
            ),
            ApiError::Internal(m) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": m }),
            ),
            ApiError::RandomSource => {
                (StatusCode::INTERNAL_SERVER_ERROR, "random source failed\n").into_response()
            }
        }
    }
}

impl From<crate::mint::MintError> for ApiError {
    fn from(e: crate::mint::MintError) -> ApiError {
        use crate::mint::MintError;
        match e {
            MintError::RandomSource => ApiError::RandomSource,
            MintError::NoSigningKey => ApiError::NoSigningKey,
            MintError::Sign(m) => ApiError::Internal(m),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::Token(e)
    }
}

/// The answer to a rejection, from the one mapping in `jwtd_gate::refusal` (over
/// `jwtd_core::Reason`'s status, RFC 6750 error, challenge error and retry delay): 401
/// `invalid_token`, 403 `insufficient_scope`, 400 `invalid_request` (several tokens) or 503
/// `temporarily_unavailable` (keys or revocation list unavailable, with `Retry-After`); a JSON
/// body `{"error", "reason", "message"}` and `WWW-Authenticate`, which names the error for the
/// three RFC 6750 codes and is a bare `Bearer realm="jwtd"` for a missing token and a 503.
pub fn bearer_error(e: &Error) -> Response {
    refusal(jwtd_gate::refusal::http(e))
}

/// A refusal from the gate's table as an HTTP answer.
fn refusal(answer: jwtd_gate::refusal::HttpRefusal) -> Response {
    // The table's headers only (its Content-Type, not also the text/plain a String body
    // would get: two Content-Types are read differently by different clients); appended,
    // so a header the table sends twice (challenges of two schemes) stays twice.
    let mut r = Response::new(axum::body::Body::from(answer.body));
    *r.status_mut() = answer.status;
    let headers = r.headers_mut();
    for (name, value) in answer.headers {
        headers.append(name, value);
    }
    r
}

/// `r` with `WWW-Authenticate: challenge`.
fn challenge(mut r: Response, challenge: &'static str) -> Response {
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// `body` as a JSON answer with `status`.
pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, JSON);
    r
}
