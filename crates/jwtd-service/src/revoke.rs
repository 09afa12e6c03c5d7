//! Revoking: the request `POST /v1/revocations` takes, the entry made from it, and recording
//! it (with the key material a key revocation also covers).

use crate::issuers::{Issuers, Keys};
use crate::revocation::{Recorded, Revocations};
use jwtd_core::{Revocation, RevocationKind};
use serde_json::Value;
use std::sync::Arc;

/// How long a revocation outlives the last moment its tokens could be valid: more than any
/// sensible leeway, so an entry is never purged while a token it covers is still accepted.
const KEEP_MARGIN: i64 = 3600;

/// The members a revocation request may have.
const MEMBERS: [&str; 9] = [
    "jti",
    "sub",
    "kid",
    "token",
    "iss",
    "exp",
    "before",
    "expires_at",
    "note",
];

/// What a revocation request names: exactly one of `jti`, `sub`, `kid`, `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One token, by `jti`.
    Jti(String),
    /// One token, by the `jti` it carries (its signature is not checked); its `iss` applies
    /// when the request names none.
    Token {
        /// The token's `jti`.
        jti: String,
        /// The token's `iss`.
        iss: Option<String>,
    },
    /// A subject's tokens issued before `before` (default: now).
    Subject {
        /// `sub`.
        sub: String,
        /// Unix time.
        before: Option<i64>,
    },
    /// Every token a key signed, by `kid`.
    Key(String),
}

/// A revocation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevocationRequest {
    /// What is revoked.
    pub(crate) target: Target,
    /// Only that issuer's tokens.
    pub(crate) iss: Option<String>,
    /// When the revoked token expires (`jti`, `token`), if known.
    pub(crate) exp: Option<i64>,
    /// When the entry may be purged, overriding the computed time.
    pub(crate) expires_at: Option<i64>,
    /// Free text kept with the entry.
    pub(crate) note: Option<String>,
}

impl RevocationRequest {
    /// Reads a JSON object (strict JSON, nesting at most 8 deep) naming exactly one of `jti`,
    /// `sub`, `kid` (non-empty strings of at most 1024 bytes) or `token` (a JWT with a `jti`),
    /// with optional `iss`, `note` (strings), `exp`, `before`, `expires_at` (Unix times).
    /// Unknown members are refused. The error says what is wrong, for a 400.
    pub(crate) fn parse(body: &[u8]) -> Result<RevocationRequest, String> {
        let req = jwtd_core::parse_json_object(body, 8)
            .map_err(|e| format!("body must be a JSON object: {e}"))?;
        if let Some(k) = req.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
            return Err(format!("unknown member {k:?} ({})", MEMBERS.join(", ")));
        }
        let text = |name: &str| -> Result<Option<String>, String> {
            match req.get(name) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
                Some(_) => Err(format!(
                    "{name:?} must be a non-empty string (at most 1024 bytes)"
                )),
            }
        };
        let time = |name: &str| -> Result<Option<i64>, String> {
            match req.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .filter(|t| (0..=jwtd_core::MAX_NUMERIC_DATE as i64).contains(t))
                    .map(Some)
                    .ok_or_else(|| format!("{name:?} must be a Unix time in seconds")),
            }
        };
        let iss = text("iss")?;
        let exp = time("exp")?;
        let note = text("note")?;
        let chosen: Vec<&str> = ["jti", "sub", "kid", "token"]
            .into_iter()
            .filter(|k| req.contains_key(*k))
            .collect();
        let [what] = chosen.as_slice() else {
            return Err("name exactly one of \"jti\", \"sub\", \"kid\", \"token\"".into());
        };
        let target = match *what {
            "token" => {
                let token = req
                    .get("token")
                    .and_then(Value::as_str)
                    .ok_or("\"token\" must be a string")?;
                let claims = jwtd_core::decode_unverified(token)
                    .map_err(|e| format!("\"token\": {e}"))?
                    .claims
                    .map_err(|e| format!("\"token\": {e}"))?;
                let jti = claims
                    .get("jti")
                    .and_then(Value::as_str)
                    .ok_or("the token has no \"jti\": revoke its \"sub\" instead")?;
                Target::Token {
                    jti: jti.to_owned(),
                    iss: claims.get("iss").and_then(Value::as_str).map(Into::into),
                }
            }
            "jti" => Target::Jti(text("jti")?.unwrap_or_default()),
            "sub" => Target::Subject {
                before: time("before")?,
                sub: text("sub")?.unwrap_or_default(),
            },
            _ => Target::Key(text("kid")?.unwrap_or_default()),
        };
        let expires_at = time("expires_at")?;
        let value = match &target {
            Target::Jti(v) | Target::Token { jti: v, .. } | Target::Key(v) => v,
            Target::Subject { sub, .. } => sub,
        };
        if value.is_empty() {
            return Err(format!("\"{what}\" must be a non-empty string"));
        }
        Ok(RevocationRequest {
            target,
            iss,
            exp,
            expires_at,
            note,
        })
    }

    /// The entry to record at `now`. `max_lifetime` (seconds) bounds tokens whose expiry is
    /// unknown. An entry is kept until the tokens it covers expired, plus [`KEEP_MARGIN`]:
    /// a `jti` or `token` until the request's `exp`, else `now + max_lifetime` (a token's own
    /// `exp` is not verified here and could be doctored: a past one would purge the entry at
    /// once); a subject until `before + max_lifetime`; a key for good. `expires_at` overrides.
    pub(crate) fn revocation(&self, now: i64, max_lifetime: u64) -> Revocation {
        let lifetime = max_lifetime as i64;
        let longest = now.saturating_add(lifetime);
        let iss = self.iss.as_deref();
        let mut r = match &self.target {
            Target::Jti(jti) => Revocation::jti(jti, iss, None),
            Target::Token { jti, iss: own } => Revocation::jti(jti, iss.or(own.as_deref()), None),
            Target::Subject { sub, before } => {
                let before = before.unwrap_or(now + 1);
                let mut r = Revocation::subject(sub, iss, before, None);
                r.expires_at = Some(before.saturating_add(lifetime).saturating_add(KEEP_MARGIN));
                r
            }
            Target::Key(kid) => Revocation::key(kid, iss, None),
        };
        if r.kind == RevocationKind::Jti {
            r.expires_at = Some(self.exp.unwrap_or(longest).saturating_add(KEEP_MARGIN));
        }
        if let Some(t) = self.expires_at {
            r.expires_at = Some(t);
        }
        r
    }
}

