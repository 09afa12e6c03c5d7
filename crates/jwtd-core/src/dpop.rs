//! DPoP proofs (RFC 9449): the sans-I/O check a resource server (or a token endpoint) makes on
//! the `DPoP` request header, and the binding of an access token to the proof's key.
//!
//! [`DpopPolicy::verify`] takes every `DPoP` header value the request carried, the request's
//! method and URI, the access token (none at a token endpoint) and the time, and checks RFC 9449
//! section 4.3: exactly one proof, a compact JWS of `typ` `dpop+jwt` under an allow-listed
//! asymmetric `alg`, signed by the public `jwk` in its header (a JWK with any private member is
//! refused), with `jti`, `htm` (the method, case-sensitive), `htu` (the URI without query and
//! fragment, compared after RFC 3986 normalisation), `iat` within the window and, with a token,
//! `ath` (base64url SHA-256 of the token). It returns the key's RFC 7638 thumbprint (`jkt`),
//! the `jti`, the `iat` and the `nonce` (for the caller's own nonce check). The `jti` replay set
//! and server nonces are the caller's: nothing here keeps state or reads a clock.
//! [`DpopPolicy::verify_with`] takes the caller's cache of parsed proof keys ([`ProofKeys`])
//! and the token's SHA-256 when it has it; its answers are [`DpopPolicy::verify`]'s.
//!
//! [`check_token_binding`] then compares a verified access token's `cnf.jkt` with the proof's
//! `jkt`, in constant time.
//!
//! Every refusal is a [`DpopError`] with a stable [`DpopReason`] code (`dpop_...`), listed with
//! its answer in docs/security.md ("DPoP proofs").
//!
//! ```
//! use jwtd_core::{make_proof, Algorithm, DpopPolicy, DpopReason, DpopRequest, ProofClaims, SigningKey};
//!
//! let client = SigningKey::generate(Algorithm::ES256).unwrap();
//! let (token, now) = ("an-access-token", 1_800_000_000);
//! let proof = make_proof(&client, &ProofClaims {
//!     method: "GET",
//!     url: "https://api.example/orders",
//!     access_token: Some(token),
//!     iat: now,
//!     ..ProofClaims::default()
//! })
//! .unwrap();
//! let headers: &[&[u8]] = &[proof.as_bytes()]; // every DPoP header value the request had
//! let request = |method| DpopRequest {
//!     proofs: headers,
//!     method,
//!     uri: "https://api.example/orders?page=2",
//!     access_token: Some(token),
//! };
//! let checked = DpopPolicy::default().verify(&request("GET"), now).unwrap();
//! assert_eq!(Some(checked.jkt), client.public_jwk().unwrap().thumbprint());
//! let refused = DpopPolicy::default().verify(&request("POST"), now).unwrap_err();
//! assert_eq!(refused.reason(), DpopReason::HtmMismatch);
//! assert_eq!(refused.reason().error_code(), "invalid_dpop_proof");
//! ```

use crate::alg::{Algorithm, Family};
use crate::b64;
use crate::error::{Error, Reason};
use crate::json::{self, Members};
use crate::jwk::Jwk;
use crate::key::{SigningKey, VerifyingKey};
use crate::policy;
use crate::token::{Header, Verified};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// The `typ` a DPoP proof's header must carry, exactly (RFC 9449 section 4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The default DPoP algorithms: every asymmetric algorithm RFC 9449 deployments use that jwtd
/// implements (ES256, ES384, RS256, PS256, EdDSA).
pub const DEFAULT_DPOP_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Default age a proof may have, in seconds: `iat` no older than this (plus the leeway).
pub const DEFAULT_DPOP_MAX_AGE: u64 = 60;

/// Default clock leeway for a proof's `iat`, in seconds, both ways.
pub const DEFAULT_DPOP_LEEWAY: u64 = 5;

/// Default largest proof accepted, in bytes, checked before any decoding (an RSA-4096 proof is
/// about 2.5 KiB, an RSA-8192 one about 4.5 KiB).
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;

/// Default longest `jti` accepted, in bytes (a random 128-bit id is 22 to 36 characters).
pub const DEFAULT_MAX_JTI_LEN: usize = 128;

/// Longest `nonce` accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 512;

/// Longest request URI or `htu` compared, in bytes.
pub const MAX_HTU_LEN: usize = 8 * 1024;

/// Longest signature read (an RSA-8192 signature).
const MAX_SIGNATURE_LEN: usize = 1024;

/// JWK members that carry private key material (RFC 7518 section 6): a proof's `jwk` with any of
/// them is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a DPoP proof (or the binding of a token to it) was refused. The names returned by
/// [`DpopReason::as_str`] are a stable interface, like [`Reason`]'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DpopReason {
    /// The request carried no `DPoP` header.
    Missing,
    /// The request carried more than one `DPoP` header (RFC 9449 section 4.3, check 1).
    Multiple,
    /// The proof is longer than the policy's limit; nothing was decoded.
    TooLarge,
    /// The proof is not a well-formed compact JWS with JSON header and claims: bad base64url,
    /// bad or duplicated JSON, `crit`, a claim of the wrong type, an empty or too long `jti`, a
    /// too long `nonce`.
    Invalid,
    /// The header `typ` is not exactly `dpop+jwt`.
    WrongType,
    /// The `alg` is not an allow-listed asymmetric algorithm (`none` and HS* never are).
    AlgorithmNotAllowed,
    /// The header has no usable `jwk`: absent, not an object, not a public key of a type jwtd
    /// reads, or of a type or curve that does not fit the `alg`, or too weak.
    BadKey,
    /// The header `jwk` carries private key material (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`,
    /// `k`).
    PrivateKey,
    /// The signature does not verify under the header's `jwk`.
    BadSignature,
    /// A required claim is absent: `jti`, `htm`, `htu`, `iat`, or `ath` when an access token
    /// is presented.
    MissingClaim,
    /// `htm` is not the request's method.
    HtmMismatch,
    /// `htu` is not an absolute `http`/`https` URI without query and fragment.
    HtuInvalid,
    /// `htu` is not the request's URI (both normalised; query and fragment of the request
    /// ignored).
    HtuMismatch,
    /// `iat` is older than the window (max age plus leeway).
    Stale,
    /// `iat` is later than now plus the leeway.
    IssuedInFuture,
    /// `ath` is not the base64url SHA-256 of the presented access token.
    AthMismatch,
    /// The access token's `cnf.jkt` is not the thumbprint of the proof's key.
    JktMismatch,
    /// The access token is not bound to a key (no `cnf.jkt`), so no proof can be checked
    /// against it.
    TokenNotBound,
    /// The access token is bound to a key (`cnf.jkt`) but was presented as a bearer token
    /// (`Authorization: Bearer`, a cookie, a query parameter): the downgrade RFC 9449 section
    /// 7.2 forbids (engine only).
    TokenBoundAsBearer,
    /// The route requires DPoP (`dpop = "require"`) and the token came as a bearer token
    /// (engine only).
    Required,
    /// The proof's `jti` was already used by this key within the replay window (engine only).
    Replay,
    /// The replay cache is full of live entries: the proof cannot be checked for a replay
    /// now, so it is refused rather than admitted unchecked; answered 503 with `Retry-After`
    /// (engine only).
    ReplayUnavailable,
    /// The proof's key holds `replay_max_per_key` live entries of the replay cache already:
    /// this key's proofs are refused (503 with `Retry-After`) until some expire, so one
    /// client cannot fill the cache for every other (engine only).
    ReplayKeyLimit,
    /// The issuer requires a server nonce (`nonce.required`) and the proof has none, or one
    /// that is not the current or the previous epoch's; answered with `error="use_dpop_nonce"`
    /// and a fresh `DPoP-Nonce` (engine only).
    UseNonce,
}

impl DpopReason {
    /// Every reason, in declaration order.
    pub const ALL: [DpopReason; 24] = [
        DpopReason::Missing,
        DpopReason::Multiple,
        DpopReason::TooLarge,
        DpopReason::Invalid,
        DpopReason::WrongType,
        DpopReason::AlgorithmNotAllowed,
        DpopReason::BadKey,
        DpopReason::PrivateKey,
        DpopReason::BadSignature,
        DpopReason::MissingClaim,
        DpopReason::HtmMismatch,
        DpopReason::HtuInvalid,
        DpopReason::HtuMismatch,
        DpopReason::Stale,
        DpopReason::IssuedInFuture,
        DpopReason::AthMismatch,
        DpopReason::JktMismatch,
        DpopReason::TokenNotBound,
        DpopReason::TokenBoundAsBearer,
        DpopReason::Required,
        DpopReason::Replay,
        DpopReason::ReplayUnavailable,
        DpopReason::ReplayKeyLimit,
        DpopReason::UseNonce,
    ];

