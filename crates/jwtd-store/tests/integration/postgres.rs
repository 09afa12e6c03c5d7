//! The key ring on the machine's real PostgreSQL (127.0.0.1:5432, database `test`; override with
//! JWTD_TEST_POSTGRES_URL). A missing PostgreSQL fails these tests: `scripts/ensure-deps` starts it.

use jwtd_core::{Algorithm, Validation};
use jwtd_store::{Kek, KeyRing, KeyState, PgStore, RingConfig};
use jwtd_test_support::pg_url;
use std::time::Duration;

/// `jwtd_test_<name>_<time>_<random>`.
fn schema(name: &str) -> String {
    jwtd_test_support::schema(&format!("test_{name}"))
}

fn cfg() -> RingConfig {
    RingConfig {
        publish_lead: Duration::from_secs(100),
        max_token_ttl: Duration::from_secs(600),
        grace: Duration::from_secs(60),
        rotate_every: None,
        ..RingConfig::default()
    }
}

async fn open(schema: &str, kek: [u8; 32]) -> KeyRing<PgStore> {
    let store = PgStore::open(&pg_url(), Some(schema))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", pg_url()));
    KeyRing::open(store, Kek::from_bytes(&kek).unwrap(), cfg())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_instances_share_one_ring() {
    let s = schema("share");
    let kek = [5u8; 32];
    let a = open(&s, kek).await;
    let b = open(&s, kek).await;
    a.ensure_active(1000).await.unwrap();
    // b learns a's key on its next tick (the service ticks every minute).
    b.tick(1001).await.unwrap();
    assert_eq!(a.jwks_json(), b.jwks_json());
    let signer = b.signer().unwrap();
    let now = jwtd_core::unix_now();
    let c = serde_json::json!({"iss": "me", "exp": now + 60});
    let t = jwtd_core::sign(&signer, c.as_object().unwrap(), None).unwrap();
    let v = Validation::new(&[Algorithm::ES256]).issuer("me");
    jwtd_core::verify(&a.verify_keys(), &v, &t, now).unwrap();
    // A rotation on a reaches b.
    a.rotate(1002).await.unwrap();
    b.tick(1003).await.unwrap();
    let states: Vec<KeyState> = b.keys().iter().map(|k| k.state).collect();
    assert_eq!(states, [KeyState::Active, KeyState::Pending]);
    // Restart keeps everything; a wrong KEK is refused.
    drop(b);
    let b = open(&s, kek).await;
    assert_eq!(b.keys().len(), 2);
    let store = PgStore::open(&pg_url(), Some(&s)).await.unwrap();
    let e = KeyRing::open(store, Kek::from_bytes(&[6u8; 32]).unwrap(), cfg())
        .await
        .unwrap_err();
    assert!(e.0.contains("failed to decrypt"), "{e}");
}

#[tokio::test]
async fn a_tampered_row_fails_loudly() {
    let s = schema("tamper");
    let ring = open(&s, [7u8; 32]).await;
    ring.ensure_active(1).await.unwrap();
    let k = &ring.keys()[0];
    let mut sealed = k.sealed.clone();
    sealed[3] ^= 0x40;
    sqlx::query("UPDATE keys SET sealed = $1 WHERE kid = $2")
        .bind(&sealed)
        .bind(&k.kid)
        .execute(ring.store().pool())
        .await
        .unwrap();
    let store = PgStore::open(&pg_url(), Some(&s)).await.unwrap();
    let e = KeyRing::open(store, Kek::from_bytes(&[7u8; 32]).unwrap(), cfg())
        .await
        .unwrap_err();
    assert!(e.0.contains("failed to decrypt"), "{e}");
}

#[tokio::test]
async fn instances_racing_to_rotate_create_exactly_one_key() {
    let s = schema("race");
    let kek = [8u8; 32];
    let mut rings = Vec::new();
    for _ in 0..3 {
        let store = PgStore::open(&pg_url(), Some(&s)).await.unwrap();
        let cfg = RingConfig {
            rotate_every: Some(Duration::from_secs(50)),
            ..cfg()
        };
        rings.push(
            KeyRing::open(store, Kek::from_bytes(&kek).unwrap(), cfg)
                .await
                .unwrap(),
        );
    }
    // Three instances starting together on an empty store: one first key.
    let starts = futures_join(rings.iter().map(|r| r.ensure_active(1000))).await;
    let created: usize = starts.into_iter().map(|e| e.unwrap().len()).sum();
    assert_eq!(created, 1, "exactly one instance creates the first key");
    // The schedule comes due on all three at once: one pending key, not three.
    for round in 0..5 {
        let now = 1100 + round;
        let ticks = futures_join(rings.iter().map(|r| r.tick(now))).await;
        for t in ticks {
            t.unwrap();
        }
    }
    let keys = rings[0].keys();
    let pending = keys.iter().filter(|k| k.state == KeyState::Pending).count();
    assert_eq!((keys.len(), pending), (2, 1), "{keys:?}");
    for r in &rings[1..] {
        assert_eq!(r.jwks_json(), rings[0].jwks_json());
    }
}

/// Runs futures concurrently (all polled together on this task).
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<_> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (h, o) in handles.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *o = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("done")).collect()
}

