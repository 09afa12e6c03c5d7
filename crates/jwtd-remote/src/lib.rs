//! # jwtd-remote
//!
//! Keys from a JWKS URL or OIDC discovery, cached so that verification never stalls and an
//! identity provider is never stormed:
//!
//! - one cache per source, shared by every request; lifetimes from `Cache-Control: max-age`,
//!   clamped to `[min_ttl, max_ttl]` (5 min, 24 h); refreshed in the background before expiry;
//! - the last good key set is kept when a refresh fails (stale-if-error, 24 h by default), after
//!   which tokens are refused with `key_fetch_failed`;
//! - a token whose `kid` is unknown triggers one fetch for all requests waiting on it (single
//!   flight), at most one such fetch per cooldown (30 s) per source, and a short negative cache
//!   for that kid; background refreshes do not start the cooldown, so a key published just after
//!   one is accepted on its first token;
//! - start-up never blocks: the first fetch retries with backoff in the background, and the
//!   source reports not ready until it has keys, and again once they are past their lifetime
//!   plus stale-if-error: ready means "can verify now";
//! - a request that finds the keys unusable fetches them itself (single flight, at most once
//!   per [`CacheConfig::unavailable_retry`]), so an outage ends with the provider's, not with
//!   the background retry timer (up to [`CacheConfig::max_backoff`]);
//! - HTTP hygiene: timeouts, a body limit, bounded redirects, HTTPS unless loopback (see
//!   [`HttpConfig`]); a redirect or a discovered `jwks_uri` never downgrades to plain HTTP nor
//!   leads into a loopback, link-local or private address unless the configured URL is one
//!   (see [`check_reached`]);
//! - unknown `kid`s are remembered as keyed hashes, at most [`MAX_NEGATIVE`] of them: the
//!   negative cache is bounded in bytes ([`MAX_NEGATIVE_BYTES`]) whatever kids are sent;
//! - clients are told [`KEYS_UNAVAILABLE`] when keys cannot be used, never the cause; causes
//!   go to the log and to [`RemoteKeys::last_error`], with URL userinfo redacted everywhere
//!   ([`redact`]).
//!
//! ```no_run
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use jwtd_core::{Algorithm, Validation};
//! use jwtd_remote::{CacheConfig, HttpConfig, RemoteKeys, Source};
//!
//! let keys = RemoteKeys::start(
//!     Source::Discovery("https://tenant.example/".into()),
//!     vec![Algorithm::RS256],
//!     HttpConfig::default(),
//!     CacheConfig::default(),
//! )?;
//! keys.wait_ready(std::time::Duration::from_secs(5)).await;
//! let policy = Validation::new(&[Algorithm::RS256])
//!     .issuer("https://tenant.example/")
//!     .audience("https://api.example");
//! let verified = keys.verify(&policy, token).await?;
//! println!("{}", verified.claims_json());
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod http;

pub use http::{
    check_reached, check_url, redact, redact_str, FetchError, FetchErrorKind, HttpConfig,
};

#[doc(hidden)]
pub use http::parse_max_age;

use http::Fetcher;
use jwtd_core::{Algorithm, Error, Jwks, KeySet, Reason, SkippedKey, Validation, Verified};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use url::Url;

/// What a client is told when the keys cannot be used (never fetched, or stale past
/// stale-if-error): a fixed text, since the cause may name internal hosts or credentials. The
/// cause goes to the log (redacted) and to [`RemoteKeys::last_error`], for an authenticated
/// status view.
pub const KEYS_UNAVAILABLE: &str = "the issuer's keys are unavailable";

/// Where keys come from. `Debug` shows its URL redacted (see [`redact`]).
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// A JWKS document at this URL.
    JwksUrl(String),
    /// OIDC discovery: `<issuer>/.well-known/openid-configuration` names the `jwks_uri`, and
    /// its `issuer` must equal this one exactly (OpenID Connect Discovery 1.0, section 4.3).
    Discovery(String),
}

impl Source {
    /// The source's URL with any userinfo redacted, for logs and status views.
    pub fn redacted(&self) -> String {
        match self {
            Source::JwksUrl(u) | Source::Discovery(u) => redact_str(u),
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Source::JwksUrl(_) => "JwksUrl",
            Source::Discovery(_) => "Discovery",
        };
        f.debug_tuple(name).field(&self.redacted()).finish()
    }
}

