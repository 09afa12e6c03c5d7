//! The middleware over HTTP: the verified-token cache is on in it too (a repeated token is
//! answered from it, a refused one is never cached, and hits answer exactly like the miss did),
//! and it refuses a request carrying more than one token the way the service does; and every
//! reason code is answered as docs/security.md says, by the service, the layer and its gRPC
//! form alike; a rule under a `[[resource]]` challenges with its metadata.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jwtd_gate::Env;
use jwtd_tower::{Identity, JwtdLayer};
use serde_json::json;
use tower::Service;

const SECRET: &str = "tower-cache-test-secret-0123456789abcdef";

fn token(sub: &str) -> String {
    let now = jwtd_core::unix_now();
    let c = json!({"iss": "https://hs.test", "sub": sub, "exp": now + 600});
    jwtd_test_support::hs256(SECRET.as_bytes(), &c)
}

/// The status and body (the subject, or the error's reason) of one request through the layer.
async fn call(router: &mut axum::Router, token: &str) -> (StatusCode, String) {
    let req = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(router, cx))
        .await
        .unwrap();
    let r = router.call(req).await.unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    let shown = match status {
        StatusCode::OK => body,
        _ => serde_json::from_str::<serde_json::Value>(&body).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    (status, shown)
}

#[tokio::test]
async fn the_layer_answers_repeated_tokens_from_the_cache() {
    let config = jwtd_gate::config::GateConfig::parse_with_env(
        "[[issuer]]\nname = \"hs\"\nissuer = \"https://hs.test\"\n\
         secret_env = \"JWTD_TOWER_CACHE_TEST_HS\"\nalgorithms = [\"HS256\"]\nany_audience = true\n",
        "test",
        &Env::from_vars([("JWTD_TOWER_CACHE_TEST_HS", SECRET)]),
    )
    .unwrap();
    let issuers = jwtd_gate::issuers::Issuers::build_with_env(
        &config.issuers,
        &config.cache,
        None,
        None,
        &config.env,
    )
    .unwrap();
    let issuer = issuers.list[0].clone();
    let stats = || {
        let s = issuer.cache.as_ref().expect("on by default").stats();
        (s.hits, s.misses, s.entries)
    };
    let layer = JwtdLayer::from_issuers(issuers, config.tokens.clone());
    let mut router = axum::Router::new()
        .route(
            "/",
            axum::routing::get(
                |axum::Extension(id): axum::Extension<Identity>| async move {
                    id.verified.sub().unwrap_or("").to_owned()
                },
            ),
        )
        .layer(layer);

    let (alice, bob) = (token("alice"), token("bob"));
    for t in [&alice, &bob, &alice, &bob, &alice] {
        let want = if t == &alice { "alice" } else { "bob" };
        assert_eq!(call(&mut router, t).await, (StatusCode::OK, want.into()));
    }
    assert_eq!(stats(), (3, 2, 2), "two misses, then hits");

    // A token refused is refused again, the same way, and never cached.
    let mut forged = alice.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for _ in 0..2 {
        assert_eq!(
            call(&mut router, &forged).await,
            (StatusCode::UNAUTHORIZED, "bad_signature".into())
        );
    }
    assert_eq!(stats(), (3, 4, 2));
}

