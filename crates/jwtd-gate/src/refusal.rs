//! The one table from a refusal to what every transport answers: HTTP status, the RFC 6750
//! `error` and `WWW-Authenticate` challenge, `Retry-After`, the JSON body, and the gRPC code.
//! The service (`/auth`, `/v1/verify`), the tower layer (HTTP and gRPC) and every later front
//! answer through it; docs/security.md ("Reason codes") lists every row and a test checks the
//! document against what is sent.

use crate::dpop::DpopChallenge;
use http::{header, HeaderName, HeaderValue, StatusCode};
use jwtd_core::{DpopReason, Error, Reason};

/// The realm every challenge names.
pub const REALM: &str = "jwtd";

/// An HTTP answer to a refusal, independent of any framework: status, headers, JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRefusal {
    /// 401, 403, 400 or 503.
    pub status: StatusCode,
    /// `Content-Type`, `WWW-Authenticate` (two fields for a DPoP refusal on a route that also
    /// takes bearer tokens), and `Retry-After` when the refusal is temporary.
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
/// and for a temporary failure, else with the RFC 6750 `error` and an `error_description`. A
/// DPoP refusal's is its `DPoP` challenge ([`challenges`], with the default `algs`).
pub fn challenge(e: &Error) -> String {
    if let Reason::Dpop(r) = e.reason() {
        return dpop_challenge(r, e.message(), &DpopChallenge::default());
    }
    match e.reason().challenge_error() {
        None => format!("Bearer realm=\"{REALM}\""),
        Some(code) => format!(
            "Bearer realm=\"{REALM}\", error=\"{}\", error_description=\"{}\"",
            code.as_str(),
            description(e.message())
        ),
    }
}

/// A DPoP refusal's `DPoP` challenge (RFC 9449 section 7.1): `algs`, and the `error`
/// (`invalid_dpop_proof`, or `invalid_token` for a token not bound to the proof's key) with an
/// `error_description`; none for `dpop_replay_unavailable`, which is about the server.
fn dpop_challenge(r: DpopReason, message: &str, c: &DpopChallenge) -> String {
    let algs = description(&c.algs);
    if r.http_status() == 503 {
        return format!("DPoP algs=\"{algs}\"");
    }
    format!(
        "DPoP algs=\"{algs}\", error=\"{}\", error_description=\"{}\"",
        r.error_code(),
        description(message)
    )
}

/// Every `WWW-Authenticate` challenge of a refusal, one header field each: the one of
/// [`challenge`]; for a DPoP refusal (`dpop_*`) the `DPoP` challenge, then a bare
/// `Bearer realm="jwtd"` when the route also takes bearer tokens (`enforce-cnf`).
pub fn challenges(e: &Error, dpop: Option<&DpopChallenge>) -> Vec<String> {
    match e.reason() {
        Reason::Dpop(r) => {
            let default = DpopChallenge::default();
            let c = dpop.unwrap_or(&default);
            let mut out = vec![dpop_challenge(r, e.message(), c)];
            if c.bearer {
                out.push(format!("Bearer realm=\"{REALM}\""));
            }
            out
        }
        _ => vec![challenge(e)],
    }
}

/// The JSON body: `{"error": <RFC 6750 code or temporarily_unavailable>, "reason": <reason
/// code>, "message": <for humans>}`; a DPoP refusal's `error` is its RFC 9449 one
/// (`invalid_dpop_proof`, `invalid_token`, `temporarily_unavailable`).
pub fn body(e: &Error) -> String {
    let reason = e.reason();
    let error = match reason {
        Reason::Dpop(r) => r.error_code(),
        r => r.bearer_error().as_str(),
    };
    format!(
        "{{\"error\":{},\"reason\":{},\"message\":{}}}",
        serde_json::Value::from(error),
        serde_json::Value::from(reason.as_str()),
        serde_json::Value::from(e.message())
    )
}

/// The HTTP answer to an engine refusal: [`http()`], with the RFC 6750 `scope` challenge
/// parameter naming the scopes the rule needs (when the token lacks some, or on any 401/403
/// of a rule under a `[[resource]]`) and the RFC 9728 `resource_metadata` parameter naming
/// the resource's metadata URL (a rule under a `[[resource]]`), on every challenge; a DPoP
/// refusal's challenges name the issuer's DPoP algorithms ([`challenges`]), and a
/// `dpop_use_nonce` refusal carries a fresh `DPoP-Nonce`.
pub fn http_denial(d: &crate::Denial) -> HttpRefusal {
    let mut www = challenges(&d.error, d.dpop.as_deref());
    for c in &mut www {
        // A URL checked at load (http::Uri): visible ASCII without quotes; never truncated.
        if let Some(url) = d.resource_metadata.as_deref().filter(|u| {
            u.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        }) {
            c.push_str(&format!(", resource_metadata=\"{url}\""));
        }
        if let Some(scope) = &d.scope {
            c.push_str(&format!(", scope=\"{}\"", scope_parameter(scope)));
        }
    }
    let mut answer = render(&d.error, &www);
    if let Some(n) = d.dpop.as_ref().and_then(|c| c.nonce.as_deref()) {
        if let Ok(v) = HeaderValue::from_str(n) {
            answer.headers.push((DPOP_NONCE, v));
        }
    }
    answer
}

/// The response header carrying a fresh server nonce (RFC 9449 section 8).
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The HTTP answer to `e` (see the module docs).
pub fn http(e: &Error) -> HttpRefusal {
    render(e, &challenges(e, None))
}

fn render(e: &Error, www: &[String]) -> HttpRefusal {
    let reason = e.reason();
    let mut headers = vec![(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    for c in www {
        if let Ok(v) = HeaderValue::from_str(c) {
            headers.push((header::WWW_AUTHENTICATE, v));
        }
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