/// Cache behaviour.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Lower bound on a key set's lifetime, whatever `Cache-Control` says (default 5 min).
    pub min_ttl: Duration,
    /// Upper bound on a key set's lifetime (default 24 h).
    pub max_ttl: Duration,
    /// How long past its lifetime the last good set keeps serving when refreshes fail
    /// (default 24 h).
    pub stale_if_error: Duration,
    /// Minimum time between fetches caused by unknown `kid`s, per source (default 30 s).
    /// Background refreshes do not count, so the first unknown `kid` after one is still looked
    /// up at once.
    pub cooldown: Duration,
    /// How long an unknown `kid` is remembered as unknown (default: the cooldown).
    pub negative_ttl: Duration,
    /// Fraction of the lifetime after which the background refresh runs (default 0.8).
    pub refresh_at: f64,
    /// First retry delay after a failed fetch (default 250 ms), doubling up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest retry delay (default 30 s).
    pub max_backoff: Duration,
    /// While the keys are unusable (never fetched, or past their lifetime plus
    /// `stale_if_error`), a request fetches them itself when the last fetch attempt (of any
    /// kind) ended at least this long ago (default 1 s); requests that come while a fetch is in
    /// flight wait for it (single flight), the others are refused at once.
    pub unavailable_retry: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            min_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(86_400),
            stale_if_error: Duration::from_secs(86_400),
            cooldown: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(30),
            refresh_at: 0.8,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            unavailable_retry: Duration::from_secs(1),
        }
    }
}

/// Unknown kids remembered at most; past this the expired ones are forgotten, and all of them
/// when none has expired. Each is remembered as a 64-bit keyed hash of the kid and its expiry
/// (24 bytes of table and a control byte), never the kid itself: the negative cache holds under
/// 512 KiB per source however long the kids are (the kid itself is capped at
/// [`jwtd_core::MAX_KID_LEN`] bytes anyway).
pub const MAX_NEGATIVE: usize = 10_000;

/// Most heap memory one source's negative cache holds: [`MAX_NEGATIVE`] entries in a table of
/// at most 16,384 slots of 24 bytes and a control byte each.
pub const MAX_NEGATIVE_BYTES: usize = 16_384 * 25 + 64;

/// The unknown `kid`s a source remembers, as keyed hashes: their memory is fixed per entry and
/// bounded by [`MAX_NEGATIVE_BYTES`] in all.
#[derive(Debug, Default)]
struct Negative {
    /// A random key per source: an attacker cannot choose kids whose hashes collide with a
    /// real kid's (which would delay that key's first use by the negative lifetime).
    hasher: std::hash::RandomState,
    until: HashMap<u64, Instant>,
}

impl Negative {
    fn id(&self, kid: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(kid)
    }

    /// True when `kid` is remembered as unknown; forgets it once expired.
    fn is_unknown(&mut self, kid: &str) -> bool {
        let id = self.id(kid);
        match self.until.get(&id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.until.remove(&id);
                false
            }
            None => false,
        }
    }

    fn remember(&mut self, kid: &str, ttl: Duration) {
        if self.until.len() >= MAX_NEGATIVE {
            let now = Instant::now();
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= MAX_NEGATIVE {
                self.until.clear();
            }
        }
        let id = self.id(kid);
        self.until.insert(id, Instant::now() + ttl);
    }

    /// The heap the table holds, from its capacity (hashbrown's layout: a power-of-two number
    /// of slots, at most 7/8 of them used, one control byte per slot plus one group).
    fn heap_bytes(&self) -> usize {
        let cap = self.until.capacity();
        let slots = match cap {
            0 => return 0,
            1..=7 => (cap + 1).next_power_of_two(),
            _ => (cap * 8 / 7).next_power_of_two(),
        };
        slots * (std::mem::size_of::<(u64, Instant)>() + 1) + 16
    }
}

