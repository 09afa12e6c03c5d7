//! The recipes in `examples/recipes/*.toml` (explained in docs/recipes.md), each loaded as
//! written and run against a local simulated provider that issues tokens shaped like the real
//! one.

use axum::routing::get;
use jwtd_core::{Algorithm, Jwks, SigningKey};
use jwtd_service::{AppState, Config, Env, Runtime};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

fn recipe(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/recipes")
        .join(name)
}

/// The recipe `name` as written, read in an environment holding exactly `vars`.
fn load(name: &str, vars: &[(&str, &str)]) -> Config {
    Config::load_with_env(&recipe(name), &Env::from_vars(vars.iter().copied())).unwrap()
}

async fn serve(mut config: Config) -> (String, Arc<AppState>) {
    if let Some(s) = &mut config.signing {
        let mut r = [0u8; 6];
        jwtd_core::fill_random(&mut r).unwrap();
        s.data_dir = std::env::temp_dir()
            .join(format!("jwtd-recipe-{}", jwtd_core::b64::encode(r)))
            .display()
            .to_string();
    }
    let runtime = Runtime::build(config, None).await.unwrap();
    assert!(
        runtime
            .engine
            .issuers
            .wait_ready(std::time::Duration::from_secs(5))
            .await
    );
    crate::common::serve_runtime(runtime, None).await
}

/// A provider on 127.0.0.1: discovery naming `issuer` (or its own URL) and a JWKS of `keys`.
async fn provider(keys: &[&SigningKey], issuer: Option<&str>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let iss = issuer
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{base}/"));
    let jwks = serde_json::to_string(&Jwks::from_keys(keys.iter().filter_map(|k| k.public_jwk())))
        .unwrap();
    let doc =
        json!({"issuer": iss, "jwks_uri": format!("{base}/.well-known/jwks.json")}).to_string();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { doc }),
        )
        .route("/.well-known/jwks.json", get(move || async move { jwks }));
    tokio::spawn(async move { axum::serve(l, app).await });
    base
}

fn sign(key: &SigningKey, claims: Value) -> String {
    jwtd_core::sign(key, claims.as_object().unwrap(), None).unwrap()
}

