//! # jwtd-proxy
//!
//! jwtd as a reverse proxy in front of one upstream service: every request is decided by the
//! decision engine ([`jwtd_gate::Engine`], the one `/auth` and Envoy ext_authz use), refused
//! directly with the answer `/auth` gives (the same status, JSON body and `WWW-Authenticate`
//! challenge, from [`jwtd_gate::refusal`]), or forwarded to the upstream with the decision's
//! identity headers. No nginx in front is needed.
//!
//! ## Why hyper-util
//!
//! hyper 1 and hyper-util are already the workspace's HTTP stack (`jwtd serve`, the remote key
//! client through reqwest); the proxy's server and its client (a keep-alive pool,
//! `hyper_util::client::legacy`) are built from them, with rustls (aws-lc-rs) for an `https`
//! upstream. Pingora would add a second HTTP stack with its own runtime and its own
//! configuration model beside tokio's, for features (load balancing, caching) a proxy in
//! front of one upstream does not need.
//!
//! ## Protected-resource metadata
//!
//! For each configured `[[resource]]` (RFC 9728), `GET`/`HEAD` of its well-known path
//! (`/.well-known/oauth-protected-resource/mcp` for `https://host/mcp`) is answered by the
//! proxy itself with the engine's document ([`jwtd_gate::resource::Resources::answer_request`];
//! 204 for a CORS preflight, 405 for another method), before any rule and without reaching the upstream. Other paths under
//! the prefix are decided and forwarded as usual.
//!
//! ## What is forwarded
//!
//! - The method, the path and query as received (after the upstream URL's own path, when it
//!   has one), the `Host` header as the client sent it, and the body, streamed both ways
//!   without buffering (no size limit of its own: the upstream's limits apply).
//! - But a path with dot segments (`/a/../b`, `%2e` spelled either way) is sent resolved
//!   (`/b`), as the engine resolved it to decide: the upstream gets the path that was decided,
//!   whether or not it resolves dot segments itself (or does so after routing). Refused 400
//!   `bad_path` before the engine: `CONNECT`, `OPTIONS *` (any target not starting with
//!   `/`), a backslash in the path (`\` or `%5C`, which some upstreams read as `/`) and a dot
//!   segment behind an encoded slash (`..%2F`). Refused 400 `bad_headers`: more than one
//!   `Host` (RFC 9112 section 3.2).
//! - Hop-by-hop headers are removed both ways (RFC 9110 section 7.6.1): `Connection` and every
//!   header it names (but `Host`, which the engine decided on), `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `HTTP2-Settings` and
//!   `Upgrade` (kept, with `Connection: upgrade`, on an upgrade request; see below).
//! - **Every identity header jwtd owns** ([`jwtd_gate::issuers::IdentityHeaders::names`] of
//!   the engine in force, and `X-Auth-Subject`, `X-Auth-Issuer`, `X-Auth-Payload` always) is
//!   removed from the client's request before the decision's identity headers are added: each
//!   is either set by jwtd or absent, a spoofed one never reaches the upstream. (`/auth`
//!   answers a header without a value present and empty; here it is absent, as in ext_authz.)
//!   Their look-alikes with `_` for `-` (`X_Auth_Subject`, `X_Forwarded_For`) are removed
//!   too: CGI-style upstreams (WSGI, PHP, Rack) read both spellings as one variable.
//! - `Authorization` is removed too when [`Options::remove_authorization`] is on, and the
//!   engine's token cookie from `Cookie` (the other cookies stay).
//! - `X-Forwarded-For` is set to the peer's address, `X-Forwarded-Proto` to `http` (the
//!   listener is cleartext) and `X-Forwarded-Host` to the request's `Host`; `Forwarded`
//!   (RFC 7239) is removed. Only from a peer the [`EngineSource`] trusts
//!   ([`EngineSource::trusts_forwarded`], `jwtd serve`'s `trusted_proxies`) are the client's
//!   values kept: its `X-Forwarded-For` gets the peer appended, its `-Proto` and `-Host` and
//!   `Forwarded` stay.
//!
//! ## Upgrades (WebSocket)
//!
//! A request with `Connection: upgrade` and an `Upgrade` header is decided like any other;
//! allowed, it is forwarded with both, and when the upstream answers 101 the two connections
//! are joined and bytes copied both ways until either side closes. An upgrade to HTTP itself
//! (`Upgrade: h2c`, `h2`, `HTTP/...`) is never forwarded (the request goes as a plain one,
//! without `Upgrade`): through such a tunnel every later request would reach the upstream
//! undecided (h2c smuggling).
//!
//! ## Upstream failures
//!
//! The upstream not reachable (refused, reset, TLS failure, closed before a response head):
//! 502 `upstream_unavailable`. Not connected within [`Options::connect_timeout`], or no
//! response head within [`Options::response_timeout`] of sending the request: 504
//! `upstream_timeout`. Both in `/auth`'s JSON shape (`{"error": "temporarily_unavailable",
//! "reason", "message"}`), the message without internal detail (addresses, errors: those go to
//! the log). A response body that stalls for [`Options::idle_timeout`] between two chunks is
//! cut (the client sees the connection end early: its head is already sent).
//!
//! ## Limits of the listener ([`Limits`])
//!
//! hyper's HTTP/1 server parses every request strictly, before the engine sees it: two
//! different `Content-Length`s, a `Content-Length` that is not one number, a
//! `Transfer-Encoding` whose last coding is not `chunked`, an obs-folded header line, a space
//! before a colon, a malformed chunk are refused 400 and the connection closed. A request with
//! both `Content-Length` and `Transfer-Encoding: chunked` is read as chunked (RFC 9112 section
//! 6.3), its `Content-Length` dropped, and the connection closed after the answer, so bytes
//! after the chunked body are never read as another request. Every forwarded request is framed
//! anew by jwtd's client (its own `Content-Length`, or chunked): no request can be read one way
//! here and another way by the upstream. A request head larger than [`Limits::max_header_bytes`], or with more than
//! [`Limits::max_headers`] headers, is refused 431; a head not received within
//! [`Limits::header_read_timeout`] (also the longest a kept-alive connection waits for its next
//! request) closes the connection; at most [`Limits::max_connections`] are open at once,
//! upgraded (WebSocket) ones included until their tunnel closes.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use jwtd_gate::EngineSource;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use jwtd_core::{Error, Reason};
use jwtd_gate::Engine;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every answer: the upstream's, streamed, or jwtd's own refusal.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Default for [`Options::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`Options::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`Options::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default for [`Options::max_idle_per_host`].
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 32;

/// How the proxy reaches its upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The upstream: `http://host:port` or `https://host:port`, perhaps with a path that is
    /// put before every request's path (`http://127.0.0.1:9000/api` sends `/x` as `/api/x`).
    pub upstream: String,
    /// Longest a TCP connection to the upstream may take (504 `upstream_timeout` past it).
    pub connect_timeout: Duration,
    /// Longest from sending a request (its body included) until the upstream's response head
    /// (504 `upstream_timeout` past it).
    pub response_timeout: Duration,
    /// How long an idle kept-alive upstream connection stays in the pool, and the longest gap
    /// between two chunks of a response body before the response is cut.
    pub idle_timeout: Duration,
    /// Most idle kept-alive connections to the upstream (0: none kept).
    pub max_idle_per_host: usize,
    /// Remove the client's `Authorization` header before forwarding (default off), and the
    /// engine's token cookie (`[tokens] cookie`) from its `Cookie` header. A token in the query
    /// (`[tokens] query`) is still forwarded.
    pub remove_authorization: bool,
    /// A PEM file of CA certificates trusted for an `https` upstream, besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl Options {
    /// The defaults, forwarding to `upstream`.
    pub fn new(upstream: impl Into<String>) -> Options {
        Options {
            upstream: upstream.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
            remove_authorization: false,
            ca_file: None,
        }
    }
}

