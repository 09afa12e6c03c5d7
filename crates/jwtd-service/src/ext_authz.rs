//! `[ext_authz]`: the Envoy external authorizer (gRPC `Authorization/Check`, from
//! `jwtd-extauthz`) on its own listener, deciding with the runtime in force: the engine is read
//! from the state on every check, so a reload swaps it here as it does for `/auth`.

use crate::config::ExtAuthzSettings;
use crate::{AppState, Runtime};
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

/// Largest `CheckRequest` the listener decodes, bytes: well above the header limit (whose
/// excess is a `bad_headers` denial, not a gRPC error that `failure_mode_allow` could let
/// through) and above Envoy's default header limit (60 KiB).
pub const EXT_AUTHZ_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The engine of the state's runtime in force (for the authorizer and the proxy).
#[derive(Clone, Debug)]
pub(crate) struct StateEngines(pub(crate) Arc<AppState>);

/// A runtime held for one check (a reload during it lets it finish on the old one).
pub(crate) struct Held(Arc<Runtime>);

impl Deref for Held {
    type Target = jwtd_gate::Engine;

    fn deref(&self) -> &jwtd_gate::Engine {
        &self.0.engine
    }
}

impl jwtd_gate::EngineSource for StateEngines {
    type Handle = Held;

    fn engine(&self) -> Held {
        Held(self.0.runtime())
    }

    /// Counted with `/auth`'s, in `jwtd_decisions_total`.
    fn decided(
        &self,
        held: &Held,
        rule: Option<&jwtd_gate::rules::Rule>,
        refused: Option<jwtd_core::Reason>,
    ) {
        held.0.decisions.record(rule, refused);
    }

    /// `trusted_proxies` of the runtime in force.
    fn trusts_forwarded(&self, held: &Held, peer: std::net::IpAddr) -> bool {
        held.0.trusted_proxies.contains(peer)
    }

    /// `trust_request_id` of the runtime in force.
    fn trusts_request_id(&self, held: &Held) -> bool {
        held.0.config.trust_request_id
    }

    /// The proxy's requests, in `jwtd_requests_total{endpoint="proxy"}` and
    /// `jwtd_request_duration_seconds{endpoint="proxy"}`, refusals logged as `/auth`'s.
    fn answered(&self, _held: &Held, answer: &jwtd_gate::source::Answer<'_>) {
        self.0.series.observe_proxy(answer);
    }
}

/// The authorizer's options from `[ext_authz]`.
pub fn ext_authz_options(settings: &ExtAuthzSettings) -> jwtd_extauthz::Options {
    jwtd_extauthz::Options {
        remove_authorization: settings.remove_authorization,
        max_headers: settings.max_headers,
        max_header_bytes: settings.max_header_bytes,
    }
}

/// Serves the external authorizer of `state`'s `[ext_authz]` on `listener` (bound by the
/// caller before it announces readiness) until `shutdown` resolves: cleartext HTTP/2, at most
/// 128 concurrent streams per connection, messages of at most
/// [`EXT_AUTHZ_MAX_MESSAGE_BYTES`], each check within `[server] request_timeout`. Without an
/// `[ext_authz]` table, the defaults (no `authorization` removal). Read at start: a reload
/// keeps these settings and swaps only the engine.
pub async fn serve_ext_authz(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let runtime = state.runtime();
    let options = runtime
        .config
        .ext_authz
        .as_ref()
        .map(ext_authz_options)
        .unwrap_or_default();
    let limits = jwtd_extauthz::Limits {
        max_message_bytes: EXT_AUTHZ_MAX_MESSAGE_BYTES,
        request_timeout: runtime.config.server.request_timeout.0,
        max_connections: runtime.config.server.max_connections,
        ..jwtd_extauthz::Limits::default()
    };
    drop(runtime);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "ext_authz (gRPC) listening");
    }
    let authorizer = jwtd_extauthz::Authorizer::new(StateEngines(state), options);
    jwtd_extauthz::serve(authorizer, listener, &limits, shutdown)
        .await
        .map_err(|e| format!("ext_authz server: {e}"))
}
