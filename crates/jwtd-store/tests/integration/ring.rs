//! The key ring on the embedded SQLite store: persistence, tamper detection, file modes,
//! rotation timeline.

use jwtd_core::{Algorithm, Validation};
use jwtd_store::{Kek, KeyRing, KeyState, RingConfig, RingEvent, SqliteStore};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

fn dir(name: &str) -> PathBuf {
    jwtd_test_support::temp_dir(&format!("store-{name}"))
}

fn cfg() -> RingConfig {
    RingConfig {
        publish_lead: Duration::from_secs(100),
        max_token_ttl: Duration::from_secs(600),
        grace: Duration::from_secs(60),
        rotate_every: Some(Duration::from_secs(10_000)),
        ..RingConfig::default()
    }
}

async fn open(d: &std::path::Path) -> KeyRing<SqliteStore> {
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    KeyRing::open(store, kek, cfg()).await.unwrap()
}

fn sign_and_verify(ring: &KeyRing<SqliteStore>) -> Result<(), jwtd_core::Error> {
    let signer = ring.signer().expect("a signing key");
    let now = jwtd_core::unix_now();
    let c = serde_json::json!({"iss": "me", "sub": "s", "exp": now + 60});
    let t = jwtd_core::sign(&signer, c.as_object().unwrap(), None).unwrap();
    let v = Validation::new(&[Algorithm::ES256]).issuer("me");
    jwtd_core::verify(&ring.verify_keys(), &v, &t, now).map(|_| ())
}