/// The bounds of the proxy's listener ([`serve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers), bytes; at least 8 KiB (hyper's
    /// floor: a smaller value is raised to it). Larger heads are refused 431.
    pub max_header_bytes: usize,
    /// Most headers of a request; more is refused 431.
    pub max_headers: usize,
    /// Longest a client may take to send a request head, and longest a kept-alive connection
    /// may wait for its next request; past it the connection is closed.
    pub header_read_timeout: Duration,
    /// Most connections open at once; at the cap, accepting waits until one closes (the
    /// kernel's listen backlog holds new ones). A connection upgraded (WebSocket) counts until
    /// its tunnel closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// The upstream URL, parsed.
#[derive(Clone, Debug)]
struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without a trailing `/` (empty for none).
    base: String,
}

impl Upstream {
    fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("upstream url {url:?} is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => {
                return Err(format!(
                    "upstream url {url:?} must start http:// or https://"
                ))
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream url {url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("upstream url {url:?} must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(format!("upstream url {url:?} must not have a query"));
        }
        let base = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            scheme,
            authority,
            base,
        })
    }

    /// The upstream URI of a request for `pq` (a path and query starting with `/`).
    fn uri(&self, pq: &str) -> Result<Uri, http::Error> {
        let pq = if self.base.is_empty() {
            pq.to_owned()
        } else {
            format!("{}{pq}", self.base)
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The reverse proxy: an [`EngineSource`], the upstream and its client pool.
pub struct Proxy<S> {
    source: S,
    options: Options,
    upstream: Upstream,
    client: Client<Connector, Watched>,
}

impl<S> std::fmt::Debug for Proxy<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The TLS configuration of an `https` upstream: the system's roots and those of `ca_file`.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as every rustls client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: no certificate in it", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Checks `options` as [`Proxy::new`] would (the upstream URL, the `ca_file`), without
/// building anything: for a caller that must refuse a bad configuration before it announces
/// readiness.
pub fn check(options: &Options) -> Result<(), String> {
    Upstream::parse(&options.upstream)?;
    tls_config(options.ca_file.as_ref())?;
    Ok(())
}

impl<S: EngineSource> Proxy<S> {
    /// A proxy deciding with the engines of `source` and forwarding to `options.upstream`;
    /// an error names a bad upstream URL or an unreadable `ca_file`.
    pub fn new(source: S, options: Options) -> Result<Proxy<S>, String> {
        let upstream = Upstream::parse(&options.upstream)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(options.connect_timeout));
        http.set_nodelay(true);
        let tls = tls_config(options.ca_file.as_ref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(options.idle_timeout)
            .pool_max_idle_per_host(options.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Proxy {
            source,
            options,
            upstream,
            client,
        })
    }

    /// Its options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The metadata answer for a configured resource's well-known path (200, 204 for a CORS
    /// preflight, or 405 for another method than `GET`/`HEAD`); `None` for any other path.
    fn metadata(
        &self,
        engine: &Engine,
        req: &Request<Incoming>,
        target: &str,
    ) -> Option<Response<ProxyBody>> {
        if engine.resources.is_empty() {
            return None;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri().authority().map(Authority::as_str))
            .unwrap_or("");
        let a = engine
            .resources
            .answer_request(req.method().as_str(), host, target, req.headers())
            .filter(|a| a.status != http::StatusCode::NOT_FOUND)?;
        Some(refusal(jwtd_gate::refusal::HttpRefusal {
            status: a.status,
            headers: a.headers,
            body: a.body,
        }))
    }

    /// Answers one request from `peer`: the refusal, or the upstream's answer (see the crate
    /// docs).
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let handle = self.source.engine();
        let engine: &Engine = &handle;
        let target = match forward_target(req.method(), req.uri()) {
            Ok(t) => t,
            Err(message) => {
                self.source.decided(&handle, None, Some(Reason::BadPath));
                return refusal(jwtd_gate::refusal::http(&Error::new(
                    Reason::BadPath,
                    message,
                )));
            }
        };
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host_problem = match (hosts.next(), hosts.next()) {
            // RFC 9112 section 3.2: 400. The engine would decide on one, the upstream might
            // read the other.
            (Some(_), Some(_)) => Some("the request has more than one Host header"),
            // Also 400 for HTTP/1.1, and for an absolute-form target at all: the upstream
            // would be sent its own address as Host, not the authority decided on.
            (None, _) if req.version() != Version::HTTP_10 || req.uri().authority().is_some() => {
                Some("the request has no Host header")
            }
            _ => None,
        };
        if let Some(message) = host_problem {
            self.source.decided(&handle, None, Some(Reason::BadHeaders));
            return refusal(jwtd_gate::refusal::http(&Error::new(
                Reason::BadHeaders,
                message,
            )));
        }
        // The RFC 9728 metadata of a configured `[[resource]]` is answered here, before any
        // rule: it is public, and the upstream does not know it. Other paths under the
        // well-known prefix are decided and forwarded like any request.
        if let Some(answer) = self.metadata(engine, &req, &target) {
            return answer;
        }
        let decision = {
            let headers = req.headers();
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or(req.uri().authority().map(Authority::as_str))
                .unwrap_or("");
            let target = jwtd_gate::Request {
                method: req.method().as_str(),
                host,
                path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                headers,
            };
            engine.decide(&target, jwtd_core::unix_now()).await
        };
        let refused = decision.outcome.as_ref().err().map(|d| d.error.reason());
        self.source.decided(&handle, decision.rule, refused);
        match decision.outcome {
            Err(denial) => refusal(jwtd_gate::refusal::http_denial(&denial)),
            Ok(allowed) => {
                let trusted = self.source.trusts_forwarded(&handle, peer.ip());
                self.forward(req, target, engine, allowed.headers, peer, trusted)
                    .await
            }
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: String,
        engine: &Engine,
        identity: HeaderMap,
        peer: SocketAddr,
        trusted: bool,
    ) -> Response<ProxyBody> {
        let upgrade = upgrade_of(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // The connection's place under `max_connections`, kept by the tunnel of an upgrade.
        let held = parts.extensions.remove::<Held>();
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let headers = &mut parts.headers;
        scrub_request(
            headers,
            &engine.identity.names(),
            self.options.remove_authorization,
            trusted,
        );
        if self.options.remove_authorization {
            if let Some(name) = &engine.sources.cookie {
                strip_cookie(headers, name);
            }
        }
        for (name, value) in &identity {
            if !value.is_empty() {
                headers.insert(name.clone(), value.clone());
            }
        }
        forwarded_headers(headers, peer, host, trusted);
        if let Some(up) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, up.clone());
        }
        parts.uri = match self.upstream.uri(&target) {
            Ok(u) => u,
            Err(_) => return upstream_failure(Reason::UpstreamUnavailable),
        };
        parts.version = Version::HTTP_11;
        let failed = Arc::new(AtomicBool::new(false));
        let body = Watched {
            inner: body,
            failed: failed.clone(),
        };
        let outgoing = Request::from_parts(parts, body);
        let sent =
            tokio::time::timeout(self.options.response_timeout, self.client.request(outgoing));
        let mut resp = match sent.await {
            Err(_) => {
                tracing::warn!(upstream = %self.options.upstream, "no response head within response_timeout");
                return upstream_failure(Reason::UpstreamTimeout);
            }
            Ok(Err(_)) if failed.load(Ordering::Relaxed) => {
                // The client's body was malformed (a bad chunk) or cut: its fault, not the
                // upstream's; hyper's own answer to a malformed request.
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
            Ok(Err(e)) => {
                let reason = classify(&e);
                tracing::warn!(upstream = %self.options.upstream, error = %error_chain(&e), "upstream request failed");
                return upstream_failure(reason);
            }
            Ok(Ok(r)) => r,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    let _held = held;
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, upstream)) => {
                            let mut client = TokioIo::new(client);
                            let mut upstream = TokioIo::new(upstream);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade not completed"),
                    }
                });
                let (mut parts, _) = resp.into_parts();
                let up = parts.headers.get(header::UPGRADE).cloned();
                strip_hop_by_hop(&mut parts.headers);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                if let Some(up) = up {
                    parts.headers.insert(header::UPGRADE, up);
                }
                return Response::from_parts(parts, empty());
            }
            // A 101 nobody asked for: not passed on.
            tracing::warn!("the upstream switched protocols without an upgrade request");
            return upstream_failure(Reason::UpstreamUnavailable);
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = IdleBody {
            inner: body,
            idle: self.options.idle_timeout,
            timer: None,
        };
        Response::from_parts(parts, body.boxed())
    }
}

