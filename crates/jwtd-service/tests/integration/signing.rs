//! jwtd as an issuer over real HTTP: minting rules, JWKS caching headers, discovery, and three
//! rotations while a client verifies continuously through jwtd's own remote-key client.

use jwtd_core::{Algorithm, Reason, Validation};
use jwtd_remote::{CacheConfig, HttpConfig, RemoteKeys, Source};
use jwtd_service::{AppState, Config, Env, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

struct Issuer {
    base: String,
    state: Arc<AppState>,
    client: reqwest::Client,
}

/// The environment the issuer's configuration is read in: its admin key, and no `JWTD_KEK`.
fn env() -> Env {
    Env::from_vars([("JWTD_SIGNING_TEST_ADMIN", "admin-secret-0123456789")])
}

async fn start(extra: &str) -> Issuer {
    let mut rnd = [0u8; 6];
    jwtd_core::fill_random(&mut rnd).unwrap();
    let dir = std::env::temp_dir().join(format!("jwtd-signing-{}", jwtd_core::b64::encode(rnd)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "listen = \"{addr}\"\n[admin]\napi_key_env = \"JWTD_SIGNING_TEST_ADMIN\"\n[signing]\ndata_dir = \"{}\"\n{}{extra}\n",
        dir.display(),
        if extra.contains("max_ttl") { "" } else { "max_ttl = \"1h\"\n" }
    );
    let config = Config::parse_with_env(&text, "test", &env()).unwrap();
    let runtime = Runtime::build(config, None).await.unwrap();
    let state = AppState::new(runtime, None);
    tokio::spawn(jwtd_service::serve(state.clone(), listener));
    Issuer {
        base: format!("http://{addr}"),
        state,
        client: reqwest::Client::new(),
    }
}

async fn mint(i: &Issuer, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut r = i.client.post(format!("{}/v1/tokens", i.base)).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn minting_is_authorised_capped_and_keeps_reserved_claims() {
    let i = start("audiences = [\"partner-42\"]\n").await;
    assert_eq!(mint(&i, None, json!({"sub": "a"})).await.status(), 401);
    assert_eq!(
        mint(&i, Some("admin-secreT"), json!({"sub": "a"}))
            .await
            .status(),
        401
    );
    let r = mint(
        &i,
        Some("admin-secret-0123456789"),
        json!({"sub": "a", "ttl": "2h"}),
    )
    .await;
    assert_eq!(r.status(), 400, "ttl above the cap");
    assert!(r.text().await.unwrap().contains("cap"));
    let r = mint(
        &i,
        Some("admin-secret-0123456789"),
        json!({"sub": "a", "claims": {"iss": "https://evil"}}),
    )
    .await;
    assert_eq!(r.status(), 400, "reserved claim");
    assert_eq!(
        mint(&i, Some("admin-secret-0123456789"), json!({"aud": "x"}))
            .await
            .status(),
        400,
        "sub required"
    );
    let r = mint(&i, Some("admin-secret-0123456789"), json!({"sub": "alice", "aud": "partner-42", "ttl": 600, "claims": {"scope": "payments read"}})).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let token = b["token"].as_str().unwrap();
    let exp = b["expires_at"].as_u64().unwrap();
    assert!(exp > jwtd_core::unix_now() + 590 && exp <= jwtd_core::unix_now() + 600);
    // jwtd verifies its own tokens with no extra configuration.
    let r = i
        .client
        .get(format!("{}/v1/verify", i.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issuer"], "self");
    assert_eq!(v["claims"]["aud"], "partner-42");
    assert_eq!(v["claims"]["scope"], "payments read");
    assert_eq!(v["claims"]["iss"], i.base);
    // Cached now; an emergency key removal still takes effect on the very next request.
    let again = i
        .client
        .get(format!("{}/v1/verify", i.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let ring = i.state.runtime().signing.clone().unwrap().ring.clone();
    let kid = b["kid"].as_str().unwrap().to_owned();
    ring.remove(&kid, jwtd_core::unix_now() as i64)
        .await
        .unwrap();
    let r = i
        .client
        .get(format!("{}/v1/verify", i.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["reason"], "unknown_key", "{e}");
}

/// Finding 7: jwtd's own issuer accepts only the audiences it was configured for (none: only
/// tokens without `aud`); a token minted for a partner is not accepted in front of internal
/// APIs. Any audience is an explicit opt-in.
#[tokio::test]
async fn the_self_issuer_refuses_audiences_it_was_not_configured_for() {
    let strict = start("").await;
    let partner = token(&strict, json!({"sub": "a", "aud": "partner-42"})).await;
    assert_eq!(
        verify_status(&strict, partner).await,
        (401, "wrong_audience".into())
    );
    let internal = token(&strict, json!({"sub": "a"})).await;
    assert_eq!(verify_status(&strict, internal.clone()).await.0, 200);
    // Finding 19: by default a client's X-Request-Id is not taken as the request id.
    let r = strict
        .client
        .get(format!("{}/v1/verify", strict.base))
        .bearer_auth(&internal)
        .header("x-request-id", "forged-id")
        .send()
        .await
        .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap();
    assert!(rid.starts_with("jwtd-"), "{rid}");

    let configured = start("audiences = [\"my-api\"]\n").await;
    let mine = token(&configured, json!({"sub": "a", "aud": "my-api"})).await;
    assert_eq!(verify_status(&configured, mine).await.0, 200);
    let other = token(&configured, json!({"sub": "a", "aud": "partner-42"})).await;
    assert_eq!(
        verify_status(&configured, other).await,
        (401, "wrong_audience".into())
    );
    let none = token(&configured, json!({"sub": "a"})).await;
    assert_eq!(
        verify_status(&configured, none).await,
        (401, "missing_claim".into())
    );

    let open = start("any_audience = true\n").await;
    let partner = token(&open, json!({"sub": "a", "aud": "partner-42"})).await;
    assert_eq!(
        verify_status(&open, partner).await.0,
        200,
        "explicit opt-in"
    );
    assert!(Config::parse(
        "[admin]\napi_key_env = \"A\"\n[signing]\nany_audience = true\naudiences = [\"x\"]\n",
        "f"
    )
    .is_err());
}

async fn verify_status(i: &Issuer, t: String) -> (u16, String) {
    let r = i
        .client
        .get(format!("{}/v1/verify", i.base))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    (status, b["reason"].as_str().unwrap_or("").to_owned())
}

async fn token(i: &Issuer, body: Value) -> String {
    let b: Value = mint(i, Some("admin-secret-0123456789"), body)
        .await
        .json()
        .await
        .unwrap();
    b["token"].as_str().unwrap().to_owned()
}

/// Finding 16: with a shared (PostgreSQL) key store, `jwtd serve` never generates a KEK of its
/// own (each instance would seal keys no other can open): it refuses to start.
#[tokio::test]
async fn a_shared_store_without_a_kek_refuses_to_start() {
    // The configuration's environment has no JWTD_KEK, whatever the process has.
    let env = env();
    assert_eq!(env.var_os("JWTD_KEK"), None);
    let mut rnd = [0u8; 6];
    jwtd_core::fill_random(&mut rnd).unwrap();
    let dir = std::env::temp_dir().join(format!("jwtd-nokek-{}", jwtd_core::b64::encode(rnd)));
    let text = format!(
        "[admin]\napi_key_env = \"JWTD_SIGNING_TEST_ADMIN\"\n[signing]\ndata_dir = \"{}\"\n\
         store = \"postgres://postgres@127.0.0.1:5432/test\"\n",
        dir.display()
    );
    let e = Runtime::build(Config::parse_with_env(&text, "t", &env).unwrap(), None)
        .await
        .unwrap_err();
    assert!(
        e.contains("JWTD_KEK") && e.contains("never generates"),
        "{e}"
    );
    assert!(!dir.join("kek.key").exists(), "no KEK was written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn jwks_and_discovery() {
    let i = start("publish_lead = \"20m\"").await;
    let r = i
        .client
        .get(format!("{}/.well-known/jwks.json", i.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=600");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("d").is_none());
    let r = i
        .client
        .get(format!("{}/.well-known/jwks.json", i.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let d: Value = i
        .client
        .get(format!("{}/.well-known/openid-configuration", i.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], i.base);
    assert_eq!(d["jwks_uri"], format!("{}/.well-known/jwks.json", i.base));
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["ES256"]));
}

/// PyJWT (a peer implementation) verifying through jwtd's JWKS URL, one token per line.
struct Peer {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Peer {
    fn start(jwks_url: &str, issuer: &str) -> Peer {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join("target/test-venv/bin/python");
        assert!(
            python.exists(),
            "PyJWT test venv missing: run scripts/ensure-deps (it creates target/test-venv)"
        );
        let mut child = std::process::Command::new(python)
            .arg(root.join("scripts/interop/pyjwt_verify.py"))
            .args([jwks_url, issuer])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        Peer {
            child,
            lines: std::io::BufReader::new(out).lines(),
        }
    }

    fn verify(&mut self, token: &str) -> String {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{token}").unwrap();
        stdin.flush().unwrap();
        self.lines.next().unwrap().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rotations_with_continuous_verification() {
    let i =
        start("max_ttl = 4\ndefault_ttl = 4\npublish_lead = 1\ngrace = 1\nrotate_every = 0").await;
    let keys = RemoteKeys::start(
        Source::Discovery(i.base.clone()),
        vec![Algorithm::ES256],
        HttpConfig::default(),
        CacheConfig {
            min_ttl: Duration::from_millis(300),
            cooldown: Duration::from_millis(200),
            negative_ttl: Duration::from_millis(200),
            ..CacheConfig::default()
        },
    )
    .unwrap();
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    let policy = Validation::new(&[Algorithm::ES256])
        .issuer(i.base.clone())
        .any_audience()
        .leeway(0);
    let ring = i.state.runtime().signing.clone().unwrap().ring.clone();
    let mut peer = Some(Peer::start(
        &format!("{}/.well-known/jwks.json", i.base),
        &i.base,
    ));
    let mut peer_rejections = Vec::new();
    let mut first_tokens = Vec::new();
    let (mut verified, mut false_rejections) = (0, 0);
    let mut kids = Vec::new();
    for round in 0..3 {
        kids.push(ring.signer().unwrap().kid().unwrap().to_owned());
        let now = jwtd_core::unix_now() as i64;
        ring.rotate(now).await.unwrap();
        // 1.5 s of minting and verifying, with the schedule advancing as jwtd's ticker would.
        for step in 0..15 {
            if step % 3 == 0 {
                ring.tick(jwtd_core::unix_now() as i64).await.unwrap();
            }
            let b: Value = mint(
                &i,
                Some("admin-secret-0123456789"),
                json!({"sub": format!("u{round}-{step}")}),
            )
            .await
            .json()
            .await
            .unwrap();
            let t = b["token"].as_str().unwrap().to_owned();
            if step == 0 {
                first_tokens.push(t.clone());
            }
            match keys.verify(&policy, &t).await {
                Ok(_) => verified += 1,
                Err(e) => {
                    eprintln!("round {round} step {step}: {e}");
                    false_rejections += 1;
                }
            }
            let mut p = peer.take().unwrap();
            let (p, answer) = tokio::task::spawn_blocking(move || {
                let a = p.verify(&t);
                (p, a)
            })
            .await
            .unwrap();
            peer = Some(p);
            if answer != "ok" {
                peer_rejections.push(format!("round {round} step {step}: {answer}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(false_rejections, 0, "{verified} verified");
    assert!(
        peer_rejections.is_empty(),
        "PyJWT rejected: {peer_rejections:?}"
    );
    assert_eq!(kids.len(), 3);
    assert!(
        kids.windows(2).all(|w| w[0] != w[1]),
        "each round signs with a new key: {kids:?}"
    );
    // The first token of the last round is still inside its lifetime: accepted.
    keys.verify(&policy, first_tokens.last().unwrap())
        .await
        .unwrap();
    // After every token's expiry plus the grace, old keys leave the JWKS, and old tokens are
    // refused (expired first; their keys are gone too).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    ring.tick(jwtd_core::unix_now() as i64).await.unwrap();
    let jwks = ring.jwks_json();
    assert!(!jwks.contains(&kids[0]), "first key retired");
    let e = keys.verify(&policy, &first_tokens[0]).await.unwrap_err();
    assert_eq!(e.reason(), Reason::Expired);
    let mut p = peer.take().unwrap();
    let old = first_tokens[0].clone();
    let answer = tokio::task::spawn_blocking(move || p.verify(&old))
        .await
        .unwrap();
    assert!(
        answer.starts_with("fail"),
        "PyJWT accepted an expired token: {answer}"
    );
    let s = keys.stats();
    eprintln!(
        "rotation test: {verified} verified, {} JWKS fetches",
        s.fetches
    );
}

#[tokio::test]
async fn internal_hs256_issuer_verifies_its_tokens_and_publishes_nothing() {
    let i = start("algorithm = \"HS256\"").await;
    let b: Value = mint(&i, Some("admin-secret-0123456789"), json!({"sub": "svc"}))
        .await
        .json()
        .await
        .unwrap();
    let token = b["token"].as_str().unwrap();
    assert_eq!(jwtd_core::peek_header(token).unwrap().alg, Algorithm::HS256);
    let r = i
        .client
        .get(format!("{}/v1/verify", i.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwks: Value = i
        .client
        .get(format!("{}/.well-known/jwks.json", i.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, json!({"keys": []}));
}
