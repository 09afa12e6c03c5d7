//! `/.well-known/oauth-protected-resource` and the path-inserted forms
//! (`/.well-known/oauth-protected-resource/mcp` for `https://host/mcp`): the RFC 9728
//! metadata of the configured `[[resource]]`s, answered by the engine's one table
//! ([`jwtd_gate::resource::Resources::answer`]): 200 for `GET`/`HEAD`, 405 for another
//! method (a CORS preflight is answered 204), 404 for a path no resource publishes at.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Any method on `/.well-known/oauth-protected-resource` or under it.
pub(super) async fn metadata(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rt = state.runtime_guard();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match rt
        .engine
        .resources
        .answer_request(method.as_str(), host, path, &headers)
    {
        Some(a) => {
            let mut r = (a.status, a.body).into_response();
            for (n, v) in a.headers {
                r.headers_mut().insert(n, v);
            }
            r
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
