//! Every endpoint over real HTTP on 127.0.0.1: success and error shapes, token sources,
//! forward-auth headers, introspection, readiness (also through a remote issuer's outage),
//! metrics, reload.

use crate::common;

use jwtd_core::{Algorithm, Jwks, SigningKey};
use jwtd_service::config::Place;
use jwtd_service::{AppState, Config, Env, Runtime};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

const ISS: &str = "https://id.example/";
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-mobile";

struct Service {
    base: String,
    dir: PathBuf,
    state: Arc<AppState>,
    es: SigningKey,
    hs: SigningKey,
    client: reqwest::Client,
}

fn config_text(dir: &std::path::Path, extra_audience: Option<&str>) -> String {
    let auds = match extra_audience {
        Some(a) => format!("[\"api\", \"{a}\"]"),
        None => "[\"api\"]".into(),
    };
    format!(
        r#"
listen = "127.0.0.1:0"
trust_request_id = true

[tokens]
cookie = "session"
query = "access_token"

[introspection]
client_id = "rs-1"
client_secret_env = "JWTD_TEST_INTROSPECT"

[admin]
api_key_env = "JWTD_TEST_ADMIN"

[[issuer]]
name = "main"
issuer = "{ISS}"
jwks_file = "{jwks}"
algorithms = ["ES256"]
audiences = {auds}
forward_payload = true
[issuer.headers]
X-User-Email = "email"
X-Verified = "https://example.com/claims/user/is_verified"
X-Roles = "realm.roles"

[[issuer]]
name = "mobile"
secret_env = "JWTD_TEST_HS"
algorithms = ["HS256"]
any_audience = true
[issuer.claims]
client_id = "app-key-1"
"#,
        jwks = dir.join("jwks.json").display()
    )
}

