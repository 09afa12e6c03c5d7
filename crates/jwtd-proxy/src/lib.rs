//! # jwtd-proxy
//!
//! jwtd as a reverse proxy in front of one upstream service: every request is decided by the
//! decision engine ([`jwtd_gate::Engine`], the one `/auth` and Envoy ext_authz use), refused
//! directly with the answer `/auth` gives (the same status, JSON body and `WWW-Authenticate`
//! challenge, from [`jwtd_gate::refusal`]), or forwarded to the upstream with the decision's
//! identity headers. No nginx in front is needed.
//!
//! ## Why hyper
//!
//! hyper 1 and hyper-util are already the workspace's HTTP stack (`jwtd serve`, the remote key
//! client through reqwest); the proxy's server (`hyper::server::conn::http1`) and its client
//! are built from them, with rustls (aws-lc-rs, through tokio-rustls) for an `https` upstream.
//! The client is hyper's connection API (`hyper::client::conn::http1`) under a pool of jwtd's
//! own: the upstream is one, so the pool is one bounded list of idle connections, most
//! recently used first, with no key to hash (hyper-util's general `Client` costs about 10,000
//! instructions a request for its per-host map, boxed futures and checkout). A connection goes
//! back to the pool when its response body has been read to the end and it can take another
//! request; one that failed, was upgraded, or was told to close is dropped. An idle connection
//! is never used past [`Options::idle_timeout`], and is closed by 1.5 times it.
//! A request that a kept-alive connection closed before writing any of it (the upstream closed
//! the idle connection as it was taken) is sent on another; a request written in part or whole
//! is never sent again. Pingora would add a second HTTP stack with its own runtime and its own
//! configuration model beside tokio's, for features (load balancing, caching) a proxy in front
//! of one upstream does not need.
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
//!   the engine in force, and `X-Auth-Subject`, `X-Auth-Issuer`, `X-Auth-Payload`, `X-Auth-Jkt`
//!   always) is
//!   removed from the client's request before the decision's identity headers are added: each
//!   is either set by jwtd or absent, a spoofed one never reaches the upstream. (`/auth`
//!   answers a header without a value present and empty; here it is absent, as in ext_authz.)
//!   Their look-alikes with `_` for `-` (`X_Auth_Subject`, `X_Forwarded_For`, `X_Request_Id`) are removed
//!   too: CGI-style upstreams (WSGI, PHP, Rack) read both spellings as one variable.
//! - `Authorization` is removed too when [`Options::remove_authorization`] is on, and the
//!   engine's token cookie from `Cookie` (the other cookies stay).
//! - `DPoP` is removed whenever present under `[issuer.dpop] on_pass = "strip"` (the default;
//!   [`jwtd_gate::Allowed::strip_dpop`]), a proof checked or not; after a proof passed,
//!   `Authorization: DPoP <token>` goes as `Authorization: Bearer <token>`.
//! - The client certificate header of `[forwarded] client_cert`
//!   ([`jwtd_gate::Engine::forwarded_cert`]), and its `_` spelling, is removed from the
//!   request of a peer the [`EngineSource`] does not trust (the engine ignored it), and so are
//!   `Client-Cert`, `Client-Cert-Chain` and `X-Forwarded-Client-Cert` whatever is configured;
//!   a trusted proxy's are kept. `X-Auth-Cert-Thumbprint` is always removed (jwtd sets it).
//! - `X-Forwarded-For` is set to the peer's address, `X-Forwarded-Proto` to `http` (`https`
//!   on a TLS listener, [`serve_tls`]) and `X-Forwarded-Host` to the request's `Host`; `Forwarded`
//!   (RFC 7239) is removed. Only from a peer the [`EngineSource`] trusts
//!   ([`EngineSource::trusts_forwarded`], `jwtd serve`'s `trusted_proxies`) are the client's
//!   values kept: its `X-Forwarded-For` gets the peer appended, its `-Proto` and `-Host` and
//!   `Forwarded` stay.
//!
//! ## Upgrades (WebSocket)
//!
//! A request with `Connection: upgrade` and an `Upgrade` header is decided like any other;
//! allowed, it is forwarded with both, and when the upstream answers 101 the two connections
//! are joined and bytes copied both ways until either side closes, no byte has gone either way
//! for [`Options::tunnel_idle_timeout`], or [`Options::tunnel_max_lifetime`] has passed since
//! the upgrade (the token is checked once, at the handshake). An upgrade to HTTP itself
//! (`Upgrade: h2c`, `h2`, `HTTP/...`) is never forwarded (the request goes as a plain one,
//! without `Upgrade`): through such a tunnel every later request would reach the upstream
//! undecided (h2c smuggling).
//!
//! ## Upstream failures
//!
//! The upstream not reachable (refused, reset, TLS failure, closed before a response head):
//! 502 `upstream_unavailable`. Not connected (TCP, and TLS for https) within
//! [`Options::connect_timeout`], or no
//! response head within [`Options::response_timeout`] of sending the request: 504
//! `upstream_timeout`. Both in `/auth`'s JSON shape (`{"error": "temporarily_unavailable",
//! "reason", "message"}`), the message without internal detail (addresses, errors: those go to
//! the log). A response body that stalls for [`Options::idle_timeout`] between two chunks is
//! cut (the client sees the connection end early: its head is already sent). A request body
//! that stalls for [`Options::body_timeout`], or is not all in within
//! [`Options::body_total_timeout`] of the request, is the client's: answered 408 (connection
//! closed) before the upstream's response head, the connection closed after it.
//!
//! ## Request ids, metrics and logs
//!
//! Every answer carries `X-Request-Id` (the upstream's, jwtd's refusals, 502/504/408), and the
//! upstream is sent the same one: a [`RequestId`], the client's only when the source trusts it
//! ([`EngineSource::trusts_request_id`]), else a new `jwtd-<counter in hex>`. An `X-Request-Id`
//! in the upstream's answer is replaced by jwtd's. Each request, once its answer head is ready,
//! is passed to [`EngineSource::answered`] (its id, when it started, how it ended, the issuer,
//! a refusal's token for a fingerprint): `jwtd serve` counts and logs it there. Upstream
//! failures and failed client bodies are logged here at WARN/INFO with the request id.
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

