//! The gRPC contract, through a tonic client built from the same protos (`envoy-types`): the
//! shared conformance table, then every field of the answer. No Envoy binary is available
//! here; what Envoy does with an answer (set, then remove, headers) is simulated in
//! [`upstream_headers`], as Envoy's ext_authz filter applies it.

use envoy_types::pb::envoy::config::core::v3::{HeaderMap as PbHeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::value::Kind;
use jwtd_extauthz::{Authorizer, Limits, Options};
use jwtd_gate::conformance::{check, Observed, Suite};
use jwtd_gate::Engine;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tonic::transport::Channel;

type Client = AuthorizationClient<Channel>;

/// The conformance table, written out once per process (its tokens are signed per call).
fn suite() -> &'static Suite {
    static SUITE: std::sync::OnceLock<Suite> = std::sync::OnceLock::new();
    SUITE.get_or_init(|| Suite::new(&std::env::temp_dir()))
}

fn engine_of(text: &str) -> Arc<Engine> {
    let config =
        jwtd_gate::config::GateConfig::parse(text, "test").unwrap_or_else(|e| panic!("{e}"));
    Arc::new(Engine::from_config(&config).unwrap())
}

/// A client of an authorizer over `engine`, on a loopback listener of its own.
async fn start(engine: Arc<Engine>, options: Options) -> Client {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        jwtd_extauthz::serve(
            Authorizer::new(engine, options),
            l,
            &Limits::default(),
            std::future::pending(),
        )
        .await
    });
    connect(&addr.to_string()).await
}

async fn connect(addr: &str) -> Client {
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// A `CheckRequest` as Envoy sends it (the `headers` map, lower-cased names).
fn request(method: &str, path: &str, headers: &[(&str, &str)], rule: Option<&str>) -> CheckRequest {
    let mut map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert(":authority".into(), "api.test".into());
    map.insert(":path".into(), path.into());
    map.insert(":method".into(), method.into());
    let mut context_extensions = HashMap::new();
    if let Some(r) = rule {
        context_extensions.insert("jwtd_rule".to_string(), r.to_string());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    host: "api.test".into(),
                    path: path.into(),
                    scheme: "https".into(),
                    headers: map,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions,
            ..Default::default()
        }),
    }
}

async fn call(c: &mut Client, req: CheckRequest) -> CheckResponse {
    c.check(req).await.unwrap().into_inner()
}

fn ok(r: &CheckResponse) -> &OkHttpResponse {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not allowed: {other:?}"),
    }
}

fn refusal(r: &CheckResponse) -> &DeniedHttpResponse {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) | Some(HttpResponse::ErrorResponse(d)) => d,
        other => panic!("not refused: {other:?}"),
    }
}

fn header<'a>(d: &'a DeniedHttpResponse, name: &str) -> Option<&'a str> {
    d.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