/// The identity headers removed from every client request whatever the engine owns.
const OWNED: [HeaderName; 3] = [
    jwtd_gate::issuers::SUBJECT,
    jwtd_gate::issuers::ISSUER,
    jwtd_gate::issuers::PAYLOAD,
];

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The forwarding headers jwtd sets (or keeps from a trusted peer).
const FORWARDED: [HeaderName; 4] = [XFF, XFP, XFH, header::FORWARDED];

/// The path and query sent upstream for a request to `uri`: as received, except that dot
/// segments (`.` and `..`, `%2e` spelled either way) are resolved as the engine resolves them
/// before matching, so the upstream is sent the path that was decided, never one an upstream
/// that does not resolve them (or resolves them after routing) reads as another. An error (a
/// `bad_path` refusal) for a target jwtd does not forward: `CONNECT`, `*`, a backslash (`\`
/// or `%5C`: some upstreams read it as `/`), or a dot segment behind an encoded slash
/// (`..%2F`).
fn forward_target(method: &http::Method, uri: &Uri) -> Result<String, &'static str> {
    if method == http::Method::CONNECT {
        return Err("CONNECT is not forwarded");
    }
    let raw = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err("only a path starting with / is forwarded");
    };
    let has_escape = path.contains('%');
    if path.contains('\\') || (has_escape && path.to_ascii_lowercase().contains("%5c")) {
        return Err("a backslash in the path is not forwarded");
    }
    /// 1 for `.`, 2 for `..`, 0 for any other segment.
    fn dots(seg: &str) -> usize {
        if seg.len() > 6 || !(seg.starts_with('.') || seg.starts_with('%')) {
            return 0;
        }
        match seg.to_ascii_lowercase().replace("%2e", ".").as_str() {
            "." => 1,
            ".." => 2,
            _ => 0,
        }
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut resolved = false;
    let mut trailing = false;
    for seg in rest.split('/') {
        if has_escape && seg.contains('%') {
            let lower = seg.to_ascii_lowercase();
            if lower.contains("%2f") && lower.split("%2f").any(|p| dots(p) > 0) {
                return Err("a dot segment behind an encoded slash is not forwarded");
            }
        }
        match dots(seg) {
            0 => {
                segments.push(seg);
                trailing = false;
            }
            n => {
                if n == 2 {
                    segments.pop();
                }
                resolved = true;
                trailing = true;
            }
        }
    }
    if !resolved {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    out.push('/');
    out.push_str(&segments.join("/"));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// True when an `Upgrade` value names HTTP itself (`h2c`, `h2`, `HTTP/2.0`, ...), or is not
/// text: past such an upgrade the tunnel would carry requests jwtd never decides (h2c
/// smuggling), so the request is forwarded as a plain one, its `Upgrade` removed.
fn upgrades_to_http(v: &HeaderValue) -> bool {
    let Ok(s) = v.to_str() else {
        return true;
    };
    s.split(',').any(|t| {
        let name = t.split('/').next().unwrap_or("").trim();
        ["h2c", "h2", "http"]
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p))
    })
}

