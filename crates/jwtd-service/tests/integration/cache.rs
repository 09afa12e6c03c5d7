//! The verified-token cache through the service, with one issuer and with several (where a
//! repeated token is found in the issuers' caches before anything routes it): hits answer like
//! misses, and a revocation or a key removal takes effect on the very next request.

use crate::common::{self, verify};
use jwtd_service::{AppState, Env};
use serde_json::json;
use std::sync::Arc;

const ADMIN: &str = "cache-admin-key-0123456789";
const HS_SECRET: &str = "cache-test-secret-0123456789abcdef0123";

async fn start(more_issuers: bool) -> (String, Arc<AppState>) {
    let env = Env::from_vars([
        ("JWTD_CACHE_TEST_ADMIN", ADMIN),
        ("JWTD_CACHE_TEST_HS", HS_SECRET),
    ]);
    let dir = std::env::temp_dir().join(jwtd_test_support::unique("jwtd-cache"));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mut text = format!(
        "listen = \"{addr}\"\n[admin]\napi_key_env = \"JWTD_CACHE_TEST_ADMIN\"\n\
         [signing]\nissuer = \"https://issuer.test\"\ndata_dir = \"{}\"\n[revocation]\n",
        dir.display()
    );
    if more_issuers {
        text.push_str(
            "[[issuer]]\nname = \"hs\"\nissuer = \"https://hs.test\"\n\
             secret_env = \"JWTD_CACHE_TEST_HS\"\nalgorithms = [\"HS256\"]\nany_audience = true\n\
             [[issuer]]\nname = \"anonymous\"\nsecret_env = \"JWTD_CACHE_TEST_HS\"\n\
             algorithms = [\"HS256\"]\nany_audience = true\n",
        );
    }
    common::serve(l, &text, &env).await
}

/// (hits, misses, entries) of the named issuer's cache.
fn stats(state: &AppState, name: &str) -> (u64, u64, u64) {
    let rt = state.runtime();
    let issuer = rt
        .engine
        .issuers
        .list
        .iter()
        .find(|i| i.name == name)
        .unwrap();
    let s = issuer.cache.as_ref().expect("cache on by default").stats();
    (s.hits, s.misses, s.entries)
}

fn hs_token(iss: Option<&str>, sub: &str) -> String {
    let now = jwtd_core::unix_now();
    let mut c = json!({"sub": sub, "iat": now, "exp": now + 600});
    if let Some(iss) = iss {
        c["iss"] = iss.into();
    }
    jwtd_test_support::hs256(HS_SECRET.as_bytes(), &c)
}

async fn hits_revocation_and_key_removal(more_issuers: bool) {
    let (base, state) = start(more_issuers).await;
    let c = reqwest::Client::new();
    let (alice, bob) = (
        common::mint(&c, &base, ADMIN, "alice").await,
        common::mint(&c, &base, ADMIN, "bob").await,
    );
    for t in [&alice, &bob, &alice, &bob] {
        assert_eq!(verify(&c, &base, t).await, (200, String::new()));
    }
    assert_eq!(stats(&state, "self"), (2, 2, 2), "two misses, then hits");

    if more_issuers {
        // Each issuer answers its own tokens from its own cache, the anonymous one included;
        // a token for no issuer is refused the same way every time.
        let (named, anonymous) = (hs_token(Some("https://hs.test"), "h"), hs_token(None, "a"));
        for t in [&named, &anonymous, &named, &anonymous] {
            assert_eq!(verify(&c, &base, t).await, (200, String::new()));
        }
        assert_eq!(stats(&state, "hs"), (1, 1, 1));
        assert_eq!(stats(&state, "anonymous"), (1, 1, 1));
        assert_eq!(stats(&state, "self"), (2, 2, 2));
        let stranger = hs_token(Some("https://stranger.test"), "s");
        // The issuer for tokens without `iss` takes this one when asked directly (routing, not
        // its policy, keeps tokens with an `iss` away from it), so it is cached there; routing
        // still refuses it.
        let rt = state.runtime();
        let anonymous = rt
            .engine
            .issuers
            .list
            .iter()
            .find(|i| i.name == "anonymous");
        let now = jwtd_core::unix_now();
        assert!(anonymous.unwrap().verify(&stranger, now).await.is_ok());
        assert_eq!(stats(&state, "anonymous").2, 2);
        for _ in 0..2 {
            assert_eq!(
                verify(&c, &base, &stranger).await,
                (401, "wrong_issuer".into())
            );
        }
    }

    // Revocation: the next request is refused, and the entry goes.
    let (status, body) = common::revoke(&c, &base, ADMIN, json!({"token": alice})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(verify(&c, &base, &alice).await, (401, "revoked".into()));
    assert_eq!(
        stats(&state, "self").2,
        1,
        "the revoked token's entry is dropped"
    );
    assert_eq!(verify(&c, &base, &bob).await, (200, String::new()));

    // Key removal: bob's token is cached, yet refused on the very next request.
    let ring = state.runtime().signing.clone().unwrap().ring.clone();
    let kid = jwtd_core::peek_header(&bob).unwrap().kid.unwrap();
    ring.remove(&kid, jwtd_core::unix_now() as i64)
        .await
        .unwrap();
    assert_eq!(verify(&c, &base, &bob).await, (401, "unknown_key".into()));
}

#[tokio::test]
async fn one_issuer() {
    hits_revocation_and_key_removal(false).await;
}

#[tokio::test]
async fn several_issuers_found_before_routing() {
    hits_revocation_and_key_removal(true).await;
}
