//! The PostgreSQL store: the same key ring shared by several jwtd instances.

//!
//! Every change is announced with `NOTIFY` (channels `jwtd_<schema>_keys` and
//! `jwtd_<schema>_revocations`) so the other instances learn of it at once; [`PgStore::watch`]
//! listens. Key ring changes are serialised across instances by a session advisory lock
//! ([`KeyStore::lock_changes`]).

use crate::{KeyState, KeyStore, RevocationStore, StoreError, StoredKey, StoredRevocation};
use jwtd_core::Revocation;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row};
use std::str::FromStr;

/// Keys and revocations in a PostgreSQL database (schema created by migrations on open).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    keys_channel: String,
    revocations_channel: String,
    lock_key: String,
}

/// What a [`PgWatch`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key ring changed on some instance.
    Keys,
    /// A revocation was recorded on some instance.
    Revocations,
    /// The connection was lost and is back: notifications may have been missed, resynchronise.
    Reconnected,
}

/// A listener for the store's change notifications.
pub struct PgWatch {
    listener: PgListener,
    keys_channel: String,
}

impl std::fmt::Debug for PgWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWatch").finish_non_exhaustive()
    }
}

impl PgWatch {
    /// Waits for the next change. An error means the database cannot be reached now; calling
    /// again reconnects.
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        match self.listener.try_recv().await.map_err(err)? {
            None => Ok(Change::Reconnected),
            Some(n) if n.channel() == self.keys_channel => Ok(Change::Keys),
            Some(_) => Ok(Change::Revocations),
        }
    }
}

/// Held while the key ring changes; see [`KeyStore::lock_changes`].
#[derive(Debug)]
pub struct ChangeLock {
    conn: Option<PoolConnection<Postgres>>,
}

impl ChangeLock {
    /// No lock to hold (one process owns the store).
    pub(crate) fn none() -> ChangeLock {
        ChangeLock { conn: None }
    }

    /// Releases the lock. (Dropped without this, the connection is closed instead of returned
    /// to the pool, which releases it too.)
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for ChangeLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("store: {e}"))
}

impl PgStore {
    /// Connects to `url` (`postgres://...`), optionally inside `schema` (created when missing),
    /// and runs migrations.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let mut opts = PgConnectOptions::from_str(url).map_err(err)?;
        if let Some(s) = schema {
            check_schema(s)?;
            let setup = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await
                .map_err(err)?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .execute(&setup)
                .await
                .map_err(err)?;
            setup.close().await;
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_with(opts)
            .await
            .map_err(err)?;
        migrator().run(&pool).await.map_err(err)?;
        Ok(PgStore::over(pool, schema))
    }