async fn status(base: &str, path: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn now() -> u64 {
    jwtd_core::unix_now()
}

#[tokio::test]
async fn recipe_1_xapp_hs256_with_client_id() {
    let config = load(
        "xapp-hs256.toml",
        &[
            ("XAPP_API_SECRET", "xapp-secret-0123456789abcdef-0123456789"),
            ("XAPP_API_KEY", "app-key-42"),
        ],
    );
    let (base, _) = serve(config).await;
    let key = SigningKey::hmac(
        b"xapp-secret-0123456789abcdef-0123456789",
        Algorithm::HS256,
        None,
    )
    .unwrap();
    let t = sign(
        &key,
        json!({"client_id": "app-key-42", "user_id": 7, "iat": now(), "exp": now() + 86_400}),
    );
    assert_eq!(status(&base, "/v1/verify", &t).await.0, 200);
    let other_app = sign(
        &key,
        json!({"client_id": "app-key-43", "iat": now(), "exp": now() + 86_400}),
    );
    let (s, b) = status(&base, "/v1/verify", &other_app).await;
    assert_eq!((s, b["reason"].as_str()), (403, Some("claim_mismatch")));
    // The issuer is configured for tokens without `iss`: a token naming one is not routed to it.
    let foreign = sign(
        &key,
        json!({"iss": "https://elsewhere.example", "client_id": "app-key-42", "iat": now(), "exp": now() + 600}),
    );
    assert_eq!(
        status(&base, "/v1/verify", &foreign).await.1["reason"],
        "wrong_issuer"
    );
    let stale = sign(
        &key,
        json!({"client_id": "app-key-42", "iat": now() - 90_000, "exp": now() + 600}),
    );
    assert_eq!(
        status(&base, "/v1/verify", &stale).await.1["reason"],
        "too_old"
    );
}

#[tokio::test]
async fn recipe_2_oidc_discovery_auth_time_and_namespaced_headers() {
    let key = SigningKey::generate(Algorithm::RS256)
        .unwrap()
        .with_default_kid();
    let idp = provider(&[&key], None).await;
    let iss = format!("{idp}/");
    let config = load(
        "oidc-rs256.toml",
        &[
            ("OIDC_ISSUER", &iss),
            ("API_AUDIENCE", "https://api.example.com"),
        ],
    );
    let (base, _) = serve(config).await;
    let claims = |auth_age: u64| {
        json!({"iss": iss, "aud": ["https://api.example.com", format!("{iss}userinfo")], "sub": "auth0|abc",
            "iat": now(), "exp": now() + 3600, "auth_time": now() - auth_age, "email": "a@example.com",
            "https://example.com/claims/user/is_verified": true, "scope": "openid profile"})
    };
    let r = reqwest::Client::new()
        .get(format!("{base}/auth"))
        .bearer_auth(sign(&key, claims(60)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-email-verified"], "true");
    assert_eq!(r.headers()["x-user-email"], "a@example.com");
    let (s, b) = status(&base, "/v1/verify", &sign(&key, claims(3600))).await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (401, Some("too_old")),
        "login older than 5 minutes"
    );
}

#[tokio::test]
async fn recipe_3_passwordless_es256_jwks_and_tokens_endpoint() {
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    let idp = provider(&[&key], None).await;
    let config = load(
        "passwordless-es256.toml",
        &[
            ("SITE_DOMAIN", "example.com"),
            ("PROVIDER_JWKS", &format!("{idp}/.well-known/jwks.json")),
        ],
    );
    let (base, _) = serve(config).await;
    let t = sign(
        &key,
        json!({"iss": "example.com", "aud": "example.com", "sub": "user@example.com", "exp": now() + 600}),
    );
    let r = reqwest::get(format!("{base}/v1/tokens/{t}")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["sub"], "user@example.com");
    let wrong = sign(
        &key,
        json!({"iss": "example.com", "aud": "other.com", "sub": "x", "exp": now() + 600}),
    );
    assert_eq!(
        reqwest::get(format!("{base}/v1/tokens/{wrong}"))
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn recipe_4_issue_rs256_tokens_to_a_partner() {
    let config = load(
        "issue-rs256.toml",
        &[
            ("JWTD_ADMIN_KEY", "recipe-admin-key-0123456789"),
            ("PUBLIC_URL", "https://auth.example.com"),
        ],
    );
    let (base, _) = serve(config).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/tokens"))
        .bearer_auth("recipe-admin-key-0123456789")
        .json(&json!({"sub": "partner-user", "aud": "partner-42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let token = b["token"].as_str().unwrap();
    assert_eq!(jwtd_core::peek_header(token).unwrap().alg, Algorithm::RS256);
    assert_eq!(b["expires_at"].as_u64().unwrap() - now(), 600);
    // What the partner does: fetch the JWKS and verify.
    let jwks = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (set, _) = jwtd_core::KeySet::from_jwks(
        &Jwks::from_json(jwks.as_bytes()).unwrap(),
        &[Algorithm::RS256],
    );
    let v = jwtd_core::Validation::new(&[Algorithm::RS256])
        .issuer("https://auth.example.com")
        .audience("partner-42");
    jwtd_core::verify(&set, &v, token, now()).unwrap();
}

#[tokio::test]
async fn recipe_5_wallet_rs256_partner_audience_and_scope() {
    let key = SigningKey::generate(Algorithm::RS256)
        .unwrap()
        .with_default_kid();
    let idp = provider(&[&key], None).await;
    let config = load(
        "wallet-rs256.toml",
        &[
            ("WALLET_ISSUER", "https://wallet.example"),
            ("WALLET_JWKS", &format!("{idp}/.well-known/jwks.json")),
            ("PARTNER_ID", "partner-42"),
            ("REQUIRED_SCOPE", "payments"),
        ],
    );
    let (base, _) = serve(config).await;
    let wallet = "0x52908400098527886E0F7030069857D2E4169EE7";
    let t = |scope: &str| {
        sign(
            &key,
            json!({"iss": "https://wallet.example", "aud": "partner-42", "sub": wallet, "scope": scope, "exp": now() + 600}),
        )
    };
    let r = reqwest::Client::new()
        .get(format!("{base}/auth"))
        .bearer_auth(t("openid payments profile"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-wallet-address"], wallet);
    let (s, b) = status(&base, "/v1/verify", &t("openid profile")).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("insufficient_scope")));
}
