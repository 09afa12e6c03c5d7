//! DPoP (RFC 9449) in the engine: the per-issuer policy (`[issuer.dpop]`, overridden per rule
//! by `[[rule]] dpop`), the mode logic (a bound token presented as a bearer token is a
//! downgrade), the proof check (`jwtd_core::DpopPolicy::verify` with the verified token as
//! the access token, then `jwtd_core::check_token_binding`) and the in-memory `jti` replay
//! cache. [`crate::Engine::decide`] calls [`check`] once the token is verified (and its
//! revocation checked) and [`Passed::consume`] last, once every other check of the request
//! passed, so a refused request never burns the client's proof. With `replay_store =
//! "shared"` the `jti` is also recorded in a [`ReplayStore`] every instance shares (`jwtd
//! serve` wires its PostgreSQL table, [`DpopEngine::with_shared_replay`]), the memory cache
//! staying a first filter. See docs/dpop.md ("In the engine") and docs/design/dpop-engine.md.

use crate::config::{
    DpopConfig, DpopConfigError, DpopMode, IssuerConfig, OnPass, OnUnavailable, ReplayMode,
    ReplayStoreKind,
};
use crate::issuers::Issuers;
use http::{HeaderMap, HeaderName};
use jwtd_core::{
    DpopError, DpopPolicy, DpopProof, DpopReason, DpopRequest, Error, ProofHeader, ProofKeys,
    Reason, Verified,
};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a [`ReplayStore`] could not answer (its message names no token, proof or key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayStoreError(pub String);

impl std::fmt::Display for ReplayStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReplayStoreError {}

/// What a [`ReplayStore`] call returns: a boxed future, so the trait stays object-safe.
pub type ReplayFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ReplayStoreError>> + Send + 'a>>;

/// A `jti` store shared by several instances (`replay_store = "shared"`): keys are
/// [`jwtd_core::replay_key`]s (16 bytes), times Unix seconds. jwtd-service implements it over
/// PostgreSQL (`dpop_jti`); the engine bounds every call by [`SharedReplay::timeout`].
pub trait ReplayStore: Send + Sync + std::fmt::Debug {
    /// Records `key` until `expires`, atomically: `true` when it was recorded now, `false`
    /// when a record still live at `now` existed (a replay, on this or any instance).
    fn record(&self, key: [u8; 16], expires: u64, now: u64) -> ReplayFuture<'_, bool>;
    /// True when `key` is recorded and live at `now` (for `replay = "check"`: the
    /// application records).
    fn seen(&self, key: [u8; 16], now: u64) -> ReplayFuture<'_, bool>;
}

/// The shared replay store an engine's `replay_store = "shared"` issuers use, and how.
#[derive(Clone, Debug)]
pub struct SharedReplay {
    /// The store.
    pub store: Arc<dyn ReplayStore>,
    /// Longest one call may take (the pool's wait included); past it the store counts as
    /// unavailable.
    pub timeout: Duration,
    /// What a proof gets while the store cannot answer.
    pub on_unavailable: OnUnavailable,
    warned: Arc<AtomicBool>,
}

impl SharedReplay {
    /// `store`, each call bounded by `timeout`, `on_unavailable` when it cannot answer.
    pub fn new(
        store: Arc<dyn ReplayStore>,
        timeout: Duration,
        on_unavailable: OnUnavailable,
    ) -> SharedReplay {
        SharedReplay {
            store,
            timeout,
            on_unavailable,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The store's answer, or why there is none (its error, or the timeout).
    async fn call(&self, f: ReplayFuture<'_, bool>) -> Result<bool, String> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(b)) => {
                self.warned.store(false, Ordering::Relaxed);
                Ok(b)
            }
            Ok(Err(e)) => Err(e.0),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// Counts a call that got no answer (`jwtd_dpop_replay_store_failures_total`, by what the
    /// proof got: `rejected` or `local`) and logs it (once until the store answers again).
    fn warn(&self, why: &str) {
        let outcome = match self.on_unavailable {
            OnUnavailable::Reject => "rejected",
            OnUnavailable::Local => "local",
        };
        metrics::counter!("jwtd_dpop_replay_store_failures_total", "outcome" => outcome)
            .increment(1);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                on_unavailable = ?self.on_unavailable,
                "the shared DPoP replay store cannot be reached"
            );
        }
    }
}

/// The identity header naming the thumbprint (`cnf.jkt`) of the key an allowed request proved
/// (empty when it proved none). Always among the identity headers, so a front overwrites a
/// client's own.
pub const X_AUTH_JKT: HeaderName = HeaderName::from_static("x-auth-jkt");

/// The request header carrying a DPoP proof.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// Most `DPoP` header values read from one request (one is allowed; the rest only make
/// `dpop_multiple`).
const MAX_PROOF_HEADERS: usize = 2;

/// How the request presented its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: DPoP <token>`.
    Dpop,
    /// The configured cookie.
    Cookie,
    /// The configured query parameter.
    Query,
}

