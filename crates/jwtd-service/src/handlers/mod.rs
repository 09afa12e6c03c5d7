//! HTTP endpoints, by group: [`verify`] (`/v1/verify`, `/v1/tokens/{token}`), [`auth`]
//! (forward-auth), [`introspect`], [`admin`] (reload, status, readiness, metrics), [`issuer`]
//! (JWKS, discovery, minting), [`revocations`], [`resource`] (RFC 9728 protected-resource
//! metadata); [`cors`] for the routes browsers call. Every
//! refusal is an [`ApiError`]; the admin key, the introspection client and the request id are
//! extractors ([`extract`]); [`observe`] counts, times and logs verifications.

mod admin;
mod auth;
mod cors;
mod error;
mod extract;
mod introspect;
mod issuer;
mod observe;
mod resource;
mod revocations;
mod verify;

use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post};
use axum::Router;
use std::sync::Arc;

pub(crate) use auth::{answer as auth_answer, is_auth_path};
pub use error::bearer_error;
pub(crate) use observe::RequestSeries;

/// The service's routes. The endpoints that read a body (`POST /v1/verify`, `/introspect`,
/// `/v1/tokens`, `/v1/revocations`) take at most `[server] max_request_body` bytes (413 past
/// it); the others never read theirs. `/v1/verify` and `/v1/tokens/{token}` answer
/// cross-origin requests from the `[cors]` origins (see `CorsSettings`). `/metrics` renders
/// the recorder `state` was given ([`AppState::with_metrics`]) and answers 404 without one:
/// building the router installs nothing process-wide.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = DefaultBodyLimit::max(state.runtime().config.server.max_request_body);
    Router::new()
        .route(
            "/v1/verify",
            get(verify::verify)
                .post(verify::verify_post)
                .layer(limit)
                .layer(from_fn_with_state(state.clone(), cors::cors_get_post)),
        )
        .route(
            "/v1/tokens/{token}",
            get(verify::token_path).layer(from_fn_with_state(state.clone(), cors::cors_get)),
        )
        .route("/auth", any(auth::forward_auth))
        // Envoy's ext_authz appends the original path to its path_prefix.
        .route("/auth/{*original}", any(auth::forward_auth))
        .route("/introspect", post(introspect::introspect).layer(limit))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .route("/admin/reload", post(admin::admin_reload))
        .route("/admin/status", get(admin::admin_status))
        .route("/.well-known/jwks.json", get(issuer::jwks))
        .route("/.well-known/openid-configuration", get(issuer::discovery))
        .route(
            "/.well-known/oauth-protected-resource",
            any(resource::metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            any(resource::metadata),
        )
        .route("/v1/tokens", post(issuer::mint).layer(limit))
        .route(
            "/v1/revocations",
            post(revocations::revoke)
                .get(revocations::revocation_status)
                .layer(limit),
        )
        .with_state(state)
}