#[tokio::test]
async fn restart_keeps_every_key_and_files_are_private() {
    let d = dir("restart");
    let ring = open(&d).await;
    let ev = ring.ensure_active(1000).await.unwrap();
    assert!(matches!(
        ev.as_slice(),
        [RingEvent::Created(_, KeyState::Active)]
    ));
    ring.rotate(1001).await.unwrap();
    let before: Vec<_> = ring
        .keys()
        .iter()
        .map(|k| (k.kid.clone(), k.state))
        .collect();
    let jwks = ring.jwks_json();
    drop(ring);
    let ring = open(&d).await;
    assert!(
        ring.ensure_active(1002).await.unwrap().is_empty(),
        "no new key on restart"
    );
    let after: Vec<_> = ring
        .keys()
        .iter()
        .map(|k| (k.kid.clone(), k.state))
        .collect();
    assert_eq!(before, after);
    assert_eq!(ring.jwks_json(), jwks);
    sign_and_verify(&ring).unwrap();
    for f in ["kek", "keys.db"] {
        let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // The JWKS never carries private members.
    assert!(!jwks.contains("\"d\""));
}

#[tokio::test]
async fn tampered_and_swapped_rows_fail_loudly() {
    let d = dir("tamper");
    let ring = open(&d).await;
    ring.ensure_active(1000).await.unwrap();
    ring.rotate(1001).await.unwrap();
    let keys = ring.keys();
    let pool = ring.store().pool().clone();
    // Flip one byte of the sealed key.
    let mut sealed = keys[0].sealed.clone();
    sealed[5] ^= 1;
    sqlx::query("UPDATE keys SET sealed = ? WHERE kid = ?")
        .bind(&sealed)
        .bind(&keys[0].kid)
        .execute(&pool)
        .await
        .unwrap();
    drop(ring);
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let e = KeyRing::open(store.clone(), kek, cfg()).await.unwrap_err();
    assert!(e.0.contains("failed to decrypt"), "{e}");
    // Restore it, then swap the two keys' sealed blobs between rows.
    sqlx::query("UPDATE keys SET sealed = ?, nonce = ? WHERE kid = ?")
        .bind(&keys[1].sealed)
        .bind(&keys[1].nonce)
        .bind(&keys[0].kid)
        .execute(store.pool())
        .await
        .unwrap();
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let e = KeyRing::open(store.clone(), kek, cfg()).await.unwrap_err();
    assert!(e.0.contains("failed to decrypt"), "{e}");
    // A wrong key encryption key is refused the same way.
    sqlx::query("UPDATE keys SET sealed = ?, nonce = ? WHERE kid = ?")
        .bind(&keys[0].sealed)
        .bind(&keys[0].nonce)
        .bind(&keys[0].kid)
        .execute(store.pool())
        .await
        .unwrap();
    let e = KeyRing::open(store.clone(), Kek::from_bytes(&[9u8; 32]).unwrap(), cfg())
        .await
        .unwrap_err();
    assert!(e.0.contains("failed to decrypt"), "{e}");
    // And the original opens again.
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    KeyRing::open(store, kek, cfg()).await.unwrap();
}

#[tokio::test]
async fn a_world_readable_kek_is_refused() {
    let d = dir("kekmode");
    Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    std::fs::set_permissions(d.join("kek"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Kek::load_or_create_with(None, &d.join("kek")).unwrap_err();
    assert!(e.0.contains("readable by others"), "{e}");
}

#[tokio::test]
async fn rotation_timeline() {
    let d = dir("timeline");
    let ring = open(&d).await;
    ring.ensure_active(1000).await.unwrap();
    let first = ring.signer().unwrap().kid().unwrap().to_owned();
    ring.rotate(2000).await.unwrap();
    let state = |ring: &KeyRing<SqliteStore>| -> Vec<KeyState> {
        ring.keys().iter().map(|k| k.state).collect()
    };
    assert_eq!(state(&ring), [KeyState::Active, KeyState::Pending]);
    // Published at once, signing only after the lead (100 s).
    assert_eq!(ring.verify_keys().keys().len(), 2);
    let generation = ring.generation();
    ring.tick(2001).await.unwrap();
    assert_eq!(ring.generation(), generation, "no change, same generation");
    ring.tick(2050).await.unwrap();
    assert_eq!(ring.signer().unwrap().kid().unwrap(), first);
    let ev = ring.tick(2100).await.unwrap();
    assert!(
        ev.contains(&RingEvent::Retiring(first.clone(), 2100 + 600 + 60)),
        "{ev:?}"
    );
    assert_eq!(state(&ring), [KeyState::Retiring, KeyState::Active]);
    assert_ne!(ring.signer().unwrap().kid().unwrap(), first);
    // The old key stays published until max token ttl + grace, then leaves the JWKS.
    ring.tick(2759).await.unwrap();
    assert!(ring.jwks_json().contains(&first));
    ring.tick(2760).await.unwrap();
    assert!(!ring.jwks_json().contains(&first));
    assert!(
        ring.generation() > generation,
        "a key left the JWKS: new generation"
    );
    assert_eq!(state(&ring), [KeyState::Retired, KeyState::Active]);
    // Scheduled rotation after rotate_every (10000 s) of the active key.
    let ev = ring.tick(2100 + 10_000).await.unwrap();
    assert!(
        matches!(ev.as_slice(), [RingEvent::Created(_, KeyState::Pending)]),
        "{ev:?}"
    );
    // Emergency removal of the signing key: a new one signs at once.
    let active = ring.signer().unwrap().kid().unwrap().to_owned();
    let ev = ring.remove(&active, 20_000).await.unwrap();
    assert_eq!(ev[0], RingEvent::Removed(active.clone()));
    assert!(!ring.jwks_json().contains(&active));
    sign_and_verify(&ring).unwrap();
}

#[tokio::test]
async fn hs256_ring_for_internal_use_publishes_nothing() {
    let d = dir("hs256");
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let cfg = RingConfig {
        alg: Algorithm::HS256,
        ..cfg()
    };
    let ring = KeyRing::open(store, kek, cfg.clone()).await.unwrap();
    ring.ensure_active(1000).await.unwrap();
    assert_eq!(&*ring.jwks_json(), "{\"keys\":[]}");
    let signer = ring.signer().unwrap();
    assert!(signer.kid().unwrap().starts_with("hs-"));
    let now = jwtd_core::unix_now();
    let c = serde_json::json!({"iss": "me", "exp": now + 60});
    let t = jwtd_core::sign(&signer, c.as_object().unwrap(), None).unwrap();
    let v = Validation::new(&[Algorithm::HS256]).issuer("me");
    jwtd_core::verify(&ring.verify_keys(), &v, &t, now).unwrap();
    drop(ring);
    // After a restart the sealed secret opens and verifies the same token.
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let ring = KeyRing::open(store, kek, cfg).await.unwrap();
    jwtd_core::verify(&ring.verify_keys(), &v, &t, now).unwrap();
}

#[tokio::test]
async fn the_embedded_store_keeps_revocations_in_sequence() {
    use jwtd_core::Revocation;
    use jwtd_store::RevocationStore;
    let d = dir("revocations");
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let id1 = store
        .add_revocation(&Revocation::key("k1", None, None), 10, None)
        .await
        .unwrap();
    let id2 = store
        .add_revocation(&Revocation::jti("j", None, Some(100)), 11, Some("why"))
        .await
        .unwrap();
    assert!(id2 > id1);
    let after = store.revocations_after(id1, 50).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].id, after[0].created_at), (id2, 11));
    assert_eq!(after[0].revocation, Revocation::jti("j", None, Some(100)));
    assert_eq!(
        store.revocations_after(0, 100).await.unwrap().len(),
        1,
        "expired hidden"
    );
    assert_eq!(store.purge_revocations(100).await.unwrap(), 1);
    drop(store);
    // Kept across restarts.
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let left = store.revocations_after(0, 0).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].revocation, Revocation::key("k1", None, None));
}

