//! # jwtd-service
//!
//! `jwtd serve`: JWT verification over HTTP for backends in any language, directly or behind a
//! proxy.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET\|POST /v1/verify` | 200 `{"issuer", "iss", "header", "claims"}` (the configured issuer's name, the token's `iss`), or 401/403 with an RFC 6750 `WWW-Authenticate`; POST also takes a JSON body `{"token": "..."}` |
//! | `GET /v1/tokens/{token}` | 200 with the verified claims, same errors; both answer browsers on the `[cors]` origins |
//! | `GET /auth` (any method) | forward-auth for nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`: 200 with identity headers |
//! | `POST /introspect` | RFC 7662 introspection, HTTP Basic client authentication |
//! | `/healthz`, `/readyz`, `/metrics` | liveness, readiness (every issuer has keys), Prometheus (404 unless the state was given a recorder's handle: [`AppState::with_metrics`]) |
//! | `POST /admin/reload` | reload the configuration file (also on SIGHUP) |
//! | `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration` | jwtd's own issuer: public keys and discovery |
//! | `POST /v1/tokens` | mint a token (admin API key) |
//!
//! Tokens never appear in logs: a request is logged with a short SHA-256 fingerprint of its
//! token.
//!
//! Metrics go through the `metrics` facade to whatever global recorder the process has.
//! [`router`] installs none: `jwtd serve` installs jwtd's Prometheus recorder with
//! [`install_metrics`] and hands it to the state; a process embedding the service keeps its
//! own recorder, which then receives jwtd's series.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod defaults;
pub mod dpop_replay;
mod ext_authz;
mod handlers;
use jwtd_gate::config::{KeySource, SecretRef};
pub use jwtd_gate::issuers;
mod mint;
mod proxy;
pub mod revocation;
mod revoke;
mod server;
mod telemetry;
pub mod tls;

pub use config::{
    Config, ConfigError, ExtAuthzSettings, ProxySettings, SigningConfig, UpstreamSettings,
};
pub use ext_authz::{ext_authz_options, serve_ext_authz, EXT_AUTHZ_MAX_MESSAGE_BYTES};
pub use handlers::{bearer_error, router};
pub use issuers::Issuers;
pub use jwtd_gate::extract::extract as extract_token;
pub use jwtd_gate::Env;
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use proxy::{check_upstream, proxy_options, serve_proxy, PROXY_MAX_HEADERS};
pub use revocation::Revocations;
pub use telemetry::{fingerprint, init_logging, install_metrics};

