//! The PostgreSQL store: the same key ring shared by several jwtd instances.

use crate::{KeyState, KeyStore, StoreError, StoredKey};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

/// Keys in a PostgreSQL database (schema created by migrations on open).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
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
            if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(format!("schema name {s:?} must be [A-Za-z0-9_]")));
            }
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
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(err)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(PgStore { pool })
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
            "UPDATE keys SET state = $1, activate_at = $2, retire_after = $3 WHERE kid = $4",
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
        let done = sqlx::query("DELETE FROM keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }
}
