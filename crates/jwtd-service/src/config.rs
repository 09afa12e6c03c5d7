//! The service configuration: a TOML file with `${ENV_VAR}` interpolation, checked with line
//! numbers for every error.

pub use jwtd_gate::config::{
    duration_value, AudienceMode, CacheSettings, ConfigError, IssuerConfig, KeySource,
    KeySourceError, Seconds, SecretRef, TokenSources, KEY_SOURCE_KEYS, MAX_LEEWAY, MAX_SECONDS,
    RESERVED_HEADERS,
};
use jwtd_gate::config::{interpolate_with_env, line_of};
use jwtd_gate::Env;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// The whole configuration.
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address (default `127.0.0.1:8080`).
    #[serde(default = "crate::defaults::listen")]
    pub listen: String,
    /// Log format: `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Take a client's `X-Request-Id` as the request id (for logs and the answer) instead of
    /// generating one. Off by default: a client could otherwise forge the ids in jwtd's logs.
    /// Turn it on behind a proxy that sets the header itself.
    #[serde(default)]
    pub trust_request_id: bool,
    /// Where tokens are read from.
    #[serde(default)]
    pub tokens: TokenSources,
    /// RFC 7662 introspection endpoint settings; the endpoint is off without them.
    #[serde(default)]
    pub introspection: Option<Introspection>,
    /// Admin API settings (`POST /admin/reload`); off without them.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The verified-token cache (on by default).
    #[serde(default)]
    pub cache: CacheSettings,
    /// jwtd as an issuer: mint tokens, publish JWKS, rotate keys (off without it).
    #[serde(default)]
    pub signing: Option<SigningConfig>,
    /// Revocation (`POST /v1/revocations`, checked on every request); off without it.
    #[serde(default)]
    pub revocation: Option<RevocationSettings>,
    /// `[dpop_replay]`: the PostgreSQL table the `replay_store = "shared"` issuers record DPoP
    /// proof `jti`s in, so a replay to another instance is caught; none without it.
    #[serde(default)]
    pub dpop_replay: Option<DpopReplaySettings>,
    /// Connection and request limits of the HTTP server (read at start).
    #[serde(default)]
    pub server: ServerSettings,
    /// `[ext_authz]`: the Envoy external authorizer over gRPC, on a listener of its own (read
    /// at start); off without it.
    #[serde(default)]
    pub ext_authz: Option<ExtAuthzSettings>,
    /// `[proxy]`: reverse-proxy mode, a listener of its own forwarding allowed requests to
    /// `[upstream]` (read at start); off without it.
    #[serde(default)]
    pub proxy: Option<ProxySettings>,
    /// `[upstream]`: the one service `[proxy]` forwards to (read at start; required with
    /// `[proxy]`, refused without it).
    #[serde(default)]
    pub upstream: Option<UpstreamSettings>,
    /// Cross-origin (CORS) access to `GET /v1/tokens/{token}` and `GET|POST /v1/verify` from
    /// browsers on other sites; off without it.
    #[serde(default)]
    pub cors: Option<CorsSettings>,
    /// The issuers whose tokens are accepted.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// `[rules]`: options of the per-route rules (default action, path normalisation, the
    /// scope claim).
    #[serde(default)]
    pub rules: jwtd_gate::rules::RuleOptions,
    /// `[[rule]]`: per-route rules (none: every request needs a valid token from a configured
    /// issuer, as before rules existed).
    #[serde(default)]
    pub rule: Vec<jwtd_gate::rules::RuleConfig>,
    /// `[[resource]]`: protected resources whose RFC 9728 metadata `jwtd serve` (and the
    /// proxy mode) publish at `/.well-known/oauth-protected-resource...`, and whose rules'
    /// refusals name it (MCP servers).
    #[serde(default)]
    pub resource: Vec<jwtd_gate::resource::ResourceConfig>,
    /// Addresses (`IP` or `IP/prefix`) whose forwarded-request headers (`X-Original-URI`,
    /// `X-Forwarded-Method`, ...) `/auth` believes when it matches rules; from anyone else
    /// they are ignored. Default: loopback (`127.0.0.0/8`, `::1`); `[forwarded] client_cert`
    /// needs it written out (a load error otherwise).
    #[serde(default = "crate::defaults::trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// `[tls]`: the API listener (`listen`) speaks TLS, with client certificates when
    /// `client_ca_file` is set (read at start).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// `[forwarded]`: the client certificate a trusted proxy forwards (RFC 9440
    /// `Client-Cert`, Envoy's `x-forwarded-client-cert`, or a URL-encoded PEM header such as
    /// nginx's `$ssl_client_escaped_cert`), read only from `trusted_proxies`.
    #[serde(default)]
    pub forwarded: jwtd_gate::mtls::ForwardedConfig,
    /// The text this configuration was read from, after `${VAR}` expansion: the rules' spans
    /// point into it, so the engine's rules carry their lines (for lint warnings and `jwtd
    /// rules explain`). Not a key of the file; empty for a configuration built otherwise.
    #[serde(skip)]
    pub text: ExpandedText,
    /// The environment the file was read in (not a key of the file): its `${VAR}`s were
    /// replaced from it, and the secrets it names by variable (`api_key_env`,
    /// `client_secret_env`, `secret_env`) and the key encryption key (`JWTD_KEK`) are read
    /// from it when the service is built ([`crate::Runtime::build`]), and a reload reads the
    /// file again in it. [`Env::process`] unless parsed with [`Config::parse_with_env`] or
    /// [`Config::load_with_env`].
    #[serde(skip)]
    pub env: Env,
}

/// Configuration text after `${VAR}` expansion. It may hold secrets, so its `Debug` shows
/// only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct ExpandedText(pub std::sync::Arc<str>);

impl Default for ExpandedText {
    fn default() -> Self {
        ExpandedText(std::sync::Arc::from(""))
    }
}

impl std::fmt::Debug for ExpandedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExpandedText({} bytes)", self.0.len())
    }
}

/// [`Config::trusted_proxies`], parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(std::net::IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `IP` and `IP/prefix` entries.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        let mut v = Vec::new();
        for entry in list {
            let (ip, prefix) = match entry.split_once('/') {
                Some((ip, p)) => (ip, Some(p)),
                None => (entry.as_str(), None),
            };
            let ip: std::net::IpAddr = ip.parse().map_err(|_| {
                format!("trusted_proxies: {entry:?} is not an IP address or IP/prefix")
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => {
                        return Err(format!(
                            "trusted_proxies: {entry:?} has a bad prefix length"
                        ))
                    }
                },
            };
            v.push((ip, prefix));
        }
        Ok(TrustedProxies(v))
    }

    /// True when `peer` is inside one of the entries (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, peer: std::net::IpAddr) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(std::net::IpAddr::V4)
                .unwrap_or(peer),
            v4 => v4,
        };
        self.0.iter().any(|(net, prefix)| match (net, peer) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(p)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(p) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(p)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(p) & mask
            }
            _ => false,
        })
    }
}

/// Connection and request limits of the HTTP server (`[server]`). Read at start: a reload keeps
/// the values the server started with.
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Most connections open at once (default 10,000). At the cap, a new connection closes the
    /// connections that waited longest without a request in progress; when every connection
    /// has one, accepting pauses and the kernel's listen backlog holds new connections.
    #[serde(default = "crate::defaults::max_connections")]
    pub max_connections: usize,
    /// How long a client may take to send a whole request header, from the moment the
    /// connection is accepted, or from its first byte on a kept-alive connection (default 10 s).
    #[serde(default = "crate::defaults::header_read_timeout")]
    pub header_read_timeout: Timeout,
    /// How long a kept-alive connection may wait for the next request (default 60 s).
    #[serde(default = "crate::defaults::idle_timeout")]
    pub idle_timeout: Timeout,
    /// How long a request may take once its header is in: reading its body and answering
    /// (default 30 s); past it the answer is 408 and the connection is closed.
    #[serde(default = "crate::defaults::request_timeout")]
    pub request_timeout: Timeout,
    /// On SIGTERM or Ctrl-C, how long requests in progress may take to finish before the
    /// remaining connections are dropped and the process exits (default 10 s).
    #[serde(default = "crate::defaults::shutdown_timeout")]
    pub shutdown_timeout: Timeout,
    /// Largest request body, in bytes, of the endpoints that read one (`POST /v1/verify`,
    /// `/introspect`, `/v1/tokens`, `/v1/revocations`; default 64 KiB); larger ones get 413.
    #[serde(default = "crate::defaults::max_request_body")]
    pub max_request_body: usize,
    /// Largest request header, in bytes (default 64 KiB); larger ones get 431.
    #[serde(default = "crate::defaults::max_header_bytes")]
    pub max_header_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        use crate::defaults as d;
        ServerSettings {
            max_connections: d::MAX_CONNECTIONS,
            header_read_timeout: Timeout(d::HEADER_READ_TIMEOUT),
            idle_timeout: Timeout(d::IDLE_TIMEOUT),
            request_timeout: Timeout(d::REQUEST_TIMEOUT),
            shutdown_timeout: Timeout(d::SHUTDOWN_TIMEOUT),
            max_request_body: d::MAX_REQUEST_BODY,
            max_header_bytes: d::MAX_HEADER_BYTES,
        }
    }
}

