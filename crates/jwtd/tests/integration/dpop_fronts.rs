//! DPoP through every front of one `jwtd serve` process, with tokens and proofs made by
//! panva's `jose` (crates/jwtd/tests/dpop-peer/fronts.mjs): `/auth` behind a trusted proxy
//! (the forwarded method, scheme, host and URI), `/v1/verify` (its own request), the reverse proxy (its own `http` and `Host`)
//! in front of the Python test upstream, and Envoy ext_authz over gRPC
//! (`attributes.request.http.{scheme,host,path,method}`). A valid proof passes (the upstream
//! gets `Authorization: Bearer` and no `DPoP`: `on_pass = "strip"`); its replay, a wrong
//! `htm`, an `htu` with a query, a stale `iat`, a wrong `ath`, another key's proof and the
//! bound token sent as `Bearer` are each refused with their code.
//!
//! Needs `node` and jose in target/dpop-peer (scripts/ensure-deps); fails, never skips,
//! without them.

use crate::common::{free_port, http_request, wait_for_http, Guard};
use jwtd_extauthz::envoy_types::pb::envoy::service::auth::v3::{
    attribute_context::{HttpRequest, Request},
    authorization_client::AuthorizationClient,
    check_response::HttpResponse,
    AttributeContext, CheckRequest,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const ENSURE: &str = "run scripts/ensure-deps (it installs jose into target/dpop-peer)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn jose(fronts: &Value) -> Value {
    let dir = repo().join("target/dpop-peer");
    assert!(
        dir.join("node_modules/jose/package.json").is_file(),
        "jose is missing from {}: {ENSURE}",
        dir.display()
    );
    let script = dir.join(format!("fronts-{}.mjs", std::process::id()));
    std::fs::copy(
        repo().join("crates/jwtd/tests/dpop-peer/fronts.mjs"),
        &script,
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(fronts.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {ENSURE}"));
    let _ = std::fs::remove_file(&script);
    assert!(
        out.status.success(),
        "the jose script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The reason of a refusal's JSON body (`ok` for a 2xx answer).
fn reason(status: u16, body: &str) -> String {
    if (200..300).contains(&status) {
        return "ok".into();
    }
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{status} {body}"));
    v["reason"].as_str().unwrap().to_owned()
}

#[test]
fn dpop_proofs_by_jose_through_auth_proxy_and_ext_authz() {
    let dir = std::env::temp_dir().join(format!("jwtd-dpop-fronts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, pport, grpc) = (free_port(), free_port(), free_port());
    let (uport, _up) = crate::common::proxy_upstream();
    // `http_request` sends `host: localhost`: the proxy's request URI is http://localhost/....
    let fronts = json!({
        "auth": {"method": "GET", "htu": "https://api.example/v1/orders/7"},
        "proxy": {"method": "GET", "htu": "http://localhost/v1/orders/7"},
        "extauthz": {"method": "GET", "htu": "https://api.example/v1/orders/7"},
        "verify": {"method": "GET", "htu": "http://localhost/v1/verify"},
    });
    let doc = jose(&fronts);
    std::fs::write(dir.join("jwks.json"), doc["jwks"].to_string()).unwrap();
    std::fs::write(
        dir.join("jwtd.toml"),
        format!(
            r#"listen = "127.0.0.1:{port}"

[proxy]
listen = "127.0.0.1:{pport}"

[upstream]
url = "http://127.0.0.1:{uport}"

[ext_authz]
listen = "127.0.0.1:{grpc}"

[[issuer]]
name = "as"
issuer = "https://as.example"
jwks_file = "jwks.json"
algorithms = ["ES256"]
audiences = ["api"]
typ = "at+jwt"

[issuer.dpop]
max_age = "60s"

[[rule]]
id = "orders"
path = "/v1/orders/**"
auth = "as"
"#
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", "jwtd.toml"])
        .current_dir(&dir)
        .env_remove("JWTD_KEK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let _jwtd = Guard(vec![child]);
    wait_for_http(port);
    wait_for_http(pport);
    let token = doc["token"].as_str().unwrap();
    let jkt = doc["jkt"].as_str().unwrap();
    let dpop_auth = format!("DPoP {token}");
    let bearer = format!("Bearer {token}");

    // /auth: nginx-style forwarded headers from a trusted (loopback) peer.
    let auth = |authz: &str, proof: Option<&str>| {
        let mut h = vec![
            ("authorization", authz),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example"),
            ("x-forwarded-uri", "/v1/orders/7?page=2"),
            ("x-forwarded-method", "GET"),
        ];
        if let Some(p) = proof {
            h.push(("dpop", p));
        }
        http_request(port, "GET", "/auth", &h)
    };
    let mut valid = String::new();
    for case in doc["cases"]["auth"].as_array().unwrap() {
        let (name, proof, expect) = (
            case["name"].as_str().unwrap(),
            case["proof"].as_str().unwrap(),
            case["expect"].as_str().unwrap(),
        );
        let (status, headers, body) = auth(&dpop_auth, Some(proof));
        assert_eq!(
            reason(status, &body),
            expect,
            "/auth {name}: {status} {body}"
        );
        if expect == "ok" {
            assert_eq!(header(&headers, "x-auth-jkt"), [jkt], "/auth {name}");
            valid = proof.to_owned();
        } else {
            assert_eq!(status, 401, "/auth {name}");
            let www = header(&headers, "www-authenticate");
            assert!(www[0].starts_with("DPoP algs=\""), "/auth {name}: {www:?}");
            assert_eq!(
                www.get(1).copied(),
                Some("Bearer realm=\"jwtd\""),
                "{www:?}"
            );
        }
    }
    let (status, _, body) = auth(&dpop_auth, Some(&valid));
    assert_eq!(reason(status, &body), "dpop_replay", "/auth replayed");
    let (status, _, body) = auth(&bearer, None);
    assert_eq!(reason(status, &body), "dpop_token_bound_as_bearer", "/auth");
    // Without X-Forwarded-Proto the request URI is http://...: the proof names https.
    let (status, _, body) = http_request(
        port,
        "GET",
        "/auth",
        &[
            ("authorization", &dpop_auth),
            ("dpop", &valid),
            ("x-forwarded-host", "api.example"),
            ("x-forwarded-uri", "/v1/orders/7"),
            ("x-forwarded-method", "GET"),
        ],
    );
    assert_eq!(reason(status, &body), "dpop_htu_mismatch", "{body}");

    // /v1/verify: the proof is made for the /v1/verify request itself (http, its Host).
    for case in doc["cases"]["verify"].as_array().unwrap() {
        let (name, proof, expect) = (
            case["name"].as_str().unwrap(),
            case["proof"].as_str().unwrap(),
            case["expect"].as_str().unwrap(),
        );
        let (status, headers, body) = http_request(
            port,
            "GET",
            "/v1/verify?x=1",
            &[("authorization", &dpop_auth), ("dpop", proof)],
        );
        assert_eq!(
            reason(status, &body),
            expect,
            "/v1/verify {name}: {status} {body}"
        );
        if expect == "ok" {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["claims"]["cnf"]["jkt"], jkt);
            valid = proof.to_owned();
        } else {
            let www = header(&headers, "www-authenticate");
            assert!(
                www[0].starts_with("DPoP algs=\"") && www[0].contains("ES256"),
                "{www:?}"
            );
        }
    }
    let (status, _, body) = http_request(
        port,
        "GET",
        "/v1/verify",
        &[("authorization", &dpop_auth), ("dpop", &valid)],
    );
    assert_eq!(reason(status, &body), "dpop_replay", "/v1/verify replayed");
    let (status, _, body) = http_request(port, "GET", "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(
        reason(status, &body),
        "dpop_token_bound_as_bearer",
        "/v1/verify"
    );

    // The proxy: its own scheme (http) and the Host it was sent.
    for case in doc["cases"]["proxy"].as_array().unwrap() {
        let (name, proof, expect) = (
            case["name"].as_str().unwrap(),
            case["proof"].as_str().unwrap(),
            case["expect"].as_str().unwrap(),
        );
        let (status, headers, body) = http_request(
            pport,
            "GET",
            "/v1/orders/7?page=2",
            &[("authorization", &dpop_auth), ("dpop", proof)],
        );
        assert_eq!(
            reason(status, &body),
            expect,
            "proxy {name}: {status} {body}"
        );
        if expect != "ok" {
            let www = header(&headers, "www-authenticate");
            assert_eq!(www.len(), 2, "proxy {name}: {www:?}");
            assert!(www[0].starts_with("DPoP algs=\""), "{www:?}");
            assert_eq!(www[1], "Bearer realm=\"jwtd\"");
        }
        if expect == "ok" {
            let echo: Value = serde_json::from_str(header(&headers, "x-echo")[0]).unwrap();
            let got = |n: &str| -> Vec<String> {
                echo["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(n))
                    .map(|p| p[1].as_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(
                got("authorization"),
                std::slice::from_ref(&bearer),
                "strip: Bearer upstream"
            );
            assert!(got("dpop").is_empty(), "strip: no DPoP upstream");
            assert_eq!(got("x-auth-jkt"), [jkt.to_owned()]);
            valid = proof.to_owned();
        }
    }
    let (status, _, body) = http_request(
        pport,
        "GET",
        "/v1/orders/7",
        &[("authorization", &dpop_auth), ("dpop", &valid)],
    );
    assert_eq!(reason(status, &body), "dpop_replay", "proxy replayed");
    let (status, _, body) =
        http_request(pport, "GET", "/v1/orders/7", &[("authorization", &bearer)]);
    assert_eq!(reason(status, &body), "dpop_token_bound_as_bearer", "proxy");

    // ext_authz over gRPC.
    let check = |authz: &str, proof: Option<&str>| {
        let mut headers = std::collections::HashMap::new();
        headers.insert("authorization".to_string(), authz.to_owned());
        if let Some(p) = proof {
            headers.insert("dpop".to_string(), p.to_owned());
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        scheme: "https".into(),
                        host: "api.example".into(),
                        path: "/v1/orders/7?page=2".into(),
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        let code_of =
            |r: &jwtd_extauthz::envoy_types::pb::envoy::service::auth::v3::CheckResponse| {
                let meta = r.dynamic_metadata.as_ref().unwrap();
                match meta.fields.get("reason").and_then(|v| v.kind.as_ref()) {
                    Some(
                        jwtd_extauthz::envoy_types::pb::google::protobuf::value::Kind::StringValue(
                            s,
                        ),
                    ) => s.clone(),
                    _ => "ok".into(),
                }
            };
        let mut valid = String::new();
        for case in doc["cases"]["extauthz"].as_array().unwrap() {
            let (name, proof, expect) = (
                case["name"].as_str().unwrap(),
                case["proof"].as_str().unwrap(),
                case["expect"].as_str().unwrap(),
            );
            let r = c
                .check(check(&dpop_auth, Some(proof)))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(code_of(&r), expect, "ext_authz {name}: {r:?}");
            match &r.http_response {
                Some(HttpResponse::OkResponse(ok)) => {
                    assert_eq!(expect, "ok");
                    assert!(ok.headers_to_remove.iter().any(|h| h == "dpop"), "{ok:?}");
                    let set = |n: &str| {
                        ok.headers
                            .iter()
                            .filter_map(|h| h.header.as_ref())
                            .find(|h| h.key == n)
                            .map(|h| h.value.clone())
                    };
                    assert_eq!(set("authorization"), Some(bearer.clone()));
                    assert_eq!(set("x-auth-jkt").as_deref(), Some(jkt));
                    valid = proof.to_owned();
                }
                Some(HttpResponse::DeniedResponse(d)) => {
                    assert_eq!(r.status.as_ref().unwrap().code, 16, "UNAUTHENTICATED");
                    let www: Vec<_> = d
                        .headers
                        .iter()
                        .filter_map(|h| h.header.as_ref().map(|x| (x, h.append_action)))
                        .filter(|(h, _)| h.key == "www-authenticate")
                        .collect();
                    assert_eq!(www.len(), 2, "{name}: {d:?}");
                    assert!(www[0].0.value.starts_with("DPoP algs="), "{www:?}");
                    assert_eq!(www[1].0.value, "Bearer realm=\"jwtd\"");
                    assert_ne!(www[0].1, www[1].1, "the second is appended");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let r = c
            .check(check(&dpop_auth, Some(&valid)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code_of(&r), "dpop_replay");
        let r = c.check(check(&bearer, None)).await.unwrap().into_inner();
        assert_eq!(code_of(&r), "dpop_token_bound_as_bearer");
    });
}