/// Finding 3: the generation moves exactly when the verify set changes, on every ring: an
/// HS256 ring (whose keys are never published in the JWKS, so the JWKS text never changes)
/// included; and the keys and their generation come from one view.
#[tokio::test]
async fn the_generation_moves_exactly_when_the_verify_set_changes_hs256_included() {
    let d = dir("generation-hs256");
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let ring = KeyRing::open(
        store,
        kek,
        RingConfig {
            alg: Algorithm::HS256,
            ..cfg()
        },
    )
    .await
    .unwrap();
    ring.ensure_active(1000).await.unwrap();
    assert_eq!(
        &*ring.jwks_json(),
        "{\"keys\":[]}",
        "HS256 keys are never published"
    );
    let (keys, g0) = ring.verify_view();
    assert_eq!(keys.keys().len(), 1);
    ring.reload().await.unwrap();
    assert_eq!(
        ring.generation(),
        g0,
        "re-reading the same keys keeps the generation"
    );
    ring.rotate(2000).await.unwrap();
    let (keys, g1) = ring.verify_view();
    assert_eq!(keys.keys().len(), 2);
    assert!(g1 > g0, "a pending key joined the verify set");
    let first = ring.keys()[0].kid.clone();
    ring.remove(&first, 2001).await.unwrap();
    let (keys, g2) = ring.verify_view();
    assert_eq!(keys.keys().len(), 1);
    assert!(
        g2 > g1,
        "a removed HS256 key must move the generation (it never was in the JWKS)"
    );
    ring.reload().await.unwrap();
    assert_eq!(ring.verify_view().1, g2);
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn retiring_the_signing_key_needs_a_successor_and_keeps_a_signer() {
    let d = dir("retire-active");
    let ring = open(&d).await;
    ring.ensure_active(1000).await.unwrap();
    let active = ring.signer().unwrap().kid().unwrap().to_owned();
    // No successor: refused, and the key still signs.
    let e = ring.retire(&active, 1001, false).await.unwrap_err();
    assert!(e.to_string().contains("jwtd keys rotate"), "{e}");
    assert_eq!(ring.signer().unwrap().kid(), Some(active.as_str()));
    let ev = ring.rotate(1002).await.unwrap();
    let [RingEvent::Created(next, KeyState::Pending)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    // Its lead (100 s) runs: refused without promote_early.
    let e = ring.retire(&active, 1010, false).await.unwrap_err();
    assert!(e.to_string().contains("--promote"), "{e}");
    let ev = ring.retire(&active, 1010, true).await.unwrap();
    assert_eq!(
        ev,
        vec![
            RingEvent::ActivatedEarly(next.clone(), 92),
            RingEvent::Retiring(active.clone(), 1010 + 600 + 60)
        ]
    );
    assert_eq!(ring.signer().unwrap().kid(), Some(next.as_str()));
    sign_and_verify(&ring).unwrap();
    // A retiring key cannot be retired again (its publication would move).
    assert!(ring.retire(&active, 1020, false).await.is_err());
    // After its lead, a successor takes over without promote_early.
    ring.rotate(1030).await.unwrap();
    let ev = ring.retire(next, 1200, false).await.unwrap();
    assert!(matches!(ev[0], RingEvent::Activated(_)), "{ev:?}");
    assert!(ring.signer().is_some());
}

#[tokio::test]
async fn a_ring_left_without_a_signer_signs_again_at_the_next_tick() {
    let d = dir("orphaned");
    let ring = open(&d).await;
    // A pending key and no active one (what `keys rotate` on an empty ring, or an older
    // `keys retire`, left behind).
    ring.rotate(1000).await.unwrap();
    assert!(ring.signer().is_none());
    let ev = ring.tick(1001).await.unwrap();
    assert!(
        matches!(ev.as_slice(), [RingEvent::ActivatedEarly(_, 99)]),
        "{ev:?}"
    );
    assert!(ring.signer().is_some());
    sign_and_verify(&ring).unwrap();
}

#[tokio::test]
async fn a_new_key_of_another_algorithm_is_reported() {
    let d = dir("alg-change");
    let ring = open(&d).await;
    ring.ensure_active(1000).await.unwrap();
    drop(ring);
    let (kek, _) = Kek::load_or_create_with(None, &d.join("kek")).unwrap();
    let store = SqliteStore::open(&d.join("keys.db")).await.unwrap();
    let cfg = RingConfig {
        alg: Algorithm::EdDSA,
        ..cfg()
    };
    let ring = KeyRing::open(store, kek, cfg).await.unwrap();
    let ev = ring.rotate(1001).await.unwrap();
    assert_eq!(
        ev[0],
        RingEvent::AlgorithmChanged(Algorithm::ES256, Algorithm::EdDSA)
    );
    assert!(matches!(ev[1], RingEvent::Created(_, KeyState::Pending)));
}

/// `open_read_only` (what `jwtd rules test` opens): a missing file stays missing, the ring
/// reads every key, a write fails, and the directory is left as it was, with or without a
/// running writer's `-wal` beside the file.
#[tokio::test]
async fn the_read_only_store_reads_the_ring_and_changes_nothing() {
    let d = dir("read-only");
    let missing = d.join("missing.db");
    assert!(SqliteStore::open_read_only(&missing).await.is_err());
    assert!(!missing.exists(), "never created");
    let ring = open(&d).await;
    ring.ensure_active(1000).await.unwrap();
    let jwks = ring.jwks_json();
    ring.store().pool().close().await;
    drop(ring);
    // The last connection checkpoints and removes the -wal as it closes, on its own thread.
    for _ in 0..100 {
        if !d.join("keys.db-wal").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!d.join("keys.db-wal").exists(), "the writer closed");
    // Each file's name and a digest of its bytes.
    let listing = |d: &std::path::Path| {
        let mut v: Vec<(String, String)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let bytes = std::fs::read(e.path()).unwrap();
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                (e.file_name().to_string_lossy().into_owned(), hex)
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(&d);
    let (kek, _) = Kek::load_or_create(&d.join("kek")).unwrap();
    let store = SqliteStore::open_read_only(&d.join("keys.db"))
        .await
        .unwrap();
    let ro = KeyRing::open(store, kek, cfg()).await.unwrap();
    assert_eq!(ro.jwks_json(), jwks);
    assert!(ro.signer().is_some());
    assert!(ro.rotate(2000).await.is_err(), "a write fails");
    ro.store().pool().close().await;
    drop(ro);
    assert_eq!(listing(&d), before, "nothing created or changed");
    // Beside a writer that keeps the database open (its -wal exists): read through it.
    let writer = open(&d).await;
    let (kek, _) = Kek::load_or_create(&d.join("kek")).unwrap();
    let store = SqliteStore::open_read_only(&d.join("keys.db"))
        .await
        .unwrap();
    let ro = KeyRing::open(store, kek, cfg()).await.unwrap();
    assert_eq!(ro.jwks_json(), writer.jwks_json());
    let _ = std::fs::remove_dir_all(&d);
}