mod client;
mod timer;

pub use jwtd_gate::source::{Answer, AnswerIssuer, Outcome};
pub use jwtd_gate::{EngineSource, RequestId};

use bytes::Bytes;
use client::{Client, Failure, Lease, Outgoing};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use jwtd_core::{Error, Reason};
use jwtd_gate::request_id::X_REQUEST_ID;
use jwtd_gate::Engine;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Default for [`Options::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`Options::body_total_timeout`] (5 minutes).
pub const DEFAULT_BODY_TOTAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Default for [`Options::tunnel_idle_timeout`] (5 minutes).
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default for [`Options::tunnel_max_lifetime`] (1 hour).
pub const DEFAULT_TUNNEL_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// How the proxy reaches its upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The upstream: `http://host:port` or `https://host:port`, perhaps with a path that is
    /// put before every request's path (`http://127.0.0.1:9000/api` sends `/x` as `/api/x`).
    pub upstream: String,
    /// Longest a new connection to the upstream may take, its TLS handshake included for an
    /// `https` upstream (504 `upstream_timeout` past it).
    pub connect_timeout: Duration,
    /// Longest from sending a request (its body included, and connecting when no idle
    /// connection is pooled) until the upstream's response head (504 `upstream_timeout` past
    /// it).
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
    /// The longest gap between two chunks of the client's request body (and before its first
    /// chunk). Past it the request is cut: answered 408 (connection closed) when the upstream
    /// has not answered yet, the connection closed when it has.
    pub body_timeout: Duration,
    /// The longest the client's whole request body may take, from the request head (however
    /// steadily it trickles in: `body_timeout` alone lets a byte every `body_timeout` hold the
    /// connection for good). Past it the request is cut as past `body_timeout`.
    pub body_total_timeout: Duration,
    /// An upgraded (WebSocket) tunnel in which no byte has gone either way for this long is
    /// closed, both connections.
    pub tunnel_idle_timeout: Duration,
    /// An upgraded tunnel is closed this long after the upgrade, busy or not: the token was
    /// checked once, at the handshake, and is not checked again.
    pub tunnel_max_lifetime: Duration,
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
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_total_timeout: DEFAULT_BODY_TOTAL_TIMEOUT,
            tunnel_idle_timeout: DEFAULT_TUNNEL_IDLE_TIMEOUT,
            tunnel_max_lifetime: DEFAULT_TUNNEL_MAX_LIFETIME,
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
    https: bool,
    authority: Authority,
    /// The URL's path without a trailing `/` (empty for none).
    base: String,
    /// The `Host` of a request that has none (HTTP/1.0): the upstream's authority, its port
    /// only when not the scheme's default.
    host: HeaderValue,
}