fn meta(r: &CheckResponse) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in &r
        .dynamic_metadata
        .as_ref()
        .expect("dynamic_metadata")
        .fields
    {
        let text = match &v.kind {
            Some(Kind::StringValue(s)) => s.clone(),
            Some(Kind::ListValue(l)) => l
                .values
                .iter()
                .map(|v| match &v.kind {
                    Some(Kind::StringValue(s)) => s.clone(),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => panic!("{k}: {other:?}"),
        };
        out.insert(k.clone(), text);
    }
    out
}

/// What the upstream receives: `sent` with the answer applied as Envoy's ext_authz filter
/// applies it (every `headers` entry with `append: false` set, then `headers_to_remove`).
fn upstream_headers(sent: &[(&str, &str)], ok: &OkHttpResponse) -> BTreeMap<String, String> {
    let mut h: BTreeMap<String, String> = sent
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    #[allow(deprecated)]
    for o in &ok.headers {
        assert_eq!(o.append.as_ref().map(|b| b.value), Some(false), "{o:?}");
        let hv = o.header.as_ref().unwrap();
        h.insert(hv.key.clone(), hv.value.clone());
    }
    for name in &ok.headers_to_remove {
        h.remove(name);
    }
    h
}

/// Identity headers a client sends to impersonate someone.
const SPOOFED: &[(&str, &str)] = &[
    ("x-auth-subject", "mallory"),
    ("x-auth-issuer", "https://evil.test"),
    ("x-order-id", "999"),
];

/// The shared conformance table (crates/jwtd-gate/conformance/) through the gRPC Check
/// service: the status, reason, rule and identity headers the table says, the gRPC code of the
/// refusal table, and no spoofed identity header reaching the upstream.
#[tokio::test]
async fn conformance_table_through_grpc_check() {
    let suite = suite();
    let engine = engine_of(&suite.config);
    let mut c = start(engine.clone(), Options::default()).await;
    let mut failures = Vec::new();
    for case in &suite.cases {
        let token = case
            .token
            .as_ref()
            .map(|l| format!("Bearer {}", suite.token(l)));
        let mut sent: Vec<(&str, &str)> = SPOOFED.to_vec();
        if let Some(t) = &token {
            sent.push(("authorization", t));
        }
        let r = call(&mut c, request(&case.method, &case.path, &sent, None)).await;
        let m = meta(&r);
        let rule = match m.get("rule").map(String::as_str) {
            Some("default") | Some("-") | None => None,
            Some(r) => Some(r.to_owned()),
        };
        let code = r.status.as_ref().map_or(0, |s| s.code);
        let got = if code == 0 {
            let up = upstream_headers(&sent, ok(&r));
            for (name, spoofed) in SPOOFED {
                if up.get(*name).map(String::as_str) == Some(*spoofed) {
                    failures.push(format!(
                        "{}: spoofed {name} reached the upstream",
                        case.name
                    ));
                }
            }
            // An identity header jwtd removes is absent; `/auth` answers it empty.
            let mut headers = BTreeMap::new();
            for name in engine.identity.names() {
                let v = up.get(name.as_str()).cloned().unwrap_or_default();
                headers.insert(name.to_string(), v);
            }
            Observed {
                status: 200,
                reason: None,
                rule: Some(rule),
                headers: Some(headers),
            }
        } else {
            let d = refusal(&r);
            let status = d.status.as_ref().unwrap().code as u16;
            let want = match status {
                401 => 16,
                403 => 7,
                400 => 3,
                503 => 14,
                s => panic!("{s}"),
            };
            if code != want {
                failures.push(format!("{}: gRPC code {code} for {status}", case.name));
            }
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            Observed {
                status,
                reason: body["reason"].as_str().map(str::to_owned),
                rule: Some(rule),
                headers: None,
            }
        };
        if let Err(e) = check(case, &got) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(suite.cases.len() >= 20);
}

/// Every identity header jwtd owns is either set (overwriting, `append: false`) or removed,
/// never both (Envoy removes after it sets), whatever the decision; `authorization` is removed
/// only when configured.
#[tokio::test]
async fn allowed_answers_overwrite_or_remove_every_identity_header() {
    let suite = suite();
    let engine = engine_of(&suite.config);
    let owned: Vec<String> = engine
        .identity
        .names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(owned.contains(&"x-order-id".to_string()), "{owned:?}");
    let mut c = start(engine.clone(), Options::default()).await;
    let token = format!("Bearer {}", suite.token("corp-orders-read"));
    let docs = format!("Bearer {}", suite.token("corp"));
    for (path, auth, set) in [
        // A rule with set_headers: everything set.
        (
            "/v1/orders/7",
            token.as_str(),
            vec!["x-auth-issuer", "x-auth-subject", "x-order-id"],
        ),
        // A token, but no x-order-id on this rule: removed.
        (
            "/docs/a",
            docs.as_str(),
            vec!["x-auth-issuer", "x-auth-subject"],
        ),
        // Public: no identity at all, every identity header removed.
        ("/healthz", "", vec![]),
    ] {
        let mut sent = SPOOFED.to_vec();
        if !auth.is_empty() {
            sent.push(("authorization", auth));
        }
        let r = call(&mut c, request("GET", path, &sent, None)).await;
        let ok = ok(&r);
        let mut set_names: Vec<&str> = ok
            .headers
            .iter()
            .map(|h| h.header.as_ref().unwrap().key.as_str())
            .collect();
        set_names.sort();
        assert_eq!(set_names, set, "{path}");
        let mut all: Vec<String> = set_names.iter().map(|s| s.to_string()).collect();
        // `on_pass = "strip"` (the default): `DPoP` removed whether or not a proof was checked.
        assert!(
            ok.headers_to_remove.iter().any(|h| h == "dpop"),
            "{path}: {:?}",
            ok.headers_to_remove
        );
        for removed in ok.headers_to_remove.iter().filter(|h| *h != "dpop") {
            assert!(
                !set_names.contains(&removed.as_str()),
                "{path}: {removed} set and removed"
            );
            all.push(removed.clone());
        }
        all.sort();
        let mut want = owned.clone();
        want.sort();
        assert_eq!(all, want, "{path}: every identity header, once");
        assert!(!ok.headers_to_remove.iter().any(|h| h == "authorization"));
        let up = upstream_headers(&sent, ok);
        assert_ne!(
            up.get("x-auth-subject").map(String::as_str),
            Some("mallory")
        );
        assert_ne!(up.get("x-order-id").map(String::as_str), Some("999"));
        if !auth.is_empty() {
            assert_eq!(up.get("authorization").map(String::as_str), Some(auth));
        }
    }
    let r = call(
        &mut c,
        request("GET", "/v1/orders/8", &[("authorization", &token)], None),
    )
    .await;
    let up = upstream_headers(&[("authorization", &token)], ok(&r));
    assert_eq!(up["x-auth-subject"], "alice");
    assert_eq!(up["x-order-id"], "8");

    // remove_authorization: the client's token never reaches the upstream.
    let options = Options {
        remove_authorization: true,
        ..Options::default()
    };
    let mut c = start(engine, options).await;
    let r = call(
        &mut c,
        request("GET", "/v1/orders/7", &[("authorization", &token)], None),
    )
    .await;
    assert!(ok(&r)
        .headers_to_remove
        .iter()
        .any(|h| h == "authorization"));
    let up = upstream_headers(&[("authorization", &token)], ok(&r));
    assert!(!up.contains_key("authorization"));
    assert_eq!(up["x-auth-subject"], "alice");
}

/// A token signed with the conformance corp secret, with `extra` claims.
fn corp_token(suite: &Suite, extra: serde_json::Value) -> String {
    let secret = std::fs::read(suite.dir.join("corp.secret")).unwrap();
    let key = jwtd_core::SigningKey::hmac(&secret, jwtd_core::Algorithm::HS256, None).unwrap();
    let now = jwtd_core::unix_now();
    let mut claims = serde_json::json!({
        "iss": "https://corp.test", "sub": "alice", "aud": "api", "iat": now, "exp": now + 300,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    jwtd_core::sign(&key, claims.as_object().unwrap(), None).unwrap()
}

/// Dynamic metadata: sub, iss, client_id, scope (a list), rule, issuer and jti on an allowed
/// check; rule, issuer and reason on a refusal.
#[tokio::test]
async fn dynamic_metadata_has_the_documented_schema() {
    let suite = suite();
    let mut c = start(engine_of(&suite.config), Options::default()).await;
    let t = corp_token(
        suite,
        serde_json::json!({"scope": "orders:read profile", "client_id": "web", "jti": "j-1"}),
    );
    let auth = format!("Bearer {t}");
    let r = call(
        &mut c,
        request("GET", "/v1/orders/7", &[("authorization", &auth)], None),
    )
    .await;
    ok(&r);
    let want: BTreeMap<String, String> = [
        ("rule", "orders-read"),
        ("issuer", "corp"),
        ("sub", "alice"),
        ("iss", "https://corp.test"),
        ("client_id", "web"),
        ("scope", "orders:read profile"),
        ("jti", "j-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(meta(&r), want);
    let scope = &r.dynamic_metadata.as_ref().unwrap().fields["scope"];
    assert!(matches!(&scope.kind, Some(Kind::ListValue(l)) if l.values.len() == 2));

    // Without the optional claims: only what is present.
    let t = corp_token(suite, serde_json::json!({"scope": "orders:read"}));
    let auth = format!("Bearer {t}");
    let r = call(
        &mut c,
        request("GET", "/v1/orders/7", &[("authorization", &auth)], None),
    )
    .await;
    let m = meta(&r);
    assert!(
        !m.contains_key("client_id") && !m.contains_key("jti"),
        "{m:?}"
    );

    // A refusal: the rule, the issuer that refused and the reason.
    let t = corp_token(suite, serde_json::json!({}));
    let auth = format!("Bearer {t}");
    let r = call(
        &mut c,
        request("GET", "/v1/orders/7", &[("authorization", &auth)], None),
    )
    .await;
    let m = meta(&r);
    assert_eq!(m["rule"], "orders-read");
    assert_eq!(m["issuer"], "corp");
    assert_eq!(m["reason"], "missing_scope");
    assert!(!m.contains_key("sub"));
}

/// A refusal carries the HTTP status, the RFC 6750 challenge (with `scope=`) and the very
/// body and headers `/auth` answers (the refusal table), with the table's gRPC code.
#[tokio::test]
async fn denied_answers_carry_status_challenge_and_the_auth_body() {
    let suite = suite();
    let engine = engine_of(&suite.config);
    let mut c = start(engine.clone(), Options::default()).await;
    let plain = format!("Bearer {}", suite.token("corp-plain"));
    for (path, auth, code, status, www) in [
        (
            "/v1/orders/7",
            plain.as_str(),
            7,
            403,
            "Bearer realm=\"jwtd\", error=\"insufficient_scope\", error_description=\"this route needs scope 'orders:read'\", scope=\"orders:read\"",
        ),
        ("/v1/orders/7", "", 16, 401, "Bearer realm=\"jwtd\""),
    ] {
        let sent: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth)]
        };
        let r = call(&mut c, request("GET", path, &sent, None)).await;
        assert_eq!(r.status.as_ref().unwrap().code, code);
        assert!(matches!(r.http_response, Some(HttpResponse::DeniedResponse(_))));
        let d = refusal(&r);
        assert_eq!(d.status.as_ref().unwrap().code, status);
        assert_eq!(header(d, "www-authenticate"), Some(www));
        assert_eq!(header(d, "content-type"), Some("application/json"));
        assert_eq!(header(d, "retry-after"), None);
        #[allow(deprecated)]
        for h in &d.headers {
            assert_eq!(h.append.as_ref().map(|b| b.value), Some(false));
        }
        // What /auth answers for the same request: the same table.
        let mut headers = http::HeaderMap::new();
        for (k, v) in &sent {
            headers.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let req = jwtd_gate::Request {
            method: "GET",
            scheme: "https",
            host: "api.test",
            path_and_query: path,
            headers: &headers,
            client_cert: Default::default(),
        };
        let denial = engine
            .decide(&req, jwtd_core::unix_now())
            .await
            .outcome
            .unwrap_err();
        let auth_answer = jwtd_gate::refusal::http_denial(&denial);
        assert_eq!(d.body, auth_answer.body);
        assert_eq!(auth_answer.headers.len(), d.headers.len());
        for (n, v) in &auth_answer.headers {
            assert_eq!(header(d, n.as_str()), Some(v.to_str().unwrap()), "{n}");
        }
    }
}

/// Keys that cannot be had (a remote key set never fetched) are jwtd's own failure: an
/// `error_response` with 503 and `Retry-After`, gRPC `UNAVAILABLE`, so Envoy's
/// `failure_mode_allow` decides, not jwtd.
#[tokio::test]
async fn unavailable_keys_are_an_error_response_with_503() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let text = format!(
        "[[issuer]]\nname = \"remote\"\nissuer = \"https://remote.test\"\n\
         jwks_url = \"http://127.0.0.1:{port}/jwks.json\"\nalgorithms = [\"RS256\"]\n\
         audiences = [\"api\"]\n"
    );
    let mut c = start(engine_of(&text), Options::default()).await;
    let b64 = |v: serde_json::Value| jwtd_core::b64::encode(v.to_string());
    let token = format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})),
        b64(
            serde_json::json!({"iss": "https://remote.test", "sub": "a", "aud": "api",
            "exp": jwtd_core::unix_now() + 300})
        ),
        jwtd_core::b64::encode([7u8; 256]),
    );
    let auth = format!("Bearer {token}");
    let r = call(
        &mut c,
        request("GET", "/x", &[("authorization", &auth)], None),
    )
    .await;
    assert_eq!(r.status.as_ref().unwrap().code, 14, "{r:?}");
    let Some(HttpResponse::ErrorResponse(d)) = &r.http_response else {
        panic!("not an error_response: {r:?}");
    };
    assert_eq!(d.status.as_ref().unwrap().code, 503);
    assert_eq!(header(d, "retry-after"), Some("5"));
    assert_eq!(header(d, "www-authenticate"), Some("Bearer realm=\"jwtd\""));
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["reason"], "key_fetch_failed");
}