/// A `(setting, message)` for each timeout outside 10 ms..=its maximum.
fn timeout_problems<const N: usize>(
    out: &mut Vec<(&'static str, String)>,
    timeouts: [(&'static str, Timeout, Duration); N],
) {
    for (name, t, max) in timeouts {
        if t.0 < Duration::from_millis(10) || t.0 > max {
            out.push((
                name,
                format!(
                    "{name} {} is outside 10ms..={}",
                    humantime::format_duration(t.0),
                    humantime::format_duration(max)
                ),
            ));
        }
    }
}

impl ServerSettings {
    /// Range checks: `(setting, message)` for every value out of its range.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let s = Duration::from_secs;
        timeout_problems(
            &mut out,
            [
                ("header_read_timeout", self.header_read_timeout, s(600)),
                ("idle_timeout", self.idle_timeout, s(3600)),
                ("request_timeout", self.request_timeout, s(3600)),
                ("shutdown_timeout", self.shutdown_timeout, s(600)),
            ],
        );
        for (name, v, min, max) in [
            ("max_connections", self.max_connections, 1, 1_000_000),
            (
                "max_request_body",
                self.max_request_body,
                1024,
                16 * 1024 * 1024,
            ),
            ("max_header_bytes", self.max_header_bytes, 8192, 1024 * 1024),
        ] {
            if !(min..=max).contains(&v) {
                out.push((name, format!("{name} {v} is outside {min}..={max}")));
            }
        }
        out
    }
}

/// `[ext_authz]`: Envoy's `envoy.service.auth.v3.Authorization/Check` over cleartext HTTP/2
/// on its own listener (see docs/integrations.md). Read at start, like `listen`: a reload
/// keeps the running listener (the rules and issuers it decides with are reloaded).
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtAuthzSettings {
    /// The gRPC listen address (`address:port`), e.g. `127.0.0.1:9191`.
    pub listen: String,
    /// Remove the client's `Authorization` header from allowed requests before Envoy forwards
    /// them (default false).
    #[serde(default)]
    pub remove_authorization: bool,
    /// Most header entries a check may carry (default 100; 1..=10,000); more is a 400
    /// `bad_headers` denial.
    #[serde(default = "crate::defaults::ext_authz_max_headers")]
    pub max_headers: usize,
    /// Most bytes of header names and values a check may carry (default 64 KiB;
    /// 1 KiB..=1 MiB); more is a 400 `bad_headers` denial.
    #[serde(default = "crate::defaults::ext_authz_max_header_bytes")]
    pub max_header_bytes: usize,
}

impl ExtAuthzSettings {
    /// Range checks: `(setting, message)` for every value out of its range.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !listen_address_ok(&self.listen) {
            out.push((
                "listen",
                format!(
                    "listen {:?} is not an address:port (an IP address or localhost)",
                    self.listen
                ),
            ));
        }
        for (name, v, min, max) in [
            ("max_headers", self.max_headers, 1, 10_000),
            ("max_header_bytes", self.max_header_bytes, 1024, 1024 * 1024),
        ] {
            if !(min..=max).contains(&v) {
                out.push((name, format!("{name} {v} is outside {min}..={max}")));
            }
        }
        out
    }
}

/// `[proxy]`: jwtd in front of one upstream (`[upstream]`), deciding every request with the
/// engine `/auth` uses (see docs/proxy.md). Read at start, like `listen`: a reload keeps the
/// running listener and upstream settings (the rules and issuers it decides with are reloaded).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// The proxy's listen address (`address:port`), e.g. `127.0.0.1:8081`: HTTP/1.1,
    /// cleartext unless `[proxy.tls]`.
    pub listen: String,
    /// `[proxy.tls]`: the proxy's listener speaks TLS (rustls), with client certificates
    /// when `client_ca_file` is set.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The longest gap between two chunks of a client's request body, and before its first
    /// (default 60 s; 10 ms..=1 h); past it the request is cut (408 before the upstream's
    /// answer, the connection closed after).
    #[serde(default = "crate::defaults::proxy_body_timeout")]
    pub body_timeout: Timeout,
    /// The longest a client's whole request body may take, from its request head (default
    /// 5 min; 10 ms..=24 h): a body trickling in just within `body_timeout` is cut past it,
    /// the same way.
    #[serde(default = "crate::defaults::proxy_body_total_timeout")]
    pub body_total_timeout: Timeout,
    /// An upgraded (WebSocket) tunnel with no byte either way for this long is closed (default
    /// 5 min; 10 ms..=24 h).
    #[serde(default = "crate::defaults::proxy_tunnel_idle_timeout")]
    pub tunnel_idle_timeout: Timeout,
    /// An upgraded tunnel is closed this long after its handshake, busy or not: its token was
    /// checked once, at the handshake (default 1 h; 10 ms..=7 days).
    #[serde(default = "crate::defaults::proxy_tunnel_max_lifetime")]
    pub tunnel_max_lifetime: Timeout,
}

impl ProxySettings {
    /// Range checks: `(setting, message)` for every value out of its range.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let s = Duration::from_secs;
        timeout_problems(
            &mut out,
            [
                ("body_timeout", self.body_timeout, s(3600)),
                ("body_total_timeout", self.body_total_timeout, s(86_400)),
                ("tunnel_idle_timeout", self.tunnel_idle_timeout, s(86_400)),
                (
                    "tunnel_max_lifetime",
                    self.tunnel_max_lifetime,
                    s(7 * 86_400),
                ),
            ],
        );
        out
    }
}

/// `[tls]` (the API listener, `listen`) and `[proxy.tls]` (the proxy's): jwtd terminates TLS
/// itself, and with `client_ca_file` asks for client certificates (RFC 8705 certificate-bound
/// tokens). Read at start, like the listeners.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM, end-entity first).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) client certificates must chain to; none: no client
    /// certificate is asked for.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `optional` (default: a client without a certificate is served, and its bound tokens
    /// are refused) or `required` (the handshake fails without a valid one). Needs
    /// `client_ca_file`.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// [`TlsSettings::client_auth`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A client may send a certificate (verified when it does).
    #[default]
    Optional,
    /// A client must send a valid certificate.
    Required,
}

/// `[upstream]`: where `[proxy]` forwards allowed requests.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// `http://host:port` or `https://host:port`, perhaps with a path put before every
    /// request's path.
    pub url: String,
    /// Longest a connection to the upstream may take, its TLS handshake included for https
    /// (default 5 s; 10 ms..=5 min); past it 504 `upstream_timeout`.
    #[serde(default = "crate::defaults::upstream_connect_timeout")]
    pub connect_timeout: Timeout,
    /// Longest from sending a request (its body included) to the upstream's response head
    /// (default 60 s; 10 ms..=1 h); past it 504 `upstream_timeout`.
    #[serde(default = "crate::defaults::upstream_response_timeout")]
    pub response_timeout: Timeout,
    /// How long an idle upstream connection is kept for reuse, and the longest gap between
    /// two chunks of a response body before it is cut (default 90 s; 10 ms..=1 h).
    #[serde(default = "crate::defaults::upstream_idle_timeout")]
    pub idle_timeout: Timeout,
    /// Most idle kept-alive connections to the upstream (default 32; 0..=10,000).
    #[serde(default = "crate::defaults::upstream_max_idle_per_host")]
    pub max_idle_per_host: usize,
    /// Remove the client's `Authorization` header, and the `[tokens] cookie` from `Cookie`,
    /// before forwarding (default false).
    #[serde(default)]
    pub remove_authorization: bool,
    /// A PEM file of CA certificates trusted for an `https` upstream, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl UpstreamSettings {
    /// Range checks: `(setting, message)` for every value out of its range.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(why) = upstream_url_problem(&self.url) {
            out.push(("url", format!("url {:?} {why}", self.url)));
        }
        let s = Duration::from_secs;
        timeout_problems(
            &mut out,
            [
                ("connect_timeout", self.connect_timeout, s(300)),
                ("response_timeout", self.response_timeout, s(3600)),
                ("idle_timeout", self.idle_timeout, s(3600)),
            ],
        );
        if self.max_idle_per_host > 10_000 {
            out.push((
                "max_idle_per_host",
                format!(
                    "max_idle_per_host {} is outside 0..=10000",
                    self.max_idle_per_host
                ),
            ));
        }
        if let Some(path) = &self.ca_file {
            if let Err(e) = std::fs::metadata(path) {
                out.push(("ca_file", format!("ca_file {}: {e}", path.display())));
            }
        }
        out
    }
}