    /// Connects to `url` for tools that must change nothing (`jwtd rules test`): no schema is
    /// created, no migration runs, and every session is read-only
    /// (`default_transaction_read_only`), so a write through this store fails. A database
    /// without jwtd's tables fails at the first read.
    pub async fn open_read_only(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("default_transaction_read_only", "on")]);
        if let Some(s) = schema {
            check_schema(s)?;
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_with(opts)
            .await
            .map_err(err)?;
        Ok(PgStore::over(pool, schema))
    }

    /// [`PgStore::open`] for the DPoP replay table, without connecting: the pool connects at
    /// its first use, so a database that is down now is only an error then. Call
    /// [`PgStore::migrate`] (until it succeeds) before relying on the tables.
    /// `acquire_timeout` bounds the wait for a connection; `max_connections` the pool.
    ///
    /// Its sessions commit with `synchronous_commit = off`: an insert does not wait for the
    /// WAL to reach the disk (one flush per request otherwise: 3.7 ms per insert against 0.3
    /// to 0.7 ms on the development machine, debug build). The price: a PostgreSQL crash (not
    /// a jwtd one) may lose the `jti`s of its last moments (at most 3 × `wal_writer_delay`,
    /// 600 ms by default), whose proofs could then be replayed inside their window. Use it
    /// for nothing else.
    pub fn open_for_replay(
        url: &str,
        schema: Option<&str>,
        max_connections: u32,
        acquire_timeout: std::time::Duration,
    ) -> Result<PgStore, StoreError> {
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("synchronous_commit", "off")]);
        if let Some(s) = schema {
            check_schema(s)?;
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(opts);
        Ok(PgStore::over(pool, schema))
    }

    /// Creates `schema` when missing (the one the store was opened in) and runs the
    /// migrations, as [`PgStore::open`] does.
    pub async fn migrate(&self, schema: Option<&str>) -> Result<(), StoreError> {
        if let Some(s) = schema {
            check_schema(s)?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .execute(&self.pool)
                .await
                .map_err(err)?;
        }
        migrator().run(&self.pool).await.map_err(err)
    }

    /// Creates `schema` when missing and the DPoP replay table `dpop_jti` in it (idempotent:
    /// `CREATE ... IF NOT EXISTS`). Kept out of the versioned migrations, so instances of an
    /// earlier version sharing the database (a rolling upgrade, a rollback) never meet a
    /// migration they do not know.
    pub async fn ensure_dpop_table(&self, schema: Option<&str>) -> Result<(), StoreError> {
        if let Some(s) = schema {
            check_schema(s)?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .execute(&self.pool)
                .await
                .map_err(err)?;
        }
        sqlx::raw_sql(include_str!("../sql/dpop_jti.sql"))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Records the DPoP replay key `hash` until `expires_at` (Unix seconds) in `dpop_jti`, in
    /// one statement: `true` when recorded now (no row, or one expired at `now`, which is
    /// replaced), `false` when a row live at `now` existed (a replay on some instance).
    pub async fn record_dpop_jti(
        &self,
        hash: &[u8; 16],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO dpop_jti (hash, expires_at) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE dpop_jti.expires_at <= $3",
        )
        .bind(&hash[..])
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    /// True when `dpop_jti` holds `hash` live at `now`.
    pub async fn dpop_jti_seen(&self, hash: &[u8; 16], now: i64) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM dpop_jti WHERE hash = $1 AND expires_at > $2")
            .bind(&hash[..])
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.is_some())
    }

    /// Deletes up to `batch` rows of `dpop_jti` expired [`DPOP_PURGE_GRACE_SECS`] before
    /// `now`; the number deleted (call again while it is `batch`). The grace keeps a row an
    /// instance whose clock is behind still holds live; rows another instance is deleting are
    /// skipped, not waited for.
    pub async fn purge_dpop_jti(&self, now: i64, batch: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM dpop_jti WHERE hash IN \
             (SELECT hash FROM dpop_jti WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now.saturating_sub(DPOP_PURGE_GRACE_SECS))
        .bind(batch)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    /// Starts listening for changes made by any instance.
    pub async fn watch(&self) -> Result<PgWatch, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(err)?;
        listener
            .listen_all([
                self.keys_channel.as_str(),
                self.revocations_channel.as_str(),
            ])
            .await
            .map_err(err)?;
        Ok(PgWatch {
            listener,
            keys_channel: self.keys_channel.clone(),
        })
    }

    async fn notify_keys(&self, tx: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.keys_channel)
            .execute(tx)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Direct access for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl KeyStore for PgStore {
    async fn list(&self) -> Result<Vec<StoredKey>, StoreError> {
        sqlx::query_as::<_, crate::KeyRow>(crate::LIST_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .into_iter()
            .map(StoredKey::from_row)
            .collect()
    }

    async fn insert(&self, k: &StoredKey) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO keys (kid, alg, state, created_at, activate_at, retire_after, public_jwk, nonce, sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(k.state.as_str())
        .bind(k.created_at)
        .bind(k.activate_at)
        .bind(k.retire_after)
        .bind(&k.public_jwk)
        .bind(&k.nonce)
        .bind(&k.sealed)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        self.notify_keys(&mut tx).await?;
        tx.commit().await.map_err(err)
    }

    async fn update(
        &self,
        kid: &str,
        state: KeyState,
        activate_at: Option<i64>,
        retire_after: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query(
            "UPDATE keys SET state = $1, activate_at = $2, retire_after = $3 WHERE kid = $4",
        )
        .bind(state.as_str())
        .bind(activate_at)
        .bind(retire_after)
        .bind(kid)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(err(format!("no key {kid:?}")));
        }
        self.notify_keys(&mut tx).await?;
        tx.commit().await.map_err(err)
    }

    async fn delete(&self, kid: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query("DELETE FROM keys WHERE kid = $1")
            .bind(kid)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        self.notify_keys(&mut tx).await?;
        tx.commit().await.map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn lock_changes(&self) -> Result<ChangeLock, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let wait = sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(&self.lock_key)
            .execute(&mut *conn);
        // Bounded: an instance that hangs while holding the lock must not stall every other
        // instance's schedule for good (a connection dropped mid-wait is closed, not reused).
        match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
            Ok(done) => {
                done.map_err(err)?;
            }
            Err(_) => {
                conn.close_on_drop();
                return Err(err(
                    "another instance has held the key ring lock for over 30 s; try again later",
                ));
            }
        }
        Ok(ChangeLock { conn: Some(conn) })
    }
}

