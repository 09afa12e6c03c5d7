//! Configured issuers at run time: a validation policy, a key source, identity headers.

use crate::config::{AudienceMode, CacheSettings, IssuerConfig, KeySource, SecretRef};
use crate::env::Env;
use http::HeaderName;
use jwtd_core::{
    ClaimCheck, Error, Jwks, KeySet, Reason, TokenCache, TokenCacheConfig, TokenLookup, Validation,
    Verified, VerifyingKey,
};
use jwtd_remote::{CacheConfig, HttpConfig, RemoteKeys, Source};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
pub enum Keys {
    /// Keys read once from configuration (secret, PEM, JWKS file).
    Static(Arc<KeySet>),
    /// Keys fetched and cached (JWKS URL, discovery).
    Remote(RemoteKeys),
    /// Keys kept by the embedding application, e.g. jwtd's own published key ring (the
    /// service's `[signing]`).
    Ring(Arc<dyn KeyView>),
}

/// A key set that changes over time, owned by someone else (jwtd's signing key ring): the
/// engine reads the keys and their generation together, and whether it can verify now.
pub trait KeyView: std::fmt::Debug + Send + Sync {
    /// The verify keys and the generation they belong to, from one view (never keys of one
    /// generation under another's number).
    fn verify_view(&self) -> (Arc<KeySet>, u64);
    /// The generation: changes exactly when the verify set changes.
    fn generation(&self) -> u64;
    /// True when the set can serve now (for the key ring: it holds a signing key).
    fn ready(&self) -> bool;
    /// The kid of the key that signs now, for status pages (`None`: none, or no kid).
    fn signing_kid(&self) -> Option<String> {
        None
    }
}

/// Revocation, checked after every verification (and every cache hit): the service's
/// store-backed list implements it; an embedding application may bring its own.
pub trait RevocationCheck: std::fmt::Debug + Send + Sync {
    /// `Ok` when `verified` is not revoked at `now`; `revoked` or `revocation_unavailable`
    /// otherwise.
    fn check(&self, verified: &Verified, now: u64) -> Result<(), Error>;
}

/// One issuer, ready to verify.
#[derive(Debug)]
pub struct Issuer {
    /// Name for logs, metrics and responses.
    pub name: String,
    /// The `iss` that selects it (`None`: tokens without `iss`).
    pub iss: Option<String>,
    /// The policy.
    pub validation: Validation,
    /// The keys.
    pub keys: Keys,
    /// Identity headers: header name and claim path.
    pub headers: Vec<(HeaderName, String)>,
    /// Send `X-Auth-Payload`.
    pub forward_payload: bool,
    /// The configuration it was built from (to reuse remote caches across reloads).
    pub config: IssuerConfig,
    /// Verified-token cache (new with every configuration, so a reload invalidates it).
    pub cache: Option<TokenCache>,
    /// Random id of this issuer instance, part of every cache key.
    pub id: u64,
    /// [`Issuer::validation`] without the audience check ([`Policy::RuleAudiences`]).
    pub open_validation: Validation,
    /// Success counters per endpoint, created on first use (no lookup on the request path).
    pub ok_counters: [std::sync::OnceLock<metrics::Counter>; ENDPOINTS.len()],
}

/// Up to this many issuers, a repeated token is looked up in every issuer's cache before it is
/// routed (each lookup is a probe with the one hash, tens of nanoseconds; routing decodes the
/// payload).
const PROBE_ALL_UP_TO: usize = 8;

/// Mixed into the cache scope of [`Policy::RuleAudiences`] answers.
const OPEN_SCOPE: u64 = 0x5a5a_0f0f_a5a5_f0f0;

/// The endpoints metrics are labelled with.
pub const ENDPOINTS: [&str; 5] = ["auth", "verify", "tokens", "introspect", "proxy"];

impl Issuer {
    /// `jwtd_requests_total{endpoint, issuer, outcome="ok"}`, kept on the issuer.
    pub fn ok_counter(&self, endpoint: &'static str) -> Option<&metrics::Counter> {
        let i = ENDPOINTS.iter().position(|e| *e == endpoint)?;
        Some(self.ok_counters[i].get_or_init(|| {
            metrics::counter!("jwtd_requests_total", "endpoint" => endpoint, "issuer" => self.name.clone(), "outcome" => "ok", "reason" => "")
        }))
    }
}

