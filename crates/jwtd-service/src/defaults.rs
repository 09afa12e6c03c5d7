//! The default of every `jwtd serve` setting a configuration may leave out (the engine's own,
//! `[tokens]`, `[cache]` and `[[issuer]]`, are in [`jwtd_gate::config::defaults`]), each defined
//! once here: the serde defaults, the `Default` impls, the code that fills in unset optional
//! values and the doc comments all refer to these, and a test checks that docs/configuration.md
//! states the same values. The key ring's (`[signing]` algorithm, RSA size, publish lead, max
//! ttl, grace, rotation) are [`jwtd_store::RingConfig::default`]'s, read through the functions
//! below.

use std::time::Duration;

/// `listen`: the HTTP listen address.
pub const LISTEN: &str = "127.0.0.1:8080";
/// `trusted_proxies`: loopback only.
pub const TRUSTED_PROXIES: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// `[server] max_connections`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `[server] header_read_timeout`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `[server] idle_timeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[server] request_timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `[server] shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// `[server] max_request_body`, in bytes (64 KiB).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// `[server] max_header_bytes` (64 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// `[ext_authz] max_headers`: header entries of one check.
pub const EXT_AUTHZ_MAX_HEADERS: usize = 100;
/// `[ext_authz] max_header_bytes` (64 KiB).
pub const EXT_AUTHZ_MAX_HEADER_BYTES: usize = 64 * 1024;