/// What a DPoP refusal's challenge needs: the algorithms to name (`algs`) and whether the rule
/// also takes bearer tokens (then a `Bearer` challenge is sent beside the `DPoP` one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopChallenge {
    /// The `algs` parameter: space-separated algorithm names.
    pub algs: String,
    /// The route also takes (unbound) bearer tokens (`enforce-cnf`).
    pub bearer: bool,
    /// A fresh server nonce, sent as `DPoP-Nonce` (with `use_dpop_nonce`).
    pub nonce: Option<String>,
}

impl Default for DpopChallenge {
    fn default() -> Self {
        DpopChallenge {
            algs: DpopPolicy::default().algs_parameter(),
            bearer: true,
            nonce: None,
        }
    }
}

/// One issuer's DPoP settings, compiled from its `[issuer.dpop]` table (or the defaults).
#[derive(Debug)]
pub struct IssuerDpop {
    /// The mode (a rule may override it).
    pub mode: DpopMode,
    /// The proof policy: algorithms, `iat` window and leeway, size limits.
    pub policy: DpopPolicy,
    /// The replay handling.
    pub replay: ReplayMode,
    /// What reaches the upstream of an allowed request.
    pub on_pass: OnPass,
    /// The issuer has an explicit `[issuer.dpop]` table.
    pub explicit: bool,
    /// The `jti`s seen, shared by the engines a reload builds from the same settings.
    pub cache: Arc<ReplayCache>,
    /// Server nonces, and whether every proof must carry one.
    pub nonce: Option<(jwtd_core::NonceKey, bool)>,
    /// `replay_store`.
    pub replay_store: ReplayStoreKind,
    /// The shared store (`replay_store = "shared"`, once wired).
    pub shared: Option<SharedReplay>,
    /// The parsed proof keys (the process's one cache, [`ProofKeyCache::shared`], unless
    /// replaced).
    pub proof_keys: Arc<ProofKeyCache>,
    /// `replay_max_entries`.
    max_entries: usize,
    /// `replay_max_per_key`.
    max_per_key: usize,
}

impl IssuerDpop {
    /// The settings of `ic`'s `[issuer.dpop]` (the defaults without one); an error when the
    /// table is not usable (checked at load, [`crate::issuers::Issuers::build`]).
    pub fn build(ic: &IssuerConfig) -> Result<IssuerDpop, DpopConfigError> {
        let leeway = ic.leeway.map_or(crate::config::defaults::LEEWAY, |s| s.0);
        let explicit = ic.dpop.is_some();
        let cfg = ic.dpop.clone().unwrap_or_default();
        let policy = cfg.policy(leeway)?;
        let nonce = match &cfg.nonce {
            Some(n) => Some((n.key()?, n.required)),
            None => None,
        };
        let mut d = IssuerDpop::with(&cfg, policy, explicit);
        d.nonce = nonce;
        Ok(d)
    }

    fn with(cfg: &DpopConfig, policy: DpopPolicy, explicit: bool) -> IssuerDpop {
        IssuerDpop {
            mode: cfg.mode,
            policy,
            replay: cfg.replay,
            on_pass: cfg.on_pass,
            explicit,
            cache: Arc::new(ReplayCache::with_key_limit(
                cfg.replay_max_entries,
                cfg.replay_max_per_key,
            )),
            nonce: None,
            replay_store: cfg.replay_store,
            shared: None,
            proof_keys: ProofKeyCache::shared().clone(),
            max_entries: cfg.replay_max_entries,
            max_per_key: cfg.replay_max_per_key,
        }
    }
}

/// Every issuer's DPoP settings, by issuer name.
#[derive(Clone, Debug, Default)]
pub struct DpopEngine {
    by_issuer: Vec<(String, Arc<IssuerDpop>)>,
}

