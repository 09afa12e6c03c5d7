//! docs/mcp.md as written: its configuration run by `jwtd serve` (addresses replaced by the
//! test's, `jwks_url` by a `jwks_file` of the test's key) in front of the Python upstream of
//! jwtd-proxy's tests, and the requests the page describes: the metadata it shows (both
//! forms, on the proxy and on the API, HEAD, 405, 404), the 401 it shows, 401 for another
//! audience, 403 for the `deploy` tool, 200 with the MCP server never seeing the token.

use crate::common::{free_port, http_request, wait_for_http, Guard};
use std::process::{Command, Stdio};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mcp.md");
    std::fs::read_to_string(path).unwrap()
}

/// The fenced block after `<!-- {marker} -->`.
fn block(doc: &str, marker: &str) -> String {
    let after = doc
        .split(&format!("<!-- {marker} -->\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("the {marker} marker in docs/mcp.md"));
    let body = after.split_once('\n').unwrap().1;
    body.split("\n```").next().unwrap().to_owned()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_documented_mcp_configuration_runs() {
    let doc = doc();
    let dir = jwtd_test_support::temp_dir("serve-mcp");
    let key = jwtd_core::SigningKey::generate(jwtd_core::Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string(&jwtd_core::Jwks::from_keys(key.public_jwk())).unwrap(),
    )
    .unwrap();
    let (up, _upstream) = crate::common::proxy_upstream();
    let (port, proxy) = (free_port(), free_port());
    let config = block(&doc, "mcp-example")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{proxy}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{up}"))
        .replace(
            "jwks_url = \"https://auth.example.com/.well-known/jwks.json\"",
            "jwks_file = \"jwks.json\"",
        );
    assert!(
        config.contains("jwks_file") && config.contains(&format!(":{up}")),
        "{config}"
    );
    std::fs::write(dir.join("jwtd.toml"), &config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", "jwtd.toml"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let _guard = Guard(vec![child]);
    wait_for_http(port);

    // The metadata, as the page shows it, from the proxy and from jwtd's own API.
    let want: serde_json::Value = serde_json::from_str(&block(&doc, "mcp-metadata")).unwrap();
    for p in [proxy, port] {
        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            let (status, headers, body) = http_request(p, "GET", path, &[]);
            assert_eq!(status, 200, "{p} {path}: {body}");
            assert_eq!(
                header(&headers, "cache-control"),
                Some("public, max-age=3600")
            );
            assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
            assert!(
                header(&headers, "x-echo").is_none(),
                "answered by jwtd itself"
            );
            let got: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(got, want, "{p} {path}");
        }
        let (status, headers, body) =
            http_request(p, "HEAD", "/.well-known/oauth-protected-resource/mcp", &[]);
        assert_eq!((status, body.as_str()), (200, ""));
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let (status, headers, _) =
            http_request(p, "POST", "/.well-known/oauth-protected-resource/mcp", &[]);
        assert_eq!(status, 405);
        assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));
    }
    // An unknown path under the prefix: 404 from jwtd serve; decided (default deny) by the proxy.
    let unknown = "/.well-known/oauth-protected-resource/other";
    assert_eq!(http_request(port, "GET", unknown, &[]).0, 404);
    assert_eq!(http_request(proxy, "GET", unknown, &[]).0, 403);

    // The 401 the page shows: status, challenge and body as written.
    let shown = block(&doc, "mcp-challenge");
    let (status, headers, body) = http_request(proxy, "POST", "/mcp", &[]);
    assert!(shown.starts_with(&format!("HTTP/1.1 {status} ")), "{shown}");
    let www = header(&headers, "www-authenticate").unwrap();
    assert!(
        shown.contains(&format!("www-authenticate: {www}\n")),
        "{www} in {shown}"
    );
    assert!(shown.ends_with(&body), "{body} in {shown}");
    assert!(header(&headers, "x-echo").is_none());

    let now = jwtd_core::unix_now();
    let token = |aud: &str, scope: &str| {
        format!(
            "Bearer {}",
            jwtd_test_support::sign(
                &key,
                &serde_json::json!({"iss": "https://auth.example.com", "sub": "alice",
                    "aud": aud, "scope": scope, "iat": now, "exp": now + 300}),
            )
        )
    };
    let md =
        "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"";
    // Another audience: 401 invalid_token, with the metadata and the scope.
    let t = token("https://other.example.com", "mcp:read");
    let (status, headers, _) = http_request(proxy, "POST", "/mcp", &[("authorization", &t)]);
    let www = header(&headers, "www-authenticate").unwrap();
    assert_eq!(status, 401);
    assert!(
        www.contains("error=\"invalid_token\"") && www.contains(md),
        "{www}"
    );
    // The resource's token: the MCP server is reached, without the token.
    let t = token("https://mcp.example.com/mcp", "mcp:read");
    let (status, headers, _) = http_request(
        proxy,
        "POST",
        "/mcp",
        &[("authorization", &t), ("mcp-method", "tools/list")],
    );
    assert_eq!(status, 200);
    let echo: serde_json::Value =
        serde_json::from_str(header(&headers, "x-echo").unwrap()).unwrap();
    let sent = |name: &str| {
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|p| p[1].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(sent("x-auth-subject"), ["alice"]);
    assert!(sent("authorization").is_empty(), "no token passthrough");
    // The deploy tool with only mcp:read: 403 naming both scopes.
    let (status, headers, _) = http_request(
        proxy,
        "POST",
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-method", "tools/call"),
            ("mcp-name", "deploy"),
        ],
    );
    assert_eq!(status, 403);
    let www = header(&headers, "www-authenticate").unwrap();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains(md),
        "{www}"
    );
    assert!(www.ends_with("scope=\"mcp:read mcp:deploy\""), "{www}");
    let t = token("https://mcp.example.com/mcp", "mcp:read mcp:deploy");
    let (status, _, _) = http_request(
        proxy,
        "POST",
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-method", "tools/call"),
            ("mcp-name", "deploy"),
        ],
    );
    assert_eq!(status, 200);
}
