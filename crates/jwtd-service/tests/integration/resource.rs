//! `[[resource]]` (RFC 9728) through `jwtd serve`'s HTTP API: the well-known documents
//! (path-inserted and root forms, HEAD, 405, 404) and the MCP-style challenges `/auth`
//! answers for rules under a resource; load errors on their lines.

use jwtd_service::Env;
use serde_json::{json, Value};

const SECRET: &str = "resource-test-secret-0123456789abcdef";

const CONFIG: &str = r#"
listen = "127.0.0.1:0"

[[issuer]]
name = "corp"
issuer = "https://auth.example.com"
secret_env = "RESOURCE_SECRET"
algorithms = ["HS256"]
audiences = ["api"]

[[resource]]
uri = "https://mcp.example.com/mcp"
issuers = ["corp"]
resource_name = "MCP"

[[rule]]
id = "mcp"
path = "/mcp"
auth = "corp"
resource = "https://mcp.example.com/mcp"
scopes = { all = ["mcp:read", "mcp:tools"] }
"#;

fn env() -> Env {
    Env::from_vars([("RESOURCE_SECRET", SECRET)])
}

async fn serve() -> String {
    let config = jwtd_service::Config::parse_with_env(CONFIG, "jwtd.toml", &env()).unwrap();
    let runtime = jwtd_service::Runtime::build(config, None).await.unwrap();
    common_serve(runtime).await
}

async fn common_serve(runtime: jwtd_service::Runtime) -> String {
    crate::common::serve_runtime(runtime, None).await.0
}

fn token(claims: Value) -> String {
    let now = jwtd_core::unix_now();
    let mut c =
        json!({"iss": "https://auth.example.com", "sub": "alice", "iat": now, "exp": now + 300});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    jwtd_test_support::hs256(SECRET.as_bytes(), &c)
}

#[tokio::test]
async fn serve_publishes_the_metadata_in_both_forms() {
    let base = serve().await;
    let c = reqwest::Client::new();
    let want = json!({
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": ["https://auth.example.com"],
        "scopes_supported": ["mcp:read", "mcp:tools"],
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP",
        "tls_client_certificate_bound_access_tokens": false,
        // Its issuer's DPoP: no [issuer.dpop], so enforce-cnf and the default algorithms.
        "dpop_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
        "dpop_bound_access_tokens_required": false,
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["cache-control"], "public, max-age=3600");
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(r.json::<Value>().await.unwrap(), want, "{path}");
    }
    let r = c
        .head(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
    assert!(r.bytes().await.unwrap().is_empty(), "HEAD has no body");
    for method in ["POST", "PUT", "DELETE"] {
        let r = c
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}/.well-known/oauth-protected-resource/mcp"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }
    // A browser-based client's CORS preflight.
    let r = c
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/.well-known/oauth-protected-resource/mcp"),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "mcp-protocol-version"
    );
    for path in [
        "/.well-known/oauth-protected-resource/other",
        "/.well-known/oauth-protected-resource/mcp/x",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
    }
}

