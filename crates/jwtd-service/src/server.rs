//! The HTTP server: an accept loop with a connection cap, per-connection header, idle and
//! request deadlines, and a shutdown that drains for a bounded time.
//!
//! Every connection has a watchdog that knows whether a request is in progress (from the
//! service) and whether bytes of the next request arrived (from the socket):
//!
//! | state | closed when |
//! |---|---|
//! | fresh, no request yet | `header_read_timeout` after it was accepted |
//! | kept alive, nothing received | `idle_timeout` after the last answer |
//! | kept alive, part of a request received | `header_read_timeout` after its first byte |
//! | a request whose body is still arriving | `header_read_timeout` after its header arrived (a body sent slowly cannot hold a slot longer); evictable at the cap |
//! | a request in progress, body received | never by the watchdog: the request is answered 408 after `request_timeout` |
//!
//! On shutdown, connections without a request in progress close at once; the others finish it
//! (no further request is read) until `shutdown_timeout`, when whatever remains is dropped.
//!
//! At `max_connections`, each accepted connection closes up to [`EVICT_BATCH`] of those that
//! waited longest without a request in progress (as nginx reuses its keep-alive connections);
//! when all of them have one, accepting pauses and the listen backlog holds the rest. Idle and
//! slow clients therefore cannot keep a new client out, whatever their number.

use crate::config::ServerSettings;
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Most idle connections one accept at the cap closes (nginx drains 32 reusable connections at
/// a time): one scan of the table serves many accepts.
pub(crate) const EVICT_BATCH: usize = 32;

/// Concurrent streams per HTTP/2 connection.
pub(crate) const MAX_STREAMS: u32 = 32;

/// No request yet: the header deadline runs from the accept.
const FRESH: u8 = 0;
/// Kept alive between requests, nothing received: the idle deadline runs.
const IDLE: u8 = 1;
/// Kept alive, part of the next request received: the header deadline runs from its first byte.
const READING: u8 = 2;

/// Server phases, broadcast to every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Finish requests in progress, then close.
    Draining,
    /// The drain deadline passed: close now.
    Abort,
}

/// One connection's shared state.
struct Conn {
    /// The server's start, which `since` counts from.
    start: Instant,
    /// Requests in progress (HTTP/2 streams; 0 or 1 for HTTP/1.1).
    in_flight: AtomicUsize,
    /// Of those, requests whose body has not fully arrived: the connection is still the
    /// client's to fill, so it is bounded like a header and may be evicted.
    receiving: AtomicUsize,
    /// When the oldest body still arriving began, milliseconds since the server started.
    receiving_since: AtomicU64,
    /// FRESH, IDLE or READING (meaningful while `in_flight` is 0).
    state: AtomicU8,
    /// When the state began, milliseconds since the server started.
    since: AtomicU64,
    /// Told to close to make room for a new connection.
    evicted: AtomicBool,
    /// Wakes the watchdog (eviction).
    wake: Notify,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// True when no request is in progress beyond receiving its body: nothing is owed to the
    /// client yet, so the connection may be evicted at the cap.
    fn owes_nothing(&self) -> bool {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight == 0 || self.receiving.load(Ordering::Acquire) >= in_flight
    }
}

/// A request body still arriving: counted on its connection until it ended (or was dropped).
struct Receiving {
    inner: Incoming,
    conn: Option<Arc<Conn>>,
}

impl Receiving {
    fn new(inner: Incoming, conn: &Arc<Conn>) -> Receiving {
        if conn.receiving.fetch_add(1, Ordering::AcqRel) == 0 {
            conn.receiving_since.store(conn.now_ms(), Ordering::Relaxed);
        }
        Receiving {
            inner,
            conn: Some(conn.clone()),
        }
    }

