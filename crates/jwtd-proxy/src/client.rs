//! The proxy's HTTP/1.1 client to its one upstream: connections made with
//! `hyper::client::conn::http1` (TCP, or TLS with tokio-rustls for an `https` upstream) and a
//! bounded list of idle kept-alive ones, most recently used first. The upstream is fixed, so
//! the pool is one list: no key to hash, no boxed future, one lock per checkout and one per
//! return.
//!
//! A connection goes back to the pool when its response body has been read to the end and
//! hyper says it can take another request; one that failed, was upgraded, was told to close,
//! or whose response was not read to the end is dropped (and closed). An idle connection is
//! never used past `idle_timeout`, and a task per pool closes those left idle that long.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The client's request body on its way to the upstream: its error is told apart from the
/// upstream's (a malformed or cut request body is the client's fault, answered 400), and a
/// gap of `timeout` between two of its chunks (or before the first), or its end not in by
/// `deadline`, fails it ([`ClientBodyError::Stalled`]).
pub(crate) struct Outgoing {
    inner: Incoming,
    timeout: Duration,
    /// When the whole body must be in (`body_total_timeout` from the request).
    deadline: tokio::time::Instant,
    /// Armed while the body is waited for; dropped at each chunk.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Outgoing {
    /// The client's body `inner`, failed past `timeout` without a chunk or when not ended by
    /// `deadline`.
    pub(crate) fn new(
        inner: Incoming,
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Outgoing {
        Outgoing {
            inner,
            timeout,
            deadline,
            timer: None,
        }
    }
}

/// The client's request body failed.
#[derive(Debug)]
pub(crate) enum ClientBodyError {
    /// A malformed chunk, the client gone.
    Read(hyper::Error),
    /// No chunk within `body_timeout`, or not ended within `body_total_timeout`.
    Stalled,
}

impl ClientBodyError {
    /// The body stalled past `body_timeout` or `body_total_timeout` (rather than failing).
    pub(crate) fn stalled(&self) -> bool {
        matches!(self, ClientBodyError::Stalled)
    }
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Read(e) => write!(f, "reading the client's request body: {e}"),
            ClientBodyError::Stalled => {
                f.write_str("the client's request body stalled past body_timeout or took longer than body_total_timeout")
            }
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Read(e) => Some(e),
            ClientBodyError::Stalled => None,
        }
    }
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.timer = None;
                Poll::Ready(f.map(|r| r.map_err(ClientBodyError::Read)))
            }
            Poll::Pending => {
                // The next gap's end, or the whole body's when that comes first.
                let (timeout, deadline) = (this.timeout, this.deadline);
                let timer = this.timer.get_or_insert_with(|| {
                    let now = tokio::time::Instant::now();
                    let gap = now.checked_add(timeout).unwrap_or(deadline);
                    Box::pin(tokio::time::sleep_until(gap.min(deadline)))
                });
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::Stalled))),
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

/// Why a request got no response from the upstream.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection within `connect_timeout`.
    ConnectTimeout,
    /// The connection (TCP, TLS) failed.
    Connect(std::io::Error),
    /// The exchange failed: the upstream closed, reset, sent garbage, or the client's body
    /// failed (see [`Failure::client_body`]).
    Exchange(hyper::Error),
}