#[tokio::test]
async fn revocations_are_sequenced_announced_and_purged() {
    use jwtd_core::Revocation;
    use jwtd_store::{Change, RevocationStore};
    let s = schema("revoke");
    let a = PgStore::open(&pg_url(), Some(&s)).await.unwrap();
    let b = PgStore::open(&pg_url(), Some(&s)).await.unwrap();
    let mut watch = b.watch().await.unwrap();
    let id1 = a
        .add_revocation(
            &Revocation::jti("j1", Some("https://i"), Some(2000)),
            1000,
            Some("leaked"),
        )
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await
        .expect("notified within 2 s")
        .unwrap();
    assert_eq!(seen, Change::Revocations);
    let id2 = a
        .add_revocation(&Revocation::subject("u", None, 1500, None), 1001, None)
        .await
        .unwrap();
    assert!(id2 > id1);
    let all = b.revocations_after(0, 1000).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].note.as_deref(), Some("leaked"));
    assert_eq!(
        all[0].revocation,
        Revocation::jti("j1", Some("https://i"), Some(2000))
    );
    assert_eq!(b.revocations_after(id1, 1000).await.unwrap().len(), 1);
    // Expired entries are not listed, and purge deletes them.
    assert_eq!(b.revocations_after(0, 2000).await.unwrap().len(), 1);
    assert_eq!(a.purge_revocations(2000).await.unwrap(), 1);
    assert_eq!(b.revocations_after(0, 0).await.unwrap().len(), 1);
    // Key ring changes are announced on their own channel.
    let ring = KeyRing::open(a, Kek::from_bytes(&[9u8; 32]).unwrap(), cfg())
        .await
        .unwrap();
    ring.ensure_active(1).await.unwrap();
    let mut got = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        got.push(c);
    }
    assert!(got.contains(&Change::Keys), "{got:?}");
}

/// `open_read_only` (what `jwtd rules test` opens): reads the shared ring, creates no schema,
/// and every write fails (read-only sessions).
#[tokio::test]
async fn the_read_only_store_reads_the_ring_and_writes_nothing() {
    let s = schema("readonly");
    let kek = [7u8; 32];
    let ring = open(&s, kek).await;
    ring.ensure_active(1000).await.unwrap();
    let store = PgStore::open_read_only(&pg_url(), Some(&s)).await.unwrap();
    let ro = KeyRing::open(store, Kek::from_bytes(&kek).unwrap(), cfg())
        .await
        .unwrap();
    assert_eq!(ro.jwks_json(), ring.jwks_json());
    let err = ro.rotate(2000).await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(ring.keys().len(), 1);
    ring.reload().await.unwrap();
    assert_eq!(ring.keys().len(), 1, "the failed rotation wrote nothing");
    // A schema that does not exist is not created: the first read fails.
    let absent = schema("readonly_absent");
    let store = PgStore::open_read_only(&pg_url(), Some(&absent))
        .await
        .unwrap();
    assert!(KeyRing::open(store, Kek::from_bytes(&kek).unwrap(), cfg())
        .await
        .is_err());
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(&absent)
    .fetch_one(ring.store().pool())
    .await
    .unwrap();
    assert!(!exists, "no schema created");
}