#[tokio::test]
async fn the_layer_refuses_more_than_one_token_like_the_service() {
    let config = jwtd_gate::config::GateConfig::parse_with_env(
        "[tokens]\ncookie = \"session\"\n[[issuer]]\nname = \"hs\"\nissuer = \"https://hs.test\"\n\
         secret_env = \"JWTD_TOWER_MULTI_TEST_HS\"\nalgorithms = [\"HS256\"]\nany_audience = true\n",
        "test",
        &Env::from_vars([("JWTD_TOWER_MULTI_TEST_HS", SECRET)]),
    )
    .unwrap();
    for optional in [false, true] {
        let mut layer = JwtdLayer::from_config(&config).unwrap();
        if optional {
            layer = layer.optional();
        }
        let mut router = axum::Router::new()
            .route("/", axum::routing::get(|| async { "through" }))
            .layer(layer);
        let (alice, bob) = (token("alice"), token("bob"));
        let requests = [
            vec![
                ("authorization", format!("Bearer {alice}")),
                ("authorization", format!("Bearer {bob}")),
            ],
            vec![
                ("authorization", format!("Bearer {alice}")),
                ("authorization", "Basic eDp5".into()),
            ],
            vec![
                ("authorization", format!("Bearer {alice}")),
                ("cookie", format!("session={alice}")),
            ],
            vec![("cookie", format!("session={alice}; session={bob}"))],
        ];
        for headers in requests {
            let mut req = Request::get("/");
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut router, cx))
                .await
                .unwrap();
            let r = router.call(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{headers:?}");
            let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(www.contains("error=\"invalid_request\""), "{www}");
            let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"], "invalid_request");
            assert_eq!(body["reason"], "multiple_tokens");
        }
        // One token, from either source, goes through.
        assert_eq!(call(&mut router, &token("alice")).await.0, StatusCode::OK);
    }
}

/// One row of the reason table in docs/security.md.
#[derive(Debug)]
struct Row {
    code: String,
    http: u16,
    body_error: String,
    /// `None` for "none": a bare `Bearer realm="jwtd"` challenge.
    challenge: Option<String>,
    retry_after: Option<String>,
    grpc_name: String,
    grpc_code: i32,
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_owned()
}

/// The rows of the table under "## Reason codes".
fn reason_table() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split("## Reason codes").nth(1).expect("the section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 9, "seven columns: {l}");
            let (name, number) = cells[6]
                .split_once(" (")
                .unwrap_or_else(|| panic!("gRPC as NAME (n): {l}"));
            Row {
                code: unquote(cells[1]),
                http: cells[2].parse().unwrap_or_else(|_| panic!("status: {l}")),
                body_error: unquote(cells[3]),
                challenge: (cells[4] != "none").then(|| unquote(cells[4])),
                retry_after: (cells[5] != "—").then(|| cells[5].to_owned()),
                grpc_name: name.to_owned(),
                grpc_code: number.trim_end_matches(')').parse().unwrap(),
            }
        })
        .collect()
}

/// The canonical gRPC name of a tonic code (`PermissionDenied` -> `PERMISSION_DENIED`).
fn grpc_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[tokio::test]
async fn the_reason_table_in_security_md_is_what_is_sent() {
    use jwtd_core::{Error, Reason};
    use jwtd_tower::{Grpc, Http, Rejection};
    let rows = reason_table();
    for r in Reason::ALL {
        let found: Vec<&Row> = rows.iter().filter(|row| row.code == r.as_str()).collect();
        assert_eq!(found.len(), 1, "{r}: exactly one row in docs/security.md");
    }
    assert_eq!(rows.len(), Reason::ALL.len(), "no row for an unknown code");
    let message = "a \"quoted\" message";
    for row in &rows {
        let r = Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == row.code)
            .unwrap();
        let e = Error::new(r, message);
        // The service's answer, and the layer's HTTP rejection.
        for (by, resp) in [
            ("service", jwtd_service::bearer_error(&e)),
            (
                "tower",
                <Http as Rejection<Body>>::reject(&e.clone().into()),
            ),
        ] {
            let at = format!("{by}, {}", row.code);
            assert_eq!(resp.status().as_u16(), row.http, "{at}");
            let h = resp.headers();
            let www = h["www-authenticate"].to_str().unwrap().to_owned();
            match &row.challenge {
                None => assert_eq!(www, "Bearer realm=\"jwtd\"", "{at}"),
                Some(c) => assert_eq!(
                    www,
                    format!(
                        "Bearer realm=\"jwtd\", error=\"{c}\", \
                         error_description=\"a 'quoted' message\""
                    ),
                    "{at}"
                ),
            }
            let retry = h.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(retry, row.retry_after, "{at}");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                body,
                json!({"error": row.body_error, "reason": row.code, "message": message}),
                "{at}"
            );
        }
        // The layer's gRPC rejection: trailers-only, HTTP 200.
        let resp = <Grpc as Rejection<Body>>::reject(&e.clone().into());
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        let status: i32 = h["grpc-status"].to_str().unwrap().parse().unwrap();
        assert_eq!(status, row.grpc_code, "{}", row.code);
        assert_eq!(
            grpc_name(tonic::Code::from_i32(status)),
            row.grpc_name,
            "{}",
            row.code
        );
        assert_eq!(r.grpc_code().as_str(), row.grpc_name);
        assert_eq!(
            h["grpc-message"].to_str().unwrap(),
            format!("{}: {message}", row.code)
        );
    }
}