impl Failure {
    /// The client's request body failed (not the upstream): how.
    pub(crate) fn client_body(&self) -> Option<&ClientBodyError> {
        match self {
            Failure::Exchange(e) => {
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    if let Some(c) = s.downcast_ref::<ClientBodyError>() {
                        return Some(c);
                    }
                    source = s.source();
                }
                None
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::ConnectTimeout => f.write_str("no connection within connect_timeout"),
            Failure::Connect(e) => write!(f, "connecting: {e}"),
            Failure::Exchange(e) => {
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
        }
    }
}

/// How connections are made: where, and with TLS or not.
struct Dial {
    /// The upstream's host (an IP address, or a name resolved at each new connection) and
    /// port.
    host: String,
    port: u16,
    /// Set when the host is an IP address: no resolution.
    addr: Option<SocketAddr>,
    /// For an `https` upstream.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// An idle kept-alive connection, and since when.
struct Idle {
    tx: SendRequest<Outgoing>,
    since: Instant,
}

/// The upstream client and its pool.
pub(crate) struct Client {
    dial: Dial,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    http1: http1::Builder,
    idle: Mutex<VecDeque<Idle>>,
    reaper: AtomicBool,
}

/// A connection in use, going back to its pool (see [`Client::put_back`]).
pub(crate) struct Lease {
    tx: SendRequest<Outgoing>,
    client: Arc<Client>,
}

impl Lease {
    /// Returns the connection to the pool if it can take another request (its response,
    /// read to the end, did not close it).
    pub(crate) fn put_back(self) {
        let Lease { tx, client } = self;
        if client.max_idle == 0 {
            return;
        }
        if tx.is_ready() {
            client.push(tx);
        } else if !tx.is_closed() {
            // Not yet ready (the connection task has not seen the response end yet, or the
            // request body is still being sent): waited for apart, rarely.
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let pool = Arc::downgrade(&client);
            drop(client);
            let mut tx = tx;
            rt.spawn(async move {
                if tx.ready().await.is_ok() {
                    if let Some(client) = pool.upgrade() {
                        client.push(tx);
                    }
                }
            });
        }
    }
}

impl Client {
    /// A client for `scheme://authority`; an error names a host TLS cannot name.
    pub(crate) fn new(
        https: bool,
        authority: &http::uri::Authority,
        tls: Option<rustls::ClientConfig>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Result<Client, String> {
        let host = authority.host();
        // `[::1]` is an IPv6 address.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = bare
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        let tls = match (https, tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(bare.to_owned())
                    .map_err(|e| format!("upstream host {bare:?} is not a TLS server name: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
            _ => None,
        };
        let http1 = http1::Builder::new();
        Ok(Client {
            dial: Dial {
                host: bare.to_owned(),
                port,
                addr,
                tls,
            },
            connect_timeout,
            idle_timeout,
            max_idle,
            http1,
            idle: Mutex::new(VecDeque::with_capacity(max_idle.min(1024))),
            reaper: AtomicBool::new(false),
        })
    }

    /// Sends `req` (origin-form target, with its `Host`) on an idle connection, or a new one;
    /// the response head and the connection's lease, for [`Lease::put_back`] once the body is
    /// read. A request a kept-alive connection closed before writing any of it (the upstream
    /// closed it while idle) is sent again on another; one written in part or whole never is.
    pub(crate) async fn send(
        self: &Arc<Client>,
        mut req: Request<Outgoing>,
    ) -> Result<(Response<Incoming>, Lease), Failure> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        tx,
                        client: self.clone(),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Failure::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and ready, if any.
    fn checkout(&self) -> Option<SendRequest<Outgoing>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(c) = idle.pop_back() {
            if c.tx.is_ready() && c.since.elapsed() < self.idle_timeout {
                return Some(c.tx);
            }
        }
        None
    }

    /// Keeps `tx` idle; past `max_idle`, the oldest idle connection goes.
    fn push(self: &Arc<Client>, tx: SendRequest<Outgoing>) {
        let since = Instant::now();
        let old = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let old = if idle.len() >= self.max_idle {
                idle.pop_front()
            } else {
                None
            };
            idle.push_back(Idle { tx, since });
            old
        };
        drop(old);
        if !self.reaper.load(Ordering::Relaxed) && !self.reaper.swap(true, Ordering::Relaxed) {
            let pool = Arc::downgrade(self);
            tokio::spawn(reap(pool, self.idle_timeout));
        }
    }

    /// A new connection, within `connect_timeout` (TCP connect and, for https, the TLS
    /// handshake); its task is spawned.
    async fn connect(&self) -> Result<SendRequest<Outgoing>, Failure> {
        let dial = async {
            let tcp = match self.dial.addr {
                Some(addr) => tokio::net::TcpStream::connect(addr).await?,
                None => {
                    tokio::net::TcpStream::connect((self.dial.host.as_str(), self.dial.port))
                        .await?
                }
            };
            let _ = tcp.set_nodelay(true);
            match &self.dial.tls {
                None => Ok::<_, std::io::Error>(Io::Plain(tcp)),
                Some((connector, name)) => Ok(Io::Tls(Box::new(
                    connector.connect(name.clone(), tcp).await?,
                ))),
            }
        };
        let io = match tokio::time::timeout(self.connect_timeout, dial).await {
            Err(_) => return Err(Failure::ConnectTimeout),
            Ok(Err(e)) => return Err(Failure::Connect(e)),
            Ok(Ok(io)) => io,
        };
        match io {
            Io::Plain(tcp) => self.handshake(tcp).await,
            Io::Tls(tls) => self.handshake(*tls).await,
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<SendRequest<Outgoing>, Failure>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, conn) = self
            .http1
            .handshake(TokioIo::new(io))
            .await
            .map_err(Failure::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// Closes the pool's connections idle for `idle_timeout` (or closed by the upstream), every
/// half of it, until the pool is gone.
async fn reap(pool: Weak<Client>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(client) = pool.upgrade() else {
            return;
        };
        let gone = {
            let mut idle = client.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let (keep, gone): (VecDeque<Idle>, VecDeque<Idle>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|c| !c.tx.is_closed() && c.since.elapsed() < idle_timeout);
            *idle = keep;
            gone
        };
        drop(gone);
    }
}