/// One fetched key set.
#[derive(Debug)]
pub struct Snapshot {
    /// The usable keys.
    pub keys: KeySet,
    /// Keys of the JWKS that could not be used, and why.
    pub skipped: Vec<SkippedKey>,
    /// When it was fetched.
    pub fetched_at: Instant,
    /// Its lifetime.
    pub ttl: Duration,
    /// Increases whenever a fetch brings a different verify set (not on identical refetches).
    pub generation: u64,
    /// [`KeySet::fingerprint`] of `keys`.
    pub fingerprint: [u8; 32],
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// JWKS fetches attempted.
    pub fetches: u64,
    /// Discovery document fetches attempted.
    pub discovery_fetches: u64,
    /// Failed fetches (JWKS or discovery).
    pub failures: u64,
    /// Keys currently held.
    pub keys: usize,
    /// Age of the last good fetch, if any.
    pub last_success_age: Option<Duration>,
    /// Unknown `kid`s currently remembered (the negative cache).
    pub unknown_kids: usize,
    /// Heap bytes the negative cache holds (at most [`MAX_NEGATIVE_BYTES`]).
    pub unknown_kid_bytes: usize,
}

/// A cached, self-refreshing key source. Cheap to clone; clones share one cache. The background
/// refresh stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct RemoteKeys {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    algorithms: Vec<Algorithm>,
    fetcher: Fetcher,
    cfg: CacheConfig,
    state: RwLock<Option<Arc<Snapshot>>>,
    /// Held while fetching: concurrent refreshes wait for the one in flight (single flight).
    refresh: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last caused a fetch: the cooldown counts from here. Background
    /// refreshes do not start it, so a key published right after one is still picked up at
    /// once.
    last_kid_fetch: Mutex<Option<Instant>>,
    last_error: Mutex<Option<FetchError>>,
    negative: Mutex<Negative>,
    jwks_uri: Mutex<Option<Url>>,
    /// Fetch attempts finished (success or failure): waiters wake on each, and a request
    /// that waited for a fetch in flight takes its answer instead of fetching again.
    attempts: tokio::sync::watch::Sender<u64>,
    /// When the last fetch attempt (of any kind) ended: requests that find the keys unusable
    /// fetch at most once per `unavailable_retry` from here.
    last_attempt: Mutex<Option<Instant>>,
    fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    failures: AtomicU64,
    key_count: AtomicUsize,
    generation: AtomicU64,
    /// Successful fetches stored (moves even when the keys did not change): single flight.
    stored: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // By hand: the discovered jwks_uri must be shown redacted too.
        f.debug_struct("Inner")
            .field("source", &self.source)
            .field("algorithms", &self.algorithms)
            .field("fetcher", &self.fetcher)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    /// Checks the source and starts its background fetch/refresh task on the current tokio
    /// runtime. Returns at once: use [`RemoteKeys::is_ready`] or [`RemoteKeys::wait_ready`].
    /// Fails only on configuration errors (a URL that can never be fetched, a bad CA bundle).
    pub fn start(
        source: Source,
        algorithms: Vec<Algorithm>,
        http: HttpConfig,
        cache: CacheConfig,
    ) -> Result<RemoteKeys, FetchError> {
        let first = match &source {
            Source::JwksUrl(u) => parse_url(u)?,
            Source::Discovery(issuer) => discovery_url(issuer)?,
        };
        let fetcher = Fetcher::new(&http, &first)?;
        fetcher.check(&first)?;
        let jwks_uri = match &source {
            Source::JwksUrl(_) => Some(first),
            Source::Discovery(_) => None,
        };
        let inner = Arc::new(Inner {
            source,
            algorithms,
            fetcher,
            cfg: cache,
            state: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            last_kid_fetch: Mutex::new(None),
            last_error: Mutex::new(None),
            negative: Mutex::new(Negative::default()),
            jwks_uri: Mutex::new(jwks_uri),
            attempts: tokio::sync::watch::channel(0).0,
            last_attempt: Mutex::new(None),
            fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            key_count: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        });
        tokio::spawn(background(Arc::downgrade(&inner)));
        Ok(RemoteKeys { inner })
    }

    /// True when tokens can be verified now: a key set has been fetched and is within its
    /// lifetime plus stale-if-error (past that, every token is refused with
    /// `key_fetch_failed`, so the source is not ready either).
    pub fn is_ready(&self) -> bool {
        self.inner.usable().is_ok()
    }

    /// Waits until ready, at most `timeout`; returns readiness.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_ready_unless_permanent(timeout, false)
            .await
            .unwrap_or(false)
    }

    /// Waits until ready, at most `timeout`, but returns the error at once when a fetch fails
    /// for a reason retrying will not fix ([`FetchErrorKind::is_permanent`]), for one-shot
    /// callers such as the command line. `Ok(false)` when the time ran out.
    pub async fn wait_ready_or_permanent_error(
        &self,
        timeout: Duration,
    ) -> Result<bool, FetchError> {
        self.wait_ready_unless_permanent(timeout, true).await
    }

    async fn wait_ready_unless_permanent(
        &self,
        timeout: Duration,
        stop_on_permanent: bool,
    ) -> Result<bool, FetchError> {
        // Subscribed before looking, so no attempt finishing in between is missed.
        let mut rx = self.inner.attempts.subscribe();
        let wait = async {
            loop {
                if self.is_ready() {
                    return Ok(true);
                }
                if stop_on_permanent {
                    if let Some(e) = self.last_error().filter(|e| e.kind.is_permanent()) {
                        return Err(e);
                    }
                }
                if rx.changed().await.is_err() {
                    return Ok(false);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Ok(false))
    }

    /// The current key set, if any, usable or not (see [`RemoteKeys::usable_snapshot`]).
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner.snapshot()
    }

    /// The current key set when tokens may be verified with it: held, and within its lifetime
    /// plus stale-if-error.
    pub fn usable_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner.usable().ok()
    }

    /// How long past its lifetime the last good key set keeps serving.
    pub fn stale_if_error(&self) -> Duration {
        self.inner.cfg.stale_if_error
    }

    /// The last fetch error, cleared by a successful fetch: the cause clients are not told
    /// (they get [`KEYS_UNAVAILABLE`]), with every URL in it redacted, for logs and an
    /// authenticated status view.
    pub fn last_error(&self) -> Option<FetchError> {
        self.inner.last_error.lock().expect("lock").clone()
    }

    /// The source, its URL redacted, for logs and status views.
    pub fn source_redacted(&self) -> String {
        self.inner.source.redacted()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        let (unknown_kids, unknown_kid_bytes) = {
            let n = i.negative.lock().expect("lock");
            (n.until.len(), n.heap_bytes())
        };
        Stats {
            unknown_kids,
            unknown_kid_bytes,
            fetches: i.fetches.load(Ordering::Relaxed),
            discovery_fetches: i.discovery_fetches.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            keys: i.key_count.load(Ordering::Relaxed),
            last_success_age: i.snapshot().map(|s| s.fetched_at.elapsed()),
        }
    }

    /// Fetches now (waiting for a fetch already in flight instead of starting another).
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let seen = self.inner.stored.load(Ordering::Acquire);
        let _flight = self.inner.refresh.lock().await;
        if self.inner.stored.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        self.inner.fetch_and_store().await.map(|_| ())
    }

    /// Verifies `token` with the current keys under `validation`, at the system time.
    pub async fn verify(&self, validation: &Validation, token: &str) -> Result<Verified, Error> {
        self.verify_at(validation, token, jwtd_core::unix_now())
            .await
    }

    /// Verifies at `now`. An unknown `kid` may trigger one refresh (see the crate docs) and a
    /// second attempt, and unusable keys one fetch (single flight, at most once per
    /// [`CacheConfig::unavailable_retry`]); everything else is decided on the cached keys
    /// without I/O.
    pub async fn verify_at(
        &self,
        validation: &Validation,
        token: &str,
        now: u64,
    ) -> Result<Verified, Error> {
        let snap = match self.inner.usable() {
            Ok(snap) => snap,
            Err(_) => self.inner.fetch_when_unusable().await?,
        };
        match jwtd_core::verify(&snap.keys, validation, token, now) {
            Err(e) if e.reason() == Reason::UnknownKey => {
                let kid = jwtd_core::peek_header(token)
                    .ok()
                    .and_then(|h| h.kid)
                    .unwrap_or_default();
                if !self.inner.refresh_for_unknown(&kid, snap.generation).await {
                    return Err(e);
                }
                let snap = self.inner.usable()?;
                let again = jwtd_core::verify(&snap.keys, validation, token, now);
                if matches!(&again, Err(e) if e.reason() == Reason::UnknownKey) {
                    self.inner.remember_unknown(&kid);
                }
                again
            }
            other => other,
        }
    }
}