impl Upstream {
    fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("upstream url {url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
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
        let default_port = if https { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(p) if p != default_port => format!("{}:{p}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host)
            .map_err(|_| format!("upstream url {url:?} has a host that is not a Host value"))?;
        Ok(Upstream {
            https,
            authority,
            base,
            host,
        })
    }

    /// The origin-form target sent upstream: `uri` as received when it is one and neither
    /// the URL's path nor a resolved path (`resolved`, from [`forward_target`]) changes it.
    fn target(&self, resolved: Option<String>, uri: Uri) -> Result<Uri, http::Error> {
        let pq = match resolved {
            Some(pq) => pq,
            None if self.base.is_empty() && uri.scheme().is_none() => return Ok(uri),
            None => uri
                .path_and_query()
                .map_or("/", PathAndQuery::as_str)
                .to_owned(),
        };
        let pq = if self.base.is_empty() {
            pq
        } else {
            format!("{}{pq}", self.base)
        };
        Ok(Uri::try_from(pq)?)
    }
}

/// The reverse proxy: an [`EngineSource`], the upstream and its client pool.
pub struct Proxy<S> {
    source: S,
    options: Options,
    upstream: Upstream,
    client: Arc<Client>,
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
    client_of(options).map(drop)
}

/// The upstream and its client, from `options`.
fn client_of(options: &Options) -> Result<(Upstream, Client), String> {
    let upstream = Upstream::parse(&options.upstream)?;
    let tls = tls_config(options.ca_file.as_ref())?;
    let client = Client::new(
        upstream.https,
        &upstream.authority,
        Some(tls),
        options.connect_timeout,
        options.idle_timeout,
        options.max_idle_per_host,
    )?;
    Ok((upstream, client))
}

/// A client connection, as the proxy's requests on it see it.
struct Peer {
    addr: SocketAddr,
    /// `X-Forwarded-For` for this peer alone (its address, made once per connection).
    xff: HeaderValue,
    /// The connection's place under `max_connections`, kept by the tunnel of an upgrade.
    held: Option<Held>,
    /// The connection is TLS (`X-Forwarded-Proto: https`).
    tls: bool,
    /// The DER of the client's TLS certificate, when it sent one.
    cert: Option<Arc<[u8]>>,
    /// The `response_timeout` timer of the connection's requests (one at a time on HTTP/1.1),
    /// kept between them: see [`Peer::response_timer`].
    timer: std::sync::Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl Peer {
    fn new(addr: SocketAddr, held: Option<Held>) -> Peer {
        let ip = addr.ip().to_canonical().to_string();
        let xff = HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown"));
        Peer {
            addr,
            xff,
            held,
            tls: false,
            cert: None,
            timer: std::sync::Mutex::new(None),
        }
    }

    /// A timer for `deadline`: the connection's own, moved there, or a new one. A new tokio
    /// timer per request is an entry put in the timer wheel and taken out again (about 1,700
    /// instructions a request); moving a kept one to a later deadline only notes it (tokio
    /// moves it in the wheel if it fires before), and deadlines only grow.
    fn response_timer(&self, deadline: tokio::time::Instant) -> Pin<Box<tokio::time::Sleep>> {
        let kept = self
            .timer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match kept {
            Some(mut t) => {
                t.as_mut().reset(deadline);
                t
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the connection's next request.
    fn keep_timer(&self, timer: Pin<Box<tokio::time::Sleep>>) {
        *self
            .timer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(timer);
    }
}

impl<S: EngineSource> Proxy<S> {
    /// A proxy deciding with the engines of `source` and forwarding to `options.upstream`;
    /// an error names a bad upstream URL or an unreadable `ca_file`.
    pub fn new(source: S, options: Options) -> Result<Proxy<S>, String> {
        let (upstream, client) = client_of(&options)?;
        Ok(Proxy {
            source,
            options,
            upstream,
            client: Arc::new(client),
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
        self.respond(req, &Peer::new(peer, None)).await
    }

    /// Passes `answer` to the source's [`EngineSource::answered`] and sets the request id
    /// on `resp` (over any the upstream sent: the upstream was sent this one).
    fn finish(
        &self,
        handle: &S::Handle,
        answer: Answer<'_>,
        mut resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        self.source.answered(handle, &answer);
        resp.headers_mut()
            .insert(X_REQUEST_ID, answer.request_id.header_value().clone());
        resp
    }

    /// A refusal of `error` (before the engine), counted, answered and passed on.
    fn refuse_early(
        &self,
        handle: &S::Handle,
        rid: &RequestId,
        started: std::time::Instant,
        error: Error,
    ) -> Response<ProxyBody> {
        self.source.decided(handle, None, Some(error.reason()));
        let resp = refusal(jwtd_gate::refusal::http(&error));
        let answer = Answer {
            request_id: rid,
            started,
            outcome: Outcome::Refused(&error),
            issuer: None,
            token: None,
        };
        self.finish(handle, answer, resp)
    }

    async fn respond(&self, req: Request<Incoming>, peer: &Peer) -> Response<ProxyBody> {
        let started = std::time::Instant::now();
        let handle = self.source.engine();
        let engine: &Engine = &handle;
        let rid = RequestId::of(req.headers(), self.source.trusts_request_id(&handle));
        let target = match forward_target(req.method(), req.uri()) {
            Ok(t) => t,
            Err(message) => {
                let error = Error::new(Reason::BadPath, message);
                return self.refuse_early(&handle, &rid, started, error);
            }
        };
        // The one read of `Host`: checked, decided on, forwarded, and `X-Forwarded-Host`.
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            // RFC 9112 section 3.2: 400. The engine would decide on one, the upstream might
            // read the other.
            (Some(_), Some(_)) => Err("the request has more than one Host header"),
            (Some(h), None) => Ok(Some(h.clone())),
            // Also 400 for HTTP/1.1, and for an absolute-form target at all: the upstream
            // would be sent its own address as Host, not the authority decided on.
            (None, _) if req.version() != Version::HTTP_10 || req.uri().authority().is_some() => {
                Err("the request has no Host header")
            }
            (None, _) => Ok(None),
        };
        let host = match host {
            Ok(h) => h,
            Err(message) => {
                let error = Error::new(Reason::BadHeaders, message);
                return self.refuse_early(&handle, &rid, started, error);
            }
        };
        // The RFC 9728 metadata of a configured `[[resource]]` is answered here, before any
        // rule: it is public, and the upstream does not know it. Other paths under the
        // well-known prefix are decided and forwarded like any request.
        let decided_target = target
            .as_deref()
            .unwrap_or_else(|| req.uri().path_and_query().map_or("/", |p| p.as_str()));
        if let Some(resp) = self.metadata(engine, &req, decided_target) {
            let answer = Answer {
                request_id: &rid,
                started,
                outcome: Outcome::Allowed,
                issuer: None,
                token: None,
            };
            return self.finish(&handle, answer, resp);
        }
        // A trusted peer's forwarded headers are kept (and its forwarded client certificate
        // read); anyone else's are replaced (and a forwarded certificate ignored, then
        // removed before forwarding).
        let trusted = self.source.trusts_forwarded(&handle, peer.addr.ip());
        let decision = {
            let target = jwtd_gate::Request {
                method: req.method().as_str(),
                scheme: request_scheme(req.headers(), trusted),
                host: host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .or(req.uri().authority().map(Authority::as_str))
                    .unwrap_or(""),
                path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                headers: req.headers(),
                client_cert: match (trusted, peer.cert.as_deref()) {
                    (true, tls) => jwtd_gate::ClientCert::Trusted { tls },
                    (false, Some(der)) => jwtd_gate::ClientCert::Der(der),
                    (false, None) => jwtd_gate::ClientCert::None,
                },
            };
            engine.decide(&target, jwtd_core::unix_now()).await
        };
        let refused = decision.outcome.as_ref().err().map(|d| d.error.reason());
        self.source.decided(&handle, decision.rule, refused);
        match decision.outcome {
            Err(denial) => {
                let resp = refusal(jwtd_gate::refusal::http_denial(&denial));
                let answer = Answer {
                    request_id: &rid,
                    started,
                    outcome: Outcome::Refused(&denial.error),
                    issuer: denial.issuer.as_deref().map(AnswerIssuer::Named),
                    token: decision.token,
                };
                self.finish(&handle, answer, resp)
            }
            Ok(allowed) => {
                let sent = Sent {
                    started,
                    target,
                    host,
                    trusted,
                    strip_dpop: allowed.strip_dpop,
                    bearer: allowed
                        .dpop
                        .as_ref()
                        .is_some_and(|p| p.on_pass == jwtd_gate::config::OnPass::Strip),
                    nonce: allowed
                        .dpop
                        .as_ref()
                        .and_then(|p| p.nonce.as_deref())
                        .and_then(|n| HeaderValue::from_str(n).ok()),
                };
                let issuer = allowed.identity.map(|(i, _)| i);
                let (resp, failed) = self
                    .forward(req, sent, engine, allowed.headers, peer, &rid)
                    .await;
                let answer = Answer {
                    request_id: &rid,
                    started,
                    outcome: match failed {
                        None => Outcome::Allowed,
                        Some(reason) => Outcome::Failed { reason },
                    },
                    issuer: issuer.as_deref().map(AnswerIssuer::Issuer),
                    token: None,
                };
                self.finish(&handle, answer, resp)
            }
        }
    }

    /// Forwards an allowed request; the answer, and the reason code of a failure (the
    /// upstream's, or the client's request body), logged here with the request id.
    async fn forward(
        &self,
        req: Request<Incoming>,
        sent: Sent,
        engine: &Engine,
        identity: HeaderMap,
        peer: &Peer,
        rid: &RequestId,
    ) -> (Response<ProxyBody>, Option<&'static str>) {
        let Sent {
            started,
            target,
            host,
            trusted,
            strip_dpop,
            bearer,
            nonce,
        } = sent;
        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        if strip_dpop {
            headers.remove(jwtd_gate::dpop::DPOP);
        }
        if bearer {
            dpop_to_bearer(headers);
        }
        let seen = scrub_request(
            headers,
            &engine.identity.mapped,
            self.options.remove_authorization,
            trusted,
            engine.forwarded_cert.as_ref().map(|f| &f.header),
        );
        let upgrade = seen.upgrade.as_ref();
        // The client's side of the upgrade (hyper's server puts it there for an upgrade
        // request).
        let client_upgrade =
            upgrade.and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        // The identity headers and the forwarding ones: room made once.
        headers.reserve(identity.len() + 5);
        // The request id the client is answered with, over any the client sent.
        headers.insert(X_REQUEST_ID, rid.header_value().clone());
        if self.options.remove_authorization {
            if let Some(name) = &engine.sources.cookie {
                strip_cookie(headers, name);
            }
        }
        // Moved, not cloned (cloning a header made from a `Vec` allocates). The client's
        // identity headers are gone already (`scrub_request`).
        let mut identity = identity.into_iter().peekable();
        while let Some((name, value)) = identity.next() {
            // `None` only follows a name (another value of it), taken below.
            let Some(name) = name else { continue };
            if !matches!(identity.peek(), Some((None, _))) {
                if !value.is_empty() {
                    headers.insert(name, value);
                }
                continue;
            }
            // Several values of one name (rare): all of them.
            headers.remove(&name);
            let mut value = Some(value);
            while let Some(v) = value.take() {
                if !v.is_empty() {
                    headers.append(&name, v);
                }
                value = identity.next_if(|(n, _)| n.is_none()).map(|(_, v)| v);
            }
        }
        let missing_host = host.is_none();
        forwarded_headers(headers, peer, host, trusted, &seen);
        if missing_host {
            // An HTTP/1.0 request without one: the upstream's own (HTTP/1.1 needs a Host).
            headers.insert(header::HOST, self.upstream.host.clone());
        }
        if let Some(up) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, up.clone());
        }
        parts.uri = match self.upstream.target(target, std::mem::take(&mut parts.uri)) {
            Ok(u) => u,
            Err(_) => {
                tracing::warn!(
                    request_id = rid.as_str(),
                    "the upstream target is not a URI"
                );
                return failed(Reason::UpstreamUnavailable);
            }
        };
        parts.version = Version::HTTP_11;
        // Within `response_timeout`, on the connection's one timer (see `Peer::response_timer`),
        // from the request's start (the clock read once a request: the decision's microseconds
        // count against it).
        let now = tokio::time::Instant::from_std(started);
        let after = |d: Duration| {
            now.checked_add(d)
                .unwrap_or_else(|| now + Duration::from_secs(1 << 30))
        };
        let deadline = after(self.options.response_timeout);
        let body = Outgoing::new(
            body,
            self.options.body_timeout,
            after(self.options.body_total_timeout),
        );
        let outgoing = Request::from_parts(parts, body);
        let mut timer = peer.response_timer(deadline);
        let mut send = std::pin::pin!(self.client.send(outgoing));
        let sent = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = send.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) if tokio::time::Instant::now() >= deadline => Poll::Ready(Err(())),
                // Fired for an earlier deadline (it never is: they only grow): moved, once.
                Poll::Ready(()) => {
                    timer.as_mut().reset(deadline);
                    timer.as_mut().poll(cx).map(Err)
                }
            }
        })
        .await;
        peer.keep_timer(timer);
        let (mut resp, lease) = match sent {
            Err(()) => {
                tracing::warn!(request_id = rid.as_str(), upstream = %self.options.upstream, "no response head within response_timeout");
                return failed(Reason::UpstreamTimeout);
            }
            Ok(Err(e)) if e.client_body().is_some() => {
                // The client's body was malformed (a bad chunk) or cut: its fault, not the
                // upstream's; hyper's own answer to a malformed request. Stalled past
                // `body_timeout`: 408.
                let stalled = e.client_body().is_some_and(|c| c.stalled());
                if stalled {
                    tracing::info!(
                        request_id = rid.as_str(),
                        "client request body past body_timeout or body_total_timeout"
                    );
                } else {
                    tracing::debug!(request_id = rid.as_str(), error = %e, "client request body failed");
                }
                let mut resp = Response::new(empty());
                *resp.status_mut() = if stalled {
                    StatusCode::REQUEST_TIMEOUT
                } else {
                    StatusCode::BAD_REQUEST
                };
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                let reason = if stalled {
                    "request_body_timeout"
                } else {
                    "bad_request_body"
                };
                return (resp, Some(reason));
            }
            Ok(Err(e)) => {
                let reason = match &e {
                    Failure::ConnectTimeout => Reason::UpstreamTimeout,
                    Failure::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                        Reason::UpstreamTimeout
                    }
                    _ => Reason::UpstreamUnavailable,
                };
                tracing::warn!(request_id = rid.as_str(), upstream = %self.options.upstream, error = %e, "upstream request failed");
                return failed(reason);
            }
            Ok(Ok(r)) => r,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection is the tunnel's now: never back to the pool.
            drop(lease);
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                let held = peer.held.clone();
                let limits = (
                    self.options.tunnel_idle_timeout,
                    self.options.tunnel_max_lifetime,
                );
                tokio::spawn(async move {
                    let _held = held;
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, upstream)) => {
                            tunnel(TokioIo::new(client), TokioIo::new(upstream), limits).await;
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
                return (Response::from_parts(parts, empty()), None);
            }
            // A 101 nobody asked for: not passed on.
            tracing::warn!(
                request_id = rid.as_str(),
                "the upstream switched protocols without an upgrade request"
            );
            return failed(Reason::UpstreamUnavailable);
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(n) = nonce {
            // A fresh server nonce for the client (RFC 9449 section 8.2), jwtd's, not the app's.
            parts.headers.insert(jwtd_gate::refusal::DPOP_NONCE, n);
        }
        let body = UpstreamBody {
            inner: body,
            idle: self.options.idle_timeout,
            timer: None,
            lease: Some(lease),
        };
        (Response::from_parts(parts, body.boxed()), None)
    }
}

/// An upstream failure's answer and its reason code.
fn failed(reason: Reason) -> (Response<ProxyBody>, Option<&'static str>) {
    (upstream_failure(reason), Some(reason.as_str()))
}

/// What the decision gives the forwarding: the target (`None`: as received), the `Host`
/// decided on, and whether the peer's forwarded headers are kept.
struct Sent {
    /// When the request was taken (its head read).
    started: std::time::Instant,
    target: Option<String>,
    host: Option<HeaderValue>,
    trusted: bool,
    /// Any `DPoP` header is removed (`on_pass = "strip"`, [`jwtd_gate::Allowed::strip_dpop`]).
    strip_dpop: bool,
    /// The request passed with a DPoP proof whose issuer strips it: `Authorization: DPoP <t>`
    /// goes upstream as `Authorization: Bearer <t>`.
    bearer: bool,
    /// A fresh server nonce for the client's answer (`DPoP-Nonce`).
    nonce: Option<HeaderValue>,
}

/// The scheme the engine decides on (a DPoP proof's `htu`): the listener's, `http`, unless a
/// trusted proxy (`trusted_proxies`) sent exactly one `X-Forwarded-Proto` of `http` or
/// `https` (a TLS-terminating load balancer in front).
fn request_scheme(headers: &HeaderMap, trusted: bool) -> &'static str {
    if trusted {
        let mut all = headers.get_all(XFP).iter();
        if let (Some(v), None) = (all.next(), all.next()) {
            if v.as_bytes().eq_ignore_ascii_case(b"https") {
                return "https";
            }
        }
    }
    "http"
}