impl DpopEngine {
    /// The settings of every issuer of `issuers`. An issuer whose table cannot be compiled
    /// (only possible for one not built from a configuration: [`Issuers::build`] refuses it
    /// at load) gets the strict defaults.
    pub fn new(issuers: &Issuers) -> DpopEngine {
        let mut by_issuer = Vec::with_capacity(issuers.list.len());
        for i in &issuers.list {
            let d = IssuerDpop::build(&i.config).unwrap_or_else(|_| {
                IssuerDpop::with(&DpopConfig::default(), DpopPolicy::default(), true)
            });
            by_issuer.push((i.name.clone(), Arc::new(d)));
        }
        DpopEngine { by_issuer }
    }

    /// Whether a request allowed without a token (a public rule, an optional one) has its
    /// `DPoP` header removed before forwarding: unless every issuer has `on_pass = "keep"`.
    pub fn strips_without_issuer(&self) -> bool {
        self.by_issuer.is_empty()
            || self
                .by_issuer
                .iter()
                .any(|(_, d)| d.on_pass == OnPass::Strip)
    }

    /// The settings of the issuer named `name`.
    pub fn of(&self, name: &str) -> Option<&Arc<IssuerDpop>> {
        self.by_issuer
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    }

    /// [`DpopEngine::of`], or the strict defaults (`enforce-cnf`, with a replay cache of
    /// their own) for an issuer this engine does not know (an issuer of another engine, e.g.
    /// across a reload): a missing entry never skips the check.
    pub fn of_or_default(&self, name: &str) -> &Arc<IssuerDpop> {
        static DEFAULT: std::sync::OnceLock<Arc<IssuerDpop>> = std::sync::OnceLock::new();
        self.of(name).unwrap_or_else(|| {
            DEFAULT.get_or_init(|| {
                Arc::new(IssuerDpop::with(
                    &DpopConfig::default(),
                    DpopPolicy::default(),
                    false,
                ))
            })
        })
    }

    /// Keeps the replay caches of `previous` (the engine a reload replaces) for each issuer
    /// of the same name, `replay_max_entries` and `replay_max_per_key`, so a reload does not
    /// forget the `jti`s seen (a proof could be replayed right after it otherwise).
    pub fn adopt_replay_caches(&mut self, previous: &DpopEngine) {
        for (name, d) in &mut self.by_issuer {
            if let Some(old) = previous.of(name) {
                if old.max_entries == d.max_entries && old.max_per_key == d.max_per_key {
                    if let Some(d) = Arc::get_mut(d) {
                        d.cache = old.cache.clone();
                    }
                }
            }
        }
    }
}

impl DpopEngine {
    /// Gives `shared` to every issuer with `replay_store = "shared"` (call it on a freshly
    /// built engine: an issuer's settings already shared elsewhere are left as they are).
    pub fn with_shared_replay(&mut self, shared: &SharedReplay) {
        for (_, d) in &mut self.by_issuer {
            if d.replay_store == ReplayStoreKind::Shared {
                if let Some(d) = Arc::get_mut(d) {
                    d.shared = Some(shared.clone());
                }
            }
        }
    }

    /// The first issuer with `replay_store = "shared"` and no shared store wired, if any (a
    /// load error: its `jti`s would stay in this process).
    pub fn unwired_shared(&self) -> Option<&str> {
        self.by_issuer
            .iter()
            .find(|(_, d)| d.replay_store == ReplayStoreKind::Shared && d.shared.is_none())
            .map(|(n, _)| n.as_str())
    }
}

/// A proof that passed every check; its `jti` is recorded by [`Passed::consume`], once the
/// rest of the request passed too.
#[derive(Debug)]
pub struct Passed {
    /// The thumbprint of the proven key (the token's `cnf.jkt`).
    pub jkt: String,
    /// What reaches the upstream.
    pub on_pass: OnPass,
    /// A fresh server nonce for the answer (`DPoP-Nonce`): when the issuer issues nonces and
    /// the proof's is absent, not valid, or of the previous epoch.
    pub nonce: Option<String>,
    key: [u8; 16],
    expires: u64,
    replay: ReplayMode,
    cache: Arc<ReplayCache>,
    shared: Option<SharedReplay>,
    challenge: DpopChallenge,
}