    /// The stable reason code, e.g. `dpop_htm_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            DpopReason::Missing => "dpop_missing",
            DpopReason::Multiple => "dpop_multiple",
            DpopReason::TooLarge => "dpop_too_large",
            DpopReason::Invalid => "dpop_invalid",
            DpopReason::WrongType => "dpop_wrong_type",
            DpopReason::AlgorithmNotAllowed => "dpop_algorithm_not_allowed",
            DpopReason::BadKey => "dpop_bad_key",
            DpopReason::PrivateKey => "dpop_private_key",
            DpopReason::BadSignature => "dpop_bad_signature",
            DpopReason::MissingClaim => "dpop_missing_claim",
            DpopReason::HtmMismatch => "dpop_htm_mismatch",
            DpopReason::HtuInvalid => "dpop_htu_invalid",
            DpopReason::HtuMismatch => "dpop_htu_mismatch",
            DpopReason::Stale => "dpop_stale",
            DpopReason::IssuedInFuture => "dpop_issued_in_future",
            DpopReason::AthMismatch => "dpop_ath_mismatch",
            DpopReason::JktMismatch => "dpop_jkt_mismatch",
            DpopReason::TokenNotBound => "dpop_token_not_bound",
            DpopReason::TokenBoundAsBearer => "dpop_token_bound_as_bearer",
            DpopReason::Required => "dpop_required",
            DpopReason::Replay => "dpop_replay",
            DpopReason::ReplayUnavailable => "dpop_replay_unavailable",
            DpopReason::ReplayKeyLimit => "dpop_replay_key_limit",
            DpopReason::UseNonce => "dpop_use_nonce",
        }
    }

    /// The RFC 9449 section 7.1 `error` the client is answered with, in a
    /// `WWW-Authenticate: DPoP` challenge: `invalid_token` when the token is not bound to the
    /// proof's key (RFC 9449's own example for a key binding mismatch), `invalid_dpop_proof`
    /// for every fault of the proof itself. A token that must come with a proof and came
    /// without one (`dpop_token_bound_as_bearer`, `dpop_required`) is `invalid_token` too;
    /// `dpop_replay_unavailable` (the server cannot decide now) and `dpop_replay_key_limit`
    /// are `temporarily_unavailable`,
    /// and its challenge names no error; `dpop_use_nonce` is RFC 9449's `use_dpop_nonce`.
    pub fn error_code(self) -> &'static str {
        match self {
            DpopReason::JktMismatch
            | DpopReason::TokenNotBound
            | DpopReason::TokenBoundAsBearer
            | DpopReason::Required => "invalid_token",
            DpopReason::ReplayUnavailable | DpopReason::ReplayKeyLimit => "temporarily_unavailable",
            DpopReason::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }

    /// The HTTP status: 401 for every reason (RFC 9449 section 7.1), but 503 for
    /// `dpop_replay_unavailable` and `dpop_replay_key_limit`.
    pub fn http_status(self) -> u16 {
        match self {
            DpopReason::ReplayUnavailable | DpopReason::ReplayKeyLimit => 503,
            _ => 401,
        }
    }
}

impl fmt::Display for DpopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused DPoP proof: a stable [`DpopReason`] and a message for humans (and logs; it never
/// holds the proof, the token or key material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopError {
    reason: DpopReason,
    message: Cow<'static, str>,
}

impl DpopError {
    /// A new error.
    pub fn new(reason: DpopReason, message: impl Into<Cow<'static, str>>) -> Self {
        DpopError {
            reason,
            message: message.into(),
        }
    }

    /// The stable reason code.
    pub fn reason(&self) -> DpopReason {
        self.reason
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for DpopError {}

/// What a DPoP proof is checked against: allowed algorithms (asymmetric only), the `iat`
/// window and leeway, and the size limits. Strict defaults ([`DpopPolicy::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopPolicy {
    algorithms: Vec<Algorithm>,
    max_age: u64,
    leeway: u64,
    max_proof_len: usize,
    max_jti_len: usize,
}

impl Default for DpopPolicy {
    /// [`DEFAULT_DPOP_ALGORITHMS`], [`DEFAULT_DPOP_MAX_AGE`], [`DEFAULT_DPOP_LEEWAY`],
    /// [`DEFAULT_MAX_PROOF_LEN`], [`DEFAULT_MAX_JTI_LEN`].
    fn default() -> Self {
        DpopPolicy {
            algorithms: DEFAULT_DPOP_ALGORITHMS.to_vec(),
            max_age: DEFAULT_DPOP_MAX_AGE,
            leeway: DEFAULT_DPOP_LEEWAY,
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
            max_jti_len: DEFAULT_MAX_JTI_LEN,
        }
    }
}

impl DpopPolicy {
    /// A policy allowing `algorithms` and the default limits. Refused (`algorithm_not_allowed`)
    /// when the list is empty or names an HMAC algorithm: a proof is signed by a key the client
    /// holds alone, which a shared secret is not.
    pub fn new(algorithms: &[Algorithm]) -> Result<DpopPolicy, Error> {
        if algorithms.is_empty() {
            return Err(Error::new(
                Reason::AlgorithmNotAllowed,
                "no DPoP algorithm is allowed: name at least one asymmetric algorithm",
            ));
        }
        if let Some(hs) = algorithms.iter().find(|a| a.family() == Family::Hmac) {
            return Err(Error::new(
                Reason::AlgorithmNotAllowed,
                format!("{hs} cannot sign DPoP proofs: only asymmetric algorithms can"),
            ));
        }
        let mut algs = algorithms.to_vec();
        algs.sort_unstable();
        algs.dedup();
        Ok(DpopPolicy {
            algorithms: algs,
            ..DpopPolicy::default()
        })
    }

    /// Sets how old a proof may be, in seconds (`iat` at least `now - max_age - leeway`).
    pub fn max_age(mut self, secs: u64) -> Self {
        self.max_age = secs;
        self
    }

    /// Sets the clock leeway for `iat`, in seconds, both ways.
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// Sets the largest proof accepted, in bytes.
    pub fn max_proof_len(mut self, bytes: usize) -> Self {
        self.max_proof_len = bytes;
        self
    }

    /// Sets the longest `jti` accepted, in bytes.
    pub fn max_jti_len(mut self, bytes: usize) -> Self {
        self.max_jti_len = bytes;
        self
    }

    /// The allowed algorithms, sorted.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The allowed algorithms as the `algs` parameter of a `WWW-Authenticate: DPoP` challenge
    /// (space-separated, RFC 9449 section 7.1).
    pub fn algs_parameter(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.as_str()).collect();
        names.join(" ")
    }

    /// The largest age of a proof, in seconds.
    pub fn max_age_secs(&self) -> u64 {
        self.max_age
    }

    /// The clock leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// How long a replay cache must keep a `jti` so that no proof still inside the window can
    /// be replayed: the whole accepted `iat` span, `max_age + 2 × leeway`, in seconds.
    pub fn replay_window_secs(&self) -> u64 {
        self.max_age.saturating_add(self.leeway.saturating_mul(2))
    }

    /// Checks the request's DPoP proof at `now` (seconds since the Unix epoch). See the
    /// module documentation for the checks, in the order they are made.
    pub fn verify(&self, request: &DpopRequest<'_>, now: u64) -> Result<DpopProof, DpopError> {
        verify(self, request, now, &NoKeys, None)
    }

    /// [`DpopPolicy::verify`], taking the proof's checked header from `keys` when it holds
    /// one parsed from the same bytes (and handing it a freshly parsed one once the proof
    /// passed), and the access token's SHA-256 from `token_sha256` when the caller has it
    /// (e.g. [`Verified::token_sha256`], kept with a cached token). A header from `keys` is
    /// used only for the exact bytes it was parsed from, and its `alg` is checked against
    /// this policy again, so the answer is the same with or without `keys`. `token_sha256`
    /// must be the SHA-256 of `request.access_token` (checked in debug builds).
    pub fn verify_with(
        &self,
        request: &DpopRequest<'_>,
        now: u64,
        keys: &dyn ProofKeys,
        token_sha256: Option<&[u8; 32]>,
    ) -> Result<DpopProof, DpopError> {
        verify(self, request, now, keys, token_sha256)
    }

    /// Checks a proof's base64url header segment: canonical base64url, a JSON object with
    /// `typ` exactly `dpop+jwt` (refused otherwise: `dpop_wrong_type`), an `alg` this policy
    /// allows (`dpop_algorithm_not_allowed`), a public `jwk` that fits it (`dpop_bad_key`,
    /// `dpop_private_key`), in that order; and parses the key and its thumbprint.
    pub fn parse_header(&self, segment: &[u8]) -> Result<ProofHeader, DpopError> {
        let header_bytes =
            b64::decode(segment).ok_or_else(|| invalid("the header is not canonical base64url"))?;
        let (header, jwk_at) =
            Header::from_json_with_jwk(header_bytes, policy::DEFAULT_MAX_JSON_DEPTH).map_err(
                |e| match e.reason() {
                    Reason::UnsupportedAlgorithm => {
                        err(DpopReason::AlgorithmNotAllowed, e.message().to_owned())
                    }
                    _ => invalid(e.message().to_owned()),
                },
            )?;
        match header.typ.as_deref() {
            Some(DPOP_TYP) => {}
            Some(other) => {
                return Err(err(
                    DpopReason::WrongType,
                    format!(
                        "header typ is {}; a DPoP proof's is \"{DPOP_TYP}\"",
                        policy::shown(&Value::String(other.to_owned()))
                    ),
                ))
            }
            None => {
                return Err(err(
                    DpopReason::WrongType,
                    format!("header has no typ; a DPoP proof's is \"{DPOP_TYP}\""),
                ))
            }
        }
        let alg = header.alg;
        self.check_alg(alg)?;
        let (jwk, key) = proof_key(&header, jwk_at, alg)?;
        let jkt = jkt(&jwk).ok_or_else(|| err(DpopReason::BadKey, "the jwk has no thumbprint"))?;
        Ok(ProofHeader {
            segment: segment.into(),
            alg,
            key,
            jkt,
        })
    }