/// The `Upgrade` value of an upgrade request (`Connection` names `upgrade`), if it is one
/// (never one to HTTP itself, see [`upgrades_to_http`]).
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (asks, values.next(), values.next()) {
        (true, Some(v), None) if !upgrades_to_http(v) => Some(v.clone()),
        _ => None,
    }
}

/// The hop-by-hop headers (RFC 9110 section 7.6.1) that go whatever `Connection` names.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The headers `Connection` names, each to be removed with it, but `Host`: the engine decided
/// on it, the upstream must read the same.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| n != header::HOST)
        .collect()
}

/// Removes the named headers present (looked up once each: most requests carry none).
fn remove_all(headers: &mut HeaderMap, doomed: Vec<HeaderName>) {
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes the cookie `name` (the engine's token cookie) from every `Cookie` header, names
/// compared trimmed as the engine reads them; a header left with no cookie goes.
fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(header::COOKIE);
    for v in values {
        let kept: Vec<&[u8]> = v
            .as_bytes()
            .split(|b| *b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let key = p.split(|b| *b == b'=').next().unwrap_or_default();
                key.trim_ascii() != name.as_bytes()
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.append(header::COOKIE, v);
        }
    }
}

/// Removes `Connection`, every header it names, and the other hop-by-hop headers: one pass
/// over the names present, then a removal for each that must go.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed = connection_listed(headers);
    let doomed = headers
        .keys()
        .filter(|n| HOP_BY_HOP.contains(&n.as_str()) || listed.contains(n))
        .cloned()
        .collect();
    remove_all(headers, doomed);
}

