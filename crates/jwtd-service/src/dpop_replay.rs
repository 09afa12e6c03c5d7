//! The shared DPoP `jti` table (`[dpop_replay]`): [`jwtd_gate::dpop::ReplayStore`] over
//! PostgreSQL's `dpop_jti` (jwtd-store), one `INSERT ... ON CONFLICT` per proof, each bounded by
//! `timeout`; a background task per instance creates the table (retrying while the database
//! is down) and deletes expired rows every `purge_interval`, in batches.

use crate::config::DpopReplaySettings;
use jwtd_gate::dpop::{ReplayFuture, ReplayStore, ReplayStoreError, SharedReplay};
use jwtd_store::PgStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The `dpop_jti` table of one `[dpop_replay]` store.
#[derive(Debug)]
pub struct PgReplay {
    store: PgStore,
    schema: Option<String>,
    /// The migrations ran (the table exists).
    ready: AtomicBool,
}

fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

impl ReplayStore for PgReplay {
    fn record(&self, key: [u8; 16], expires: u64, now: u64) -> ReplayFuture<'_, bool> {
        Box::pin(async move {
            self.store
                .record_dpop_jti(&key, secs(expires), secs(now))
                .await
                .map_err(|e| ReplayStoreError(e.to_string()))
        })
    }

    fn seen(&self, key: [u8; 16], now: u64) -> ReplayFuture<'_, bool> {
        Box::pin(async move {
            self.store
                .dpop_jti_seen(&key, secs(now))
                .await
                .map_err(|e| ReplayStoreError(e.to_string()))
        })
    }
}

/// Opens `cfg`'s store without waiting for the database (a database down at start is like one
/// going down later: `on_unavailable` decides), tries once (bounded by 3 s) to create its
/// table, and starts the task that creates it later if need be and purges it. The task stops
/// when the last [`SharedReplay`] holding the store is dropped.
pub async fn open(cfg: &DpopReplaySettings) -> Result<SharedReplay, String> {
    let store = PgStore::open_for_replay(
        &cfg.store,
        cfg.store_schema.as_deref(),
        cfg.max_connections,
        cfg.timeout.0,
    )
    .map_err(|e| format!("[dpop_replay] {e}"))?;
    let r = Arc::new(PgReplay {
        store,
        schema: cfg.store_schema.clone(),
        ready: AtomicBool::new(false),
    });
    match tokio::time::timeout(Duration::from_secs(3), r.migrate()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "[dpop_replay]: the store cannot be set up yet"),
        Err(_) => tracing::error!("[dpop_replay]: the store did not answer within 3 s"),
    }
    tokio::spawn(run(Arc::downgrade(&r), cfg.purge_interval.0));
    Ok(SharedReplay::new(r, cfg.timeout.0, cfg.on_unavailable))
}

impl PgReplay {
    async fn migrate(&self) -> Result<(), String> {
        self.store
            .ensure_dpop_table(self.schema.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        self.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the rows expired at `now`, a batch at a time; the number deleted.
    async fn purge(&self, now: u64) -> Result<u64, String> {
        let batch = crate::defaults::DPOP_REPLAY_PURGE_BATCH;
        let mut total = 0;
        loop {
            let n = self
                .store
                .purge_dpop_jti(secs(now), batch)
                .await
                .map_err(|e| e.to_string())?;
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
        }
    }
}

async fn run(weak: Weak<PgReplay>, every: Duration) {
    // Until the table exists: retry every 5 s (or every purge interval, if shorter).
    let retry = every.min(Duration::from_secs(5));
    loop {
        let Some(r) = weak.upgrade() else { return };
        if r.ready.load(Ordering::Relaxed) {
            break;
        }
        if let Err(e) = r.migrate().await {
            tracing::warn!(error = %e, "[dpop_replay]: the store cannot be set up yet");
        }
        drop(r);
        tokio::time::sleep(retry).await;
    }
    loop {
        tokio::time::sleep(every).await;
        let Some(r) = weak.upgrade() else { return };
        match r.purge(jwtd_core::unix_now()).await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "[dpop_replay]: expired jtis purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "[dpop_replay]: purge failed"),
        }
    }
}
