//! # jwtd-store
//!
//! The issuer's key ring and where it lives.
//!
//! - Keys move through `pending` (published, not yet signing, so every verifier's cache learns
//!   them first) → `active` (signs) → `retiring` (published, no longer signs, until the longest
//!   token lifetime plus a grace period has passed) → `retired` (gone from the JWKS).
//! - Private keys are sealed with AES-256-GCM under a key encryption key (KEK) from the
//!   environment or a file, bound to their key id and algorithm as associated data: a swapped or
//!   altered row fails loudly and is never used.
//! - [`KeyStore`] is the storage interface; [`SqliteStore`] is the embedded default and
//!   [`PgStore`] the shared one for several instances.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod fsutil;
mod kek;
mod postgres;
mod ring;
mod sqlite;

pub use fsutil::{write_atomic, Replace};
pub use kek::{Kek, KEK_ENV};
pub use postgres::{check_schema, PgStore, DPOP_PURGE_GRACE_SECS};
pub use postgres::{Change, ChangeLock, PgWatch};
pub use ring::{KeyRing, RingConfig, RingEvent};
pub use sqlite::SqliteStore;

use jwtd_core::{Revocation, RevocationKind};
use std::fmt;

/// A key's place in the rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// Signs new tokens (one per ring).
    Active,
    /// Published, no longer signing.
    Retiring,
    /// Unpublished; kept only as a record.
    Retired,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<KeyState> {
        Some(match s {
            "pending" => KeyState::Pending,
            "active" => KeyState::Active,
            "retiring" => KeyState::Retiring,
            "retired" => KeyState::Retired,
            _ => return None,
        })
    }

    /// Whether the key appears in the JWKS.
    pub fn published(self) -> bool {
        !matches!(self, KeyState::Retired)
    }
}

/// One stored key: public part in clear, private part sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// Algorithm name.
    pub alg: String,
    /// Rotation state.
    pub state: KeyState,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// When a pending key becomes active.
    pub activate_at: Option<i64>,
    /// When a retiring key may be retired.
    pub retire_after: Option<i64>,
    /// Public JWK JSON.
    pub public_jwk: String,
    /// AES-GCM nonce.
    pub nonce: Vec<u8>,
    /// Sealed PKCS#8 (or the HMAC secret).
    pub sealed: Vec<u8>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The columns of a stored key, in [`LIST_KEYS`] order (one row shape for every backend).
pub(crate) type KeyRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// Every key, oldest first, as [`KeyRow`]s (the same SQL for SQLite and PostgreSQL).
pub(crate) const LIST_KEYS: &str =
    "SELECT kid, alg, state, created_at, activate_at, retire_after, \
     public_jwk, nonce, sealed FROM keys ORDER BY created_at, kid";

impl StoredKey {
    pub(crate) fn from_row(row: KeyRow) -> Result<StoredKey, StoreError> {
        let (kid, alg, state, created_at, activate_at, retire_after, public_jwk, nonce, sealed) =
            row;
        Ok(StoredKey {
            state: KeyState::parse(&state)
                .ok_or_else(|| StoreError(format!("store: unknown key state {state:?}")))?,
            kid,
            alg,
            created_at,
            activate_at,
            retire_after,
            public_jwk,
            nonce,
            sealed,
        })
    }
}

/// A revocation as stored: its sequence number (grows with every insert), when it was made,
/// and the operator's note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRevocation {
    /// Sequence number.
    pub id: i64,
    /// When it was recorded (Unix seconds).
    pub created_at: i64,
    /// Free text from the operator (why).
    pub note: Option<String>,
    /// What it revokes.
    pub revocation: Revocation,
}

/// The columns of a stored revocation, in the order the list queries select them.
pub(crate) type RevocationRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
);

/// The SQL both backends share (`$n` placeholders: PostgreSQL's, and numbered parameters in
/// SQLite).
pub(crate) mod sql {
    /// Records a revocation and returns its sequence number.
    pub const ADD_REVOCATION: &str =
        "INSERT INTO revocations (kind, value, iss, issued_before, expires_at, created_at, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
    /// Revocations after a sequence number that have not expired, as [`super::RevocationRow`]s.
    pub const REVOCATIONS_AFTER: &str =
        "SELECT id, kind, value, iss, issued_before, expires_at, created_at, note \
         FROM revocations WHERE id > $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id";
    /// Deletes expired revocations.
    pub const PURGE_REVOCATIONS: &str = "DELETE FROM revocations WHERE expires_at <= $1";
}