/// `on_pass = "strip"` after a proof passed: `Authorization: DPoP <token>` sent as
/// `Authorization: Bearer <token>` (the upstream sees a bearer token it can read as before).
fn dpop_to_bearer(headers: &mut HeaderMap) {
    let rewritten = headers.get(header::AUTHORIZATION).and_then(|v| {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once([' ', '\t'])?;
        scheme
            .eq_ignore_ascii_case("dpop")
            .then(|| HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok())
            .flatten()
    });
    if let Some(v) = rewritten {
        headers.insert(header::AUTHORIZATION, v);
    }
}

/// The identity headers removed from every client request whatever the engine owns.
const OWNED: [HeaderName; 5] = [
    jwtd_gate::issuers::SUBJECT,
    jwtd_gate::issuers::ISSUER,
    jwtd_gate::issuers::PAYLOAD,
    jwtd_gate::dpop::X_AUTH_JKT,
    jwtd_gate::mtls::THUMBPRINT_HEADER,
];

/// The client-certificate headers of the common front proxies (RFC 9440, Envoy), removed
/// from an untrusted peer's request whatever `[forwarded] client_cert` says: jwtd is then the
/// TLS end, so such a header can only be the client's own forgery, which an upstream that
/// reads it must not see.
const CERT_HEADERS: [&str; 3] = [
    "client-cert",
    "client-cert-chain",
    "x-forwarded-client-cert",
];

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The forwarding headers jwtd sets (or keeps from a trusted peer).
const FORWARDED: [HeaderName; 4] = [XFF, XFP, XFH, header::FORWARDED];