/// `context_extensions["jwtd_rule"]` names the rule that decides, skipping the matcher (not
/// the rule's own conditions); an unknown rule, or one that does not take the request, is 403
/// `no_matching_rule`.
#[tokio::test]
async fn the_jwtd_rule_context_extension_names_the_rule() {
    let suite = suite();
    let text = format!(
        "{}\n[[rule]]\nid = \"api-public\"\npath = \"/api/**\"\nauth = \"public\"\n\n\
         [[rule]]\nid = \"api-secret\"\npath = \"/api/secret\"\nauth = \"corp\"\n",
        suite.config
    );
    let mut c = start(engine_of(&text), Options::default()).await;
    // The matcher: the most specific rule needs a token.
    let r = call(&mut c, request("GET", "/api/secret", &[], None)).await;
    assert_eq!(refusal(&r).status.as_ref().unwrap().code, 401);
    assert_eq!(meta(&r)["rule"], "api-secret");
    // Named: the public rule decides.
    let r = call(
        &mut c,
        request("GET", "/api/secret", &[], Some("api-public")),
    )
    .await;
    ok(&r);
    assert_eq!(meta(&r)["rule"], "api-public");
    // Named, but the rule does not take this path; and a rule that does not exist.
    for name in ["health", "nope"] {
        let r = call(&mut c, request("GET", "/api/secret", &[], Some(name))).await;
        assert_eq!(r.status.as_ref().unwrap().code, 7);
        let body: serde_json::Value = serde_json::from_str(&refusal(&r).body).unwrap();
        assert_eq!(body["reason"], "no_matching_rule", "{name}");
    }
}

