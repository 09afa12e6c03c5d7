//! Minting jwtd's own tokens: the request `POST /v1/tokens` takes, and the token made from it.

use crate::Signing;
use serde_json::{Map, Value};

/// Claims a minting request cannot set through `claims`.
const RESERVED: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

/// The members a minting request may have.
const MEMBERS: [&str; 4] = ["sub", "aud", "ttl", "claims"];

/// A minting request, checked against the issuer's limits.
#[derive(Debug)]
pub(crate) struct MintRequest {
    /// The token's `sub`.
    pub(crate) sub: String,
    /// The token's `aud`, when the request names one.
    pub(crate) aud: Option<Audience>,
    /// Lifetime in seconds, 1 up to the max ttl (the default ttl when the request names none).
    pub(crate) ttl: u64,
    /// Further claims, none of them [`RESERVED`].
    pub(crate) claims: Map<String, Value>,
}

/// `aud`: one audience, or several.
#[derive(Debug)]
pub(crate) enum Audience {
    /// A string.
    One(String),
    /// A non-empty array of strings.
    Many(Vec<String>),
}

impl MintRequest {
    /// Reads a JSON object `{"sub", "aud"?, "ttl"?, "claims"?}` (strict JSON: duplicate
    /// members refused, nesting at most 16 deep): `sub` a string; `aud` a string or a non-empty
    /// array of strings; `ttl` seconds or a duration string (`"10m"`), within 1 up to
    /// `signing`'s max ttl; `claims` an object without reserved claims. The error says what is
    /// wrong, for a 400.
    pub(crate) fn parse(body: &[u8], signing: &Signing) -> Result<MintRequest, String> {
        let req = jwtd_core::parse_json_object(body, 16)
            .map_err(|e| format!("body must be a JSON object: {e}"))?;
        if let Some(k) = req.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
            return Err(format!("unknown member {k:?} ({})", MEMBERS.join(", ")));
        }
        let Some(sub) = req.get("sub").and_then(Value::as_str) else {
            return Err("\"sub\" (a string) is required".into());
        };
        let ttl = match req.get("ttl") {
            None => signing.default_ttl,
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or("\"ttl\" must be a positive number of seconds")?,
            Some(Value::String(d)) => humantime::parse_duration(d)
                .map_err(|e| format!("\"ttl\": {e}"))?
                .as_secs(),
            Some(_) => return Err("\"ttl\" must be seconds or a duration string".into()),
        };
        if ttl == 0 || ttl > signing.max_ttl {
            return Err(format!(
                "ttl {ttl}s is outside 1..={}s (the configured cap)",
                signing.max_ttl
            ));
        }
        let claims = match req.get("claims") {
            None => Map::new(),
            Some(Value::Object(extra)) => {
                if let Some(k) = extra.keys().find(|k| RESERVED.contains(&k.as_str())) {
                    return Err(format!("claim {k:?} is reserved and cannot be set"));
                }
                extra.clone()
            }
            Some(_) => return Err("\"claims\" must be an object".into()),
        };
        let aud = match req.get("aud") {
            None => None,
            Some(Value::String(a)) => Some(Audience::One(a.clone())),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .map(Audience::Many),
            Some(_) => None,
        };
        if req.contains_key("aud") && aud.is_none() {
            return Err("\"aud\" must be a string or a non-empty array of strings".into());
        }
        Ok(MintRequest {
            sub: sub.to_owned(),
            aud,
            ttl,
            claims,
        })
    }
}

/// A token jwtd signed.
#[derive(Debug)]
pub(crate) struct Minted {
    /// The compact JWS.
    pub(crate) token: String,
    /// Its `exp`.
    pub(crate) expires_at: u64,
    /// The `kid` of the key that signed it.
    pub(crate) kid: Option<String>,
}

/// Why no token was made.
#[derive(Debug)]
pub(crate) enum MintError {
    /// The system random source failed (no `jti`).
    RandomSource,
    /// No key of the ring signs now.
    NoSigningKey,
    /// Signing failed.
    Sign(String),
}

impl Signing {
    /// Signs the token `req` asks for: its claims, `aud`, then `iss` (this issuer), `sub`,
    /// `iat` (now), `exp` (now + ttl) and a random `jti`, with the ring's signing key. Counted
    /// in `jwtd_tokens_minted_total`.
    pub(crate) fn mint(&self, req: MintRequest) -> Result<Minted, MintError> {
        let mut claims = req.claims;
        match req.aud {
            None => {}
            Some(Audience::One(a)) => {
                claims.insert("aud".into(), Value::from(a));
            }
            Some(Audience::Many(a)) => {
                claims.insert("aud".into(), Value::from(a));
            }
        }
        let now = jwtd_core::unix_now();
        let mut jti = [0u8; 16];
        jwtd_core::fill_random(&mut jti).map_err(|_| MintError::RandomSource)?;
        let expires_at = now + req.ttl;
        claims.insert("iss".into(), Value::from(self.iss.clone()));
        claims.insert("sub".into(), Value::from(req.sub));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(expires_at));
        claims.insert("jti".into(), Value::from(jwtd_core::b64::encode(jti)));
        let signer = self.ring.signer().ok_or(MintError::NoSigningKey)?;
        let token =
            jwtd_core::sign(&signer, &claims, None).map_err(|e| MintError::Sign(e.to_string()))?;
        metrics::counter!("jwtd_tokens_minted_total").increment(1);
        Ok(Minted {
            token,
            expires_at,
            kid: signer.kid().map(str::to_owned),
        })
    }
}
