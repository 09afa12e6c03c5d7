//! DPoP (RFC 9449) in the engine: the per-issuer policy (`[issuer.dpop]`, overridden per rule
//! by `[[rule]] dpop`), the mode logic (a bound token presented as a bearer token is a
//! downgrade), the proof check (`jwtd_core::DpopPolicy::verify` with the verified token as
//! the access token, then `jwtd_core::check_token_binding`) and the in-memory `jti` replay
//! cache. [`crate::Engine::decide`] calls [`check`] once the token is verified (and its
//! revocation checked) and [`Passed::consume`] last, once every other check of the request
//! passed, so a refused request never burns the client's proof. See docs/dpop.md ("In the
//! engine") and docs/design/dpop-engine.md.

use crate::config::{DpopConfig, DpopConfigError, DpopMode, IssuerConfig, OnPass, ReplayMode};
use crate::issuers::Issuers;
use http::{HeaderMap, HeaderName};
use jwtd_core::{
    DpopError, DpopPolicy, DpopProof, DpopReason, DpopRequest, Error, ProofHeader, ProofKeys,
    Reason, Verified,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The parsed proof keys (the process's one cache, [`ProofKeyCache::shared`], unless
    /// replaced).
    pub proof_keys: Arc<ProofKeyCache>,
    /// `replay_max_entries`.
    max_entries: usize,
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
            cache: Arc::new(ReplayCache::new(cfg.replay_max_entries)),
            nonce: None,
            proof_keys: ProofKeyCache::shared().clone(),
            max_entries: cfg.replay_max_entries,
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
    /// of the same name and `replay_max_entries`, so a reload does not forget the `jti`s
    /// seen (a proof could be replayed right after it otherwise).
    pub fn adopt_replay_caches(&mut self, previous: &DpopEngine) {
        for (name, d) in &mut self.by_issuer {
            if let Some(old) = previous.of(name) {
                if old.max_entries == d.max_entries {
                    if let Some(d) = Arc::get_mut(d) {
                        d.cache = old.cache.clone();
                    }
                }
            }
        }
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
    challenge: DpopChallenge,
}

impl Passed {
    /// Records the proof's `jti` (`replay = "consume"`): a `jti` recorded meanwhile is
    /// `dpop_replay`, a cache full of live entries `dpop_replay_unavailable`.
    pub fn consume(&self, now: u64) -> Result<(), (Error, DpopChallenge)> {
        if self.replay != ReplayMode::Consume {
            return Ok(());
        }
        match self.cache.insert(self.key, self.expires, now) {
            Ok(()) => Ok(()),
            Err(Full::Replay) => Err((replayed(), self.challenge.clone())),
            Err(Full::Full) => Err((
                dpop(
                    DpopReason::ReplayUnavailable,
                    "the DPoP replay cache is full: retry later",
                ),
                self.challenge.clone(),
            )),
        }
    }
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
    let proof = match d.proof_keys.verify(
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
    if d.replay != ReplayMode::Off && d.cache.contains(&key, now) {
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
    /// The cache is full of entries still inside their window.
    Full,
}

/// Shards of the replay cache (a `jti` key is a SHA-256 prefix: its first byte picks one).
const SHARDS: usize = 16;

/// The in-memory `jti` replay cache: 16-byte keys (SHA-256 of `jkt` and `jti`, truncated)
/// to the second their entry expires (the proof's `iat` plus the replay window), bounded by a
/// number of entries. Sharded under 16 locks; an entry is 24 bytes plus the table's control
/// byte (about 33 bytes each once the table's load factor is counted: 3.3 MiB for 100,000).
/// Expired entries are swept when a shard is full, at most once a second per shard; a shard
/// full of live entries refuses new ones ([`Full::Full`]), never evicts a live one.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<[u8; 16], u64, foldhash::fast::RandomState>,
    swept_at: u64,
}

impl ReplayCache {
    /// A cache of at most `max_entries` entries (rounded up to a multiple of 16).
    pub fn new(max_entries: usize) -> ReplayCache {
        let per_shard = max_entries.div_ceil(SHARDS).max(1);
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &[u8; 16]) -> std::sync::MutexGuard<'_, Shard> {
        let m = &self.shards[usize::from(key[0]) % SHARDS];
        // A poisoned shard holds consistent data (no operation panics half-way).
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `key` is recorded and still inside its window at `now`.
    pub fn contains(&self, key: &[u8; 16], now: u64) -> bool {
        self.shard(key).map.get(key).is_some_and(|&exp| exp > now)
    }

    /// Records `key` until `expires`: [`Full::Replay`] when it is recorded and live,
    /// [`Full::Full`] when its shard is full of live entries.
    pub fn insert(&self, key: [u8; 16], expires: u64, now: u64) -> Result<(), Full> {
        let mut s = self.shard(&key);
        if let Some(&exp) = s.map.get(&key) {
            if exp > now {
                return Err(Full::Replay);
            }
            s.map.insert(key, expires);
            return Ok(());
        }
        if s.map.len() >= self.per_shard {
            if s.swept_at != now {
                s.swept_at = now;
                s.map.retain(|_, exp| *exp > now);
            }
            if s.map.len() >= self.per_shard {
                return Err(Full::Full);
            }
        }
        s.map.insert(key, expires);
        Ok(())
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

    /// The heap the tables hold, in bytes: each bucket's key, value and control byte.
    pub fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|m| {
                let cap = m.lock().unwrap_or_else(|p| p.into_inner()).map.capacity();
                // hashbrown: buckets = next power of two of cap * 8 / 7; one control byte
                // each plus a group's worth.
                let buckets = if cap == 0 {
                    0
                } else {
                    (cap.saturating_mul(8) / 7).next_power_of_two()
                };
                buckets * (16 + 8 + 1) + 16
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
        assert_eq!(c.insert(k, 100, 10), Ok(()));
        assert!(c.contains(&k, 99));
        assert_eq!(c.insert(k, 100, 99), Err(Full::Replay));
        assert!(!c.contains(&k, 100));
        assert_eq!(c.insert(k, 200, 100), Ok(()));
    }

    #[test]
    fn a_full_shard_refuses_until_entries_expire() {
        let c = ReplayCache::new(16);
        // One entry per shard: the first byte picks the shard.
        let mut k = [0u8; 16];
        assert_eq!(c.insert(k, 50, 10), Ok(()));
        k[1] = 1;
        assert_eq!(c.insert(k, 50, 10), Err(Full::Full));
        assert_eq!(c.insert(k, 80, 50), Ok(()), "swept once the first expired");
        assert_eq!(c.len(), 1);
    }
}