/// Which of an issuer's two policies a verification uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The issuer's own policy, audiences included.
    Issuer,
    /// The issuer's policy without its audience check: for a rule that names its own
    /// audiences (the engine checks those after verification). Cached apart from the other.
    RuleAudiences,
}

impl Issuer {
    /// Verifies `token` at `now`, through the verified-token cache when it is on. The cache
    /// scope is this issuer instance and the generation of its key set, so a key removed from
    /// a JWKS or the ring invalidates what was verified with the old set.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Arc<Verified>, Error> {
        self.verify_with(Policy::Issuer, token, now).await
    }

    /// [`Issuer::verify`] under `policy`.
    pub async fn verify_with(
        &self,
        policy: Policy,
        token: &str,
        now: u64,
    ) -> Result<Arc<Verified>, Error> {
        match &self.cache {
            Some(cache) => {
                self.verify_lookup(policy, cache, &cache.lookup(token), now)
                    .await
            }
            None => self.verify_uncached(policy, token, now).await,
        }
    }

    fn policy(&self, policy: Policy) -> (&Validation, u64) {
        match policy {
            Policy::Issuer => (&self.validation, self.id),
            // Another scope: an answer under one policy is never served under the other.
            Policy::RuleAudiences => (&self.open_validation, self.id ^ OPEN_SCOPE),
        }
    }

    async fn verify_uncached(
        &self,
        policy: Policy,
        token: &str,
        now: u64,
    ) -> Result<Arc<Verified>, Error> {
        let (v, _) = self.policy(policy);
        match &self.keys {
            Keys::Static(set) => jwtd_core::verify(set, v, token, now),
            Keys::Remote(r) => r.verify_at(v, token, now).await,
            Keys::Ring(ring) => jwtd_core::verify(&ring.verify_view().0, v, token, now),
        }
        .map(Arc::new)
    }

    async fn verify_lookup(
        &self,
        policy: Policy,
        cache: &TokenCache,
        lookup: &TokenLookup<'_>,
        now: u64,
    ) -> Result<Arc<Verified>, Error> {
        let (v, id) = self.policy(policy);
        match &self.keys {
            Keys::Static(set) => cache.verify_lookup(lookup, [id, 0], set, v, now),
            Keys::Ring(ring) => {
                // Keys and generation from one view: never an answer from old keys cached
                // under a new generation.
                let (keys, generation) = ring.verify_view();
                cache.verify_lookup(lookup, [id, generation], &keys, v, now)
            }
            Keys::Remote(r) => {
                let Some(snap) = fresh_snapshot(r) else {
                    return self.verify_uncached(policy, lookup.token(), now).await;
                };
                match cache.verify_lookup(lookup, [id, snap.generation], &snap.keys, v, now) {
                    // An unknown kid may need a refresh: the remote source decides (single
                    // flight, cooldown); the next request caches under the new generation.
                    Err(e) if e.reason() == Reason::UnknownKey => {
                        r.verify_at(v, lookup.token(), now).await.map(Arc::new)
                    }
                    other => other,
                }
            }
        }
    }

    /// The cache's answer for a token verified before by this issuer under its current key
    /// set; `None` when there is none (or the cache is off).
    fn cached(
        &self,
        policy: Policy,
        lookup: &TokenLookup<'_>,
        now: u64,
    ) -> Option<Result<Arc<Verified>, Error>> {
        let cache = self.cache.as_ref()?;
        let (v, id) = self.policy(policy);
        cache.cached(lookup, self.scope(id)?, v, now)
    }

    /// The verified-token cache scope in force now for the policy scope `id` (see
    /// [`Issuer::verify`]); `None` when remote keys are missing or past their lifetime plus
    /// stale-if-error (the remote source answers then, uncached).
    fn scope(&self, id: u64) -> Option<[u64; 2]> {
        Some(match &self.keys {
            Keys::Static(_) => [id, 0],
            Keys::Ring(ring) => [id, ring.generation()],
            Keys::Remote(r) => [id, fresh_snapshot(r)?.generation],
        })
    }

    /// Drops `token` from the verified-token cache (it was found revoked).
    pub fn forget(&self, token: &str) {
        for id in [self.id, self.id ^ OPEN_SCOPE] {
            if let (Some(cache), Some(scope)) = (&self.cache, self.scope(id)) {
                cache.forget(scope, token);
            }
        }
    }

    /// True when the issuer can verify now: static keys, a signing key in the ring, or remote
    /// keys within their lifetime plus stale-if-error (`/readyz`).
    pub fn ready(&self) -> bool {
        match &self.keys {
            Keys::Static(_) => true,
            Keys::Ring(ring) => ring.ready(),
            Keys::Remote(r) => r.is_ready(),
        }
    }
}

