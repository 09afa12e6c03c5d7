//! The engine's part of a jwtd configuration file: `[tokens]`, `[cache]` and the `[[issuer]]`
//! tables (and, with the rule engine, `[rules]` and `[[rule]]`). `jwtd serve` reads the same
//! types as part of its whole file; the tower layer reads only these sections.

use crate::env::Env;
use jwtd_core::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// Header names `[issuer.headers]` cannot map a claim to: jwtd's own identity headers and
/// request id, and headers that carry credentials or frame the answer.
pub const RESERVED_HEADERS: [&str; 15] = [
    "x-auth-subject",
    "x-auth-issuer",
    "x-auth-payload",
    "x-auth-cert-thumbprint",
    "x-auth-jkt",
    "dpop",
    "x-request-id",
    "authorization",
    "cookie",
    "set-cookie",
    "www-authenticate",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
];

/// The default of every engine setting a configuration may leave out, each defined once here:
/// the serde defaults, the `Default` impls and the doc comments all refer to these, and a test
/// checks that docs/configuration.md states the same values.
pub mod defaults {
    use std::time::Duration;

    /// `[cache] enabled`: the verified-token cache is on.
    pub const CACHE_ENABLED: bool = true;
    /// `[cache] max_entries`: most entries per issuer.
    pub const CACHE_MAX_ENTRIES: usize = 20_000;
    /// `[cache] max_bytes`: most bytes per issuer (48 MiB).
    pub const CACHE_MAX_BYTES: u64 = 48 * 1024 * 1024;
    /// `[tokens] bearer`: `Authorization: Bearer` is read.
    pub const TOKENS_BEARER: bool = true;
    /// `[[issuer]] leeway`, in seconds: the clock skew allowed.
    pub const LEEWAY: u64 = jwtd_core::DEFAULT_LEEWAY;

    /// `[[issuer]] cooldown` (remote keys): the minimum time between unknown-kid fetches, as
    /// jwtd-remote defines it.
    pub fn cooldown() -> Duration {
        jwtd_remote::CacheConfig::default().cooldown
    }

    /// `[[issuer]] stale_if_error` (remote keys): how long the last good set serves past its
    /// lifetime when refreshes fail, as jwtd-remote defines it.
    pub fn stale_if_error() -> Duration {
        jwtd_remote::CacheConfig::default().stale_if_error
    }

    /// `[issuer.dpop] nonce.rotate`, in seconds: the epoch of a server nonce.
    pub const DPOP_NONCE_ROTATE: u64 = 300;
    /// `[issuer.dpop] nonce.required`.
    pub const DPOP_NONCE_REQUIRED: bool = true;

    pub(super) fn nonce_required() -> bool {
        DPOP_NONCE_REQUIRED
    }

    /// `[issuer.dpop] replay_max_entries`: most `jti`s the replay cache holds per issuer
    /// (measured: about 3.3 MiB when full, see docs/dpop.md).
    pub const DPOP_REPLAY_MAX_ENTRIES: usize = 100_000;

    pub(super) fn dpop_replay_max_entries() -> usize {
        DPOP_REPLAY_MAX_ENTRIES
    }

    /// `[issuer.dpop] replay_max_per_key`: most live `jti`s one proof key (`jkt`) may hold in
    /// the replay cache: about 21 proofs a second, sustained, with the default 60 s `max_age`
    /// and 5 s leeway (a 70 s window); under a quarter of a shard's share of the default
    /// `replay_max_entries` (1562), so four keys at their cap cannot fill a shard.
    pub const DPOP_REPLAY_MAX_PER_KEY: usize = 1500;

    pub(super) fn dpop_replay_max_per_key() -> usize {
        DPOP_REPLAY_MAX_PER_KEY
    }
    pub(super) fn cache_enabled() -> bool {
        CACHE_ENABLED
    }
    pub(super) fn cache_max_entries() -> usize {
        CACHE_MAX_ENTRIES
    }
    pub(super) fn cache_max_bytes() -> u64 {
        CACHE_MAX_BYTES
    }
    pub(super) fn tokens_bearer() -> bool {
        TOKENS_BEARER
    }
}

/// Verified-token cache settings, per issuer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// On by default ([`defaults::CACHE_ENABLED`]).
    #[serde(default = "defaults::cache_enabled")]
    pub enabled: bool,
    /// Most entries per issuer (default 20,000: [`defaults::CACHE_MAX_ENTRIES`]).
    #[serde(default = "defaults::cache_max_entries")]
    pub max_entries: usize,
    /// Most bytes per issuer (default 48 MiB: [`defaults::CACHE_MAX_BYTES`]): the heap the
    /// entries hold (tokens, their claims and headers, room for the identity headers rendered
    /// for them, and 672 bytes each for the table and the shared value).
    #[serde(default = "defaults::cache_max_bytes")]
    pub max_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: defaults::CACHE_ENABLED,
            max_entries: defaults::CACHE_MAX_ENTRIES,
            max_bytes: defaults::CACHE_MAX_BYTES,
        }
    }
}

/// Token sources, tried in this order: `Authorization: Bearer`, the cookie, the query parameter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSources {
    /// Read `Authorization: Bearer` (default true: [`defaults::TOKENS_BEARER`]).
    #[serde(default = "defaults::tokens_bearer")]
    pub bearer: bool,
    /// Read this cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Read this query parameter (off by default: URLs end up in logs).
    #[serde(default)]
    pub query: Option<String>,
}

impl Default for TokenSources {
    fn default() -> Self {
        TokenSources {
            bearer: defaults::TOKENS_BEARER,
            cookie: None,
            query: None,
        }
    }
}

/// The largest clock-skew allowance an issuer may set, in seconds.
pub const MAX_LEEWAY: u64 = 600;

/// The longest duration a configuration takes (100 years); longer values are clamped to it.
pub const MAX_SECONDS: u64 = 100 * 365 * 86_400;

/// Seconds, written as an integer or a duration string (`"30s"`, `"5m"`, `"24h"`); at most
/// [`MAX_SECONDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub u64);