    fn check_alg(&self, alg: Algorithm) -> Result<(), DpopError> {
        if alg.family() == Family::Hmac || !self.algorithms.contains(&alg) {
            return Err(err(
                DpopReason::AlgorithmNotAllowed,
                format!(
                    "alg {alg} is not allowed for DPoP proofs (allowed: {})",
                    self.algs_parameter()
                ),
            ));
        }
        Ok(())
    }
}

/// The request a proof is checked against.
#[derive(Clone, Copy, Debug)]
pub struct DpopRequest<'a> {
    /// Every `DPoP` header value the request carried, in order (more than one is refused).
    pub proofs: &'a [&'a [u8]],
    /// The request method, as sent (compared case-sensitively, RFC 9110 section 9.1).
    pub method: &'a str,
    /// The request's absolute target URI (`https://host/path?query`); its query and fragment
    /// are ignored.
    pub uri: &'a str,
    /// The access token presented with the proof (`Authorization: DPoP <token>`); `None` at a
    /// token endpoint, where there is none yet and `ath` is not checked.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct DpopProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key, base64url: what an access token
    /// bound to it carries as `cnf.jkt`.
    pub jkt: String,
    /// The proof's `jti`, for the caller's replay cache.
    pub jti: String,
    /// The proof's `iat` (seconds since the epoch).
    pub iat: f64,
    /// The proof's `nonce`, if any, for the caller's nonce check.
    pub nonce: Option<String>,
    /// The proof's algorithm.
    pub alg: Algorithm,
}

fn err(reason: DpopReason, message: impl Into<Cow<'static, str>>) -> DpopError {
    DpopError::new(reason, message)
}

fn invalid(message: impl Into<Cow<'static, str>>) -> DpopError {
    err(DpopReason::Invalid, message)
}

/// A DPoP proof's protected header, checked and its key parsed: `typ` exactly `dpop+jwt`, an
/// allow-listed asymmetric `alg`, a public `jwk` (no private member) of a type and size that
/// fits the `alg`, and the key's RFC 7638 thumbprint. Made only by
/// [`DpopPolicy::parse_header`] from the header's base64url segment, which it keeps: what a
/// cache of proof keys ([`ProofKeys`]) holds, since clients sign many proofs with one key.
pub struct ProofHeader {
    segment: std::sync::Arc<[u8]>,
    alg: Algorithm,
    key: VerifyingKey,
    jkt: String,
}

impl fmt::Debug for ProofHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofHeader")
            .field("alg", &self.alg)
            .field("jkt", &self.jkt)
            .field("segment_len", &self.segment.len())
            .finish_non_exhaustive()
    }
}

/// Heap a parsed RSA public key holds beyond four times its modulus (aws-lc's `RSA` and
/// `EVP_PKEY`, the modulus as a `BIGNUM`, the Montgomery context made at the first signature
/// check, which holds it twice more, and the allocator's chunk headers). With it, a 2048-bit
/// key's whole [`ProofHeader`] is counted 3.6 KiB; glibc's `mallinfo2` measured 3.2 KiB
/// (RS256) and 2.8 KiB (PS256) per header, everything allocated for it included.
const RSA_KEY_HEAP: usize = 1536;

/// Heap a parsed EC or OKP public key holds (aws-lc's `EC_KEY`, its point and group, or the
/// Ed25519 key's 32 bytes, and the `EVP_PKEY`). With it, a whole [`ProofHeader`] is counted
/// 1.6 KiB (ES256), 1.7 KiB (ES384), 1.5 KiB (EdDSA); `mallinfo2` measured 1.1, 1.2 and
/// 0.7 KiB.
const EC_KEY_HEAP: usize = 1024;

impl ProofHeader {
    /// The base64url header segment this was parsed from, exactly.
    pub fn segment(&self) -> &std::sync::Arc<[u8]> {
        &self.segment
    }

    /// The proof's algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The RFC 7638 SHA-256 thumbprint of the key, base64url.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// What this holds on the heap, in bytes, for a cache's byte bound: the segment, the
    /// thumbprint, the key's own members and what aws-lc allocates for the parsed key (an
    /// upper estimate, see the constants).
    pub fn heap_bytes(&self) -> usize {
        let key = match self.key.algorithm().family() {
            Family::Rsa => {
                // The modulus is as long as the signature.
                RSA_KEY_HEAP + 4 * self.key.modulus_len().unwrap_or(1024)
            }
            _ => EC_KEY_HEAP,
        };
        self.segment.len()
            + self.jkt.capacity()
            + key
            + std::mem::size_of::<ProofHeader>()
            + self.key.heap_bytes()
    }
}

/// A cache of checked proof headers ([`ProofHeader`]) for [`DpopPolicy::verify_with`]: the
/// caller's own state (jwtd-gate's proof-key cache), kept out of this sans-I/O crate.
pub trait ProofKeys {
    /// The header parsed before from exactly `segment` (the proof's base64url header), if
    /// kept. A header for other bytes is ignored (and `segment` parsed afresh).
    fn get(&self, segment: &[u8]) -> Option<std::sync::Arc<ProofHeader>>;
    /// A header parsed afresh whose proof then passed every check: keep it if there is room.
    fn keep(&self, header: std::sync::Arc<ProofHeader>);
}

/// No cache: every proof's header is parsed ([`DpopPolicy::verify`]).
struct NoKeys;

impl ProofKeys for NoKeys {
    fn get(&self, _: &[u8]) -> Option<std::sync::Arc<ProofHeader>> {
        None
    }
    fn keep(&self, _: std::sync::Arc<ProofHeader>) {}
}

