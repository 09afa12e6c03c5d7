//! Compact JWS parsing, key selection, verification and signing.

use crate::alg::Algorithm;
use crate::b64;
use crate::error::{Error, Reason};
use crate::json::{self, Members};
use crate::jwk::Jwks;
use crate::key::{SigningKey, VerifyingKey};
use crate::policy::{self, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;

/// At most this many keys are tried for one token, whichever way they were selected (by `kid`,
/// keys without a kid for an unknown `kid`, or every key of the algorithm for a token without
/// `kid`); more is refused with `unknown_key` before any signature check, rather than letting
/// one token cost dozens of them.
pub const MAX_CANDIDATES: usize = 8;

/// Most members a JOSE header may have, the members of objects nested in it and the elements of
/// its arrays counted too (real headers have three to five, a `jwk` about ten, an `x5c` chain
/// one per certificate); more is refused as `malformed` as soon as the one too many is read,
/// before any other check, so that no shape of header costs more than reading it once.
pub const MAX_HEADER_MEMBERS: usize = 64;

/// Longest `kid` accepted, in bytes (decoded); a longer one is refused as `malformed` before any
/// key lookup, and JWKS keys with a longer one are skipped, since no token could name them.
pub const MAX_KID_LEN: usize = 256;

/// Most keys imported from one JWKS (real providers publish two to five); the entries after
/// the hundredth imported key are skipped as "too many keys", unparsed, so that a large key set
/// cannot make every kid-less token or every refresh cost more.
pub const MAX_JWKS_KEYS: usize = 100;

/// Longest signature accepted (an RSA-8192 signature); longer ones cannot verify.
const MAX_SIGNATURE_LEN: usize = 1024;

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
    /// A member naming a key source inside the token (`jwk`, `jku`, `x5u`, `x5c`), which jwtd
    /// never uses.
    embedded_key: Option<&'static str>,
    /// The header JSON as sent.
    json: String,
}

/// Members that name a key source inside the token; jwtd never fetches or trusts them.
const EMBEDDED_KEY_MEMBERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

impl Header {
    pub(crate) fn from_json(bytes: Vec<u8>, max_depth: usize) -> Result<Header, Error> {
        Header::from_json_with_jwk(bytes, max_depth).map(|(h, _)| h)
    }

