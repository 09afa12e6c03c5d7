//! DPoP in the engine, sans server: `[issuer.dpop]` and `[[rule]] dpop` at load, the mode
//! logic (the bearer downgrade, an unbound token sent as DPoP, `require`), the proof checks
//! through `Engine::decide`, the replay cache (burnt last: a refused request keeps the proof
//! usable), the refusal table's challenges, `X-Auth-Jkt`, and the replay cache's memory under a
//! flood.

use http::{HeaderMap, HeaderValue};
use jwtd_core::{make_proof, Algorithm, DpopReason, ProofClaims, Reason, SigningKey};
use jwtd_gate::config::GateConfig;
use jwtd_gate::config::OnUnavailable;
use jwtd_gate::dpop::{ReplayCache, ReplayFuture, ReplayStore, ReplayStoreError, SharedReplay};
use jwtd_gate::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "dpop-test-secret-0123456789abcdef-0123456789";

pub(super) const CONFIG: &str = r#"
[[issuer]]
name = "corp"
issuer = "https://as.example"
secret_env = "DPOP_SECRET"
algorithms = ["HS256"]
any_audience = true

[issuer.dpop]
max_age = "60s"
replay_max_entries = 1000

[[rule]]
id = "orders"
path = "/v1/orders/**"
auth = "corp"

[[rule]]
id = "payments"
path = "/v1/payments/**"
auth = "corp"
dpop = "require"
scopes = { all = ["pay"] }

[[rule]]
id = "legacy"
path = "/legacy/**"
auth = "corp"
dpop = "off"
"#;

fn config(text: &str) -> Result<GateConfig, jwtd_gate::config::ConfigError> {
    let env = jwtd_gate::Env::from_vars([("DPOP_SECRET", SECRET)]);
    GateConfig::parse_with_env(text, "dpop.toml", &env)
}

pub(super) fn engine(text: &str) -> Engine {
    Engine::from_config(&config(text).unwrap()).unwrap()
}

fn token(claims: Value) -> String {
    let sk = SigningKey::hmac(SECRET.as_bytes(), Algorithm::HS256, None).unwrap();
    let now = jwtd_core::unix_now();
    let mut c = json!({"iss": "https://as.example", "sub": "alice", "iat": now, "exp": now + 300});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    jwtd_core::sign(&sk, c.as_object().unwrap(), None).unwrap()
}

/// A client: its key, and a token bound to it.
pub(super) struct Client {
    key: SigningKey,
    jkt: String,
    pub(super) token: String,
}

pub(super) fn client(extra: Value) -> Client {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = key.public_jwk().unwrap().thumbprint().unwrap();
    let mut claims = json!({"cnf": {"jkt": jkt}, "scope": "pay"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    Client {
        token: token(claims),
        key,
        jkt,
    }
}

impl Client {
    pub(super) fn proof(&self, method: &str, url: &str) -> String {
        self.proof_with(method, url, jwtd_core::unix_now(), None, Some(&self.token))
    }

    pub(super) fn proof_with(
        &self,
        method: &str,
        url: &str,
        iat: u64,
        jti: Option<&str>,
        token: Option<&str>,
    ) -> String {
        make_proof(
            &self.key,
            &ProofClaims {
                method,
                url,
                access_token: token,
                iat,
                jti,
                nonce: None,
            },
        )
        .unwrap()
    }
}

/// Decides `method https://api.example<path>` with `Authorization: <auth>` and these `DPoP`
/// headers: the reason code of a refusal, or `ok` and the answer's `X-Auth-Jkt`.
pub(super) async fn decide(
    e: &Engine,
    method: &str,
    path: &str,
    auth: &str,
    proofs: &[&str],
) -> Result<String, (String, jwtd_gate::Denial)> {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_str(auth).unwrap());
    for p in proofs {
        h.append("dpop", HeaderValue::from_str(p).unwrap());
    }
    let req = jwtd_gate::Request {
        method,
        scheme: "https",
        host: "api.example",
        path_and_query: path,
        headers: &h,
        client_cert: jwtd_gate::ClientCert::None,
    };
    let d = e.decide(&req, jwtd_core::unix_now()).await;
    match d.outcome {
        Ok(a) => Ok(a
            .headers
            .get("x-auth-jkt")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()),
        Err(d) => Err((d.error.reason().as_str().to_owned(), d)),
    }
}

pub(super) fn code(r: Result<String, (String, jwtd_gate::Denial)>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err((c, _)) => c,
    }
}