/// Reads an OIDC discovery document fetched from `url` for the configured `issuer`: strict
/// JSON (duplicate members refused, depth bounded), an `issuer` equal to `issuer` exactly
/// (OpenID Connect Discovery 1.0, section 4.3), and a `jwks_uri` that parses as a URL. The
/// result is not yet checked against the fetch rules: the caller applies [`check_reached`]
/// (a discovered `jwks_uri` is a URL reached from the configured one).
///
/// Public for the fuzz target (`fuzz/fuzz_targets/discovery.rs`), which feeds it the bytes an
/// identity provider could answer; [`RemoteKeys`] is its only other caller.
#[doc(hidden)]
pub fn parse_discovery(body: &[u8], issuer: &str, url: &Url) -> Result<Url, FetchError> {
    let malformed =
        |why: String| FetchError::new(FetchErrorKind::Malformed, format!("{}: {why}", redact(url)));
    let doc = jwtd_core::parse_json_object(body, 16)
        .map_err(|e| malformed(format!("not a discovery document: {e}")))?;
    let found = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if found != issuer {
        return Err(FetchError::new(
            FetchErrorKind::IssuerMismatch,
            format!(
                "{}: discovery issuer is {:?}, expected {:?}",
                redact(url),
                redact_str(found),
                redact_str(issuer)
            ),
        ));
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| malformed("no \"jwks_uri\"".into()))?;
    parse_url(jwks_uri)
}