impl Passed {
    /// Records the proof's `jti` (`replay = "consume"`): in the memory cache first (a `jti`
    /// recorded meanwhile is `dpop_replay`, a cache full of live entries
    /// `dpop_replay_unavailable`, a key over `replay_max_per_key` `dpop_replay_key_limit`),
    /// then, with a shared store, there (a row that existed is `dpop_replay`; no answer in
    /// time is `dpop_replay_unavailable`, or the memory cache's verdict with
    /// `on_unavailable = "local"`). With `replay = "check"` and a shared store, the store is
    /// looked up and nothing recorded; no answer in time is `dpop_replay_unavailable` whatever
    /// `on_unavailable` says (the memory cache, empty under `check`, cannot stand in).
    pub async fn consume(&self, now: u64) -> Result<(), (Error, DpopChallenge)> {
        let fail = |e: Error| Err((e, self.challenge.clone()));
        match self.replay {
            ReplayMode::Off => return Ok(()),
            ReplayMode::Check => {
                let Some(s) = &self.shared else {
                    return Ok(());
                };
                return match s.call(s.store.seen(self.key, now)).await {
                    Ok(false) => Ok(()),
                    Ok(true) => fail(replayed()),
                    // Refused whatever `on_unavailable` says: under `check` the memory
                    // cache holds nothing, so "local" would let every replay through on
                    // every instance while the store is away (second review, M4).
                    Err(why) => {
                        s.warn(&why);
                        fail(store_unavailable())
                    }
                };
            }
            ReplayMode::Consume => {}
        }
        match self.cache.insert(&self.jkt, self.key, self.expires, now) {
            Ok(()) => {}
            Err(Full::Replay) => return fail(replayed()),
            Err(Full::Full) => {
                return fail(dpop(
                    DpopReason::ReplayUnavailable,
                    "the DPoP replay cache is full: retry later",
                ))
            }
            Err(Full::KeyLimit) => {
                return fail(dpop(
                    DpopReason::ReplayKeyLimit,
                    "this proof key has too many DPoP proofs inside the replay window: retry \
                     later",
                ))
            }
        }
        let Some(s) = &self.shared else {
            return Ok(());
        };
        match s.call(s.store.record(self.key, self.expires, now)).await {
            Ok(true) => Ok(()),
            Ok(false) => fail(replayed()),
            Err(why) => {
                s.warn(&why);
                match s.on_unavailable {
                    OnUnavailable::Local => Ok(()),
                    OnUnavailable::Reject => {
                        // Not burnt: the request is refused for the store, not the proof.
                        self.cache.remove(&self.jkt, &self.key);
                        fail(store_unavailable())
                    }
                }
            }
        }
    }
}

fn store_unavailable() -> Error {
    dpop(
        DpopReason::ReplayUnavailable,
        "the shared DPoP replay store cannot be reached: retry later",
    )
}

fn dpop(r: DpopReason, message: &'static str) -> Error {
    Error::new(Reason::Dpop(r), message)
}

fn replayed() -> Error {
    dpop(
        DpopReason::Replay,
        "this DPoP proof's jti was already used: make a new proof for each request",
    )
}

/// True when the verified token carries `cnf.jkt` (any value: a non-string one is refused by
/// the binding check).
fn is_bound(v: &Verified) -> bool {
    // Most tokens are not bound: no parse of the claims for them.
    v.may_have_cnf() && matches!(v.claim("cnf"), Some(Value::Object(c)) if c.contains_key("jkt"))
}

/// The request facts the proof is checked against.
#[derive(Clone, Copy, Debug)]
pub struct ProofTarget<'a> {
    /// The method as received.
    pub method: &'a str,
    /// `http` or `https`, as the front trusts it.
    pub scheme: &'a str,
    /// The host, perhaps with a port.
    pub host: &'a str,
    /// The path and query.
    pub path_and_query: &'a str,
    /// The request headers (`DPoP`).
    pub headers: &'a HeaderMap,
}