    /// [`Header::from_json`], also returning where the raw JSON of the `jwk` member sits in
    /// [`Header::json`], if it has one (a DPoP proof's key), from the one parse.
    pub(crate) fn from_json_with_jwk(
        bytes: Vec<u8>,
        max_depth: usize,
    ) -> Result<(Header, Option<std::ops::Range<usize>>), Error> {
        let json = String::from_utf8(bytes).map_err(|_| Error::malformed("header is not UTF-8"))?;
        let m = Members::parse_bounded(&json, max_depth, MAX_HEADER_MEMBERS)
            .map_err(|e| Error::malformed(format!("header is not valid JSON: {e}")))?;
        let long_kid =
            || Error::malformed(format!("header \"kid\" is longer than {MAX_KID_LEN} bytes"));
        // No byte takes more than six characters to write (`\u006b`): a longer raw `kid` is
        // too long without being unescaped.
        if m.get("kid")
            .is_some_and(|raw| raw.get().len() > 6 * MAX_KID_LEN + 2)
        {
            return Err(long_kid());
        }
        let string = |name: &str| -> Result<Option<String>, Error> {
            match m.get(name) {
                None => Ok(None),
                Some(raw) => json::as_str(raw.get())
                    .map(|s| Some(s.into_owned()))
                    .ok_or_else(|| Error::malformed(format!("header {name:?} must be a string"))),
            }
        };
        let alg = match m.get("alg") {
            None => return Err(Error::malformed("header has no \"alg\"")),
            Some(raw) => {
                let name = json::as_str(raw.get())
                    .ok_or_else(|| Error::malformed("header \"alg\" must be a string"))?;
                match Algorithm::from_name(&name) {
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
                            format!("alg {} is not supported", policy::shown_raw(raw.get())),
                        ))
                    }
                }
            }
        };
        if m.contains("enc") {
            return Err(Error::malformed(
                "header has \"enc\": this is a JWE, and jwtd verifies signed tokens (JWS) only",
            ));
        }
        if let Some(crit) = m.get("crit") {
            return Err(match json::value(crit.get()) {
                Value::Array(items) if items.is_empty() => {
                    Error::malformed("header \"crit\" must not be empty")
                }
                Value::Array(items) => Error::malformed(format!(
                    "header \"crit\" lists {}, which jwtd does not understand",
                    policy::shown(&Value::Array(items))
                )),
                _ => Error::malformed("header \"crit\" must be an array of names"),
            });
        }
        match m.get("b64").map(|r| r.get()) {
            None | Some("true") => {}
            Some("false") => {
                return Err(Error::malformed(
                    "unencoded payloads (\"b64\": false, RFC 7797) are not supported",
                ))
            }
            Some(_) => return Err(Error::malformed("header \"b64\" must be a boolean")),
        }
        let (kid, typ, cty) = (string("kid")?, string("typ")?, string("cty")?);
        if kid.as_ref().is_some_and(|k| k.len() > MAX_KID_LEN) {
            return Err(long_kid());
        }
        let embedded_key = EMBEDDED_KEY_MEMBERS.into_iter().find(|n| m.contains(n));
        // `raw` borrows from `json`: its offset is a plain address difference.
        let jwk = m.get("jwk").map(|raw| {
            let start = raw.get().as_ptr() as usize - json.as_ptr() as usize;
            start..start + raw.get().len()
        });
        drop(m);
        Ok((
            Header {
                alg,
                kid,
                typ,
                cty,
                embedded_key,
                json,
            },
            jwk,
        ))
    }

    /// The header JSON exactly as the token carried it.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Every header member, parsed.
    pub fn members(&self) -> Map<String, Value> {
        serde_json::from_str(&self.json).unwrap_or_default()
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
    let mut dots = memchr::memchr_iter(b'.', token);
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

fn decode_part(part: &[u8], what: &str) -> Result<Vec<u8>, Error> {
    b64::decode(part).ok_or_else(|| {
        Error::malformed(format!(
            "{what} is not canonical base64url (no padding, no '+' or '/', no whitespace)"
        ))
    })
}

/// A token whose signature and claims were verified.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The header.
    pub header: Header,
    claims_json: String,
    ids: Ids,
    /// The key whose signature check passed (shared with its key set, not copied).
    key: Arc<VerifyingKey>,
    /// What a front derived from this token, kept with it (see [`Verified::keep_memo`]).
    memo: Memo,
}

/// A value derived from a verified token by a front (the identity headers it renders for it),
/// kept with the token for as long as the token is shared (e.g. held by the verified-token
/// cache), so repeated requests with the same token do not derive it again. Set at most once;
/// never copied by [`Clone`] (a clone starts without one); ignored by equality.
#[derive(Default)]
struct Memo {
    value: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    /// [`Verified::may_have_cnf`], found once.
    cnf: std::sync::OnceLock<bool>,
    /// [`Verified::token_sha256`], found once: the length of the token hashed, and its hash.
    sha256: std::sync::OnceLock<(usize, [u8; 32])>,
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.value.get().is_some() {
            "Memo(kept)"
        } else {
            "Memo(none)"
        })
    }
}

/// Bytes a memo may always weigh, whatever the claims' size (see [`Verified::memo_budget`]).
const MEMO_BASE: usize = 256;

impl PartialEq for Verified {
    fn eq(&self, other: &Verified) -> bool {
        self.header == other.header
            && self.claims_json == other.claims_json
            && self.ids == other.ids
            && Arc::ptr_eq(&self.key, &other.key)
    }
}

/// Where a string claim sits: a range of the claims JSON when it has no escapes (no copy), or
/// its own unescaped copy.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Span {
    Absent,
    Range(u32, u32),
    Owned(Box<str>),
}