const URL: &str = "https://api.example/v1/orders/7";

#[tokio::test]
async fn a_valid_proof_passes_and_names_the_key() {
    let e = engine(CONFIG);
    let c = client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let got = decide(
        &e,
        "GET",
        "/v1/orders/7?expand=1",
        &auth,
        &[&c.proof("GET", URL)],
    )
    .await;
    assert_eq!(got.unwrap(), c.jkt, "X-Auth-Jkt is the proven key");
    // The scheme is case-insensitive.
    let auth = format!("dpop {}", c.token);
    assert_eq!(
        code(decide(&e, "GET", "/v1/orders/7", &auth, &[&c.proof("GET", URL)]).await),
        "ok"
    );
}

#[tokio::test]
async fn every_named_failure_is_refused_with_its_code() {
    let e = engine(CONFIG);
    let c = client(json!({}));
    let now = jwtd_core::unix_now();
    let auth = format!("DPoP {}", c.token);
    let other = client(json!({}));
    let cases: Vec<(&str, String, Vec<String>, &str)> = vec![
        (
            "wrong htm",
            auth.clone(),
            vec![c.proof("POST", URL)],
            "dpop_htm_mismatch",
        ),
        (
            "wrong htu",
            auth.clone(),
            vec![c.proof("GET", "https://api.example/v1/orders/8")],
            "dpop_htu_mismatch",
        ),
        (
            "stale iat",
            auth.clone(),
            vec![c.proof_with("GET", URL, now - 600, None, Some(&c.token))],
            "dpop_stale",
        ),
        (
            "wrong ath",
            auth.clone(),
            vec![c.proof_with("GET", URL, now, None, Some(&other.token))],
            "dpop_ath_mismatch",
        ),
        (
            "wrong jkt (another key's proof)",
            auth.clone(),
            vec![other.proof_with("GET", URL, now, None, Some(&c.token))],
            "dpop_jkt_mismatch",
        ),
        ("no proof", auth.clone(), vec![], "dpop_missing"),
        (
            "two proofs",
            auth.clone(),
            vec![c.proof("GET", URL), c.proof("GET", URL)],
            "dpop_multiple",
        ),
        (
            "bound token as Bearer",
            format!("Bearer {}", c.token),
            vec![c.proof("GET", URL)],
            "dpop_token_bound_as_bearer",
        ),
        (
            "unbound token as DPoP",
            format!("DPoP {}", token(json!({}))),
            vec![c.proof("GET", URL)],
            "dpop_token_not_bound",
        ),
        (
            "an unbound bearer token where bearer tokens are taken",
            format!("Bearer {}", token(json!({}))),
            vec![],
            "ok",
        ),
    ];
    for (name, auth, proofs, want) in cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let got = code(decide(&e, "GET", "/v1/orders/7?page=2", &auth, &proofs).await);
        assert_eq!(got, want, "{name}");
    }
}

/// A proof whose `htu` carries a query is refused (`dpop_htu_invalid`): made by hand, since
/// `make_proof` drops the query.
#[tokio::test]
async fn an_htu_with_a_query_is_refused() {
    let e = engine(CONFIG);
    let c = client(json!({}));
    let now = jwtd_core::unix_now();
    let jwk = c.key.public_jwk().unwrap();
    let header = json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": {
        "kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "y": jwk.y}});
    let claims = json!({"jti": "q-1", "htm": "GET", "htu": format!("{URL}?x=1"), "iat": now,
        "ath": jwtd_core::access_token_hash(&c.token)});
    let proof = jwtd_core::sign_raw(
        &c.key,
        header.as_object().unwrap(),
        claims.to_string().as_bytes(),
    )
    .unwrap();
    let auth = format!("DPoP {}", c.token);
    assert_eq!(
        code(decide(&e, "GET", "/v1/orders/7?x=1", &auth, &[&proof]).await),
        "dpop_htu_invalid"
    );
}

