//! `/auth` (any method, and `/auth/{*original}` for Envoy): forward-auth for nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` and Envoy `ext_authz`, decided
//! by the engine over the original request.

use super::error::ApiError;
use super::extract::RequestId;
use super::observe::By;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The request the proxy is asking about, for rule matching (and a DPoP proof's `htm` and
/// `htu`). From a trusted proxy (`trusted_proxies`, default loopback) the forwarded headers
/// are believed: nginx's `X-Original-Method` / `X-Original-URI` (set in the documented
/// snippet), Traefik's and Caddy's `X-Forwarded-Method` / `-Uri` / `-Host` / `-Proto`, and
/// Envoy's HTTP ext_authz, which appends the original path to `/auth`. From anyone else they
/// are ignored and the `/auth` request itself is what is matched (so a rule set can never be
/// steered by a client that reaches jwtd directly).
///
/// A trusted proxy passes on the client's own headers besides the ones it sets (nginx's
/// `auth_request`, Caddy's and Traefik's forward auth all do), so a client can add the other
/// proxies' spellings: `X-Original-URI: /healthz` through Caddy, `X-Forwarded-Uri` through
/// nginx. Two spellings of the method or of the URI (or one and Envoy's path) that disagree,
/// a forwarded header sent twice, or one that is not visible ASCII are refused (400
/// `bad_headers`), never resolved by a precedence the client could exploit.
///
/// The client certificate (RFC 8705 bound tokens): from a trusted proxy, the one it forwards
/// (`[forwarded] client_cert`) when it sends one; otherwise the TLS peer's (`cert`, when
/// jwtd terminates TLS with client certificates). A certificate header from anyone else is
/// ignored.
fn original_request<'a>(
    req: &'a Parts,
    trusted: bool,
    cert: Option<&'a [u8]>,
    own_scheme: &'static str,
) -> Result<jwtd_gate::Request<'a>, jwtd_core::Error> {
    let client_cert = match (trusted, cert) {
        (true, tls) => jwtd_gate::ClientCert::Trusted { tls },
        (false, Some(der)) => jwtd_gate::ClientCert::Der(der),
        (false, None) => jwtd_gate::ClientCert::None,
    };
    let headers = &req.headers;
    // The six forwarded names in one pass over the headers (cheaper than six hash lookups
    // on this hot path).
    let mut seen: [(u8, Option<&str>); 6] = [(0, None); 6];
    // The first Host header, found in the same pass when there is one.
    let mut first_host: Option<Option<&str>> = None;
    if trusted {
        for (name, value) in headers {
            if name == header::HOST {
                if first_host.is_none() {
                    first_host = Some(value.to_str().ok());
                }
                continue;
            }
            let slot = match name.as_str() {
                "x-original-method" => 0,
                "x-forwarded-method" => 1,
                "x-forwarded-host" => 2,
                "x-original-uri" => 3,
                "x-forwarded-uri" => 4,
                "x-forwarded-proto" => 5,
                _ => continue,
            };
            let (count, v) = &mut seen[slot];
            *count = count.saturating_add(1);
            *v = value.to_str().ok();
        }
    }
    let own_path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = match first_host {
        Some(h) => h,
        None if trusted => None,
        None => headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    }
    .or(req.uri.host())
    .unwrap_or("");
    // The /auth request's own scheme: `https` over jwtd's TLS listener.
    if !trusted {
        return Ok(jwtd_gate::Request {
            method: req.method.as_str(),
            scheme: own_scheme,
            host,
            path_and_query: own_path,
            headers,
            client_cert,
        });
    }
    let refuse = |why: &str| {
        jwtd_core::Error::new(
            jwtd_core::Reason::BadHeaders,
            format!("the forwarded request is ambiguous: {why}"),
        )
    };
    for (count, v) in &seen {
        match (count, v) {
            (0, _) | (1, Some(_)) => {}
            (1, None) => return Err(refuse("a forwarded header that is not visible ASCII")),
            _ => return Err(refuse("a forwarded header sent more than once")),
        }
    }
    let one = |i: usize| seen[i].1;
    // Two spellings of one attribute: the same value, or a refusal.
    let agree = |a: Option<&'a str>, b: Option<&'a str>, what: &str| match (a, b) {
        (Some(x), Some(y)) if x != y => Err(refuse(what)),
        _ => Ok(a.or(b)),
    };
    let envoy = own_path
        .strip_prefix("/auth")
        .filter(|rest| rest.starts_with('/'));
    let method = agree(
        one(0),
        one(1),
        "X-Original-Method and X-Forwarded-Method differ",
    )?;
    let uri = agree(one(3), one(4), "X-Original-URI and X-Forwarded-Uri differ")?;
    let uri = agree(
        uri,
        envoy,
        "a forwarded URI header and the /auth path differ",
    )?;
    Ok(jwtd_gate::Request {
        method: method.unwrap_or(req.method.as_str()),
        scheme: match one(5) {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            Some(_) => "http",
            None => own_scheme,
        },
        host: one(2).unwrap_or(host),
        path_and_query: uri.unwrap_or(own_path),
        headers,
        client_cert,
    })
}