/// The DPoP step of a decision: the mode logic, then (for a token presented as `DPoP`) the
/// proof and its binding to the token, then the replay look-up (`check`). `Ok(None)`: nothing
/// to consume (DPoP off, or an unbound bearer token where bearer tokens are taken).
pub fn check(
    d: &IssuerDpop,
    rule_mode: Option<DpopMode>,
    req: &ProofTarget<'_>,
    presented: Presented,
    token: &str,
    verified: &Verified,
    now: u64,
) -> Result<Option<Passed>, (Error, DpopChallenge)> {
    let mode = rule_mode.unwrap_or(d.mode);
    if mode == DpopMode::Off {
        return Ok(None);
    }
    // Made only for a refusal (its `algs` is a string built from the policy).
    let challenge = || DpopChallenge {
        algs: d.policy.algs_parameter(),
        bearer: mode == DpopMode::EnforceCnf,
        nonce: None,
    };
    let fail = |e: Error| Err((e, challenge()));
    // A `cnf` that is not an object is a malformed token here as in the mTLS check (never
    // an unbound one taken as a bearer token).
    if let Err(e) = crate::mtls::cnf_shape(verified) {
        return fail(e);
    }
    let bound = is_bound(verified);
    if presented != Presented::Dpop {
        if bound {
            return fail(dpop(
                DpopReason::TokenBoundAsBearer,
                "this token is bound to a key (cnf.jkt): send it as \"Authorization: DPoP\" \
                 with a DPoP proof",
            ));
        }
        if mode == DpopMode::Require {
            return fail(dpop(
                DpopReason::Required,
                "this route requires a DPoP-bound token sent as \"Authorization: DPoP\" with \
                 a DPoP proof",
            ));
        }
        return Ok(None);
    }
    if !bound {
        return fail(dpop(
            DpopReason::TokenNotBound,
            "the token was sent as \"Authorization: DPoP\" but is not bound to a key (no \
             cnf.jkt)",
        ));
    }
    let mut proofs: smallvec::SmallVec<[&[u8]; MAX_PROOF_HEADERS]> = smallvec::SmallVec::new();
    for v in req.headers.get_all(DPOP).iter().take(MAX_PROOF_HEADERS) {
        proofs.push(v.as_bytes());
    }
    let uri = format!("{}://{}{}", req.scheme, req.host, req.path_and_query);
    // A header parsed afresh is kept only once the binding and the nonce passed too (a proof
    // signed by another key than the token's must not churn the cache: second review, L1).
    let deferred = Deferred {
        cache: &d.proof_keys,
        fresh: std::cell::Cell::new(None),
    };
    let proof = match deferred.cache_verify(
        &d.policy,
        &DpopRequest {
            proofs: &proofs,
            method: req.method,
            uri: &uri,
            access_token: Some(token),
        },
        Some(&verified.token_sha256(token)),
        now,
    ) {
        Ok(p) => p,
        Err(e) => return fail(e.into()),
    };
    if let Err(e) = jwtd_core::check_token_binding(verified, &proof) {
        return fail(e.into());
    }
    let mut fresh = None;
    if let Some((k, required)) = &d.nonce {
        let good = proof.nonce.as_deref().is_some_and(|n| k.accepts(n, now));
        if !good
            || proof
                .nonce
                .as_deref()
                .is_some_and(|n| k.is_previous(n, now))
        {
            fresh = Some(k.issue(now));
        }
        if *required && !good {
            let mut c = challenge();
            c.nonce = Some(k.issue(now));
            return Err((
                dpop(
                    DpopReason::UseNonce,
                    "this server requires a DPoP nonce: retry with the nonce of the DPoP-Nonce \
                     header",
                ),
                c,
            ));
        }
    }
    let key = jwtd_core::replay_key(&proof);
    // Kept until no proof with this iat can pass any more: ceil(iat) + the window.
    let iat = if proof.iat.is_finite() && proof.iat > 0.0 {
        proof.iat.ceil().min(u64::MAX as f64) as u64
    } else {
        0
    };
    let expires = iat
        .saturating_add(d.policy.replay_window_secs())
        .saturating_add(1);
    if let Some(header) = deferred.fresh.take() {
        d.proof_keys.keep(header);
    }
    // The memory cache first: a local hit is a replay without a round trip.
    if d.replay != ReplayMode::Off && d.cache.contains(&proof.jkt, &key, now) {
        return fail(replayed());
    }
    Ok(Some(Passed {
        jkt: proof.jkt,
        on_pass: d.on_pass,
        nonce: fresh,
        key,
        expires,
        replay: d.replay,
        cache: d.cache.clone(),
        shared: d.shared.clone(),
        challenge: challenge(),
    }))
}

/// Default most proof keys [`ProofKeyCache::shared`] holds.
pub const DEFAULT_PROOF_KEYS: usize = 10_000;

/// Default most bytes [`ProofKeyCache::shared`] holds (counted by
/// [`ProofHeader::heap_bytes`]: about 1.6 KiB per EC key, 3.6 KiB per RSA-2048 key, so about
/// 10,000 EC or 4,600 RSA-2048 keys).
pub const DEFAULT_PROOF_KEY_BYTES: u64 = 16 * 1024 * 1024;

