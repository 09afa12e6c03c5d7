//! Revocation on one instance with the embedded SQLite store: the admin API, each kind of
//! revocation, the reason code, and persistence across a restart.

use crate::common::{self, verify};
use jwtd_service::{AppState, Env};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

const ADMIN: &str = "revocation-admin-key-0123456789";

/// The environment the tests' configurations are read in.
fn env() -> Env {
    Env::from_vars([("JWTD_REVOCATION_TEST_ADMIN", ADMIN)])
}

async fn start(dir: &Path) -> (String, Arc<AppState>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let text = format!(
        "listen = \"{addr}\"\n[admin]\napi_key_env = \"JWTD_REVOCATION_TEST_ADMIN\"\n\
         [signing]\nissuer = \"https://issuer.test\"\ndata_dir = \"{}\"\n[revocation]\n",
        dir.display()
    );
    common::serve(l, &text, &env()).await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&jwtd_core::b64::decode(payload.as_bytes()).unwrap()).unwrap()
}

#[tokio::test]
async fn revocations_take_effect_at_once_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(jwtd_test_support::unique("jwtd-revoke"));
    let (base, state) = start(&dir).await;
    let c = reqwest::Client::new();
    let (alice, bob, carol) = (
        common::mint(&c, &base, ADMIN, "alice").await,
        common::mint(&c, &base, ADMIN, "bob").await,
        common::mint(&c, &base, ADMIN, "carol").await,
    );
    for t in [&alice, &bob, &carol] {
        assert_eq!(verify(&c, &base, t).await, (200, String::new()));
    }

    // The admin API guards it, and bad requests say why.
    assert_eq!(
        common::revoke(&c, &base, "wrong", json!({"sub": "x"}))
            .await
            .0,
        401
    );
    for bad in [
        json!({}),
        json!({"sub": "a", "jti": "b"}),
        json!({"sub": ""}),
        json!({"sub": 5}),
        json!({"sub": "a", "colour": "red"}),
        json!({"jti": "a", "exp": "tomorrow"}),
        json!({"token": "not.a.token"}),
    ] {
        let (status, body) = common::revoke(&c, &base, ADMIN, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request");
    }

    // A whole token: its jti, kept until its exp (plus a minute).
    let cached = |s: &AppState| {
        s.runtime().engine.issuers.list[0]
            .cache
            .as_ref()
            .unwrap()
            .stats()
            .entries
    };
    assert_eq!(cached(&state), 3, "the three tokens are cached");
    let (status, body) =
        common::revoke(&c, &base, ADMIN, json!({"token": alice, "note": "leaked"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "stored");
    assert_eq!(body["kind"], "jti");
    assert_eq!(body["iss"], "https://issuer.test");
    // The token given is not verified: its `exp` is never trusted (a doctored one could purge
    // the entry at once); the entry is kept for max_token_lifetime (24 h) plus the margin.
    let kept_until = body["expires_at"].as_i64().unwrap();
    let now = jwtd_core::unix_now() as i64;
    assert!(
        (now + 86_400 + 3600 - 5..=now + 86_400 + 3600).contains(&kept_until),
        "{kept_until} vs now {now}"
    );
    assert!(kept_until > claims(&alice)["exp"].as_i64().unwrap());
    assert_eq!(verify(&c, &base, &alice).await, (401, "revoked".into()));
    assert_eq!(
        cached(&state),
        2,
        "the revoked token's cache entry is dropped"
    );
    assert_eq!(verify(&c, &base, &alice).await, (401, "revoked".into()));
    assert_eq!(verify(&c, &base, &bob).await.0, 200);

    // A subject: every token issued up to now; a token issued later is fine.
    let (status, body) = common::revoke(&c, &base, ADMIN, json!({"sub": "bob"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(verify(&c, &base, &bob).await, (401, "revoked".into()));
    let before = body["issued_before"].as_u64().unwrap();
    while jwtd_core::unix_now() < before {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bob_again = common::mint(&c, &base, ADMIN, "bob").await;
    assert_eq!(
        verify(&c, &base, &bob_again).await.0,
        200,
        "signed in again"
    );
    assert_eq!(verify(&c, &base, &carol).await.0, 200);

    // The other endpoints refuse revoked tokens too.
    let r = c
        .get(format!("{base}/v1/tokens/{alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/auth"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let status: Value = c
        .get(format!("{base}/v1/revocations"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["entries"], 2);
    assert_eq!(status["pending"], 0);
    assert_eq!(status["stale"], false);
    // The gauge is set from this instance's list as /metrics renders, but the recorder is the
    // process's: an instance of another test rendering at the same moment may set it in
    // between. One of a few scrapes in a row shows this instance's count.
    let mut metrics = String::new();
    for _ in 0..5 {
        metrics = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("jwtd_revocations 2\n") {
            break;
        }
    }
    assert!(metrics.contains("jwtd_revocations 2\n"), "{metrics}");

    // A restart (same data directory) keeps them.
    drop(state);
    let (base2, state2) = start(&dir).await;
    assert_eq!(verify(&c, &base2, &alice).await, (401, "revoked".into()));
    assert_eq!(verify(&c, &base2, &bob).await, (401, "revoked".into()));
    assert_eq!(verify(&c, &base2, &carol).await.0, 200);

    // The signing key: every token it signed.
    let kid = state2.runtime().signing.as_ref().unwrap().ring.keys()[0]
        .kid
        .clone();
    let (status, body) = common::revoke(&c, &base2, ADMIN, json!({"kid": kid})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_at"], Value::Null, "a key revocation is kept");
    assert_eq!(verify(&c, &base2, &carol).await, (401, "revoked".into()));
}

/// Finding 2 (High), on jwtd's own ring: a token signed by a revoked key with its `kid` left
/// out (or naming another kid) is refused too: the revocation applies to the key that verified.
#[tokio::test]
async fn a_revoked_ring_key_refuses_its_tokens_without_or_with_a_forged_kid() {
    let dir = std::env::temp_dir().join(jwtd_test_support::unique("jwtd-revoke-kidless"));
    let (base, state) = start(&dir).await;
    let c = reqwest::Client::new();
    let signing = state.runtime().signing.clone().unwrap();
    let signer = signing.ring.signer().unwrap();
    let kid = signer.kid().unwrap().to_owned();
    let now = jwtd_core::unix_now();
    let claims =
        json!({"iss": "https://issuer.test", "sub": "mallory", "iat": now, "exp": now + 600});
    let payload = serde_json::to_vec(&claims).unwrap();
    let with = |header: Value| {
        jwtd_core::sign_raw(&signer, header.as_object().unwrap(), &payload).unwrap()
    };
    let alg = signer.algorithm().as_str();
    let kidless = with(json!({"alg": alg}));
    let forged = with(json!({"alg": alg, "kid": "no-such-key"}));
    assert_eq!(verify(&c, &base, &kidless).await, (200, String::new()));
    let (status, body) = common::revoke(&c, &base, ADMIN, json!({"kid": kid})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(verify(&c, &base, &kidless).await, (401, "revoked".into()));
    // An unknown kid never reaches the ring's (named) keys.
    assert_eq!(verify(&c, &base, &forged).await.0, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finding 15: with revocation on, a token living longer than `max_token_lifetime` (or with no
/// `iat`/`exp` to bound it) is refused: its revocation entry would expire before it does.
#[tokio::test]
async fn with_revocation_on_tokens_outliving_max_token_lifetime_are_refused() {
    let dir = std::env::temp_dir().join(jwtd_test_support::unique("jwtd-revoke-lifetime"));
    let (base, state) = start(&dir).await;
    let c = reqwest::Client::new();
    let signer = state
        .runtime()
        .signing
        .clone()
        .unwrap()
        .ring
        .signer()
        .unwrap();
    let now = jwtd_core::unix_now();
    let token =
        |claims: Value| jwtd_core::sign(&signer, claims.as_object().unwrap(), None).unwrap();
    let iss = "https://issuer.test";
    // The default max_token_lifetime is 24 h.
    let day = json!({"iss": iss, "sub": "a", "iat": now, "exp": now + 86_400});
    assert_eq!(verify(&c, &base, &token(day)).await.0, 200);
    for claims in [
        json!({"iss": iss, "sub": "a", "iat": now, "exp": now + 86_401}),
        json!({"iss": iss, "sub": "a", "iat": now, "exp": now + 10 * 365 * 86_400}),
        json!({"iss": iss, "sub": "a", "exp": now + 60}),
    ] {
        assert_eq!(
            verify(&c, &base, &token(claims.clone())).await,
            (401, "lifetime_too_long".into()),
            "{claims}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Review of finding 2: a revocation names key material, not only a kid: one key published
/// under two kids (as during a kid rename) is revoked under both, and a token without kid too.
#[tokio::test]
async fn a_key_revocation_covers_the_same_key_under_another_kid() {
    let dir = std::env::temp_dir().join(jwtd_test_support::unique("jwtd-revoke-material"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = jwtd_core::SigningKey::generate(jwtd_core::Algorithm::ES256).unwrap();
    let public = key.public_jwk().unwrap();
    let named = |kid: &str| {
        let mut j = public.clone();
        j.kid = Some(kid.into());
        j
    };
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string(&jwtd_core::Jwks::from_keys(vec![
            named("old"),
            named("new"),
        ]))
        .unwrap(),
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let text = format!(
        "listen = \"{addr}\"\n[admin]\napi_key_env = \"JWTD_REVOCATION_TEST_ADMIN\"\n\
         [revocation]\ndata_dir = \"{d}\"\n[[issuer]]\nname = \"idp\"\nissuer = \"https://idp.test\"\n\
         jwks_file = \"{d}/jwks.json\"\nalgorithms = [\"ES256\"]\nany_audience = true\n",
        d = dir.display()
    );
    let (base, _state) = common::serve(l, &text, &env()).await;
    let c = reqwest::Client::new();
    let now = jwtd_core::unix_now();
    let claims = json!({"iss": "https://idp.test", "sub": "u", "iat": now, "exp": now + 600});
    let payload = serde_json::to_vec(&claims).unwrap();
    let with =
        |header: Value| jwtd_core::sign_raw(&key, header.as_object().unwrap(), &payload).unwrap();
    let (t_old, t_new, t_none) = (
        with(json!({"alg": "ES256", "kid": "old"})),
        with(json!({"alg": "ES256", "kid": "new"})),
        with(json!({"alg": "ES256"})),
    );
    for t in [&t_old, &t_new, &t_none] {
        assert_eq!(verify(&c, &base, t).await.0, 200);
    }
    let (status, body) = common::revoke(&c, &base, ADMIN, json!({"kid": "old"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["key_material"][0],
        public.thumbprint().unwrap(),
        "{body}"
    );
    for t in [&t_old, &t_new, &t_none] {
        assert_eq!(verify(&c, &base, t).await, (401, "revoked".into()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
