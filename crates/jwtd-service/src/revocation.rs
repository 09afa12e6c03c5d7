//! Revocation at run time: the list in memory, kept in step with the store.
//!
//! - Every verification checks the in-memory [`RevocationList`] (a few hash lookups; nothing
//!   when it is empty), never the database. Readers take no lock: the bulk of the list is an
//!   immutable snapshot behind an `ArcSwap`, rebuilt in batches; revocations newer than the
//!   snapshot sit in a small side list (checked under a read lock only while it is non-empty)
//!   until the next merge.
//! - A revocation made here is written to the store and applied here at once. When the store
//!   cannot be reached it is applied here, kept in an outbox and written as soon as the store is
//!   back: nothing is lost while this process lives.
//! - Other instances learn of it through PostgreSQL `NOTIFY` (well under a second) and, for
//!   anything missed, by catching up by sequence number every `resync_interval` and reloading
//!   the whole list every `full_resync_interval`.
//! - Freshness is the time of the last successful catch-up. Past `max_staleness` the service
//!   refuses tokens with `revocation_unavailable` (or, when configured, keeps accepting).

use crate::config::{OnStale, RevocationSettings};
use arc_swap::ArcSwap;
use jwtd_core::{Error, Reason, Revocation, RevocationList, Verified};
use jwtd_store::{AnyStore, Change, RevocationStore, StoreError};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Side-list size that triggers a merge into the snapshot at the next sync.
const MERGE_AT: usize = 256;
/// Longest a revocation stays in the side list (merged at the first sync after it).
const MERGE_AFTER: Duration = Duration::from_secs(5);
/// Longest one catch-up with the store may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings resolved from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Oldest acceptable list, seconds.
    pub max_staleness: u64,
    /// Fail closed or open past it.
    pub on_stale: OnStale,
    /// Catch-up period.
    pub resync_interval: Duration,
    /// Whole-list reload period.
    pub full_resync_interval: Duration,
    /// Longest token lifetime, seconds (expiry of entries whose tokens' `exp` is unknown).
    pub max_token_lifetime: u64,
}

impl Limits {
    /// From the configuration section, with defaults.
    pub fn from_settings(s: &RevocationSettings) -> Limits {
        use crate::defaults as d;
        let secs = |v: Option<crate::config::Seconds>, d: u64| v.map(|s| s.0).unwrap_or(d);
        Limits {
            max_staleness: secs(s.max_staleness, d::MAX_STALENESS),
            on_stale: s.on_stale,
            resync_interval: Duration::from_secs(
                secs(s.resync_interval, d::RESYNC_INTERVAL).max(1),
            ),
            full_resync_interval: Duration::from_secs(
                secs(s.full_resync_interval, d::FULL_RESYNC_INTERVAL).max(1),
            ),
            max_token_lifetime: secs(s.max_token_lifetime, d::MAX_TOKEN_LIFETIME),
        }
    }
}

/// How a revocation request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Written to the store with this sequence number.
    Stored(i64),
    /// Applied here; the store is unreachable and it waits in the outbox.
    Pending,
}

/// The run-time revocation state of one instance.
#[derive(Debug)]
pub struct Revocations {
    /// The snapshot every reader loads without locking.
    base: ArcSwap<RevocationList>,
    /// Applied since the last merge: the list to check, and the entries to merge.
    recent: RwLock<(RevocationList, Vec<Revocation>)>,
    recent_len: AtomicUsize,
    last_merge: Mutex<Instant>,
    synced_at: AtomicI64,
    last_id: AtomicI64,
    store: AnyStore,
    limits: Limits,
    outbox: Mutex<Vec<(Revocation, i64, Option<String>)>>,
    sync_lock: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    warned_stale: AtomicBool,
    /// Opened by [`Revocations::load`]: nothing is written (no purge) and nothing runs.
    read_only: bool,
}

fn now() -> i64 {
    jwtd_core::unix_now() as i64
}

impl Revocations {
    /// Loads the whole list from `store` (failing if it cannot) and starts keeping it in step.
    pub async fn start(store: AnyStore, limits: Limits) -> Result<Arc<Revocations>, String> {
        let r = Revocations::open(store, limits, false).await?;
        tokio::spawn(run(Arc::downgrade(&r)));
        Ok(r)
    }

    /// Loads the whole list from `store` once, for tools that decide without serving (`jwtd
    /// rules test`): nothing is written to the store (expired entries are not purged) and it
    /// is not kept in step afterwards.
    pub async fn load(store: AnyStore, limits: Limits) -> Result<Arc<Revocations>, String> {
        Revocations::open(store, limits, true).await
    }