/// A configured duration: whole seconds (`30`) or a duration string (`"30s"`, `"500ms"`),
/// clamped to `max` so no later arithmetic on it can overflow.
pub fn duration_value<'de, D: serde::Deserializer<'de>>(
    d: D,
    max: Duration,
) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(Duration::from_secs(n.min(max.as_secs()))),
        Raw::S(s) => humantime::parse_duration(&s)
            .map(|d| d.min(max))
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration: {e}"))),
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Clamped to 100 years: no later arithmetic on a configured duration (added to a Unix
        // time, turned into a Duration, multiplied) can overflow and panic.
        duration_value(d, Duration::from_secs(MAX_SECONDS)).map(|d| Seconds(d.as_secs()))
    }
}

/// How configured audiences match.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AudienceMode {
    /// One configured audience suffices.
    #[default]
    Any,
    /// Every configured audience is required.
    All,
}

/// One accepted issuer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// A short name for logs, metrics and responses.
    pub name: toml::Spanned<String>,
    /// The `iss` value that selects this issuer. Without it, the issuer takes tokens that carry
    /// no `iss` (at most one issuer may omit it).
    #[serde(default)]
    pub issuer: Option<String>,
    /// HMAC secret from this environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// HMAC secret from this file: the raw secret (trailing newlines dropped), or a JWK of
    /// `kty` `oct` as `jwtd keygen --alg HS256` writes it (its `k`; its `alg` must be allowed).
    #[serde(default)]
    pub secret_file: Option<String>,
    /// Public key PEM file.
    #[serde(default)]
    pub pem_file: Option<String>,
    /// JWKS file.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// JWKS URL (cached, refreshed; see jwtd-remote).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// OIDC discovery from this issuer URL.
    #[serde(default)]
    pub discovery: Option<String>,
    /// Extra CA bundle (PEM) for remote keys.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Allow plain HTTP to non-loopback hosts for remote keys.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Allowed algorithms (required).
    pub algorithms: Vec<Algorithm>,
    /// Accepted audiences.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Any-of (default) or all-of.
    #[serde(default)]
    pub audience_mode: AudienceMode,
    /// Skip the audience check (tokens with `aud` are refused otherwise when no audience is set).
    #[serde(default)]
    pub any_audience: bool,
    /// Clock-skew allowance (default 30 s: [`defaults::LEEWAY`]).
    #[serde(default)]
    pub leeway: Option<Seconds>,
    /// Maximum token age from `iat`.
    #[serde(default)]
    pub max_age: Option<Seconds>,
    /// Maximum authentication age from `auth_time`.
    #[serde(default)]
    pub max_auth_age: Option<Seconds>,
    /// Required header `typ`.
    #[serde(default)]
    pub typ: Option<String>,
    /// Claims that must be present.
    #[serde(default)]
    pub require: Vec<String>,
    /// Claims that must equal a value (`client_id = "key"`).
    #[serde(default)]
    pub claims: BTreeMap<String, toml::Value>,
    /// Claims (arrays or space-separated strings) that must contain every listed item.
    #[serde(default)]
    pub contains: BTreeMap<String, Vec<String>>,
    /// Claims that must equal one of the listed values.
    #[serde(default)]
    pub one_of: BTreeMap<String, Vec<toml::Value>>,
    /// Identity headers for forward-auth: header name = claim path.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Also send the whole verified payload, base64url-encoded, as `X-Auth-Payload`.
    #[serde(default)]
    pub forward_payload: bool,
    /// Remote key cache: minimum time between unknown-kid fetches (default 30 s:
    /// [`defaults::cooldown`]).
    #[serde(default)]
    pub cooldown: Option<Seconds>,
    /// Remote key cache: how long the last good set serves past its lifetime when refreshes
    /// fail (default 24 h: [`defaults::stale_if_error`]).
    #[serde(default)]
    pub stale_if_error: Option<Seconds>,
    /// `[issuer.mtls]`: certificate-bound tokens (RFC 8705); default `enforce-cnf`.
    #[serde(default)]
    pub mtls: Option<crate::mtls::IssuerMtls>,
    /// DPoP (RFC 9449) for this issuer's tokens (`[issuer.dpop]`); absent: the defaults of
    /// [`DpopConfig`] (`mode = "enforce-cnf"`: a token bound to a key must come with a proof).
    #[serde(default)]
    pub dpop: Option<DpopConfig>,
}

impl IssuerConfig {
    /// The issuer's certificate-binding policy (`[issuer.mtls] mode`, default `enforce-cnf`).
    pub fn mtls_mode(&self) -> crate::mtls::Mode {
        self.mtls.map(|m| m.mode).unwrap_or_default()
    }
}

/// How DPoP is enforced for an issuer (`[issuer.dpop] mode`) or a rule (`[[rule]] dpop`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DpopMode {
    /// A token with `cnf.jkt` must come as `Authorization: DPoP` with a valid proof of that
    /// key (as `Bearer`: `dpop_token_bound_as_bearer`); a token without `cnf.jkt` may come as
    /// `Bearer` and is refused as `DPoP` (`dpop_token_not_bound`). The default.
    #[default]
    EnforceCnf,
    /// Every token must be bound (`cnf.jkt`) and come with a valid proof; a bearer token is
    /// refused (`dpop_required`, or `dpop_token_bound_as_bearer` when it is bound).
    Require,
    /// DPoP is not looked at: `cnf.jkt` is ignored and `DPoP` headers are not read (an
    /// `Authorization: DPoP` token is taken like a bearer token, for an app that checks
    /// proofs itself).
    Off,
}

impl DpopMode {
    /// The configuration spelling (`enforce-cnf`, `require`, `off`).
    pub fn as_str(self) -> &'static str {
        match self {
            DpopMode::EnforceCnf => "enforce-cnf",
            DpopMode::Require => "require",
            DpopMode::Off => "off",
        }
    }
}