fn verify(
    policy: &DpopPolicy,
    req: &DpopRequest<'_>,
    now: u64,
    keys: &dyn ProofKeys,
    token_sha256: Option<&[u8; 32]>,
) -> Result<DpopProof, DpopError> {
    let proof = match req.proofs {
        [] => return Err(err(DpopReason::Missing, "the request has no DPoP header")),
        [one] => *one,
        more => {
            return Err(err(
                DpopReason::Multiple,
                format!(
                    "the request has {} DPoP headers; exactly one is allowed",
                    more.len()
                ),
            ))
        }
    };
    if proof.len() > policy.max_proof_len {
        return Err(err(
            DpopReason::TooLarge,
            format!(
                "the proof is {} bytes; the limit is {}",
                proof.len(),
                policy.max_proof_len
            ),
        ));
    }
    // Compact JWS: three base64url parts.
    let mut dots = memchr::memchr_iter(b'.', proof);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(invalid(
            "not a compact JWS: expected three base64url parts separated by dots",
        ));
    };
    let (header_b64, payload_b64, sig_b64) = (
        &proof[..first],
        &proof[first + 1..second],
        &proof[second + 1..],
    );
    let signing_input = &proof[..second];
    // A kept header is one parsed from these exact bytes: only the allow-list, which is this
    // policy's, is checked again (in the order a fresh parse checks it: after `typ`, which a
    // kept header passed).
    let (header, fresh) = match keys.get(header_b64) {
        Some(h) if *h.segment == *header_b64 => {
            policy.check_alg(h.alg)?;
            (h, false)
        }
        _ => (std::sync::Arc::new(policy.parse_header(header_b64)?), true),
    };
    let (alg, key) = (header.alg, &header.key);
    if sig_b64.len() > MAX_SIGNATURE_LEN / 3 * 4 + 4 {
        return Err(err(
            DpopReason::BadSignature,
            format!("signature is longer than {MAX_SIGNATURE_LEN} bytes"),
        ));
    }
    let mut buf = [0u8; MAX_SIGNATURE_LEN];
    let len = b64::decode_slice(sig_b64, &mut buf)
        .ok_or_else(|| invalid("the signature is not canonical base64url"))?;
    if !key.verify_signature(signing_input, &buf[..len]) {
        return Err(err(
            DpopReason::BadSignature,
            "the signature does not verify under the header's jwk",
        ));
    }
    let payload = b64::decode(payload_b64)
        .ok_or_else(|| invalid("the claims are not canonical base64url"))?;
    let payload = String::from_utf8(payload).map_err(|_| invalid("the claims are not UTF-8"))?;
    let claims = Members::parse(&payload, policy::DEFAULT_MAX_JSON_DEPTH)
        .map_err(|e| invalid(format!("the claims are not a valid JSON object: {e}")))?;
    let string = |name: &'static str| -> Result<Option<Cow<'_, str>>, DpopError> {
        match claims.get(name) {
            None => Ok(None),
            Some(raw) => json::as_str(raw.get())
                .map(Some)
                .ok_or_else(|| invalid(format!("claim \"{name}\" must be a string"))),
        }
    };
    let jti = required("jti", string("jti")?)?;
    if jti.is_empty() || jti.len() > policy.max_jti_len {
        return Err(invalid(format!(
            "jti is {} bytes; it must be 1 to {}",
            jti.len(),
            policy.max_jti_len
        )));
    }
    let htm = required("htm", string("htm")?)?;
    let htu = required("htu", string("htu")?)?;
    let iat = policy::date(&claims, "iat")
        .map_err(|e| invalid(e.message().to_owned()))?
        .ok_or_else(|| err(DpopReason::MissingClaim, "the proof has no \"iat\" claim"))?;
    let nonce = string("nonce")?;
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_LEN) {
        return Err(invalid(format!(
            "nonce is longer than {MAX_NONCE_LEN} bytes"
        )));
    }
    let ath = string("ath")?;
    if htm != req.method {
        return Err(err(
            DpopReason::HtmMismatch,
            format!(
                "htm is {}; the request method is {}",
                policy::shown(&Value::String(htm.into_owned())),
                policy::shown(&Value::String(req.method.to_owned()))
            ),
        ));
    }
    // The usual case first: the htu is the request URI's own text up to its query; the same
    // text normalises the same, so only the request URI is normalised (which checks it).
    let request_prefix = req.uri.find(['?', '#']).map_or(req.uri, |i| &req.uri[..i]);
    if htu != request_prefix {
        let proof_htu = normalize_htu(&htu, Htu::Proof)
            .map_err(|why| err(DpopReason::HtuInvalid, format!("htu {why}")))?;
        let request_htu = normalize_htu(req.uri, Htu::Request).map_err(|why| {
            err(
                DpopReason::HtuMismatch,
                format!("the request URI {why}, so no htu can match it"),
            )
        })?;
        if proof_htu != request_htu {
            return Err(err(
                DpopReason::HtuMismatch,
                format!(
                    "htu is {} once normalised; the request URI is {}",
                    policy::shown(&Value::String(proof_htu)),
                    policy::shown(&Value::String(request_htu))
                ),
            ));
        }
    } else {
        normalize_htu(req.uri, Htu::Request).map_err(|why| {
            err(
                DpopReason::HtuInvalid,
                format!("htu (the request URI's own text) {why}"),
            )
        })?;
    }
    let now_f = now as f64;
    if iat > now_f + policy.leeway as f64 {
        return Err(err(
            DpopReason::IssuedInFuture,
            format!(
                "iat is {}s in the future (leeway {}s)",
                (iat - now_f).ceil(),
                policy.leeway
            ),
        ));
    }
    if iat + (policy.max_age.saturating_add(policy.leeway) as f64) < now_f {
        return Err(err(
            DpopReason::Stale,
            format!(
                "the proof is {}s old; at most {}s (plus {}s leeway) are accepted",
                (now_f - iat).floor(),
                policy.max_age,
                policy.leeway
            ),
        ));
    }
    if let Some(token) = req.access_token {
        let Some(ath) = ath else {
            return Err(err(
                DpopReason::MissingClaim,
                "the proof has no \"ath\" claim, and an access token is presented",
            ));
        };
        let want = match token_sha256 {
            Some(h) => {
                debug_assert_eq!(
                    h.as_slice(),
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
                        .as_ref(),
                    "token_sha256 is the presented token's hash"
                );
                b64::encode(h)
            }
            None => b64::encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
            ),
        };
        if !constant_time_eq(ath.as_bytes(), want.as_bytes()) {
            return Err(err(
                DpopReason::AthMismatch,
                "ath is not the SHA-256 hash of the presented access token",
            ));
        }
    }
    let proof = DpopProof {
        jkt: header.jkt.clone(),
        jti: jti.into_owned(),
        iat,
        nonce: nonce.map(Cow::into_owned),
        alg,
    };
    if fresh {
        keys.keep(header);
    }
    Ok(proof)
}

/// The header's `jwk` (the raw JSON at `at` in the header), checked to be a public key for
/// `alg`, and parsed: read member by member from the raw text, no value tree built.
fn proof_key(
    header: &Header,
    at: Option<std::ops::Range<usize>>,
    alg: Algorithm,
) -> Result<(Jwk, VerifyingKey), DpopError> {
    let raw = at
        .and_then(|r| header.json().get(r))
        .ok_or_else(|| err(DpopReason::BadKey, "the header has no \"jwk\""))?;
    let members = Members::parse(raw, policy::DEFAULT_MAX_JSON_DEPTH)
        .map_err(|_| err(DpopReason::BadKey, "header \"jwk\" is not a JSON object"))?;
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| members.contains(m)) {
        return Err(err(
            DpopReason::PrivateKey,
            format!("header \"jwk\" has the private member \"{private}\": a proof carries a public key only"),
        ));
    }
    let string = |name: &'static str| -> Result<Option<String>, DpopError> {
        match members.get(name) {
            None => Ok(None),
            Some(v) => json::as_str(v.get())
                .map(|s| Some(s.into_owned()))
                .ok_or_else(|| {
                    err(
                        DpopReason::BadKey,
                        format!("jwk \"{name}\" must be a string"),
                    )
                }),
        }
    };
    let key_ops = match members.get("key_ops") {
        None => None,
        Some(v) => Some(
            json::as_str_list(v.get())
                .ok_or_else(|| {
                    err(
                        DpopReason::BadKey,
                        "jwk \"key_ops\" must be an array of strings",
                    )
                })?
                .into_iter()
                .map(Cow::into_owned)
                .collect(),
        ),
    };
    let jwk = Jwk {
        kty: string("kty")?.ok_or_else(|| err(DpopReason::BadKey, "the jwk has no \"kty\""))?,
        kid: string("kid")?,
        alg: string("alg")?,
        use_: string("use")?,
        key_ops,
        crv: string("crv")?,
        n: string("n")?,
        e: string("e")?,
        x: string("x")?,
        y: string("y")?,
        ..Jwk::default()
    };
    if !matches!(jwk.kty.as_str(), "RSA" | "EC" | "OKP") {
        return Err(err(
            DpopReason::BadKey,
            format!(
                "jwk kty is {}; a proof's key is RSA, EC or OKP",
                policy::shown(&Value::String(jwk.kty.clone()))
            ),
        ));
    }
    let key = VerifyingKey::from_jwk(&jwk, Some(alg)).map_err(|e| {
        err(
            DpopReason::BadKey,
            format!("the jwk cannot verify {alg}: {}", e.message()),
        )
    })?;
    if key.is_symmetric() || key.algorithm() != alg {
        return Err(err(
            DpopReason::BadKey,
            format!(
                "the jwk is a key for {}, the proof says {alg}",
                key.algorithm()
            ),
        ));
    }
    Ok((jwk, key))
}

/// The RFC 7638 SHA-256 thumbprint of a proof's key, written straight into its canonical form:
/// the members were checked by [`VerifyingKey::from_jwk`] (canonical base64url, a known `crv`),
/// so none needs escaping. Equal to [`Jwk::thumbprint`] (tested), without the value tree.
fn jkt(jwk: &Jwk) -> Option<String> {
    fn m(v: &Option<String>) -> Option<&str> {
        v.as_deref()
    }
    let canonical = match jwk.kty.as_str() {
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            m(&jwk.e)?,
            m(&jwk.n)?
        ),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            m(&jwk.crv)?,
            m(&jwk.x)?,
            m(&jwk.y)?
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            m(&jwk.crv)?,
            m(&jwk.x)?
        ),
        _ => return None,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    Some(b64::encode(digest.as_ref()))
}