#[tokio::test]
async fn a_replayed_jti_is_refused_and_a_refused_request_burns_nothing() {
    let e = engine(CONFIG);
    let c = client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let proof = c.proof("GET", URL);
    assert_eq!(
        code(decide(&e, "GET", "/v1/orders/7", &auth, &[&proof]).await),
        "ok"
    );
    assert_eq!(
        code(decide(&e, "GET", "/v1/orders/7", &auth, &[&proof]).await),
        "dpop_replay"
    );
    // Refused for a missing scope after the proof passed: the jti is not consumed, the same
    // proof passes once the token has the scope.
    let url = "https://api.example/v1/payments/1";
    let poor = client(json!({"scope": "read"}));
    let proof = poor.proof_with(
        "POST",
        url,
        jwtd_core::unix_now(),
        Some("j-1"),
        Some(&poor.token),
    );
    let auth = format!("DPoP {}", poor.token);
    assert_eq!(
        code(decide(&e, "POST", "/v1/payments/1", &auth, &[&proof]).await),
        "missing_scope"
    );
    assert_eq!(
        code(decide(&e, "POST", "/v1/orders/1", &auth, &[&proof]).await),
        "dpop_htu_mismatch"
    );
    assert_eq!(
        code(decide(&e, "POST", "/v1/payments/1", &auth, &[&proof]).await),
        "missing_scope",
        "still not replayed: nothing was consumed"
    );
    // Another key may use the same jti.
    let rich = client(json!({}));
    let p2 = rich.proof_with(
        "POST",
        url,
        jwtd_core::unix_now(),
        Some("j-1"),
        Some(&rich.token),
    );
    let auth = format!("DPoP {}", rich.token);
    assert_eq!(
        code(decide(&e, "POST", "/v1/payments/1", &auth, &[&p2]).await),
        "ok"
    );
    assert_eq!(
        code(decide(&e, "POST", "/v1/payments/1", &auth, &[&p2]).await),
        "dpop_replay"
    );
}

#[tokio::test]
async fn rule_modes_require_and_off() {
    let e = engine(CONFIG);
    // require: an unbound bearer token is refused.
    let plain = token(json!({"scope": "pay"}));
    assert_eq!(
        code(decide(&e, "GET", "/v1/payments/1", &format!("Bearer {plain}"), &[]).await),
        "dpop_required"
    );
    // off: a bound token as Bearer passes, no proof read; a DPoP token is taken as it is.
    let c = client(json!({}));
    assert_eq!(
        code(decide(&e, "GET", "/legacy/x", &format!("Bearer {}", c.token), &[]).await),
        "ok"
    );
    assert_eq!(
        code(
            decide(
                &e,
                "GET",
                "/legacy/x",
                &format!("DPoP {}", c.token),
                &["junk"]
            )
            .await
        ),
        "ok"
    );
}

/// Without an `[issuer.dpop]` table the default is `enforce-cnf`: the downgrade is refused
/// there too, and `X-Auth-Jkt` is rendered all the same (review L1: it is jwtd's header
/// whatever is configured, so a front overwrites a client's own).
#[tokio::test]
async fn the_default_enforces_cnf() {
    let text = CONFIG
        .replace(
            "[issuer.dpop]\nmax_age = \"60s\"\nreplay_max_entries = 1000\n",
            "",
        )
        .replace("dpop = \"require\"\n", "");
    let e = engine(&text);
    let c = client(json!({}));
    assert_eq!(
        code(
            decide(
                &e,
                "GET",
                "/v1/orders/7",
                &format!("Bearer {}", c.token),
                &[]
            )
            .await
        ),
        "dpop_token_bound_as_bearer"
    );
    let auth = format!("DPoP {}", c.token);
    let got = decide(&e, "GET", "/v1/orders/7", &auth, &[&c.proof("GET", URL)]).await;
    assert_eq!(
        got.unwrap(),
        c.jkt,
        "X-Auth-Jkt without an [issuer.dpop] table"
    );
    assert!(e.identity.names().contains(&jwtd_gate::dpop::X_AUTH_JKT));
}