    async fn open(
        store: AnyStore,
        limits: Limits,
        read_only: bool,
    ) -> Result<Arc<Revocations>, String> {
        let r = Arc::new(Revocations {
            base: ArcSwap::from_pointee(RevocationList::new()),
            recent: RwLock::new((RevocationList::new(), Vec::new())),
            recent_len: AtomicUsize::new(0),
            last_merge: Mutex::new(Instant::now()),
            synced_at: AtomicI64::new(0),
            last_id: AtomicI64::new(0),
            store,
            limits,
            outbox: Mutex::new(Vec::new()),
            sync_lock: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            warned_stale: AtomicBool::new(false),
            read_only,
        });
        r.sync(true).await.map_err(|e| e.to_string())?;
        Ok(r)
    }

    /// The revocation state a configuration asks for (`None` without a `[revocation]`
    /// section), on its own store: for embedders such as the tower middleware. (`jwtd serve`
    /// shares the key ring's store when it is the same database.)
    pub async fn from_config(config: &crate::Config) -> Result<Option<Arc<Revocations>>, String> {
        match &config.revocation {
            None => Ok(None),
            Some(cfg) => crate::open_revocations(cfg, config, None, crate::Access::Serve)
                .await
                .map(Some),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Entries held in memory.
    pub fn len(&self) -> usize {
        self.base.load().len() + self.recent_len.load(Ordering::Relaxed)
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unix time of the last successful catch-up with the store.
    pub fn synced_at(&self) -> i64 {
        self.synced_at.load(Ordering::Relaxed)
    }

    /// Revocations applied here but not yet written to the store.
    pub fn pending(&self) -> usize {
        self.outbox.lock().expect("lock").len()
    }

    /// Refuses a verified token that is revoked, or any token when the list is too old and the
    /// policy is to fail closed. `now` is the verification time (Unix seconds).
    pub fn check(&self, verified: &Verified, now: u64) -> Result<(), Error> {
        self.check_now(verified, now)
    }

    fn check_now(&self, verified: &Verified, now: u64) -> Result<(), Error> {
        // The side list first, then the snapshot: a merge publishes the new snapshot before it
        // empties the side list (release/acquire on its length), so an entry being merged is
        // seen in one or the other.
        // Every revocation entry is kept `max_token_lifetime` (+ 1 h) past the moment its
        // tokens were issued: a token living longer could outlive the entry that revokes it.
        let max = self.limits.max_token_lifetime as f64;
        match (verified.issued_at(), verified.expires_at()) {
            (Some(iat), Some(exp)) if exp - iat <= max => {}
            (Some(iat), Some(exp)) => {
                return Err(Error::new(
                    Reason::LifetimeTooLong,
                    format!(
                        "the token lives {} s (exp - iat); with revocation on, at most max_token_lifetime = {} s is accepted",
                        (exp - iat) as i64,
                        self.limits.max_token_lifetime
                    ),
                ))
            }
            _ => {
                return Err(Error::new(
                    Reason::LifetimeTooLong,
                    "with revocation on, a token needs \"iat\" and \"exp\" so that its lifetime is bounded by max_token_lifetime",
                ))
            }
        }
        if self.recent_len.load(Ordering::Acquire) != 0 {
            self.recent.read().expect("lock").0.check(verified)?;
        }
        let base = self.base.load();
        if !base.is_empty() {
            base.check(verified)?;
        }
        let age = (now as i64).saturating_sub(self.synced_at.load(Ordering::Relaxed));
        if age > self.limits.max_staleness as i64 {
            match self.limits.on_stale {
                OnStale::Reject => {
                    return Err(Error::new(
                        Reason::RevocationUnavailable,
                        format!(
                        "the revocation list is {age} s old (limit {} s): the store is unreachable",
                        self.limits.max_staleness
                    ),
                    ))
                }
                OnStale::Accept => {
                    if !self.warned_stale.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            age,
                            "revocation list is stale; accepting tokens anyway (on_stale = accept)"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds to the side list (unless the snapshot already covers it).
    fn apply(&self, r: &Revocation) {
        if self.base.load().covers(r) {
            return;
        }
        let mut recent = self.recent.write().expect("lock");
        if recent.0.insert(r) {
            recent.1.push(r.clone());
        }
        self.recent_len.store(recent.0.len(), Ordering::Release);
    }

    /// Folds the side list into a new snapshot when it is big or old enough (a copy of the
    /// snapshot per merge, so merges are batched). The snapshot is published before the side
    /// list is emptied: an entry is never in neither.
    fn merge(&self) {
        if self.recent_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut last = self.last_merge.lock().expect("lock");
        let due =
            self.recent_len.load(Ordering::Relaxed) >= MERGE_AT || last.elapsed() >= MERGE_AFTER;
        if !due {
            return;
        }
        let mut recent = self.recent.write().expect("lock");
        let mut next = RevocationList::clone(&self.base.load());
        for r in &recent.1 {
            next.insert(r);
        }
        self.base.store(Arc::new(next));
        *recent = (RevocationList::new(), Vec::new());
        self.recent_len.store(0, Ordering::Release);
        *last = Instant::now();
    }

    /// Replaces everything with `list` (a whole-list reload).
    fn replace(&self, list: RevocationList) {
        // Same lock order as `merge`.
        let mut last = self.last_merge.lock().expect("lock");
        let mut recent = self.recent.write().expect("lock");
        self.base.store(Arc::new(list));
        *recent = (RevocationList::new(), Vec::new());
        self.recent_len.store(0, Ordering::Release);
        *last = Instant::now();
    }

    /// Records a revocation: applied here at once, written to the store (or to the outbox
    /// when the store does not answer within 3 s).
    pub async fn revoke(&self, r: Revocation, note: Option<String>) -> Recorded {
        // Enforced here at once, even while a catch-up holds the lock.
        let created = now();
        self.apply(&r);
        // Written under the sync lock, and applied again: a whole-list reload that ran in
        // between (from rows read before this write) cannot have dropped it from memory.
        let _g = self.sync_lock.lock().await;
        self.apply(&r);
        let write = self.store.add_revocation(&r, created, note.as_deref());
        match tokio::time::timeout(Duration::from_secs(3), write).await {
            Ok(Ok(id)) => Recorded::Stored(id),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "revocation kept in the outbox: store write failed");
                self.outbox.lock().expect("lock").push((r, created, note));
                self.wake.notify_one();
                Recorded::Pending
            }
            Err(_) => {
                tracing::warn!("revocation kept in the outbox: store write timed out");
                self.outbox.lock().expect("lock").push((r, created, note));
                self.wake.notify_one();
                Recorded::Pending
            }
        }
    }

    /// Writes the outbox, then catches up (`full`: reloads everything) and purges expired
    /// entries. On success the list is fresh as of now.
    async fn sync(&self, full: bool) -> Result<(), StoreError> {
        let _g = self.sync_lock.lock().await;
        let started = now();
        // The outbox only grows under the sync lock, which is held: write it in order, dropping
        // each entry once stored.
        loop {
            let Some((r, created, note)) = self.outbox.lock().expect("lock").first().cloned()
            else {
                break;
            };
            self.store
                .add_revocation(&r, created, note.as_deref())
                .await?;
            self.outbox.lock().expect("lock").remove(0);
            tracing::info!("revocation from the outbox written to the store");
        }
        if full {
            let rows = self.store.revocations_after(0, started).await?;
            let mut list = RevocationList::new();
            let mut last = 0;
            for row in &rows {
                list.insert(&row.revocation);
                last = last.max(row.id);
            }
            // The outbox was just written, so `rows` holds everything applied here.
            self.replace(list);
            self.last_id.store(last, Ordering::Relaxed);
            // A tool's read-only look at the list purges nothing.
            if !self.read_only {
                if let Err(e) = self.store.purge_revocations(started).await {
                    tracing::warn!(error = %e, "revocation purge failed");
                }
            }
        } else {
            let after = self.last_id.load(Ordering::Relaxed);
            let rows = self.store.revocations_after(after, started).await?;
            if let Some(last) = rows.iter().map(|r| r.id).max() {
                for row in &rows {
                    self.apply(&row.revocation);
                }
                self.last_id.store(last, Ordering::Relaxed);
            }
            // Expired entries leave at the next whole-list reload.
            self.merge();
        }
        self.synced_at.store(started, Ordering::Relaxed);
        self.warned_stale.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// Keeps one instance's list in step until the state is dropped.
async fn run(weak: std::sync::Weak<Revocations>) {
    let mut watch = None;
    let mut backoff = Duration::from_millis(100);
    let mut last_full = tokio::time::Instant::now();
    let (mut need_sync, mut need_full) = (false, false);
    loop {
        let Some(r) = weak.upgrade() else { return };
        if let (None, AnyStore::Postgres(pg)) = (&watch, &r.store) {
            match pg.watch().await {
                Ok(w) => {
                    watch = Some(w);
                    // Whatever happened while not listening: catch up.
                    need_sync = true;
                }
                Err(e) => tracing::debug!(error = %e, "revocation listener cannot connect"),
            }
        }
        if last_full.elapsed() >= r.limits.full_resync_interval {
            need_sync = true;
            need_full = true;
        }
        if need_sync || r.pending() > 0 {
            // Bounded: a connection that hangs must not hold the sync lock (and the admin API
            // behind it); the list then ages towards max_staleness, as it should.
            let bounded = tokio::time::timeout(SYNC_TIMEOUT, r.sync(need_full));
            let outcome = bounded
                .await
                .unwrap_or_else(|_| Err(StoreError("revocation sync timed out".into())));
            match outcome {
                Ok(()) => {
                    need_sync = false;
                    if need_full {
                        last_full = tokio::time::Instant::now();
                        need_full = false;
                    }
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "revocation sync failed");
                    drop(r);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let interval = r.limits.resync_interval;
        let r2 = r.clone();
        drop(r);
        let woke = async {
            match watch.as_mut() {
                Some(w) => w.next().await.map(Some),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = woke => match event {
                Ok(Some(Change::Revocations)) => need_sync = true,
                Ok(Some(Change::Keys)) => {}
                Ok(Some(Change::Reconnected)) | Ok(None) => {
                    need_sync = true;
                    need_full = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation listener lost the store");
                    watch = None;
                    need_sync = true;
                    need_full = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            },
            _ = tokio::time::sleep(interval) => need_sync = true,
            _ = r2.wake.notified() => {}
        }
        drop(r2);
    }
}

impl jwtd_gate::issuers::RevocationCheck for Revocations {
    fn check(&self, verified: &Verified, now: u64) -> Result<(), Error> {
        self.check_now(verified, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtd_core::{Algorithm, KeySet, SigningKey, Validation};

    fn token_with_jti(key: &SigningKey, jti: &str) -> Verified {
        let now = jwtd_core::unix_now();
        let c = serde_json::json!({"sub": "u", "jti": jti, "iat": now, "exp": now + 600});
        let t = jwtd_core::sign(key, c.as_object().unwrap(), None).unwrap();
        let v = Validation::new(&[Algorithm::HS256]).any_audience();
        jwtd_core::verify(&KeySet::new().with(key.verifying_key()), &v, &t, now).unwrap()
    }

    #[tokio::test]
    async fn side_list_merges_into_the_snapshot_without_losing_or_double_counting() {
        let dir = std::env::temp_dir().join(format!("jwtd-rev-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = AnyStore::Sqlite(
            jwtd_store::SqliteStore::open(&dir.join("keys.db"))
                .await
                .unwrap(),
        );
        let limits = Limits {
            max_staleness: 300,
            on_stale: OnStale::Reject,
            resync_interval: Duration::from_secs(3600),
            full_resync_interval: Duration::from_secs(3600),
            max_token_lifetime: 3600,
        };
        let r = Revocations::start(store, limits).await.unwrap();
        let key = SigningKey::hmac(&[9u8; 32], Algorithm::HS256, None).unwrap();
        let now = jwtd_core::unix_now();
        for i in 0..300 {
            let rec = Revocation::jti(&format!("j{i}"), None, Some(now as i64 + 600));
            assert!(matches!(r.revoke(rec, None).await, Recorded::Stored(_)));
        }
        assert_eq!((r.len(), r.recent_len.load(Ordering::Relaxed)), (300, 300));
        // A catch-up reads the same 300 rows back: nothing doubles, and the side list (over
        // MERGE_AT) is folded into the snapshot.
        r.sync(false).await.unwrap();
        assert_eq!((r.len(), r.recent_len.load(Ordering::Relaxed)), (300, 0));
        assert_eq!(r.base.load().len(), 300);
        for i in [0, 150, 299] {
            let v = token_with_jti(&key, &format!("j{i}"));
            assert_eq!(r.check(&v, now).unwrap_err().reason(), Reason::Revoked);
        }
        assert!(r.check(&token_with_jti(&key, "other"), now).is_ok());
        // Revoking again what the snapshot covers adds nothing; a new one waits in the side
        // list and is enforced from there.
        r.revoke(Revocation::jti("j7", None, Some(now as i64 + 600)), None)
            .await;
        assert_eq!(r.len(), 300);
        r.revoke(Revocation::jti("new", None, Some(now as i64 + 600)), None)
            .await;
        assert_eq!((r.len(), r.recent_len.load(Ordering::Relaxed)), (301, 1));
        let v = token_with_jti(&key, "new");
        assert_eq!(r.check(&v, now).unwrap_err().reason(), Reason::Revoked);
        // A whole-list reload holds the same.
        r.sync(true).await.unwrap();
        assert_eq!((r.len(), r.recent_len.load(Ordering::Relaxed)), (301, 0));
        assert_eq!(r.check(&v, now).unwrap_err().reason(), Reason::Revoked);
        // Stale: refused past max_staleness, counted from the last sync (which may be seconds
        // after `now` on a slow machine: 300 SQLite writes lie between them).
        let synced = u64::try_from(r.synced_at()).unwrap();
        assert!(synced >= now);
        let fresh = r.check(&token_with_jti(&key, "other"), synced + 300);
        assert!(fresh.is_ok(), "{fresh:?}");
        let e = r
            .check(&token_with_jti(&key, "other"), synced + 301)
            .unwrap_err();
        assert_eq!(e.reason(), Reason::RevocationUnavailable);
    }
}