/// The cache of parsed DPoP proof keys: a proof's base64url header segment, byte for byte, to
/// its checked header ([`ProofHeader`]: the `alg`, the parsed public key and its RFC 7638
/// thumbprint). Clients sign many proofs with one key, so a hit skips the header's base64 and
/// JSON, the key's parse (for RSA, its Montgomery set-up) and the thumbprint's hash. Only
/// headers of proofs that passed every check are kept; a hit answers only for the exact bytes
/// parsed, and the `alg` is checked against the issuer's allow-list again (the one check that
/// depends on the policy), so a hit refuses exactly what a miss refuses. Bounded by entries
/// and by bytes (each entry weighs at least `max_bytes / max_entries`), evicting the least
/// useful (quick_cache's CLOCK-Pro); a header heavier than the whole bound is never kept.
pub struct ProofKeyCache {
    cache: quick_cache::sync::Cache<Arc<[u8]>, Arc<ProofHeader>, KeyWeight>,
    max_entries: usize,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ProofKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKeyCache")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct KeyWeight {
    min: u64,
}

impl quick_cache::Weighter<Arc<[u8]>, Arc<ProofHeader>> for KeyWeight {
    fn weight(&self, _: &Arc<[u8]>, h: &Arc<ProofHeader>) -> u64 {
        (h.heap_bytes() as u64).max(self.min)
    }
}

impl ProofKeyCache {
    /// A cache of at most `max_entries` keys (at least 1) and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: u64) -> ProofKeyCache {
        let max_entries = max_entries.max(1);
        let min = (max_bytes / max_entries as u64).max(1);
        ProofKeyCache {
            cache: quick_cache::sync::Cache::with_weighter(
                max_entries,
                max_bytes.max(min),
                KeyWeight { min },
            ),
            max_entries,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The process's one cache ([`DEFAULT_PROOF_KEYS`], [`DEFAULT_PROOF_KEY_BYTES`]), shared
    /// by every issuer and every engine a reload builds: what it holds depends on the header
    /// bytes alone.
    pub fn shared() -> &'static Arc<ProofKeyCache> {
        static SHARED: std::sync::OnceLock<Arc<ProofKeyCache>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            Arc::new(ProofKeyCache::new(
                DEFAULT_PROOF_KEYS,
                DEFAULT_PROOF_KEY_BYTES,
            ))
        })
    }

    /// Checks a request's proof under `policy` ([`DpopPolicy::verify_with`]), its header from
    /// this cache when it holds one parsed from the same bytes; `token_sha256` is the access
    /// token's SHA-256 when the caller has it.
    pub fn verify(
        &self,
        policy: &DpopPolicy,
        request: &DpopRequest<'_>,
        token_sha256: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<DpopProof, DpopError> {
        policy.verify_with(request, now, self, token_sha256)
    }

    /// True when the header parsed from exactly `segment` is held (not counted as a look-up).
    pub fn holds(&self, segment: &[u8]) -> bool {
        self.cache.peek(segment).is_some()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Bytes held, as weighed ([`ProofHeader::heap_bytes`], at least `max_bytes /
    /// max_entries` each).
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The entry bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Look-ups answered from the cache, and look-ups that parsed the header.
    pub fn hits_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// A [`ProofKeyCache`] whose new headers wait: [`check`] keeps one only after the binding
/// and the nonce passed too, not as soon as the proof itself did.
struct Deferred<'a> {
    cache: &'a ProofKeyCache,
    fresh: std::cell::Cell<Option<Arc<ProofHeader>>>,
}

impl Deferred<'_> {
    /// [`ProofKeyCache::verify`], the header to keep held back in `fresh`.
    fn cache_verify(
        &self,
        policy: &DpopPolicy,
        request: &DpopRequest<'_>,
        token_sha256: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<DpopProof, DpopError> {
        policy.verify_with(request, now, self, token_sha256)
    }
}

impl ProofKeys for Deferred<'_> {
    fn get(&self, segment: &[u8]) -> Option<Arc<ProofHeader>> {
        self.cache.get(segment)
    }

    fn keep(&self, header: Arc<ProofHeader>) {
        self.fresh.set(Some(header));
    }
}

impl ProofKeys for ProofKeyCache {
    fn get(&self, segment: &[u8]) -> Option<Arc<ProofHeader>> {
        let h = self.cache.get(segment);
        let counter = if h.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        h
    }

    fn keep(&self, header: Arc<ProofHeader>) {
        self.cache.insert(header.segment().clone(), header);
    }
}