fn required<T>(name: &'static str, v: Option<T>) -> Result<T, DpopError> {
    v.ok_or_else(|| {
        err(
            DpopReason::MissingClaim,
            format!("the proof has no \"{name}\" claim"),
        )
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Checks that a verified access token is bound to the proof's key: its `cnf.jkt` (RFC 9449
/// section 6.1) equals the proof's thumbprint, compared in constant time. A token without
/// `cnf.jkt` is `dpop_token_not_bound`.
pub fn check_token_binding(token: &Verified, proof: &DpopProof) -> Result<(), DpopError> {
    let jkt = match token.claim("cnf") {
        None => {
            return Err(err(
                DpopReason::TokenNotBound,
                "the access token has no \"cnf\" claim: it is not bound to a key",
            ))
        }
        Some(Value::Object(cnf)) => match cnf.get("jkt") {
            None => {
                return Err(err(
                    DpopReason::TokenNotBound,
                    "the access token's \"cnf\" has no \"jkt\": it is not bound to a DPoP key",
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(err(
                    DpopReason::JktMismatch,
                    "the access token's \"cnf.jkt\" is not a string",
                ))
            }
        },
        Some(_) => {
            return Err(err(
                DpopReason::JktMismatch,
                "the access token's \"cnf\" is not an object",
            ))
        }
    };
    if constant_time_eq(jkt.as_bytes(), proof.jkt.as_bytes()) {
        Ok(())
    } else {
        Err(err(
            DpopReason::JktMismatch,
            "the access token's cnf.jkt is not the thumbprint of the proof's key",
        ))
    }
}

/// Shortest DPoP nonce secret accepted, in bytes.
pub const MIN_NONCE_SECRET: usize = 32;

/// Stateless server nonces (RFC 9449 section 8): `base64url(t || HMAC-SHA256(secret,
/// "jwtd/dpop-nonce/v1" || t)[..16])` with `t` the epoch number (`now / period`, 8 bytes big
/// endian). A nonce is accepted for the current and the previous epoch, so instances sharing
/// the secret accept each other's nonces without any state. The secret never leaves the key.
pub struct NonceKey {
    key: aws_lc_rs::hmac::Key,
    period: u64,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A key over `secret` (at least [`MIN_NONCE_SECRET`] bytes) whose epochs last `period`
    /// seconds (at least 1).
    pub fn new(secret: &[u8], period: u64) -> Result<NonceKey, Error> {
        if secret.len() < MIN_NONCE_SECRET {
            return Err(Error::new(
                Reason::WeakKey,
                format!("a DPoP nonce secret must be at least {MIN_NONCE_SECRET} bytes"),
            ));
        }
        Ok(NonceKey {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            period: period.max(1),
        })
    }

    /// The epoch length, in seconds.
    pub fn period(&self) -> u64 {
        self.period
    }

    fn mac(&self, t: u64) -> [u8; 24] {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        ctx.update(b"jwtd/dpop-nonce/v1");
        ctx.update(&t.to_be_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&t.to_be_bytes());
        out[8..].copy_from_slice(&tag.as_ref()[..16]);
        out
    }

    /// The nonce of the epoch `now` falls in.
    pub fn issue(&self, now: u64) -> String {
        b64::encode(self.mac(now / self.period))
    }

    /// True when `nonce` is the nonce of `now`'s epoch or the one before (compared in constant
    /// time).
    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        let mut raw = [0u8; 24];
        if nonce.len() != 32 || b64::decode_slice(nonce.as_bytes(), &mut raw) != Some(24) {
            return false;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&raw[..8]);
        let t = u64::from_be_bytes(t);
        let cur = now / self.period;
        (t == cur || t.checked_add(1) == Some(cur)) && constant_time_eq(&self.mac(t), &raw)
    }

    /// True when `nonce` is of the previous epoch (a fresh one should be sent with the answer).
    pub fn is_previous(&self, nonce: &str, now: u64) -> bool {
        let mut raw = [0u8; 24];
        if b64::decode_slice(nonce.as_bytes(), &mut raw) != Some(24) {
            return false;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&raw[..8]);
        u64::from_be_bytes(t) != now / self.period
    }
}

/// The key a replay cache files a proof under: SHA-256 of `jkt`, a NUL and `jti`, truncated
/// to 16 bytes, so an entry has one small fixed size whatever the client sent (a `jti` is
/// unique per key, RFC 9449 section 11.1; two keys may use the same `jti`).
pub fn replay_key(proof: &DpopProof) -> [u8; 16] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(proof.jkt.as_bytes());
    ctx.update(&[0]);
    ctx.update(proof.jti.as_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// The base64url SHA-256 of an access token: a proof's `ath` for it (RFC 9449 section 4.2).
pub fn access_token_hash(token: &str) -> String {
    b64::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// What the URI being normalised is: a proof's `htu` (refused with a query or fragment) or the
/// request's URI (whose query and fragment are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Htu {
    /// A proof's `htu`.
    Proof,
    /// A request's target URI.
    Request,
}

/// Normalises an absolute `http`/`https` URI for the `htu` comparison (RFC 9449 section 4.3,
/// RFC 3986 sections 6.2.2 and 6.2.3): scheme and host lower-cased, the default port (and an
/// empty one) dropped, an empty path made `/`, percent-encoding upper-cased and decoded where it
/// encodes an unreserved character, dot segments removed; the query and fragment dropped from a
/// request URI and refused in a proof's `htu`. Userinfo, non-ASCII, spaces and control
/// characters are refused. The error says why, for a message.
pub fn normalize_htu(uri: &str, what: Htu) -> Result<String, &'static str> {
    if uri.len() > MAX_HTU_LEN {
        return Err("is too long");
    }
    if !uri.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("has a space, a control or a non-ASCII character");
    }
    let (rest, has_suffix) = match uri.find(['?', '#']) {
        Some(i) => (&uri[..i], true),
        None => (uri, false),
    };
    if has_suffix && what == Htu::Proof {
        return Err("has a query or a fragment, which a proof's htu never carries");
    }
    let (scheme, rest) = rest
        .split_once("://")
        .ok_or("is not an absolute URI (scheme://host/path)")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err("is not an http or https URI"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("has userinfo");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("has an unclosed IPv6 literal")?;
        let (lit, after) = (&v6[..end], &v6[end + 1..]);
        let v6_char = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
        if lit.is_empty() || !lit.bytes().all(v6_char) {
            return Err("has a bad IPv6 literal");
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("has text after its IPv6 literal")?,
            ),
        };
        (format!("[{}]", lit.to_ascii_lowercase()), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
        if h.is_empty() || !h.bytes().all(host_char) {
            return Err("has no host, or a bad one");
        }
        (normalize_percent(h, true)?, p)
    };
    // An empty port is no port (RFC 3986 section 6.2.3); leading zeros are dropped.
    let port = match port.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => return Err("has a bad port"),
        Some(p) => match p.trim_start_matches('0') {
            "" => return Err("has port 0"),
            d if d.len() > 5 => return Err("has a port over 65535"),
            d => match d.parse::<u32>() {
                Ok(n) if n <= 65535 => Some(d),
                _ => return Err("has a port over 65535"),
            },
        },
    };
    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port.filter(|p| *p != default_port) {
        out.push(':');
        out.push_str(port);
    }
    let path = normalize_percent(path, false)?;
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&remove_dot_segments(&path));
    }
    Ok(out)
}

/// Percent-encoding normalised: `%xx` upper-cased, decoded when it is an unreserved character
/// (RFC 3986 section 6.2.2.2); the rest lower-cased when `lower` (a host).
fn normalize_percent(s: &str, lower: bool) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err("has a bad percent-encoding");
            };
            let v = (h * 16 + l) as u8;
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(if lower { v.to_ascii_lowercase() } else { v } as char);
            } else {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
            i += 3;
        } else {
            out.push(if lower {
                b[i].to_ascii_lowercase()
            } else {
                b[i]
            } as char);
            i += 1;
        }
    }
    Ok(out)
}

/// RFC 3986 section 5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// What [`make_proof`] puts in a proof besides the key's signature.
#[derive(Clone, Debug, Default)]
pub struct ProofClaims<'a> {
    /// `htm`: the request method.
    pub method: &'a str,
    /// `htu`: the request URI; its query and fragment are left out, as RFC 9449 asks.
    pub url: &'a str,
    /// The access token the proof goes with (sets `ath`).
    pub access_token: Option<&'a str>,
    /// A server-provided nonce.
    pub nonce: Option<&'a str>,
    /// `iat`, seconds since the epoch.
    pub iat: u64,
    /// `jti`; a random 128-bit one when `None`.
    pub jti: Option<&'a str>,
}

