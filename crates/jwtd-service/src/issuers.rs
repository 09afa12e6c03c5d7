//! Configured issuers at run time: a validation policy, a key source, identity headers.

use crate::config::{AudienceMode, Config, IssuerConfig};
use axum::http::HeaderName;
use jwtd_core::{
    ClaimCheck, Error, Jwks, KeySet, Reason, TokenCache, TokenCacheConfig, Validation, Verified,
    VerifyingKey,
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
    /// jwtd's own published keys.
    Ring(Arc<jwtd_store::KeyRing<jwtd_store::AnyStore>>),
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
    /// Success counters per endpoint, created on first use (no lookup on the request path).
    pub(crate) ok_counters: [std::sync::OnceLock<metrics::Counter>; ENDPOINTS.len()],
}

/// The endpoints metrics are labelled with.
pub(crate) const ENDPOINTS: [&str; 4] = ["auth", "verify", "tokens", "introspect"];

impl Issuer {
    /// `jwtd_requests_total{endpoint, issuer, outcome="ok"}`, kept on the issuer.
    pub(crate) fn ok_counter(&self, endpoint: &'static str) -> Option<&metrics::Counter> {
        let i = ENDPOINTS.iter().position(|e| *e == endpoint)?;
        Some(self.ok_counters[i].get_or_init(|| {
            metrics::counter!("jwtd_requests_total", "endpoint" => endpoint, "issuer" => self.name.clone(), "outcome" => "ok", "reason" => "")
        }))
    }
}

impl Issuer {
    /// Verifies `token` at `now`, through the verified-token cache when it is on. The cache
    /// scope is this issuer instance and the generation of its key set, so a key removed from
    /// a JWKS or the ring invalidates what was verified with the old set.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Arc<Verified>, Error> {
        let v = &self.validation;
        let Some(cache) = &self.cache else {
            return match &self.keys {
                Keys::Static(set) => jwtd_core::verify(set, v, token, now),
                Keys::Remote(r) => r.verify_at(v, token, now).await,
                Keys::Ring(ring) => jwtd_core::verify(&ring.verify_keys(), v, token, now),
            }
            .map(Arc::new);
        };
        match &self.keys {
            Keys::Static(set) => cache.verify([self.id, 0], set, v, token, now),
            Keys::Ring(ring) => {
                let generation = ring.generation();
                cache.verify([self.id, generation], &ring.verify_keys(), v, token, now)
            }
            Keys::Remote(r) => {
                let Some(snap) = r.snapshot() else {
                    return r.verify_at(v, token, now).await.map(Arc::new);
                };
                // Past lifetime plus stale-if-error, the remote source answers (and refuses).
                if snap.fetched_at.elapsed() > snap.ttl + r.stale_if_error() {
                    return r.verify_at(v, token, now).await.map(Arc::new);
                }
                match cache.verify([self.id, snap.generation], &snap.keys, v, token, now) {
                    // An unknown kid may need a refresh: the remote source decides (single
                    // flight, cooldown); the next request caches under the new generation.
                    Err(e) if e.reason() == Reason::UnknownKey => {
                        r.verify_at(v, token, now).await.map(Arc::new)
                    }
                    other => other,
                }
            }
        }
    }

    /// The verified-token cache scope in force now (see [`Issuer::verify`]).
    fn scope(&self) -> Option<[u64; 2]> {
        Some(match &self.keys {
            Keys::Static(_) => [self.id, 0],
            Keys::Ring(ring) => [self.id, ring.generation()],
            Keys::Remote(r) => [self.id, r.snapshot()?.generation],
        })
    }

    /// Drops `token` from the verified-token cache (it was found revoked).
    pub fn forget(&self, token: &str) {
        if let (Some(cache), Some(scope)) = (&self.cache, self.scope()) {
            cache.forget(scope, token);
        }
    }

    /// True when the issuer has keys.
    pub fn ready(&self) -> bool {
        match &self.keys {
            Keys::Static(_) => true,
            Keys::Ring(ring) => ring.signer().is_some(),
            Keys::Remote(r) => r.is_ready(),
        }
    }
}

/// All issuers, routed by the token's `iss`.
#[derive(Debug, Default)]
pub struct Issuers {
    /// In configuration order.
    pub list: Vec<Arc<Issuer>>,
    /// Revocations checked after every verification (and every cache hit).
    pub revocations: Option<Arc<crate::Revocations>>,
}