/// What recording a revocation did.
#[derive(Debug)]
pub(crate) struct Revoked {
    /// The entry.
    pub(crate) revocation: Revocation,
    /// For a key: the key material ids of the keys now known under that kid, revoked too.
    pub(crate) key_material: Vec<String>,
    /// Stored, or applied here and waiting for the store.
    pub(crate) recorded: Recorded,
}

/// Records `req` (applied here at once, written to the store). A key revocation also names
/// the key material of every key now known under that kid, so the same key configured or
/// published under another kid (or none) is revoked too.
pub(crate) async fn revoke(
    revocations: &Revocations,
    issuers: &Issuers,
    req: RevocationRequest,
) -> Revoked {
    let now = jwtd_core::unix_now() as i64;
    let revocation = req.revocation(now, revocations.limits().max_token_lifetime);
    let key_material = if revocation.kind == RevocationKind::Key {
        key_materials(issuers, &revocation.value)
    } else {
        Vec::new()
    };
    for m in &key_material {
        let mut also = revocation.clone();
        also.value = m.clone();
        revocations.revoke(also, req.note.clone()).await;
    }
    let recorded = revocations.revoke(revocation.clone(), req.note).await;
    Revoked {
        revocation,
        key_material,
        recorded,
    }
}

/// The material ids of the keys known now under `kid` (other than `kid` itself), each once.
fn key_materials(issuers: &Issuers, kid: &str) -> Vec<String> {
    let mut materials = Vec::new();
    for i in &issuers.list {
        let set = match &i.keys {
            Keys::Static(set) => set.clone(),
            Keys::Ring(ring) => ring.verify_view().0,
            Keys::Remote(r) => match r.snapshot() {
                Some(snap) => Arc::new(snap.keys.clone()),
                None => continue,
            },
        };
        for k in set.keys() {
            if k.kid() == Some(kid) {
                let m = k.material_id().to_owned();
                if m != kid && !materials.contains(&m) {
                    materials.push(m);
                }
            }
        }
    }
    materials
}