impl StoredRevocation {
    pub(crate) fn from_row(row: RevocationRow) -> Result<StoredRevocation, StoreError> {
        let (id, kind, value, iss, issued_before, expires_at, created_at, note) = row;
        Ok(StoredRevocation {
            id,
            created_at,
            note,
            revocation: Revocation {
                kind: RevocationKind::parse(&kind).ok_or_else(|| {
                    StoreError(format!("store: unknown revocation kind {kind:?}"))
                })?,
                value,
                iss,
                issued_before,
                expires_at,
            },
        })
    }
}

/// Where revocations are kept. Instances catch up by sequence number, so a list query returns
/// only what they have not seen.
#[allow(async_fn_in_trait)]
pub trait RevocationStore: Send + Sync {
    /// Records a revocation; returns its sequence number.
    async fn add_revocation(
        &self,
        r: &Revocation,
        created_at: i64,
        note: Option<&str>,
    ) -> Result<i64, StoreError>;
    /// Revocations with a sequence number above `after` that have not expired by `now`, in
    /// sequence order.
    async fn revocations_after(
        &self,
        after: i64,
        now: i64,
    ) -> Result<Vec<StoredRevocation>, StoreError>;
    /// Deletes revocations whose tokens have all expired by `now`; returns how many.
    async fn purge_revocations(&self, now: i64) -> Result<u64, StoreError>;
}

/// A storage failure or a key that fails to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// Where keys are kept. The embedded SQLite store implements it; a shared database is a second
/// implementation of the same interface.
#[allow(async_fn_in_trait)]
pub trait KeyStore: Send + Sync {
    /// Every key, oldest first.
    async fn list(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Adds a key.
    async fn insert(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Changes a key's state and schedule.
    async fn update(
        &self,
        kid: &str,
        state: KeyState,
        activate_at: Option<i64>,
        retire_after: Option<i64>,
    ) -> Result<(), StoreError>;
    /// Deletes a key for good (emergency removal).
    async fn delete(&self, kid: &str) -> Result<bool, StoreError>;
    /// Serialises key ring changes between every instance sharing the store, held until
    /// [`ChangeLock::release`] (PostgreSQL: a session advisory lock; SQLite: nothing to do,
    /// one process owns the file and the ring's own mutex suffices).
    async fn lock_changes(&self) -> Result<ChangeLock, StoreError>;
}

/// The store chosen by configuration: the embedded SQLite file or a shared PostgreSQL database.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// Embedded.
    Sqlite(SqliteStore),
    /// Shared.
    Postgres(PgStore),
}

impl KeyStore for AnyStore {
    async fn list(&self) -> Result<Vec<StoredKey>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.list().await,
            AnyStore::Postgres(s) => s.list().await,
        }
    }

    async fn insert(&self, key: &StoredKey) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.insert(key).await,
            AnyStore::Postgres(s) => s.insert(key).await,
        }
    }

    async fn update(
        &self,
        kid: &str,
        state: KeyState,
        activate_at: Option<i64>,
        retire_after: Option<i64>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.update(kid, state, activate_at, retire_after).await,
            AnyStore::Postgres(s) => s.update(kid, state, activate_at, retire_after).await,
        }
    }

    async fn delete(&self, kid: &str) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.delete(kid).await,
            AnyStore::Postgres(s) => s.delete(kid).await,
        }
    }

    async fn lock_changes(&self) -> Result<ChangeLock, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.lock_changes().await,
            AnyStore::Postgres(s) => s.lock_changes().await,
        }
    }
}

impl RevocationStore for AnyStore {
    async fn add_revocation(
        &self,
        r: &Revocation,
        created_at: i64,
        note: Option<&str>,
    ) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.add_revocation(r, created_at, note).await,
            AnyStore::Postgres(s) => s.add_revocation(r, created_at, note).await,
        }
    }

    async fn revocations_after(
        &self,
        after: i64,
        now: i64,
    ) -> Result<Vec<StoredRevocation>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.revocations_after(after, now).await,
            AnyStore::Postgres(s) => s.revocations_after(after, now).await,
        }
    }

    async fn purge_revocations(&self, now: i64) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.purge_revocations(now).await,
            AnyStore::Postgres(s) => s.purge_revocations(now).await,
        }
    }
}
