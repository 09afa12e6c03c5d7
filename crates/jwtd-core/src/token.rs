//! Compact JWS parsing, key selection, verification and signing.

use crate::alg::Algorithm;
use crate::error::{Error, Reason};
use crate::jwk::Jwks;
use crate::key::{SigningKey, VerifyingKey};
use crate::policy::{self, Validation};
use crate::{b64, json};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Without a `kid`, at most this many keys fitting the algorithm are tried; more is refused
/// rather than letting one token cost dozens of signature checks.
pub const MAX_KIDLESS_CANDIDATES: usize = 8;

/// A parsed JOSE header.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// The token's algorithm.
    pub alg: Algorithm,
    /// Key id.
    pub kid: Option<String>,
    /// Media type of the token (e.g. `JWT`, `at+jwt`).
    pub typ: Option<String>,
    /// Content type.
    pub cty: Option<String>,
    /// Every header member, as sent.
    pub raw: Map<String, Value>,
}

/// Members that name a key source inside the token; jwtd never fetches or trusts them.
const EMBEDDED_KEY_MEMBERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

impl Header {
    fn from_json(bytes: &[u8], max_depth: usize) -> Result<Header, Error> {
        let raw = json::parse_object(bytes, max_depth)
            .map_err(|e| Error::malformed(format!("header is not valid JSON: {e}")))?;
        let alg = match raw.get("alg") {
            Some(Value::String(name)) => match Algorithm::from_name(name) {
                Some(alg) => alg,
                None if name.eq_ignore_ascii_case("none") => {
                    return Err(Error::new(
                        Reason::UnsupportedAlgorithm,
                        "alg \"none\" (unsigned token) is never accepted",
                    ))
                }
                None => {
                    return Err(Error::new(
                        Reason::UnsupportedAlgorithm,
                        format!("alg {} is not supported", policy::shown(&raw["alg"])),
                    ))
                }
            },
            Some(_) => return Err(Error::malformed("header \"alg\" must be a string")),
            None => return Err(Error::malformed("header has no \"alg\"")),
        };
        if raw.contains_key("enc") {
            return Err(Error::malformed(
                "header has \"enc\": this is a JWE, and jwtd verifies signed tokens (JWS) only",
            ));
        }
        if let Some(crit) = raw.get("crit") {
            return Err(match crit {
                Value::Array(items) if items.is_empty() => {
                    Error::malformed("header \"crit\" must not be empty")
                }
                Value::Array(items) => Error::malformed(format!(
                    "header \"crit\" lists {}, which jwtd does not understand",
                    policy::shown(&Value::Array(items.clone()))
                )),
                _ => Error::malformed("header \"crit\" must be an array of names"),
            });
        }
        match raw.get("b64") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Err(Error::malformed(
                    "unencoded payloads (\"b64\": false, RFC 7797) are not supported",
                ))
            }
            Some(_) => return Err(Error::malformed("header \"b64\" must be a boolean")),
        }
        let string = |name: &str| -> Result<Option<String>, Error> {
            match raw.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::malformed(format!(
                    "header {name:?} must be a string"
                ))),
            }
        };
        Ok(Header {
            alg,
            kid: string("kid")?,
            typ: string("typ")?,
            cty: string("cty")?,
            raw,
        })
    }

    fn embedded_key_member(&self) -> Option<&'static str> {
        EMBEDDED_KEY_MEMBERS
            .into_iter()
            .find(|m| self.raw.contains_key(*m))
    }
}

/// The three parts of a compact JWS, split and checked for size, still encoded.
struct Parts<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
    signing_input: &'a [u8],
}

fn split(token: &[u8], max_len: usize) -> Result<Parts<'_>, Error> {
    if token.len() > max_len {
        return Err(Error::new(
            Reason::TokenTooLarge,
            format!("token is {} bytes; the limit is {max_len}", token.len()),
        ));
    }
    let mut dots = memchr_dots(token);
    let (Some(first), Some(second)) = (dots.next(), dots.next()) else {
        return Err(Error::malformed(
            "not a compact JWS: expected three base64url parts separated by dots",
        ));
    };
    let extra = dots.count();
    if extra == 2 {
        return Err(Error::malformed(
            "token has five parts: this is a JWE (encrypted token); jwtd verifies signed tokens (JWS) only",
        ));
    }
    if extra != 0 {
        return Err(Error::malformed(format!(
            "not a compact JWS: expected 3 parts, found {}",
            extra + 3
        )));
    }
    Ok(Parts {
        header: &token[..first],
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
        signing_input: &token[..second],
    })
}

fn memchr_dots(token: &[u8]) -> impl Iterator<Item = usize> + '_ {
    token
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'.')
        .map(|(i, _)| i)
}

fn decode_part(part: &[u8], what: &str) -> Result<Vec<u8>, Error> {
    b64::decode(part).ok_or_else(|| {
        Error::malformed(format!(
            "{what} is not canonical base64url (no padding, no '+' or '/', no whitespace)"
        ))
    })
}

