//! # jwtd-core
//!
//! The sans-I/O heart of jwtd: strict JWS parsing, keys pinned to one algorithm, signature
//! verification on pre-parsed keys, a validation policy with strict defaults, and signing.
//! No async, no network, no clock unless you ask for [`unix_now`]. Crypto comes from aws-lc-rs.
//!
//! ```
//! use jwtd_core::{sign, Algorithm, KeySet, SigningKey, Validation, Verifier};
//! use serde_json::json;
//!
//! let key = SigningKey::generate(Algorithm::ES256).unwrap().with_default_kid();
//! let claims = json!({"iss": "https://id.example", "aud": "api", "sub": "u1", "exp": 2_000_000_000});
//! let token = sign(&key, claims.as_object().unwrap(), None).unwrap();
//!
//! let verifier = Verifier::new(
//!     KeySet::new().with(key.verifying_key()),
//!     Validation::new(&[Algorithm::ES256]).issuer("https://id.example").audience("api"),
//! )
//! .unwrap();
//! let verified = verifier.verify(&token, 1_900_000_000).unwrap();
//! assert_eq!(verified.claims()["sub"], "u1");
//!
//! let err = verifier.verify(&token, 2_100_000_000).unwrap_err();
//! assert_eq!(err.reason().as_str(), "expired");
//! ```
//!
//! The rules enforced, and why, are in [`security`] (docs/security.md in the repository).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// jwtd's security rules: every reason code and its answer, the algorithms and keys, parsing,
/// the validation policy and what the service adds. The text of docs/security.md, so the crate
/// docs and the repository's document are one text; the service's and the tower layer's tests
/// check that every reason code is in its table and answered as it says.
#[doc = include_str!("../../../docs/security.md")]
pub mod security {}

mod alg;
pub mod b64;
mod cache;
mod dpop;
mod error;
mod json;
mod jwk;
mod key;
mod policy;
mod revocation;
mod token;

pub use alg::{Algorithm, Curve, Family, UnknownAlgorithm};
pub use cache::{TokenCache, TokenCacheConfig, TokenCacheStats, TokenLookup};
pub use dpop::{
    access_token_hash, check_token_binding, make_proof, normalize_htu, replay_key, DpopError,
    DpopPolicy, DpopProof, DpopReason, DpopRequest, Htu, NonceKey, ProofClaims, ProofHeader,
    ProofKeys, DEFAULT_DPOP_ALGORITHMS, DEFAULT_DPOP_LEEWAY, DEFAULT_DPOP_MAX_AGE,
    DEFAULT_MAX_JTI_LEN, DEFAULT_MAX_PROOF_LEN, DPOP_TYP, MAX_HTU_LEN, MAX_NONCE_LEN,
    MIN_NONCE_SECRET,
};
pub use error::{BearerError, Error, GrpcCode, KeyError, Reason, RETRY_AFTER_SECS};
pub use jwk::{Jwk, Jwks};
pub use key::{public_key_pem, SigningKey, VerifyingKey, MIN_RSA_BITS};
pub use policy::{
    lookup, numeric_date, AudienceMode, ClaimCheck, Times, Validation, DEFAULT_LEEWAY,
    DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_TOKEN_LEN, MAX_NUMERIC_DATE,
};
pub use revocation::{Revocation, RevocationKind, RevocationList};
pub use token::{
    decode_unverified, issuer_hint, peek_header, peek_issuer, sign, sign_raw, unix_now, verify,
    Header, KeySet, SkippedKey, Unverified, Verified, Verifier, MAX_CANDIDATES, MAX_HEADER_MEMBERS,
    MAX_JWKS_KEYS, MAX_KID_LEN,
};

/// Parses strict JSON (duplicate members refused, depth bounded) into an object.
pub fn parse_json_object(
    bytes: &[u8],
    max_depth: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    json::parse_object(bytes, max_depth)
}

/// Fills `buf` from the operating system's secure random source (via aws-lc-rs), e.g. for
/// `jti` values.
pub fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    aws_lc_rs::rand::fill(buf)
        .map_err(|_| Error::new(Reason::Malformed, "the system random source failed"))
}