/// How often the verified-token caches drop the entries of expired tokens.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Sweeps the issuers' caches of expired entries `every` period ([`SWEEP_EVERY`] in service),
/// until the issuers are dropped (a reload builds new ones, with their own sweeper). Outside a
/// tokio runtime there is no sweeper: expired entries are then dropped when presented, or
/// pushed out by the bounds. Returns the sweeper's task, if one was started.
fn sweep_expired(list: &[Arc<Issuer>], every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return None;
    };
    let weak: Vec<std::sync::Weak<Issuer>> = list
        .iter()
        .filter(|i| i.cache.is_some())
        .map(Arc::downgrade)
        .collect();
    if weak.is_empty() {
        return None;
    }
    Some(rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let mut alive = false;
            for issuer in weak.iter().filter_map(std::sync::Weak::upgrade) {
                alive = true;
                if let Some(cache) = &issuer.cache {
                    cache.purge_expired(jwtd_core::unix_now());
                }
            }
            if !alive {
                break;
            }
        }
    }))
}

/// The remote key set when cached answers may use it: held, and not past its lifetime plus
/// stale-if-error (past that, the remote source answers: it may fetch, or refuses).
fn fresh_snapshot(r: &RemoteKeys) -> Option<Arc<jwtd_remote::Snapshot>> {
    r.usable_snapshot()
}

/// What [`Issuers::verify`] answers: the issuer and the verified token, or the name of the
/// issuer that refused (when one was selected) and why.
pub type Outcome = Result<(Arc<Issuer>, Arc<Verified>), (Option<String>, Error)>;

/// `X-Auth-Subject`: the token's `sub`.
pub const SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// `X-Auth-Issuer`: the token's `iss`.
pub const ISSUER: HeaderName = HeaderName::from_static("x-auth-issuer");
/// `X-Auth-Payload`: the verified claims, base64url (issuers with `forward_payload`).
pub const PAYLOAD: HeaderName = HeaderName::from_static("x-auth-payload");

/// The identity headers every `/auth` success carries, whichever issuer verified the token:
/// the union over the issuers, computed once when they are built. A header an issuer does not
/// map (or a claim the token lacks) is sent with an empty value, so a proxy that copies only
/// the headers present in the answer still overwrites a client's spoofed one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// `X-Auth-Payload` is sent (some issuer sets `forward_payload`).
    pub payload: bool,
    /// Every `[issuer.headers]` name of every issuer, once each, sorted.
    pub mapped: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// The union over issuers, each given by the header names it maps and whether it sends
    /// `X-Auth-Payload`: what [`IdentityHeaders::of`] and [`IdentityHeaders::of_configs`] both
    /// compute.
    pub fn union<I, H>(issuers: I) -> IdentityHeaders
    where
        I: IntoIterator<Item = (H, bool)>,
        H: IntoIterator<Item = HeaderName>,
    {
        let mut payload = false;
        let mut mapped = Vec::new();
        for (headers, forward_payload) in issuers {
            payload |= forward_payload;
            mapped.extend(headers);
        }
        mapped.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        mapped.dedup();
        IdentityHeaders { payload, mapped }
    }

    /// The union for the built issuers `list`.
    pub fn of(list: &[Arc<Issuer>]) -> IdentityHeaders {
        IdentityHeaders::union(
            list.iter()
                .map(|i| (i.headers.iter().map(|(n, _)| n.clone()), i.forward_payload)),
        )
    }

    /// The union for the issuers `configs` will build (their `[issuer.headers]` names that are
    /// valid header names; the others are configuration errors).
    pub fn of_configs(configs: &[IssuerConfig]) -> IdentityHeaders {
        IdentityHeaders::union(configs.iter().map(|c| {
            (
                c.headers
                    .keys()
                    .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
                c.forward_payload,
            )
        }))
    }

    /// The header names a rule's `set_headers` may not use: jwtd's reserved headers
    /// ([`crate::config::RESERVED_HEADERS`]) and every mapped identity header (each header has
    /// one source). The rules are compiled against this list whether from configurations
    /// ([`crate::config::compile_rules`]) or from built issuers
    /// ([`crate::Engine::reserved_headers`]).
    pub fn reserved(&self) -> Vec<HeaderName> {
        let mut v: Vec<HeaderName> = crate::config::RESERVED_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        v.extend(self.mapped.iter().cloned());
        v
    }

    /// Every header, in the order sent: `X-Auth-Subject`, `X-Auth-Issuer`, `X-Auth-Payload`
    /// (when sent), then the mapped headers.
    pub fn names(&self) -> Vec<HeaderName> {
        let mut all = vec![SUBJECT, ISSUER];
        if self.payload {
            all.push(PAYLOAD);
        }
        all.extend(self.mapped.iter().cloned());
        all
    }
}