/// A token whose signature and claims were verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// The header.
    pub header: Header,
    /// The claims set.
    pub claims: Map<String, Value>,
}

/// A token decoded without any verification, for display only. Never trust it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unverified {
    /// The header (parsed with the same strictness as verification).
    pub header: Header,
    /// The claims set, if the payload is a JSON object.
    pub claims: Result<Map<String, Value>, String>,
}

/// Decodes a token without verifying anything, applying the same parsing rules as
/// verification (size, base64url, strict JSON). For display and debugging only.
pub fn decode_unverified(token: &str) -> Result<Unverified, Error> {
    let token = token.trim().as_bytes();
    let parts = split(token, policy::DEFAULT_MAX_TOKEN_LEN)?;
    let header = Header::from_json(
        &decode_part(parts.header, "header")?,
        policy::DEFAULT_MAX_JSON_DEPTH,
    )?;
    decode_part(parts.signature, "signature")?;
    let payload = decode_part(parts.payload, "payload")?;
    let claims = json::parse_object(&payload, policy::DEFAULT_MAX_JSON_DEPTH);
    Ok(Unverified { header, claims })
}

/// A set of verification keys, each pinned to one algorithm.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
}

/// A JWKS member that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the JWKS `keys` array.
    pub index: usize,
    /// The member's `kid`, if any.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub why: String,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Adds a key.
    pub fn push(&mut self, key: VerifyingKey) {
        self.keys.push(Arc::new(key));
    }

    /// Builder form of [`KeySet::push`].
    pub fn with(mut self, key: VerifyingKey) -> Self {
        self.push(key);
        self
    }

    /// The keys.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// True when the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Imports the usable keys of a JWKS. A key without `alg` is bound to the one allowed
    /// algorithm its type fits (EC and OKP: its curve's); when several fit it is skipped as
    /// ambiguous. Keys that cannot be used (encryption keys, unknown types, weak keys) are
    /// returned as [`SkippedKey`]s with the reason, never silently dropped.
    pub fn from_jwks(jwks: &Jwks, allowed: &[Algorithm]) -> (KeySet, Vec<SkippedKey>) {
        let mut set = KeySet::new();
        let mut skipped = Vec::new();
        for (index, raw) in jwks.keys.iter().enumerate() {
            let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
            let result = serde_json::from_value::<crate::Jwk>(raw.clone())
                .map_err(|e| format!("not a JWK: {e}"))
                .and_then(|jwk| {
                    let fallback = if jwk.alg.is_none() {
                        let fits: Vec<Algorithm> = allowed
                            .iter()
                            .copied()
                            .filter(|a| kty_fits(&jwk.kty, *a))
                            .collect();
                        match fits.as_slice() {
                            [one] => Some(*one),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    VerifyingKey::from_jwk(&jwk, fallback).map_err(|e| e.to_string())
                });
            match result {
                Ok(key) => set.push(key),
                Err(why) => skipped.push(SkippedKey { index, kid, why }),
            }
        }
        (set, skipped)
    }

    /// Picks the keys that may verify a token with this header, pinned-algorithm first.
    fn candidates(&self, header: &Header) -> Result<Vec<&VerifyingKey>, Error> {
        if let Some(kid) = header.kid.as_deref() {
            let named: Vec<&VerifyingKey> = self
                .keys
                .iter()
                .map(|k| &**k)
                .filter(|k| k.kid() == Some(kid))
                .collect();
            if !named.is_empty() {
                let fit: Vec<&VerifyingKey> = named
                    .iter()
                    .copied()
                    .filter(|k| k.algorithm() == header.alg)
                    .collect();
                if fit.is_empty() {
                    return Err(Error::new(
                        Reason::AlgorithmNotAllowed,
                        format!(
                            "key {kid:?} is pinned to {}; the token says {}",
                            named[0].algorithm(),
                            header.alg
                        ),
                    ));
                }
                return Ok(fit);
            }
            // Keys configured without a kid (a single PEM, a bare secret) match any kid.
            let anonymous: Vec<&VerifyingKey> = self
                .keys
                .iter()
                .map(|k| &**k)
                .filter(|k| k.kid().is_none() && k.algorithm() == header.alg)
                .collect();
            if anonymous.is_empty() {
                return Err(Error::new(
                    Reason::UnknownKey,
                    format!("no {} key with kid {kid:?}", header.alg),
                ));
            }
            return Ok(anonymous);
        }
        let fit: Vec<&VerifyingKey> = self
            .keys
            .iter()
            .map(|k| &**k)
            .filter(|k| k.algorithm() == header.alg)
            .collect();
        if fit.is_empty() {
            return Err(Error::new(
                Reason::UnknownKey,
                format!("no key is configured for {}", header.alg),
            ));
        }
        if fit.len() > MAX_KIDLESS_CANDIDATES {
            return Err(Error::new(
                Reason::UnknownKey,
                format!(
                    "token has no kid and {} {} keys fit; refusing to try more than {MAX_KIDLESS_CANDIDATES}",
                    fit.len(),
                    header.alg
                ),
            ));
        }
        Ok(fit)
    }
}

fn kty_fits(kty: &str, alg: Algorithm) -> bool {
    use crate::alg::Family;
    matches!(
        (kty, alg.family()),
        ("RSA", Family::Rsa) | ("EC", Family::Ec) | ("OKP", Family::Okp) | ("oct", Family::Hmac)
    )
}

/// Verifies tokens against a key set and a validation policy. Cheap to share: wrap it in an
/// `Arc` and call [`Verifier::verify`] from any thread.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: KeySet,
    validation: Validation,
}