/// What the engine does with a proof's `jti` (`[issuer.dpop] replay`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplayMode {
    /// A `jti` seen before (same key, inside the window) is refused (`dpop_replay`); an
    /// allowed request's `jti` is recorded, only once every other check passed. The default.
    #[default]
    Consume,
    /// A `jti` recorded in the shared store is refused, but jwtd records none: the
    /// application, which checks the proof again (`on_pass = "keep"`), records it in the same
    /// table (docs/dpop.md, "Replay"). Only with `replay_store = "shared"`: nothing else could
    /// record a `jti` jwtd looks up, so it is refused at load with the memory cache.
    Check,
    /// No replay check (not recommended: a captured proof can be replayed within its
    /// `max_age`).
    Off,
}

/// Where an issuer's `jti`s are recorded (`[issuer.dpop] replay_store`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplayStoreKind {
    /// This process's memory only: instances do not see each other's `jti`s. The default.
    #[default]
    Memory,
    /// The shared store (`jwtd serve`'s `[dpop_replay]` PostgreSQL table), with the memory
    /// cache as a first filter: a `jti` recorded by any instance is a replay on every one.
    Shared,
}

/// What a proof gets when the shared replay store cannot answer in time (`[dpop_replay]
/// on_unavailable`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Refused, 503 `dpop_replay_unavailable` (fail closed). The default.
    #[default]
    Reject,
    /// Checked against this process's memory cache only (a replay to another instance
    /// passes while the store is away), with a warning logged.
    Local,
}

/// What reaches the upstream of an allowed DPoP request (`[issuer.dpop] on_pass`; proxy mode
/// and Envoy ext_authz, which can change the request).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnPass {
    /// The `DPoP` header is removed and `Authorization: DPoP <t>` is sent as
    /// `Authorization: Bearer <t>`. The default.
    #[default]
    Strip,
    /// Both are forwarded as they came (for an application that checks the proof again).
    Keep,
}

/// `[issuer.dpop] max_age` at most (seconds): a proof is meant to be made just before use.
pub const MAX_DPOP_MAX_AGE: u64 = 3600;

/// `[issuer.dpop] leeway` is the issuer's `leeway`, at most this (seconds).
pub const MAX_DPOP_LEEWAY: u64 = 30;

/// `[issuer.dpop] replay_max_entries` at most.
pub const MAX_DPOP_REPLAY_ENTRIES: usize = 10_000_000;

/// `[issuer.dpop]`: how this issuer's DPoP-bound tokens and their proofs are checked (see
/// docs/dpop.md, "In the engine").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DpopConfig {
    /// `enforce-cnf` (default), `require` or `off`.
    #[serde(default)]
    pub mode: DpopMode,
    /// The algorithms a proof may be signed with (asymmetric only); default
    /// [`jwtd_core::DEFAULT_DPOP_ALGORITHMS`].
    #[serde(default)]
    pub algorithms: Option<Vec<Algorithm>>,
    /// How old a proof's `iat` may be (default [`jwtd_core::DEFAULT_DPOP_MAX_AGE`], 60 s; 1 s
    /// to [`MAX_DPOP_MAX_AGE`]).
    #[serde(default)]
    pub max_age: Option<Seconds>,
    /// `consume` (default), `check` or `off`.
    #[serde(default)]
    pub replay: ReplayMode,
    /// Most `jti`s the in-memory replay cache holds for this issuer (default
    /// [`defaults::DPOP_REPLAY_MAX_ENTRIES`]; 1 to [`MAX_DPOP_REPLAY_ENTRIES`]). When it is
    /// full of entries still inside their window, new proofs are refused with 503
    /// `dpop_replay_unavailable`, never admitted unchecked.
    #[serde(default = "defaults::dpop_replay_max_entries")]
    pub replay_max_entries: usize,
    /// Most live `jti`s one proof key (`jkt`) may hold in the replay cache (default
    /// [`defaults::DPOP_REPLAY_MAX_PER_KEY`]; 1 to [`MAX_DPOP_REPLAY_ENTRIES`]; in effect never more
    /// than a quarter of the cache's per-shard share, `replay_max_entries / 64`). Beyond it that key's
    /// proofs are refused with 503 `dpop_replay_key_limit` until some expire; other keys are
    /// unaffected.
    #[serde(default = "defaults::dpop_replay_max_per_key")]
    pub replay_max_per_key: usize,
    /// `memory` (default) or `shared` (needs `jwtd serve`'s `[dpop_replay]` table).
    #[serde(default)]
    pub replay_store: ReplayStoreKind,
    /// `strip` (default) or `keep`.
    #[serde(default)]
    pub on_pass: OnPass,
    /// Server nonces (`DPoP-Nonce`, RFC 9449 section 8); absent: none are issued or required.
    #[serde(default)]
    pub nonce: Option<NonceConfig>,
}

/// `[issuer.dpop] nonce = { required, secret_file, rotate }`: stateless server nonces, an HMAC
/// of the epoch under a secret every instance shares (docs/dpop.md, "Nonces").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NonceConfig {
    /// Every proof must carry a nonce of the current or the previous epoch (else 401
    /// `error="use_dpop_nonce"` with a fresh `DPoP-Nonce`). Default true: a nonce table is
    /// there to require them.
    #[serde(default = "defaults::nonce_required")]
    pub required: bool,
    /// The secret (at least 32 bytes; trailing newlines dropped).
    pub secret_file: String,
    /// The epoch length (default 5 min: [`defaults::DPOP_NONCE_ROTATE`]; 10 s to 1 h). A
    /// nonce is accepted for two epochs.
    #[serde(default)]
    pub rotate: Option<Seconds>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            mode: DpopMode::default(),
            algorithms: None,
            max_age: None,
            replay: ReplayMode::default(),
            replay_max_entries: defaults::DPOP_REPLAY_MAX_ENTRIES,
            replay_max_per_key: defaults::DPOP_REPLAY_MAX_PER_KEY,
            replay_store: ReplayStoreKind::default(),
            on_pass: OnPass::default(),
            nonce: None,
        }
    }
}