/// `name` as a CGI-style upstream reads it (PHP, WSGI, Rack: `_` and `-` both become `_`) is
/// `owned` (lowercase, spelled with `-`).
fn same_header(name: &str, owned: &str) -> bool {
    name.len() == owned.len()
        && name
            .bytes()
            .zip(owned.bytes())
            .all(|(n, o)| n == o || (n == b'_' && o == b'-'))
}

/// Everything of the client's request that must not reach the upstream, in one pass over the
/// names present: the hop-by-hop headers and those `Connection` names, every identity header
/// jwtd owns (`owned` and [`OWNED`]) also when spelled with `_` for `-` (CGI-style upstreams,
/// WSGI, PHP, Rack, read `X_Auth_Subject` as `HTTP_X_AUTH_SUBJECT`, the same variable as
/// jwtd's `X-Auth-Subject`), such spellings of the forwarding headers jwtd sets ([`FORWARDED`];
/// the names themselves are replaced by [`forwarded_headers`]), `Authorization` when
/// `remove_authorization`, and `Forwarded` from an untrusted peer.
fn scrub_request(
    headers: &mut HeaderMap,
    owned: &[HeaderName],
    remove_authorization: bool,
    trusted: bool,
) {
    let listed = connection_listed(headers);
    let doomed = headers
        .keys()
        .filter(|n| {
            let s = n.as_str();
            HOP_BY_HOP.contains(&s)
                || listed.contains(n)
                || owned
                    .iter()
                    .chain(&OWNED)
                    .any(|o| same_header(s, o.as_str()))
                || (s.contains('_') && FORWARDED.iter().any(|o| same_header(s, o.as_str())))
                || (remove_authorization && *n == header::AUTHORIZATION)
                || (!trusted && *n == header::FORWARDED)
        })
        .cloned()
        .collect();
    remove_all(headers, doomed);
}