/// The issuer a token goes to, from [`Issuers::select_for`], with the cache's answer when an
/// issuer's cache held the token.
#[derive(Debug)]
pub struct Selected {
    /// The issuer.
    pub issuer: Arc<Issuer>,
    cached: Option<Result<Arc<Verified>, Error>>,
}

/// All issuers, routed by the token's `iss` (cloning shares the issuers).
#[derive(Clone, Debug, Default)]
pub struct Issuers {
    /// In configuration order.
    pub list: Vec<Arc<Issuer>>,
    /// The identity headers `/auth` answers for every issuer of `list` (see
    /// [`IdentityHeaders::of`]; kept in step with `list` by [`Issuers::build`]).
    pub identity: IdentityHeaders,
    /// Revocations checked after every verification (and every cache hit).
    pub revocations: Option<Arc<dyn RevocationCheck>>,
}

impl Issuers {
    /// Builds every issuer of `configs`, after `own` (jwtd's own issuer, when it signs: routed
    /// to first), each with a verified-token cache per `cache`. `previous` lends remote caches
    /// whose source did not change, so a reload keeps warm keys. Must run inside a tokio
    /// runtime (remote sources start fetching, and a task sweeps the verified-token caches of
    /// expired entries). Secrets named by `secret_env` are read from the process environment.
    pub fn build(
        configs: &[IssuerConfig],
        cache: &CacheSettings,
        previous: Option<&Issuers>,
        own: Option<Issuer>,
    ) -> Result<Issuers, String> {
        Issuers::build_with_env(configs, cache, previous, own, &Env::process())
    }

    /// [`Issuers::build`] reading the secrets named by `secret_env` from `env` (the
    /// environment the configuration was read in, e.g. [`crate::config::GateConfig::env`]).
    pub fn build_with_env(
        configs: &[IssuerConfig],
        cache: &CacheSettings,
        previous: Option<&Issuers>,
        own: Option<Issuer>,
        env: &Env,
    ) -> Result<Issuers, String> {
        let mut list = Vec::new();
        if let Some(mut own) = own {
            own.cache = new_cache(cache)?;
            list.push(Arc::new(own));
        }
        for ic in configs {
            let reuse = previous.and_then(|p| {
                p.list.iter().find_map(|old| match &old.keys {
                    Keys::Remote(r) if same_source(&old.config, ic) => Some(r.clone()),
                    _ => None,
                })
            });
            let mut issuer = build_issuer(ic, reuse, env)
                .map_err(|e| format!("issuer {:?}: {e}", ic.name.get_ref()))?;
            issuer.cache = new_cache(cache)?;
            list.push(Arc::new(issuer));
        }
        sweep_expired(&list, SWEEP_EVERY);
        Ok(Issuers {
            identity: IdentityHeaders::of(&list),
            list,
            revocations: None,
        })
    }

    /// The issuer for a token whose `iss` is `iss`.
    pub fn route(&self, iss: Option<&str>) -> Result<&Arc<Issuer>, Error> {
        self.list
            .iter()
            .find(|i| i.iss.as_deref() == iss)
            .ok_or_else(|| match iss {
                Some(iss) => Error::new(
                    Reason::WrongIssuer,
                    format!(
                        "iss {:?} is not a configured issuer",
                        iss.chars().take(100).collect::<String>()
                    ),
                ),
                None => Error::new(
                    Reason::MissingClaim,
                    "claim \"iss\" is required (no issuer is configured for tokens without one)",
                ),
            })
    }