/// The shared DPoP replay table: a key recorded by one instance is refused to another (and to
/// itself) while live, taken again once expired, and the purge deletes only expired rows, in
/// batches. Prints the round trip per insert over 1000 (`--nocapture`).
#[tokio::test]
async fn dpop_jti_is_recorded_once_across_instances_and_purged() {
    let s = schema("dpopjti");
    let a = PgStore::open_for_replay(&pg_url(), Some(&s), 4, Duration::from_secs(3)).unwrap();
    a.ensure_dpop_table(Some(&s))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", pg_url()));
    // Idempotent, and outside the versioned migrations (which a key store runs, and an
    // earlier version's instance would refuse to meet unknown).
    a.ensure_dpop_table(Some(&s)).await.unwrap();
    let b = PgStore::open(&pg_url(), Some(&s)).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY 1")
        .fetch_all(b.pool())
        .await
        .unwrap();
    assert_eq!(
        versions,
        [1, 2],
        "the replay table is no versioned migration"
    );
    let k = [1u8; 16];
    assert!(a.record_dpop_jti(&k, 100, 10).await.unwrap());
    assert!(
        !b.record_dpop_jti(&k, 100, 20).await.unwrap(),
        "a replay on b"
    );
    assert!(!a.record_dpop_jti(&k, 100, 99).await.unwrap(), "and on a");
    assert!(b.dpop_jti_seen(&k, 99).await.unwrap());
    assert!(!b.dpop_jti_seen(&k, 100).await.unwrap(), "expired at 100");
    assert!(
        b.record_dpop_jti(&k, 200, 100).await.unwrap(),
        "an expired row is replaced"
    );
    assert!(!a.record_dpop_jti(&k, 300, 150).await.unwrap());
    // 25 rows expiring at 50, one (k) at 200: kept through the grace (clocks of instances
    // may differ), then purged in batches of 10.
    for i in 0..25u8 {
        assert!(a.record_dpop_jti(&[100 + i; 16], 50, 10).await.unwrap());
    }
    assert_eq!(
        b.purge_dpop_jti(60, 10).await.unwrap(),
        0,
        "inside the grace"
    );
    let at = 60 + jwtd_store::DPOP_PURGE_GRACE_SECS;
    let mut deleted = Vec::new();
    loop {
        let n = b.purge_dpop_jti(at, 10).await.unwrap();
        deleted.push(n);
        if n < 10 {
            break;
        }
    }
    assert_eq!(deleted, [10, 10, 5]);
    assert!(
        a.dpop_jti_seen(&k, 150).await.unwrap(),
        "a live row is kept"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dpop_jti")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
    // The cost of one record (one round trip), over 1000 distinct keys.
    let start = std::time::Instant::now();
    for i in 0..1000u32 {
        let mut h = [7u8; 16];
        h[..4].copy_from_slice(&i.to_be_bytes());
        assert!(a.record_dpop_jti(&h, 1000, 10).await.unwrap());
    }
    let per = start.elapsed() / 1000;
    println!("dpop_jti: one record (INSERT ... ON CONFLICT) takes {per:?} over 1000");
    // A store whose database is down answers an error, not a hang past its acquire timeout.
    let down = PgStore::open_for_replay(
        "postgres://postgres@127.0.0.1:1/test",
        None,
        1,
        Duration::from_millis(300),
    )
    .unwrap();
    let t = std::time::Instant::now();
    assert!(down.record_dpop_jti(&k, 100, 10).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    sqlx::query(&format!("DROP SCHEMA {s} CASCADE"))
        .execute(a.pool())
        .await
        .unwrap();
}