impl Span {
    /// Where the string claim `name` sits. A claim that is present but not a string is refused
    /// (`malformed`): `iss`, `sub` and `jti` are StringOrURI / string values (RFC 7519 §4.1), and
    /// a number would escape revocation while still being forwarded as an identity.
    fn of(claims: &str, members: &Members<'_>, name: &str) -> Result<Span, Error> {
        let Some(raw) = members.get(name) else {
            return Ok(Span::Absent);
        };
        Ok(match crate::json::as_str(raw.get()) {
            None => {
                return Err(Error::malformed(format!(
                    "claim {name:?} must be a string (RFC 7519)"
                )))
            }
            Some(std::borrow::Cow::Owned(s)) => Span::Owned(s.into_boxed_str()),
            Some(std::borrow::Cow::Borrowed(s)) => {
                // `s` borrows from `claims`: its offset is a plain address difference.
                let start = s.as_ptr() as usize - claims.as_ptr() as usize;
                Span::Range(start as u32, (start + s.len()) as u32)
            }
        })
    }

    fn get<'a>(&'a self, claims: &'a str) -> Option<&'a str> {
        match self {
            Span::Absent => None,
            Span::Range(a, b) => claims.get(*a as usize..*b as usize),
            Span::Owned(s) => Some(s),
        }
    }
}

/// The claims revocation looks at, found once while verifying.
#[derive(Clone, Debug, PartialEq)]
struct Ids {
    iss: Span,
    sub: Span,
    jti: Span,
    iat: Option<f64>,
    exp: Option<f64>,
}

impl Span {
    fn heap_bytes(&self) -> usize {
        match self {
            Span::Owned(s) => s.len(),
            _ => 0,
        }
    }
}

impl Verified {
    /// The heap memory this value owns (its strings' capacities; not its own size), for the
    /// verified-token cache's byte bound.
    pub(crate) fn heap_bytes(&self) -> usize {
        let h = &self.header;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        self.claims_json.capacity()
            + h.json.capacity()
            + opt(&h.kid)
            + opt(&h.typ)
            + opt(&h.cty)
            + self.ids.iss.heap_bytes()
            + self.ids.sub.heap_bytes()
            + self.ids.jti.heap_bytes()
            // Counted whether or not a memo is ever kept: the cache weighs an entry once.
            + self.memo_budget()
    }

    /// The most a memo may weigh, in bytes: 256 plus half the claims' length. The
    /// verified-token cache counts this much for every entry, so what
    /// [`Verified::keep_memo`] keeps stays inside the cache's byte bound.
    pub fn memo_budget(&self) -> usize {
        MEMO_BASE + self.claims_json.len() / 2
    }

    /// False when the claims cannot hold a `cnf` member (RFC 7800 confirmation, the binding
    /// of DPoP- and certificate-bound tokens): its text has no `cnf` and no `\u` escape that
    /// could spell it. Found once per token (a cached token answers without a scan), so the
    /// binding checks of most tokens, which are not bound, parse no claims.
    pub fn may_have_cnf(&self) -> bool {
        *self
            .memo
            .cnf
            .get_or_init(|| self.claims_json.contains("cnf") || self.claims_json.contains("\\u"))
    }

    /// The SHA-256 of `token`, which must be the token this was verified from (what a DPoP
    /// proof's `ath` hashes): computed at the first call and kept with this value, so a token
    /// answered from the verified-token cache is hashed once, not per request. A token of
    /// another length than the first one hashed is hashed afresh, never answered from the
    /// memo.
    pub fn token_sha256(&self, token: &str) -> [u8; 32] {
        let hash = || {
            let mut out = [0u8; 32];
            out.copy_from_slice(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
            );
            out
        };
        let (len, h) = self.memo.sha256.get_or_init(|| (token.len(), hash()));
        if *len == token.len() {
            *h
        } else {
            hash()
        }
    }

