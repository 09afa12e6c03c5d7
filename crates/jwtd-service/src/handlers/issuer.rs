//! jwtd's own issuer (`[signing]`): `GET /.well-known/jwks.json`,
//! `GET /.well-known/openid-configuration` and `POST /v1/tokens` (admin).

use super::error::{json_response, ApiError};
use super::extract::AdminAuth;
use crate::mint::MintRequest;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `GET /.well-known/jwks.json`: the published keys, with an `ETag` (304 on a match) and a
/// `Cache-Control` max-age shorter than the publish lead.
pub(super) async fn jwks(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rt = state.runtime();
    let s = rt.signing.as_ref().ok_or(ApiError::NO_SIGNING)?;
    let body = s.ring.jwks_json();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let etag = format!(
        "\"{}\"",
        digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = format!("public, max-age={}", s.jwks_max_age());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&cache).expect("ascii"),
    );
    Ok(r)
}

/// `GET /.well-known/openid-configuration`: discovery for jwtd's own issuer.
pub(super) async fn discovery(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let rt = state.runtime();
    let s = rt.signing.as_ref().ok_or(ApiError::NO_SIGNING)?;
    let mut algs: Vec<String> = s
        .ring
        .keys()
        .iter()
        .filter(|k| k.state.published())
        .map(|k| k.alg.clone())
        .collect();
    algs.sort();
    algs.dedup();
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({
            "issuer": s.iss,
            "jwks_uri": format!("{}/.well-known/jwks.json", s.iss),
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        }),
    ))
}

/// `POST /v1/tokens` (admin): 200 `{"token", "expires_at", "kid"}` for a [`MintRequest`].
pub(super) async fn mint(
    _admin: AdminAuth,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rt = state.runtime();
    let s = rt.signing.as_ref().ok_or(ApiError::NO_SIGNING)?;
    let req = MintRequest::parse(&body, s).map_err(ApiError::invalid)?;
    let minted = s.mint(req)?;
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({"token": minted.token, "expires_at": minted.expires_at, "kid": minted.kid}),
    ))
}