/// Why an `[issuer.dpop]` table is refused at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpopConfigError {
    /// `algorithms` is empty.
    NoAlgorithms,
    /// `algorithms` names an HMAC algorithm (a proof is signed with the client's own key).
    SymmetricAlgorithm(Algorithm),
    /// `max_age` is 0 or longer than [`MAX_DPOP_MAX_AGE`] (the configured seconds).
    MaxAge(u64),
    /// `replay_max_entries` is 0 or more than [`MAX_DPOP_REPLAY_ENTRIES`].
    ReplayEntries(usize),
    /// `replay_max_per_key` is 0 or more than [`MAX_DPOP_REPLAY_ENTRIES`] (the configured
    /// value).
    ReplayPerKey(usize),
    /// `replay = "check"` with the memory cache: nothing would ever record a `jti`.
    CheckWithoutSharedStore,
    /// `nonce.secret_file` cannot be read or is shorter than 32 bytes (why).
    NonceSecret(String),
    /// `nonce.rotate` is under 10 s or over 1 h (the configured seconds).
    NonceRotate(u64),
}

impl fmt::Display for DpopConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpopConfigError::NoAlgorithms => {
                write!(f, "[issuer.dpop] algorithms is empty: name at least one")
            }
            DpopConfigError::SymmetricAlgorithm(a) => write!(
                f,
                "[issuer.dpop] algorithms names {a}: a proof is signed with the client's own \
                 key, never a shared secret (use ES256, EdDSA, RS256, PS256, ...)"
            ),
            DpopConfigError::MaxAge(s) => write!(
                f,
                "[issuer.dpop] max_age is {s} s: it must be 1 s to {MAX_DPOP_MAX_AGE} s"
            ),
            DpopConfigError::NonceSecret(why) => write!(f, "[issuer.dpop] nonce: {why}"),
            DpopConfigError::NonceRotate(s) => write!(
                f,
                "[issuer.dpop] nonce.rotate is {s} s: it must be 10 s to 3600 s"
            ),
            DpopConfigError::ReplayPerKey(n) => write!(
                f,
                "[issuer.dpop] replay_max_per_key is {n}: it must be 1 to \
                 {MAX_DPOP_REPLAY_ENTRIES}"
            ),
            DpopConfigError::CheckWithoutSharedStore => write!(
                f,
                "[issuer.dpop] replay = \"check\" looks jtis up without recording them: only \
                 the shared store (replay_store = \"shared\"), where the application records \
                 them, can hold any; with the memory cache it would check nothing. Use \
                 replay = \"consume\" (or \"off\")"
            ),
            DpopConfigError::ReplayEntries(n) => write!(
                f,
                "[issuer.dpop] replay_max_entries is {n}: it must be 1 to \
                 {MAX_DPOP_REPLAY_ENTRIES}"
            ),
        }
    }
}

impl std::error::Error for DpopConfigError {}

impl NonceConfig {
    /// The nonce key: the secret read from `secret_file` (trailing newlines dropped), epochs of
    /// `rotate`.
    pub fn key(&self) -> Result<jwtd_core::NonceKey, DpopConfigError> {
        let mut secret = Zeroizing::new(std::fs::read(&self.secret_file).map_err(|e| {
            DpopConfigError::NonceSecret(format!("cannot read {}: {e}", self.secret_file))
        })?);
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        let rotate = self.rotate.map_or(defaults::DPOP_NONCE_ROTATE, |s| s.0);
        jwtd_core::NonceKey::new(&secret, rotate).map_err(|_| {
            DpopConfigError::NonceSecret(format!(
                "{} holds {} bytes: at least {} are needed",
                self.secret_file,
                secret.len(),
                jwtd_core::MIN_NONCE_SECRET
            ))
        })
    }
}

impl DpopConfig {
    /// The proof policy this table makes, with `leeway` (the issuer's, in seconds) capped at
    /// [`MAX_DPOP_LEEWAY`]; an error when the table is not usable.
    pub fn policy(&self, leeway: u64) -> Result<jwtd_core::DpopPolicy, DpopConfigError> {
        let algs: &[Algorithm] = match &self.algorithms {
            Some(a) => a,
            None => &jwtd_core::DEFAULT_DPOP_ALGORITHMS,
        };
        if algs.is_empty() {
            return Err(DpopConfigError::NoAlgorithms);
        }
        if let Some(a) = algs.iter().find(|a| a.family() == jwtd_core::Family::Hmac) {
            return Err(DpopConfigError::SymmetricAlgorithm(*a));
        }
        let max_age = self
            .max_age
            .map_or(jwtd_core::DEFAULT_DPOP_MAX_AGE, |s| s.0);
        if max_age == 0 || max_age > MAX_DPOP_MAX_AGE {
            return Err(DpopConfigError::MaxAge(max_age));
        }
        if self.replay_max_entries == 0 || self.replay_max_entries > MAX_DPOP_REPLAY_ENTRIES {
            return Err(DpopConfigError::ReplayEntries(self.replay_max_entries));
        }
        if self.replay_max_per_key == 0 || self.replay_max_per_key > MAX_DPOP_REPLAY_ENTRIES {
            return Err(DpopConfigError::ReplayPerKey(self.replay_max_per_key));
        }
        if self.replay == ReplayMode::Check && self.replay_store == ReplayStoreKind::Memory {
            return Err(DpopConfigError::CheckWithoutSharedStore);
        }
        if let Some(n) = &self.nonce {
            let r = n.rotate.map_or(defaults::DPOP_NONCE_ROTATE, |s| s.0);
            if !(10..=3600).contains(&r) {
                return Err(DpopConfigError::NonceRotate(r));
            }
        }
        let policy = jwtd_core::DpopPolicy::new(algs).map_err(|_| DpopConfigError::NoAlgorithms)?;
        Ok(policy.max_age(max_age).leeway(leeway.min(MAX_DPOP_LEEWAY)))
    }
}

/// The keys of an `[[issuer]]` table that name its key source, in the order messages list them.
pub const KEY_SOURCE_KEYS: [&str; 6] = [
    "secret_env",
    "secret_file",
    "pem_file",
    "jwks_file",
    "jwks_url",
    "discovery",
];