    /// The memo of type `T` kept with this token, if any.
    pub fn memo<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.memo.value.get().and_then(|m| m.downcast_ref::<T>())
    }

    /// Keeps `value`, which weighs about `bytes` (heap and inline), with this token when no
    /// memo is kept yet and `bytes` is within [`Verified::memo_budget`]; returns the memo of
    /// type `T` now kept (this one, or one kept before), `None` when there is none.
    pub fn keep_memo<T: std::any::Any + Send + Sync>(&self, value: T, bytes: usize) -> Option<&T> {
        if bytes <= self.memo_budget() {
            // A concurrent keeper may win; either value was derived the same way.
            let _ = self.memo.value.set(Box::new(value));
        }
        self.memo()
    }

    /// The verified claims set as JSON text, exactly as signed (no re-serialization).
    pub fn claims_json(&self) -> &str {
        &self.claims_json
    }

    /// The verified claims, parsed.
    pub fn claims(&self) -> Map<String, Value> {
        serde_json::from_str(&self.claims_json).unwrap_or_default()
    }

    /// The key that verified the signature: the one revocation by key id looks at (a token's
    /// header `kid` may be absent, or name a key it was not verified with).
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The `iss` claim, when it is a string.
    pub fn iss(&self) -> Option<&str> {
        self.ids.iss.get(&self.claims_json)
    }

    /// The `sub` claim, when it is a string.
    pub fn sub(&self) -> Option<&str> {
        self.ids.sub.get(&self.claims_json)
    }

    /// The `jti` claim, when it is a string.
    pub fn jti(&self) -> Option<&str> {
        self.ids.jti.get(&self.claims_json)
    }

    /// The `iat` claim (seconds since the epoch), when present.
    pub fn issued_at(&self) -> Option<f64> {
        self.ids.iat
    }

    /// The `exp` claim (seconds since the epoch), when present.
    pub fn expires_at(&self) -> Option<f64> {
        self.ids.exp
    }

    /// One claim by path (a whole name, a dotted path, or a JSON pointer; see
    /// [`crate::ClaimCheck`]).
    pub fn claim(&self, path: &str) -> Option<Value> {
        let members = Members::parse(&self.claims_json, usize::MAX).ok()?;
        policy::lookup_set(&members, path)
    }
}

/// A token decoded without any verification, for display only. Never trust it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unverified {
    /// The header (parsed with the same strictness as verification).
    pub header: Header,
    /// The claims set, if the payload is a JSON object.
    pub claims: Result<Map<String, Value>, String>,
}

/// Reads only a token's header, without verifying anything (for key lookup by `kid` before
/// verification, e.g. to decide whether a key set must be refreshed).
pub fn peek_header(token: &str) -> Result<Header, Error> {
    let parts = split(token.as_bytes(), policy::DEFAULT_MAX_TOKEN_LEN)?;
    Header::from_json(
        decode_part(parts.header, "header")?,
        policy::DEFAULT_MAX_JSON_DEPTH,
    )
}

/// Reads a token's `iss` without verifying anything, to choose which configured issuer should
/// verify it. Never trust the answer for anything else.
pub fn peek_issuer(token: &str) -> Result<Option<String>, Error> {
    let parts = split(token.as_bytes(), policy::DEFAULT_MAX_TOKEN_LEN)?;
    let payload = String::from_utf8(decode_part(parts.payload, "payload")?)
        .map_err(|_| Error::malformed("claims are not UTF-8"))?;
    let members = Members::parse(&payload, policy::DEFAULT_MAX_JSON_DEPTH)
        .map_err(|e| Error::malformed(format!("claims are not a valid JSON object: {e}")))?;
    Ok(members
        .get("iss")
        .and_then(|raw| json::as_str(raw.get()).map(|s| s.into_owned())))
}