/// The path and query sent upstream for a request to `uri` (`None`: as received): as received, except that dot
/// segments (`.` and `..`, `%2e` spelled either way) are resolved as the engine resolves them
/// before matching, so the upstream is sent the path that was decided, never one an upstream
/// that does not resolve them (or resolves them after routing) reads as another. An error (a
/// `bad_path` refusal) for a target jwtd does not forward: `CONNECT`, `*`, a backslash (`\`
/// or `%5C`: some upstreams read it as `/`), or a dot segment behind an encoded slash
/// (`..%2F`).
fn forward_target(method: &http::Method, uri: &Uri) -> Result<Option<String>, &'static str> {
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
    // Most paths: nothing to resolve or refuse without a dot, an escape or a backslash.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return Ok(None);
    }
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
        return Ok(None);
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
    Ok(Some(out))
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
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "http2-settings"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

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
    let mut doomed = Vec::new();
    let mut connection = false;
    for name in headers.keys() {
        if hop_by_hop(name.as_str()) {
            connection |= name == header::CONNECTION;
            doomed.push(name.clone());
        }
    }
    if connection {
        doomed.extend(connection_listed(headers));
    }
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

/// What [`scrub_request`] saw of the request: the forwarding headers it left (a trusted peer's
/// are kept), and an upgrade asked for.
#[derive(Default)]
struct Seen {
    xff: bool,
    xfp: bool,
    xfh: bool,
    upgrade: Option<HeaderValue>,
}