impl IssuerConfig {
    /// The issuer's key source, validated: exactly one of the six key-source keys must be set
    /// (`secret_env` and `secret_file` are two sources, so both set is "several").
    pub fn key_source(&self) -> Result<KeySource, KeySourceError> {
        let owned = |v: &Option<String>| v.clone();
        // In the order of KEY_SOURCE_KEYS.
        let mut set: Vec<KeySource> = [
            owned(&self.secret_env).map(|v| KeySource::Secret(SecretRef::Env(v))),
            owned(&self.secret_file).map(|f| KeySource::Secret(SecretRef::File(f))),
            owned(&self.pem_file).map(KeySource::PemFile),
            owned(&self.jwks_file).map(KeySource::JwksFile),
            owned(&self.jwks_url).map(KeySource::JwksUrl),
            owned(&self.discovery).map(KeySource::Discovery),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.len() {
            0 => Err(KeySourceError::None),
            1 => set.pop().ok_or(KeySourceError::None),
            _ => Err(KeySourceError::Several(
                set.iter().map(KeySource::key).collect(),
            )),
        }
    }
}

/// Where an issuer's keys come from: exactly one of the `[[issuer]]` key-source keys,
/// validated ([`IssuerConfig::key_source`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// An HMAC secret (`secret_env` or `secret_file`).
    Secret(SecretRef),
    /// A public key PEM file (`pem_file`).
    PemFile(String),
    /// A JWKS file (`jwks_file`).
    JwksFile(String),
    /// A JWKS URL, fetched and cached (`jwks_url`).
    JwksUrl(String),
    /// OIDC discovery from this issuer URL (`discovery`).
    Discovery(String),
}

impl KeySource {
    /// The `[[issuer]]` key it was configured with (`secret_env`, `pem_file`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            KeySource::Secret(s) => s.key("secret_env", "secret_file"),
            KeySource::PemFile(_) => "pem_file",
            KeySource::JwksFile(_) => "jwks_file",
            KeySource::JwksUrl(_) => "jwks_url",
            KeySource::Discovery(_) => "discovery",
        }
    }

    /// True for the sources fetched over the network (`jwks_url`, `discovery`).
    pub fn is_remote(&self) -> bool {
        matches!(self, KeySource::JwksUrl(_) | KeySource::Discovery(_))
    }
}

/// Why an `[[issuer]]` table has no usable key source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySourceError {
    /// None of the key-source keys is set.
    None,
    /// Several are set (their keys, in [`KEY_SOURCE_KEYS`] order).
    Several(Vec<&'static str>),
}

impl fmt::Display for KeySourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySourceError::None => write!(
                f,
                "no key source: set one of {}",
                KEY_SOURCE_KEYS.join(", ")
            ),
            KeySourceError::Several(keys) => write!(
                f,
                "several key sources ({}); set exactly one",
                keys.join(", ")
            ),
        }
    }
}

impl std::error::Error for KeySourceError {}

/// A secret's bytes, wiped from memory when dropped.
pub type Secret = Zeroizing<Vec<u8>>;

/// Where configuration reads a secret: an environment variable or a file. The TOML surface is
/// a pair of keys (`secret_env`/`secret_file`, `api_key_env`/`api_key_file`,
/// `client_secret_env`/`client_secret_file`); [`SecretRef::from_pair`] validates the pair. It
/// holds a name or a path, never the secret ([`SecretRef::resolve`] reads it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// The environment variable of this name (of the configuration's [`Env`]).
    Env(String),
    /// This file: its content, trailing newlines dropped.
    File(String),
}

impl SecretRef {
    /// The reference a pair of keys makes: `env = (key, value)` names a variable, `file = (key,
    /// value)` a file. `None` when neither is set; an error naming both keys when both are (one
    /// would silently win otherwise).
    pub fn from_pair(
        env: (&str, Option<&str>),
        file: (&str, Option<&str>),
    ) -> Result<Option<SecretRef>, String> {
        match (env.1, file.1) {
            (Some(_), Some(_)) => Err(format!(
                "{} and {} are both set; set exactly one",
                env.0, file.0
            )),
            (Some(var), None) => Ok(Some(SecretRef::Env(var.to_owned()))),
            (None, Some(path)) => Ok(Some(SecretRef::File(path.to_owned()))),
            (None, None) => Ok(None),
        }
    }

    /// `env_key` for a variable, `file_key` for a file: the key of the pair it came from.
    pub fn key<'k>(&self, env_key: &'k str, file_key: &'k str) -> &'k str {
        match self {
            SecretRef::Env(_) => env_key,
            SecretRef::File(_) => file_key,
        }
    }

    /// Reads the secret: the variable of `vars`, or the file (trailing newlines dropped).
    /// Refused when it cannot be read, when it is empty or only whitespace, or when shorter than
    /// `min` bytes. `what` names it in messages; the secret itself never appears in one.
    pub fn resolve(&self, vars: &Env, what: &str, min: usize) -> Result<Secret, String> {
        let (v, source) = match self {
            SecretRef::Env(var) => {
                let v = vars
                    .var_os(var)
                    .ok_or_else(|| format!("{what}: environment variable {var} is not set"))?;
                (
                    Zeroizing::new(v.into_encoded_bytes()),
                    format!("environment variable {var}"),
                )
            }
            SecretRef::File(f) => {
                let mut v = Zeroizing::new(
                    std::fs::read(f).map_err(|e| format!("{what}: cannot read {f}: {e}"))?,
                );
                while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    v.pop();
                }
                (v, format!("file {f}"))
            }
        };
        if v.iter().all(u8::is_ascii_whitespace) {
            return Err(format!(
                "{what}: {source} is empty; an empty secret would let anyone in"
            ));
        }
        if v.len() < min {
            return Err(format!(
                "{what}: {source} holds {} bytes; at least {min} are required (e.g. `openssl rand -base64 32`)",
                v.len()
            ));
        }
        Ok(v)
    }
}