/// Why `url` cannot be an upstream, if it cannot.
fn upstream_url_problem(url: &str) -> Option<&'static str> {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return Some("is not a URL");
    };
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
        return Some("must start with http:// or https://");
    }
    match uri.authority() {
        None => Some("has no host"),
        Some(a) if a.as_str().contains('@') => Some("must not carry credentials"),
        Some(a) if a.host().is_empty() => Some("has no host"),
        Some(_) if uri.query().is_some() => Some("must not have a query"),
        Some(_) => None,
    }
}

/// What to do when the revocation list is older than `max_staleness`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    /// Refuse every token with `revocation_unavailable` (default: fail closed).
    #[default]
    Reject,
    /// Keep accepting from the last known list (fail open), logging a warning.
    Accept,
}

/// Revocation settings.
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    /// A shared PostgreSQL store (`postgres://...`) so every instance sees every revocation;
    /// without it, the embedded SQLite store (`keys.db` in `data_dir`).
    #[serde(default)]
    pub store: Option<String>,
    /// Schema for the shared store (default: the connection's default).
    #[serde(default)]
    pub store_schema: Option<String>,
    /// Directory of the embedded store (default: the `[signing]` one, else `./jwtd-data`).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// How old the list may get while the store is unreachable (default 5 min).
    #[serde(default)]
    pub max_staleness: Option<Seconds>,
    /// Past `max_staleness`: `reject` (default) or `accept`.
    #[serde(default)]
    pub on_stale: OnStale,
    /// How often to catch up with the store even without a notification (default 10 s).
    #[serde(default)]
    pub resync_interval: Option<Seconds>,
    /// How often to reload the whole list (default 5 min).
    #[serde(default)]
    pub full_resync_interval: Option<Seconds>,
    /// The longest lifetime of any accepted token: how long subject revocations, and `jti`
    /// revocations whose token's `exp` is unknown, are kept (default 24 h; set it above the
    /// lifetime of every issuer's tokens).
    #[serde(default)]
    pub max_token_lifetime: Option<Seconds>,
}

/// `[dpop_replay]`: the shared DPoP `jti` table (docs/dpop.md, "Replay").
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DpopReplaySettings {
    /// The PostgreSQL database (`postgres://...`) every instance shares.
    pub store: String,
    /// Schema for the table (created when missing; default: the connection's default).
    #[serde(default)]
    pub store_schema: Option<String>,
    /// Longest one look-up may take, waiting for a connection included (default 250 ms;
    /// 10 ms..=10 s); past it the store counts as unavailable for that request.
    #[serde(default = "crate::defaults::dpop_replay_timeout")]
    pub timeout: Timeout,
    /// While the store cannot answer: `reject` (default: 503 `dpop_replay_unavailable`) or
    /// `local` (this instance's memory cache alone decides).
    #[serde(default)]
    pub on_unavailable: jwtd_gate::config::OnUnavailable,
    /// How often each instance deletes expired rows (default 60 s; 1 s..=1 h), in batches of
    /// [`crate::defaults::DPOP_REPLAY_PURGE_BATCH`].
    #[serde(default = "crate::defaults::dpop_replay_purge_interval")]
    pub purge_interval: Timeout,
    /// Most connections of this instance's pool (default 8; 1..=100).
    #[serde(default = "crate::defaults::dpop_replay_max_connections")]
    pub max_connections: u32,
}

impl DpopReplaySettings {
    /// Range checks: `(setting, message)` for every value out of its range.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        timeout_problems(
            &mut out,
            [("timeout", self.timeout, Duration::from_secs(10))],
        );
        if self.purge_interval.0 < Duration::from_secs(1)
            || self.purge_interval.0 > Duration::from_secs(3600)
        {
            out.push((
                "purge_interval",
                format!(
                    "purge_interval {} is outside 1s..=1h",
                    humantime::format_duration(self.purge_interval.0)
                ),
            ));
        }
        if !(1..=100).contains(&self.max_connections) {
            out.push((
                "max_connections",
                format!(
                    "max_connections {} is outside 1..=100",
                    self.max_connections
                ),
            ));
        }
        if !self.store.starts_with("postgres://") && !self.store.starts_with("postgresql://") {
            out.push((
                "store",
                "store must be a PostgreSQL URL (postgres://...)".to_owned(),
            ));
        }
        if let Some(Err(e)) = self.store_schema.as_deref().map(jwtd_store::check_schema) {
            out.push(("store_schema", e.to_string()));
        }
        out
    }
}

/// jwtd's own issuer.
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The `iss` of minted tokens and the base of the published URLs (default
    /// `http://<listen>`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// A shared PostgreSQL key store (`postgres://...`) for several instances; without it, the
    /// embedded SQLite store in `data_dir`. The KEK (JWTD_KEK or `data_dir/kek.key`) must be the
    /// same on every instance.
    #[serde(default)]
    pub store: Option<String>,
    /// Schema for the shared store (created when missing; default: the connection's default).
    #[serde(default)]
    pub store_schema: Option<String>,
    /// Where the key store and generated secrets live (default `./jwtd-data`).
    #[serde(default = "crate::defaults::data_dir")]
    pub data_dir: String,
    /// Algorithm of new keys: RS256, PS256, ES256 (default) or EdDSA; HS256 for internal use
    /// (verified by jwtd itself, never published).
    #[serde(default = "crate::defaults::signing_algorithm")]
    pub algorithm: jwtd_core::Algorithm,
    /// RSA modulus size (2048 or 3072).
    #[serde(default = "crate::defaults::rsa_bits")]
    pub rsa_bits: usize,
    /// Lifetime of a minted token when the request names none (default 10 min).
    #[serde(default)]
    pub default_ttl: Option<Seconds>,
    /// The longest lifetime a request may ask for (default 1 h).
    #[serde(default)]
    pub max_ttl: Option<Seconds>,
    /// How long a new key is published before it signs (default 1 h).
    #[serde(default)]
    pub publish_lead: Option<Seconds>,
    /// Extra time a retiring key stays published (default 10 min).
    #[serde(default)]
    pub grace: Option<Seconds>,
    /// Scheduled rotation period (default 90 days; 0 turns it off).
    #[serde(default)]
    pub rotate_every: Option<Seconds>,
    /// Audiences jwtd accepts when verifying its own tokens. Empty (the default): only tokens
    /// without `aud` are accepted, so a token minted for a partner is never accepted by `/auth`
    /// in front of internal APIs.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accept jwtd's own tokens whatever their audience (an explicit opt-in; warned at start).
    #[serde(default)]
    pub any_audience: bool,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Cross-origin resource sharing (`[cors]`) for the two endpoints a site with no backend calls
/// from the browser: `GET /v1/tokens/{token}` and `GET|POST /v1/verify`. No other endpoint
/// ever answers cross-origin requests. Read on every request (a reload applies it).
///
/// The defaults the comments below state are defined in [`crate::defaults`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// The origins allowed, exactly as browsers send them in `Origin`: `scheme://host[:port]`
    /// in lower case, `http` or `https`, no path, no trailing slash, no wildcard.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`; default
    /// 10 minutes, at most 24 hours).
    #[serde(default = "crate::defaults::cors_max_age")]
    pub max_age: Seconds,
    /// Send `Access-Control-Allow-Credentials: true`, so pages may send cookies (a `[tokens]
    /// cookie`) with `credentials: "include"` (default false; a bearer token in
    /// `Authorization` needs no credentials mode).
    #[serde(default)]
    pub allow_credentials: bool,
}

/// The longest `[cors] max_age`, in seconds (browsers cap it lower anyway).
pub const MAX_CORS_MAX_AGE: u64 = 86_400;

impl CorsSettings {
    /// True when `origin` (a request's `Origin` header, byte for byte) is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.allowed_origins.iter().any(|o| o.as_bytes() == origin)
    }

    /// Why an `allowed_origins` entry can never match a browser's `Origin`, if it cannot.
    fn origin_problem(origin: &str) -> Option<&'static str> {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return Some("not scheme://host[:port]");
        };
        if scheme != "http" && scheme != "https" {
            return Some("the scheme must be http or https (in lower case)");
        }
        if origin.contains('*') {
            return Some("wildcards are not allowed: name each origin");
        }
        // An IPv6 literal is bracketed: its colons are not the port's.
        let split_at = match rest.strip_prefix('[') {
            Some(r) => r.find(']').map(|i| i + 2).unwrap_or(rest.len()),
            None => rest.find(':').unwrap_or(rest.len()),
        };
        let (host, port) = rest.split_at(split_at);
        let port = match port.strip_prefix(':') {
            Some(p) => Some(p),
            None if port.is_empty() => None,
            None => return Some("not scheme://host[:port]"),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-.[]:".contains(&c));
        if !host_ok {
            return Some("the host must be lower case, without path, query or trailing slash");
        }
        if let Some(p) = port {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
                return Some("the port must be a number up to 65535");
            }
        }
        None
    }
}

/// Introspection client credentials (HTTP Basic).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// Client id.
    pub client_id: String,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<String>,
}