    fn done(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.receiving.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for Receiving {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.done(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections.
struct Registry {
    start: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Connections counted against the cap: open and not told to close.
    live: AtomicUsize,
    /// A connection ended.
    ended: Notify,
    open: metrics::Gauge,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.conns.lock().expect("lock").len()
    }

    /// Connections counted against the cap: those not already told to close.
    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Marks `conn` as closing; whoever marks it first takes it off the count.
    fn retire(&self, conn: &Conn) -> bool {
        let first = !conn.evicted.swap(true, Ordering::AcqRel);
        if first {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        first
    }

    /// Closes up to [`EVICT_BATCH`] connections without a request in progress, those waiting
    /// longest first; `false` when there was none.
    fn evict_idle(&self) -> bool {
        let conns = self.conns.lock().expect("lock");
        let mut idle: Vec<(u64, &Arc<Conn>)> = conns
            .values()
            .filter(|c| c.owes_nothing() && !c.evicted.load(Ordering::Relaxed))
            .map(|c| (c.since.load(Ordering::Relaxed), c))
            .collect();
        if idle.is_empty() {
            return false;
        }
        let n = idle.len().min(EVICT_BATCH);
        if idle.len() > n {
            idle.select_nth_unstable_by_key(n - 1, |(since, _)| *since);
        }
        for (_, c) in &idle[..n] {
            if self.retire(c) {
                c.wake.notify_one();
            }
        }
        metrics::counter!("jwtd_connections_closed_total", "reason" => "evicted")
            .increment(n as u64);
        tracing::debug!(
            closed = n,
            "connection limit reached: closed idle connections"
        );
        true
    }
}

/// Counts a request in progress on its connection; on drop, the connection becomes idle.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: Arc<Conn>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The state first, so a watchdog (or an eviction scan) that sees no request in progress
        // sees the fresh idle time.
        let conn = &self.0;
        conn.since.store(conn.now_ms(), Ordering::Relaxed);
        conn.state.store(IDLE, Ordering::Relaxed);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket (or the TLS stream over it), noting the first byte of each request that arrives
/// on a kept-alive connection.
struct Tracked<S> {
    io: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.in_flight.load(Ordering::Acquire) == 0
            && self.conn.state.load(Ordering::Relaxed) == IDLE
        {
            // No wake-up: the watchdog never sleeps longer than the header deadline, so it
            // looks again before this request's header is due (one wake-up a request less).
            self.conn.since.store(self.conn.now_ms(), Ordering::Relaxed);
            self.conn.state.store(READING, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy)]
enum Closed {
    HeaderTimeout,
    BodyTimeout,
    IdleTimeout,
    Evicted,
    /// Evicted while a request it had started was in progress: finish it, then close.
    EvictedBusy,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::BodyTimeout => "body_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted | Closed::EvictedBusy => "evicted",
        }
    }
}

/// Resolves when the connection must close: its deadline passed, or it was evicted.
async fn watchdog(conn: &Conn, registry: &Registry, limits: &ServerSettings) -> Closed {
    let header = limits.header_read_timeout.0;
    let idle = limits.idle_timeout.0;
    // While a request is in progress nothing is due; look again this often. No sleep is
    // longer: a request that begins on an idle connection (or ends) does not wake the
    // watchdog, whose next look then comes before the new deadline (it began after this
    // sleep did, and is at least this far away).
    let recheck = header.min(idle);
    loop {
        let wake = conn.wake.notified();
        if conn.evicted.load(Ordering::Acquire) {
            // A request may have started between the eviction scan and now: it is finished
            // (no further request is read), never cut.
            return if conn.owes_nothing() {
                Closed::Evicted
            } else {
                Closed::EvictedBusy
            };
        }
        let now = registry.now_ms();
        let in_flight = conn.in_flight.load(Ordering::Acquire);
        let wait = if in_flight > 0 && conn.receiving.load(Ordering::Acquire) >= in_flight {
            // Only bodies still arriving: the client has had the header deadline since the
            // header came in to send them.
            let due = conn
                .receiving_since
                .load(Ordering::Relaxed)
                .saturating_add(header.as_millis() as u64);
            if now >= due {
                return Closed::BodyTimeout;
            }
            Duration::from_millis(due - now).min(recheck)
        } else if in_flight > 0 {
            recheck
        } else {
            let since = conn.since.load(Ordering::Relaxed);
            let (limit, reason) = match conn.state.load(Ordering::Relaxed) {
                IDLE => (idle, Closed::IdleTimeout),
                _ => (header, Closed::HeaderTimeout),
            };
            let due = since.saturating_add(limit.as_millis() as u64);
            if now >= due {
                return reason;
            }
            Duration::from_millis(due - now).min(recheck)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake => {}
        }
    }
}

/// The answer to a request that did not finish within `request_timeout`.
fn timeout_response() -> Response<Body> {
    let mut r = Response::new(Body::from(
        "{\"error\":\"request_timeout\",\"message\":\"the request did not complete in time\"}",
    ));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Serves one connection until it ends, its watchdog fires, or the drain deadline passes.
/// With `tls`, the TLS handshake comes first, within `header_read_timeout` of the accept (and
/// cut by an eviction or the shutdown); the client's certificate, when it sent one, goes with
/// every request of the connection.
#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    state: Arc<AppState>,
    router: axum::Router,
    limits: Arc<ServerSettings>,
    mut phase: watch::Receiver<Phase>,
) {
    let peer = stream.peer_addr().ok();
    let closed = match tls {
        None => {
            serve_requests(
                stream, false, peer, None, &conn, &registry, &builder, state, router, &limits,
                &mut phase,
            )
            .await
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout(
                crate::tls::handshake_timeout(&limits),
                acceptor.accept(stream),
            );
            let outcome = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        Err("tls_handshake")
                    }
                    Err(_) => Err("header_timeout"),
                },
                _ = conn.wake.notified() => Err("evicted"),
                _ = phase.wait_for(|p| *p != Phase::Running) => Err("shutdown"),
            };
            match outcome {
                Ok(stream) => {
                    let cert = crate::tls::peer_certificate(stream.get_ref().1);
                    serve_requests(
                        stream, true, peer, cert, &conn, &registry, &builder, state, router,
                        &limits, &mut phase,
                    )
                    .await
                }
                Err(reason) => Some(reason),
            }
        }
    };
    if let Some(reason) = closed {
        if reason != "evicted" {
            metrics::counter!("jwtd_connections_closed_total", "reason" => reason).increment(1);
        }
        tracing::debug!(reason, "connection closed");
    }
    registry.retire(&conn);
    registry.conns.lock().expect("lock").remove(&id);
    registry.open.decrement(1.0);
    registry.ended.notify_waiters();
}

