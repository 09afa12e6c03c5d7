//! Revocation: tokens refused after they verified, by `jti`, by subject, or by signing key.
//!
//! A [`RevocationList`] is plain data, checked in memory after verification (and after a
//! verified-token cache hit): a few hash lookups, never I/O. Where the entries come from (a
//! store, a notification channel) is the caller's business.
//!
//! ```
//! use jwtd_core::{Revocation, RevocationList};
//! let mut list = RevocationList::new();
//! list.insert(&Revocation::jti("c2b0e7", Some("https://id.example"), Some(2_000_000_000)));
//! list.insert(&Revocation::subject("user-42", None, 1_900_000_000, None));
//! assert_eq!(list.len(), 2);
//! ```

use crate::error::{Error, Reason};
use crate::token::Verified;
use std::collections::HashMap;

/// What a revocation matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// One token, by its `jti`.
    Jti,
    /// Every token of a subject (`sub`) issued before a time (`iat`).
    Subject,
    /// Every token signed by a key: the `kid` of the key that verified it (its RFC 7638
    /// thumbprint for a key configured without a kid), whatever the token header says.
    Key,
}

impl RevocationKind {
    /// The stable name (`jti`, `sub`, `kid`).
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Subject => "sub",
            RevocationKind::Key => "kid",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<RevocationKind> {
        Some(match s {
            "jti" => RevocationKind::Jti,
            "sub" => RevocationKind::Subject,
            "kid" => RevocationKind::Key,
            _ => return None,
        })
    }
}

/// One revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// What it matches.
    pub kind: RevocationKind,
    /// The `jti`, `sub` or `kid` value.
    pub value: String,
    /// Only tokens with this `iss` (`None`: any issuer).
    pub iss: Option<String>,
    /// For [`RevocationKind::Subject`]: tokens with `iat` before this time (Unix seconds) are
    /// revoked; a token without `iat` is revoked too (nothing proves it is newer).
    pub issued_before: Option<i64>,
    /// When the tokens it covers have expired anyway and the entry may be dropped (Unix
    /// seconds; `None`: kept until removed).
    pub expires_at: Option<i64>,
}

impl Revocation {
    /// Revokes the token with this `jti`.
    pub fn jti(jti: &str, iss: Option<&str>, expires_at: Option<i64>) -> Revocation {
        Revocation {
            kind: RevocationKind::Jti,
            value: jti.into(),
            iss: iss.map(Into::into),
            issued_before: None,
            expires_at,
        }
    }

    /// Revokes every token of `sub` issued before `issued_before`.
    pub fn subject(
        sub: &str,
        iss: Option<&str>,
        issued_before: i64,
        expires_at: Option<i64>,
    ) -> Revocation {
        Revocation {
            kind: RevocationKind::Subject,
            value: sub.into(),
            iss: iss.map(Into::into),
            issued_before: Some(issued_before),
            expires_at,
        }
    }

    /// Revokes every token signed by the key `kid`.
    pub fn key(kid: &str, iss: Option<&str>, expires_at: Option<i64>) -> Revocation {
        Revocation {
            kind: RevocationKind::Key,
            value: kid.into(),
            iss: iss.map(Into::into),
            issued_before: None,
            expires_at,
        }
    }