impl Introspection {
    /// The client secret's source: exactly one of `client_secret_env`, `client_secret_file`.
    pub fn client_secret(&self) -> Result<SecretRef, String> {
        match SecretRef::from_pair(
            ("client_secret_env", self.client_secret_env.as_deref()),
            ("client_secret_file", self.client_secret_file.as_deref()),
        ) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(
                "introspection needs exactly one of client_secret_env, client_secret_file".into(),
            ),
            Err(e) => Err(format!("introspection: {e}")),
        }
    }
}

/// Admin API credentials (`Authorization: Bearer <key>`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Environment variable holding the admin API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the admin API key.
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// Require the admin API key for `/metrics` and for the details of `/readyz` (without it,
    /// `/readyz` answers only its status and `{"ready": bool}`).
    #[serde(default)]
    pub protect_status: bool,
}

impl Admin {
    /// The API key's source: exactly one of `api_key_env`, `api_key_file`.
    pub fn api_key(&self) -> Result<SecretRef, String> {
        match SecretRef::from_pair(
            ("api_key_env", self.api_key_env.as_deref()),
            ("api_key_file", self.api_key_file.as_deref()),
        ) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err("admin needs exactly one of api_key_env, api_key_file".into()),
            Err(e) => Err(format!("admin: {e}")),
        }
    }
}

/// True for `IP:port`, `[IPv6]:port` and `localhost:port`: what `listen` and `--listen` take
/// (no other name, so checking it never needs DNS).
pub fn listen_address_ok(listen: &str) -> bool {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    listen
        .strip_prefix("localhost:")
        .is_some_and(|port| port.parse::<u16>().is_ok())
}

/// A duration with millisecond precision, written as whole seconds (`10`) or a duration string
/// (`"500ms"`, `"10s"`, `"1m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Clamped: the range check refuses it with a readable message, and no later arithmetic
        // on it can overflow.
        duration_value(d, Duration::from_secs(u32::MAX as u64)).map(Timeout)
    }
}

/// A key of the configuration that a problem found by [`crate::check_inputs`] concerns, so that
/// the problem is reported on its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `key` of the top-level table `section` (the section's line when the key is not there).
    Key(&'static str, &'static str),
    /// `key` of the `[[issuer]]` table whose `name` value starts at this byte offset
    /// ([`toml::Spanned::span`] of [`IssuerConfig::name`]; the `name` line when the key is not
    /// there).
    Issuer(usize, &'static str),
}

/// The parsed document: where its keys are, for the line of every error.
struct Doc<'a> {
    text: &'a str,
    root: DeTable<'a>,
    /// The `[[issuer]]` tables as written.
    issuers: Vec<Spanned<DeValue<'a>>>,
    /// The keys left out of the configuration for an error in them (paths from the top): a
    /// check never counts them as absent.
    left_out: Vec<Vec<String>>,
    /// The same for each `[[issuer]]` table, by the offset of its name.
    issuer_left_out: BTreeMap<usize, Vec<Vec<String>>>,
}

impl Doc<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The line of `key` in the top-level table `section`, else of `section` itself; 0 when
    /// the file has no such section.
    fn section_line(&self, section: &str, key: Option<&str>) -> usize {
        let Some((k, v)) = self.root.get_key_value(section) else {
            return 0;
        };
        if let (Some(key), DeValue::Table(t)) = (key, v.get_ref()) {
            if let Some((k, _)) = t.get_key_value(key) {
                return self.line(k.span().start);
            }
        }
        self.line(k.span().start)
    }

    /// The line of `key` in the `[[issuer]]` table whose name starts at `name_at`, else of its
    /// name.
    fn issuer_line(&self, name_at: usize, key: &str) -> usize {
        for t in &self.issuers {
            let DeValue::Table(t) = t.get_ref() else {
                continue;
            };
            if t.get("name").is_some_and(|n| n.span().start == name_at) {
                if let Some((k, _)) = t.get_key_value(key) {
                    return self.line(k.span().start);
                }
            }
        }
        self.line(name_at)
    }

    /// True when the key at `path` was left out for an error in it.
    fn left_out(&self, path: &[&str]) -> bool {
        self.left_out.iter().any(|p| p == path)
    }

    /// True when `key` of the issuer whose name starts at `name_at` was left out for an error.
    fn issuer_left_out(&self, name_at: usize, key: &str) -> bool {
        self.issuer_left_out
            .get(&name_at)
            .is_some_and(|l| l.iter().any(|p| p == &[key]))
    }

    fn place_line(&self, place: Place) -> usize {
        match place {
            Place::Key(section, key) => self.section_line(section, Some(key)),
            Place::Issuer(name_at, key) => self.issuer_line(name_at, key),
        }
    }
}

/// The path of the deepest key of `table` whose key or value holds byte `pos`.
fn locate(table: &DeTable<'_>, pos: usize) -> Option<Vec<String>> {
    for (k, v) in table.iter() {
        if let DeValue::Table(t) = v.get_ref() {
            if let Some(mut path) = locate(t, pos) {
                path.insert(0, k.get_ref().to_string());
                return Some(path);
            }
        }
        if k.span().contains(&pos) || v.span().contains(&pos) {
            return Some(vec![k.get_ref().to_string()]);
        }
    }
    None
}

/// Removes the key at `path` from the table `value`; false when there is none.
fn remove_path(value: &mut Spanned<DeValue<'_>>, path: &[String]) -> bool {
    let DeValue::Table(t) = value.get_mut() else {
        return false;
    };
    match path {
        [] => false,
        [k] => t.remove(k.as_str()).is_some(),
        [k, rest @ ..] => t.get_mut(k.as_str()).is_some_and(|v| remove_path(v, rest)),
    }
}

/// Deserializes the table `value`, collecting every error rather than the first: after an
/// error, the key it points at is left out and the rest is deserialized again (a required key
/// left out that way is not reported missing as well). Returns the value once the rest
/// deserializes (`None` when an error points at no key), and the paths of the keys left out.
fn deserialize_each<T: serde::de::DeserializeOwned>(
    mut value: Spanned<DeValue<'_>>,
    text: &str,
    prefix: &str,
    errors: &mut Vec<(usize, String)>,
) -> (Option<T>, Vec<Vec<String>>) {
    let mut removed: Vec<Vec<String>> = Vec::new();
    loop {
        let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(t) => return (Some(t), removed),
            Err(e) => e,
        };
        let path = match (e.span(), value.get_ref()) {
            (Some(s), DeValue::Table(t)) => locate(t, s.start),
            _ => None,
        };
        let message = e.message();
        let left_out = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
            .is_some_and(|field| {
                let mut p = path.clone().unwrap_or_default();
                p.push(field.to_owned());
                removed.contains(&p)
            });
        if !left_out {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            errors.push((line, format!("{prefix}{message}")));
        }
        match path {
            Some(p) if remove_path(&mut value, &p) => removed.push(p),
            _ => return (None, removed),
        }
    }
}

/// What [`Config::checked`] checks beyond the text itself.
#[derive(Clone, Copy)]
struct Checks {
    /// Read the secrets and key files the file names ([`crate::check_inputs`]).
    inputs: bool,
    /// Refuse a file with nothing to verify.
    something_to_verify: bool,
}