/// A fast routing hint: the token's `iss` when its claims hold exactly one `"iss"` member name
/// followed by a plain string (no escapes), found by searching the decoded claims instead of
/// parsing them (several times cheaper than [`peek_issuer`]). Only a hint: `None` means "ask
/// [`peek_issuer`]"; for a token without a top-level `iss` it may offer one from a nested
/// object. So a token routed on it must still have its `iss` checked strictly, as every issuer
/// policy that names an `iss` does, and it must not route to an issuer that takes tokens
/// without `iss`.
pub fn issuer_hint(token: &str) -> Option<String> {
    let b = token.as_bytes();
    let first = memchr::memchr(b'.', b)?;
    let rest = &b[first + 1..];
    let payload = &rest[..memchr::memchr(b'.', rest)?];
    let mut buf = [0u8; 2048];
    if payload.len() / 4 * 3 + 3 > buf.len() {
        return None;
    }
    let n = crate::b64::decode_slice(payload, &mut buf)?;
    let json = &buf[..n];
    let mut found = None;
    for at in memchr::memmem::find_iter(json, b"\"iss\"") {
        if found.is_some() {
            return None; // twice (nested, or inside a string): ask the parser
        }
        let mut i = at + 5;
        let skip = |i: &mut usize| {
            while json
                .get(*i)
                .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            {
                *i += 1;
            }
        };
        skip(&mut i);
        if json.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        skip(&mut i);
        if json.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        let end = start + memchr::memchr(b'"', json.get(start..)?)?;
        let value = &json[start..end];
        if value.contains(&b'\\') {
            return None;
        }
        found = Some(std::str::from_utf8(value).ok()?.to_owned());
    }
    found
}