/// `X-Forwarded-For`, `-Proto`, `-Host` (and `Forwarded`), see the crate docs. Each is set
/// with `insert`, which drops every value the client sent under that name.
fn forwarded_headers(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    host: Option<HeaderValue>,
    trusted: bool,
) {
    let ip = peer.ip().to_canonical().to_string();
    let mut xff = String::new();
    if trusted {
        for v in headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()) {
            let v = v.trim();
            if !v.is_empty() {
                xff.push_str(v);
                xff.push_str(", ");
            }
        }
    }
    xff.push_str(&ip);
    match HeaderValue::from_str(&xff) {
        Ok(v) => {
            headers.insert(XFF, v);
        }
        Err(_) => {
            headers.remove(&XFF);
        }
    }
    let single = |headers: &HeaderMap, name: &HeaderName| {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => Some(v.clone()),
            _ => None,
        }
    };
    let proto = trusted
        .then(|| single(headers, &XFP))
        .flatten()
        .unwrap_or(HeaderValue::from_static("http"));
    headers.insert(XFP, proto);
    match trusted.then(|| single(headers, &XFH)).flatten().or(host) {
        Some(h) => {
            headers.insert(XFH, h);
        }
        None => {
            headers.remove(&XFH);
        }
    }
}

/// 504 for a timeout anywhere in the error's chain, else 502.
fn classify(e: &hyper_util::client::legacy::Error) -> Reason {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Reason::UpstreamTimeout;
            }
        }
        source = s.source();
    }
    Reason::UpstreamUnavailable
}

