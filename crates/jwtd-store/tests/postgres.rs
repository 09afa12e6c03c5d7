//! The key ring on the machine's real PostgreSQL (127.0.0.1:5432, database `test`; override with
//! JWTD_TEST_POSTGRES_URL). A missing PostgreSQL fails these tests: `scripts/ensure-deps` starts it.

use jwtd_core::{Algorithm, Validation};
use jwtd_store::{Kek, KeyRing, KeyState, PgStore, RingConfig};
use std::time::Duration;

fn url() -> String {
    std::env::var("JWTD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn schema(name: &str) -> String {
    let mut r = [0u8; 4];
    jwtd_core::fill_random(&mut r).unwrap();
    format!(
        "jwtd_test_{name}_{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
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
    let store = PgStore::open(&url(), Some(schema))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", url()));
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
    let store = PgStore::open(&url(), Some(&s)).await.unwrap();
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
    let store = PgStore::open(&url(), Some(&s)).await.unwrap();
    let e = KeyRing::open(store, Kek::from_bytes(&[7u8; 32]).unwrap(), cfg())
        .await
        .unwrap_err();
    assert!(e.0.contains("failed to decrypt"), "{e}");
}