/// More headers, or more header bytes, than the authorizer takes: a 400 `bad_headers`
/// denial (`invalid_request`, `INVALID_ARGUMENT`), never an error `failure_mode_allow` could
/// let through. A raw `header_map` keeps repeated headers apart: two tokens are refused.
#[tokio::test]
async fn oversized_header_maps_are_refused_as_bad_headers() {
    let suite = suite();
    let options = Options {
        max_headers: 20,
        max_header_bytes: 4096,
        ..Options::default()
    };
    let mut c = start(engine_of(&suite.config), options).await;
    let names: Vec<String> = (0..20).map(|i| format!("x-filler-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let big = "a".repeat(5000);
    let cases: Vec<Vec<(&str, &str)>> = vec![many, vec![("x-big", big.as_str())]];
    for sent in cases {
        let r = call(&mut c, request("GET", "/healthz", &sent, None)).await;
        assert_eq!(r.status.as_ref().unwrap().code, 3, "{r:?}");
        assert!(matches!(
            r.http_response,
            Some(HttpResponse::DeniedResponse(_))
        ));
        let d = refusal(&r);
        assert_eq!(d.status.as_ref().unwrap().code, 400);
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["reason"], "bad_headers");
        assert_eq!(
            header(d, "www-authenticate").map(|w| w.contains("error=\"invalid_request\"")),
            Some(true)
        );
    }
    // Just under the limits: decided as usual.
    let r = call(&mut c, request("GET", "/healthz", &[("x-a", "1")], None)).await;
    ok(&r);

    // header_map (Envoy's encode_raw_headers): two Authorization lines stay two.
    let token = format!("Bearer {}", suite.token("corp-orders-read"));
    let mut req = request("GET", "/v1/orders/7", &[], None);
    let http = req
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    let line = |k: &str, v: &str| HeaderValue {
        key: k.into(),
        value: String::new(),
        raw_value: v.as_bytes().to_vec(),
    };
    http.header_map = Some(PbHeaderMap {
        headers: vec![
            line(":path", "/v1/orders/7"),
            line("authorization", &token),
            line("authorization", &token),
        ],
    });
    let r = call(&mut c, req.clone()).await;
    let body: serde_json::Value = serde_json::from_str(&refusal(&r).body).unwrap();
    assert_eq!(body["reason"], "multiple_tokens");
    // One line: allowed, from header_map alone.
    http_of(&mut req).header_map.as_mut().unwrap().headers.pop();
    let r = call(&mut c, req).await;
    assert_eq!(meta(&r)["sub"], "alice");
}

fn http_of(req: &mut CheckRequest) -> &mut HttpRequest {
    req.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
}

/// `jwtd serve`'s state with `[ext_authz]` (in process): the listener of the config key
/// answers with the service's engine, follows a reload, and honours `remove_authorization`.
#[tokio::test]
async fn jwtd_serve_answers_on_the_ext_authz_listener_and_follows_reloads() {
    let suite = suite();
    let path = suite.dir.join("ext-authz.toml");
    let with = |config: &str| {
        format!("{config}\n[ext_authz]\nlisten = \"127.0.0.1:0\"\nremove_authorization = true\n")
    };
    std::fs::write(&path, with(&suite.config)).unwrap();
    let config = jwtd_service::Config::load(&path).unwrap();
    let settings = config.ext_authz.clone().expect("[ext_authz]");
    assert!(settings.remove_authorization);
    assert_eq!(settings.max_headers, 100);
    // The only test of this process with a recorder (jwtd serve's).
    let metrics = jwtd_service::install_metrics().unwrap();
    let runtime = jwtd_service::Runtime::build(config, None).await.unwrap();
    let state = jwtd_service::AppState::with_metrics(runtime, Some(path.clone()), metrics.clone());
    let l = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(jwtd_service::serve_ext_authz(
        state.clone(),
        l,
        std::future::pending(),
    ));
    let mut c = connect(&addr.to_string()).await;
    let token = format!("Bearer {}", suite.token("corp-orders-read"));
    let r = call(
        &mut c,
        request("GET", "/v1/orders/7", &[("authorization", &token)], None),
    )
    .await;
    let ok_answer = ok(&r);
    assert!(ok_answer
        .headers_to_remove
        .iter()
        .any(|h| h == "authorization"));
    assert_eq!(meta(&r)["rule"], "orders-read");
    let r = call(&mut c, request("GET", "/healthz", &[], None)).await;
    ok(&r);
    let r = call(&mut c, request("DELETE", "/v1/orders/7", &[], None)).await;
    assert_eq!(r.status.as_ref().unwrap().code, 7);
    // Counted with /auth's decisions.
    let text = metrics.render();
    for series in [
        "jwtd_decisions_total{rule=\"orders-read\",outcome=\"allowed\",reason=\"\"} 1",
        "jwtd_decisions_total{rule=\"health\",outcome=\"allowed\",reason=\"\"} 1",
        "jwtd_decisions_total{rule=\"default\",outcome=\"denied\",reason=\"no_matching_rule\"} 1",
    ] {
        assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
    }

    // A reload swaps the engine under the running listener: /healthz is no longer public.
    let reloaded = suite
        .config
        .replace("path = \"/healthz\"", "path = \"/livez\"");
    assert_ne!(reloaded, suite.config);
    std::fs::write(&path, with(&reloaded)).unwrap();
    state.reload().await.unwrap();
    let r = call(&mut c, request("GET", "/healthz", &[], None)).await;
    assert_eq!(r.status.as_ref().unwrap().code, 7);
    let r = call(&mut c, request("GET", "/livez", &[], None)).await;
    assert_eq!(meta(&r)["rule"], "health");

    // A bad [ext_authz] is refused with its line.
    let bad = format!("{}\n[ext_authz]\nlisten = \"nowhere\"\n", suite.config);
    let e = jwtd_service::Config::parse(&bad, "bad.toml").unwrap_err();
    assert!(
        e.to_string().contains("ext_authz: listen \"nowhere\""),
        "{e}"
    );
}

/// At `max_connections` the listener accepts no more until one closes: a third connection's
/// HTTP/2 preface goes unanswered while two are open, and is answered once one closes.
#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let suite = suite();
    let engine = engine_of(&suite.config);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    tokio::spawn(async move {
        jwtd_extauthz::serve(
            Authorizer::new(engine, Options::default()),
            l,
            &limits,
            std::future::pending(),
        )
        .await
    });
    // The client preface and an empty SETTINGS frame; a served connection answers with the
    // server's SETTINGS frame (type 4).
    let open = || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        s
    };
    let answered = |mut s: tokio::net::TcpStream, wait: u64| async move {
        let mut head = [0u8; 9];
        let got = tokio::time::timeout(
            std::time::Duration::from_millis(wait),
            s.read_exact(&mut head),
        )
        .await;
        (matches!(got, Ok(Ok(_))) && head[3] == 4, s)
    };
    let (a_ok, a) = answered(open().await, 5000).await;
    let (b_ok, _b) = answered(open().await, 5000).await;
    assert!(a_ok && b_ok, "the first two connections are served");
    let (c_ok, c) = answered(open().await, 300).await;
    assert!(!c_ok, "a third connection is not served while two are open");
    drop(a);
    let (c_ok, _c) = answered(c, 5000).await;
    assert!(c_ok, "served once one of the two closed");
}