/// Everything of the client's request that must not reach the upstream, in one pass over the
/// names present: the hop-by-hop headers and those `Connection` names, every identity header
/// jwtd owns (`mapped` and [`OWNED`]) also when spelled with `_` for `-` (CGI-style upstreams,
/// WSGI, PHP, Rack, read `X_Auth_Subject` as `HTTP_X_AUTH_SUBJECT`, the same variable as
/// jwtd's `X-Auth-Subject`), such spellings of the forwarding headers jwtd sets ([`FORWARDED`];
/// the names themselves are replaced by [`forwarded_headers`]) and of `X-Request-Id` (set by
/// [`Proxy::forward`]), `Authorization` when
/// `remove_authorization`, and `Forwarded` from an untrusted peer. The upgrade asked for
/// ([`upgrade_of`]) is read before `Connection` and `Upgrade` go.
fn scrub_request(
    headers: &mut HeaderMap,
    mapped: &[HeaderName],
    remove_authorization: bool,
    trusted: bool,
    client_cert: Option<&HeaderName>,
) -> Seen {
    let mut seen = Seen::default();
    let mut doomed = Vec::new();
    let (mut connection, mut upgrade) = (false, false);
    for n in headers.keys() {
        let s = n.as_str();
        let gone = if hop_by_hop(s) {
            connection |= n == header::CONNECTION;
            upgrade |= n == header::UPGRADE;
            true
        } else {
            OWNED
                .iter()
                .chain(mapped)
                .any(|o| same_header(s, o.as_str()))
                || (s.contains('_')
                    && (FORWARDED.iter().any(|o| same_header(s, o.as_str()))
                        || same_header(s, X_REQUEST_ID.as_str())))
                || (remove_authorization && n == header::AUTHORIZATION)
                || (!trusted && n == header::FORWARDED)
                || (!trusted
                    && (client_cert.is_some_and(|c| same_header(s, c.as_str()))
                        || CERT_HEADERS.iter().any(|c| same_header(s, c))))
        };
        if gone {
            doomed.push(n.clone());
        } else if s.starts_with("x-forwarded-") {
            seen.xff |= n == XFF;
            seen.xfp |= n == XFP;
            seen.xfh |= n == XFH;
        }
    }
    if connection {
        if upgrade {
            seen.upgrade = upgrade_of(headers);
        }
        let listed = connection_listed(headers);
        seen.xff &= !listed.contains(&XFF);
        seen.xfp &= !listed.contains(&XFP);
        seen.xfh &= !listed.contains(&XFH);
        doomed.extend(listed);
    }
    remove_all(headers, doomed);
    seen
}