/// Makes a DPoP proof signed by `key` (asymmetric only): header `typ` `dpop+jwt`, the key's
/// `alg` and public `jwk` (its required members only); claims `jti`, `htm`, `htu`, `iat` and,
/// when given, `ath` and `nonce`. For tests and clients; jwtd itself only verifies proofs.
pub fn make_proof(key: &SigningKey, claims: &ProofClaims<'_>) -> Result<String, Error> {
    let public = key.public_jwk().ok_or_else(|| {
        Error::new(
            Reason::AlgorithmNotAllowed,
            "an HMAC secret cannot sign a DPoP proof",
        )
    })?;
    let bare = Jwk {
        kty: public.kty,
        crv: public.crv,
        n: public.n,
        e: public.e,
        x: public.x,
        y: public.y,
        ..Jwk::default()
    };
    let mut header = Map::new();
    header.insert("typ".into(), Value::String(DPOP_TYP.into()));
    header.insert("alg".into(), Value::String(key.algorithm().as_str().into()));
    header.insert(
        "jwk".into(),
        serde_json::to_value(bare).map_err(|e| Error::malformed(e.to_string()))?,
    );
    let jti = match claims.jti {
        Some(j) => j.to_owned(),
        None => {
            let mut id = [0u8; 16];
            crate::fill_random(&mut id)?;
            b64::encode(id)
        }
    };
    let htu = claims
        .url
        .find(['?', '#'])
        .map_or(claims.url, |i| &claims.url[..i]);
    let mut body = Map::new();
    body.insert("jti".into(), Value::String(jti));
    body.insert("htm".into(), Value::String(claims.method.into()));
    body.insert("htu".into(), Value::String(htu.into()));
    body.insert("iat".into(), Value::from(claims.iat));
    if let Some(t) = claims.access_token {
        body.insert("ath".into(), Value::String(access_token_hash(t)));
    }
    if let Some(n) = claims.nonce {
        body.insert("nonce".into(), Value::String(n.into()));
    }
    let payload = serde_json::to_vec(&body).map_err(|e| Error::malformed(e.to_string()))?;
    crate::token::sign_raw(key, &header, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sign, sign_raw, KeySet, Validation, Verifier};
    use serde_json::json;
    use std::sync::OnceLock;

    const NOW: u64 = 1_800_000_000;
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln";
    const URI: &str = "https://api.example/orders?page=2";
    const HTU: &str = "https://api.example/orders";

    fn keys() -> &'static [SigningKey] {
        static K: OnceLock<Vec<SigningKey>> = OnceLock::new();
        K.get_or_init(|| {
            DEFAULT_DPOP_ALGORITHMS
                .iter()
                .chain([Algorithm::ES512].iter())
                .map(|a| SigningKey::generate(*a).unwrap())
                .collect()
        })
    }

    fn key(alg: Algorithm) -> &'static SigningKey {
        keys().iter().find(|k| k.algorithm() == alg).unwrap()
    }

    fn es() -> &'static SigningKey {
        key(Algorithm::ES256)
    }

    fn bare_jwk(k: &SigningKey) -> Value {
        let p = k.public_jwk().unwrap();
        let bare = Jwk {
            kty: p.kty,
            crv: p.crv,
            n: p.n,
            e: p.e,
            x: p.x,
            y: p.y,
            ..Jwk::default()
        };
        serde_json::to_value(bare).unwrap()
    }

    fn header(k: &SigningKey) -> Value {
        json!({"typ": "dpop+jwt", "alg": k.algorithm().as_str(), "jwk": bare_jwk(k)})
    }

    fn claims() -> Value {
        json!({"jti": "j-1", "htm": "GET", "htu": HTU, "iat": NOW, "ath": access_token_hash(TOKEN)})
    }

    /// A proof with this header and these claims, signed by `k`.
    fn forge(k: &SigningKey, header: &Value, claims: &Value) -> String {
        sign_raw(
            k,
            header.as_object().unwrap(),
            &serde_json::to_vec(claims).unwrap(),
        )
        .unwrap()
    }

    /// A proof with any header at all (its `alg` need not be the key's), signed by `k`.
    fn forge_any(k: &SigningKey, header: &Value, claims: &Value) -> String {
        let mut out = b64::encode(header.to_string());
        out.push('.');
        out.push_str(&b64::encode(claims.to_string()));
        let sig = k.sign_bytes(out.as_bytes()).unwrap();
        out.push('.');
        out.push_str(&b64::encode(sig));
        out
    }

    /// The ES256 proof with one header or claim member changed (`Value::Null`: removed).
    fn with(in_header: bool, name: &str, value: Value) -> String {
        let (mut h, mut c) = (header(es()), claims());
        let target = if in_header { &mut h } else { &mut c };
        let obj = target.as_object_mut().unwrap();
        if value.is_null() {
            obj.remove(name);
        } else {
            obj.insert(name.into(), value);
        }
        forge(es(), &h, &c)
    }

    fn check_with(
        proof: &str,
        method: &str,
        uri: &str,
        token: Option<&str>,
        now: u64,
    ) -> Result<DpopProof, DpopError> {
        DpopPolicy::default().verify(
            &DpopRequest {
                proofs: &[proof.as_bytes()],
                method,
                uri,
                access_token: token,
            },
            now,
        )
    }

    fn check(proof: &str) -> Result<DpopProof, DpopError> {
        check_with(proof, "GET", URI, Some(TOKEN), NOW)
    }

    #[track_caller]
    fn refused(proof: &str, reason: DpopReason) -> DpopError {
        let e = check(proof).expect_err("refused");
        assert_eq!(e.reason(), reason, "{e}");
        e
    }

    #[test]
    fn valid_proofs_for_every_default_algorithm() {
        for alg in DEFAULT_DPOP_ALGORITHMS {
            let k = key(alg);
            let proof = make_proof(
                k,
                &ProofClaims {
                    method: "GET",
                    url: URI,
                    access_token: Some(TOKEN),
                    nonce: Some("n-1"),
                    iat: NOW,
                    jti: None,
                },
            )
            .unwrap();
            let ok = check(&proof).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(Some(ok.jkt), k.public_jwk().unwrap().thumbprint(), "{alg}");
            assert_eq!(ok.jti.len(), 22, "{alg}: a random 128-bit jti");
            assert_eq!(ok.iat, NOW as f64);
            assert_eq!(ok.nonce.as_deref(), Some("n-1"));
            assert_eq!(ok.alg, alg);
        }
    }

    #[test]
    fn forged_baseline_passes() {
        // The control for every `with(...)` case below.
        let ok = check(&with(false, "jti", json!("j-1"))).unwrap();
        assert_eq!(ok.jti, "j-1");
        assert_eq!(ok.nonce, None);
    }

    #[test]
    fn exactly_one_header() {
        let p = forge(es(), &header(es()), &claims());
        let policy = DpopPolicy::default();
        let req = |proofs: &[&[u8]]| {
            policy
                .verify(
                    &DpopRequest {
                        proofs,
                        method: "GET",
                        uri: URI,
                        access_token: Some(TOKEN),
                    },
                    NOW,
                )
                .map_err(|e| e.reason())
        };
        assert_eq!(req(&[]).unwrap_err(), DpopReason::Missing);
        assert_eq!(
            req(&[p.as_bytes(), p.as_bytes()]).unwrap_err(),
            DpopReason::Multiple
        );
        assert!(req(&[p.as_bytes()]).is_ok());
    }

    #[test]
    fn size_is_bounded_before_decoding() {
        let p = forge(es(), &header(es()), &claims());
        let policy = DpopPolicy::default().max_proof_len(p.len() - 1);
        let e = policy
            .verify(
                &DpopRequest {
                    proofs: &[p.as_bytes()],
                    method: "GET",
                    uri: URI,
                    access_token: Some(TOKEN),
                },
                NOW,
            )
            .unwrap_err();
        assert_eq!(e.reason(), DpopReason::TooLarge);
        let junk = "x".repeat(DEFAULT_MAX_PROOF_LEN + 1);
        refused(&junk, DpopReason::TooLarge);
    }

    #[test]
    fn structure() {
        refused("a.b", DpopReason::Invalid);
        refused("a.b.c.d", DpopReason::Invalid);
        let p = forge(es(), &header(es()), &claims());
        refused(&format!("{p}="), DpopReason::Invalid);
        refused(&format!("+{p}"), DpopReason::Invalid);
        // Duplicate header member, crit.
        let h = format!(
            r#"{{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#,
            bare_jwk(es())
        );
        let mut raw = b64::encode(h);
        raw.push('.');
        raw.push_str(&b64::encode(claims().to_string()));
        let sig = es().sign_bytes(raw.as_bytes()).unwrap();
        let dup = format!("{raw}.{}", b64::encode(sig));
        refused(&dup, DpopReason::Invalid);
        refused(&with(true, "crit", json!(["exp"])), DpopReason::Invalid);
        // Claims not an object.
        let arr = sign_raw(es(), header(es()).as_object().unwrap(), b"[1]").unwrap();
        refused(&arr, DpopReason::Invalid);
    }

    #[test]
    fn typ_must_be_exactly_dpop_jwt() {
        refused(&with(true, "typ", Value::Null), DpopReason::WrongType);
        refused(&with(true, "typ", json!("JWT")), DpopReason::WrongType);
        refused(&with(true, "typ", json!("DPoP+jwt")), DpopReason::WrongType);
        refused(
            &with(true, "typ", json!("application/dpop+jwt")),
            DpopReason::WrongType,
        );
        refused(&with(true, "typ", json!(1)), DpopReason::Invalid);
    }

    #[test]
    fn alg_none_hmac_and_unlisted_are_refused() {
        // alg none: an unsigned proof.
        let mut h = header(es());
        h["alg"] = json!("none");
        let none = format!(
            "{}.{}.",
            b64::encode(h.to_string()),
            b64::encode(claims().to_string())
        );
        let e = refused(&none, DpopReason::AlgorithmNotAllowed);
        assert!(e.message().contains("none"), "{e}");
        // HS256 with the secret as an oct jwk.
        let hs = SigningKey::hmac(&[7u8; 32], Algorithm::HS256, None).unwrap();
        let hh = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64::encode([7u8; 32])}});
        refused(&forge(&hs, &hh, &claims()), DpopReason::AlgorithmNotAllowed);
        // HS256 whose jwk is a public key: still the alg that is refused.
        let hh = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": bare_jwk(es())});
        refused(&forge(&hs, &hh, &claims()), DpopReason::AlgorithmNotAllowed);
        // ES512 is implemented but not in the default list.
        let k = key(Algorithm::ES512);
        refused(
            &forge(k, &header(k), &claims()),
            DpopReason::AlgorithmNotAllowed,
        );
        // ...and passes when the policy lists it.
        let policy = DpopPolicy::new(&[Algorithm::ES512]).unwrap();
        let p = forge(k, &header(k), &claims());
        assert!(policy
            .verify(
                &DpopRequest {
                    proofs: &[p.as_bytes()],
                    method: "GET",
                    uri: URI,
                    access_token: Some(TOKEN)
                },
                NOW
            )
            .is_ok());
        // Unknown alg names.
        let mut h = header(es());
        h["alg"] = json!("ES999");
        refused(
            &forge_any(es(), &h, &claims()),
            DpopReason::AlgorithmNotAllowed,
        );
    }

    #[test]
    fn policy_takes_asymmetric_algorithms_only() {
        assert!(DpopPolicy::new(&[]).is_err());
        assert!(DpopPolicy::new(&[Algorithm::ES256, Algorithm::HS256]).is_err());
        let p = DpopPolicy::new(&[Algorithm::PS256, Algorithm::ES256, Algorithm::ES256]).unwrap();
        assert_eq!(p.algs_parameter(), "PS256 ES256");
        assert_eq!(p.algorithms().len(), 2);
        assert_eq!(DpopPolicy::default().replay_window_secs(), 70);
    }

    #[test]
    fn jwk_must_be_a_public_key_for_the_alg() {
        refused(&with(true, "jwk", Value::Null), DpopReason::BadKey);
        refused(&with(true, "jwk", json!("key")), DpopReason::BadKey);
        refused(
            &with(true, "jwk", json!({"kty": "oct", "alg": "ES256"})),
            DpopReason::BadKey,
        );
        refused(
            &with(true, "jwk", json!({"kty": "EC", "crv": "P-256"})),
            DpopReason::BadKey,
        );
        // An RSA key under alg ES256; a P-384 key under ES256.
        refused(
            &with(true, "jwk", bare_jwk(key(Algorithm::RS256))),
            DpopReason::BadKey,
        );
        refused(
            &with(true, "jwk", bare_jwk(key(Algorithm::ES384))),
            DpopReason::BadKey,
        );
        // The jwk's own alg disagrees.
        let mut j = bare_jwk(es());
        j["alg"] = json!("ES384");
        refused(&with(true, "jwk", j), DpopReason::BadKey);
        // use enc.
        let mut j = bare_jwk(es());
        j["use"] = json!("enc");
        refused(&with(true, "jwk", j), DpopReason::BadKey);
        // A weak RSA key: 1024 bits.
        let weak = json!({"kty": "RSA", "e": "AQAB", "n": b64::encode([0xC5u8; 128])});
        let mut h = header(key(Algorithm::RS256));
        h["jwk"] = weak;
        let e = refused(
            &forge(key(Algorithm::RS256), &h, &claims()),
            DpopReason::BadKey,
        );
        assert!(e.message().contains("2048"), "{e}");
    }

    #[test]
    fn private_members_are_refused() {
        for alg in DEFAULT_DPOP_ALGORITHMS {
            let k = key(alg);
            let private = serde_json::to_value(k.to_private_jwk().unwrap()).unwrap();
            let mut h = header(k);
            h["jwk"] = private;
            let e = refused(&forge(k, &h, &claims()), DpopReason::PrivateKey);
            assert!(e.message().contains("\"d\""), "{alg}: {e}");
        }
        for member in PRIVATE_MEMBERS {
            let mut j = bare_jwk(es());
            j[member] = json!("AAAA");
            refused(&with(true, "jwk", j), DpopReason::PrivateKey);
        }
    }

    #[test]
    fn signature_must_verify_under_the_header_key() {
        let other = SigningKey::generate(Algorithm::ES256).unwrap();
        refused(
            &forge(&other, &header(es()), &claims()),
            DpopReason::BadSignature,
        );
        let p = forge(es(), &header(es()), &claims());
        let (body, sig) = p.rsplit_once('.').unwrap();
        let mut sig = b64::decode(sig.as_bytes()).unwrap();
        sig[5] ^= 1;
        refused(
            &format!("{body}.{}", b64::encode(&sig)),
            DpopReason::BadSignature,
        );
        refused(&format!("{body}."), DpopReason::BadSignature);
        // The claims changed after signing.
        let (h, _) = body.split_once('.').unwrap();
        let mut c = claims();
        c["htm"] = json!("POST");
        let (_, s) = p.rsplit_once('.').unwrap();
        let swapped = format!("{h}.{}.{s}", b64::encode(c.to_string()));
        refused(&swapped, DpopReason::BadSignature);
    }

    #[test]
    fn required_claims() {
        for name in ["jti", "htm", "htu", "iat", "ath"] {
            let e = refused(&with(false, name, Value::Null), DpopReason::MissingClaim);
            assert!(e.message().contains(name), "{e}");
        }
        // Without an access token (a token endpoint), ath is not needed.
        let p = with(false, "ath", Value::Null);
        assert!(check_with(&p, "GET", URI, None, NOW).is_ok());
        for name in ["jti", "htm", "htu", "nonce", "ath"] {
            refused(&with(false, name, json!(7)), DpopReason::Invalid);
        }
        refused(
            &with(false, "iat", json!("1800000000")),
            DpopReason::Invalid,
        );
        refused(&with(false, "jti", json!("")), DpopReason::Invalid);
        refused(
            &with(false, "jti", json!("j".repeat(DEFAULT_MAX_JTI_LEN + 1))),
            DpopReason::Invalid,
        );
        assert!(check(&with(false, "jti", json!("j".repeat(DEFAULT_MAX_JTI_LEN)))).is_ok());
        refused(
            &with(false, "nonce", json!("n".repeat(MAX_NONCE_LEN + 1))),
            DpopReason::Invalid,
        );
    }

    #[test]
    fn htm_is_the_method_case_sensitively() {
        let p = with(false, "htm", json!("GET"));
        assert!(check_with(&p, "GET", URI, Some(TOKEN), NOW).is_ok());
        let e = check_with(&p, "POST", URI, Some(TOKEN), NOW).unwrap_err();
        assert_eq!(e.reason(), DpopReason::HtmMismatch);
        refused(&with(false, "htm", json!("get")), DpopReason::HtmMismatch);
    }

    #[test]
    fn htu_is_the_uri_without_query_after_normalisation() {
        refused(&with(false, "htu", json!(URI)), DpopReason::HtuInvalid);
        refused(
            &with(false, "htu", json!(format!("{HTU}#frag"))),
            DpopReason::HtuInvalid,
        );
        refused(
            &with(false, "htu", json!(format!("{HTU}?"))),
            DpopReason::HtuInvalid,
        );
        refused(
            &with(false, "htu", json!("/orders")),
            DpopReason::HtuInvalid,
        );
        refused(
            &with(false, "htu", json!("ftp://api.example/orders")),
            DpopReason::HtuInvalid,
        );
        refused(
            &with(false, "htu", json!("https://u@api.example/orders")),
            DpopReason::HtuInvalid,
        );
        refused(
            &with(false, "htu", json!("https://api.example/orders/")),
            DpopReason::HtuMismatch,
        );
        refused(
            &with(false, "htu", json!("https://api.example/Orders")),
            DpopReason::HtuMismatch,
        );
        refused(
            &with(false, "htu", json!("http://api.example/orders")),
            DpopReason::HtuMismatch,
        );
        refused(
            &with(false, "htu", json!("https://api.example:8443/orders")),
            DpopReason::HtuMismatch,
        );
        refused(
            &with(false, "htu", json!("https://api.example.evil/orders")),
            DpopReason::HtuMismatch,
        );
        for same in [
            "HTTPS://API.Example/orders",
            "https://api.example:443/orders",
            "https://api.example:/orders",
            "https://api.example/%6Frders",
            "https://api.example/a/../orders",
            "https://api.example/./orders",
        ] {
            let p = with(false, "htu", json!(same));
            check(&p).unwrap_or_else(|e| panic!("{same}: {e}"));
        }
        // The request URI is normalised too, and its fragment dropped.
        let p = with(false, "htu", json!("https://api.example/"));
        assert!(check_with(&p, "GET", "https://API.example:443", Some(TOKEN), NOW).is_ok());
        assert!(check_with(&p, "GET", "https://api.example/?q#f", Some(TOKEN), NOW).is_ok());
        let e = check_with(&p, "GET", "/", Some(TOKEN), NOW).unwrap_err();
        assert_eq!(e.reason(), DpopReason::HtuMismatch);
        // The same text on both sides is still checked.
        let p = with(false, "htu", json!("ftp://api.example/orders"));
        let e = check_with(&p, "GET", "ftp://api.example/orders", Some(TOKEN), NOW).unwrap_err();
        assert_eq!(e.reason(), DpopReason::HtuInvalid);
    }

    #[test]
    fn normalisation_table() {
        let n = |s| normalize_htu(s, Htu::Request);
        assert_eq!(n("HTTP://Example.COM").unwrap(), "http://example.com/");
        assert_eq!(
            n("http://example.com:80/a").unwrap(),
            "http://example.com/a"
        );
        assert_eq!(
            n("http://example.com:0080/a").unwrap(),
            "http://example.com/a"
        );
        assert_eq!(
            n("https://example.com:80/a").unwrap(),
            "https://example.com:80/a"
        );
        assert_eq!(
            n("http://example.com:443/a").unwrap(),
            "http://example.com:443/a"
        );
        assert_eq!(
            n("https://example.com/a%2fb%7e").unwrap(),
            "https://example.com/a%2Fb~"
        );
        assert_eq!(
            n("https://[2001:DB8::1]:443/x").unwrap(),
            "https://[2001:db8::1]/x"
        );
        assert_eq!(
            n("https://[2001:db8::1]:8443").unwrap(),
            "https://[2001:db8::1]:8443/"
        );
        assert_eq!(n("https://e.com/a/b/../../..").unwrap(), "https://e.com/");
        assert_eq!(n("https://e.com/a/./b/.").unwrap(), "https://e.com/a/b/");
        assert_eq!(n("https://e.com/a?x=1#y").unwrap(), "https://e.com/a");
        for bad in [
            "https://e.com:0/",
            "https://e.com:65536/",
            "https://e.com:123456/",
            "https://e.com:8a/",
            "https://:443/",
            "https:///a",
            "https://e.com/a%zz",
            "https://e.com/a%2",
            "https://e.com/a b",
            "https://e.com/é",
            "https://[::1/",
            "https://[::1]x/",
            "https://[zz]/",
            "mailto:a@e.com",
        ] {
            assert!(n(bad).is_err(), "{bad}");
        }
        assert!(normalize_htu(
            &format!("https://e.com/{}", "a".repeat(MAX_HTU_LEN)),
            Htu::Request
        )
        .is_err());
        assert!(normalize_htu("https://e.com/?", Htu::Proof).is_err());
    }

    #[test]
    fn iat_window_with_leeway() {
        let p = forge(es(), &header(es()), &claims());
        let at = |now| {
            check_with(&p, "GET", URI, Some(TOKEN), now)
                .map(|_| ())
                .map_err(|e| e.reason())
        };
        // iat = NOW; max age 60, leeway 5.
        assert_eq!(at(NOW + 65), Ok(()));
        assert_eq!(at(NOW + 66), Err(DpopReason::Stale));
        assert_eq!(at(NOW - 5), Ok(()));
        assert_eq!(at(NOW - 6), Err(DpopReason::IssuedInFuture));
        let old = with(false, "iat", json!(NOW - 3600));
        refused(&old, DpopReason::Stale);
        let fractional = with(false, "iat", json!(NOW as f64 + 0.5));
        assert!(check(&fractional).is_ok());
        refused(&with(false, "iat", json!(-1)), DpopReason::Invalid);
    }

    #[test]
    fn ath_is_the_hash_of_the_presented_token() {
        let p = forge(es(), &header(es()), &claims());
        let e = check_with(&p, "GET", URI, Some("another.token.x"), NOW).unwrap_err();
        assert_eq!(e.reason(), DpopReason::AthMismatch);
        refused(
            &with(false, "ath", json!(access_token_hash("x"))),
            DpopReason::AthMismatch,
        );
        // Base64url with padding is not the hash's encoding.
        refused(
            &with(
                false,
                "ath",
                json!(format!("{}=", access_token_hash(TOKEN))),
            ),
            DpopReason::AthMismatch,
        );
        // RFC 9449 section 7.1's example token and ath.
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 7638 section 3.1: the RFC 7517 example RSA key, with members the thumbprint
        // leaves out (alg, kid).
        let rfc = json!({"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"});
        let h = json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": rfc});
        let (header, at) = Header::from_json_with_jwk(h.to_string().into_bytes(), 8).unwrap();
        let (jwk, key) = proof_key(&header, at, Algorithm::RS256).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RS256);
        assert_eq!(
            jkt(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(jkt(&jwk), jwk.thumbprint());
        // RFC 9449 section 4.1's example proof key and its section 6.1 jkt.
        let ec = json!({"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}});
        let (header, at) = Header::from_json_with_jwk(ec.to_string().into_bytes(), 8).unwrap();
        let (jwk, _) = proof_key(&header, at, Algorithm::ES256).unwrap();
        assert_eq!(jkt(&jwk), jwk.thumbprint());
        assert_eq!(
            jkt(&jwk).as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
    }

    fn access_token(cnf: Value) -> Verified {
        let issuer = SigningKey::generate(Algorithm::ES256).unwrap();
        let mut c = json!({"iss": "https://id.example", "sub": "u", "exp": NOW + 600});
        if !cnf.is_null() {
            c["cnf"] = cnf;
        }
        let t = sign(&issuer, c.as_object().unwrap(), Some("at+jwt")).unwrap();
        Verifier::new(
            KeySet::new().with(issuer.verifying_key()),
            Validation::new(&[Algorithm::ES256]).issuer("https://id.example"),
        )
        .unwrap()
        .verify(&t, NOW)
        .unwrap()
    }

    #[test]
    fn token_binding_compares_cnf_jkt() {
        let proof = check(&forge(es(), &header(es()), &claims())).unwrap();
        let bound = access_token(json!({"jkt": proof.jkt}));
        assert_eq!(check_token_binding(&bound, &proof), Ok(()));
        let other =
            access_token(json!({"jkt": key(Algorithm::EdDSA).public_jwk().unwrap().thumbprint()}));
        assert_eq!(
            check_token_binding(&other, &proof).unwrap_err().reason(),
            DpopReason::JktMismatch
        );
        let cut = access_token(json!({"jkt": &proof.jkt[..42]}));
        assert_eq!(
            check_token_binding(&cut, &proof).unwrap_err().reason(),
            DpopReason::JktMismatch
        );
        assert_eq!(
            check_token_binding(&access_token(json!({"jkt": 5})), &proof)
                .unwrap_err()
                .reason(),
            DpopReason::JktMismatch
        );
        assert_eq!(
            check_token_binding(&access_token(json!("jkt")), &proof)
                .unwrap_err()
                .reason(),
            DpopReason::JktMismatch
        );
        assert_eq!(
            check_token_binding(&access_token(Value::Null), &proof)
                .unwrap_err()
                .reason(),
            DpopReason::TokenNotBound
        );
        assert_eq!(
            check_token_binding(&access_token(json!({"x5t#S256": "abc"})), &proof)
                .unwrap_err()
                .reason(),
            DpopReason::TokenNotBound
        );
    }

    #[test]
    fn reason_codes_are_unique_and_answered() {
        let mut names: Vec<&str> = DpopReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DpopReason::ALL.len());
        for r in DpopReason::ALL {
            assert!(r.as_str().starts_with("dpop_"));
            let status = if matches!(
                r,
                DpopReason::ReplayUnavailable | DpopReason::ReplayKeyLimit
            ) {
                503
            } else {
                401
            };
            assert_eq!(r.http_status(), status);
        }
        assert_eq!(DpopReason::HtmMismatch.error_code(), "invalid_dpop_proof");
        assert_eq!(DpopReason::JktMismatch.error_code(), "invalid_token");
    }

    #[test]
    fn nonces_pass_for_two_epochs_and_only_under_their_key() {
        let k = NonceKey::new(&[7u8; 32], 300).unwrap();
        let n = k.issue(1_000_000);
        assert_eq!(n.len(), 32);
        assert!(k.accepts(&n, 1_000_000));
        assert!(k.accepts(&n, 1_000_000 + 300), "the previous epoch");
        assert!(!k.accepts(&n, 1_000_000 + 600), "two epochs later");
        assert!(!k.accepts(&n, 1_000_000 - 300), "from the future");
        assert!(k.is_previous(&n, 1_000_000 + 300));
        assert!(!k.is_previous(&n, 1_000_000));
        let other = NonceKey::new(&[8u8; 32], 300).unwrap();
        assert!(!other.accepts(&n, 1_000_000));
        let mut bad = n.clone().into_bytes();
        bad[31] = if bad[31] == b'A' { b'B' } else { b'A' };
        assert!(!k.accepts(std::str::from_utf8(&bad).unwrap(), 1_000_000));
        assert!(!k.accepts("", 1_000_000));
        assert!(NonceKey::new(&[1u8; 31], 300).is_err());
    }

    /// A cheap fuzz loop: mutated proofs and random URIs never panic, every refusal has a
    /// reason, and `htu` normalisation is idempotent (a normalised URI normalises to itself,
    /// so no second pass can make two different URIs equal).
    #[test]
    fn random_inputs_never_panic_and_normalisation_is_idempotent() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = forge(es(), &header(es()), &claims());
        for _ in 0..3000 {
            let mut p = good.clone().into_bytes();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % p.len();
                p[i] = match next() % 4 {
                    0 => b'.',
                    1 => (next() % 256) as u8,
                    2 => b"AQgw_-="[(next() % 7) as usize],
                    _ => p[(next() as usize) % p.len()],
                };
            }
            let r = DpopPolicy::default().verify(
                &DpopRequest {
                    proofs: &[&p],
                    method: "GET",
                    uri: URI,
                    access_token: Some(TOKEN),
                },
                NOW,
            );
            if p != good.as_bytes() {
                assert!(
                    r.is_err() || p.len() != good.len(),
                    "a mutated proof passed"
                );
            }
        }
        const PARTS: [&str; 24] = [
            "https://",
            "HTTP://",
            "a.example",
            "[::1]",
            "[",
            "]",
            ":",
            ":443",
            ":80",
            ":0",
            "/",
            "//",
            ".",
            "..",
            "%2e",
            "%2E",
            "%2f",
            "%41",
            "%",
            "?",
            "#",
            "@",
            "x",
            "\\",
        ];
        for _ in 0..20_000 {
            let mut u = String::new();
            for _ in 0..(next() % 8 + 1) {
                u.push_str(PARTS[(next() as usize) % PARTS.len()]);
            }
            for what in [Htu::Proof, Htu::Request] {
                if let Ok(n) = normalize_htu(&u, what) {
                    assert_eq!(
                        normalize_htu(&n, Htu::Proof).as_deref(),
                        Ok(n.as_str()),
                        "{u}"
                    );
                }
            }
        }
    }
}