/// Why a `jti` could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// It was recorded already, and is still inside its window.
    Replay,
    /// The cache (the key's shard) is full of entries still inside their window.
    Full,
    /// The proof key holds `replay_max_per_key` live entries already.
    KeyLimit,
}

/// Shards of the replay cache (a proof key's entries all live in the one its keyed hash
/// picks).
const SHARDS: usize = 16;

/// The in-memory `jti` replay cache: 16-byte keys (SHA-256 of `jkt` and `jti`, truncated)
/// to the second their entry expires (the proof's `iat` plus the replay window), bounded by a
/// number of entries and a number of live entries per proof key.
///
/// Sharded under 16 locks; the shard is picked by a keyed hash (SipHash-1-3 under a random
/// per-process key, `std`'s `RandomState`) of the proof key's thumbprint, so a client can
/// neither aim its entries at one shard nor spread one key's entries over all of them; each
/// shard counts its keys' live entries (by a 32-bit tag of the same hash) and refuses a key
/// past `max_per_key` ([`Full::KeyLimit`]) without touching any other key. An entry is 24
/// bytes plus the table's control byte (about 33 bytes each once the load factor is counted:
/// 3.3 MiB for 100,000) and its key's counter at most 9 more (one per distinct key). Expired
/// entries are swept when a shard or a key is full, at most once a second per shard; a shard
/// full of live entries refuses new ones ([`Full::Full`]), never evicts a live one.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    per_key: u32,
    hasher: std::hash::RandomState,
}

#[derive(Debug, Default)]
struct Shard {
    /// Key to (the proof key's tag << 32 | expiry, Unix seconds clamped to 32 bits).
    map: HashMap<[u8; 16], u64, foldhash::fast::RandomState>,
    /// Entries held per proof key tag (live or not yet swept).
    per_key: HashMap<u32, u32, foldhash::fast::RandomState>,
    swept_at: u64,
}

fn expiry(v: u64) -> u64 {
    v & 0xffff_ffff
}

fn tag_of(v: u64) -> u32 {
    (v >> 32) as u32
}

impl Shard {
    /// Drops the entries expired at `now` (at most once a second).
    fn sweep(&mut self, now: u64) {
        if self.swept_at == now {
            return;
        }
        self.swept_at = now;
        let per_key = &mut self.per_key;
        self.map.retain(|_, v| {
            let live = expiry(*v) > now;
            if !live {
                if let Some(c) = per_key.get_mut(&tag_of(*v)) {
                    *c = c.saturating_sub(1);
                }
            }
            live
        });
        self.per_key.retain(|_, c| *c > 0);
    }
}

impl ReplayCache {
    /// A cache of at most `max_entries` entries (rounded up to a multiple of 16), with no
    /// limit per proof key beyond that.
    pub fn new(max_entries: usize) -> ReplayCache {
        ReplayCache::with_key_limit(max_entries, max_entries)
    }