/// Configuration errors, each with the line it concerns when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File name shown in messages.
    pub file: String,
    /// `(line, message)` pairs; line 0 when unknown.
    pub errors: Vec<(usize, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (line, msg)) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if *line > 0 {
                write!(f, "{}:{line}: {msg}", self.file)?;
            } else {
                write!(f, "{}: {msg}", self.file)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Where the scanner is in TOML text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Bare,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// [`interpolate_with_env`] with the process environment ([`Env::process`]).
pub fn interpolate(text: &str, errors: &mut Vec<(usize, String)>) -> String {
    interpolate_with_env(text, &Env::process(), errors)
}

/// Replaces `${NAME}` with the variable `NAME` of `env`, inside quoted strings only, and
/// escaped for the string it is in: a value can never end the string and inject TOML (an
/// `api", "https://evil.example` value stays one string). In a basic string (`"..."`) every
/// character is escaped as needed; in a literal string (`'...'`), where nothing can be escaped,
/// a value holding `'` or a line break is an error; outside strings `${` is an error; in
/// comments nothing is replaced. A missing variable (or one that is not Unicode) is an error
/// on its line. `$${` stands for a literal `${`.
pub fn interpolate_with_env(text: &str, env: &Env, errors: &mut Vec<(usize, String)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut ctx = Ctx::Bare;
    let b = text.as_bytes();
    let mut i = 0;
    let at = |i: usize, s: &str| b[i..].starts_with(s.as_bytes());
    while i < b.len() {
        // Copy one UTF-8 character (or a recognised token) at a time.
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        match ctx {
            Ctx::Comment => {
                if b[i] == b'\n' {
                    ctx = Ctx::Bare;
                }
            }
            Ctx::Bare => {
                if b[i] == b'#' {
                    ctx = Ctx::Comment;
                } else if at(i, "\"\"\"") {
                    out.push_str("\"\"\"");
                    i += 3;
                    ctx = Ctx::MultiBasic;
                    continue;
                } else if b[i] == b'"' {
                    ctx = Ctx::Basic;
                } else if at(i, "'''") {
                    out.push_str("'''");
                    i += 3;
                    ctx = Ctx::MultiLiteral;
                    continue;
                } else if b[i] == b'\'' {
                    ctx = Ctx::Literal;
                } else if at(i, "${") {
                    errors.push((
                        line_of(text, i),
                        "\"${...}\" is only replaced inside quoted strings".into(),
                    ));
                }
            }
            Ctx::Basic | Ctx::MultiBasic => {
                if b[i] == b'\\' {
                    // An escape: copy it and the escaped character as they are.
                    let next = text[i + 1..].chars().next().map_or(0, char::len_utf8);
                    out.push_str(&text[i..i + 1 + next]);
                    i += 1 + next;
                    continue;
                }
                if ctx == Ctx::Basic && b[i] == b'"' {
                    ctx = Ctx::Bare;
                } else if ctx == Ctx::MultiBasic && at(i, "\"\"\"") {
                    // Up to two quotes may end the content right before the closing `"""`
                    // (`"""a""""` is `a"`): the whole run closes the string.
                    let run = b[i..].iter().take_while(|c| **c == b'"').count();
                    out.push_str(&text[i..i + run]);
                    i += run;
                    ctx = Ctx::Bare;
                    continue;
                }
            }
            Ctx::Literal | Ctx::MultiLiteral => {
                if ctx == Ctx::Literal && b[i] == b'\'' {
                    ctx = Ctx::Bare;
                } else if ctx == Ctx::MultiLiteral && at(i, "'''") {
                    let run = b[i..].iter().take_while(|c| **c == b'\'').count();
                    out.push_str(&text[i..i + run]);
                    i += run;
                    ctx = Ctx::Bare;
                    continue;
                }
            }
        }
        let in_string = !matches!(ctx, Ctx::Bare | Ctx::Comment);
        if in_string && at(i, "$${") {
            out.push_str("${");
            i += 3;
            continue;
        }
        if in_string && at(i, "${") {
            let Some(end) = text[i..].find('}') else {
                errors.push((line_of(text, i), "unclosed \"${\"".into()));
                out.push_str(&text[i..]);
                return out;
            };
            let name = &text[i + 2..i + end];
            match env.var(name) {
                Some(v) if matches!(ctx, Ctx::Basic | Ctx::MultiBasic) => {
                    for c in v.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            c if c.is_control() => {
                                out.push_str(&format!("\\u{:04X}", c as u32));
                            }
                            c => out.push(c),
                        }
                    }
                }
                Some(v) if v.contains(['\'', '\n', '\r']) => errors.push((
                    line_of(text, i),
                    format!(
                        "environment variable {name} holds a quote or a line break, which a literal string ('...') cannot hold; use a basic string (\"...\")"
                    ),
                )),
                Some(v) => out.push_str(&v),
                None => errors.push((
                    line_of(text, i),
                    format!("environment variable {name} is not set"),
                )),
            }
            i += end + 1;
            continue;
        }
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// The problems of one `[[issuer]]` table on its own (one key source, algorithms, leeway,
/// audiences, identity header names), each with the key it concerns (`"name"` for the table as
/// a whole) and a message that does not name the issuer. `left_out(key)` says a key was in the
/// file but left out for an error of its own (reported already): no check counts it as absent.
/// [`issuers_problems`] adds the checks across issuers; `jwtd serve` ([`check_issuers`] and the
/// service's `Config::check`) reports both.
pub fn issuer_problems(
    i: &IssuerConfig,
    left_out: &dyn Fn(&str) -> bool,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match i.key_source() {
        Ok(_) => {}
        Err(KeySourceError::None) if KEY_SOURCE_KEYS.into_iter().any(left_out) => {}
        Err(e) => out.push(("name", e.to_string())),
    }
    if i.algorithms.is_empty() {
        out.push((
            "algorithms",
            "algorithms must name at least one algorithm".into(),
        ));
    }
    // Revocation entries are kept an hour past their tokens' lifetime: a leeway near that
    // would let a revoked token outlive its entry.
    if i.leeway.is_some_and(|l| l.0 > MAX_LEEWAY) {
        out.push((
            "leeway",
            format!("leeway is at most {MAX_LEEWAY} s (clock skew, not lifetime)"),
        ));
    }
    if i.any_audience && !i.audiences.is_empty() {
        out.push((
            "audiences",
            "any_audience and audiences exclude each other".into(),
        ));
    }
    let mut seen = BTreeMap::new();
    for h in i.headers.keys() {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            out.push(("headers", format!("{h:?} is not a valid header name")));
        } else if RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
            out.push((
                "headers",
                format!(
                    "{h:?} cannot be an identity header (reserved: {})",
                    RESERVED_HEADERS.join(", ")
                ),
            ));
        } else if let Some(other) = seen.insert(h.to_ascii_lowercase(), h) {
            out.push((
                "headers",
                format!("{other:?} and {h:?} name the same header"),
            ));
        }
    }
    out
}