    /// Verifies `token` with the issuer its `iss` selects (with a single issuer that names its
    /// `iss`, that one: its policy checks `iss` anyway). On failure, the issuer's name when one
    /// was selected.
    pub async fn verify(&self, token: &str, now: u64) -> Outcome {
        // A token verified before by an issuer that names its `iss` is answered by that issuer
        // without routing: its policy accepted the token, so the token's `iss` is that
        // issuer's, which routing would pick too (no two issuers share an `iss`). Not so for
        // an issuer that takes tokens without `iss` (routing checks that, not its policy), so
        // those are asked after routing. The token is hashed once for every issuer's cache.
        // With many issuers, routing first costs less than asking every cache.
        let lookup = match self.list.as_slice() {
            [first, _, ..] => first.cache.as_ref().map(|c| c.lookup(token)),
            _ => None,
        };
        if let Some(l) = &lookup {
            if self.list.len() <= PROBE_ALL_UP_TO {
                for issuer in self.list.iter().filter(|i| i.iss.is_some()) {
                    if let Some(answer) = issuer.cached(Policy::Issuer, l, now) {
                        return self.checked(issuer, token, answer, now);
                    }
                }
            }
        }
        let issuer = self.select(token).map_err(|e| (None, e))?;
        let answer = match (&lookup, &issuer.cache) {
            (Some(l), Some(cache)) => issuer.verify_lookup(Policy::Issuer, cache, l, now).await,
            _ => issuer.verify(token, now).await,
        };
        self.checked(&issuer, token, answer, now)
    }

    /// The issuer that verifies `token`, chosen by its `iss` before anything is verified or
    /// fetched (with a single issuer that names its `iss`, that one: its policy checks `iss`
    /// anyway).
    pub fn select(&self, token: &str) -> Result<Arc<Issuer>, Error> {
        Ok(match self.list.as_slice() {
            // An issuer that names its `iss` checks it in its policy; an anonymous one takes
            // only tokens without `iss`, which routing checks.
            [only] if only.iss.is_some() => only.clone(),
            list => {
                // The fast hint only picks among issuers that name their `iss` (whose policy
                // then checks it strictly), and only when none takes tokens without `iss` (the
                // hint may offer a nested "iss" for those); anything else goes through the
                // parser.
                let all_named = list.iter().all(|i| i.iss.is_some());
                let hinted = all_named
                    .then(|| jwtd_core::issuer_hint(token))
                    .flatten()
                    .and_then(|iss| {
                        list.iter()
                            .find(|i| i.iss.as_deref() == Some(iss.as_str()))
                            .cloned()
                    });
                match hinted {
                    Some(i) => i,
                    None => {
                        let iss = jwtd_core::peek_issuer(token)?;
                        self.route(iss.as_deref())?.clone()
                    }
                }
            }
        })
    }

    /// [`Issuers::select`] for a verification under `policy`, answered from the caches when
    /// it can be: with 2 to 8 issuers (as [`Issuers::verify`] does), the issuers that name their
    /// `iss` are asked first whether they verified this token before under `policy` (such an
    /// answer proves the token's `iss` is theirs), which costs one hash of the token instead of
    /// reading its payload. Otherwise the issuer is chosen by `iss` and nothing is verified.
    pub fn select_for(&self, token: &str, policy: Policy, now: u64) -> Result<Selected, Error> {
        if let [first, _, ..] = self.list.as_slice() {
            if self.list.len() <= PROBE_ALL_UP_TO {
                if let Some(cache) = &first.cache {
                    let l = cache.lookup(token);
                    for issuer in self.list.iter().filter(|i| i.iss.is_some()) {
                        if let Some(answer) = issuer.cached(policy, &l, now) {
                            return Ok(Selected {
                                issuer: issuer.clone(),
                                cached: Some(answer),
                            });
                        }
                    }
                }
            }
        }
        Ok(Selected {
            issuer: self.select(token)?,
            cached: None,
        })
    }