    /// A cache of at most `max_entries` entries (rounded up to a multiple of 16), at most
    /// `max_per_key` of them live for one proof key, and never more than a quarter of a
    /// shard's share ([`ReplayCache::per_key_limit`]): no fewer than four keys at their cap
    /// can fill a shard.
    pub fn with_key_limit(max_entries: usize, max_per_key: usize) -> ReplayCache {
        let per_shard = max_entries.div_ceil(SHARDS).max(1);
        let per_key = max_per_key.min(per_shard / 4).max(1);
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            per_key: u32::try_from(per_key).unwrap_or(u32::MAX),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The live entries one proof key may hold: `max_per_key`, at most a quarter of
    /// `max_entries / 16`.
    pub fn per_key_limit(&self) -> usize {
        self.per_key as usize
    }

    /// The shard of `jkt` and its tag in it.
    fn shard(&self, jkt: &str) -> (std::sync::MutexGuard<'_, Shard>, u32) {
        let h = self.hasher.hash_one(jkt);
        let m = &self.shards[(h as usize) % SHARDS];
        // A poisoned shard holds consistent data (no operation panics half-way).
        (
            m.lock().unwrap_or_else(|p| p.into_inner()),
            (h >> 32) as u32,
        )
    }

    /// True when `key` (a proof of `jkt`) is recorded and still inside its window at `now`.
    pub fn contains(&self, jkt: &str, key: &[u8; 16], now: u64) -> bool {
        self.shard(jkt)
            .0
            .map
            .get(key)
            .is_some_and(|&v| expiry(v) > now)
    }

    /// Records `key` (a proof of `jkt`) until `expires`: [`Full::Replay`] when it is recorded
    /// and live, [`Full::KeyLimit`] when `jkt` holds its limit of live entries,
    /// [`Full::Full`] when its shard is full of live entries.
    pub fn insert(&self, jkt: &str, key: [u8; 16], expires: u64, now: u64) -> Result<(), Full> {
        let (mut s, tag) = self.shard(jkt);
        let value = (u64::from(tag) << 32) | expires.min(u64::from(u32::MAX));
        if let Some(&v) = s.map.get(&key) {
            if expiry(v) > now {
                return Err(Full::Replay);
            }
            // The same key of the same jkt: its count already holds this entry.
            s.map.insert(key, value);
            return Ok(());
        }
        if s.per_key.get(&tag).copied().unwrap_or(0) >= self.per_key {
            s.sweep(now);
            if s.per_key.get(&tag).copied().unwrap_or(0) >= self.per_key {
                return Err(Full::KeyLimit);
            }
        }
        if s.map.len() >= self.per_shard {
            s.sweep(now);
            if s.map.len() >= self.per_shard {
                return Err(Full::Full);
            }
        }
        s.map.insert(key, value);
        *s.per_key.entry(tag).or_insert(0) += 1;
        Ok(())
    }

    /// Forgets `key` (a proof of `jkt`), e.g. recorded for a request refused afterwards.
    pub fn remove(&self, jkt: &str, key: &[u8; 16]) {
        let (mut s, tag) = self.shard(jkt);
        if s.map.remove(key).is_some() {
            if let Some(c) = s.per_key.get_mut(&tag) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    s.per_key.remove(&tag);
                }
            }
        }
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heap the tables hold, in bytes: each bucket's key, value and control byte, and
    /// the per-key counters'.
    pub fn heap_bytes(&self) -> usize {
        // hashbrown: buckets = next power of two of cap * 8 / 7; one control byte each plus
        // a group's worth.
        fn table(cap: usize, entry: usize) -> usize {
            if cap == 0 {
                return 0;
            }
            (cap.saturating_mul(8) / 7).next_power_of_two() * (entry + 1) + 16
        }
        self.shards
            .iter()
            .map(|m| {
                let s = m.lock().unwrap_or_else(|p| p.into_inner());
                table(s.map.capacity(), 16 + 8) + table(s.per_key.capacity(), 4 + 4)
            })
            .sum()
    }

    /// Most entries held.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_refuses_a_live_key_and_takes_an_expired_one() {
        let c = ReplayCache::new(32);
        let k = [7u8; 16];
        assert_eq!(c.insert("a", k, 100, 10), Ok(()));
        assert!(c.contains("a", &k, 99));
        assert_eq!(c.insert("a", k, 100, 99), Err(Full::Replay));
        assert!(!c.contains("a", &k, 100));
        assert_eq!(c.insert("a", k, 200, 100), Ok(()));
    }

    #[test]
    fn a_full_shard_refuses_until_entries_expire() {
        // 4 entries a shard, 1 a key (a quarter of a shard): 65 keys cannot all find room.
        let c = ReplayCache::new(64);
        assert_eq!(c.per_key_limit(), 1);
        let mut full = None;
        for i in 0..65u8 {
            let jkt = format!("key-{i}");
            match c.insert(&jkt, [i; 16], 50, 10) {
                Ok(()) => {}
                Err(Full::Full) => {
                    full = Some(jkt);
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        let jkt = full.expect("some shard is full");
        assert_eq!(c.insert(&jkt, [200; 16], 50, 20), Err(Full::Full));
        assert_eq!(
            c.insert(&jkt, [200; 16], 80, 50),
            Ok(()),
            "swept once the first expired"
        );
    }

    #[test]
    fn a_key_at_its_limit_is_refused_and_others_are_not() {
        let c = ReplayCache::with_key_limit(16_000, 3);
        for i in 0..3u8 {
            assert_eq!(c.insert("a", [i; 16], 50, 10), Ok(()));
        }
        assert_eq!(c.insert("a", [9; 16], 50, 10), Err(Full::KeyLimit));
        for i in 0..3u8 {
            assert_eq!(c.insert("b", [100 + i; 16], 50, 10), Ok(()));
        }
        c.remove("a", &[0; 16]);
        assert_eq!(
            c.insert("a", [9; 16], 50, 10),
            Ok(()),
            "room after a removal"
        );
        assert_eq!(
            c.insert("a", [10; 16], 90, 50),
            Ok(()),
            "swept once they expired"
        );
    }
}