/// The shared conformance table (crates/jwtd-gate/conformance/) through the layer: the same
/// decision as the engine and `/auth` for every row (the layer forwards no identity headers:
/// handlers read the verified token).
#[tokio::test]
async fn conformance_table_through_the_layer() {
    use jwtd_gate::conformance::{check, Observed, Suite};
    let suite = Suite::new(&std::env::temp_dir());
    let config = jwtd_gate::config::GateConfig::parse(&suite.config, "conformance").unwrap();
    let layer = JwtdLayer::from_config(&config).unwrap();
    let mut router = axum::Router::new()
        .fallback(|| async { "through" })
        .layer(layer);
    let mut failures = Vec::new();
    for case in &suite.cases {
        let mut req = Request::builder()
            .method(case.method.as_str())
            .uri(case.path.as_str())
            .header("host", "api.test");
        if let Some(label) = &case.token {
            req = req.header("authorization", format!("Bearer {}", suite.token(label)));
        }
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut router, cx))
            .await
            .unwrap();
        let r = router.call(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned));
        let got = Observed {
            status,
            reason,
            rule: None,
            headers: None,
        };
        if let Err(e) = check(case, &got) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A rule under a `[[resource]]` (RFC 9728, MCP) through the layer: the 401 and 403 carry
/// `resource_metadata` and every scope the rule needs, and the audience is the resource URI.
#[tokio::test]
async fn the_layer_challenges_name_the_resource_metadata() {
    let config = jwtd_gate::config::GateConfig::parse_with_env(
        "[[issuer]]\nname = \"hs\"\nissuer = \"https://hs.test\"\n\
         secret_env = \"JWTD_TOWER_RESOURCE_HS\"\nalgorithms = [\"HS256\"]\naudiences = [\"api\"]\n\
         [[resource]]\nuri = \"https://mcp.test/mcp\"\nissuers = [\"hs\"]\n\
         [[rule]]\nid = \"mcp\"\npath = \"/mcp\"\nauth = \"hs\"\nresource = \"https://mcp.test/mcp\"\n\
         scopes = { all = [\"mcp:read\", \"mcp:tools\"] }\n",
        "test",
        &Env::from_vars([("JWTD_TOWER_RESOURCE_HS", SECRET)]),
    )
    .unwrap();
    let mut router = axum::Router::new()
        .fallback(|| async { "through" })
        .layer(JwtdLayer::from_config(&config).unwrap());
    let md = "resource_metadata=\"https://mcp.test/.well-known/oauth-protected-resource/mcp\"";
    let scope = "scope=\"mcp:read mcp:tools\"";
    assert_eq!(
        ask(&mut router, None, "").await,
        (401, Some(format!("Bearer realm=\"jwtd\", {md}, {scope}")))
    );
    let (status, www) = ask(&mut router, Some("api"), "mcp:read mcp:tools").await;
    let www = www.unwrap();
    assert_eq!(status, 401);
    assert!(
        www.contains("error=\"invalid_token\"") && www.ends_with(&format!("{md}, {scope}")),
        "{www}"
    );
    let (status, www) = ask(&mut router, Some("https://mcp.test/mcp"), "mcp:read").await;
    let www = www.unwrap();
    assert_eq!(status, 403);
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.ends_with(&format!("{md}, {scope}")),
        "{www}"
    );
    assert_eq!(
        ask(
            &mut router,
            Some("https://mcp.test/mcp"),
            "mcp:read mcp:tools"
        )
        .await,
        (200, None)
    );
}

