//! CORS for the routes browsers call (`/v1/verify`, `/v1/tokens/{token}`), per `[cors]`.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// [`cors`] for a `GET` and `POST` route.
pub(super) async fn cors_get_post(
    state: State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    cors(state, req, next, "GET, POST").await
}

/// [`cors`] for a `GET` route.
pub(super) async fn cors_get(state: State<Arc<AppState>>, req: Request, next: Next) -> Response {
    cors(state, req, next, "GET").await
}

/// The headers a page may send on a cross-origin request (all that jwtd reads from one).
const CORS_ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("authorization, content-type");

/// The answer's headers a page may read: the challenge, the request id, the retry delay.
const CORS_EXPOSE_HEADERS: HeaderValue =
    HeaderValue::from_static("www-authenticate, x-request-id, retry-after");

/// CORS for one route (`methods`: its methods but `OPTIONS`), per `[cors]`, read at each
/// request. Without `[cors]` the route answers as if this layer were not there (a preflight
/// gets 405). With it, every answer carries `Vary: Origin`, and when the request's one
/// `Origin` is allowed:
/// - a preflight (`OPTIONS` with `Access-Control-Request-Method` naming one of `methods`) is
///   answered 204 with `Access-Control-Allow-Origin` (that origin), `-Allow-Methods`,
///   `-Allow-Headers` (`authorization, content-type`), `-Max-Age` and, with
///   `allow_credentials`, `-Allow-Credentials: true`;
/// - any other answer gets `Access-Control-Allow-Origin`, `-Expose-Headers`
///   (`www-authenticate, x-request-id, retry-after`) and `-Allow-Credentials` likewise.
///
/// A request from an origin not allowed, or a preflight for another method, gets no
/// `Access-Control-*` header at all (a preflight then gets the route's 405).
async fn cors(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
    methods: &'static str,
) -> Response {
    let rt = state.runtime();
    let Some(cors) = &rt.config.cors else {
        drop(rt);
        return next.run(req).await;
    };
    let mut origins = req.headers().get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (Some(o), None) if cors.allows(o.as_bytes()) => Some(o.clone()),
        _ => None,
    };
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| methods.split(", ").any(|x| x == m));
    // An OPTIONS request that is not a preflight this route accepts gets no CORS headers.
    let origin = origin.filter(|_| preflight || req.method() != axum::http::Method::OPTIONS);
    let credentials = cors.allow_credentials;
    let mut r = match &origin {
        Some(_) if preflight => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS);
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(cors.max_age.0),
            );
            r
        }
        _ => {
            drop(rt);
            let mut r = next.run(req).await;
            if origin.is_some() {
                r.headers_mut()
                    .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE_HEADERS);
            }
            r
        }
    };
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        if credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
    r
}
