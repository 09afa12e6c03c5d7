//! `[proxy]` and `[upstream]`: the reverse proxy (from `jwtd-proxy`) on its own listener,
//! deciding with the runtime in force: the engine is read from the state on every request, so
//! a reload swaps it here as it does for `/auth` (and `trusted_proxies` with it).

use crate::config::{ProxySettings, UpstreamSettings};
use crate::ext_authz::StateEngines;
use crate::AppState;
use std::future::Future;
use std::sync::Arc;

/// Most headers of a request the proxy takes (more: 431).
pub const PROXY_MAX_HEADERS: usize = 100;

/// The proxy's options from `[proxy]` and `[upstream]`.
pub fn proxy_options(proxy: &ProxySettings, upstream: &UpstreamSettings) -> jwtd_proxy::Options {
    jwtd_proxy::Options {
        upstream: upstream.url.clone(),
        connect_timeout: upstream.connect_timeout.0,
        response_timeout: upstream.response_timeout.0,
        idle_timeout: upstream.idle_timeout.0,
        max_idle_per_host: upstream.max_idle_per_host,
        remove_authorization: upstream.remove_authorization,
        ca_file: upstream.ca_file.clone(),
        body_timeout: proxy.body_timeout.0,
        body_total_timeout: proxy.body_total_timeout.0,
        tunnel_idle_timeout: proxy.tunnel_idle_timeout.0,
        tunnel_max_lifetime: proxy.tunnel_max_lifetime.0,
    }
}

/// Serves the reverse proxy of `state`'s `[proxy]` and `[upstream]` on `listener` (bound by
/// the caller before it announces readiness) until `shutdown` resolves, then lets requests in
/// progress finish. The listener's limits are `[server]`'s `max_header_bytes`,
/// `header_read_timeout` and `max_connections` (its own count, apart from the API's), and
/// [`PROXY_MAX_HEADERS`] headers. Read at start: a reload keeps
/// these settings and swaps only the engine. An error without `[upstream]`, or when the
/// upstream cannot be set up (its `ca_file`).
///
/// With `tls` (`[proxy.tls]`, loaded before the listener is announced:
/// [`crate::tls::proxy_config`]) the listener speaks TLS, its handshake within
/// `header_read_timeout`, and the clients' certificates are the requests' (RFC 8705).
pub async fn serve_proxy(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let proxy = proxy_of(&state)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, upstream = %proxy.options().upstream, "proxy listening");
    }
    let server = &state.runtime().config.server;
    let limits = jwtd_proxy::Limits {
        max_header_bytes: server.max_header_bytes,
        max_headers: PROXY_MAX_HEADERS,
        header_read_timeout: server.header_read_timeout.0,
        max_connections: server.max_connections,
    };
    jwtd_proxy::serve_tls(proxy, listener, &limits, tls, shutdown)
        .await
        .map_err(|e| format!("proxy server: {e}"))
}

/// Checks `[upstream]` as the proxy will use it (its URL, its `ca_file` read and parsed):
/// `jwtd serve` calls it before anything is created or announced.
pub fn check_upstream(upstream: &UpstreamSettings) -> Result<(), String> {
    let options = jwtd_proxy::Options {
        ca_file: upstream.ca_file.clone(),
        ..jwtd_proxy::Options::new(upstream.url.clone())
    };
    jwtd_proxy::check(&options).map_err(|e| format!("[upstream] {e}"))
}

/// The proxy over `state`.
fn proxy_of(state: &Arc<AppState>) -> Result<jwtd_proxy::Proxy<StateEngines>, String> {
    let runtime = state.runtime();
    let upstream = runtime
        .config
        .upstream
        .as_ref()
        .ok_or("[proxy] needs an [upstream] url")?;
    let proxy = runtime
        .config
        .proxy
        .as_ref()
        .ok_or("[upstream] needs a [proxy] listen")?;
    jwtd_proxy::Proxy::new(StateEngines(state.clone()), proxy_options(proxy, upstream))
        .map_err(|e| format!("[upstream] {e}"))
}