impl Config {
    /// Reads a configuration file and checks everything `jwtd serve` checks before it starts:
    /// the text (syntax, `${VAR}`s, types, unknown keys, every rule) and the secrets and key
    /// files it names ([`crate::check_inputs`]). A file with nothing to verify (no `[[issuer]]`
    /// and no `[signing]`) is refused: a service that refuses every token is a mistake. Every
    /// error is reported, each with its line. `jwtd serve`, `jwtd config check` and
    /// `jwtd verify --config` all read their file with this. The variables it reads come from
    /// the process environment ([`Config::load_with_env`] with [`Env::process`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &Env::process())
    }

    /// [`Config::load`] in the environment `env`: `${VAR}`s and the secrets the file names by
    /// variable are read from `env`, which the configuration keeps ([`Config::env`]).
    pub fn load_with_env(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::read(
            path,
            env,
            Checks {
                inputs: true,
                something_to_verify: true,
            },
        )
    }

    /// [`Config::load`] without reading the secrets and key files the file names: what the
    /// `jwtd keys` and `jwtd token` commands use (they need only `[signing]`).
    pub fn load_settings(path: &Path) -> Result<Config, ConfigError> {
        Config::load_settings_with_env(path, &Env::process())
    }

    /// [`Config::load_settings`] in the environment `env` (see [`Config::load_with_env`]).
    pub fn load_settings_with_env(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::read(
            path,
            env,
            Checks {
                inputs: false,
                something_to_verify: true,
            },
        )
    }

    fn read(path: &Path, env: &Env, checks: Checks) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            errors: vec![(0, format!("cannot read: {e}"))],
        })?;
        Config::checked(&text, &file, env, checks)
    }

    /// Parses and checks configuration text (without reading the files it names); `file`
    /// names it in messages. Every error is reported, each with its line: a syntax error ends
    /// the parse, but in a well-formed file each `[[issuer]]` table and each section is read on
    /// its own, and within one an error leaves its key out and the rest is read on. `${VAR}`s
    /// are replaced from the process environment ([`Config::parse_with_env`] with
    /// [`Env::process`]).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, file, &Env::process())
    }

    /// [`Config::parse`] in the environment `env`: `${VAR}`s are replaced from `env`, which the
    /// configuration keeps ([`Config::env`]) for the secrets and the key encryption key the
    /// service reads when it is built. Tests and embedding applications pass their variables
    /// this way instead of setting the process's.
    pub fn parse_with_env(text: &str, file: &str, env: &Env) -> Result<Config, ConfigError> {
        Config::checked(
            text,
            file,
            env,
            Checks {
                inputs: false,
                something_to_verify: false,
            },
        )
    }

    /// The warnings about the rules ([`jwtd_gate::rules::RuleSet::lint`], and the resources'
    /// [`jwtd_gate::resource::Resources::lint`]): rules that load
    /// but probably do not do what was meant, each naming its rules with their lines. `jwtd
    /// config check` prints them, `jwtd serve` logs them at start. Also one for each issuer
    /// with `[issuer.dpop] mode = "off"` (its DPoP-bound tokens are taken as bearer tokens).
    /// Empty when the rules do not compile (a checked configuration's always do).
    pub fn rule_warnings(&self) -> Vec<String> {
        let Ok(set) = self.rule_set() else {
            return Vec::new();
        };
        let mut out = set.lint();
        // And the resources' ([`jwtd_gate::resource::Resources::lint`]).
        let mut issuers: Vec<(&str, Option<&str>)> = self
            .issuers
            .iter()
            .map(|i| (i.name.get_ref().as_str(), i.issuer.as_deref()))
            .collect();
        if self.signing.is_some() {
            issuers.push(("self", Some("(jwtd's own iss)")));
        }
        if let Ok(r) = jwtd_gate::resource::Resources::build(
            &self.resource,
            &issuers,
            &set,
            &self.tokens,
            &self.text.0,
        ) {
            out.extend(r.lint(&self.resource, &set));
        }
        // DPoP off for an issuer: its DPoP-bound tokens are then taken as bearer tokens (the
        // downgrade RFC 9449 section 7.2 forbids), so a stolen one works without the key.
        for i in &self.issuers {
            if i.dpop
                .as_ref()
                .is_some_and(|d| d.mode == jwtd_gate::config::DpopMode::Off)
            {
                let name = i.name.get_ref();
                let at = match self.text.0.is_empty() {
                    true => String::new(),
                    false => format!(" (line {})", line_of(&self.text.0, i.name.span().start)),
                };
                out.push(format!(
                    "issuer {name:?}{at} has [issuer.dpop] mode = \"off\": its DPoP-bound tokens \
                     (cnf.jkt) are taken as bearer tokens without a proof, the downgrade RFC 9449 \
                     forbids (use \"enforce-cnf\", the default, unless a later hop checks the proofs; \
                     then set on_pass = \"keep\" too, or the DPoP header is removed before it)"
                ));
            }
        }
        out
    }

    /// The rules compiled as the engine compiles them (against the `[[issuer]]`s and jwtd's
    /// own `self`), with their lines: for `jwtd rules explain`, which needs no keys. Every
    /// error, one per line, when they do not compile (a checked configuration's always do).
    pub fn rule_set(&self) -> Result<jwtd_gate::rules::RuleSet, String> {
        jwtd_gate::config::compile_rules(
            &self.rules,
            &self.rule,
            &self.issuers,
            self.own_issuer_names(),
            &self.text.0,
        )
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// The issuer names rules may use besides the `[[issuer]]`s: jwtd's own (`self`) when it
    /// signs.
    fn own_issuer_names(&self) -> &'static [&'static str] {
        if self.signing.is_some() {
            &["self"]
        } else {
            &[]
        }
    }

    fn checked(text: &str, file: &str, env: &Env, checks: Checks) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let expanded = interpolate_with_env(text, env, &mut errors);
        // A variable that is not set leaves its string empty: what else is said about its
        // line follows from that and is left out.
        let interpolation = errors.len();
        let unset: BTreeSet<usize> = errors.iter().map(|(line, _)| *line).collect();
        let config = Config::collect(&expanded, env, checks, &mut errors);
        let mut errors: Vec<(usize, String)> = errors
            .into_iter()
            .enumerate()
            .filter(|(i, (line, _))| *i < interpolation || !unset.contains(line))
            .map(|(_, e)| e)
            .collect();
        errors.sort_by_key(|(line, _)| (*line == 0, *line));
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigError {
                file: file.to_owned(),
                errors,
            }),
        }
    }

    /// Every error of the (interpolated) text into `errors`; the configuration, with what
    /// holds errors left out, when the text is well-formed TOML.
    fn collect(
        text: &str,
        env: &Env,
        checks: Checks,
        errors: &mut Vec<(usize, String)>,
    ) -> Option<Config> {
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let line = e.span().map_or(0, |s| line_of(text, s.start));
                errors.push((line, e.message().to_owned()));
                return None;
            }
        };
        let root_span = root.span();
        let mut root = root.into_inner();
        // Each [[issuer]] table on its own: an error in one hides nothing in the others.
        let issuer_tables: Vec<Spanned<DeValue<'_>>> = match root.get("issuer") {
            Some(v) if matches!(v.get_ref(), DeValue::Array(_)) => {
                match root.remove("issuer").map(Spanned::into_inner) {
                    Some(DeValue::Array(a)) => a.into_iter().collect(),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        let mut issuers = Vec::new();
        let mut issuer_left_out = BTreeMap::new();
        for t in &issuer_tables {
            let prefix = match t.get_ref().as_table().and_then(|t| t.get("name")) {
                Some(n) => match n.get_ref().as_str() {
                    Some(n) => format!("issuer {n:?}: "),
                    None => "issuer: ".to_owned(),
                },
                None => "issuer: ".to_owned(),
            };
            // What has errors is left out, and the rest is checked too.
            let (ic, removed) = deserialize_each::<IssuerConfig>(t.clone(), text, &prefix, errors);
            if let Some(ic) = ic {
                issuer_left_out.insert(ic.name.span().start, removed);
                issuers.push(ic);
            }
        }
        let root_value = Spanned::new(root_span, DeValue::Table(root.clone()));
        let (config, left_out) = deserialize_each::<Config>(root_value, text, "", errors);
        let mut config = config?;
        config.issuers = issuers;
        config.text = ExpandedText(std::sync::Arc::from(text));
        config.env = env.clone();
        let doc = Doc {
            text,
            root,
            issuers: issuer_tables,
            left_out,
            issuer_left_out,
        };
        config.check(&doc, errors);
        if checks.inputs {
            for (place, message) in crate::check_inputs(&config) {
                errors.push((doc.place_line(place), message));
            }
        }
        if checks.something_to_verify
            && doc.issuers.is_empty()
            && !doc.root.contains_key("issuer")
            && !doc.root.contains_key("signing")
        {
            errors.push((
                0,
                "nothing to verify: add an [[issuer]] table (tokens of an identity provider) \
                 or a [signing] table (jwtd as its own issuer), see docs/configuration.md; \
                 `jwtd serve` without --config runs the embedded issuer"
                    .into(),
            ));
        }
        Some(config)
    }

    fn check(&self, doc: &Doc<'_>, errors: &mut Vec<(usize, String)>) {
        if !listen_address_ok(&self.listen) {
            let line = doc.section_line("listen", None);
            errors.push((
                line,
                format!(
                    "listen {:?} is not an address:port (an IP address or localhost)",
                    self.listen
                ),
            ));
        }
        // On the line of the key each concerns (the name's for the issuer as a whole).
        let left_out =
            |n: usize, key: &str| doc.issuer_left_out(self.issuers[n].name.span().start, key);
        for (n, key, message) in jwtd_gate::config::issuers_problems(&self.issuers, &left_out) {
            let name_at = self.issuers[n].name.span().start;
            let line = if key == "name" {
                doc.line(name_at)
            } else {
                doc.issuer_line(name_at, key)
            };
            errors.push((line, message));
        }
        if let Err(e) = TrustedProxies::parse(&self.trusted_proxies) {
            let line = doc
                .text
                .find("trusted_proxies")
                .map(|o| line_of(doc.text, o))
                .unwrap_or(0);
            errors.push((line, e));
        }
        if let Err(e) = self.forwarded.compile() {
            errors.push((doc.section_line("forwarded", None), e));
        }
        // A forwarded certificate is believed from `trusted_proxies` only: the peers allowed to
        // state a client's certificate are named, never left to the loopback default (any
        // local process, or a front on the same host that passes the client's own header
        // through, would be one).
        if self.forwarded.client_cert.is_some() && !doc.root.contains_key("trusted_proxies") {
            errors.push((
                doc.section_line("forwarded", None),
                "[forwarded] client_cert needs an explicit trusted_proxies (the addresses of the \
                 proxies that set the certificate header, e.g. trusted_proxies = [\"127.0.0.1\"]): \
                 the loopback default is not taken for it"
                    .into(),
            ));
        }
        for (section, tls) in [
            ("tls", self.tls.as_ref()),
            ("proxy", self.proxy.as_ref().and_then(|p| p.tls.as_ref())),
        ] {
            if let Some(t) = tls {
                if t.client_auth.is_some() && t.client_ca_file.is_none() {
                    errors.push((
                        doc.section_line(section, None),
                        format!(
                            "[{}] client_auth needs client_ca_file (the CAs client certificates chain to)",
                            if section == "tls" { "tls" } else { "proxy.tls" }
                        ),
                    ));
                }
            }
        }
        // The rules, checked against the issuers they name (jwtd's own is "self").
        jwtd_gate::config::check_rules(
            &self.rules,
            &self.rule,
            &self.issuers,
            self.own_issuer_names(),
            doc.text,
            errors,
        );
        // The resources, against the issuers (by `iss`; jwtd's own is known once it runs)
        // and the rules.
        let own: &[(&str, Option<&str>)] = if self.signing.is_some() {
            &[("self", Some("(jwtd's own iss)"))]
        } else {
            &[]
        };
        jwtd_gate::config::check_resources(
            &self.resource,
            &self.rules,
            &self.rule,
            &self.issuers,
            own,
            &self.tokens,
            doc.text,
            errors,
        );
        if let Some(intro) = &self.introspection {
            if intro.client_id.trim().is_empty() {
                let line = doc.section_line("introspection", None);
                errors.push((line, "introspection client_id must not be empty".into()));
            }
            let secret_left_out = doc.left_out(&["introspection", "client_secret_env"])
                || doc.left_out(&["introspection", "client_secret_file"]);
            if let (Err(e), false) = (intro.client_secret(), secret_left_out) {
                errors.push((doc.section_line("introspection", None), e));
            }
        }
        if let Some(s) = &self.signing {
            let line = doc.section_line("signing", None);
            use jwtd_core::Algorithm::*;
            if !matches!(s.algorithm, RS256 | PS256 | ES256 | EdDSA | HS256) {
                errors.push((
                    line,
                    format!(
                        "signing algorithm {} is not offered; use RS256, PS256, ES256, EdDSA (or HS256 for internal use)",
                        s.algorithm
                    ),
                ));
            }
            if s.any_audience && !s.audiences.is_empty() {
                errors.push((
                    line,
                    "[signing] any_audience and audiences exclude each other".into(),
                ));
            }
            if !matches!(s.rsa_bits, 2048 | 3072) {
                errors.push((line, "rsa_bits must be 2048 or 3072".into()));
            }
            if self.admin.is_none() && !doc.left_out(&["admin"]) {
                errors.push((
                    line,
                    "signing needs an [admin] api key to authorise POST /v1/tokens".into(),
                ));
            }
            // jwtd's own issuer is routed to first: an [[issuer]] with the same `iss` would
            // never see a token.
            let own = s
                .issuer
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.listen));
            let own = own.trim_end_matches('/');
            if let Some(i) = self
                .issuers
                .iter()
                .find(|i| i.issuer.as_deref() == Some(own))
            {
                errors.push((
                    line,
                    format!(
                        "the [signing] issuer {own:?} is also the iss of issuer {:?}; give them different iss values",
                        i.name.get_ref()
                    ),
                ));
            }
        }
        if self.revocation.is_some() && self.admin.is_none() && !doc.left_out(&["admin"]) {
            let line = doc.section_line("revocation", None);
            errors.push((
                line,
                "revocation needs an [admin] api key to authorise POST /v1/revocations".into(),
            ));
        }
        if let Some(d) = &self.dpop_replay {
            for (key, p) in d.problems() {
                errors.push((
                    doc.section_line("dpop_replay", Some(key)),
                    format!("dpop_replay: {p}"),
                ));
            }
        }
        for i in &self.issuers {
            let Some(d) = &i.dpop else { continue };
            let line = doc.issuer_line(i.name.span().start, "dpop");
            // The table's own checks (the nonce secret is read when the service is built).
            let leeway = i
                .leeway
                .map_or(jwtd_gate::config::defaults::LEEWAY, |s| s.0);
            if let Err(e) = d.policy(leeway) {
                errors.push((line, format!("issuer {:?}: {e}", i.name.get_ref())));
            } else if self.dpop_replay.is_none()
                && d.replay_store == jwtd_gate::config::ReplayStoreKind::Shared
            {
                errors.push((
                    line,
                    format!(
                        "issuer {:?}: [issuer.dpop] replay_store = \"shared\" needs a \
                         [dpop_replay] table naming the PostgreSQL store the instances share",
                        i.name.get_ref()
                    ),
                ));
            }
        }
        for (key, p) in self.server.problems() {
            errors.push((
                doc.section_line("server", Some(key)),
                format!("server: {p}"),
            ));
        }
        if let Some(p) = &self.proxy {
            if !listen_address_ok(&p.listen) {
                errors.push((
                    doc.section_line("proxy", Some("listen")),
                    format!(
                        "proxy: listen {:?} is not an address:port (an IP address or localhost)",
                        p.listen
                    ),
                ));
            }
        }
        match (&self.proxy, &self.upstream) {
            (Some(_), None) if !doc.left_out(&["upstream"]) => errors.push((
                doc.section_line("proxy", None),
                "proxy: [proxy] needs an [upstream] url to forward to".into(),
            )),
            (None, Some(_)) => errors.push((
                doc.section_line("upstream", None),
                "upstream: [upstream] is used only with [proxy] (add [proxy] listen)".into(),
            )),
            _ => {}
        }
        for (key, p) in self.proxy.iter().flat_map(|p| p.problems()) {
            errors.push((doc.section_line("proxy", Some(key)), format!("proxy: {p}")));
        }
        for (key, p) in self.upstream.iter().flat_map(|u| u.problems()) {
            errors.push((
                doc.section_line("upstream", Some(key)),
                format!("upstream: {p}"),
            ));
        }
        for (key, p) in self.ext_authz.iter().flat_map(|e| e.problems()) {
            errors.push((
                doc.section_line("ext_authz", Some(key)),
                format!("ext_authz: {p}"),
            ));
        }
        if let Some(cors) = &self.cors {
            let line = doc.section_line("cors", Some("allowed_origins"));
            if cors.allowed_origins.is_empty() {
                errors.push((
                    line,
                    "cors: allowed_origins must name at least one origin".into(),
                ));
            }
            for o in &cors.allowed_origins {
                if let Some(why) = CorsSettings::origin_problem(o) {
                    errors.push((line, format!("cors: origin {o:?}: {why}")));
                }
            }
            if cors.max_age.0 > MAX_CORS_MAX_AGE {
                errors.push((
                    doc.section_line("cors", Some("max_age")),
                    format!("cors: max_age is at most {MAX_CORS_MAX_AGE} s (24 h)"),
                ));
            }
        }
        if let Some(admin) = &self.admin {
            let key_left_out =
                doc.left_out(&["admin", "api_key_env"]) || doc.left_out(&["admin", "api_key_file"]);
            if let (Err(e), false) = (admin.api_key(), key_left_out) {
                errors.push((doc.section_line("admin", None), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_exact_browser_origins() {
        for good in [
            "https://site.example",
            "http://localhost:3000",
            "https://[::1]:8443",
            "http://127.0.0.1",
        ] {
            assert_eq!(CorsSettings::origin_problem(good), None, "{good}");
        }
        for bad in [
            "*",
            "https://*.site.example",
            "https://site.example/",
            "https://Site.example",
            "HTTPS://site.example",
            "site.example",
            "ftp://site.example",
            "https://site.example:99999",
            "https://site.example:",
            "https://[::1]x",
            "null",
        ] {
            assert!(CorsSettings::origin_problem(bad).is_some(), "{bad}");
        }
        let text = "[cors]\nallowed_origins = [\"https://a.example/\"]\nmax_age = \"2d\"\n";
        let shown = Config::parse(text, "jwtd.toml").unwrap_err().to_string();
        assert!(
            shown.contains("jwtd.toml:2: cors: origin \"https://a.example/\""),
            "{shown}"
        );
        assert!(
            shown.contains("jwtd.toml:3: cors: max_age is at most"),
            "{shown}"
        );
        let empty = Config::parse("[cors]\nallowed_origins = []\n", "f").unwrap_err();
        assert!(empty.to_string().contains("at least one origin"), "{empty}");
        let ok = Config::parse("[cors]\nallowed_origins = [\"https://a.example\"]\n", "f").unwrap();
        let cors = ok.cors.unwrap();
        assert_eq!(cors.max_age, Seconds(600));
        assert!(cors.allows(b"https://a.example") && !cors.allows(b"https://a.example.evil"));
        assert_eq!(Config::parse("", "f").unwrap().cors, None, "off by default");
    }

    #[test]
    fn every_error_has_its_line() {
        let text = r#"
listen = "127.0.0.1:8080"

[[issuer]]
name = "a"
issuer = "https://a.example/"
algorithms = ["RS256"]

[[issuer]]
name = "a"
issuer = "https://a.example/"
jwks_file = "x"
discovery = "https://a.example/"
algorithms = []
"#;
        let e = Config::parse(text, "jwtd.toml").unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("jwtd.toml:5: issuer \"a\": no key source"),
            "{shown}"
        );
        assert!(
            shown.contains("jwtd.toml:10: issuer \"a\": duplicate issuer name"),
            "{shown}"
        );
        assert!(
            shown.contains("jwtd.toml:10: issuer \"a\": several key sources"),
            "{shown}"
        );
        assert!(
            shown.contains("jwtd.toml:14: issuer \"a\": algorithms must name"),
            "{shown}"
        );
    }

    #[test]
    fn the_signing_issuer_cannot_share_an_iss() {
        let text = |own: &str| {
            format!(
                "listen = \"127.0.0.1:8080\"\n[admin]\napi_key_env = \"A\"\n\
                 [signing]\n{own}\n[[issuer]]\nname = \"idp\"\nissuer = \"https://me.example\"\n\
                 secret_env = \"S\"\nalgorithms = [\"HS256\"]\n"
            )
        };
        for own in [
            "issuer = \"https://me.example\"",
            "issuer = \"https://me.example/\"",
        ] {
            let e = Config::parse(&text(own), "f").unwrap_err().to_string();
            assert!(
                e.contains("f:4: the [signing] issuer \"https://me.example\" is also the iss of issuer \"idp\""),
                "{e}"
            );
        }
        assert!(Config::parse(&text("issuer = \"https://other.example\""), "f").is_ok());
    }

    #[test]
    fn syntax_and_type_errors_point_at_lines() {
        let e = Config::parse("listen = \"x\"\n[[issuer]]\nname = \"a\"\nalgorithms = [\"none\"]\nsecret_env = \"S\"\n", "f").unwrap_err();
        assert_eq!(e.errors.len(), 2, "{e}");
        assert_eq!(e.errors[0].0, 1, "{e}");
        assert!(e.errors[0].1.contains("not an address:port"), "{e}");
        assert_eq!(e.errors[1].0, 4, "{e}");
        assert!(e.to_string().contains("f:4: issuer \"a\": "), "{e}");
        assert!(e.to_string().contains("never accepted"), "{e}");
        let e = Config::parse("listen = \n", "f").unwrap_err();
        assert_eq!(e.errors[0].0, 1, "{e}");
        let e =
            Config::parse("[[issuer]]\nname = \"a\"\nalgorithm = [\"RS256\"]\n", "f").unwrap_err();
        assert!(
            e.errors
                .iter()
                .any(|(l, m)| *l == 3 && m.contains("unknown field `algorithm`")),
            "unknown field is reported on its line: {e}"
        );
        assert!(
            e.errors
                .iter()
                .any(|(l, m)| *l == 1 && m.contains("missing field `algorithms`")),
            "a missing field on its table's line: {e}"
        );
    }

    /// Issue 15 #4: every error of a well-formed file is reported, each on its line, not only
    /// the first: errors in several issuers, several in one issuer or section, type errors and
    /// rule errors together; a key left out for an error is not reported again as missing, and
    /// the checks that depend on it are not run as if it were absent.
    #[test]
    fn every_error_of_a_file_is_reported() {
        let text = r#"listen = "nowhere"
[admin]
api_key_env = 5
[server]
max_connections = 0
idle_timeout = "soon"
header_timeout = 5
[signing]
rsa_bits = 1024

[[issuer]]
name = "one"
issuer = "https://one.example"
jwks_url = "https://one.example/jwks"
algoritms = ["RS256"]

[[issuer]]
name = "two"
issuer = "https://two.example"
jwks_file = 7
algorithms = ["RS256"]
leeway = "2h"

[[issuer]]
name = "three"
issuer = "https://three.example"
secret_env = "S"
algorithms = ["HS256", "none"]

[[issuer]]
name = "four"
issuer = "https://four.example"
discovery = "https://four.example"
algorithms = ["RS256"]
any_audience = true
audiences = ["x"]
[issuer.headers]
X-Ok = 3
"#;
        let e = Config::parse(text, "jwtd.toml").unwrap_err();
        let lines: Vec<usize> = e.errors.iter().map(|(l, _)| *l).collect();
        let shown = e.to_string();
        for (line, what) in [
            (1, "listen \"nowhere\" is not an address:port"),
            (3, "invalid type: integer `5`, expected a string"),
            (5, "server: max_connections 0 is outside"),
            (6, "\"soon\" is not a duration"),
            (7, "unknown field `header_timeout`"),
            (8, "rsa_bits must be 2048 or 3072"),
            (11, "issuer \"one\": missing field `algorithms`"),
            (15, "issuer \"one\": unknown field `algoritms`"),
            (20, "issuer \"two\": invalid type: integer `7`"),
            (22, "issuer \"two\": leeway is at most 600 s"),
            (28, "issuer \"three\": algorithm \"none\" is never accepted"),
            (
                36,
                "issuer \"four\": any_audience and audiences exclude each other",
            ),
            (
                38,
                "issuer \"four\": invalid type: integer `3`, expected a string",
            ),
        ] {
            assert!(
                e.errors.iter().any(|(l, m)| *l == line && m.contains(what)),
                "line {line}: {what:?} in\n{shown}"
            );
        }
        assert_eq!(e.errors.len(), 13, "nothing else:\n{shown}");
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "in the file's order");
        // Left out for its error, the admin key is not said to be missing, nor [admin]; the
        // jwks_file of "two" is not said to be no key source.
        assert!(!shown.contains("needs exactly one of"), "{shown}");
        assert!(!shown.contains("needs an [admin]"), "{shown}");
        assert!(!shown.contains("no key source"), "{shown}");
    }

    #[test]
    fn dpop_replay_section_is_checked() {
        let issuer = "[[issuer]]\nname = \"as\"\njwks_file = \"j.json\"\n\
                      algorithms = [\"ES256\"]\nany_audience = true\n\
                      [issuer.dpop]\nreplay_store = \"shared\"\n";
        let e = Config::parse(issuer, "f").unwrap_err();
        assert!(e.to_string().contains("needs a [dpop_replay] table"), "{e}");
        assert_eq!(e.errors[0].0, 6, "{e}");
        // The table's own checks run at load too (`jwtd config check`), review L2's among them.
        for (table, want) in [
            ("replay = \"check\"", "it would check nothing"),
            ("max_age = 0", "max_age is 0 s"),
            ("replay_max_per_key = 0", "replay_max_per_key is 0"),
        ] {
            let text = issuer.replace("replay_store = \"shared\"", table);
            let e = Config::parse(&text, "f").unwrap_err();
            assert!(e.to_string().contains(want), "{table}: {e}");
        }
        let e = Config::parse(
            "[dpop_replay]\nstore = \"mysql://x\"\ntimeout = \"1ms\"\npurge_interval = \"2h\"\n\
             max_connections = 0\non_unavailable = \"local\"\n",
            "f",
        )
        .unwrap_err();
        let lines: Vec<usize> = e.errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{e}");
        let e = Config::parse(
            "[dpop_replay]\non_unavailable = \"maybe\"\nstore = \"postgres://x\"\n",
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
        // A schema name PostgreSQL would refuse at run time is refused at load (second
        // review, L4).
        for bad in ["", "2024", "a-b", "a;drop", &"x".repeat(64)] {
            let e = Config::parse(
                &format!("[dpop_replay]\nstore = \"postgres://x\"\nstore_schema = \"{bad}\"\n"),
                "f",
            )
            .unwrap_err();
            assert!(e.to_string().contains("schema name"), "{bad:?}: {e}");
            assert_eq!(e.errors[0].0, 3, "{e}");
        }
        let c = Config::parse(
            &format!("{issuer}[dpop_replay]\nstore = \"postgres://db/jwtd\"\non_unavailable = \"local\"\n"),
            "f",
        )
        .unwrap();
        let d = c.dpop_replay.unwrap();
        assert_eq!(d.on_unavailable, jwtd_gate::config::OnUnavailable::Local);
        assert_eq!(d.timeout.0, crate::defaults::DPOP_REPLAY_TIMEOUT);
    }

    #[test]
    fn revocation_section_is_checked() {
        let e = Config::parse("[revocation]\nmax_staleness = \"1m\"\n", "f").unwrap_err();
        assert_eq!(e.errors[0].0, 1, "{e}");
        assert!(e.to_string().contains("needs an [admin]"), "{e}");
        let e = Config::parse(
            "[admin]\napi_key_env = \"K\"\n[revocation]\non_stale = \"maybe\"\n",
            "f",
        )
        .unwrap_err();
        assert_eq!(e.errors[0].0, 4, "{e}");
        let c = Config::parse(
            "[admin]\napi_key_env = \"K\"\n[revocation]\nmax_staleness = \"30s\"\non_stale = \"accept\"\n",
            "f",
        )
        .unwrap();
        let r = c.revocation.unwrap();
        assert_eq!(
            (r.max_staleness, r.on_stale),
            (Some(Seconds(30)), OnStale::Accept)
        );
    }

    /// Finding 17: an environment value is one string value, whatever it holds: it can never
    /// close its string and add TOML (a second audience, another key).
    #[test]
    fn interpolated_values_cannot_inject_toml() {
        let env = Env::from_vars([
            ("JWTD_TEST_INJECT", "api\", \"https://evil.example"),
            ("JWTD_TEST_INJECT_NL", "api\"\nany_audience = true\n#"),
            ("JWTD_TEST_INJECT_BS", "a\\b"),
            ("JWTD_TEST_INJECT_SQ", "my-api', 'https://evil.example"),
        ]);
        let parse = |text: &str| Config::parse_with_env(text, "f", &env);
        let base = "[[issuer]]\nname = \"a\"\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\n";
        for var in [
            "JWTD_TEST_INJECT",
            "JWTD_TEST_INJECT_NL",
            "JWTD_TEST_INJECT_BS",
        ] {
            let c = parse(&format!("{base}audiences = [\"${{{var}}}\"]\n")).unwrap();
            assert_eq!(
                c.issuers[0].audiences,
                vec![env.var(var).unwrap()],
                "{var}: one audience, exactly the value"
            );
            assert!(!c.issuers[0].any_audience);
        }
        // Literal strings cannot escape anything: a quote or a line break is refused.
        let c = parse(&format!("{base}audiences = ['${{JWTD_TEST_INJECT}}']\n")).unwrap();
        assert_eq!(c.issuers[0].audiences.len(), 1);
        let e = parse(&format!("{base}audiences = ['${{JWTD_TEST_INJECT_NL}}']\n")).unwrap_err();
        assert_eq!(e.errors[0].0, 5, "{e}");
        // Outside strings nothing is replaced, and it is an error on its line.
        let e = parse("\nlisten = ${JWTD_TEST_INJECT}\n").unwrap_err();
        assert_eq!(e.errors[0].0, 2, "{e}");
        assert!(
            e.to_string()
                .contains("only replaced inside quoted strings"),
            "{e}"
        );
        // Review: quotes right before a closing `"""` / `'''` belong to the string; the scanner
        // must not take the last one as opening a new string.
        let c = parse("[[issuer]]\nname = \"\"\"the \"api\"\"\"\"\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\n\
             audiences = ['${JWTD_TEST_INJECT_SQ}']\n");
        assert!(
            c.as_ref()
                .map_or(true, |c| c.issuers[0].audiences.len() == 1),
            "{c:?}"
        );
        let c = parse("[[issuer]]\nname = '''it's \"api\"''''\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\n\
             audiences = [\"${JWTD_TEST_INJECT}\"]\n")
        .unwrap();
        assert_eq!(
            c.issuers[0].audiences,
            vec![env.var("JWTD_TEST_INJECT").unwrap()]
        );
        // Comments are left alone, even with unset variables.
        parse("# ${JWTD_TEST_NOT_SET_ANYWHERE}\nlisten = \"127.0.0.1:1\"\n").unwrap();
    }

    #[test]
    fn server_limits_have_safe_defaults_and_ranges() {
        let c = Config::parse("", "f").unwrap();
        assert_eq!(c.server, ServerSettings::default());
        assert_eq!(c.server.header_read_timeout.0, Duration::from_secs(10));
        let c = Config::parse(
            "[server]\nheader_read_timeout = \"500ms\"\nidle_timeout = 5\nmax_connections = 64\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout.0, Duration::from_millis(500));
        assert_eq!(c.server.idle_timeout.0, Duration::from_secs(5));
        assert_eq!(c.server.max_connections, 64);
        for bad in [
            "header_read_timeout = 0",
            "idle_timeout = \"0s\"",
            "request_timeout = \"2h\"",
            "shutdown_timeout = 9223372036854775807",
            "shutdown_timeout = \"100000d\"",
            "max_connections = 0",
            "max_connections = 100000000",
            "max_request_body = 10",
            "max_header_bytes = 1000",
        ] {
            let e = Config::parse(&format!("\n[server]\n{bad}\n"), "f").unwrap_err();
            assert_eq!(e.errors.len(), 1, "{bad}: {e}");
            assert_eq!(e.errors[0].0, 3, "on the setting's line: {bad}: {e}");
            assert!(e.errors[0].1.starts_with("server: "), "{bad}: {e}");
        }
        let e = Config::parse("[server]\nheader_timeout = 5\n", "f").unwrap_err();
        assert_eq!(e.errors[0].0, 2, "unknown field on its line: {e}");
    }

    /// Review of finding 15: a leeway near the hour revocation entries outlive their tokens by
    /// would let a revoked token outlive its entry; it is refused.
    #[test]
    fn leeway_is_bounded() {
        let text = |l: &str| {
            format!("[[issuer]]\nname = \"a\"\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\nleeway = {l}\n")
        };
        assert!(Config::parse(&text("\"10m\""), "f").is_ok());
        let e = Config::parse(&text("\"2h\""), "f").unwrap_err();
        assert!(e.to_string().contains("leeway is at most 600 s"), "{e}");
    }

    /// Issue 15: `listen = "localhost:8080"` works; other names (which would need DNS) do not.
    #[test]
    fn listen_takes_ip_addresses_and_localhost() {
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "0.0.0.0:1",
        ] {
            assert!(
                Config::parse(&format!("listen = \"{ok}\"\n"), "f").is_ok(),
                "{ok}"
            );
        }
        for bad in ["example.com:80", "localhost", "localhost:http", ":8080"] {
            let e = Config::parse(&format!("listen = \"{bad}\"\n"), "f").unwrap_err();
            assert!(e.to_string().contains("not an address:port"), "{bad}: {e}");
        }
    }

    /// Finding 19: durations are clamped, so no arithmetic on them can overflow and panic.
    #[test]
    fn durations_are_clamped_to_a_hundred_years() {
        let c = Config::parse(
            "[admin]\napi_key_env = \"K\"\n[revocation]\nmax_staleness = 18446744073709551615\n\
             max_token_lifetime = \"1000000000years\"\n",
            "f",
        )
        .unwrap();
        let r = c.revocation.unwrap();
        assert_eq!(r.max_staleness, Some(Seconds(MAX_SECONDS)));
        assert_eq!(r.max_token_lifetime, Some(Seconds(MAX_SECONDS)));
        // Added to a Unix time, in seconds and in milliseconds, it stays far from overflowing.
        assert!((jwtd_core::unix_now() + MAX_SECONDS)
            .checked_mul(1000)
            .is_some());
    }

    #[test]
    fn env_interpolation() {
        let env = Env::from_vars([("JWTD_TEST_AUD", "https://api.example")]);
        let c = Config::parse_with_env(
            "[[issuer]]\nname = \"a\"\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\naudiences = [\"${JWTD_TEST_AUD}\", \"$${literal}\"]\n",
            "f",
            &env,
        )
        .unwrap();
        assert_eq!(
            c.issuers[0].audiences,
            vec!["https://api.example", "${literal}"]
        );
        let e = Config::parse_with_env("\n\nlisten = \"${JWTD_TEST_MISSING_VAR}\"\n", "f", &env)
            .unwrap_err();
        assert_eq!(
            e.errors[0],
            (
                3,
                "environment variable JWTD_TEST_MISSING_VAR is not set".into()
            )
        );
    }

    /// The config fuzz target's seeds (`fuzz/seeds/config/`), replayed through `Config::parse`
    /// on every test run, whole and truncated: nothing panics, every refusal names a problem,
    /// and the documented sample and the recipes parse.
    #[test]
    fn config_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/config");
        // What the recipes interpolate; the fuzz target passes the same.
        let env = Env::from_vars([
            ("PUBLIC_URL", "https://auth.example"),
            ("OIDC_ISSUER", "https://tenant.example/"),
            ("API_AUDIENCE", "https://api.example"),
            ("SITE_DOMAIN", "https://site.example"),
            ("PROVIDER_JWKS", "https://provider.example/jwks.json"),
            ("WALLET_ISSUER", "https://wallet.example"),
            ("WALLET_JWKS", "https://wallet.example/jwks.json"),
            ("PARTNER_ID", "partner"),
            ("REQUIRED_SCOPE", "orders:read"),
            ("XAPP_API_KEY", "key"),
            // The interpolation seed's.
            ("HOME", "/home/jwtd"),
            ("PATH", "/usr/bin:/bin"),
        ]);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = Config::parse_with_env(&text, &name, &env);
            if name.starts_with("recipe-") || name == "configuration-md.toml" {
                parsed.unwrap();
            } else if name == "errors.toml" {
                let e = parsed.unwrap_err();
                assert!(e.errors.len() > 5, "{e}");
            }
            for cut in (0..text.len())
                .filter(|&c| text.is_char_boundary(c))
                .step_by(3)
            {
                if let Err(e) = Config::parse_with_env(&text[..cut], &name, &env) {
                    assert!(!e.errors.is_empty());
                }
            }
            n += 1;
        }
        assert!(n >= 5);
    }
}