/// Decodes a token without verifying anything, applying the same parsing rules as
/// verification (size, base64url, strict JSON). For display and debugging only.
pub fn decode_unverified(token: &str) -> Result<Unverified, Error> {
    let token = token.trim().as_bytes();
    let parts = split(token, policy::DEFAULT_MAX_TOKEN_LEN)?;
    let header = Header::from_json(
        decode_part(parts.header, "header")?,
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

    /// A digest of what the set verifies: every key's [`VerifyingKey::identity`], in any order.
    /// Equal fingerprints mean the same tokens verify, so caches of verified tokens keyed by a
    /// generation can keep it when a refetch brings the same keys.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut ids: Vec<[u8; 32]> = self.keys.iter().map(|k| k.identity()).collect();
        ids.sort_unstable();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&(ids.len() as u64).to_be_bytes());
        for id in &ids {
            ctx.update(id);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Imports the usable keys of a JWKS: keys for an algorithm outside `allowed` are skipped,
    /// since they could never verify a token. A key without `alg` is bound to the one allowed
    /// algorithm its type fits (EC and OKP: its curve's); when several fit it is skipped as
    /// ambiguous. Keys that cannot be used (encryption keys, unknown types, weak keys, a `kid`
    /// longer than [`MAX_KID_LEN`]) are returned as [`SkippedKey`]s with the reason, never
    /// silently dropped, and so are:
    ///
    /// - exact duplicates of an earlier key: the same key material (RFC 7638 thumbprint), `kid`
    ///   and algorithm. The same key under two kids, or for two algorithms, is kept twice, as a
    ///   provider renaming a key during rotation publishes it;
    /// - every entry after the [`MAX_JWKS_KEYS`]th imported key ("too many keys"), unparsed.
    pub fn from_jwks(jwks: &Jwks, allowed: &[Algorithm]) -> (KeySet, Vec<SkippedKey>) {
        let mut set = KeySet::new();
        let mut skipped = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, raw) in jwks.keys.iter().enumerate() {
            let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
            if set.keys.len() >= MAX_JWKS_KEYS {
                skipped.push(SkippedKey {
                    index,
                    kid,
                    why: format!(
                        "too many keys: at most {MAX_JWKS_KEYS} are imported from one JWKS"
                    ),
                });
                continue;
            }
            let result = serde_json::from_value::<crate::Jwk>(raw.clone())
                .map_err(|e| format!("not a JWK: {e}"))
                .and_then(|jwk| match &jwk.kid {
                    Some(k) if k.len() > MAX_KID_LEN => Err(format!(
                        "its kid is longer than {MAX_KID_LEN} bytes, so no token can name it"
                    )),
                    _ => Ok(jwk),
                })
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
                    VerifyingKey::from_jwk(&jwk, fallback)
                        .map(|key| (key, jwk.thumbprint()))
                        .map_err(|e| e.to_string())
                })
                .and_then(|(key, thumbprint)| {
                    if allowed.contains(&key.algorithm()) {
                        Ok((key, thumbprint))
                    } else {
                        Err(format!("{} is not an allowed algorithm", key.algorithm()))
                    }
                })
                .and_then(|(key, thumbprint)| {
                    let Some(t) = thumbprint else { return Ok(key) };
                    if seen.insert((t, key.kid().map(str::to_owned), key.algorithm())) {
                        Ok(key)
                    } else {
                        Err(
                            "a duplicate of an earlier key (the same key material, kid and \
                             algorithm)"
                                .to_owned(),
                        )
                    }
                });
            match result {
                Ok(key) => set.push(key),
                Err(why) => skipped.push(SkippedKey { index, kid, why }),
            }
        }
        (set, skipped)
    }

    /// Finds the keys that may verify a token with this header and tries them, allocating
    /// nothing; returns the key that verified. Keys named by the token's `kid` come first; keys
    /// configured without a kid (a single PEM, a bare secret) match any kid; without a kid,
    /// every key pinned to the token's algorithm is tried. Whatever the branch, more than
    /// [`MAX_CANDIDATES`] candidates is refused before any signature is checked.
    fn verify_with_any(
        &self,
        header: &Header,
        input: &[u8],
        sig: &[u8],
    ) -> Result<&Arc<VerifyingKey>, Error> {
        let alg = header.alg;
        let bad = || {
            let mut message = String::from("signature does not verify");
            if let Some(m) = header.embedded_key {
                message.push_str(&format!(
                    "; header \"{m}\" is never trusted as a key source"
                ));
            }
            Error::new(Reason::BadSignature, message)
        };
        let too_many = |count: usize, which: &str| {
            Error::new(
                Reason::UnknownKey,
                format!(
                    "{count} {alg} keys fit {which}; refusing to try more than {MAX_CANDIDATES}"
                ),
            )
        };
        // Tries every candidate; `None` when there was none.
        fn try_all<'k>(
            keys: &mut dyn Iterator<Item = &'k Arc<VerifyingKey>>,
            input: &[u8],
            sig: &[u8],
        ) -> Option<Result<&'k Arc<VerifyingKey>, ()>> {
            let mut tried = false;
            for k in keys {
                tried = true;
                if k.verify_signature(input, sig) {
                    return Some(Ok(k));
                }
            }
            tried.then_some(Err(()))
        }
        if let Some(kid) = header.kid.as_deref() {
            let named = || self.keys.iter().filter(move |k| k.kid() == Some(kid));
            if let Some(first) = named().next() {
                let fitting = || named().filter(|k| k.algorithm() == alg);
                let count = fitting().count();
                if count > MAX_CANDIDATES {
                    return Err(too_many(count, &format!("kid {kid:?}")));
                }
                return match try_all(&mut fitting(), input, sig) {
                    Some(Ok(k)) => Ok(k),
                    Some(Err(())) => Err(bad()),
                    None => Err(Error::new(
                        Reason::AlgorithmNotAllowed,
                        format!(
                            "key {kid:?} is pinned to {}; the token says {alg}",
                            first.algorithm()
                        ),
                    )),
                };
            }
            let anonymous = || {
                self.keys
                    .iter()
                    .filter(|k| k.kid().is_none() && k.algorithm() == alg)
            };
            let count = anonymous().count();
            if count > MAX_CANDIDATES {
                return Err(too_many(
                    count,
                    &format!("unknown kid {kid:?} (keys without a kid)"),
                ));
            }
            return match try_all(&mut anonymous(), input, sig) {
                Some(Ok(k)) => Ok(k),
                Some(Err(())) => Err(bad()),
                None => Err(Error::new(
                    Reason::UnknownKey,
                    format!("no {alg} key with kid {kid:?}"),
                )),
            };
        }
        let fitting = || self.keys.iter().filter(|k| k.algorithm() == alg);
        let count = fitting().count();
        if count > MAX_CANDIDATES {
            return Err(too_many(count, "a token without kid"));
        }
        match try_all(&mut fitting(), input, sig) {
            Some(Ok(k)) => Ok(k),
            Some(Err(())) => Err(bad()),
            None => Err(Error::new(
                Reason::UnknownKey,
                format!("no key is configured for {alg}"),
            )),
        }
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
        verify(&self.keys, &self.validation, token, now)
    }

    /// Verifies with the system clock.
    pub fn verify_now(&self, token: &str) -> Result<Verified, Error> {
        self.verify(token, unix_now())
    }

    /// Verifies only the signature of a compact JWS and returns its header and raw payload
    /// ("raw-JWS mode", for payloads that are not JWT claims). Algorithm and key rules apply;
    /// no claim rule does.
    pub fn verify_jws(&self, token: &[u8]) -> Result<(Header, Vec<u8>), Error> {
        verify_jws(&self.keys, &self.validation, token).map(|(h, p, _)| (h, p))
    }
}