/// Answers the proxy: 200 with the identity headers, or the refusal; with the request id.
/// The axum route of `/auth` (for [`crate::router`] embedders); `jwtd serve` calls [`answer`]
/// without the router.
pub(super) async fn forward_auth(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // The body is never read (and not `Sync`, so not held across the decision).
    let cert = req
        .extensions()
        .get::<jwtd_gate::mtls::PeerCertificate>()
        .cloned();
    let tls = req.extensions().get::<crate::server::OverTls>().is_some();
    let (parts, _) = req.into_parts();
    answer(&state, &parts, peer, cert.as_ref().map(|c| &*c.0), tls).await
}

/// Whether `path` is served by `/auth` (`/auth`, or `/auth/<original path>` for Envoy): the
/// same paths as the router's two `/auth` routes (a catch-all matches one byte at least, so
/// `/auth/` is not one of them).
pub(crate) fn is_auth_path(path: &str) -> bool {
    path.strip_prefix("/auth")
        .is_some_and(|rest| rest.is_empty() || (rest.len() > 1 && rest.starts_with('/')))
}

/// `/auth` for the request `req` from `peer`: what [`forward_auth`] answers, called by the
/// server directly for the paths of [`is_auth_path`] (the hottest path skips the router's
/// boxed services, its request extensions and the `ConnectInfo` insert).
/// `cert` is the DER of the TLS peer's certificate, when jwtd terminated TLS and the client
/// sent one; `tls` when the request came over jwtd's own TLS listener.
pub(crate) async fn answer(
    state: &AppState,
    req: &Parts,
    peer: Option<SocketAddr>,
    cert: Option<&[u8]>,
    tls: bool,
) -> Response {
    // The request is borrowed, not its headers cloned: this is the hottest path.
    let started = Instant::now();
    let rt = state.runtime_guard();
    let rid = RequestId::of_in(&req.headers, &rt);
    let engine = &rt.engine;
    // Believed for matching and for DPoP (a proof's `htm` and `htu` name the original
    // request): both read the forwarded method, host, URI and scheme.
    let trusted = peer.is_some_and(|p| rt.trusted_proxies.contains(p.ip()));
    let own_scheme = if tls { "https" } else { "http" };
    let target = match original_request(req, trusted, cert, own_scheme) {
        Ok(target) => target,
        Err(error) => {
            rt.decisions.record(None, Some(error.reason()));
            let denial = jwtd_gate::Denial::new(error);
            state.series.observe(
                "auth",
                started,
                By::Named(None),
                Err(&denial.error),
                &rid,
                None,
            );
            return (rid, Err::<Response, _>(ApiError::Denied(denial))).into_response();
        }
    };
    let decision = engine.decide(&target, jwtd_core::unix_now()).await;
    let token = decision.token;
    rt.decisions.record(
        decision.rule,
        decision.outcome.as_ref().err().map(|d| d.error.reason()),
    );
    let answer: Result<Response, ApiError> = match decision.outcome {
        Ok(allowed) => {
            let by = match &allowed.identity {
                Some((issuer, _)) => By::Issuer(issuer),
                None => By::Nobody,
            };
            state
                .series
                .observe("auth", started, by, Ok(()), &rid, token);
            // 200 with no body: the identity headers are the answer's header map as built.
            let mut r = Response::new(axum::body::Body::empty());
            *r.headers_mut() = allowed.headers;
            // A fresh DPoP server nonce, for the proxy to pass to the client (nginx:
            // `auth_request_set` and `add_header`).
            if let Some(n) = allowed.dpop.as_ref().and_then(|p| p.nonce.as_deref()) {
                if let Ok(v) = axum::http::HeaderValue::from_str(n) {
                    r.headers_mut().insert(jwtd_gate::refusal::DPOP_NONCE, v);
                }
            }
            Ok(r)
        }
        Err(denial) => {
            let by = By::Named(denial.issuer.as_deref());
            state
                .series
                .observe("auth", started, by, Err(&denial.error), &rid, token);
            Err(ApiError::Denied(denial))
        }
    };
    (rid, answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::is_auth_path;

    /// The router's `/auth` and `/auth/{*original}`: a catch-all needs one byte at least.
    #[test]
    fn auth_paths_are_the_routers() {
        for p in ["/auth", "/auth/x", "/auth/v1/orders/7", "/auth//x"] {
            assert!(is_auth_path(p), "{p}");
        }
        for p in [
            "/auth/",
            "/authx",
            "/",
            "/v1/verify",
            "//auth",
            "/Auth",
            "/auth?x",
        ] {
            assert!(!is_auth_path(p), "{p}");
        }
    }
}
