//! The operator's endpoints: `POST /admin/reload` and `GET /admin/status` (admin key),
//! `/readyz` and `/metrics` (open, or the admin's under `[admin] protect_status`).

use super::error::{json_response, ApiError};
use super::extract::{AdminAuth, StatusAuth, StatusDetails};
use crate::issuers::Keys;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::sync::Arc;

/// `POST /admin/reload[?refetch=keys]` (admin): re-reads the configuration file; with
/// `refetch=keys`, also fetches every remote issuer's keys now (after a key compromise at an
/// identity provider, so a removed key stops being trusted at once). Without a configuration
/// file, `refetch=keys` only refetches.
///
/// One report whatever happened: `{"reloaded": bool, "error"?, "refetched"?: [{"issuer", "ok",
/// "error"}]}`, 200; 422 when the reload failed (the running configuration stays); 502 when a
/// refetch failed.
pub(super) async fn admin_reload(
    _admin: AdminAuth,
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Response {
    let refetch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "refetch=keys"));
    let mut status = StatusCode::OK;
    let mut body = Map::new();
    if !refetch || state.has_config_file() {
        match state.reload().await {
            Ok(()) => {
                body.insert("reloaded".into(), Value::Bool(true));
            }
            Err(e) => {
                tracing::error!(error = %e, "reload requested by POST /admin/reload failed; keeping the running configuration");
                status = StatusCode::UNPROCESSABLE_ENTITY;
                body.insert("reloaded".into(), Value::Bool(false));
                body.insert("error".into(), Value::from(e));
            }
        }
    }
    if refetch {
        let mut results = Vec::new();
        for i in &state.runtime().engine.issuers.list {
            if let Keys::Remote(r) = &i.keys {
                let outcome =
                    tokio::time::timeout(std::time::Duration::from_secs(10), r.refresh()).await;
                let error = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("timed out after 10 s".to_owned()),
                };
                if let Some(e) = &error {
                    tracing::warn!(issuer = %i.name, error = %e, "key refetch failed");
                    status = StatusCode::BAD_GATEWAY;
                } else {
                    tracing::info!(issuer = %i.name, "keys refetched on request");
                }
                results.push(
                    serde_json::json!({"issuer": i.name, "ok": error.is_none(), "error": error}),
                );
            }
        }
        body.insert("refetched".into(), Value::Array(results));
    }
    json_response(status, Value::Object(body))
}

/// `GET /admin/status` (admin): every issuer with its key source (URL userinfo redacted),
/// readiness, key count, last fetch and last fetch error: the details clients never see.
pub(super) async fn admin_status(
    _admin: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Response {
    let rt = state.runtime();
    let issuers: Vec<Value> = rt
        .engine
        .issuers
        .list
        .iter()
        .map(|i| {
            let mut m = serde_json::json!({"name": i.name, "iss": i.iss, "ready": i.ready()});
            match &i.keys {
                Keys::Static(set) => {
                    m["source"] = Value::from("static");
                    m["keys"] = Value::from(set.keys().len());
                }
                Keys::Ring(ring) => {
                    let (keys, generation) = ring.verify_view();
                    m["source"] = Value::from("ring");
                    m["keys"] = Value::from(keys.keys().len());
                    m["generation"] = Value::from(generation);
                    m["signing_kid"] = Value::from(ring.signing_kid());
                }
                Keys::Remote(r) => {
                    let st = r.stats();
                    m["source"] = Value::from(r.source_redacted());
                    m["keys"] = Value::from(st.keys);
                    m["fetches"] = Value::from(st.fetches);
                    m["failures"] = Value::from(st.failures);
                    m["last_success_age_seconds"] =
                        Value::from(st.last_success_age.map(|a| a.as_secs()));
                    m["last_error"] = Value::from(r.last_error().map(|e| e.to_string()));
                    m["generation"] = Value::from(r.snapshot().map(|s| s.generation));
                }
            }
            m
        })
        .collect();
    let mut r = json_response(StatusCode::OK, serde_json::json!({ "issuers": issuers }));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /readyz`: 200 `{"ready": true}` when every issuer has keys, else 503 with the issuers
/// still without (their names only for those who may see the status details).
pub(super) async fn readyz(
    StatusDetails(details): StatusDetails,
    State(state): State<Arc<AppState>>,
) -> Response {
    let rt = state.runtime();
    if !details {
        let ready = rt.engine.issuers.list.iter().all(|i| i.ready());
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return json_response(status, serde_json::json!({ "ready": ready }));
    }
    let waiting: Vec<&str> = rt
        .engine
        .issuers
        .list
        .iter()
        .filter(|i| !i.ready())
        .map(|i| i.name.as_str())
        .collect();
    let (status, body) = if waiting.is_empty() {
        (StatusCode::OK, serde_json::json!({"ready": true}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "issuers_without_keys": waiting}),
        )
    };
    json_response(status, body)
}

/// `GET /metrics`: the Prometheus text of the recorder this state renders
/// ([`crate::AppState::with_metrics`]), after the scrape-time gauges are brought up to date;
/// 404 when the process exports none.
pub(super) async fn metrics(
    _access: StatusAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    let handle = state.metrics().ok_or(ApiError::NO_METRICS)?;
    for i in &state.runtime().engine.issuers.list {
        let name = i.name.clone();
        if let Some(c) = &i.cache {
            let s = c.stats();
            metrics::counter!("jwtd_token_cache_hits_total", "issuer" => name.clone())
                .absolute(s.hits);
            metrics::counter!("jwtd_token_cache_misses_total", "issuer" => name.clone())
                .absolute(s.misses);
            metrics::counter!("jwtd_token_cache_evictions_total", "issuer" => name.clone())
                .absolute(s.evictions);
            metrics::gauge!("jwtd_token_cache_entries", "issuer" => name.clone())
                .set(s.entries as f64);
            metrics::gauge!("jwtd_token_cache_bytes", "issuer" => name.clone()).set(s.bytes as f64);
        }
        match &i.keys {
            Keys::Static(set) => {
                metrics::gauge!("jwtd_keys", "issuer" => name).set(set.keys().len() as f64);
            }
            Keys::Ring(ring) => {
                metrics::gauge!("jwtd_keys", "issuer" => name)
                    .set(ring.verify_view().0.keys().len() as f64);
            }
            Keys::Remote(r) => {
                let s = r.stats();
                metrics::gauge!("jwtd_keys", "issuer" => name.clone()).set(s.keys as f64);
                metrics::counter!("jwtd_key_fetches_total", "issuer" => name.clone())
                    .absolute(s.fetches);
                metrics::counter!("jwtd_key_fetch_failures_total", "issuer" => name.clone())
                    .absolute(s.failures);
                if let Some(age) = s.last_success_age {
                    metrics::gauge!("jwtd_key_age_seconds", "issuer" => name)
                        .set(age.as_secs_f64());
                }
            }
        }
    }
    if let Some(r) = &state.runtime().revocations {
        metrics::gauge!("jwtd_revocations").set(r.len() as f64);
        metrics::gauge!("jwtd_revocations_pending").set(r.pending() as f64);
        let age = jwtd_core::unix_now() as i64 - r.synced_at();
        metrics::gauge!("jwtd_revocation_age_seconds").set(age as f64);
    }
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4");
    Ok(([(header::CONTENT_TYPE, content_type)], handle.render()).into_response())
}