/// Status and `WWW-Authenticate` of `POST /mcp` with a token for `aud` (none: no token).
async fn ask(router: &mut axum::Router, aud: Option<&str>, scope: &str) -> (u16, Option<String>) {
    let mut req = Request::post("/mcp").header("host", "mcp.test");
    if let Some(aud) = aud {
        let c = json!({"iss": "https://hs.test", "sub": "a", "aud": aud, "scope": scope,
            "exp": jwtd_core::unix_now() + 600});
        let t = jwtd_test_support::hs256(SECRET.as_bytes(), &c);
        req = req.header("authorization", format!("Bearer {t}"));
    }
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(router, cx))
        .await
        .unwrap();
    let r = router.call(req.body(Body::empty()).unwrap()).await.unwrap();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), www)
}

/// Certificate-bound tokens (RFC 8705) through the layer: checked against the
/// `PeerCertificate` the application's TLS acceptor put in the extensions; without one, a
/// bound token is refused `mtls_certificate_missing` and an unbound one passes.
#[tokio::test]
async fn the_layer_checks_certificate_bound_tokens_against_the_peer_certificate() {
    use jwtd_gate::mtls::{encode_thumbprint, thumbprint_of};
    let config = jwtd_gate::config::GateConfig::parse_with_env(
        "[[issuer]]\nname = \"hs\"\nissuer = \"https://hs.test\"\n\
         secret_env = \"JWTD_TOWER_MTLS_TEST_HS\"\nalgorithms = [\"HS256\"]\nany_audience = true\n",
        "test",
        &Env::from_vars([("JWTD_TOWER_MTLS_TEST_HS", SECRET)]),
    )
    .unwrap();
    let mut router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "through" }))
        .layer(JwtdLayer::from_config(&config).unwrap());
    let (mine, other) = (b"alice's certificate".to_vec(), b"another".to_vec());
    let now = jwtd_core::unix_now();
    let bound = jwtd_test_support::hs256(
        SECRET.as_bytes(),
        &json!({"iss": "https://hs.test", "sub": "alice", "exp": now + 600,
            "cnf": {"x5t#S256": encode_thumbprint(&thumbprint_of(&mine))}}),
    );
    assert_eq!(
        ask_with_cert(&mut router, &bound, Some(&mine)).await,
        (200, "through".into())
    );
    assert_eq!(
        ask_with_cert(&mut router, &bound, Some(&other)).await,
        (401, "mtls_certificate_mismatch".into())
    );
    assert_eq!(
        ask_with_cert(&mut router, &bound, None).await,
        (401, "mtls_certificate_missing".into())
    );
    assert_eq!(
        ask_with_cert(&mut router, &token("bob"), None).await,
        (200, "through".into())
    );
}

/// One request through `router` with `t` and, when given, a `PeerCertificate`: the status and
/// the body (or the refusal's reason).
async fn ask_with_cert(router: &mut axum::Router, t: &str, cert: Option<&[u8]>) -> (u16, String) {
    let mut req = Request::get("/")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap();
    if let Some(c) = cert {
        req.extensions_mut()
            .insert(jwtd_gate::mtls::PeerCertificate(c.into()));
    }
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(router, cx))
        .await
        .unwrap();
    let r = router.call(req).await.unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    match status {
        StatusCode::OK => (200, body),
        s => (
            s.as_u16(),
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
    }
}