/// Verifies `token` against `keys` under `validation` at `now`: what [`Verifier::verify`] does,
/// for callers whose key set changes over time (remote keys) and who keep it themselves.
pub fn verify(
    keys: &KeySet,
    validation: &Validation,
    token: &str,
    now: u64,
) -> Result<Verified, Error> {
    verify_with_times(keys, validation, token, now).map(|(v, _)| v)
}

/// [`verify`], also returning the token's time claims.
pub(crate) fn verify_with_times(
    keys: &KeySet,
    validation: &Validation,
    token: &str,
    now: u64,
) -> Result<(Verified, crate::policy::Times), Error> {
    if validation.algorithms.is_empty() {
        return Err(Error::new(
            Reason::AlgorithmNotAllowed,
            "no algorithm is allowed: name the algorithms your issuer uses",
        ));
    }
    let (header, payload, key) = verify_jws(keys, validation, token.as_bytes())?;
    validation.check_typ(header.typ.as_deref())?;
    let claims_json = String::from_utf8(payload)
        .map_err(|_| Error::malformed("claims are not a valid JSON object: not UTF-8"))?;
    let members = Members::parse(&claims_json, validation.max_json_depth)
        .map_err(|e| Error::malformed(format!("claims are not a valid JSON object: {e}")))?;
    let times = validation.validate(&members, now)?;
    let ids = Ids {
        iss: Span::of(&claims_json, &members, "iss")?,
        sub: Span::of(&claims_json, &members, "sub")?,
        jti: Span::of(&claims_json, &members, "jti")?,
        iat: times.iat,
        exp: times.exp,
    };
    drop(members);
    Ok((
        Verified {
            header,
            claims_json,
            ids,
            key,
            memo: Memo::default(),
        },
        times,
    ))
}

fn verify_jws(
    keys: &KeySet,
    validation: &Validation,
    token: &[u8],
) -> Result<(Header, Vec<u8>, Arc<VerifyingKey>), Error> {
    {
        let parts = split(token, validation.max_token_len)?;
        let header = Header::from_json(
            decode_part(parts.header, "header")?,
            validation.max_json_depth,
        )?;
        if !validation.algorithms.contains(&header.alg) {
            return Err(Error::new(
                Reason::AlgorithmNotAllowed,
                format!(
                    "alg {} is not allowed (allowed: {})",
                    header.alg,
                    validation
                        .algorithms
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if parts.signature.len() > MAX_SIGNATURE_LEN / 3 * 4 + 4 {
            return Err(Error::new(
                Reason::BadSignature,
                format!("signature is longer than {MAX_SIGNATURE_LEN} bytes"),
            ));
        }
        let mut buf = [0u8; MAX_SIGNATURE_LEN];
        let len = b64::decode_slice(parts.signature, &mut buf).ok_or_else(|| {
            Error::malformed(
                "signature is not canonical base64url (no padding, no '+' or '/', no whitespace)",
            )
        })?;
        let key = keys.verify_with_any(&header, parts.signing_input, &buf[..len])?;
        let payload = decode_part(parts.payload, "payload")?;
        Ok((header, payload, key.clone()))
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