fn parse_url(s: &str) -> Result<Url, FetchError> {
    Url::parse(s).map_err(|e| {
        FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!("{:?}: {e}", redact_str(s)),
        )
    })
}

fn discovery_url(issuer: &str) -> Result<Url, FetchError> {
    parse_url(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
}

impl Inner {
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.state.read().expect("lock").clone()
    }

    /// The snapshot, if one exists and is within its lifetime plus stale-if-error.
    fn usable(&self) -> Result<Arc<Snapshot>, Error> {
        // The cause is logged (redacted) by the fetch that failed, and kept for last_error;
        // the client gets a fixed text.
        let Some(snap) = self.snapshot() else {
            return Err(Error::new(Reason::KeyFetchFailed, KEYS_UNAVAILABLE));
        };
        if snap.fetched_at.elapsed() > snap.ttl + self.cfg.stale_if_error {
            return Err(Error::new(Reason::KeyFetchFailed, KEYS_UNAVAILABLE));
        }
        Ok(snap)
    }

    /// For a request that found the keys unusable: fetches them unless a fetch attempt ended
    /// less than `unavailable_retry` ago, or one finished while this request waited for the
    /// flight (its answer is taken instead). The keys if usable after that.
    async fn fetch_when_unusable(&self) -> Result<Arc<Snapshot>, Error> {
        let seen = *self.attempts.borrow();
        let _flight = self.refresh.lock().await;
        if *self.attempts.borrow() != seen {
            return self.usable();
        }
        let recent = self
            .last_attempt
            .lock()
            .expect("lock")
            .is_some_and(|t| t.elapsed() < self.cfg.unavailable_retry);
        if recent {
            return self.usable();
        }
        let _ = self.fetch_and_store().await;
        self.usable()
    }

    /// For a token with an unknown kid: returns true when a newer key set is available to try,
    /// fetching it if the cooldown allows.
    async fn refresh_for_unknown(&self, kid: &str, seen_generation: u64) -> bool {
        if self.negative.lock().expect("lock").is_unknown(kid) {
            return false;
        }
        let _flight = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return true;
        }
        {
            let mut last = self.last_kid_fetch.lock().expect("lock");
            if last.is_some_and(|t| t.elapsed() < self.cfg.cooldown) {
                drop(last);
                self.remember_unknown(kid);
                return false;
            }
            *last = Some(Instant::now());
        }
        self.fetch_and_store().await.is_ok()
    }

    fn remember_unknown(&self, kid: &str) {
        self.negative
            .lock()
            .expect("lock")
            .remember(kid, self.cfg.negative_ttl);
    }

    /// One fetch (discovery first when needed). Call with `refresh` held.
    async fn fetch_and_store(&self) -> Result<Duration, FetchError> {
        let result = self.store(self.fetch().await);
        *self.last_attempt.lock().expect("lock") = Some(Instant::now());
        self.attempts.send_modify(|n| *n += 1);
        result
    }

    fn store(&self, fetched: Result<Snapshot, FetchError>) -> Result<Duration, FetchError> {
        match fetched {
            Ok(snap) => {
                let (ttl, generation) = (snap.ttl, snap.generation);
                self.key_count
                    .store(snap.keys.keys().len(), Ordering::Relaxed);
                *self.state.write().expect("lock") = Some(Arc::new(snap));
                self.generation.store(generation, Ordering::Release);
                self.stored.fetch_add(1, Ordering::Release);
                *self.last_error.lock().expect("lock") = None;
                Ok(ttl)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %self.source.redacted(), error = %e, "key fetch failed");
                *self.last_error.lock().expect("lock") = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Snapshot, FetchError> {
        let known = self.jwks_uri.lock().expect("lock").clone();
        let jwks_uri = match known {
            Some(u) => u,
            None => self.discover().await?,
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = match self.fetcher.get(&jwks_uri).await {
            Ok(f) => f,
            Err(e) => {
                // The provider may have moved its keys: look again next time.
                if matches!(self.source, Source::Discovery(_)) {
                    *self.jwks_uri.lock().expect("lock") = None;
                }
                return Err(e);
            }
        };
        let jwks = Jwks::from_json(&fetched.body).map_err(|e| {
            FetchError::new(
                FetchErrorKind::Malformed,
                format!("{}: not a JWKS: {e}", redact(&jwks_uri)),
            )
        })?;
        let (keys, skipped) = KeySet::from_jwks(&jwks, &self.algorithms);
        if keys.is_empty() {
            return Err(FetchError::new(
                FetchErrorKind::NoUsableKey,
                format!(
                    "{}: no key usable with {:?} ({} skipped)",
                    redact(&jwks_uri),
                    self.algorithms,
                    skipped.len()
                ),
            ));
        }
        for s in &skipped {
            tracing::debug!(kid = ?s.kid, why = %s.why, "JWKS key skipped");
        }
        let over = skipped
            .iter()
            .filter(|s| s.why.starts_with("too many keys"))
            .count();
        if over > 0 {
            tracing::warn!(
                source = %self.source.redacted(),
                imported = keys.keys().len(),
                skipped = over,
                "the JWKS has more keys than jwtd imports from one JWKS ({}); the rest are skipped",
                jwtd_core::MAX_JWKS_KEYS
            );
        }
        let ttl = fetched
            .max_age
            .unwrap_or(self.cfg.min_ttl)
            .clamp(self.cfg.min_ttl, self.cfg.max_ttl.max(self.cfg.min_ttl));
        // The generation moves only when the verify set does: an identical refetch keeps the
        // caches of verified tokens warm; a changed set (a key added, removed, or replaced under
        // its kid) invalidates them.
        let fingerprint = keys.fingerprint();
        let current = self.state.read().expect("lock").clone();
        let generation = match current {
            Some(c) if c.fingerprint == fingerprint => c.generation,
            _ => self.generation.load(Ordering::Acquire) + 1,
        };
        Ok(Snapshot {
            keys,
            skipped,
            fetched_at: Instant::now(),
            ttl,
            generation,
            fingerprint,
        })
    }

    async fn discover(&self) -> Result<Url, FetchError> {
        let Source::Discovery(issuer) = &self.source else {
            unreachable!("JWKS URL sources always know their URL");
        };
        let url = discovery_url(issuer)?;
        self.discovery_fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.fetcher.get(&url).await?;
        let jwks_uri = parse_discovery(&fetched.body, issuer, &url)?;
        self.fetcher.check(&jwks_uri)?;
        *self.jwks_uri.lock().expect("lock") = Some(jwks_uri.clone());
        Ok(jwks_uri)
    }
}

/// Fetches until the first success (with backoff), then refreshes ahead of expiry, keeping the
/// last good set when refreshes fail. Ends when the [`RemoteKeys`] is dropped.
async fn background(weak: Weak<Inner>) {
    let mut backoff = None::<Duration>;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let result = {
            let _flight = inner.refresh.lock().await;
            inner.fetch_and_store().await
        };
        let wait = match result {
            Ok(ttl) => {
                backoff = None;
                ttl.mul_f64(inner.cfg.refresh_at.clamp(0.05, 1.0))
            }
            Err(_) => {
                let next = backoff
                    .map(|b| (b * 2).min(inner.cfg.max_backoff))
                    .unwrap_or(inner.cfg.initial_backoff);
                backoff = Some(next);
                next
            }
        };
        drop(inner);
        tokio::time::sleep(wait).await;
    }
}
