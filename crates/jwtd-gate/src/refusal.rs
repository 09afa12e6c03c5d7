//! The one table from a refusal to what every transport answers: HTTP status, the RFC 6750
//! `error` and `WWW-Authenticate` challenge, `Retry-After`, the JSON body, and the gRPC code.
//! The service (`/auth`, `/v1/verify`), the tower layer (HTTP and gRPC) and every later front
//! answer through it; docs/security.md ("Reason codes") lists every row and a test checks the
//! document against what is sent.

use http::{header, HeaderName, HeaderValue, StatusCode};
use jwtd_core::Error;

/// The realm every challenge names.
pub const REALM: &str = "jwtd";

/// An HTTP answer to a refusal, independent of any framework: status, headers, JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRefusal {
    /// 401, 403, 400 or 503.
    pub status: StatusCode,
    /// `Content-Type`, `WWW-Authenticate`, and `Retry-After` when the refusal is temporary.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `{"error", "reason", "message"}`.
    pub body: String,
}

/// Text safe inside a quoted challenge parameter: printable ASCII, no `"` or `\`, at most
/// 200 characters.
pub fn description(message: &str) -> String {
    message
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .take(200)
        .collect()
}

/// The longest `scope` challenge parameter, in bytes.
pub const MAX_SCOPE_PARAMETER: usize = 2048;

/// The `scope` challenge parameter: whole scope tokens (never cut inside one, unlike
/// [`description`]; a token is never `"` or `\`), as many as fit in [`MAX_SCOPE_PARAMETER`]
/// bytes.
pub fn scope_parameter(scope: &str) -> String {
    let mut out = String::new();
    for t in scope.split(' ').filter(|t| crate::rules::is_scope_token(t)) {
        if out.len() + usize::from(!out.is_empty()) + t.len() > MAX_SCOPE_PARAMETER {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

/// The `WWW-Authenticate` challenge for `e`: a bare `Bearer realm="jwtd"` for a missing token
/// and for a temporary failure, else with the RFC 6750 `error` and an `error_description`.
pub fn challenge(e: &Error) -> String {
    match e.reason().challenge_error() {
        None => format!("Bearer realm=\"{REALM}\""),
        Some(code) => format!(
            "Bearer realm=\"{REALM}\", error=\"{}\", error_description=\"{}\"",
            code.as_str(),
            description(e.message())
        ),
    }
}

/// The JSON body: `{"error": <RFC 6750 code or temporarily_unavailable>, "reason": <reason
/// code>, "message": <for humans>}`.
pub fn body(e: &Error) -> String {
    let reason = e.reason();
    format!(
        "{{\"error\":{},\"reason\":{},\"message\":{}}}",
        serde_json::Value::from(reason.bearer_error().as_str()),
        serde_json::Value::from(reason.as_str()),
        serde_json::Value::from(e.message())
    )
}

/// The HTTP answer to an engine refusal: [`http()`], with the RFC 6750 `scope` challenge
/// parameter naming the scopes the rule needs (when the token lacks some, or on any 401/403
/// of a rule under a `[[resource]]`) and the RFC 9728 `resource_metadata` parameter naming
/// the resource's metadata URL (a rule under a `[[resource]]`).
pub fn http_denial(d: &crate::Denial) -> HttpRefusal {
    let mut answer = http(&d.error);
    if d.scope.is_none() && d.resource_metadata.is_none() {
        return answer;
    }
    let mut www = challenge(&d.error);
    // A URL checked at load (http::Uri): visible ASCII without quotes; never truncated.
    if let Some(url) = d.resource_metadata.as_deref().filter(|u| {
        u.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    }) {
        www.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    if let Some(scope) = &d.scope {
        www.push_str(&format!(", scope=\"{}\"", scope_parameter(scope)));
    }
    if let Ok(v) = HeaderValue::from_str(&www) {
        for (n, value) in answer.headers.iter_mut() {
            if *n == header::WWW_AUTHENTICATE {
                *value = v.clone();
            }
        }
    }
    answer
}

/// The HTTP answer to `e` (see the module docs).
pub fn http(e: &Error) -> HttpRefusal {
    let reason = e.reason();
    let mut headers = vec![(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    if let Ok(v) = HeaderValue::from_str(&challenge(e)) {
        headers.push((header::WWW_AUTHENTICATE, v));
    }
    if let Some(secs) = reason.retry_after() {
        headers.push((header::RETRY_AFTER, HeaderValue::from(secs)));
    }
    HttpRefusal {
        status: StatusCode::from_u16(reason.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        body: body(e),
    }
}

/// The gRPC answer to `e`: the status code (`jwtd_core::Reason::grpc_code`) and the
/// `grpc-message` text, `<reason>: <message>` percent-encoded outside printable ASCII (and
/// `%`), as the gRPC HTTP/2 protocol requires, at most 300 bytes before encoding.
pub fn grpc(e: &Error) -> (i32, String) {
    let mut message = String::new();
    for b in format!("{}: {}", e.reason(), e.message()).bytes().take(300) {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            message.push(b as char);
        } else {
            message.push_str(&format!("%{b:02X}"));
        }
    }
    (e.reason().grpc_code().as_i32(), message)
}
