//! The embedded SQLite store.

use crate::{
    ChangeLock, KeyState, KeyStore, RevocationStore, StoreError, StoredKey, StoredRevocation,
};
use jwtd_core::Revocation;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::path::Path;

/// Keys in an SQLite file, created with its schema (migrations) on first use.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("store: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs migrations. The file is
    /// created with mode 0600.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(SqliteStore { pool })
    }

    /// Opens the existing database at `path` read-only, for tools that must change nothing
    /// (`jwtd rules test`): a missing file is an error (never created), no migration runs, no
    /// pragma is changed, and every write through this store fails. Without a `-wal` file
    /// next to it (no connection is open: a running `jwtd serve` keeps one), the file is
    /// opened as immutable, so SQLite does not leave the `-wal` and `-shm` files a read-only
    /// connection would create; with one, it is read through them, as a reader beside the
    /// running service.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(err(format!("{} does not exist", path.display())));
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .immutable(!Path::new(&wal).exists())
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(err)?;
        Ok(SqliteStore { pool })
    }

    /// Direct access for tests and tools (e.g. to prove tampering is detected).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl KeyStore for SqliteStore {
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
        sqlx::query(
            "INSERT INTO keys (kid, alg, state, created_at, activate_at, retire_after, public_jwk, nonce, sealed) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn update(
        &self,
        kid: &str,
        state: KeyState,
        activate_at: Option<i64>,
        retire_after: Option<i64>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE keys SET state = ?, activate_at = ?, retire_after = ? WHERE kid = ?",
        )
        .bind(state.as_str())
        .bind(activate_at)
        .bind(retire_after)
        .bind(kid)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(err(format!("no key {kid:?}")));
        }
        Ok(())
    }

    async fn delete(&self, kid: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM keys WHERE kid = ?")
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn lock_changes(&self) -> Result<ChangeLock, StoreError> {
        Ok(ChangeLock::none())
    }
}

impl RevocationStore for SqliteStore {
    async fn add_revocation(
        &self,
        r: &Revocation,
        created_at: i64,
        note: Option<&str>,
    ) -> Result<i64, StoreError> {
        let (id,): (i64,) = sqlx::query_as(crate::sql::ADD_REVOCATION)
            .bind(r.kind.as_str())
            .bind(&r.value)
            .bind(&r.iss)
            .bind(r.issued_before)
            .bind(r.expires_at)
            .bind(created_at)
            .bind(note)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
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