impl RevocationStore for PgStore {
    async fn add_revocation(
        &self,
        r: &Revocation,
        created_at: i64,
        note: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // One writer at a time: ids then become visible in order, so `id > last seen` never
        // skips a revocation that committed late.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&self.revocations_channel)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let row = sqlx::query(crate::sql::ADD_REVOCATION)
            .bind(r.kind.as_str())
            .bind(&r.value)
            .bind(&r.iss)
            .bind(r.issued_before)
            .bind(r.expires_at)
            .bind(created_at)
            .bind(note)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let id: i64 = row.try_get(0).map_err(err)?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.revocations_channel)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(id)
    }

    async fn revocations_after(
        &self,
        after: i64,
        now: i64,
    ) -> Result<Vec<StoredRevocation>, StoreError> {
        sqlx::query_as::<_, crate::RevocationRow>(crate::sql::REVOCATIONS_AFTER)
            .bind(after)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .into_iter()
            .map(StoredRevocation::from_row)
            .collect()
    }

    async fn purge_revocations(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(crate::sql::PURGE_REVOCATIONS)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected())
    }
}

/// How long past its expiry a `dpop_jti` row is kept before [`PgStore::purge_dpop_jti`]
/// deletes it: instances' clocks may differ by this much without one purging a row another
/// still counts as live (the insert takes over an expired row in any case).
pub const DPOP_PURGE_GRACE_SECS: i64 = 300;

/// The versioned migrations, tolerant of ones applied by a later version (a rollback, or
/// instances of two versions sharing the database during an upgrade).
fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations/postgres");
    m.set_ignore_missing(true);
    m
}

impl PgStore {
    /// The store over `pool`, in `schema` (`public` without one).
    fn over(pool: PgPool, schema: Option<&str>) -> PgStore {
        let scope = schema.unwrap_or("public");
        PgStore {
            pool,
            keys_channel: format!("jwtd_{scope}_keys"),
            revocations_channel: format!("jwtd_{scope}_revocations"),
            lock_key: format!("jwtd/{scope}/keys"),
        }
    }
}

/// Checks a schema name as jwtd uses it (unquoted in `CREATE SCHEMA` and `search_path`):
/// 1 to 63 bytes of `[A-Za-z0-9_]`, not starting with a digit. `jwtd config check` and
/// `jwtd serve` call it at load, before anything connects.
pub fn check_schema(s: &str) -> Result<(), StoreError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "schema name {s:?} must be 1 to 63 characters of [A-Za-z0-9_], not starting with a digit"
        )))
    }
}