/// `X-Forwarded-For`, `-Proto`, `-Host` (and `Forwarded`), see the crate docs. Each is set
/// with `insert`, which drops every value the client sent under that name.
fn forwarded_headers(
    headers: &mut HeaderMap,
    peer: &Peer,
    host: Option<HeaderValue>,
    trusted: bool,
    seen: &Seen,
) {
    let xff = if trusted && seen.xff {
        let mut xff = String::new();
        for v in headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()) {
            let v = v.trim();
            if !v.is_empty() {
                xff.push_str(v);
                xff.push_str(", ");
            }
        }
        xff.push_str(peer.xff.to_str().unwrap_or_default());
        HeaderValue::from_str(&xff).ok()
    } else {
        Some(peer.xff.clone())
    };
    match xff {
        Some(v) => {
            headers.insert(XFF, v);
        }
        None => {
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
    let proto = (trusted && seen.xfp)
        .then(|| single(headers, &XFP))
        .flatten()
        .unwrap_or(HeaderValue::from_static(if peer.tls {
            "https"
        } else {
            "http"
        }));
    headers.insert(XFP, proto);
    match (trusted && seen.xfh)
        .then(|| single(headers, &XFH))
        .flatten()
        .or(host)
    {
        Some(h) => {
            headers.insert(XFH, h);
        }
        None => {
            headers.remove(&XFH);
        }
    }
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
    // Appended: a DPoP refusal has two `WWW-Authenticate` fields (`DPoP`, then `Bearer`); the
    // table sends every other name once.
    for (name, value) in answer.headers {
        resp.headers_mut().append(name, value);
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

/// The upstream's response body, cut when no frame comes for `idle`; read to the end, its
/// connection goes back to the pool.
struct UpstreamBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    lease: Option<Lease>,
}

impl UpstreamBody {
    fn put_back(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.put_back();
        }
    }
}

impl Drop for UpstreamBody {
    /// hyper's server does not poll a body that says it has ended.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.put_back();
        }
    }
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