/// `[upstream] connect_timeout`.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `[upstream] response_timeout`.
pub const UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[upstream] idle_timeout`.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `[upstream] max_idle_per_host`: kept-alive connections to the upstream.
pub const UPSTREAM_MAX_IDLE_PER_HOST: usize = 32;

/// `[proxy] body_timeout`: the longest gap in a client's request body.
pub const PROXY_BODY_TIMEOUT: Duration = jwtd_proxy::DEFAULT_BODY_TIMEOUT;
/// `[proxy] body_total_timeout` (5 minutes): the longest a client's whole request body may take.
pub const PROXY_BODY_TOTAL_TIMEOUT: Duration = jwtd_proxy::DEFAULT_BODY_TOTAL_TIMEOUT;
/// `[proxy] tunnel_idle_timeout` (5 minutes).
pub const PROXY_TUNNEL_IDLE_TIMEOUT: Duration = jwtd_proxy::DEFAULT_TUNNEL_IDLE_TIMEOUT;
/// `[proxy] tunnel_max_lifetime` (1 hour).
pub const PROXY_TUNNEL_MAX_LIFETIME: Duration = jwtd_proxy::DEFAULT_TUNNEL_MAX_LIFETIME;

/// `[cors] max_age`, in seconds (10 minutes).
pub const CORS_MAX_AGE: u64 = 600;

/// `[signing] data_dir` (and `[revocation] data_dir` without `[signing]`).
pub const DATA_DIR: &str = "./jwtd-data";
/// `[signing] default_ttl`, in seconds (10 minutes; at most the max ttl).
pub const DEFAULT_TTL: u64 = 600;

/// `[revocation] max_staleness`, in seconds (5 minutes).
pub const MAX_STALENESS: u64 = 300;
/// `[revocation] resync_interval`, in seconds.
pub const RESYNC_INTERVAL: u64 = 10;
/// `[revocation] full_resync_interval`, in seconds (5 minutes).
pub const FULL_RESYNC_INTERVAL: u64 = 300;
/// `[revocation] max_token_lifetime`, in seconds (24 hours).
pub const MAX_TOKEN_LIFETIME: u64 = 86_400;

/// `[signing] algorithm` (ES256), as the key ring defines it.
pub fn signing_algorithm() -> jwtd_core::Algorithm {
    jwtd_store::RingConfig::default().alg
}

/// `[signing] rsa_bits` (2048), as the key ring defines it.
pub fn rsa_bits() -> usize {
    jwtd_store::RingConfig::default().rsa_bits
}

pub(crate) fn listen() -> String {
    LISTEN.into()
}
pub(crate) fn trusted_proxies() -> Vec<String> {
    TRUSTED_PROXIES.iter().map(|p| (*p).to_owned()).collect()
}
pub(crate) fn max_connections() -> usize {
    MAX_CONNECTIONS
}
pub(crate) fn header_read_timeout() -> crate::config::Timeout {
    crate::config::Timeout(HEADER_READ_TIMEOUT)
}
pub(crate) fn idle_timeout() -> crate::config::Timeout {
    crate::config::Timeout(IDLE_TIMEOUT)
}
pub(crate) fn request_timeout() -> crate::config::Timeout {
    crate::config::Timeout(REQUEST_TIMEOUT)
}
pub(crate) fn shutdown_timeout() -> crate::config::Timeout {
    crate::config::Timeout(SHUTDOWN_TIMEOUT)
}
pub(crate) fn max_request_body() -> usize {
    MAX_REQUEST_BODY
}
pub(crate) fn max_header_bytes() -> usize {
    MAX_HEADER_BYTES
}
pub(crate) fn ext_authz_max_headers() -> usize {
    EXT_AUTHZ_MAX_HEADERS
}
pub(crate) fn ext_authz_max_header_bytes() -> usize {
    EXT_AUTHZ_MAX_HEADER_BYTES
}
pub(crate) fn upstream_connect_timeout() -> crate::config::Timeout {
    crate::config::Timeout(UPSTREAM_CONNECT_TIMEOUT)
}
pub(crate) fn upstream_response_timeout() -> crate::config::Timeout {
    crate::config::Timeout(UPSTREAM_RESPONSE_TIMEOUT)
}
pub(crate) fn upstream_idle_timeout() -> crate::config::Timeout {
    crate::config::Timeout(UPSTREAM_IDLE_TIMEOUT)
}
pub(crate) fn upstream_max_idle_per_host() -> usize {
    UPSTREAM_MAX_IDLE_PER_HOST
}
pub(crate) fn proxy_body_timeout() -> crate::config::Timeout {
    crate::config::Timeout(PROXY_BODY_TIMEOUT)
}
pub(crate) fn proxy_body_total_timeout() -> crate::config::Timeout {
    crate::config::Timeout(PROXY_BODY_TOTAL_TIMEOUT)
}
pub(crate) fn proxy_tunnel_idle_timeout() -> crate::config::Timeout {
    crate::config::Timeout(PROXY_TUNNEL_IDLE_TIMEOUT)
}
pub(crate) fn proxy_tunnel_max_lifetime() -> crate::config::Timeout {
    crate::config::Timeout(PROXY_TUNNEL_MAX_LIFETIME)
}
pub(crate) fn cors_max_age() -> crate::config::Seconds {
    crate::config::Seconds(CORS_MAX_AGE)
}
pub(crate) fn data_dir() -> String {
    DATA_DIR.into()
}

/// `[dpop_replay] timeout`: longest one look-up of the shared `jti` table may take.
pub const DPOP_REPLAY_TIMEOUT: Duration = Duration::from_millis(250);
/// `[dpop_replay] purge_interval`.
pub const DPOP_REPLAY_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// `[dpop_replay] max_connections`.
pub const DPOP_REPLAY_MAX_CONNECTIONS: u32 = 8;
/// Rows of `dpop_jti` one purge statement deletes at most (it repeats while it deletes that
/// many).
pub const DPOP_REPLAY_PURGE_BATCH: i64 = 10_000;

pub(crate) fn dpop_replay_timeout() -> crate::config::Timeout {
    crate::config::Timeout(DPOP_REPLAY_TIMEOUT)
}

pub(crate) fn dpop_replay_purge_interval() -> crate::config::Timeout {
    crate::config::Timeout(DPOP_REPLAY_PURGE_INTERVAL)
}

pub(crate) fn dpop_replay_max_connections() -> u32 {
    DPOP_REPLAY_MAX_CONNECTIONS
}