/// A request extension: the request came over jwtd's own TLS listener (`[tls]`), so its
/// scheme is `https` (a DPoP proof's `htu` names it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OverTls;

/// The requests of one connection (see [`connection`]); `tls` when it is over jwtd's TLS.
#[allow(clippy::too_many_arguments)]
async fn serve_requests<S>(
    stream: S,
    tls: bool,
    peer: Option<std::net::SocketAddr>,
    cert: Option<Arc<[u8]>>,
    conn: &Arc<Conn>,
    registry: &Registry,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    state: Arc<AppState>,
    router: axum::Router,
    limits: &ServerSettings,
    phase: &mut watch::Receiver<Phase>,
) -> Option<&'static str>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Tracked {
        io: stream,
        conn: conn.clone(),
    });
    let request_timeout = limits.request_timeout.0;
    let c = conn.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let guard = InFlight::new(c.clone());
        // `/auth`, the hottest path, is answered without the router (the same handler code).
        let auth = crate::handlers::is_auth_path(req.uri().path());
        // The peer, for the forwarded-request headers of trusted proxies (`/auth`).
        if let (Some(peer), false) = (peer, auth) {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        if let (Some(cert), false) = (&cert, auth) {
            req.extensions_mut()
                .insert(jwtd_gate::mtls::PeerCertificate(cert.clone()));
        }
        if tls && !auth {
            req.extensions_mut().insert(OverTls);
        }
        let req = if hyper::body::Body::is_end_stream(req.body()) {
            req.map(Body::new)
        } else {
            let conn = c.clone();
            req.map(move |b| Body::new(Receiving::new(b, &conn)))
        };
        let mut router = router.clone();
        let state = state.clone();
        let cert = cert.clone();
        async move {
            let answer = async {
                if auth {
                    // The body is never read (and not `Sync`, so not held across the decision).
                    let (parts, _) = req.into_parts();
                    Ok(
                        crate::handlers::auth_answer(&state, &parts, peer, cert.as_deref(), tls)
                            .await,
                    )
                } else {
                    tower::Service::call(&mut router, req).await
                }
            };
            let response = match tokio::time::timeout(request_timeout, answer).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    metrics::counter!("jwtd_requests_timed_out_total").increment(1);
                    timeout_response()
                }
            };
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });
    // The connection (and its socket) is dropped at the end of this block.
    {
        let mut served = pin!(builder.serve_connection(io, service));
        let mut draining = false;
        // Evicted with a request in progress: hyper finishes it and closes.
        let mut finishing = false;
        loop {
            if !draining && *phase.borrow_and_update() != Phase::Running {
                draining = true;
                // Nothing is owed to a connection without a request in progress (idle, or a
                // header still arriving): it closes now. The others finish their request.
                // (A request whose body is still arriving may finish within the drain deadline.)
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    break Some("shutdown");
                }
                served.as_mut().graceful_shutdown();
            }
            if *phase.borrow() == Phase::Abort {
                break Some("shutdown");
            }
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    break None;
                }
                reason = watchdog(conn, registry, limits), if !finishing => match reason {
                    Closed::EvictedBusy => {
                        // Answer the request in progress, read no other; request_timeout and
                        // the drain deadline still bound it.
                        finishing = true;
                        served.as_mut().graceful_shutdown();
                    }
                    other => break Some(other.as_str()),
                },
                changed = phase.changed() => {
                    if changed.is_err() {
                        break Some("shutdown");
                    }
                }
            }
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process, where `/proc` tells it.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Descriptors the process needs besides client connections (listener, stores, logs, remote
/// key fetches), for the start-up check against `RLIMIT_NOFILE`.
const RESERVED_FDS: u64 = 256;

/// Serves `router` on `listener` with `limits` until `shutdown` resolves; then stops accepting,
/// lets requests in progress finish for at most `shutdown_timeout` and drops what remains.
/// With `tls`, every connection speaks TLS (its handshake bounded as [`connection`] says).
pub(crate) async fn run(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = Arc::new(state.runtime().config.server.clone());
    if let Some(nofile) = open_file_limit() {
        if limits.max_connections as u64 + RESERVED_FDS > nofile {
            tracing::warn!(
                max_connections = limits.max_connections,
                open_file_limit = nofile,
                "max_connections is close to or above the open-file limit: raise LimitNOFILE (or ulimit -n) to at least max_connections + {RESERVED_FDS}, or lower max_connections"
            );
        }
    }
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The header deadline is the watchdog's (hyper's own would also cut idle connections at the
    // header timeout). Headers are capped in size: a slow client holds at most this much.
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes.max(8192));
    // Streams per HTTP/2 connection are bounded too (hyper's default is 200), so the connection
    // cap bounds requests in progress: at most 32 per connection.
    builder
        .http2()
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(MAX_STREAMS);
    let builder = Arc::new(builder);
    let registry = Arc::new(Registry {
        start: Instant::now(),
        conns: Mutex::new(HashMap::new()),
        live: AtomicUsize::new(0),
        ended: Notify::new(),
        open: metrics::gauge!("jwtd_connections_open"),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let mut shutdown = pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => return drain(listener, registry, phase_tx, &limits).await,
        };
        // At the cap: close idle connections to make room; when every connection has a request
        // in progress, hold this one (and accept no other: the listen backlog holds them) until
        // one of them finishes.
        loop {
            let ended = registry.ended.notified();
            if registry.live() < limits.max_connections || registry.evict_idle() {
                break;
            }
            tokio::select! {
                _ = ended => {}
                // A request that finishes leaves its connection idle, hence evictable.
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = &mut shutdown => return drain(listener, registry, phase_tx, &limits).await,
            }
        }
        next_id += 1;
        let conn = Arc::new(Conn {
            start: registry.start,
            in_flight: AtomicUsize::new(0),
            receiving: AtomicUsize::new(0),
            receiving_since: AtomicU64::new(0),
            state: AtomicU8::new(FRESH),
            since: AtomicU64::new(registry.now_ms()),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        registry
            .conns
            .lock()
            .expect("lock")
            .insert(next_id, conn.clone());
        registry.live.fetch_add(1, Ordering::AcqRel);
        registry.open.increment(1.0);
        tokio::spawn(connection(
            stream,
            tls.clone(),
            next_id,
            conn,
            registry.clone(),
            builder.clone(),
            state.clone(),
            router.clone(),
            limits.clone(),
            phase_rx.clone(),
        ));
    }
}

/// Accept failures: a connection that died in the backlog is skipped; running out of
/// descriptors or memory pauses accepting briefly instead of spinning.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed (open-file limit? see max_connections and LimitNOFILE)");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Stops accepting, asks every connection to finish, and after `shutdown_timeout` drops those
/// still open.
async fn drain(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    phase: watch::Sender<Phase>,
    limits: &ServerSettings,
) -> io::Result<()> {
    drop(listener);
    let open = registry.len();
    tracing::info!(
        connections = open,
        deadline = %humantime::format_duration(limits.shutdown_timeout.0),
        "shutting down: draining requests"
    );
    let _ = phase.send(Phase::Draining);
    let all_closed = async {
        loop {
            let ended = registry.ended.notified();
            if registry.len() == 0 {
                return;
            }
            ended.await;
        }
    };
    if tokio::time::timeout(limits.shutdown_timeout.0, all_closed)
        .await
        .is_err()
    {
        tracing::warn!(
            connections = registry.len(),
            "drain deadline passed: dropping the remaining connections"
        );
        let _ = phase.send(Phase::Abort);
        // Each connection task drops its socket as soon as it runs; give them a moment.
        let gone = async {
            loop {
                let ended = registry.ended.notified();
                if registry.len() == 0 {
                    return;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), gone).await;
    }
    Ok(())
}