async fn start() -> Service {
    let env = Env::from_vars([
        ("JWTD_TEST_INTROSPECT", "introspect-secret"),
        ("JWTD_TEST_ADMIN", "admin-key-0123456789"),
        ("JWTD_TEST_HS", HS_SECRET),
    ]);
    let dir = std::env::temp_dir().join(format!(
        "jwtd-svc-{}-{}",
        std::process::id(),
        jwtd_core::b64::encode(rand_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let es = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    let hs = SigningKey::hmac(HS_SECRET.as_bytes(), Algorithm::HS256, None).unwrap();
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string(&Jwks::from_keys(es.public_jwk())).unwrap(),
    )
    .unwrap();
    let path = dir.join("jwtd.toml");
    std::fs::write(&path, config_text(&dir, None)).unwrap();
    let config = Config::load_with_env(&path, &env).unwrap();
    let runtime = Runtime::build(config, None).await.unwrap();
    let state = common::state(runtime, Some(path));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(jwtd_service::serve(state.clone(), listener));
    Service {
        base,
        dir,
        state,
        es,
        hs,
        client: reqwest::Client::new(),
    }
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    jwtd_core::fill_random(&mut b).unwrap();
    b
}

fn now() -> u64 {
    jwtd_core::unix_now()
}

fn es_token(s: &Service, extra: Value) -> String {
    let mut c = json!({"iss": ISS, "aud": "api", "sub": "alice", "iat": now(), "exp": now() + 600,
        "email": "alice@example.com", "https://example.com/claims/user/is_verified": true,
        "realm": {"roles": ["reader", "writer"]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    jwtd_core::sign(&s.es, c.as_object().unwrap(), None).unwrap()
}

fn hs_token(s: &Service, client_id: &str) -> String {
    let c = json!({"sub": "device-1", "client_id": client_id, "iat": now(), "exp": now() + 86400});
    jwtd_core::sign(&s.hs, c.as_object().unwrap(), None).unwrap()
}

async fn get(s: &Service, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = s.client.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.send().await.unwrap()
}

async fn error_of(r: reqwest::Response, status: StatusCode, reason: &str) -> Value {
    assert_eq!(r.status(), status);
    // One Content-Type, JSON's (two would be read differently by different clients).
    let types: Vec<_> = r.headers().get_all("content-type").iter().collect();
    assert_eq!(types, ["application/json"], "{reason}");
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], reason, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
    let error = body["error"].as_str().unwrap();
    if reason == "missing_token" {
        assert_eq!(www, "Bearer realm=\"jwtd\"");
    } else {
        assert!(
            www.starts_with(&format!(
                "Bearer realm=\"jwtd\", error=\"{error}\", error_description=\""
            )),
            "{www}"
        );
    }
    body
}

#[tokio::test]
async fn verify_endpoint_success_and_every_error_shape() {
    let s = start().await;
    let t = es_token(&s, json!({}));
    let r = get(&s, "/v1/verify", Some(&t)).await;
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let n = rid.strip_prefix("jwtd-").expect("jwtd-<hex>");
    assert!(
        u64::from_str_radix(n, 16).is_ok() && !n.starts_with('0'),
        "{rid}"
    );
    let body: Value = r.json().await.unwrap();
    // The configured issuer's name, and the token's own `iss`.
    assert_eq!(body["issuer"], "main");
    assert_eq!(body["iss"], ISS);
    // A client's id is sent back (on successes and rejections, /auth too); one that is not
    // 1-64 visible characters is replaced.
    for path in ["/v1/verify", "/auth"] {
        for (token, sent) in [(Some(t.as_str()), "client-7"), (None, "client-8")] {
            let mut q = s
                .client
                .get(format!("{}{path}", s.base))
                .header("x-request-id", sent);
            if let Some(token) = token {
                q = q.bearer_auth(token);
            }
            let r = q.send().await.unwrap();
            assert_eq!(r.headers()["x-request-id"], sent, "{path}");
        }
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .header("x-request-id", "x".repeat(65))
            .send()
            .await
            .unwrap();
        assert!(r.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("jwtd-"));
    }
    let next = get(&s, "/v1/verify", Some(&t)).await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(next, rid, "a fresh id per request");
    assert_eq!(body["header"]["alg"], "ES256");
    assert_eq!(body["claims"]["sub"], "alice");

    let expired = es_token(&s, json!({"exp": now() - 3600}));
    let b = error_of(
        get(&s, "/v1/verify", Some(&expired)).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    )
    .await;
    assert_eq!(b["error"], "invalid_token");
    error_of(
        get(&s, "/v1/verify", None).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
    error_of(
        get(&s, "/v1/verify", Some("not.a.token")).await,
        StatusCode::UNAUTHORIZED,
        "malformed",
    )
    .await;
    let other_iss = es_token(&s, json!({"iss": "https://evil.example/"}));
    error_of(
        get(&s, "/v1/verify", Some(&other_iss)).await,
        StatusCode::UNAUTHORIZED,
        "wrong_issuer",
    )
    .await;
    let wrong_aud = es_token(&s, json!({"aud": "billing"}));
    error_of(
        get(&s, "/v1/verify", Some(&wrong_aud)).await,
        StatusCode::UNAUTHORIZED,
        "wrong_audience",
    )
    .await;
    // A claim check (client_id must equal the API key) answers 403 insufficient_scope.
    let b = error_of(
        get(&s, "/v1/verify", Some(&hs_token(&s, "other-key"))).await,
        StatusCode::FORBIDDEN,
        "claim_mismatch",
    )
    .await;
    assert_eq!(b["error"], "insufficient_scope");
    let r = get(&s, "/v1/verify", Some(&hs_token(&s, "app-key-1"))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    // A token without `iss`, verified by the issuer that omits it: `iss` is null.
    assert_eq!(body["issuer"], "mobile");
    assert_eq!(body["iss"], Value::Null);

    // Scheme is case-insensitive; POST takes a JSON body too; cookie and query sources.
    let r = s
        .client
        .get(format!("{}/v1/verify", s.base))
        .header("authorization", format!("bEaReR {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .post(format!("{}/v1/verify", s.base))
        .json(&json!({"token": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .get(format!("{}/v1/verify", s.base))
        .header("cookie", format!("theme=dark; session={t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .get(format!("{}/v1/verify?access_token={t}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tokens_endpoint_for_sites_without_a_backend() {
    let s = start().await;
    let t = es_token(&s, json!({}));
    let r = get(&s, &format!("/v1/tokens/{t}"), None).await;
    assert_eq!(r.status(), 200);
    let claims: Value = r.json().await.unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    let mut bad = t.clone();
    bad.insert(bad.len() - 3, 'x');
    let r = get(&s, &format!("/v1/tokens/{bad}"), None).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn forward_auth_sends_identity_headers() {
    let s = start().await;
    let t = es_token(&s, json!({}));
    let r = get(&s, "/auth", Some(&t)).await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-auth-subject"], "alice");
    assert_eq!(h["x-auth-issuer"], ISS);
    assert_eq!(h["x-user-email"], "alice@example.com");
    assert_eq!(h["x-verified"], "true");
    assert_eq!(h["x-roles"], r#""reader", "writer""#);
    let payload = jwtd_core::b64::decode(h["x-auth-payload"].as_bytes()).unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["sub"], "alice");
    // A claim that is absent yields an empty header (so a proxy overwrites a spoofed one).
    let t = es_token(&s, json!({"email": null}));
    let r = get(&s, "/auth", Some(&t)).await;
    assert_eq!(r.headers()["x-user-email"], "");
    error_of(
        get(&s, "/auth", None).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
}

#[tokio::test]
async fn auth_answers_the_union_of_identity_headers_for_every_issuer() {
    let s = start().await;
    let union = s.state.runtime().engine.identity.clone();
    let names: Vec<String> = union
        .names()
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    // Stable order: subject, issuer, payload (some issuer forwards it), then the mapped
    // headers of every issuer and the two binding headers jwtd always answers, sorted.
    assert_eq!(
        names,
        [
            "x-auth-subject",
            "x-auth-issuer",
            "x-auth-payload",
            "x-auth-cert-thumbprint",
            "x-auth-jkt",
            "x-roles",
            "x-user-email",
            "x-verified"
        ]
    );
    let identity = |r: &reqwest::Response| -> Vec<(String, String)> {
        r.headers()
            .iter()
            .filter(|(n, _)| names.iter().any(|x| x == n.as_str()))
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect()
    };
    let main = get(&s, "/auth", Some(&es_token(&s, json!({})))).await;
    assert_eq!(main.status(), 200);
    let main = identity(&main);
    // "mobile" maps no header and forwards no payload, and its tokens carry no iss: it still
    // answers every header, each once, empty where it has no value.
    let mobile = get(&s, "/auth", Some(&hs_token(&s, "app-key-1"))).await;
    assert_eq!(mobile.status(), 200);
    let mobile = identity(&mobile);
    let keys = |h: &[(String, String)]| h.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&main), names, "one of each, in order");
    assert_eq!(keys(&mobile), names, "one of each, in order");
    let expect: Vec<(String, String)> = [
        ("x-auth-subject", "device-1"),
        ("x-auth-issuer", ""),
        ("x-auth-payload", ""),
        ("x-auth-cert-thumbprint", ""),
        ("x-auth-jkt", ""),
        ("x-roles", ""),
        ("x-user-email", ""),
        ("x-verified", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(mobile, expect);
}

#[tokio::test]
async fn mapped_arrays_are_rfc8941_lists_of_strings() {
    let s = &start().await;
    let roles = |r: Value| {
        let t = es_token(s, json!({"realm": {"roles": r}}));
        async move {
            let r = get(s, "/auth", Some(&t)).await;
            assert_eq!(r.status(), 200);
            r.headers()["x-roles"].to_str().unwrap().to_owned()
        }
    };
    // A comma inside an item cannot pass for a separator.
    assert_eq!(
        roles(json!(["viewer", "x, admin"])).await,
        r#""viewer", "x, admin""#
    );
    assert_eq!(roles(json!(["a\"b", "c\\d"])).await, r#""a\"b", "c\\d""#);
    assert_eq!(
        roles(json!([7, true, false, "7"])).await,
        r#"7, ?1, ?0, "7""#
    );
    assert_eq!(roles(json!([])).await, "");
    assert_eq!(roles(json!("just text")).await, "just text");
    // Scalars: numbers and booleans as their JSON text.
    let t = es_token(s, json!({"email": 42}));
    assert_eq!(
        get(s, "/auth", Some(&t)).await.headers()["x-user-email"],
        "42"
    );
}

#[tokio::test]
async fn unrepresentable_subject_or_mapped_claim_is_refused() {
    let s = start().await;
    for (claims, claim) in [
        (json!({"sub": "Jos\u{e9}"}), "sub"),
        (json!({"sub": " alice"}), "sub"),
        (json!({"sub": "alice\t"}), "sub"),
        // (A non-string "sub" is refused earlier, as malformed: RFC 7519 StringOrURI.)
        (json!({"email": "alice@example.com\r\nX-Admin: 1"}), "email"),
        (json!({"email": "alice@example.com\u{7f}"}), "email"),
        (json!({"email": {"primary": "a@example.com"}}), "email"),
        (json!({"realm": {"roles": ["caf\u{e9}"]}}), "realm.roles"),
        (json!({"realm": {"roles": [["nested"]]}}), "realm.roles"),
        (json!({"realm": {"roles": [1.5]}}), "realm.roles"),
        (json!({"realm": {"roles": [null]}}), "realm.roles"),
        (
            json!({"realm": {"roles": [1_000_000_000_000_000u64]}}),
            "realm.roles",
        ),
    ] {
        let t = es_token(&s, claims.clone());
        let b = error_of(
            get(&s, "/auth", Some(&t)).await,
            StatusCode::UNAUTHORIZED,
            "unrepresentable_claim",
        )
        .await;
        assert_eq!(b["error"], "invalid_token");
        let m = b["message"].as_str().unwrap();
        assert!(m.contains(&format!("claim {claim:?}")), "{claims}: {m}");
        // The token itself is fine: /v1/verify still accepts it.
        assert_eq!(
            get(&s, "/v1/verify", Some(&t)).await.status(),
            200,
            "{claims}"
        );
    }
}

#[test]
fn identity_headers_cannot_be_reserved_or_named_twice() {
    let issuer = |headers: &str| {
        format!(
            "[[issuer]]\nname = \"a\"\nissuer = \"https://a.example/\"\njwks_file = \"x.json\"\n\
             algorithms = [\"ES256\"]\nany_audience = true\n[issuer.headers]\n{headers}\n"
        )
    };
    for (headers, want) in [
        ("X-Auth-Subject = \"email\"", "cannot be an identity header"),
        ("x-auth-payload = \"email\"", "cannot be an identity header"),
        ("Authorization = \"email\"", "cannot be an identity header"),
        (
            "X-Roles = \"roles\"\nx-roles = \"groups\"",
            "name the same header",
        ),
    ] {
        let e = Config::parse(&issuer(headers), "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{headers}: {e}");
    }
    Config::parse(&issuer("X-Roles = \"roles\""), "test").unwrap();
}

#[tokio::test]
async fn more_than_one_token_is_invalid_request() {
    let s = start().await;
    let (a, b) = (es_token(&s, json!({})), es_token(&s, json!({"sub": "bob"})));
    let bearer = |t: &str| format!("Bearer {t}");
    // (query, headers): every way of sending two tokens, or two Authorization headers.
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "".into(),
            vec![("authorization", bearer(&a)), ("authorization", bearer(&b))],
        ),
        (
            "".into(),
            vec![("authorization", bearer(&a)), ("authorization", bearer(&a))],
        ),
        (
            "".into(),
            vec![
                ("authorization", bearer(&a)),
                ("authorization", "Basic eDp5".into()),
            ],
        ),
        (
            "".into(),
            vec![
                ("authorization", bearer(&a)),
                ("cookie", format!("session={b}")),
            ],
        ),
        (
            "".into(),
            vec![("cookie", format!("session={a}; session={b}"))],
        ),
        (
            "".into(),
            vec![
                ("cookie", format!("session={a}")),
                ("cookie", format!("session={b}")),
            ],
        ),
        (
            format!("?access_token={b}"),
            vec![("authorization", bearer(&a))],
        ),
        (
            format!("?access_token={b}"),
            vec![("cookie", format!("theme=dark; session={a}"))],
        ),
        (format!("?access_token={a}&access_token={b}"), vec![]),
        // Review: spellings jwtd used to skip but upstreams decode.
        (format!("?access_token={a}&access%5Ftoken={b}"), vec![]),
        (
            "".into(),
            vec![
                ("authorization", bearer(&a)),
                ("cookie", format!("session ={b}")),
            ],
        ),
        (
            "".into(),
            vec![
                ("authorization", format!("Bearer\t{a}")),
                ("cookie", format!("session={b}")),
            ],
        ),
    ];
    for path in ["/auth", "/v1/verify", "/auth/orders"] {
        for (query, headers) in &cases {
            let mut r = s.client.get(format!("{}{path}{query}", s.base));
            for (k, v) in headers {
                r = r.header(*k, v);
            }
            let body = error_of(
                r.send().await.unwrap(),
                StatusCode::BAD_REQUEST,
                "multiple_tokens",
            )
            .await;
            assert_eq!(
                body["error"], "invalid_request",
                "{path}{query} {headers:?}"
            );
        }
    }
    // A Cookie header with bytes that are not UTF-8 cannot hide a second token.
    let raw = reqwest::header::HeaderValue::from_bytes(format!("x=\u{e9}; session={b}").as_bytes())
        .unwrap();
    let bytes = {
        let mut v = b"x=\xe9; session=".to_vec();
        v.extend_from_slice(b.as_bytes());
        reqwest::header::HeaderValue::from_bytes(&v).unwrap()
    };
    for cookie in [raw, bytes] {
        let r = s
            .client
            .get(format!("{}/auth", s.base))
            .bearer_auth(&a)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    // POST /v1/verify: a token in the body and another in a header.
    let r = s
        .client
        .post(format!("{}/v1/verify", s.base))
        .bearer_auth(&a)
        .json(&json!({"token": b}))
        .send()
        .await
        .unwrap();
    error_of(r, StatusCode::BAD_REQUEST, "multiple_tokens").await;
    // One token in one place still works, and a cookie of another name is no token.
    let r = s
        .client
        .get(format!("{}/auth", s.base))
        .bearer_auth(&a)
        .header("cookie", format!("other={b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn introspection_requires_client_auth_and_hides_reasons() {
    let s = start().await;
    let url = format!("{}/introspect", s.base);
    let t = es_token(&s, json!({}));
    let form = format!("token={t}&token_type_hint=access_token");
    let post = |auth: Option<(&str, &str)>, body: String| {
        let mut r = s
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        r.send()
    };
    let r = post(None, form.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = post(Some(("rs-1", "wrong")), form.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post(Some(("rs-1", "introspect-secret")), form)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["active"], true);
    assert_eq!(b["sub"], "alice");
    let r = post(Some(("rs-1", "introspect-secret")), "token=garbage".into())
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"active": false}));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = start().await;
    assert_eq!(get(&s, "/healthz", None).await.status(), 200);
    let r = get(&s, "/readyz", None).await;
    assert_eq!(r.status(), 200);
    let t = es_token(&s, json!({"exp": now() - 3600}));
    get(&s, "/v1/verify", Some(&t)).await;
    let good = es_token(&s, json!({}));
    for _ in 0..3 {
        assert_eq!(get(&s, "/auth", Some(&good)).await.status(), 200);
    }
    let text = get(&s, "/metrics", None).await.text().await.unwrap();
    // Successes are counted on the issuer's cached counter (the recorder is process-wide, so
    // other tests' requests may add to it).
    let ok = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "jwtd_requests_total{endpoint=\"auth\",issuer=\"main\",outcome=\"ok\",reason=\"\"} ",
            )
        })
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(ok.is_some_and(|n| n >= 3), "{text}");
    assert!(text.contains("jwtd_requests_total{endpoint=\"verify\",issuer=\"main\",outcome=\"rejected\",reason=\"expired\"}"), "{text}");
    assert!(
        text.contains("jwtd_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("jwtd_keys{issuer=\"main\"} 1"), "{text}");
    // The verified-token cache: the second request with the same token is a hit.
    let good = es_token(&s, json!({}));
    assert_eq!(get(&s, "/v1/verify", Some(&good)).await.status(), 200);
    assert_eq!(get(&s, "/v1/verify", Some(&good)).await.status(), 200);
    // (Read from the state: the metrics recorder is process-wide, shared by parallel tests.)
    let rt = s.state.runtime();
    let main = rt
        .engine
        .issuers
        .list
        .iter()
        .find(|i| i.name == "main")
        .unwrap();
    let stats = main.cache.as_ref().expect("cache on by default").stats();
    assert!(stats.hits >= 1 && stats.misses >= 1, "{stats:?}");
    let text = get(&s, "/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains("jwtd_token_cache_hits_total{issuer=\"main\"}"),
        "{text}"
    );
    // Counters are typed as counters (issue 15).
    for counter in [
        "jwtd_token_cache_hits_total",
        "jwtd_token_cache_misses_total",
        "jwtd_token_cache_evictions_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {counter} counter")),
            "{counter}: {text}"
        );
    }
}

#[tokio::test]
async fn reload_swaps_valid_config_and_keeps_old_on_error() {
    let s = start().await;
    let billing = es_token(&s, json!({"aud": "billing"}));
    assert_eq!(get(&s, "/v1/verify", Some(&billing)).await.status(), 401);
    let reload = || {
        s.client
            .post(format!("{}/admin/reload", s.base))
            .header("authorization", "Bearer admin-key-0123456789")
            .send()
    };
    // Wrong admin key.
    let r = s
        .client
        .post(format!("{}/admin/reload", s.base))
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A valid change takes effect.
    std::fs::write(
        s.dir.join("jwtd.toml"),
        config_text(&s.dir, Some("billing")),
    )
    .unwrap();
    assert_eq!(reload().await.unwrap().status(), 200);
    assert_eq!(get(&s, "/v1/verify", Some(&billing)).await.status(), 200);
    // A broken file is refused with its line, and the running configuration stays.
    std::fs::write(
        s.dir.join("jwtd.toml"),
        "listen = \"127.0.0.1:0\"\n[[issuer]]\nname = \"x\"\nalgorithms = [\"none\"]\n",
    )
    .unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 422);
    let b: Value = r.json().await.unwrap();
    assert!(b["error"].as_str().unwrap().contains("jwtd.toml:4"), "{b}");
    assert_eq!(get(&s, "/v1/verify", Some(&billing)).await.status(), 200);
    // Issue 15 #4: a reload reports every error, each with its line, exactly as `jwtd config
    // check` does (Config::load): an unknown key, a missing jwks_file, an unset secret.
    let path = s.dir.join("jwtd.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\n[admin]\napi_key_env = \"JWTD_TEST_ADMIN\"\n\
         [[issuer]]\nname = \"a\"\njwks_file = \"no-such-jwks.json\"\nalgorithms = [\"ES256\"]\n\
         [[issuer]]\nname = \"b\"\nissuer = \"https://b.example\"\nsecret_env = \"JWTD_TEST_UNSET_HS\"\n\
         algorithms = [\"HS256\"]\naudience = \"x\"\n",
    )
    .unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 422);
    let b: Value = r.json().await.unwrap();
    let shown = b["error"].as_str().unwrap();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    let file = path.display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "{file}:6: issuer \"a\": cannot read no-such-jwks.json"
        )),
        "{shown}"
    );
    assert!(lines[1].starts_with(&format!("{file}:11: issuer \"b\": HMAC secret: environment variable JWTD_TEST_UNSET_HS is not set")), "{shown}");
    assert!(
        lines[2].starts_with(&format!(
            "{file}:13: issuer \"b\": unknown field `audience`"
        )),
        "{shown}"
    );
    // In the environment the service's configuration was read in.
    let env = s.state.runtime().config.env.clone();
    assert_eq!(
        shown,
        Config::load_with_env(&path, &env).unwrap_err().to_string()
    );
    assert_eq!(get(&s, "/v1/verify", Some(&billing)).await.status(), 200);
}

/// Finding 15: `[cors]` lets browsers on the allowed origins call `GET /v1/tokens/{token}` and
/// `/v1/verify`; off by default, exact origins only, nothing for the other endpoints.
#[tokio::test]
async fn cors_preflight_and_answers_for_allowed_origins_only() {
    let s = start().await;
    let t = es_token(&s, json!({}));
    let site = "https://site.example";
    let preflight = |path: String, origin: &'static str, method: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", s.base))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let with_origin = |path: String, origin: &'static str| {
        s.client
            .get(format!("{}{path}", s.base))
            .header("origin", origin)
            .send()
    };
    let cors_headers = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    };
    let tokens = format!("/v1/tokens/{t}");
    // Off by default: as before, a preflight is 405 and nothing carries CORS headers.
    let r = preflight(tokens.clone(), site, "GET").await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers());
    let r = with_origin(tokens.clone(), site).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers());
    assert!(r.headers().get("vary").is_none());

    let mut text = config_text(&s.dir, None);
    text.push_str(
        "\n[cors]\nallowed_origins = [\"https://site.example\", \"http://localhost:3000\"]\nmax_age = \"1h\"\n",
    );
    std::fs::write(s.dir.join("jwtd.toml"), &text).unwrap();
    s.state.reload().await.unwrap();

    // An allowed origin's preflight: 204 with everything a browser checks.
    let r = preflight(tokens.clone(), site, "GET").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], site);
    assert_eq!(h["access-control-allow-methods"], "GET");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, content-type"
    );
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(h["vary"], "origin");
    assert!(h.get("access-control-allow-credentials").is_none());
    let r = preflight("/v1/verify".into(), "http://localhost:3000", "POST")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(r.headers()["access-control-allow-methods"], "GET, POST");
    // A method the endpoint does not have is not pre-approved.
    let r = preflight(tokens.clone(), site, "DELETE").await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers());
    // Other origins (a look-alike, another scheme, a subdomain, "null") get no CORS headers.
    for other in [
        "https://site.example.evil",
        "http://site.example",
        "https://www.site.example",
        "null",
    ] {
        let r = preflight(tokens.clone(), other, "GET").await.unwrap();
        assert_eq!(r.status(), 405, "{other}");
        assert!(cors_headers(&r).is_empty(), "{other}: {:?}", r.headers());
        assert_eq!(r.headers()["vary"], "origin");
        let r = with_origin(tokens.clone(), other).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(cors_headers(&r).is_empty(), "{other}: {:?}", r.headers());
    }

    // The actual request: the claims, readable by the page.
    let r = with_origin(tokens.clone(), site).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], site);
    assert_eq!(r.headers()["vary"], "origin");
    assert_eq!(
        r.headers()["access-control-expose-headers"],
        "www-authenticate, x-request-id, retry-after"
    );
    let claims: Value = r.json().await.unwrap();
    assert_eq!(claims["sub"], "alice");
    // A rejection too, so the page can read why.
    let r = with_origin("/v1/tokens/not.a.token".into(), site)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], site);
    let r = s
        .client
        .post(format!("{}/v1/verify", s.base))
        .header("origin", site)
        .json(&json!({"token": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], site);
    // Two Origin headers are no origin.
    let r = s
        .client
        .get(format!("{}{tokens}", s.base))
        .header("origin", site)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers());
    // No other endpoint answers cross-origin requests.
    for path in [
        "/auth",
        "/v1/revocations",
        "/.well-known/jwks.json",
        "/healthz",
    ] {
        let r = with_origin(path.into(), site).await.unwrap();
        assert!(cors_headers(&r).is_empty(), "{path}: {:?}", r.headers());
    }
    let r = preflight("/v1/tokens".into(), site, "POST").await.unwrap();
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers());

    // With credentials (cookie tokens from the browser).
    text.push_str("allow_credentials = true\n");
    std::fs::write(s.dir.join("jwtd.toml"), &text).unwrap();
    s.state.reload().await.unwrap();
    let r = preflight(tokens.clone(), site, "GET").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = with_origin(tokens.clone(), site).await.unwrap();
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = with_origin(tokens, "https://other.example").await.unwrap();
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers());
}

