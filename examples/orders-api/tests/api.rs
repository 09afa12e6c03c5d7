//! The example API end to end over HTTP: extractors, per-route scope, optional identity, and
//! RFC 6750 errors identical to the service's.

use jwtd_core::{Algorithm, Jwks, SigningKey};
use serde_json::{json, Value};

async fn start() -> (String, SigningKey) {
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    let dir = std::env::temp_dir().join(format!(
        "orders-api-{}-{}",
        std::process::id(),
        key.kid().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string(&Jwks::from_keys(key.public_jwk())).unwrap(),
    )
    .unwrap();
    let text = format!(
        "[[issuer]]\nname = \"idp\"\nissuer = \"https://idp.example/\"\njwks_file = \"{}\"\nalgorithms = [\"ES256\"]\naudiences = [\"orders\"]\n",
        dir.join("jwks.json").display()
    );
    let config = jwtd_gate::config::GateConfig::parse(&text, "test").unwrap();
    let layer = jwtd_tower::JwtdLayer::from_config(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, orders_api::app(layer)).await });
    (base, key)
}

fn token(key: &SigningKey, scope: &str, exp_in: i64) -> String {
    let now = jwtd_core::unix_now() as i64;
    let c = json!({"iss": "https://idp.example/", "aud": "orders", "sub": "alice", "email": "a@example.com", "scope": scope, "exp": now + exp_in});
    jwtd_core::sign(key, c.as_object().unwrap(), None).unwrap()
}

#[tokio::test]
async fn protected_routes_scopes_and_optional_identity() {
    let (base, key) = start().await;
    let c = reqwest::Client::new();
    let get = |path: &str, tok: Option<String>| {
        let mut r = c.get(format!("{base}{path}"));
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("/health", None).await.unwrap().status(), 200);
    // /me: Claims<User>.
    let r = get("/me", Some(token(&key, "openid", 600))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"sub": "alice", "email": "a@example.com"})
    );
    // No token: 401 with the bare challenge; expired: 401 invalid_token.
    let r = get("/me", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"jwtd\"");
    let r = get("/me", Some(token(&key, "openid", -3600)))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "expired");
    // /orders needs orders:read: 403 insufficient_scope without it.
    let r = get("/orders", Some(token(&key, "openid", 600)))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (b["error"].as_str(), b["reason"].as_str()),
        (Some("insufficient_scope"), Some("claim_mismatch"))
    );
    let r = get("/orders", Some(token(&key, "openid orders:read", 600)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["owner"], "alice");
    // /greeting: optional identity, but a bad token is still refused.
    assert_eq!(
        get("/greeting", None).await.unwrap().text().await.unwrap(),
        "hello, guest"
    );
    assert_eq!(
        get("/greeting", Some(token(&key, "", 600)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "hello, alice"
    );
    assert_eq!(
        get("/greeting", Some("not.a.token".into()))
            .await
            .unwrap()
            .status(),
        401
    );
}