/// `/auth` for a rule under the resource: 401 and 403 carry `resource_metadata` and every
/// scope the rule needs; the audience is the resource URI, not the issuer's `api`.
#[tokio::test]
async fn auth_challenges_name_the_metadata_and_every_scope() {
    let base = serve().await;
    let c = reqwest::Client::new();
    let md =
        "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"";
    let auth = |tok: Option<String>| {
        let mut r = c
            .get(format!("{base}/auth"))
            .header("x-original-method", "POST")
            .header("x-original-uri", "/mcp");
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
            (body["reason"].as_str().map(str::to_owned), www)
        }
    };
    assert_eq!(
        auth(None).await,
        (
            Some("missing_token".into()),
            Some(format!(
                "Bearer realm=\"jwtd\", {md}, scope=\"mcp:read mcp:tools\""
            ))
        )
    );
    let (reason, www) = auth(Some(token(
        json!({"aud": "api", "scope": "mcp:read mcp:tools"}),
    )))
    .await;
    assert_eq!(reason.as_deref(), Some("wrong_audience"));
    let www = www.unwrap();
    assert!(
        www.starts_with("Bearer realm=\"jwtd\", error=\"invalid_token\""),
        "{www}"
    );
    assert!(
        www.ends_with(&format!("{md}, scope=\"mcp:read mcp:tools\"")),
        "{www}"
    );
    let (reason, www) = auth(Some(token(
        json!({"aud": "https://mcp.example.com/mcp", "scope": "mcp:tools"}),
    )))
    .await;
    assert_eq!(reason.as_deref(), Some("missing_scope"));
    let www = www.unwrap();
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(
        www.ends_with(&format!("{md}, scope=\"mcp:read mcp:tools\"")),
        "{www}"
    );
    let ok = c
        .get(format!("{base}/auth"))
        .header("x-original-method", "POST")
        .header("x-original-uri", "/mcp")
        .bearer_auth(token(
            json!({"aud": "https://mcp.example.com/mcp", "scope": "mcp:read mcp:tools"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-subject"], "alice");
}

/// `jwtd serve`'s own check refuses a bad `[[resource]]` on its line, and a rule naming an
/// unknown resource on the line of its `resource`.
#[test]
fn resource_errors_are_refused_on_their_lines() {
    let text = CONFIG
        .replace(
            "uri = \"https://mcp.example.com/mcp\"",
            "uri = \"http://mcp.example.com/mcp\"",
        )
        .replace("issuers = [\"corp\"]", "issuers = [\"corp\", \"nobody\"]");
    let e = jwtd_service::Config::parse_with_env(&text, "jwtd.toml", &env())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("jwtd.toml:12: resource \"http://mcp.example.com/mcp\": uri \"http://mcp.example.com/mcp\" must use https"),
        "{e}"
    );
    let text = CONFIG.replace(
        "resource = \"https://mcp.example.com/mcp\"",
        "resource = \"https://mcp.example.com/x\"",
    );
    let e = jwtd_service::Config::parse_with_env(&text, "jwtd.toml", &env())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("jwtd.toml:20: rule \"mcp\": resource \"https://mcp.example.com/x\" is not the uri of any [[resource]]"),
        "{e}"
    );
    let text = CONFIG.replace("issuers = [\"corp\"]", "issuers = [\"nobody\"]");
    let e = jwtd_service::Config::parse_with_env(&text, "jwtd.toml", &env())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("jwtd.toml:13: resource \"https://mcp.example.com/mcp\": issuers: no issuer is named \"nobody\""),
        "{e}"
    );
}

/// `jwtd config check`'s warnings (and `jwtd serve`'s at start) about resources: one no rule
/// names, and a rule under a resource taking tokens of an issuer the resource does not list.
#[test]
fn resource_warnings_name_what_is_probably_wrong() {
    let config = jwtd_service::Config::parse_with_env(CONFIG, "jwtd.toml", &env()).unwrap();
    assert_eq!(config.rule_warnings(), Vec::<String>::new());
    let text = format!(
        "{CONFIG}\n[[issuer]]\nname = \"partner\"\nissuer = \"https://partner.example\"\n\
         secret_env = \"RESOURCE_SECRET\"\nalgorithms = [\"HS256\"]\n\
         [[resource]]\nuri = \"https://unused.example.com\"\nissuers = [\"corp\"]\n"
    )
    .replace(
        "auth = \"corp\"",
        "auth = { any = [\"corp\", \"partner\"] }",
    );
    let config = jwtd_service::Config::parse_with_env(&text, "jwtd.toml", &env()).unwrap();
    assert_eq!(
        config.rule_warnings(),
        [
            "rule \"mcp\" (line 17) takes tokens of issuer \"partner\", which resource \"https://mcp.example.com/mcp\" does not list in issuers (its authorization_servers)",
            "resource \"https://unused.example.com\": no rule names it (resource = ...): its metadata is published, but no request is audience-bound to it or challenged with it",
        ]
    );
}
