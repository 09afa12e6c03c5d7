//! Two jwtd instances sharing one key ring in PostgreSQL (127.0.0.1:5432, database `test`; override
//! with JWTD_TEST_POSTGRES_URL). A missing PostgreSQL fails this test.

use jwtd_service::{AppState, Config, Env, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;

async fn instance(schema: &str, dir: &std::path::Path, env: &Env) -> (String, Arc<AppState>) {
    let url = jwtd_test_support::pg_url();
    let text = format!(
        "[admin]\napi_key_env = \"JWTD_SHARED_ADMIN\"\n[signing]\nissuer = \"https://auth.example\"\nstore = \"{url}\"\nstore_schema = \"{schema}\"\ndata_dir = \"{}\"\n",
        dir.display()
    );
    let runtime = Runtime::build(Config::parse_with_env(&text, "test", env).unwrap(), None)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required: {e}"));
    crate::common::serve_runtime(runtime, None).await
}

#[tokio::test]
async fn two_instances_share_keys_and_rotations() {
    // Same key encryption key on both instances (as in production).
    let env = Env::from_vars([
        ("JWTD_KEK", jwtd_core::b64::encode([11u8; 32])),
        ("JWTD_SHARED_ADMIN", "shared-admin-key-0123456789".into()),
    ]);
    let schema = jwtd_test_support::schema("svc");
    let dir = std::env::temp_dir().join(&schema);
    let (a, sa) = instance(&schema, &dir.join("a"), &env).await;
    let (b, sb) = instance(&schema, &dir.join("b"), &env).await;
    let c = reqwest::Client::new();
    // A mints, B verifies (same ring).
    let minted: Value = c
        .post(format!("{a}/v1/tokens"))
        .bearer_auth("shared-admin-key-0123456789")
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap();
    let r = c
        .get(format!("{b}/v1/verify"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        sa.runtime().signing.as_ref().unwrap().ring.keys().len(),
        1,
        "one key, not one per instance"
    );
    // A rotation on A reaches B at its next schedule tick.
    let ring_a = sa.runtime().signing.clone().unwrap().ring.clone();
    let ring_b = sb.runtime().signing.clone().unwrap().ring.clone();
    ring_a.rotate(jwtd_core::unix_now() as i64).await.unwrap();
    ring_b.tick(jwtd_core::unix_now() as i64).await.unwrap();
    let jwks = |base: String| {
        let c = c.clone();
        async move {
            c.get(format!("{base}/.well-known/jwks.json"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let (ja, jb) = (jwks(a).await, jwks(b).await);
    assert_eq!(ja["keys"].as_array().unwrap().len(), 2);
    assert_eq!(ja, jb);
}