/// A rule under a `[[resource]]` (RFC 9728, MCP): the denied response's `WWW-Authenticate`
/// names the resource metadata and every scope the rule needs, found by the matcher or named
/// by `context_extensions`; a token for the resource is allowed, one for another audience is
/// not.
#[tokio::test]
async fn denials_under_a_resource_carry_resource_metadata() {
    let secret = "extauthz-resource-secret-0123456789abcdef";
    let text = r#"
[[issuer]]
name = "corp"
issuer = "https://auth.example.com"
secret_env = "RS_SECRET"
algorithms = ["HS256"]
audiences = ["api"]

[[resource]]
uri = "https://mcp.example.com/mcp"
issuers = ["corp"]

[[rule]]
id = "mcp"
path = "/mcp"
auth = "corp"
resource = "https://mcp.example.com/mcp"
scopes = { all = ["mcp:read", "mcp:tools"] }
"#;
    let env = jwtd_gate::Env::from_vars([("RS_SECRET", secret)]);
    let config = jwtd_gate::config::GateConfig::parse_with_env(text, "test", &env).unwrap();
    let engine = Arc::new(Engine::from_config(&config).unwrap());
    let mut c = start(engine, Options::default()).await;
    let want = "Bearer realm=\"jwtd\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read mcp:tools\"";
    for rule in [None, Some("mcp")] {
        let r = call(&mut c, request("POST", "/mcp", &[], rule)).await;
        let d = refusal(&r);
        assert_eq!(d.status.as_ref().unwrap().code, 401);
        assert_eq!(header(d, "www-authenticate"), Some(want), "{rule:?}");
    }
    let now = jwtd_core::unix_now();
    let token = |aud: &str| {
        format!(
            "Bearer {}",
            jwtd_core::sign(
                &jwtd_core::SigningKey::hmac(secret.as_bytes(), jwtd_core::Algorithm::HS256, None)
                    .unwrap(),
                serde_json::json!({"iss": "https://auth.example.com", "sub": "alice", "aud": aud,
                    "scope": "mcp:read mcp:tools", "iat": now, "exp": now + 60})
                .as_object()
                .unwrap(),
                None,
            )
            .unwrap()
        )
    };
    let t = token("api");
    let r = call(
        &mut c,
        request("POST", "/mcp", &[("authorization", &t)], None),
    )
    .await;
    let www = header(refusal(&r), "www-authenticate").unwrap().to_owned();
    assert!(
        www.contains("error=\"invalid_token\"") && www.contains("resource_metadata="),
        "{www}"
    );
    let t = token("https://mcp.example.com/mcp");
    let r = call(
        &mut c,
        request("POST", "/mcp", &[("authorization", &t)], None),
    )
    .await;
    ok(&r);
}