    /// Verifies `token` as `selected` (from [`Issuers::select_for`] with the same `policy`):
    /// the cached answer, or a verification by the selected issuer; then checks revocation.
    pub async fn verify_selected(
        &self,
        selected: Selected,
        policy: Policy,
        token: &str,
        now: u64,
    ) -> Result<Arc<Verified>, Error> {
        let answer = match selected.cached {
            Some(answer) => answer,
            None => selected.issuer.verify_with(policy, token, now).await,
        };
        self.checked(&selected.issuer, token, answer, now)
            .map(|(_, v)| v)
            .map_err(|(_, e)| e)
    }

    /// Checks revocation after a verification (or a cache hit).
    fn checked(
        &self,
        issuer: &Arc<Issuer>,
        token: &str,
        answer: Result<Arc<Verified>, Error>,
        now: u64,
    ) -> Outcome {
        let checked = match answer {
            Ok(v) => match &self.revocations {
                Some(r) => r.check(&v, now).map(|()| v).inspect_err(|e| {
                    // A revoked token's cache entry goes: revocation drops what it affects.
                    if e.reason() == Reason::Revoked {
                        issuer.forget(token);
                    }
                }),
                None => Ok(v),
            },
            Err(e) => Err(e),
        };
        match checked {
            Ok(v) => Ok((issuer.clone(), v)),
            Err(e) => Err((Some(issuer.name.clone()), e)),
        }
    }

    /// Waits until every remote issuer has usable keys, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for i in &self.list {
            if let Keys::Remote(r) = &i.keys {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !r.wait_ready(left).await {
                    return false;
                }
            }
        }
        true
    }
}

fn new_cache(c: &CacheSettings) -> Result<Option<TokenCache>, String> {
    if !c.enabled {
        return Ok(None);
    }
    TokenCache::new(TokenCacheConfig {
        max_entries: c.max_entries,
        max_bytes: c.max_bytes,
    })
    .map(Some)
    .map_err(|e| e.to_string())
}

fn random_id() -> u64 {
    let mut b = [0u8; 8];
    let _ = jwtd_core::fill_random(&mut b);
    u64::from_le_bytes(b)
}

impl Issuer {
    /// An issuer over keys kept elsewhere (`keys`, e.g. jwtd's own key ring) with the policy
    /// `validation`, selected by `iss`; no identity headers of its own.
    pub fn over(name: &str, iss: &str, validation: Validation, keys: Arc<dyn KeyView>) -> Issuer {
        let ic: IssuerConfig = toml::from_str(&format!(
            "name = {}\nissuer = {}\nalgorithms = [\"ES256\"]\n",
            toml::Value::from(name),
            toml::Value::from(iss)
        ))
        .expect("static issuer config");
        Issuer {
            name: name.into(),
            iss: Some(iss.into()),
            open_validation: validation.clone().any_audience(),
            validation,
            keys: Keys::Ring(keys),
            headers: Vec::new(),
            forward_payload: false,
            config: ic,
            cache: None,
            id: random_id(),
            ok_counters: Default::default(),
        }
    }
}

fn same_source(a: &IssuerConfig, b: &IssuerConfig) -> bool {
    matches!(a.key_source(), Ok(s) if s.is_remote())
        && a.key_source() == b.key_source()
        && a.algorithms == b.algorithms
        && a.ca_file == b.ca_file
        && a.allow_insecure_http == b.allow_insecure_http
        && a.cooldown == b.cooldown
        && a.stale_if_error == b.stale_if_error
}

fn read(path: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    std::fs::read(Path::new(path))
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read {path}: {e}"))
}