use jwtd_store::{AnyStore, Kek, KeyRing, PgStore, RingConfig, SqliteStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// jwtd's own issuer: the key ring and minting limits.
#[derive(Debug)]
pub struct Signing {
    /// The key ring.
    pub ring: Arc<KeyRing<AnyStore>>,
    /// `iss` of minted tokens and base of the published URLs.
    pub iss: String,
    /// Default token lifetime, seconds.
    pub default_ttl: u64,
    /// Longest token lifetime, seconds.
    pub max_ttl: u64,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl Signing {
    /// Opens (creating on first start) the store in the data directory and makes sure a key
    /// signs. Starts the rotation schedule (checked every minute). The key encryption key is
    /// the process's `JWTD_KEK` ([`Signing::open_with_env`] with [`Env::process`]), else the
    /// data directory's `kek.key`.
    pub async fn open(cfg: &SigningConfig, listen: &str) -> Result<Arc<Signing>, String> {
        Signing::open_with_env(cfg, listen, &Env::process()).await
    }

    /// [`Signing::open`] with the key encryption key from `JWTD_KEK` in `env` (else from the
    /// data directory's `kek.key`).
    pub async fn open_with_env(
        cfg: &SigningConfig,
        listen: &str,
        env: &Env,
    ) -> Result<Arc<Signing>, String> {
        let data_dir = PathBuf::from(&cfg.data_dir);
        create_private_dir(&data_dir)?;
        let kek_file = data_dir.join("kek.key");
        // A shared key ring needs the instances' one KEK: generating one here would seal this
        // instance's keys so that no other instance can open them.
        if cfg.store.is_some() && env.var_os(jwtd_store::KEK_ENV).is_none() && !kek_file.exists() {
            return Err(format!(
                "[signing] store is shared (PostgreSQL): set {} to the instances' key encryption key, \
                 or put it in {}; jwtd never generates a KEK for a shared store",
                jwtd_store::KEK_ENV,
                kek_file.display()
            ));
        }
        let from_env = env.var(jwtd_store::KEK_ENV).map(Zeroizing::new);
        let (kek, _generated) =
            Kek::load_or_create_with(from_env.as_deref().map(String::as_str), &kek_file)
                .map_err(|e| e.to_string())?;
        let store = match &cfg.store {
            Some(url) => AnyStore::Postgres(
                PgStore::open(url, cfg.store_schema.as_deref())
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => AnyStore::Sqlite(
                SqliteStore::open(&data_dir.join("keys.db"))
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let ring_cfg = ring_config(cfg);
        let max_ttl = ring_cfg.max_token_ttl.as_secs();
        let ring = Arc::new(
            KeyRing::open(store.clone(), kek, ring_cfg)
                .await
                .map_err(|e| e.to_string())?,
        );
        if let AnyStore::Postgres(pg) = store {
            tokio::spawn(follow_ring(pg, Arc::downgrade(&ring)));
        }
        let now = jwtd_core::unix_now() as i64;
        for e in ring.ensure_active(now).await.map_err(|e| e.to_string())? {
            log_ring_event(&e);
        }
        let weak = Arc::downgrade(&ring);
        tokio::spawn(async move {
            loop {
                let Some(ring) = weak.upgrade() else { return };
                match ring.tick(jwtd_core::unix_now() as i64).await {
                    Ok(events) => {
                        for e in events {
                            log_ring_event(&e);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "key ring schedule failed"),
                }
                drop(ring);
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        });
        Ok(Arc::new(Signing {
            ring,
            iss: own_issuer(cfg, listen),
            default_ttl: default_ttl(cfg),
            max_ttl,
            data_dir,
        }))
    }

    /// The key ring as it is, for tools that decide without serving (`jwtd rules test`):
    /// nothing is created or changed (no data directory, KEK, store or key, not even a due
    /// activation) and no schedule runs. The KEK (`JWTD_KEK` or `<data_dir>/kek.key`) and the
    /// store must exist, else an error says so; the store is opened read-only. `JWTD_KEK` is
    /// read from `env`.
    pub async fn open_existing(
        cfg: &SigningConfig,
        listen: &str,
        env: &Env,
    ) -> Result<Arc<Signing>, String> {
        let data_dir = PathBuf::from(&cfg.data_dir);
        let kek_file = data_dir.join("kek.key");
        let never_started = |what: String| {
            format!(
                "[signing]: {what}: jwtd's key ring does not exist here yet (`jwtd serve` creates \
                 it at its first start; this command creates nothing)"
            )
        };
        let from_env = env.var(jwtd_store::KEK_ENV).map(Zeroizing::new);
        if from_env.is_none() && !kek_file.is_file() {
            return Err(never_started(format!(
                "no key encryption key ({} is unset and {} does not exist)",
                jwtd_store::KEK_ENV,
                kek_file.display()
            )));
        }
        let (kek, _) = Kek::load_or_create_with(from_env.as_deref().map(String::as_str), &kek_file)
            .map_err(|e| e.to_string())?;
        let store = match &cfg.store {
            Some(url) => AnyStore::Postgres(
                PgStore::open_read_only(url, cfg.store_schema.as_deref())
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => {
                let db = data_dir.join("keys.db");
                if !db.is_file() {
                    return Err(never_started(format!("{} does not exist", db.display())));
                }
                AnyStore::Sqlite(
                    SqliteStore::open_read_only(&db)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        let ring_cfg = ring_config(cfg);
        let max_ttl = ring_cfg.max_token_ttl.as_secs();
        let ring = KeyRing::open(store, kek, ring_cfg)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Signing {
            ring: Arc::new(ring),
            iss: own_issuer(cfg, listen),
            default_ttl: default_ttl(cfg),
            max_ttl,
            data_dir,
        }))
    }

    /// `Cache-Control` max-age for the JWKS (see [`jwks_max_age`]).
    pub fn jwks_max_age(&self) -> u64 {
        jwks_max_age(self.ring.config())
    }
}

/// Logs what the key ring did as a sentence, with the kid (and dates in RFC 3339) as fields.
fn log_ring_event(e: &jwtd_store::RingEvent) {
    use jwtd_store::{KeyState, RingEvent};
    let date = |secs: i64| {
        let when = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        humantime::format_rfc3339_seconds(when).to_string()
    };
    match e {
        RingEvent::Created(kid, KeyState::Pending) => tracing::info!(
            kid = %kid,
            "key ring: created a key; published now, it signs once the publish lead ends"
        ),
        RingEvent::Created(kid, _) => tracing::info!(
            kid = %kid,
            "key ring: created a key that signs now (verifiers learn it when they refetch the JWKS)"
        ),
        RingEvent::Activated(kid) => tracing::info!(kid = %kid, "key ring: the key signs now"),
        RingEvent::ActivatedEarly(kid, left) => tracing::warn!(
            kid = %kid,
            lead_skipped_seconds = left,
            "key ring: the key signs before its publish lead ended; verifiers that cached the \
             JWKS before it was published may refuse its tokens until they refetch"
        ),
        RingEvent::Retiring(kid, until) => tracing::info!(
            kid = %kid,
            published_until = %date(*until),
            "key ring: the key no longer signs; it stays published until its tokens expired"
        ),
        RingEvent::Retired(kid) => {
            tracing::info!(kid = %kid, "key ring: the key is retired (unpublished)")
        }
        RingEvent::Removed(kid) => {
            tracing::warn!(kid = %kid, "key ring: the key was removed and unpublished")
        }
        RingEvent::AlgorithmChanged(from, to) => tracing::warn!(
            from = %from,
            to = %to,
            "key ring: the algorithm changes; verifiers pinned to the old one will refuse the \
             tokens the new key signs"
        ),
    }
}

/// The key ring policy of a `[signing]` section: what `jwtd serve` and the `jwtd keys` and
/// `jwtd token` commands (with `--config`) all use. Unset members take the defaults of
/// [`RingConfig::default`] (publish lead 1 h, max ttl 1 h, grace 10 min, rotation every 90
/// days); `rotate_every = 0` turns scheduled rotation off.
pub fn ring_config(cfg: &SigningConfig) -> RingConfig {
    let d = RingConfig::default();
    let or = |s: Option<config::Seconds>, d: Duration| s.map_or(d, |s| Duration::from_secs(s.0));
    RingConfig {
        alg: cfg.algorithm,
        rsa_bits: cfg.rsa_bits,
        publish_lead: or(cfg.publish_lead, d.publish_lead),
        max_token_ttl: or(cfg.max_ttl, d.max_token_ttl),
        grace: or(cfg.grace, d.grace),
        rotate_every: match cfg.rotate_every {
            Some(config::Seconds(0)) => None,
            Some(config::Seconds(s)) => Some(Duration::from_secs(s)),
            None => d.rotate_every,
        },
    }
}

/// The `iss` of jwtd's own tokens: `[signing] issuer`, else `http://<listen>`, without a
/// trailing `/`.
pub fn own_issuer(cfg: &SigningConfig, listen: &str) -> String {
    cfg.issuer
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"))
        .trim_end_matches('/')
        .to_owned()
}

/// Lifetime of a minted token when the request names none: `[signing] default_ttl` (default
/// 10 min), at most the max ttl.
pub fn default_ttl(cfg: &SigningConfig) -> u64 {
    cfg.default_ttl
        .map_or(defaults::DEFAULT_TTL, |s| s.0)
        .min(ring_config(cfg).max_token_ttl.as_secs())
}

/// `Cache-Control` max-age of the JWKS for a ring policy: half the publish lead (so caches see
/// a pending key well before it signs), at most a day. Never more than the publish lead: a new
/// key is published at least one max-age before it signs.
pub fn jwks_max_age(cfg: &RingConfig) -> u64 {
    (cfg.publish_lead.as_secs() / 2).min(86_400)
}

/// Re-reads the shared key ring whenever another instance changes it (PostgreSQL `NOTIFY`),
/// and after every reconnection; the minute tick catches anything else.
async fn follow_ring(pg: PgStore, ring: std::sync::Weak<KeyRing<AnyStore>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if ring.strong_count() == 0 {
            return;
        }
        let mut watch = match pg.watch().await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "key ring listener cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let change = tokio::time::timeout(Duration::from_secs(30), watch.next()).await;
            let Some(r) = ring.upgrade() else { return };
            match change {
                Err(_) | Ok(Ok(jwtd_store::Change::Revocations)) => continue,
                Ok(Ok(_)) => {
                    if let Err(e) = r.reload().await {
                        tracing::warn!(error = %e, "key ring reload failed");
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "key ring listener lost the store");
                    break;
                }
            }
        }
    }
}

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn create_private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// What the running service reads on every request; replaced whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration.
    pub config: Config,
    /// The decision engine built from it: issuers, rules, token sources.
    pub engine: jwtd_gate::Engine,
    /// The addresses whose forwarded-request headers `/auth` believes.
    pub trusted_proxies: config::TrustedProxies,
    /// jwtd's own issuer, when signing is configured.
    pub signing: Option<Arc<Signing>>,
    /// Introspection client secret, when introspection is on.
    pub introspection_secret: Option<Zeroizing<Vec<u8>>>,
    /// Admin API key, when the admin API is on.
    pub admin_key: Option<Zeroizing<Vec<u8>>>,
    /// Revocation, when configured (also reachable from `issuers`).
    pub revocations: Option<Arc<Revocations>>,
    /// The shared DPoP `jti` table (`[dpop_replay]`), when configured and serving (also
    /// given to the engine's `replay_store = "shared"` issuers).
    pub dpop_replay: Option<jwtd_gate::dpop::SharedReplay>,
    /// `/auth`'s decisions by rule and reason (counted when there are rules).
    pub decisions: telemetry::DecisionCounters,
}

/// Shared service state.
#[derive(Debug)]
pub struct AppState {
    /// Read on every request without a lock; replaced whole on reload.
    current: arc_swap::ArcSwap<Runtime>,
    config_path: Option<PathBuf>,
    reload_lock: tokio::sync::Mutex<()>,
    /// What `/metrics` renders; none: 404.
    metrics: Option<PrometheusHandle>,
    /// The request counters and histograms, on the recorder installed when the state was made.
    series: handlers::RequestSeries,
}

/// Shortest admin API key or introspection client secret accepted, in bytes.
pub const MIN_API_SECRET_LEN: usize = 16;

/// Reads every secret and key file a configuration names (admin key, introspection secret,
/// HMAC secrets, PEM, JWKS and CA files) and checks it as `jwtd serve` would at start, without
/// touching the network or any store: one message per problem, with the key it concerns.
/// Variables are read from the environment the configuration was read in ([`Config::env`]).
/// [`Config::load`] runs this (so `jwtd serve`, `jwtd config check` and a reload do), and
/// reports each problem on its key's line. An issuer without exactly one key source, or without
/// algorithms, is skipped: [`Config::parse`] refuses it already.
pub fn check_inputs(config: &Config) -> Vec<(config::Place, String)> {
    use config::Place;
    let mut errors = Vec::new();
    // A missing or doubled secret source is refused by [`Config::parse`] already.
    if let Some(Ok(r)) = config.admin.as_ref().map(config::Admin::api_key) {
        if let Err(e) = r.resolve(&config.env, "admin api key", MIN_API_SECRET_LEN) {
            let at = r.key("api_key_env", "api_key_file");
            errors.push((Place::Key("admin", at), e));
        }
    }
    if let Some(Ok(r)) = config
        .introspection
        .as_ref()
        .map(config::Introspection::client_secret)
    {
        if let Err(e) = r.resolve(
            &config.env,
            "introspection client secret",
            MIN_API_SECRET_LEN,
        ) {
            let at = r.key("client_secret_env", "client_secret_file");
            errors.push((Place::Key("introspection", at), e));
        }
    }
    for ic in &config.issuers {
        let Ok(source) = ic.key_source() else {
            continue;
        };
        if ic.algorithms.is_empty() {
            continue;
        }
        let at = |k| Place::Issuer(ic.name.span().start, k);
        let name = ic.name.get_ref();
        // The CA bundle on its own line, then the key source on its own.
        let mut keys_only = ic.clone();
        if let Some(f) = keys_only.ca_file.take() {
            if let Err(e) = std::fs::read(&f) {
                errors.push((
                    at("ca_file"),
                    format!("issuer {name:?}: cannot read {f}: {e}"),
                ));
            }
        }
        if let Err(e) = issuers::check_static_keys_with_env(&keys_only, &config.env) {
            errors.push((at(source.key()), format!("issuer {name:?}: {e}")));
        }
    }
    errors
}

/// How a [`Runtime`] treats the state it needs (jwtd's key ring, the revocation store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// `jwtd serve`: create what is missing, make sure a key signs, run the schedules.
    Serve,
    /// A tool deciding without serving: open what exists, read-only; create, change and
    /// schedule nothing.
    ReadOnly,
}

impl Runtime {
    /// Builds the run-time state from a configuration (inside a tokio runtime). Remote key
    /// caches and the key ring of `previous` are reused where their settings did not change.
    /// Secrets named by variable and `JWTD_KEK` are read from [`Config::env`], the environment
    /// the configuration was read in.
    pub async fn build(config: Config, previous: Option<&Runtime>) -> Result<Runtime, String> {
        Runtime::build_as(config, previous, Access::Serve).await
    }

    /// The runtime `jwtd serve` would build from `config` (the same issuers, engine, rules
    /// and token sources, through the same code), for tools that decide without serving
    /// (`jwtd rules test`): nothing is bound, created or changed. jwtd's key ring and the
    /// revocation store are opened read-only as they are ([`Signing::open_existing`],
    /// [`Revocations::load`]) and must exist, else an error says so; no key is created or
    /// activated, nothing is purged, no schedule runs. Remote key sources start fetching as
    /// they do for `jwtd serve` (inside a tokio runtime).
    pub async fn build_read_only(config: Config) -> Result<Runtime, String> {
        Runtime::build_as(config, None, Access::ReadOnly).await
    }

    async fn build_as(
        config: Config,
        previous: Option<&Runtime>,
        access: Access,
    ) -> Result<Runtime, String> {
        // Secrets first: a bad one refuses the configuration before any store, KEK or key is
        // created or touched.
        let introspection_secret = match &config.introspection {
            Some(i) => Some(i.client_secret()?.resolve(
                &config.env,
                "introspection client secret",
                MIN_API_SECRET_LEN,
            )?),
            None => None,
        };
        let admin_key = match &config.admin {
            Some(a) => Some(a.api_key()?.resolve(
                &config.env,
                "admin api key",
                MIN_API_SECRET_LEN,
            )?),
            None => None,
        };
        let signing = match &config.signing {
            None => None,
            Some(cfg) => {
                let reuse = previous
                    .and_then(|p| p.signing.clone())
                    .filter(|_| previous.and_then(|p| p.config.signing.as_ref()) == Some(cfg));
                Some(match (reuse, access) {
                    (Some(s), _) => s,
                    (None, Access::Serve) => {
                        Signing::open_with_env(cfg, &config.listen, &config.env).await?
                    }
                    (None, Access::ReadOnly) => {
                        Signing::open_existing(cfg, &config.listen, &config.env).await?
                    }
                })
            }
        };
        let revocations = match &config.revocation {
            None => None,
            Some(cfg) => {
                let reuse = previous
                    .and_then(|p| p.revocations.clone())
                    .filter(|_| previous.and_then(|p| p.config.revocation.as_ref()) == Some(cfg));
                Some(match reuse {
                    Some(r) => r,
                    None => open_revocations(cfg, &config, signing.as_deref(), access).await?,
                })
            }
        };
        let own = signing.as_ref().map(|s| self_issuer(s, &config));
        let mut issuers = Issuers::build_with_env(
            &config.issuers,
            &config.cache,
            previous.map(|p| &p.engine.issuers),
            own,
            &config.env,
        )?;
        issuers.revocations = revocations
            .clone()
            .map(|r| r as Arc<dyn jwtd_gate::issuers::RevocationCheck>);
        let mut engine = jwtd_gate::Engine::with_rules_in(
            issuers,
            &config.rules,
            &config.rule,
            config.tokens.clone(),
            Some(&config.text.0),
        )?
        .with_resources(&config.resource, Some(&config.text.0))?
        .with_client_certificates(config.forwarded.compile()?);
        // A reload keeps the DPoP jti's seen: a proof must not become replayable by it.
        if let Some(p) = previous {
            engine.dpop.adopt_replay_caches(&p.engine.dpop);
        }
        // `jwtd rules test` (read-only) writes nothing: its issuers keep the memory cache.
        let dpop_replay = match (&config.dpop_replay, access) {
            (Some(cfg), Access::Serve) => {
                let reuse = previous
                    .and_then(|p| p.dpop_replay.clone())
                    .filter(|_| previous.and_then(|p| p.config.dpop_replay.as_ref()) == Some(cfg));
                Some(match reuse {
                    Some(r) => r,
                    None => dpop_replay::open(cfg).await?,
                })
            }
            _ => None,
        };
        if let Some(shared) = &dpop_replay {
            engine.dpop.with_shared_replay(shared);
        }
        if access == Access::Serve {
            if let Some(name) = engine.dpop.unwired_shared() {
                return Err(format!(
                    "issuer {name:?}: [issuer.dpop] replay_store = \"shared\" needs a \
                     [dpop_replay] table naming the PostgreSQL store the instances share"
                ));
            }
        }
        Ok(Runtime {
            decisions: telemetry::DecisionCounters::new(engine.rules.len()),
            trusted_proxies: config::TrustedProxies::parse(&config.trusted_proxies)?,
            config,
            engine,
            signing,
            introspection_secret,
            admin_key,
            revocations,
            dpop_replay,
        })
    }
}

/// jwtd's own key ring as the engine sees it: keys and generation from one view, ready while a
/// key signs.
#[derive(Debug)]
struct RingKeys(Arc<KeyRing<AnyStore>>);

impl jwtd_gate::issuers::KeyView for RingKeys {
    fn verify_view(&self) -> (Arc<jwtd_core::KeySet>, u64) {
        self.0.verify_view()
    }
    fn generation(&self) -> u64 {
        self.0.generation()
    }
    fn ready(&self) -> bool {
        self.0.signer().is_some()
    }
    fn signing_kid(&self) -> Option<String> {
        self.0.signer().and_then(|s| s.kid().map(str::to_owned))
    }
}

/// jwtd verifying the tokens it minted: its own keys, its `iss`, the offered algorithms, the
/// `[signing]` audiences.
fn self_issuer(s: &Signing, config: &Config) -> issuers::Issuer {
    use jwtd_core::Algorithm::*;
    let mut v =
        jwtd_core::Validation::new(&[RS256, PS256, ES256, EdDSA, HS256]).issuer(s.iss.clone());
    if let Some(cfg) = &config.signing {
        // Strict by default: only the configured audiences (none: only tokens without `aud`).
        if cfg.any_audience {
            tracing::warn!(
                iss = %s.iss,
                "[signing] any_audience = true: jwtd accepts its own tokens whatever their audience, \
                 including tokens minted for partners"
            );
            v = v.any_audience();
        }
        for a in &cfg.audiences {
            v = v.audience(a.clone());
        }
    }
    issuers::Issuer::over("self", &s.iss, v, Arc::new(RingKeys(s.ring.clone())))
}

/// Logs what is about to run: one line per issuer (name, `iss`, key source with any URL
/// credentials redacted, whether it can verify now), jwtd's own issuer when signing, then the
/// address and the endpoints. `jwtd serve` calls it once the port is bound and the state built.
pub fn log_startup(runtime: &Runtime, listen: &str) {
    for i in &runtime.engine.issuers.list {
        let ic = &i.config;
        let source = match &i.keys {
            issuers::Keys::Remote(r) => r.source_redacted(),
            issuers::Keys::Ring(_) => "jwtd's own key ring ([signing])".to_owned(),
            issuers::Keys::Static(_) => match &ic.key_source() {
                Ok(
                    k @ (KeySource::JwksFile(f)
                    | KeySource::PemFile(f)
                    | KeySource::Secret(SecretRef::File(f) | SecretRef::Env(f))),
                ) => format!("{} {f}", k.key()),
                _ => "static keys".to_owned(),
            },
        };
        let ready = i.ready();
        tracing::info!(
            issuer = %i.name,
            iss = %i.iss.as_deref().unwrap_or("(tokens without iss)"),
            source = %source,
            ready,
            "{}",
            if ready {
                "issuer ready"
            } else {
                "issuer not ready yet: its keys are being fetched (see GET /admin/status)"
            }
        );
    }
    if let Some(s) = &runtime.signing {
        tracing::info!(
            iss = %s.iss,
            signing_kid = s.ring.signer().and_then(|k| k.kid().map(str::to_owned)).unwrap_or_default(),
            jwks = %format!("http://{listen}/.well-known/jwks.json"),
            "signing: jwtd issues tokens"
        );
    }
    log_rule_warnings(runtime);
    let c = &runtime.config;
    let mut endpoints = vec!["/v1/verify", "/v1/tokens/{token}", "/auth"];
    if c.introspection.is_some() {
        endpoints.push("/introspect");
    }
    endpoints.extend(["/healthz", "/readyz", "/metrics"]);
    if runtime.signing.is_some() {
        endpoints.extend([
            "/.well-known/jwks.json",
            "/.well-known/openid-configuration",
        ]);
    }
    if c.admin.is_some() {
        endpoints.extend(["/admin/reload", "/admin/status"]);
        if runtime.signing.is_some() {
            endpoints.push("POST /v1/tokens");
        }
        if runtime.revocations.is_some() {
            endpoints.push("/v1/revocations");
        }
    }
    tracing::info!(
        listen = %format!(
            "{}://{listen}",
            if c.tls.is_some() { "https" } else { "http" }
        ),
        endpoints = %endpoints.join(" "),
        "listening"
    );
}

/// Logs each warning about the rules in force ([`jwtd_gate::rules::RuleSet::lint`], as `jwtd
/// config check` prints them): at start and after a reload.
fn log_rule_warnings(runtime: &Runtime) {
    for w in runtime.engine.rules.lint() {
        tracing::warn!("rules: {w}");
    }
}

/// Opens the revocation store (sharing the key ring's store when it is the same database) and
/// loads the list.
async fn open_revocations(
    cfg: &config::RevocationSettings,
    config: &Config,
    signing: Option<&Signing>,
    access: Access,
) -> Result<Arc<Revocations>, String> {
    let signing_cfg = config.signing.as_ref();
    let same_as_signing = match (&cfg.store, signing_cfg) {
        (Some(url), Some(s)) => s.store.as_ref() == Some(url) && s.store_schema == cfg.store_schema,
        (None, Some(s)) => {
            s.store.is_none() && cfg.data_dir.as_ref().map_or(true, |d| *d == s.data_dir)
        }
        _ => false,
    };
    let store = match (signing, same_as_signing) {
        (Some(s), true) => s.ring.store().clone(),
        _ if access == Access::ReadOnly => match &cfg.store {
            Some(url) => AnyStore::Postgres(
                PgStore::open_read_only(url, cfg.store_schema.as_deref())
                    .await
                    .map_err(|e| format!("revocation store: {e}"))?,
            ),
            None => {
                let dir = PathBuf::from(cfg.data_dir.as_deref().unwrap_or(defaults::DATA_DIR));
                let db = dir.join("keys.db");
                if !db.is_file() {
                    return Err(format!(
                        "[revocation]: {} does not exist: the revocation store was never \
                         created here (`jwtd serve` creates it at its first start; this command \
                         creates nothing)",
                        db.display()
                    ));
                }
                AnyStore::Sqlite(
                    SqliteStore::open_read_only(&db)
                        .await
                        .map_err(|e| format!("revocation store: {e}"))?,
                )
            }
        },
        _ => match &cfg.store {
            Some(url) => AnyStore::Postgres(
                PgStore::open(url, cfg.store_schema.as_deref())
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => {
                let dir = PathBuf::from(cfg.data_dir.as_deref().unwrap_or(defaults::DATA_DIR));
                create_private_dir(&dir)?;
                AnyStore::Sqlite(
                    SqliteStore::open(&dir.join("keys.db"))
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
        },
    };
    let limits = revocation::Limits::from_settings(cfg);
    match access {
        Access::Serve => Revocations::start(store, limits).await,
        Access::ReadOnly => Revocations::load(store, limits).await,
    }
    .map_err(|e| format!("revocation store: {e}"))
}

impl AppState {
    /// State serving `runtime`; `config_path` is re-read on reload. It exports no metrics:
    /// `/metrics` answers 404 (jwtd's series still go to the process's recorder, if any).
    pub fn new(runtime: Runtime, config_path: Option<PathBuf>) -> Arc<AppState> {
        AppState::build(runtime, config_path, None)
    }

    /// [`AppState::new`], with `/metrics` rendering `metrics` (from [`install_metrics`]).
    pub fn with_metrics(
        runtime: Runtime,
        config_path: Option<PathBuf>,
        metrics: PrometheusHandle,
    ) -> Arc<AppState> {
        AppState::build(runtime, config_path, Some(metrics))
    }

    fn build(
        runtime: Runtime,
        config_path: Option<PathBuf>,
        metrics: Option<PrometheusHandle>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            current: arc_swap::ArcSwap::from_pointee(runtime),
            config_path,
            reload_lock: tokio::sync::Mutex::new(()),
            metrics,
            series: handlers::RequestSeries::new(),
        })
    }

    /// The Prometheus handle `/metrics` renders, when this state exports metrics.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.metrics.as_ref()
    }

    /// True when the service was started with a configuration file (a reload re-reads it).
    pub fn has_config_file(&self) -> bool {
        self.config_path.is_some()
    }

    /// The runtime in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// The runtime in force, borrowed for one request: no reference-count traffic shared
    /// between threads (a reload during the request still lets it finish on the old one).
    pub fn runtime_guard(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.current.load()
    }

    /// Re-reads the configuration file and swaps it in once its remote keys are ready (at most
    /// 10 s); requests in flight finish on the old one. An invalid file changes nothing.
    /// `${VAR}` values, secrets and key files are read again (variables from the environment
    /// the running configuration was read in, [`Config::env`]); remote key sources restart only
    /// when their settings changed. `listen`, `[server]`, `[tls]`, `[ext_authz]`, `[proxy]` (and
    /// `[proxy.tls]`) and `[upstream]` are
    /// read at start only: a change is logged as a warning and waits for the next start.
    pub async fn reload(&self) -> Result<(), String> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let Some(path) = &self.config_path else {
            return Err("no configuration file to reload (started without --config)".into());
        };
        let old = self.runtime();
        // The environment the running configuration was read in.
        let config = Config::load_with_env(path, &old.config.env).map_err(|e| e.to_string())?;
        if config.listen != old.config.listen {
            tracing::warn!(
                running = %old.config.listen,
                configured = %config.listen,
                "listen changes take effect at the next start; still listening on the running address"
            );
        }
        if config.proxy != old.config.proxy || config.upstream != old.config.upstream {
            tracing::warn!(
                "[proxy] and [upstream] changes take effect at the next start; the running proxy stays"
            );
        }
        if config.tls != old.config.tls {
            tracing::warn!(
                "[tls] changes take effect at the next start; the running listener keeps its certificate and client CAs"
            );
        }
        if config.ext_authz != old.config.ext_authz {
            tracing::warn!(
                "[ext_authz] changes take effect at the next start; the running listener stays"
            );
        }
        if config.server != old.config.server {
            tracing::warn!(
                "[server] changes take effect at the next start; the running limits stay"
            );
        }
        let new = Runtime::build(config, Some(&old)).await?;
        if !new.engine.issuers.wait_ready(Duration::from_secs(10)).await {
            tracing::warn!("reloaded configuration: some issuers have no keys yet");
        }
        log_rule_warnings(&new);
        self.current.store(Arc::new(new));
        tracing::info!(path = %path.display(), "configuration reloaded");
        Ok(())
    }
}

/// Serves until SIGTERM or Ctrl-C, then stops accepting, lets requests in progress finish
/// for at most `[server] shutdown_timeout` and drops the connections still open. SIGHUP
/// reloads the configuration. The connection and request limits are the `[server]` settings
/// of the configuration in force at start.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(state, listener, termination()).await
}

/// [`serve`] until `shutdown` resolves instead of a signal (SIGHUP still reloads). With a
/// `[tls]` table the listener speaks TLS: its files are read here (an error when they
/// cannot be used); `jwtd serve` reads them before it announces anything ([`serve_tls`]).
pub async fn serve_until(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let tls = tls::api_config(&state.runtime().config).map_err(std::io::Error::other)?;
    serve_tls_until(state, listener, tls, shutdown).await
}

/// [`serve`] with the TLS configuration `tls` already loaded ([`tls::api_config`]; `None`:
/// cleartext), until SIGTERM or Ctrl-C.
pub async fn serve_tls(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    serve_tls_until(state, listener, tls, termination()).await
}

/// [`serve_tls`] until `shutdown` resolves.
pub async fn serve_tls_until(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let s = state.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                if let Err(e) = s.reload().await {
                    tracing::error!(error = %e, "reload failed; keeping the running configuration");
                }
            }
        });
    }
    let app = router(state.clone());
    server::run(state, listener, app, tls, shutdown).await
}

/// SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// An embedding process with its own metrics recorder. This is the only test of this crate's
/// unit-test process that touches the global recorder (the integration tests, each a process of
/// their own, install jwtd's): keep it so.
#[cfg(test)]
mod embedded {
    use super::*;
    use std::sync::Mutex;

    /// The series registered with the embedder's recorder.
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Embedder;

    impl Embedder {
        fn seen(key: &metrics::Key) {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let series = format!("{}{{{}}}", key.name(), labels.join(","));
            SEEN.lock().unwrap().push(series);
        }
    }

    impl metrics::Recorder for Embedder {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            Embedder::seen(key);
            metrics::Counter::noop()
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            Embedder::seen(key);
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            Embedder::seen(key);
            metrics::Histogram::noop()
        }
    }

    /// The router is built and serves beside the embedder's recorder (it used to panic
    /// installing its own): jwtd's series go to that recorder, `/metrics` answers 404, and
    /// [`install_metrics`] declines without touching it.
    #[tokio::test]
    async fn the_router_serves_beside_a_recorder_of_the_embedding_process() {
        metrics::set_global_recorder(Embedder).expect("the only recorder of this process");
        let e = install_metrics().unwrap_err();
        assert!(e.contains("another metrics recorder"), "{e}");

        let mut rnd = [0u8; 8];
        jwtd_core::fill_random(&mut rnd).unwrap();
        let dir =
            std::env::temp_dir().join(format!("jwtd-embedded-{}", jwtd_core::b64::encode(rnd)));
        std::fs::create_dir_all(&dir).unwrap();
        let key = jwtd_core::SigningKey::generate(jwtd_core::Algorithm::ES256).unwrap();
        let jwks = jwtd_core::Jwks::from_keys(key.public_jwk());
        let jwks_file = dir.join("jwks.json");
        std::fs::write(&jwks_file, serde_json::to_string(&jwks).unwrap()).unwrap();
        let text = format!(
            "[[issuer]]\nname = \"idp\"\nissuer = \"https://idp.test\"\njwks_file = \"{}\"\n\
             algorithms = [\"ES256\"]\nany_audience = true\n",
            jwks_file.display()
        );
        let config = Config::parse(&text, "test").unwrap();
        let state = AppState::new(Runtime::build(config, None).await.unwrap(), None);
        assert!(state.metrics().is_none());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_until(state, l, async {
            let _ = stopped.await;
        }));

        let c = reqwest::Client::new();
        let r = c.get(format!("{base}/v1/verify")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = c.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.text().await.unwrap(),
            "metrics are not exported by this process\n"
        );
        let seen = SEEN.lock().unwrap().clone();
        for series in [
            "jwtd_requests_total{endpoint=verify,issuer=-,outcome=rejected,reason=missing_token}",
            "jwtd_request_duration_seconds{endpoint=verify}",
            "jwtd_connections_open{}",
        ] {
            assert!(seen.iter().any(|s| s == series), "{series} not in {seen:?}");
        }
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing(extra: &str) -> SigningConfig {
        toml::from_str(extra).unwrap()
    }

    #[test]
    fn ring_config_defaults_come_from_the_ring_and_the_lead_covers_the_max_age() {
        let d = RingConfig::default();
        let c = ring_config(&signing(""));
        assert_eq!(c.alg, d.alg);
        assert_eq!(c.rsa_bits, d.rsa_bits);
        assert_eq!(c.publish_lead, d.publish_lead);
        assert_eq!(c.max_token_ttl, d.max_token_ttl);
        assert_eq!(c.grace, d.grace);
        assert_eq!(c.rotate_every, d.rotate_every);
        assert_eq!(default_ttl(&signing("")), 600);
        assert_eq!(default_ttl(&signing("max_ttl = \"5m\"")), 300);
        let c = ring_config(&signing(
            "algorithm = \"RS256\"\npublish_lead = \"1d\"\nrotate_every = 0",
        ));
        assert_eq!(c.alg, jwtd_core::Algorithm::RS256);
        assert_eq!(c.rotate_every, None);
        assert_eq!(jwks_max_age(&c), 43_200);
        for lead in [0, 1, 3600, 86_400, 30 * 86_400] {
            let c = RingConfig {
                publish_lead: Duration::from_secs(lead),
                ..RingConfig::default()
            };
            assert!(jwks_max_age(&c) <= lead);
        }
    }
}