/// The problems of every `[[issuer]]` table, as `jwtd serve` checks them: names and `iss`
/// unique, at most one issuer without `iss`, and each table's own ([`issuer_problems`]). Each
/// problem is `(index in issuers, key, message)`, the message starting with `issuer "name": `;
/// the key is `"name"` for the table as a whole. `left_out(index, key)` as for
/// [`issuer_problems`].
pub fn issuers_problems(
    issuers: &[IssuerConfig],
    left_out: &dyn Fn(usize, &str) -> bool,
) -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let mut seen_iss = std::collections::BTreeSet::new();
    let mut anonymous = 0;
    for (n, i) in issuers.iter().enumerate() {
        let name = i.name.get_ref();
        let mut err =
            |key: &'static str, m: String| out.push((n, key, format!("issuer {name:?}: {m}")));
        if !names.insert(name.clone()) {
            err("name", "duplicate issuer name".into());
        }
        match &i.issuer {
            Some(iss) if !seen_iss.insert(iss.clone()) => {
                err("issuer", format!("iss {iss:?} is configured twice"))
            }
            None if left_out(n, "issuer") => {}
            None => {
                anonymous += 1;
                if anonymous == 2 {
                    err("name", "at most one issuer may omit \"issuer\"".into());
                }
            }
            _ => {}
        }
        for (key, m) in issuer_problems(i, &|k| left_out(n, k)) {
            err(key, m);
        }
    }
    out
}

/// Checks every `[[issuer]]` table as `jwtd serve` does ([`issuers_problems`]), pushing
/// `(line, message)` pairs onto `errors`, each on the line of its issuer's name; `text` is the
/// (interpolated) file the spans point into.
pub fn check_issuers(issuers: &[IssuerConfig], text: &str, errors: &mut Vec<(usize, String)>) {
    for (n, _, message) in issuers_problems(issuers, &|_, _| false) {
        errors.push((line_of(text, issuers[n].name.span().start), message));
    }
}

/// The engine's sections of a jwtd configuration file: what an embedding application (the
/// tower layer) reads out of the same `jwtd.toml` that `jwtd serve` runs with.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GateConfig {
    /// `[tokens]`: where tokens are read from.
    #[serde(default)]
    pub tokens: TokenSources,
    /// `[cache]`: the verified-token cache.
    #[serde(default)]
    pub cache: CacheSettings,
    /// `[[issuer]]`: the issuers whose tokens are accepted.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// `[rules]`: options of the per-route rules.
    #[serde(default)]
    pub rules: crate::rules::RuleOptions,
    /// `[[rule]]`: per-route rules.
    #[serde(default)]
    pub rule: Vec<crate::rules::RuleConfig>,
    /// `[[resource]]`: protected resources (RFC 9728 metadata, MCP servers).
    #[serde(default)]
    pub resource: Vec<crate::resource::ResourceConfig>,
    /// `[forwarded]`: the client certificate a trusted proxy forwards (RFC 8705 bound tokens).
    #[serde(default)]
    pub forwarded: crate::mtls::ForwardedConfig,
    /// The environment the text was read in (not a key of the file): its `${VAR}`s were
    /// replaced from it, and the issuers' `secret_env` secrets are read from it when they are
    /// built ([`crate::issuers::Issuers::build_with_env`]).
    #[serde(skip)]
    pub env: Env,
}

/// The top-level keys of `jwtd serve`'s file the engine leaves to the service.
pub const SERVICE_KEYS: [&str; 15] = [
    "listen",
    "log_format",
    "trust_request_id",
    "introspection",
    "admin",
    "signing",
    "revocation",
    "server",
    "cors",
    "ext_authz",
    "proxy",
    "upstream",
    "trusted_proxies",
    "tls",
    "dpop_replay",
];

impl GateConfig {
    /// Reads and checks the engine's sections of a configuration file (see [`GateConfig::parse`]),
    /// in the process environment.
    pub fn load(path: &std::path::Path) -> Result<GateConfig, ConfigError> {
        GateConfig::load_with_env(path, &Env::process())
    }