    /// True once `now` is past `expires_at`.
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[derive(Clone, Debug)]
struct Entry {
    iss: Option<Box<str>>,
    issued_before: Option<i64>,
    expires_at: Option<i64>,
}

impl Entry {
    fn covers_iss(&self, iss: Option<&str>) -> bool {
        match &self.iss {
            None => true,
            Some(want) => iss == Some(&**want),
        }
    }
}

type Table = HashMap<Box<str>, Vec<Entry>>;

/// Revocations held in memory, checked on every verification.
#[derive(Clone, Debug, Default)]
pub struct RevocationList {
    jti: Table,
    sub: Table,
    kid: Table,
    len: usize,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> RevocationList {
        RevocationList::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn table(&mut self, kind: RevocationKind) -> &mut Table {
        match kind {
            RevocationKind::Jti => &mut self.jti,
            RevocationKind::Subject => &mut self.sub,
            RevocationKind::Key => &mut self.kid,
        }
    }

    /// Adds a revocation. A second one for the same value and issuer widens the first (the
    /// later `issued_before`, the later expiry); returns false when it added nothing new.
    pub fn insert(&mut self, r: &Revocation) -> bool {
        let entries = self
            .table(r.kind)
            .entry(r.value.as_str().into())
            .or_default();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.iss.as_deref() == r.iss.as_deref())
        {
            let before = e.issued_before.max(r.issued_before);
            // `None` means "never expires" and wins.
            let expires = match (e.expires_at, r.expires_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            let changed = before != e.issued_before || expires != e.expires_at;
            e.issued_before = before;
            e.expires_at = expires;
            return changed;
        }
        entries.push(Entry {
            iss: r.iss.as_deref().map(Into::into),
            issued_before: r.issued_before,
            expires_at: r.expires_at,
        });
        self.len += 1;
        true
    }

    /// True when the list already holds an entry at least as wide as `r` (same value and
    /// issuer, the same or a later `issued_before` and expiry), so inserting it changes nothing.
    pub fn covers(&self, r: &Revocation) -> bool {
        let table = match r.kind {
            RevocationKind::Jti => &self.jti,
            RevocationKind::Subject => &self.sub,
            RevocationKind::Key => &self.kid,
        };
        table.get(r.value.as_str()).is_some_and(|entries| {
            entries.iter().any(|e| {
                e.iss.as_deref() == r.iss.as_deref()
                    && e.issued_before >= r.issued_before
                    && match (e.expires_at, r.expires_at) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(a), Some(b)) => a >= b,
                    }
            })
        })
    }

    /// Drops entries whose tokens have all expired by `now`; returns how many.
    pub fn purge(&mut self, now: i64) -> usize {
        let mut dropped = 0;
        for table in [&mut self.jti, &mut self.sub, &mut self.kid] {
            table.retain(|_, entries| {
                let before = entries.len();
                entries.retain(|e| !e.expires_at.is_some_and(|t| t <= now));
                dropped += before - entries.len();
                !entries.is_empty()
            });
        }
        self.len -= dropped;
        dropped
    }

    /// Refuses `verified` with [`Reason::Revoked`] when an entry covers it: its `jti`, its
    /// subject with an `iat` before the entry's time (or no `iat`), or the key that verified it
    /// (its `kid`, or its thumbprint when it has none; never the token's header `kid`).
    pub fn check(&self, verified: &Verified) -> Result<(), Error> {
        if self.len == 0 {
            return Ok(());
        }
        let iss = verified.iss();
        let hit = |table: &Table, value: Option<&str>, covers: &dyn Fn(&Entry) -> bool| {
            !table.is_empty()
                && value
                    .and_then(|v| table.get(v))
                    .is_some_and(|entries| entries.iter().any(|e| e.covers_iss(iss) && covers(e)))
        };
        if hit(&self.jti, verified.jti(), &|_| true) {
            return Err(Error::new(Reason::Revoked, "the token was revoked (jti)"));
        }
        let iat = verified.issued_at();
        let issued_before = |e: &Entry| {
            let before = e.issued_before.unwrap_or(i64::MAX);
            !iat.is_some_and(|iat| iat >= before as f64)
        };
        if hit(&self.sub, verified.sub(), &issued_before) {
            return Err(Error::new(
                Reason::Revoked,
                "the subject's tokens issued before the revocation were revoked (sub)",
            ));
        }
        // The key that verified, never the header's `kid`: a token without `kid` (or with an
        // unknown one, tried against keys without a kid) is still signed by a revoked key.
        // Keys configured without a kid are named by their RFC 7638 thumbprint.
        // The key material is matched too (its thumbprint, or an HMAC secret's material id):
        // a key configured without a kid is named by it, and a revocation of one kid also
        // names the material (see `material_id`), covering the same key under another kid.
        let key = verified.key();
        let revoked_key = !self.kid.is_empty()
            && (key
                .kid()
                .is_some_and(|kid| hit(&self.kid, Some(kid), &|_| true))
                || hit(&self.kid, Some(key.material_id()), &|_| true));
        if revoked_key {
            return Err(Error::new(
                Reason::Revoked,
                "the key that signed the token was revoked (kid)",
            ));
        }
        Ok(())
    }
}