/// The error and its causes, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// The refusal table's HTTP answer as a response.
fn refusal(answer: jwtd_gate::refusal::HttpRefusal) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(answer.body))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = answer.status;
    for (name, value) in answer.headers {
        resp.headers_mut().insert(name, value);
    }
    resp
}

/// 502 `upstream_unavailable` or 504 `upstream_timeout`, without internal detail.
fn upstream_failure(reason: Reason) -> Response<ProxyBody> {
    let message = match reason {
        Reason::UpstreamTimeout => "the upstream did not answer in time",
        _ => "the upstream could not be reached",
    };
    refusal(jwtd_gate::refusal::http(&Error::new(reason, message)))
}

/// The client's request body on its way to the upstream, noting whether reading it failed.
struct Watched {
    inner: Incoming,
    failed: Arc<AtomicBool>,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body cut when no frame comes for `idle`.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A response body stalled past `idle_timeout`.
#[derive(Debug)]
struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream's response body stalled past idle_timeout")
    }
}

impl std::error::Error for Stalled {}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::warn!("upstream response body stalled past idle_timeout");
                        Poll::Ready(Some(Err(Box::new(Stalled))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's permit under [`Limits::max_connections`], shared by its requests (in their
/// extensions) so that an upgrade's tunnel keeps it until the tunnel closes.
#[derive(Clone)]
struct Held {
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

/// Serves `proxy` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets requests in progress finish (each connection closes after its current
/// answer; upgraded connections are left to end by themselves) and returns once every
/// connection has closed, upgraded ones included (bound the wait from outside, as `jwtd
/// serve` does with its `shutdown_timeout`).
pub async fn serve<S: EngineSource>(
    proxy: Proxy<S>,
    listener: tokio::net::TcpListener,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let proxy = Arc::new(proxy);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // One permit per open connection: at the cap, accepting waits (the kernel's backlog holds
    // new connections); the drain takes them all back.
    let cap = limits.max_connections.clamp(1, u32::MAX as usize);
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let builder = builder.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let held = Held {
                        _permit: Arc::new(permit),
                    };
                    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(held.clone());
                        let proxy = proxy.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await)
                        }
                    });
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::pin!(conn);
                    let done = tokio::select! {
                        r = conn.as_mut() => Some(r),
                        _ = stopped.wait_for(|s| *s) => None,
                    };
                    let result = match done {
                        Some(r) => r,
                        None => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "proxy connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let _ = permits.acquire_many(cap as u32).await;
    Ok(())
}