    /// [`GateConfig::load`] in the environment `env` (see [`GateConfig::parse_with_env`]).
    pub fn load_with_env(path: &std::path::Path, env: &Env) -> Result<GateConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            errors: vec![(0, format!("cannot read: {e}"))],
        })?;
        GateConfig::parse_with_env(&text, &file, env)
    }

    /// Parses configuration text (with `${VAR}` interpolation, as `jwtd serve`), checks the
    /// engine's sections as the service does, and refuses what an embedding application
    /// cannot honour: a `[revocation]` section (the list lives in the service's store; bring
    /// a [`crate::issuers::RevocationCheck`] instead) and unknown top-level keys. The service's
    /// other sections are ignored; `[signing]` (jwtd's own issuer) too: verify jwtd's tokens
    /// with an `[[issuer]]` reading its published JWKS. `file` names the text in messages.
    /// `${VAR}`s and the issuers' secrets are read from the process environment.
    pub fn parse(text: &str, file: &str) -> Result<GateConfig, ConfigError> {
        GateConfig::parse_with_env(text, file, &Env::process())
    }

    /// [`GateConfig::parse`] in the environment `env`: its `${VAR}`s are replaced from `env`,
    /// which the configuration keeps ([`GateConfig::env`]) for the secrets its issuers read
    /// when they are built.
    pub fn parse_with_env(text: &str, file: &str, env: &Env) -> Result<GateConfig, ConfigError> {
        let fail = |errors| ConfigError {
            file: file.to_owned(),
            errors,
        };
        let mut errors = Vec::new();
        let expanded = interpolate_with_env(text, env, &mut errors);
        if !errors.is_empty() {
            return Err(fail(errors));
        }
        let table: toml::Table = toml::from_str(&expanded).map_err(|e| {
            let line = e.span().map(|s| line_of(&expanded, s.start)).unwrap_or(0);
            fail(vec![(line, e.message().to_owned())])
        })?;
        for key in table.keys() {
            let line = expanded
                .find(key.as_str())
                .map(|o| line_of(&expanded, o))
                .unwrap_or(0);
            if key == "revocation" {
                errors.push((
                    line,
                    "[revocation] needs jwtd serve's store; an embedding application passes its own revocation check instead".into(),
                ));
            } else if ![
                "tokens",
                "cache",
                "issuer",
                "rules",
                "rule",
                "resource",
                "forwarded",
            ]
            .contains(&key.as_str())
                && !SERVICE_KEYS.contains(&key.as_str())
            {
                errors.push((line, format!("unknown key {key:?}")));
            }
        }
        let mut config: GateConfig = toml::from_str(&expanded).map_err(|e| {
            let line = e.span().map(|s| line_of(&expanded, s.start)).unwrap_or(0);
            fail(vec![(line, e.message().to_owned())])
        })?;
        check_issuers(&config.issuers, &expanded, &mut errors);
        check_rules(
            &config.rules,
            &config.rule,
            &config.issuers,
            &[],
            &expanded,
            &mut errors,
        );
        check_resources(
            &config.resource,
            &config.rules,
            &config.rule,
            &config.issuers,
            &[],
            &config.tokens,
            &expanded,
            &mut errors,
        );
        if let Err(e) = config.forwarded.compile() {
            let line = expanded
                .find("[forwarded]")
                .map(|o| line_of(&expanded, o))
                .unwrap_or(0);
            errors.push((line, e));
        }
        if errors.is_empty() {
            config.env = env.clone();
            Ok(config)
        } else {
            Err(fail(errors))
        }
    }
}

/// Compiles the `[rules]` and `[[rule]]` tables against the issuers they may name (each
/// `[[issuer]]`, plus `extra_names`, e.g. jwtd's own `self`) and the headers they may not set,
/// as the engine builds them; `text` is the (interpolated) file the spans point into, so the
/// rules and errors carry lines (an empty `text`: no lines). [`check_rules`] reports the errors; `jwtd config check` lints
/// the set ([`crate::rules::RuleSet::lint`]).
pub fn compile_rules(
    options: &crate::rules::RuleOptions,
    rules: &[crate::rules::RuleConfig],
    issuers: &[IssuerConfig],
    extra_names: &[&str],
    text: &str,
) -> Result<crate::rules::RuleSet, Vec<crate::rules::RuleError>> {
    let mut names: Vec<&str> = issuers.iter().map(|i| i.name.get_ref().as_str()).collect();
    names.extend_from_slice(extra_names);
    let reserved = crate::issuers::IdentityHeaders::of_configs(issuers).reserved();
    if text.is_empty() {
        crate::rules::RuleSet::build(options.clone(), rules, &names, &reserved)
    } else {
        crate::rules::RuleSet::build_with_source(text, options.clone(), rules, &names, &reserved)
    }
}

/// Checks the `[rules]` and `[[rule]]` tables against the issuers they may name (each
/// `[[issuer]]`, plus `extra_names`, e.g. jwtd's own `self`) as the engine builds them
/// ([`compile_rules`]), pushing every error with its line onto `errors`; `text` is the
/// (interpolated) file the spans point into.
pub fn check_rules(
    options: &crate::rules::RuleOptions,
    rules: &[crate::rules::RuleConfig],
    issuers: &[IssuerConfig],
    extra_names: &[&str],
    text: &str,
    errors: &mut Vec<(usize, String)>,
) {
    if let Err(rule_errors) = compile_rules(options, rules, issuers, extra_names, text) {
        for e in rule_errors {
            let message = match &e.rule {
                Some(id) => format!("rule {id:?}: {}", e.message),
                None => e.message.clone(),
            };
            errors.push((e.line.unwrap_or(0), message));
        }
    }
}

/// Checks the `[[resource]]` tables ([`crate::resource::Resources::build`]) against the
/// issuers they may name (each `[[issuer]]` by its `iss`, plus `extra`, e.g. jwtd's own
/// `("self", iss)`) and the rules (when they compile; their own errors are
/// [`check_rules`]'), pushing every error with its line onto `errors`.
#[allow(clippy::too_many_arguments)]
pub fn check_resources(
    resources: &[crate::resource::ResourceConfig],
    options: &crate::rules::RuleOptions,
    rules: &[crate::rules::RuleConfig],
    issuers: &[IssuerConfig],
    extra: &[(&str, Option<&str>)],
    tokens: &TokenSources,
    text: &str,
    errors: &mut Vec<(usize, String)>,
) {
    let names: Vec<&str> = extra.iter().map(|(n, _)| *n).collect();
    let set = compile_rules(options, rules, issuers, &names, text).unwrap_or_default();
    let mut known: Vec<(&str, Option<&str>)> = issuers
        .iter()
        .map(|i| (i.name.get_ref().as_str(), i.issuer.as_deref()))
        .collect();
    known.extend_from_slice(extra);
    if let Err(e) = crate::resource::Resources::build(resources, &known, &set, tokens, text) {
        errors.extend(e);
    }
}