impl Verifier {
    /// A verifier. Fails when the policy allows no algorithm.
    pub fn new(keys: KeySet, validation: Validation) -> Result<Verifier, Error> {
        if validation.algorithms.is_empty() {
            return Err(Error::new(
                Reason::AlgorithmNotAllowed,
                "no algorithm is allowed: name the algorithms your issuer uses",
            ));
        }
        Ok(Verifier { keys, validation })
    }

    /// The key set.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The validation policy.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch): size, structure, algorithm,
    /// key, signature, then every claim rule. Nothing in the payload is parsed before the
    /// signature verifies.
    pub fn verify(&self, token: &str, now: u64) -> Result<Verified, Error> {
        let (header, payload) = self.verify_jws(token.as_bytes())?;
        self.validation.check_typ(header.typ.as_deref())?;
        let claims = json::parse_object(&payload, self.validation.max_json_depth)
            .map_err(|e| Error::malformed(format!("claims are not a valid JSON object: {e}")))?;
        self.validation.validate_claims(&claims, now)?;
        Ok(Verified { header, claims })
    }

    /// Verifies with the system clock.
    pub fn verify_now(&self, token: &str) -> Result<Verified, Error> {
        self.verify(token, unix_now())
    }

    /// Verifies only the signature of a compact JWS and returns its header and raw payload
    /// ("raw-JWS mode", for payloads that are not JWT claims). Algorithm and key rules apply;
    /// no claim rule does.
    pub fn verify_jws(&self, token: &[u8]) -> Result<(Header, Vec<u8>), Error> {
        let parts = split(token, self.validation.max_token_len)?;
        let header = Header::from_json(
            &decode_part(parts.header, "header")?,
            self.validation.max_json_depth,
        )?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(Error::new(
                Reason::AlgorithmNotAllowed,
                format!(
                    "alg {} is not allowed (allowed: {})",
                    header.alg,
                    self.validation
                        .algorithms
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let candidates = self.keys.candidates(&header)?;
        let signature = decode_part(parts.signature, "signature")?;
        let ok = candidates
            .iter()
            .any(|k| k.verify_signature(parts.signing_input, &signature));
        if !ok {
            let mut message = String::from("signature does not verify");
            if let Some(m) = header.embedded_key_member() {
                message.push_str(&format!(
                    "; header \"{m}\" is never trusted as a key source"
                ));
            }
            return Err(Error::new(Reason::BadSignature, message));
        }
        let payload = decode_part(parts.payload, "payload")?;
        Ok((header, payload))
    }
}

/// Seconds since the Unix epoch from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs a claims set as a compact JWS with header `{"alg", "kid" (if any), "typ"}`.
/// `typ` defaults to `JWT` when `None`.
pub fn sign(
    key: &SigningKey,
    claims: &Map<String, Value>,
    typ: Option<&str>,
) -> Result<String, Error> {
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(key.algorithm().as_str().into()));
    if let Some(kid) = key.kid() {
        header.insert("kid".into(), Value::String(kid.into()));
    }
    header.insert("typ".into(), Value::String(typ.unwrap_or("JWT").into()));
    let payload = serde_json::to_vec(claims).map_err(|e| Error::malformed(e.to_string()))?;
    sign_raw(key, &header, &payload)
}

/// Signs an arbitrary payload with an explicit header (whose `alg` must be the key's).
pub fn sign_raw(
    key: &SigningKey,
    header: &Map<String, Value>,
    payload: &[u8],
) -> Result<String, Error> {
    if header.get("alg").and_then(Value::as_str) != Some(key.algorithm().as_str()) {
        return Err(Error::new(
            Reason::AlgorithmNotAllowed,
            format!(
                "header alg must be the key's algorithm, {}",
                key.algorithm()
            ),
        ));
    }
    let header = serde_json::to_vec(header).map_err(|e| Error::malformed(e.to_string()))?;
    let mut out = String::with_capacity(header.len() * 2 + payload.len() * 4 / 3 + 400);
    b64::encode_to(&header, &mut out);
    out.push('.');
    b64::encode_to(payload, &mut out);
    let signature = key.sign_bytes(out.as_bytes())?;
    out.push('.');
    b64::encode_to(&signature, &mut out);
    Ok(out)
}