/// Finding 1 (High): an empty or newline-only admin key file, an empty introspection secret or a
/// short one must never start a service (an empty key compared equal to an empty credential).
#[tokio::test]
async fn empty_or_short_secrets_are_refused_at_start_and_by_check_inputs() {
    let dir = std::env::temp_dir().join(format!(
        "jwtd-secrets-{}-{}",
        std::process::id(),
        jwtd_core::b64::encode(rand_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("admin.key");
    let jwks = dir.join("jwks.json");
    let es = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    std::fs::write(
        &jwks,
        serde_json::to_string(&Jwks::from_keys(es.public_jwk())).unwrap(),
    )
    .unwrap();
    let text = |admin: &str, intro: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n[admin]\n{admin}\n[introspection]\nclient_id = \"rs\"\n{intro}\n\
             [[issuer]]\nname = \"a\"\njwks_file = \"{}\"\nalgorithms = [\"ES256\"]\nany_audience = true\n",
            jwks.display()
        )
    };
    let env = Env::from_vars([
        ("JWTD_SECRETS_TEST_EMPTY", ""),
        ("JWTD_SECRETS_TEST_SHORT", "short-secret"),
        ("JWTD_SECRETS_TEST_GOOD", "a-good-long-secret-0123456789"),
    ]);
    let parse = |text: &str| Config::parse_with_env(text, "t", &env).unwrap();
    let file_admin = format!("api_key_file = \"{}\"", key.display());
    let good_intro = "client_secret_env = \"JWTD_SECRETS_TEST_GOOD\"";
    for (content, why) in [
        ("", "empty"),
        ("\n", "empty"),
        ("\r\n\n", "empty"),
        ("   \n", "empty"),
        ("0123456789\n", "at least 16"),
    ] {
        std::fs::write(&key, content).unwrap();
        let config = parse(&text(&file_admin, good_intro));
        let problems = jwtd_service::check_inputs(&config);
        assert!(
            problems.len() == 1
                && problems[0].0 == Place::Key("admin", "api_key_file")
                && problems[0].1.contains("admin api key")
                && problems[0].1.contains(why),
            "{content:?}: {problems:?}"
        );
        let e = Runtime::build(config, None).await.unwrap_err();
        assert!(e.contains(why), "{content:?}: {e}");
    }
    std::fs::write(&key, "a-good-long-secret-0123456789\n").unwrap();
    for (intro, why) in [
        ("client_secret_env = \"JWTD_SECRETS_TEST_EMPTY\"", "empty"),
        (
            "client_secret_env = \"JWTD_SECRETS_TEST_SHORT\"",
            "at least 16",
        ),
        (
            "client_secret_env = \"JWTD_SECRETS_TEST_UNSET_VAR\"",
            "not set",
        ),
    ] {
        let config = parse(&text(&file_admin, intro));
        let problems = jwtd_service::check_inputs(&config);
        assert!(
            problems.len() == 1
                && problems[0].0 == Place::Key("introspection", "client_secret_env")
                && problems[0].1.contains("introspection")
                && problems[0].1.contains(why),
            "{intro}: {problems:?}"
        );
        assert!(Runtime::build(config, None)
            .await
            .unwrap_err()
            .contains(why));
    }
    let admin_env = "api_key_env = \"JWTD_SECRETS_TEST_EMPTY\"";
    let config = parse(&text(admin_env, good_intro));
    assert!(Runtime::build(config, None)
        .await
        .unwrap_err()
        .contains("empty"));
    let config = parse(&text(&file_admin, good_intro));
    assert!(jwtd_service::check_inputs(&config).is_empty());
    Runtime::build(config, None).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16: a configuration built in code (not parsed) that names a secret both by variable and
/// by file is refused when the service is built, naming both keys (one silently won before),
/// and so is an issuer with both `secret_env` and `secret_file`.
#[tokio::test]
async fn config_built_by_hand_with_a_secret_twice_is_refused() {
    let dir = std::env::temp_dir().join(format!(
        "jwtd-secret-pairs-{}-{}",
        std::process::id(),
        jwtd_core::b64::encode(rand_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "a-good-long-secret-from-a-file-0123\n").unwrap();
    let env = Env::from_vars([
        ("JWTD_PAIRS_GOOD", "a-good-long-secret-0123456789"),
        ("JWTD_PAIRS_HS", HS_SECRET),
    ]);
    let text = "listen = \"127.0.0.1:0\"\n[admin]\napi_key_env = \"JWTD_PAIRS_GOOD\"\n\
         [introspection]\nclient_id = \"rs\"\nclient_secret_env = \"JWTD_PAIRS_GOOD\"\n\
         [[issuer]]\nname = \"hs\"\nsecret_env = \"JWTD_PAIRS_HS\"\nalgorithms = [\"HS256\"]\n\
         any_audience = true\n";
    let parsed = Config::parse_with_env(text, "t", &env).unwrap();
    let file = Some(file.display().to_string());
    let mut admin = parsed.clone();
    admin.admin.as_mut().unwrap().api_key_file = file.clone();
    let mut intro = parsed.clone();
    intro.introspection.as_mut().unwrap().client_secret_file = file.clone();
    let mut issuer = parsed.clone();
    issuer.issuers[0].secret_file = file.clone();
    for (config, says) in [
        (
            admin,
            "admin: api_key_env and api_key_file are both set; set exactly one",
        ),
        (
            intro,
            "introspection: client_secret_env and client_secret_file are both set; set exactly one",
        ),
        (
            issuer,
            "issuer \"hs\": several key sources (secret_env, secret_file); set exactly one",
        ),
    ] {
        let e = Runtime::build(config, None).await.unwrap_err();
        assert_eq!(e, says);
    }
    Runtime::build(parsed, None).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16: the engine's check of the `[[issuer]]` tables (the tower layer's
/// `GateConfig::parse`) and `jwtd serve`'s are one: the same messages for the same tables (the
/// service puts each on its key's line, the engine on the issuer's name line).
#[test]
fn config_issuer_checks_are_the_same_in_the_engine_and_the_service() {
    let text = r#"
[[issuer]]
name = "a"
algorithms = ["RS256"]

[[issuer]]
name = "a"
issuer = "https://a.example/"
jwks_file = "x"
discovery = "https://a.example/"
algorithms = []
leeway = "2h"

[[issuer]]
name = "b"
issuer = "https://a.example/"
pem_file = "p"
algorithms = ["ES256"]
any_audience = true
audiences = ["x"]
[issuer.headers]
X-Auth-Subject = "sub"
"bad header" = "sub"
X-User = "sub"
x-user = "email"

[[issuer]]
name = "c"
secret_env = "S"
algorithms = ["HS256"]
"#;
    let env = Env::empty();
    let service = Config::parse_with_env(text, "f", &env).unwrap_err();
    let gate = jwtd_gate::config::GateConfig::parse_with_env(text, "f", &env).unwrap_err();
    let messages = |e: &jwtd_gate::config::ConfigError| {
        let mut m: Vec<String> = e.errors.iter().map(|(_, m)| m.clone()).collect();
        m.sort();
        m
    };
    assert_eq!(messages(&service), messages(&gate));
    for needle in [
        "issuer \"a\": no key source",
        "issuer \"a\": duplicate issuer name",
        "issuer \"a\": several key sources (jwks_file, discovery)",
        "issuer \"a\": algorithms must name at least one algorithm",
        "issuer \"a\": leeway is at most 600 s",
        "issuer \"b\": iss \"https://a.example/\" is configured twice",
        "issuer \"b\": any_audience and audiences exclude each other",
        "issuer \"b\": \"X-Auth-Subject\" cannot be an identity header",
        "issuer \"b\": \"bad header\" is not a valid header name",
        "issuer \"b\": \"X-User\" and \"x-user\" name the same header",
        "issuer \"c\": at most one issuer may omit \"issuer\"",
    ] {
        assert!(
            messages(&gate).iter().any(|m| m.starts_with(needle)),
            "{needle} in\n{gate}"
        );
    }
    assert_eq!(gate.errors.len(), 11, "{gate}");
    // Lines: the engine's on the name, the service's on the key.
    let line_of = |e: &jwtd_gate::config::ConfigError, needle: &str| {
        e.errors
            .iter()
            .find(|(_, m)| m.contains(needle))
            .map(|(l, _)| *l)
    };
    assert_eq!(line_of(&gate, "leeway is at most"), Some(7));
    assert_eq!(line_of(&service, "leeway is at most"), Some(12));
    assert_eq!(line_of(&service, "at most one issuer"), Some(28));
}

/// Finding 1: failed admin and introspection authentications are delayed and counted, and an
/// empty credential never passes.
#[tokio::test]
async fn failed_admin_and_introspection_authentications_are_delayed_and_counted() {
    let s = start().await;
    for auth in ["Bearer ", "Bearer", "", "Bearer admin-key-012345678"] {
        let started = std::time::Instant::now();
        let mut r = s.client.post(format!("{}/admin/reload", s.base));
        if !auth.is_empty() {
            r = r.header("authorization", auth);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(200),
            "{auth:?}"
        );
    }
    for basic in ["rs-1:", ":", "rs-1:introspect-secre", ""] {
        use base64::Engine;
        let started = std::time::Instant::now();
        let r = s
            .client
            .post(format!("{}/introspect", s.base))
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(basic)
                ),
            )
            .body("token=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{basic:?}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(200),
            "{basic:?}"
        );
    }
    let text = get(&s, "/metrics", None).await.text().await.unwrap();
    let count = |endpoint: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "jwtd_auth_failures_total{{endpoint=\"{endpoint}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("admin") >= 4.0 && count("introspect") >= 4.0,
        "{text}"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_is_still_served() {
    let s = start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let token = es_token(&s, json!({}));
    for _ in 0..3 {
        let r = h2
            .get(format!("{}/v1/verify", s.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
    }
}

/// Findings 9, 18 and 19: an authenticated status view shows what clients never see (the key
/// source, its last error) with URL userinfo redacted; `POST /admin/reload?refetch=keys` drops a
/// key the provider removed at once; `[admin] protect_status` guards /metrics and /readyz
/// details; a token's own `active` claim never decides introspection.
#[tokio::test]
async fn admin_status_refetch_protected_status_and_introspection_active() {
    let a = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("a".into()));
    let b = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("b".into()));
    let jwks = Arc::new(std::sync::Mutex::new(
        serde_json::to_string(&Jwks::from_keys(vec![
            a.public_jwk().unwrap(),
            b.public_jwk().unwrap(),
        ]))
        .unwrap(),
    ));
    let served = jwks.clone();
    let idp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp_addr = idp.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let body = served.lock().unwrap().clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(idp, app).await });
    let env = Env::from_vars([
        ("JWTD_STATUS_TEST_ADMIN", "status-admin-key-0123456789"),
        ("JWTD_STATUS_TEST_INTRO", "status-introspection-0123456789"),
    ]);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let text = format!(
        "listen = \"{addr}\"\n[admin]\napi_key_env = \"JWTD_STATUS_TEST_ADMIN\"\nprotect_status = true\n\
         [introspection]\nclient_id = \"rs\"\nclient_secret_env = \"JWTD_STATUS_TEST_INTRO\"\n\
         [[issuer]]\nname = \"idp\"\nissuer = \"https://idp.test\"\n\
         jwks_url = \"http://user:hunter2-secret@{idp_addr}/jwks.json\"\nalgorithms = [\"ES256\"]\nany_audience = true\n"
    );
    let config = Config::parse_with_env(&text, "t", &env).unwrap();
    let runtime = Runtime::build(config, None).await.unwrap();
    assert!(
        runtime
            .engine
            .issuers
            .wait_ready(std::time::Duration::from_secs(5))
            .await
    );
    let state = common::state(runtime, None);
    tokio::spawn(jwtd_service::serve(state.clone(), l));
    let base = format!("http://{addr}");
    let c = reqwest::Client::new();
    let admin = "status-admin-key-0123456789";
    let now = now();
    let claims = json!({"iss": "https://idp.test", "sub": "u", "iat": now, "exp": now + 600, "active": false});
    let ta = jwtd_core::sign(&a, claims.as_object().unwrap(), None).unwrap();
    let verify = |t: String| {
        let c = c.clone();
        let url = format!("{base}/v1/verify");
        async move {
            c.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(verify(ta.clone()).await, 200);

    // The status view: admin only, redacted.
    let r = c.get(format!("{base}/admin/status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/admin/status"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    let idp_status = &status["issuers"][0];
    assert_eq!(idp_status["ready"], true, "{status}");
    assert_eq!(idp_status["keys"], 2, "{status}");
    assert!(
        idp_status["source"].as_str().unwrap().contains("***@"),
        "{status}"
    );

    // The provider drops key a (compromised): a refetch on request makes it unknown at once.
    *jwks.lock().unwrap() =
        serde_json::to_string(&Jwks::from_keys(vec![b.public_jwk().unwrap()])).unwrap();
    assert_eq!(
        verify(ta.clone()).await,
        200,
        "still cached until a refetch"
    );
    let r = c
        .post(format!("{base}/admin/reload?refetch=keys"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["refetched"][0]["ok"], true, "{body}");
    assert_eq!(verify(ta).await, 401);

    // protect_status: /metrics needs the admin key, /readyz shows no details without it.
    assert_eq!(
        c.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let m = c
        .get(format!("{base}/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    let ready: Value = c
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready, json!({"ready": true}));

    // Introspection: the token's own "active": false does not decide; jwtd's answer does.
    let tb = jwtd_core::sign(&b, claims.as_object().unwrap(), None).unwrap();
    let r: Value = c
        .post(format!("{base}/introspect"))
        .basic_auth("rs", Some("status-introspection-0123456789"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={tb}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["active"], true, "{r}");
    assert_eq!(r["sub"], "u");
}

/// Siblings of findings 1 and 13: the admin API and introspection take exactly one
/// `Authorization` header (two, valid or not, are refused); an empty introspection client_id
/// is a configuration error.
#[tokio::test]
async fn admin_and_introspection_take_exactly_one_authorization_header() {
    let s = start().await;
    let r = s
        .client
        .post(format!("{}/admin/reload", s.base))
        .header("authorization", "Bearer admin-key-0123456789")
        .header("authorization", "Bearer admin-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("rs-1:introspect-secret")
    );
    let r = s
        .client
        .post(format!("{}/introspect", s.base))
        .header("authorization", &basic)
        .header("authorization", &basic)
        .body("token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e = Config::parse(
        "[introspection]\nclient_id = \" \"\nclient_secret_env = \"X\"\n",
        "f",
    )
    .unwrap_err();
    assert!(e.to_string().contains("client_id must not be empty"), "{e}");
}

/// Readiness means "can verify now": once a remote issuer's keys are past their lifetime plus
/// `stale_if_error`, `/readyz` is 503 as every request is (503 `key_fetch_failed`, never
/// `invalid_token`); when the provider is back, the first request fetches the keys itself
/// (once for all concurrent requests: single flight) instead of waiting for the background
/// retry timer.
#[tokio::test]
async fn readiness_means_can_verify_now_and_a_request_ends_an_outage() {
    use jwtd_remote::{CacheConfig, HttpConfig, RemoteKeys, Source};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    const IDP: &str = "https://idp.outage.test/";
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    let jwks = serde_json::to_string(&Jwks::from_keys(key.public_jwk())).unwrap();
    let (down, hits) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get({
            let (down, hits) = (down.clone(), hits.clone());
            move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                if down.load(Ordering::SeqCst) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("cache-control", "no-store")],
                        String::new(),
                    )
                } else {
                    (StatusCode::OK, [("cache-control", "max-age=1")], jwks)
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[cache]\nenabled = false\n[[issuer]]\nname = \"idp\"\n\
         issuer = \"{IDP}\"\njwks_url = \"{jwks_url}\"\nalgorithms = [\"ES256\"]\n\
         audiences = [\"api\"]\nstale_if_error = \"1s\"\n"
    );
    let mut runtime = Runtime::build(Config::parse(&text, "test").unwrap(), None)
        .await
        .unwrap();
    // Lifetimes are clamped to at least 5 minutes in configuration: the same source with
    // second-scale lifetimes, and a background retry timer far longer than the test.
    let issuer = Arc::get_mut(&mut runtime.engine.issuers.list[0]).expect("cache off: no sweeper");
    let cache = CacheConfig {
        min_ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(1),
        stale_if_error: Duration::from_secs(1),
        initial_backoff: Duration::from_secs(120),
        max_backoff: Duration::from_secs(120),
        unavailable_retry: Duration::from_millis(200),
        ..CacheConfig::default()
    };
    let remote = RemoteKeys::start(
        Source::JwksUrl(jwks_url),
        vec![Algorithm::ES256],
        HttpConfig::default(),
        cache,
    )
    .unwrap();
    assert!(remote.wait_ready(Duration::from_secs(5)).await);
    issuer.keys = jwtd_service::issuers::Keys::Remote(remote);
    let (base, _state) = common::serve_runtime(runtime, None).await;
    let client = reqwest::Client::new();
    let c = json!({"iss": IDP, "aud": "api", "sub": "u", "iat": now(), "exp": now() + 600});
    let token = jwtd_core::sign(&key, c.as_object().unwrap(), None).unwrap();
    let verify = || {
        let r = client.get(format!("{base}/v1/verify")).bearer_auth(&token);
        async move { r.send().await.unwrap() }
    };
    let readyz = || async { client.get(format!("{base}/readyz")).send().await.unwrap() };
    assert_eq!(readyz().await.status(), 200);
    assert_eq!(verify().await.status(), 200);

    // Down past lifetime (1 s) plus stale_if_error (1 s): not ready, and requests are 503.
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let r = readyz().await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"ready": false, "issuers_without_keys": ["idp"]})
    );
    let r = verify().await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"jwtd\"");
    assert_eq!(r.headers()["retry-after"], "5");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["reason"], "key_fetch_failed");
    assert_eq!(b["error"], "temporarily_unavailable");
    assert_eq!(readyz().await.status(), 503);

    // Back: the next requests fetch once, together, long before the retry timer (120 s).
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = hits.load(Ordering::SeqCst);
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let request = verify();
            tokio::spawn(async move { request.await.status() })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(hits.load(Ordering::SeqCst), before + 1, "single flight");
    assert_eq!(readyz().await.status(), 200);
}

/// The shared conformance table (crates/jwtd-gate/conformance/) against `/auth` over HTTP, as
/// nginx asks (`X-Original-Method`, `X-Original-URI` from a trusted proxy, loopback by
/// default); a few rows again the Traefik/Caddy way (`X-Forwarded-*`) and the Envoy way (the
/// original path appended to `/auth`).
#[tokio::test]
async fn conformance_table_against_auth_over_http() {
    use jwtd_gate::conformance::{check, Observed, Suite};
    let suite = Suite::new(&std::env::temp_dir());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (base, _state) = common::serve(l, &suite.config, &Env::empty()).await;
    let c = reqwest::Client::new();
    let mut failures = Vec::new();
    for (i, case) in suite.cases.iter().enumerate() {
        let style = i % 3;
        let mut req = match style {
            // nginx
            0 => c
                .get(format!("{base}/auth"))
                .header("x-original-method", &case.method)
                .header("x-original-uri", &case.path),
            // Traefik, Caddy
            1 => c
                .get(format!("{base}/auth"))
                .header("x-forwarded-method", &case.method)
                .header("x-forwarded-uri", &case.path)
                .header("x-forwarded-host", "api.test"),
            // Envoy HTTP ext_authz: the original method, the path appended to /auth
            _ => c.request(
                reqwest::Method::from_bytes(case.method.as_bytes()).unwrap(),
                format!("{base}/auth{}", case.path),
            ),
        };
        if let Some(label) = &case.token {
            req = req.bearer_auth(suite.token(label));
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = r.text().await.unwrap();
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned));
        let got = Observed {
            status,
            reason,
            rule: None,
            headers: Some(headers),
        };
        if let Err(e) = check(case, &got) {
            failures.push(format!("(style {style}) {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Every decision is counted by rule and reason: the table's allowed and refused cases,
    // each under its rule id (or `default`), as many times as the table has them.
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut expected: std::collections::BTreeMap<String, usize> = Default::default();
    for case in &suite.cases {
        let rule = case.rule.clone().unwrap_or_else(|| "default".into());
        let (outcome, reason) = match &case.reason {
            None => ("allowed", String::new()),
            Some(r) => ("denied", r.clone()),
        };
        *expected
            .entry(format!(
                "jwtd_decisions_total{{rule=\"{rule}\",outcome=\"{outcome}\",reason=\"{reason}\"}}"
            ))
            .or_default() += 1;
    }
    for (series, n) in &expected {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(series.as_str()))
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"));
        assert_eq!(line, format!("{series} {n}"), "{metrics}");
    }

    // And every series /metrics shows is in the documented table.
    let documented = include_str!("../../../../docs/configuration.md");
    for line in metrics.lines().filter(|l| l.starts_with("jwtd_")) {
        let name = line.split(['{', ' ']).next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            documented.contains(&format!("`{name}`")) || documented.contains(&format!("`{base}`")),
            "{name} is not in docs/configuration.md's Metrics table"
        );
    }

    // Forwarded headers from an address that is not a trusted proxy are ignored: the /auth
    // request itself is matched (no rule: refused), never the path a client claims.
    let untrusted = format!("trusted_proxies = [\"10.9.9.9\"]\n{}", suite.config);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (base, _state) = common::serve(l, &untrusted, &Env::empty()).await;
    let r = c
        .get(format!("{base}/auth"))
        .header("x-original-uri", "/healthz")
        .header("x-forwarded-uri", "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("no_matching_rule"));
}

/// A trusted proxy passes the client's own headers on (nginx's `auth_request`, Caddy's and
/// Traefik's forward auth), so a client can add another proxy's spelling of the original
/// request. Two spellings that disagree, or one sent twice, are refused 400 `bad_headers`:
/// neither may win (through Caddy, a client's `X-Original-URI: /healthz` used to be believed
/// over Caddy's own `X-Forwarded-Uri`).
#[tokio::test]
async fn auth_refuses_forwarded_requests_a_client_could_have_steered() {
    let suite = jwtd_gate::conformance::Suite::new(&std::env::temp_dir());
    // Its own rule id: decisions are counted per rule id in the process's one recorder, and
    // the conformance test counts the table's.
    let config = suite
        .config
        .replace("id = \"health\"", "id = \"health-steered\"");
    assert_ne!(config, suite.config);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (base, _state) = common::serve(l, &config, &Env::empty()).await;
    let c = reqwest::Client::new();
    let send = |path: &str, headers: &[(&'static str, &'static str)]| {
        let mut r = c.get(format!("{base}{path}"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };
    let refused = [
        // Caddy sets X-Forwarded-*; the client adds nginx's spelling.
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/admin/users"),
            ("x-original-uri", "/healthz"),
        ],
        vec![
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/healthz"),
            ("x-original-method", "GET"),
        ],
        // nginx sets X-Original-*; the client adds Caddy's.
        vec![
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin/users"),
            ("x-forwarded-uri", "/healthz"),
        ],
        // One spelling twice.
        vec![
            ("x-original-uri", "/admin/users"),
            ("x-original-uri", "/healthz"),
        ],
        vec![
            ("x-forwarded-host", "a.example"),
            ("x-forwarded-host", "b.example"),
            ("x-original-uri", "/healthz"),
        ],
    ];
    for headers in &refused {
        let r = send("/auth", headers).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{headers:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains("bad_headers"), "{headers:?}: {body}");
    }
    // Envoy's path and a forwarded URI header that differ.
    let r = send("/auth/admin/users", &[("x-original-uri", "/healthz")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Two spellings that agree decide as one.
    let r = send(
        "/auth",
        &[
            ("x-original-uri", "/healthz"),
            ("x-forwarded-uri", "/healthz"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = send("/auth/healthz", &[("x-forwarded-uri", "/healthz")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// A reload builds the whole new rule set first and swaps it in at once; a rule set that does
/// not load (two rules taking the same requests) is refused with both rules named, and the
/// running rules keep deciding.
#[tokio::test]
async fn reload_swaps_the_rule_set_whole_or_not_at_all() {
    let suite = jwtd_gate::conformance::Suite::new(&std::env::temp_dir());
    let path = suite.dir.join("reload-rules.toml");
    std::fs::write(&path, &suite.config).unwrap();
    let config = jwtd_service::Config::load(&path).unwrap();
    let runtime = jwtd_service::Runtime::build(config, None).await.unwrap();
    let (base, state) = common::serve_runtime(runtime, Some(path.clone())).await;
    let c = reqwest::Client::new();
    let auth = |uri: &'static str| {
        c.get(format!("{base}/auth"))
            .header("x-original-method", "GET")
            .header("x-original-uri", uri)
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(auth("/healthz").await.unwrap()), 200);
    assert_eq!(status(auth("/v1/orders/7").await.unwrap()), 401);

    // /healthz now needs a corp token, and a new public rule appears: both at once.
    let public = "id = \"health\"\npath = \"/healthz\"\nauth = \"public\"\n";
    assert!(suite.config.contains(public));
    let second = suite.config.replace(
        public,
        "id = \"health\"\npath = \"/healthz\"\nauth = \"corp\"\n\n[[rule]]\nid = \"status\"\npath = \"/status\"\nauth = \"public\"\n",
    );
    std::fs::write(&path, &second).unwrap();
    state.reload().await.unwrap();
    assert_eq!(status(auth("/healthz").await.unwrap()), 401);
    assert_eq!(status(auth("/status").await.unwrap()), 200);
    assert_eq!(state.runtime().engine.rules.len(), 6);

    // A third version adds a rule that takes exactly the requests of "orders-read": refused,
    // naming both, and the second version still decides.
    let third = format!(
        "{}\n[[rule]]\nid = \"orders-too\"\npath = \"/v1/orders/:n\"\nmethods = [\"GET\"]\nauth = \"partner\"\n",
        second.replace(
            "id = \"status\"\npath = \"/status\"\nauth = \"public\"\n",
            "id = \"status\"\npath = \"/status\"\nauth = \"corp\"\n"
        )
    );
    std::fs::write(&path, &third).unwrap();
    let err = state.reload().await.unwrap_err();
    assert!(
        err.contains("orders-too") && err.contains("orders-read"),
        "{err}"
    );
    assert_eq!(status(auth("/status").await.unwrap()), 200);
    assert_eq!(status(auth("/healthz").await.unwrap()), 401);
    assert_eq!(state.runtime().engine.rules.len(), 6);
}