fn build_issuer(ic: &IssuerConfig, reuse: Option<RemoteKeys>, env: &Env) -> Result<Issuer, String> {
    crate::dpop::IssuerDpop::build(ic).map_err(|e| e.to_string())?;
    let algs = &ic.algorithms;
    let key_source = ic.key_source().map_err(|e| e.to_string())?;
    let remote = match &key_source {
        KeySource::JwksUrl(u) => Some(Source::JwksUrl(u.clone())),
        KeySource::Discovery(d) => Some(Source::Discovery(d.clone())),
        _ => None,
    };
    let keys = if let Some(r) = reuse {
        Keys::Remote(r)
    } else if let Some(source) = remote {
        let http = HttpConfig {
            allow_insecure_http: ic.allow_insecure_http,
            ca_bundle_pem: match &ic.ca_file {
                Some(f) => Some(read(f)?.to_vec()),
                None => None,
            },
            ..HttpConfig::default()
        };
        let mut cache = CacheConfig::default();
        if let Some(c) = ic.cooldown {
            cache.cooldown = Duration::from_secs(c.0);
            cache.negative_ttl = cache.cooldown;
        }
        if let Some(s) = ic.stale_if_error {
            cache.stale_if_error = Duration::from_secs(s.0);
        }
        Keys::Remote(
            RemoteKeys::start(source, algs.clone(), http, cache).map_err(|e| e.to_string())?,
        )
    } else {
        Keys::Static(Arc::new(static_keys(ic, &key_source, env)?))
    };
    let mut v = Validation::new(algs);
    if let Some(iss) = &ic.issuer {
        v = v.issuer(iss.clone());
    }
    for a in &ic.audiences {
        v = v.audience(a.clone());
    }
    if ic.audience_mode == AudienceMode::All {
        v = v.audience_mode(jwtd_core::AudienceMode::All);
    }
    if ic.any_audience {
        v = v.any_audience();
    }
    if let Some(l) = ic.leeway {
        v = v.leeway(l.0);
    }
    if let Some(m) = ic.max_age {
        v = v.max_age(m.0);
    }
    if let Some(m) = ic.max_auth_age {
        v = v.max_auth_age(m.0);
    }
    if let Some(t) = &ic.typ {
        v = v.typ(t.clone());
    }
    for r in &ic.require {
        v = v.require(r.clone());
    }
    let json = |t: &toml::Value| serde_json::to_value(t).map_err(|e| e.to_string());
    for (claim, value) in &ic.claims {
        v = v.check(ClaimCheck::Equals {
            claim: claim.clone(),
            value: json(value)?,
        });
    }
    for (claim, items) in &ic.contains {
        for item in items {
            v = v.check(ClaimCheck::Contains {
                claim: claim.clone(),
                item: item.clone(),
            });
        }
    }
    for (claim, values) in &ic.one_of {
        v = v.check(ClaimCheck::OneOf {
            claim: claim.clone(),
            values: values.iter().map(json).collect::<Result<_, _>>()?,
        });
    }
    let headers = ic
        .headers
        .iter()
        .map(|(h, path)| {
            HeaderName::from_bytes(h.as_bytes())
                .map(|h| (h, path.clone()))
                .map_err(|_| format!("{h:?} is not a valid header name"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Issuer {
        name: ic.name.get_ref().clone(),
        iss: ic.issuer.clone(),
        open_validation: v.clone().any_audience(),
        validation: v,
        keys,
        headers,
        forward_payload: ic.forward_payload,
        config: ic.clone(),
        cache: None,
        id: random_id(),
        ok_counters: Default::default(),
    })
}

/// Reads and checks an issuer's configured key material (secret, PEM, JWKS file, CA file) the
/// way start-up does; remote sources are not fetched. A `secret_env` is read from the process
/// environment.
pub fn check_static_keys(ic: &IssuerConfig) -> Result<(), String> {
    check_static_keys_with_env(ic, &Env::process())
}

/// [`check_static_keys`] reading a `secret_env` from `env`.
pub fn check_static_keys_with_env(ic: &IssuerConfig, env: &Env) -> Result<(), String> {
    if let Some(f) = &ic.ca_file {
        read(f)?;
    }
    let source = ic.key_source().map_err(|e| e.to_string())?;
    if source.is_remote() {
        return Ok(());
    }
    static_keys(ic, &source, env).map(|_| ())
}

fn static_keys(ic: &IssuerConfig, source: &KeySource, env: &Env) -> Result<KeySet, String> {
    let algs = &ic.algorithms;
    match source {
        KeySource::Secret(secret_ref) => {
            let secret = secret_ref.resolve(env, "HMAC secret", 1)?;
            let hs: Vec<_> = algs
                .iter()
                .filter(|a| a.family() == jwtd_core::Family::Hmac)
                .collect();
            let [alg] = hs.as_slice() else {
                return Err("an HMAC secret needs exactly one HS* algorithm".into());
            };
            // A secret file may hold the raw secret or the JWK `jwtd keygen --alg HS*` writes.
            let jwk = match secret_ref {
                SecretRef::File(f) => jwtd_core::Jwk::from_secret_file(&secret)
                    .map_err(|e| format!("{f}: {e}"))?
                    .map(|jwk| (f, jwk)),
                SecretRef::Env(_) => None,
            };
            let key = match jwk {
                Some((f, jwk)) => {
                    let key = VerifyingKey::from_jwk(&jwk, Some(**alg))
                        .map_err(|e| format!("{f}: {e}"))?;
                    if key.algorithm() != **alg {
                        return Err(format!(
                            "{f}: the JWK is for {}, but the issuer allows {alg}",
                            key.algorithm()
                        ));
                    }
                    // Like a raw secret, it matches any kid.
                    key.with_kid(None)
                }
                None => VerifyingKey::hmac(&secret, **alg, None).map_err(|e| e.to_string())?,
            };
            Ok(KeySet::new().with(key))
        }
        KeySource::PemFile(f) => {
            let pem = read(f)?;
            let mut fits: Vec<VerifyingKey> = algs
                .iter()
                .filter_map(|a| VerifyingKey::from_pem(&pem, Some(*a), None).ok())
                .collect();
            match fits.len() {
                1 => Ok(KeySet::new().with(fits.pop().expect("one"))),
                0 => Err(format!("{f}: no usable key for {algs:?}")),
                _ => Err(format!(
                    "{f}: the key fits several algorithms; allow only one"
                )),
            }
        }
        KeySource::JwksFile(f) => {
            let jwks = Jwks::from_json(&read(f)?).map_err(|e| format!("{f}: {e}"))?;
            let (set, skipped) = KeySet::from_jwks(&jwks, algs);
            for s in skipped {
                tracing::warn!(file = %f, index = s.index, kid = ?s.kid, why = %s.why, "JWKS key skipped");
            }
            if set.is_empty() {
                return Err(format!("{f}: no usable key for {algs:?}"));
            }
            Ok(set)
        }
        KeySource::JwksUrl(_) | KeySource::Discovery(_) => {
            Err("remote keys are fetched, not read".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sweeper-test-secret-0123456789abcdef";

    fn token(sub: &str, exp: u64) -> String {
        let k = jwtd_core::SigningKey::hmac(SECRET.as_bytes(), jwtd_core::Algorithm::HS256, None)
            .unwrap();
        let claims = serde_json::json!({"iss": "https://hs.test", "sub": sub, "exp": exp});
        jwtd_core::sign(&k, claims.as_object().unwrap(), None).unwrap()
    }

    #[tokio::test]
    async fn the_sweeper_drops_expired_entries_nobody_presents_and_ends_with_its_issuers() {
        let env = Env::from_vars([("JWTD_SWEEPER_TEST_HS", SECRET)]);
        let ic: IssuerConfig = toml::from_str(
            "name = \"hs\"\nissuer = \"https://hs.test\"\n\
             secret_env = \"JWTD_SWEEPER_TEST_HS\"\nalgorithms = [\"HS256\"]\n\
             any_audience = true\nleeway = 0\n",
        )
        .unwrap();
        let issuers =
            Issuers::build_with_env(&[ic], &CacheSettings::default(), None, None, &env).unwrap();
        let issuer = issuers.list[0].clone();
        let now = jwtd_core::unix_now();
        let (short, long) = (token("short", now + 1), token("long", now + 600));
        for t in [&short, &long] {
            issuer.verify(t, now).await.unwrap();
        }
        let entries = || issuer.cache.as_ref().unwrap().stats().entries;
        assert_eq!(entries(), 2);
        let sweeper = sweep_expired(&issuers.list, Duration::from_millis(50)).unwrap();
        // `short` expires within two seconds; nobody presents it again, the sweeper drops it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while entries() > 1 {
            assert!(std::time::Instant::now() < deadline, "never swept");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(entries(), 1, "the unexpired entry stays");
        assert!(jwtd_core::unix_now() > now, "swept only once expired");
        // Once the issuers are gone (a reload replaced them), the sweeper ends.
        drop((issuer, issuers));
        tokio::time::timeout(Duration::from_secs(5), sweeper)
            .await
            .expect("the sweeper ends")
            .unwrap();
    }
}
