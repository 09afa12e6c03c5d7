//! `POST /v1/revocations` and `GET /v1/revocations` (admin).

use super::error::{json_response, ApiError};
use super::extract::AdminAuth;
use crate::revocation::Recorded;
use crate::revoke::RevocationRequest;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// `POST /v1/revocations` (admin): revoke by `jti`, by `sub` (tokens issued before `before`,
/// default now), by `kid`, or a whole `token` (its `jti`); see [`RevocationRequest`]. 201 when
/// stored, 202 when applied here and waiting for the store to come back; the answer describes
/// the entry (`kind`, `value`, `iss`, `issued_before`, `expires_at`, `status`, `id` when
/// stored, `key_material` when a key revocation covers more).
pub(super) async fn revoke(
    _admin: AdminAuth,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rt = state.runtime();
    let revocations = rt.revocations.as_ref().ok_or(ApiError::NO_REVOCATION)?;
    let req = RevocationRequest::parse(&body).map_err(ApiError::invalid)?;
    let done = crate::revoke::revoke(revocations, &rt.engine.issuers, req).await;
    let r = &done.revocation;
    let mut body = serde_json::json!({
        "kind": r.kind.as_str(),
        "value": r.value,
        "iss": r.iss,
        "issued_before": r.issued_before,
        "expires_at": r.expires_at,
    });
    if !done.key_material.is_empty() {
        body["key_material"] = serde_json::json!(done.key_material);
    }
    let status = match done.recorded {
        Recorded::Stored(id) => {
            body["status"] = "stored".into();
            body["id"] = id.into();
            StatusCode::CREATED
        }
        Recorded::Pending => {
            body["status"] = "pending".into();
            StatusCode::ACCEPTED
        }
    };
    tracing::info!(kind = %body["kind"], status = %body["status"], "revocation recorded");
    Ok(json_response(status, body))
}

/// `GET /v1/revocations` (admin): how many entries, how fresh, how many wait for the store.
pub(super) async fn revocation_status(
    _admin: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    let rt = state.runtime();
    let r = rt.revocations.as_ref().ok_or(ApiError::NO_REVOCATION)?;
    let now = jwtd_core::unix_now() as i64;
    let age = now - r.synced_at();
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({
            "entries": r.len(),
            "pending": r.pending(),
            "synced_at": r.synced_at(),
            "age_seconds": age,
            "stale": age > r.limits().max_staleness as i64,
        }),
    ))
}