impl Body for UpstreamBody {
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
                match &r {
                    None => this.put_back(),
                    Some(Ok(_)) if this.inner.is_end_stream() => this.put_back(),
                    Some(Ok(_)) => {}
                    // The connection goes with its failed response.
                    Some(Err(_)) => this.lease = None,
                }
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
                        this.lease = None;
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

/// Serves the requests of one client connection `io` until it ends, or, once `stopped`,
/// after its current answer.
async fn serve_connection<S, I>(
    builder: hyper::server::conn::http1::Builder,
    io: TokioIo<I>,
    proxy: Arc<Proxy<S>>,
    peer: Peer,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) where
    S: EngineSource,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = Arc::new(peer);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let peer = peer.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy.respond(req, &peer).await) }
    });
    let conn = builder.serve_connection(io, service).with_upgrades();
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
}

/// Copies bytes both ways between an upgraded client connection and its upstream until either
/// side closes, no byte has gone either way for `idle` (the first of `limits`), or `lifetime`
/// (the second) has passed since the upgrade; then both are dropped (closed).
async fn tunnel<A, B>(client: A, upstream: B, (idle, lifetime): (Duration, Duration))
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = tokio::time::Instant::now();
    // Past what a tunnel may live (a `Duration` that large from an embedder): no panic.
    let after = |t: tokio::time::Instant, d: Duration| {
        t.checked_add(d)
            .unwrap_or_else(|| t + Duration::from_secs(1 << 30))
    };
    let end = after(start, lifetime);
    // Milliseconds from `start` to the last byte read either way.
    let last = AtomicU64::new(0);
    let mut client = Active {
        io: client,
        start,
        last: &last,
    };
    let mut upstream = Active {
        io: upstream,
        start,
        last: &last,
    };
    let watch = async {
        loop {
            let at = after(
                start + Duration::from_millis(last.load(Ordering::Relaxed)),
                idle,
            );
            tokio::time::sleep_until(at.min(end)).await;
            let now = tokio::time::Instant::now();
            if now >= end {
                return "tunnel_max_lifetime";
            }
            let since = start + Duration::from_millis(last.load(Ordering::Relaxed));
            if now.duration_since(since) >= idle {
                return "tunnel_idle_timeout";
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        limit = watch => tracing::debug!(limit, "upgraded tunnel closed at its limit"),
    }
}

/// One side of a tunnel, noting when it last read a byte.
struct Active<'a, T> {
    io: T,
    start: tokio::time::Instant,
    last: &'a AtomicU64,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Active<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Active<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A connection's permit under [`Limits::max_connections`], shared by its requests so that an
/// upgrade's tunnel keeps it until the tunnel closes.
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
    serve_tls(proxy, listener, limits, None, shutdown).await
}

/// [`serve`], with every connection speaking TLS when `tls` is given: the handshake first,
/// within [`Limits::header_read_timeout`] of the accept (a connection that does not finish it
/// is closed); the client's certificate (verified by `tls`'s client verifier), when it sent
/// one, is the request's client certificate for the engine (RFC 8705 bound tokens), and
/// `X-Forwarded-Proto` is `https`.
pub async fn serve_tls<S: EngineSource>(
    proxy: Proxy<S>,
    listener: tokio::net::TcpListener,
    limits: &Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let handshake_timeout = limits.header_read_timeout;
    let proxy = Arc::new(proxy);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
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
                // Each connection its own header read timer (see timer.rs).
                let mut builder = builder.clone();
                builder.timer(timer::HeadTimer::default());
                let mut stopped = stopped.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let held = Held {
                        _permit: Arc::new(permit),
                    };
                    let mut peer = Peer::new(peer, Some(held));
                    let Some(acceptor) = acceptor else {
                        serve_connection(builder, TokioIo::new(stream), proxy, peer, stopped)
                            .await;
                        return;
                    };
                    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    let stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "proxy TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("proxy TLS handshake timed out");
                                return;
                            }
                        },
                        _ = stopped.wait_for(|s| *s) => return,
                    };
                    peer.tls = true;
                    peer.cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::from(c.as_ref()));
                    serve_connection(builder, TokioIo::new(stream), proxy, peer, stopped).await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let _ = permits.acquire_many(cap as u32).await;
    Ok(())
}