#[tokio::test]
async fn refusals_challenge_dpop_and_bearer_side_by_side() {
    let e = engine(CONFIG);
    let c = client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let Err((_, d)) = decide(&e, "GET", "/v1/orders/7", &auth, &[&c.proof("POST", URL)]).await
    else {
        panic!("refused")
    };
    let a = jwtd_gate::refusal::http_denial(&d);
    assert_eq!(a.status.as_u16(), 401);
    let www: Vec<&str> = a
        .headers
        .iter()
        .filter(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .map(|(_, v)| v.to_str().unwrap())
        .collect();
    assert_eq!(www.len(), 2, "{www:?}");
    assert!(
        www[0].starts_with("DPoP algs=\"ES256 ES384 EdDSA PS256 RS256\", error=\"invalid_dpop_proof\", error_description=")
            || www[0].starts_with("DPoP algs=\""),
        "{www:?}"
    );
    assert!(www[0].contains("error=\"invalid_dpop_proof\""), "{www:?}");
    assert_eq!(www[1], "Bearer realm=\"jwtd\"");
    let body: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof");
    assert_eq!(body["reason"], "dpop_htm_mismatch");
    assert_eq!(jwtd_gate::refusal::grpc(&d.error).0, 16, "UNAUTHENTICATED");
    // A binding mismatch is invalid_token; a require rule sends no Bearer challenge.
    let plain = token(json!({"scope": "pay"}));
    let Err((_, d)) = decide(&e, "GET", "/v1/payments/1", &format!("Bearer {plain}"), &[]).await
    else {
        panic!("refused")
    };
    let a = jwtd_gate::refusal::http_denial(&d);
    let www: Vec<&str> = a
        .headers
        .iter()
        .filter(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .map(|(_, v)| v.to_str().unwrap())
        .collect();
    assert_eq!(www.len(), 1, "{www:?}");
    assert!(www[0].starts_with("DPoP algs=\""), "{www:?}");
    assert!(www[0].contains("error=\"invalid_token\""), "{www:?}");
    // dpop_replay_unavailable: 503, Retry-After, UNAVAILABLE, no error in the challenge.
    let err = jwtd_core::Error::new(Reason::Dpop(DpopReason::ReplayUnavailable), "full");
    let a = jwtd_gate::refusal::http(&err);
    assert_eq!(a.status.as_u16(), 503);
    assert!(a
        .headers
        .iter()
        .any(|(n, v)| n == http::header::RETRY_AFTER && v == "5"));
    let www = a
        .headers
        .iter()
        .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .unwrap()
        .1
        .to_str()
        .unwrap();
    assert!(!www.contains("error="), "{www}");
    assert_eq!(jwtd_gate::refusal::grpc(&err).0, 14, "UNAVAILABLE");
}

#[test]
fn bad_dpop_tables_are_refused_at_load() {
    for (table, want) in [
        ("algorithms = []", "algorithms is empty"),
        ("algorithms = [\"HS256\"]", "never a shared secret"),
        ("max_age = 0", "max_age is 0 s"),
        ("max_age = \"2h\"", "max_age is 7200 s"),
        ("replay_max_entries = 0", "replay_max_entries is 0"),
        ("replay_max_per_key = 0", "replay_max_per_key is 0"),
        (
            "replay_max_per_key = 10000001",
            "replay_max_per_key is 10000001",
        ),
        // Review L2: with the memory cache nothing records what `check` looks up.
        ("replay = \"check\"", "it would check nothing"),
        ("replay_store = \"elsewhere\"", "unknown variant"),
        // This front has no shared store to give it.
        ("replay_store = \"shared\"", "needs a shared replay store"),
        ("mode = \"sometimes\"", "unknown variant"),
        ("replay = \"yes\"", "unknown variant"),
        ("on_pass = \"drop\"", "unknown variant"),
        ("nonsense = 1", "unknown field"),
    ] {
        let text = CONFIG.replace("max_age = \"60s\"\nreplay_max_entries = 1000", table);
        let err = match config(&text) {
            Err(e) => e.to_string(),
            Ok(c) => match Engine::from_config(&c) {
                Err(e) => e,
                Ok(_) => panic!("{table}: loaded"),
            },
        };
        assert!(err.contains(want), "{table}: {err}");
    }
    let text = CONFIG.replace("dpop = \"off\"", "dpop = \"maybe\"");
    assert!(config(&text).is_err());
}

/// The replay cache under a flood of 1,000,000 distinct proofs' keys, each of another proof
/// key: bounded by its entries (100,000 by default), it refuses (`Full`) what does not fit
/// while every entry is live, and holds about 4.3 MiB with its per-key counters. The figure is printed (`--nocapture`) and asserted.
#[test]
fn replay_cache_memory_under_a_flood() {
    // Resident memory (Linux), for the figure printed: noisy when other tests run alongside,
    // so only the table size is asserted.
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let before = rss();
    let c = ReplayCache::with_key_limit(
        jwtd_gate::config::defaults::DPOP_REPLAY_MAX_ENTRIES,
        jwtd_gate::config::defaults::DPOP_REPLAY_MAX_PER_KEY,
    );
    let now = 1_000_000;
    let mut refused = 0u32;
    // The worst case for memory: every proof of another key (each needs its own bound
    // token), so the per-key counters are as many as the entries.
    for i in 0u32..1_000_000 {
        // Keys are SHA-256 prefixes in use: spread them the same way.
        let d = i.wrapping_mul(0x9E37_79B9).to_le_bytes();
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&d);
        k[4..8].copy_from_slice(&i.to_le_bytes());
        if c.insert(&format!("jkt-{i}"), k, now + 70, now).is_err() {
            refused += 1;
        }
    }
    assert_eq!(c.len(), c.capacity());
    assert_eq!(refused as usize, 1_000_000 - c.capacity());
    let bytes = c.heap_bytes();
    println!(
        "replay cache: {} entries held, {refused} refused, {} bytes ({:.2} MiB) of tables; \
         resident memory grew {} KiB",
        c.len(),
        bytes,
        bytes as f64 / (1024.0 * 1024.0),
        rss().saturating_sub(before)
    );
    assert!(bytes < 5 * 1024 * 1024, "{bytes}");
    // Once the window passed, new proofs are taken again.
    let k = [0xAB; 16];
    assert!(c.insert("jkt-0", k, now + 200, now + 71).is_ok());
}

/// `nonce = { required = true, ... }`: a proof without a nonce is refused `dpop_use_nonce`
/// with a fresh `DPoP-Nonce`; the retry with it passes; another secret's nonce does not.
#[tokio::test]
async fn a_required_nonce_is_challenged_and_then_accepted() {
    let dir = std::env::temp_dir().join(format!("jwtd-gate-dpop-nonce-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("nonce.key");
    std::fs::write(&secret, [42u8; 32]).unwrap();
    let text = CONFIG.replace(
        "replay_max_entries = 1000",
        &format!(
            "replay_max_entries = 1000\nnonce = {{ secret_file = {:?} }}",
            secret.display().to_string()
        ),
    );
    let e = engine(&text);
    let c = client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let Err((code, d)) = decide(&e, "GET", "/v1/orders/7", &auth, &[&c.proof("GET", URL)]).await
    else {
        panic!("a proof without a nonce passed")
    };
    assert_eq!(code, "dpop_use_nonce");
    let a = jwtd_gate::refusal::http_denial(&d);
    assert_eq!(a.status.as_u16(), 401);
    let nonce = a
        .headers
        .iter()
        .find(|(n, _)| n == "dpop-nonce")
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .expect("DPoP-Nonce");
    assert!(a
        .headers
        .iter()
        .any(|(n, v)| n == http::header::WWW_AUTHENTICATE
            && v.to_str().unwrap().contains("error=\"use_dpop_nonce\"")));
    let now = jwtd_core::unix_now();
    let with = |n: &str| {
        make_proof(
            &c.key,
            &ProofClaims {
                method: "GET",
                url: URL,
                access_token: Some(&c.token),
                iat: now,
                jti: None,
                nonce: Some(n),
            },
        )
        .unwrap()
    };
    assert_eq!(
        code_of(decide(&e, "GET", "/v1/orders/7", &auth, &[&with(&nonce)]).await),
        "ok"
    );
    let foreign = jwtd_core::NonceKey::new(&[1u8; 32], 300)
        .unwrap()
        .issue(now);
    assert_eq!(
        code_of(decide(&e, "GET", "/v1/orders/7", &auth, &[&with(&foreign)]).await),
        "dpop_use_nonce"
    );
    // Not required: a proof without a nonce passes, and the answer carries a fresh one (the
    // front sends it as DPoP-Nonce); a proof with the current nonce gets none.
    let optional = text.replace("nonce = {", "nonce = { required = false,");
    let e = engine(&optional);
    let allowed = |proof: String| {
        let e = &e;
        let auth = auth.clone();
        async move {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
            h.insert("dpop", HeaderValue::from_str(&proof).unwrap());
            let req = jwtd_gate::Request {
                method: "GET",
                scheme: "https",
                host: "api.example",
                path_and_query: "/v1/orders/7",
                headers: &h,
                client_cert: jwtd_gate::ClientCert::None,
            };
            e.decide(&req, jwtd_core::unix_now())
                .await
                .outcome
                .unwrap()
                .dpop
                .unwrap()
        }
    };
    let p = allowed(c.proof("GET", URL)).await;
    assert_eq!(
        p.nonce.as_deref(),
        Some(nonce.as_str()),
        "a fresh nonce offered"
    );
    let p = allowed(with(&nonce)).await;
    assert_eq!(p.nonce, None, "the current nonce: none offered");
    // A short secret is refused at load.
    std::fs::write(&secret, [42u8; 16]).unwrap();
    let err = Engine::from_config(&config(&text).unwrap()).unwrap_err();
    assert!(err.contains("at least 32 are needed"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn code_of(r: Result<String, (String, jwtd_gate::Denial)>) -> String {
    code(r)
}

/// Review M1: one client flooding with its one bound token reaches its `replay_max_per_key`
/// and is refused `dpop_replay_key_limit` (503), while another key's proofs pass: the flood
/// neither fills the cache nor (keyed shards) lands where the client chose.
#[tokio::test]
async fn one_key_flooding_its_limit_leaves_other_keys_alone() {
    let e = engine(&CONFIG.replace(
        "replay_max_entries = 1000",
        "replay_max_entries = 2000\nreplay_max_per_key = 20",
    ));
    // The per-key cap is at most a quarter of a shard's share, so no fewer than four keys
    // at their cap fill a shard (second review, M1): 2000 entries, 125 a shard, 31 a key.
    use jwtd_gate::dpop::ReplayCache;
    assert_eq!(ReplayCache::with_key_limit(2000, 20).per_key_limit(), 20);
    assert_eq!(ReplayCache::with_key_limit(1000, 20).per_key_limit(), 15);
    assert_eq!(
        ReplayCache::with_key_limit(100_000, 4096).per_key_limit(),
        1562
    );
    let flood = client(json!({}));
    let auth = format!("DPoP {}", flood.token);
    let mut refused = Vec::new();
    for _ in 0..200 {
        let p = flood.proof("GET", URL);
        refused.push(code(decide(&e, "GET", "/v1/orders/7", &auth, &[&p]).await));
    }
    assert!(refused[..20].iter().all(|c| c == "ok"), "{refused:?}");
    assert!(
        refused[20..].iter().all(|c| c == "dpop_replay_key_limit"),
        "{refused:?}"
    );
    let p = flood.proof("GET", URL);
    let (_, d) = decide(&e, "GET", "/v1/orders/7", &auth, &[&p])
        .await
        .unwrap_err();
    let http = jwtd_gate::refusal::http_denial(&d);
    assert_eq!(http.status.as_u16(), 503);
    for _ in 0..40 {
        let other = client(json!({}));
        let auth = format!("DPoP {}", other.token);
        let p = other.proof("GET", URL);
        assert_eq!(
            code(decide(&e, "GET", "/v1/orders/7", &auth, &[&p]).await),
            "ok"
        );
    }
}

/// A [`ReplayStore`] in memory standing for the shared PostgreSQL table: `down` makes it
/// fail, `slow` makes it answer after a second.
#[derive(Debug, Default)]
struct FakeStore {
    rows: std::sync::Mutex<std::collections::HashMap<[u8; 16], u64>>,
    down: std::sync::atomic::AtomicBool,
    slow: std::sync::atomic::AtomicBool,
}

impl FakeStore {
    async fn wait(&self) -> Result<(), ReplayStoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.slow.load(Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if self.down.load(Relaxed) {
            return Err(ReplayStoreError("connection refused".into()));
        }
        Ok(())
    }
}

impl ReplayStore for FakeStore {
    fn record(&self, key: [u8; 16], expires: u64, now: u64) -> ReplayFuture<'_, bool> {
        Box::pin(async move {
            self.wait().await?;
            let mut rows = self.rows.lock().unwrap();
            match rows.get(&key) {
                Some(&e) if e > now => Ok(false),
                _ => {
                    rows.insert(key, expires);
                    Ok(true)
                }
            }
        })
    }

    fn seen(&self, key: [u8; 16], now: u64) -> ReplayFuture<'_, bool> {
        Box::pin(async move {
            self.wait().await?;
            Ok(self
                .rows
                .lock()
                .unwrap()
                .get(&key)
                .is_some_and(|&e| e > now))
        })
    }
}

/// An engine of `text` whose `replay_store = "shared"` issuers use `store` (100 ms timeout).
fn shared_engine(text: &str, store: &Arc<FakeStore>, on: OnUnavailable) -> Engine {
    let c = config(text).unwrap();
    let issuers =
        jwtd_gate::issuers::Issuers::build_with_env(&c.issuers, &c.cache, None, None, &c.env)
            .unwrap();
    let mut e = Engine::with_rules(issuers, &c.rules, &c.rule, c.tokens.clone()).unwrap();
    let shared = SharedReplay::new(store.clone(), Duration::from_millis(100), on);
    e.dpop.with_shared_replay(&shared);
    assert_eq!(e.dpop.unwired_shared(), None);
    e
}

fn shared_config(replay: &str) -> String {
    CONFIG.replace(
        "replay_max_entries = 1000",
        &format!("replay_max_entries = 1000\nreplay_store = \"shared\"\nreplay = \"{replay}\""),
    )
}

/// `replay_store = "shared"`: a proof accepted by one engine (instance) is `dpop_replay` on
/// another sharing the store; the store down is 503 `dpop_replay_unavailable` without burning
/// the proof (it passes once the store is back), or the memory cache's verdict with
/// `on_unavailable = "local"`; a store that does not answer is cut at the timeout.
#[tokio::test]
async fn a_shared_store_catches_a_replay_to_another_instance() {
    use std::sync::atomic::Ordering::Relaxed;
    let store = Arc::new(FakeStore::default());
    let one = shared_engine(&shared_config("consume"), &store, OnUnavailable::Reject);
    let two = shared_engine(&shared_config("consume"), &store, OnUnavailable::Reject);
    let c = client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let p = c.proof("GET", URL);
    assert_eq!(
        code(decide(&one, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "ok"
    );
    assert_eq!(
        code(decide(&two, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "dpop_replay"
    );
    assert_eq!(store.rows.lock().unwrap().len(), 1);

    store.down.store(true, Relaxed);
    let p = c.proof("GET", URL);
    assert_eq!(
        code(decide(&one, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "dpop_replay_unavailable"
    );
    store.down.store(false, Relaxed);
    assert_eq!(
        code(decide(&one, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "ok",
        "not burnt by the refusal"
    );

    store.slow.store(true, Relaxed);
    let p = c.proof("GET", URL);
    let t = std::time::Instant::now();
    assert_eq!(
        code(decide(&two, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "dpop_replay_unavailable"
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let local = shared_engine(&shared_config("consume"), &store, OnUnavailable::Local);
    assert_eq!(
        code(decide(&local, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "ok"
    );
    assert_eq!(
        code(decide(&local, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "dpop_replay",
        "the memory cache still decides"
    );
}

/// Review L2: `replay = "check"` (with the shared store) refuses a `jti` some other party
/// recorded there (the application, here a `consume` instance) and records none itself: the
/// same proof passes it twice, and the store holds nothing more.
#[tokio::test]
async fn check_refuses_what_another_recorded_and_records_nothing() {
    let store = Arc::new(FakeStore::default());
    let check = shared_engine(&shared_config("check"), &store, OnUnavailable::Reject);
    let app = shared_engine(&shared_config("consume"), &store, OnUnavailable::Reject);
    let c = client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let p = c.proof("GET", URL);
    for _ in 0..2 {
        assert_eq!(
            code(decide(&check, "GET", "/v1/orders/7", &auth, &[&p]).await),
            "ok"
        );
    }
    assert!(
        store.rows.lock().unwrap().is_empty(),
        "check records nothing"
    );
    // The application consumes it: from then on `check` refuses it.
    assert_eq!(
        code(decide(&app, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "ok"
    );
    assert_eq!(
        code(decide(&check, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "dpop_replay"
    );
}