impl Issuers {
    /// Builds every issuer. `previous` lends remote caches whose source did not change, so a
    /// reload keeps warm keys. Must run inside a tokio runtime (remote sources start fetching).
    pub fn build(
        config: &Config,
        previous: Option<&Issuers>,
        signing: Option<&Arc<crate::Signing>>,
    ) -> Result<Issuers, String> {
        let mut list = Vec::new();
        if let Some(s) = signing {
            let mut own = self_issuer(s, config);
            own.cache = new_cache(config)?;
            list.push(Arc::new(own));
        }
        for ic in &config.issuers {
            let reuse = previous.and_then(|p| {
                p.list.iter().find_map(|old| match &old.keys {
                    Keys::Remote(r) if same_source(&old.config, ic) => Some(r.clone()),
                    _ => None,
                })
            });
            let mut issuer = build_issuer(ic, reuse)
                .map_err(|e| format!("issuer {:?}: {e}", ic.name.get_ref()))?;
            issuer.cache = new_cache(config)?;
            list.push(Arc::new(issuer));
        }
        Ok(Issuers {
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
    pub async fn verify(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Arc<Issuer>, Arc<Verified>), (Option<String>, Error)> {
        let issuer = match self.list.as_slice() {
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
                        let iss = jwtd_core::peek_issuer(token).map_err(|e| (None, e))?;
                        self.route(iss.as_deref()).map_err(|e| (None, e))?.clone()
                    }
                }
            }
        };
        let checked = match issuer.verify(token, now).await {
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
            Ok(v) => Ok((issuer, v)),
            Err(e) => Err((Some(issuer.name.clone()), e)),
        }
    }

    /// Waits until every remote issuer has keys, at most `timeout`.
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

fn new_cache(config: &Config) -> Result<Option<TokenCache>, String> {
    let c = &config.cache;
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

/// jwtd verifying the tokens it minted: its own keys, its `iss`, the offered algorithms.
fn self_issuer(s: &crate::Signing, config: &Config) -> Issuer {
    use jwtd_core::Algorithm::*;
    let cfg = config.signing.as_ref().expect("signing configured");
    let mut v = Validation::new(&[RS256, PS256, ES256, EdDSA, HS256]).issuer(s.iss.clone());
    if cfg.audiences.is_empty() {
        v = v.any_audience();
    }
    for a in &cfg.audiences {
        v = v.audience(a.clone());
    }
    let ic: IssuerConfig = toml::from_str(&format!(
        "name = \"self\"\nissuer = {}\nalgorithms = [\"ES256\"]\n",
        toml::Value::from(s.iss.clone())
    ))
    .expect("static issuer config");
    Issuer {
        name: "self".into(),
        iss: Some(s.iss.clone()),
        validation: v,
        keys: Keys::Ring(s.ring.clone()),
        headers: Vec::new(),
        forward_payload: false,
        config: ic,
        cache: None,
        id: random_id(),
        ok_counters: Default::default(),
    }
}

fn same_source(a: &IssuerConfig, b: &IssuerConfig) -> bool {
    (a.jwks_url.is_some() || a.discovery.is_some())
        && a.jwks_url == b.jwks_url
        && a.discovery == b.discovery
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

fn build_issuer(ic: &IssuerConfig, reuse: Option<RemoteKeys>) -> Result<Issuer, String> {
    let algs = &ic.algorithms;
    let keys = if let Some(r) = reuse {
        Keys::Remote(r)
    } else if ic.jwks_url.is_some() || ic.discovery.is_some() {
        let source = match (&ic.jwks_url, &ic.discovery) {
            (Some(u), _) => Source::JwksUrl(u.clone()),
            (_, Some(d)) => Source::Discovery(d.clone()),
            _ => unreachable!(),
        };
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
        Keys::Static(Arc::new(static_keys(ic)?))
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

fn static_keys(ic: &IssuerConfig) -> Result<KeySet, String> {
    let algs = &ic.algorithms;
    let secret = crate::secret(&ic.secret_env, &ic.secret_file)?;
    if let Some(secret) = secret {
        let hs: Vec<_> = algs
            .iter()
            .filter(|a| a.family() == jwtd_core::Family::Hmac)
            .collect();
        let [alg] = hs.as_slice() else {
            return Err("an HMAC secret needs exactly one HS* algorithm".into());
        };
        let key = VerifyingKey::hmac(&secret, **alg, None).map_err(|e| e.to_string())?;
        return Ok(KeySet::new().with(key));
    }
    if let Some(f) = &ic.pem_file {
        let pem = read(f)?;
        let mut fits: Vec<VerifyingKey> = algs
            .iter()
            .filter_map(|a| VerifyingKey::from_pem(&pem, Some(*a), None).ok())
            .collect();
        return match fits.len() {
            1 => Ok(KeySet::new().with(fits.pop().expect("one"))),
            0 => Err(format!("{f}: no usable key for {algs:?}")),
            _ => Err(format!(
                "{f}: the key fits several algorithms; allow only one"
            )),
        };
    }
    if let Some(f) = &ic.jwks_file {
        let jwks = Jwks::from_json(&read(f)?).map_err(|e| format!("{f}: {e}"))?;
        let (set, skipped) = KeySet::from_jwks(&jwks, algs);
        for s in skipped {
            tracing::warn!(file = %f, index = s.index, kid = ?s.kid, why = %s.why, "JWKS key skipped");
        }
        if set.is_empty() {
            return Err(format!("{f}: no usable key for {algs:?}"));
        }
        return Ok(set);
    }
    Err("no key source".into())
}
