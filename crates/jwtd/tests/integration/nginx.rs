//! End to end with real reverse proxies (Debian packages) in front of a small upstream, all on
//! 127.0.0.1: nginx (`auth_request`) and Caddy (`forward_auth`) asking `jwtd serve`. Each runs
//! the very snippet docs/integrations.md shows (read from that file at build time, with its
//! addresses replaced), so the documented configuration is the tested one. A proxy missing is a
//! failure, not a skip: `scripts/ensure-deps` installs both.

use crate::common::{free_port, http_get, wait_for_http, Guard};
use jwtd_core::{Algorithm, Jwks, SigningKey};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The integration guide, whose snippets the proxies run.
const INTEGRATIONS: &str = include_str!("../../../../docs/integrations.md");

/// The one fenced block of docs/integrations.md whose info string is `lang`.
fn snippet(lang: &str) -> &'static str {
    let fence = format!("```{lang}\n");
    let mut blocks = INTEGRATIONS.match_indices(&fence).map(|(at, _)| {
        let body = &INTEGRATIONS[at + fence.len()..];
        &body[..body.find("```").expect("a closed block")]
    });
    let block = blocks.next().unwrap_or_else(|| panic!("no {lang} block"));
    assert!(blocks.next().is_none(), "one {lang} block");
    block
}

/// Every identity header jwtd answers with the configuration of [`Stack::start`], as spelled
/// in the snippets: the union over its two issuers, and the binding headers jwtd always
/// answers (DPoP's `X-Auth-Jkt`, mTLS's `X-Auth-Cert-Thumbprint`).
const IDENTITY: [&str; 7] = [
    "X-Auth-Subject",
    "X-Auth-Issuer",
    "X-Auth-Payload",
    "X-Roles",
    "X-User-Email",
    "X-Auth-Jkt",
    "X-Auth-Cert-Thumbprint",
];

const PARTNER_SECRET: &str = "partner-secret-0123456789abcdef-0123";

fn binary(name: &str, paths: &[&str]) -> PathBuf {
    for p in paths {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("{name} is not installed: run scripts/ensure-deps (apt-get install {name})");
}

/// What the upstream received: every request's head, raw.
type Seen = Arc<Mutex<Vec<String>>>;

/// An upstream that records every request head and answers with its headers as JSON (each
/// name, lower-cased, with the list of its values).
fn upstream() -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Seen::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || serve_echo(stream, &record));
        }
    });
    (port, seen)
}

fn serve_echo(mut stream: TcpStream, seen: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = serde_json::Map::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut head = line.clone();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
        if let Some((k, v)) = line.trim_end().split_once(':') {
            let values = headers
                .entry(k.to_ascii_lowercase())
                .or_insert_with(|| json!([]));
            values.as_array_mut().unwrap().push(json!(v.trim()));
        }
    }
    seen.lock().unwrap().push(head);
    let body = Value::Object(headers).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// jwtd with two issuers: "idp" (ES256) maps `X-User-Email` and `X-Roles` and forwards its
/// payload; "partner" (HS256) maps nothing and forwards no payload. Plus an upstream.
struct Stack {
    dir: PathBuf,
    guard: Guard,
    jwtd: u16,
    upstream: u16,
    seen: Seen,
    /// A second upstream, for the per-route rules' second location.
    admin: u16,
    admin_seen: Seen,
    idp: SigningKey,
    partner: SigningKey,
}

/// The request heads each upstream saw (main, admin).
type Heads = (Vec<String>, Vec<String>);

impl Stack {
    fn start(name: &str) -> Stack {
        Stack::with(name, "")
    }

    /// [`Stack::start`] with `extra` appended to jwtd's configuration.
    fn with(name: &str, extra: &str) -> Stack {
        let dir = std::env::temp_dir().join(format!("jwtd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let idp = SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_default_kid();
        std::fs::write(
            dir.join("jwks.json"),
            serde_json::to_string(&Jwks::from_keys(idp.public_jwk())).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("partner.secret"), PARTNER_SECRET).unwrap();
        let partner = SigningKey::hmac(PARTNER_SECRET.as_bytes(), Algorithm::HS256, None).unwrap();
        let (jwtd, (upstream, seen), (admin, admin_seen)) = (free_port(), upstream(), upstream());
        std::fs::write(
            dir.join("jwtd.toml"),
            format!(
                r#"listen = "127.0.0.1:{jwtd}"
trusted_proxies = ["127.0.0.1"]
[[issuer]]
name = "idp"
issuer = "https://idp.example/"
jwks_file = "{jwks}"
algorithms = ["ES256"]
audiences = ["shop"]
forward_payload = true
[issuer.contains]
scope = ["orders:read"]
[issuer.headers]
X-User-Email = "email"
X-Roles = "roles"

[[issuer]]
name = "partner"
issuer = "https://partner.example/"
secret_file = "{secret}"
algorithms = ["HS256"]
any_audience = true
{extra}"#,
                jwks = dir.join("jwks.json").display(),
                secret = dir.join("partner.secret").display(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
            .args(["serve", "--config"])
            .arg(dir.join("jwtd.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stack = Stack {
            dir,
            guard: Guard(vec![child]),
            jwtd,
            upstream,
            seen,
            admin,
            admin_seen,
            idp,
            partner,
        };
        wait_for_http(jwtd);
        stack
    }

    fn idp_token(&self, extra: Value) -> String {
        let now = jwtd_core::unix_now();
        let mut c = json!({"iss": "https://idp.example/", "aud": "shop", "sub": "alice",
            "email": "alice@example.com", "roles": ["reader", "x, admin"],
            "scope": "openid orders:read", "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        jwtd_core::sign(&self.idp, c.as_object().unwrap(), None).unwrap()
    }

    fn partner_token(&self) -> String {
        let now = jwtd_core::unix_now();
        let c = json!({"iss": "https://partner.example/", "sub": "partner-svc", "iat": now,
            "exp": now + 600});
        jwtd_core::sign(&self.partner, c.as_object().unwrap(), None).unwrap()
    }

    /// Sends `method path` through the proxy on `port` with `token` and every identity header
    /// spoofed (each also spelled with underscores, the same header to CGI-style upstreams,
    /// when `underscores`); asserts no spoofed value reached an upstream and returns status,
    /// headers, body and the request heads each upstream saw of it (main, admin).
    fn send(
        &self,
        port: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        underscores: bool,
    ) -> (u16, Vec<(String, String)>, String, Heads) {
        let spoofed: Vec<(String, String)> = IDENTITY
            .iter()
            .flat_map(|h| {
                let v = format!("spoofed-{}", h.to_ascii_lowercase());
                let under = underscores.then(|| (h.replace('-', "_"), v.clone()));
                std::iter::once((h.to_string(), v)).chain(under)
            })
            .collect();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut sent: Vec<(&str, &str)> = spoofed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(a) = &auth {
            sent.push(("authorization", a));
        }
        let before = (
            self.seen.lock().unwrap().len(),
            self.admin_seen.lock().unwrap().len(),
        );
        let (status, headers, body) = crate::common::http_request(port, method, path, &sent);
        let heads = (
            self.seen.lock().unwrap()[before.0..].to_vec(),
            self.admin_seen.lock().unwrap()[before.1..].to_vec(),
        );
        for h in heads.0.iter().chain(&heads.1) {
            assert!(
                !h.to_ascii_lowercase().contains("spoofed"),
                "{method} {path}: a spoofed identity header reached the upstream:\n{h}"
            );
        }
        (status, headers, body, heads)
    }

    fn spawn(&mut self, child: Child, port: u16) {
        self.guard.0.push(child);
        wait_for_http(port);
    }

    /// Requests through the proxy on `port`: no spoofed identity header reaches the upstream,
    /// whichever issuer's token comes with it; rejections come back as jwtd answered them.
    fn check_proxy(&self, port: u16) {
        // jwtd answers exactly the identity headers the snippets clear, for either issuer.
        for token in [self.partner_token(), self.idp_token(json!({}))] {
            let auth = format!("Bearer {token}");
            let (status, headers, _) = http_get(self.jwtd, "/auth", &[("authorization", &auth)]);
            assert_eq!(status, 200);
            let mut answered: Vec<&str> = headers
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !["x-request-id", "content-length", "date", "connection"].contains(k))
                .collect();
            answered.sort();
            let mut want: Vec<String> = IDENTITY.iter().map(|h| h.to_ascii_lowercase()).collect();
            want.sort();
            assert_eq!(answered, want, "the identity headers of /auth");
        }
        let get = |token: Option<&str>| {
            let (status, headers, body, (heads, _)) =
                self.send(port, "GET", "/orders", token, true);
            (status, headers, body, heads)
        };
        let one = |seen: &Value, name: &str| -> Option<String> {
            match seen.get(name).and_then(Value::as_array).map(Vec::as_slice) {
                None => None,
                Some([v]) => Some(v.as_str().unwrap().to_owned()),
                Some(many) => panic!("{name} reached the upstream {} times", many.len()),
            }
        };
        let no_spoof = |heads: &[String]| {
            assert_eq!(heads.len(), 1, "one request upstream");
            assert!(
                !heads[0].to_ascii_lowercase().contains("spoofed"),
                "a spoofed identity header reached the upstream:\n{}",
                heads[0]
            );
        };

        // A token of the issuer that maps nothing and forwards no payload: the mapped headers
        // and the payload are jwtd's (empty: removed or blank), not the client's.
        let (status, _, body, heads) = get(Some(&self.partner_token()));
        assert_eq!(status, 200, "{body}");
        no_spoof(&heads);
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(one(&seen, "x-auth-subject").as_deref(), Some("partner-svc"));
        assert_eq!(
            one(&seen, "x-auth-issuer").as_deref(),
            Some("https://partner.example/")
        );
        for h in ["x-auth-payload", "x-user-email", "x-roles"] {
            assert!(one(&seen, h).unwrap_or_default().is_empty(), "{h}: {seen}");
        }

        // The issuer that maps them: its values, an RFC 8941 list for the roles array.
        let (status, _, body, heads) = get(Some(&self.idp_token(json!({}))));
        assert_eq!(status, 200, "{body}");
        no_spoof(&heads);
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(one(&seen, "x-auth-subject").as_deref(), Some("alice"));
        assert_eq!(
            one(&seen, "x-auth-issuer").as_deref(),
            Some("https://idp.example/")
        );
        assert_eq!(
            one(&seen, "x-user-email").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            one(&seen, "x-roles").as_deref(),
            Some(r#""reader", "x, admin""#)
        );
        let payload =
            jwtd_core::b64::decode(one(&seen, "x-auth-payload").unwrap().as_bytes()).unwrap();
        let payload: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(payload["sub"], "alice");

        // Without the claim, its spoofed header is still replaced.
        let (status, _, body, heads) = get(Some(&self.idp_token(json!({"email": null}))));
        assert_eq!(status, 200, "{body}");
        no_spoof(&heads);

        // Spoofed identity headers without a token never reach the upstream.
        let (status, _, _, heads) = get(None);
        assert_eq!(status, 401);
        assert!(heads.is_empty());

        // Expired: 401 with WWW-Authenticate.
        let now = jwtd_core::unix_now();
        let (status, headers, _, heads) = get(Some(&self.idp_token(json!({"exp": now - 3600}))));
        assert_eq!(status, 401);
        assert!(heads.is_empty());
        let www = headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(www.contains("error=\"invalid_token\""), "{www}");

        // Failed scope: 403.
        let (status, _, _, heads) = get(Some(&self.idp_token(json!({"scope": "openid"}))));
        assert_eq!(status, 403);
        assert!(heads.is_empty());
    }
}

/// Starts nginx on a free port with `server` (directives of the `server` block) and jwtd's
/// port in place of the docs' 127.0.0.1:8080; returns the port.
fn run_nginx(stack: &mut Stack, server: &str) -> u16 {
    let nginx = binary(
        "nginx",
        &["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"],
    );
    let port = free_port();
    let server = server.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", stack.jwtd));
    let d = stack.dir.display();
    std::fs::write(
        stack.dir.join("nginx.conf"),
        format!(
            r#"worker_processes 1;
error_log {d}/logs/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
{server}
  }}
}}
"#
        ),
    )
    .unwrap();
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&stack.dir)
        .arg("-c")
        .arg(stack.dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    stack.spawn(child, port);
    port
}

#[test]
fn nginx_snippet_lets_no_spoofed_identity_header_through() {
    let mut stack = Stack::start("nginx");
    let locations = snippet("nginx").replace(
        "http://upstream",
        &format!("http://127.0.0.1:{}", stack.upstream),
    );
    for h in IDENTITY {
        assert!(locations.contains(&format!("proxy_set_header {h} ")), "{h}");
    }
    let port = run_nginx(&mut stack, &locations);
    stack.check_proxy(port);
}

/// An address of this host other than loopback (the one a packet to the outside would leave
/// from; nothing is sent), if it has one.
fn outward_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// DPoP (RFC 9449) through the documented nginx block as written: `auth_request` passes the
/// client's `Authorization: DPoP` and `DPoP` to `/auth`, with the original method, URI and
/// scheme. A valid proof made with jwtd-core (for the URL the client called) passes to the
/// upstream, which gets jwtd's `X-Auth-Jkt` and no `DPoP`; a proof for another method and
/// a replayed proof are refused 401 with the `DPoP` challenge, nothing upstream.
#[test]
fn nginx_snippet_checks_dpop_proofs() {
    let mut stack = Stack::start("nginx-dpop");
    let locations = snippet("nginx").replace(
        "http://upstream",
        &format!("http://127.0.0.1:{}", stack.upstream),
    );
    for h in [
        "proxy_set_header X-Original-URI    $request_uri;",
        "proxy_set_header X-Original-Method $request_method;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header DPoP \"\";",
    ] {
        assert!(locations.contains(h), "{h}");
    }
    let port = run_nginx(&mut stack, &locations);
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = key.public_jwk().unwrap().thumbprint().unwrap();
    let now = jwtd_core::unix_now();
    let token = jwtd_core::sign(
        &stack.partner,
        json!({"iss": "https://partner.example/", "sub": "dpop-client", "iat": now,
            "exp": now + 600, "cnf": {"jkt": jkt}})
        .as_object()
        .unwrap(),
        None,
    )
    .unwrap();
    // `http_request` sends `host: localhost`: nginx's $scheme and $host make the URL.
    let proof = |method: &str| {
        jwtd_core::make_proof(
            &key,
            &jwtd_core::ProofClaims {
                method,
                url: "http://localhost/orders",
                access_token: Some(&token),
                iat: jwtd_core::unix_now(),
                jti: None,
                nonce: None,
            },
        )
        .unwrap()
    };
    let auth = format!("DPoP {token}");
    let send = |proof: &str, auth: &str| {
        let before = stack.seen.lock().unwrap().len();
        let (status, headers, body) = crate::common::http_request(
            port,
            "GET",
            "/orders",
            &[
                ("authorization", auth),
                ("dpop", proof),
                ("x-auth-jkt", "spoofed-jkt"),
            ],
        );
        let heads = stack.seen.lock().unwrap()[before..].to_vec();
        (status, headers, body, heads)
    };
    let challenge = |headers: &[(String, String)]| {
        headers
            .iter()
            .filter(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    };

    // Valid: 200 upstream, jwtd's X-Auth-Jkt (not the client's), no DPoP header.
    let good = proof("GET");
    let (status, _, body, heads) = send(&good, &auth);
    assert_eq!(status, 200, "{body}");
    assert_eq!(heads.len(), 1);
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["x-auth-jkt"], json!([jkt]), "{seen}");
    assert_eq!(seen["x-auth-subject"], json!(["dpop-client"]), "{seen}");
    assert!(
        seen.get("dpop").is_none(),
        "the proof went upstream: {seen}"
    );

    // The same proof again: a replay, 401 with the DPoP challenge.
    let (status, headers, _, heads) = send(&good, &auth);
    assert_eq!(status, 401);
    assert!(heads.is_empty(), "a replay reached the upstream");
    let www = challenge(&headers);
    assert!(www.starts_with("DPoP "), "{www}");
    assert!(www.contains("error=\"invalid_dpop_proof\""), "{www}");

    // A proof for another method (htm): 401 with the challenge.
    let (status, headers, _, heads) = send(&proof("POST"), &auth);
    assert_eq!(status, 401);
    assert!(heads.is_empty());
    let www = challenge(&headers);
    assert!(www.starts_with("DPoP "), "{www}");
    assert!(www.contains("error=\"invalid_dpop_proof\""), "{www}");

    // The bound token as a bearer token (the downgrade): 401.
    let (status, headers, _, heads) = send(&proof("GET"), &format!("Bearer {token}"));
    assert_eq!(status, 401);
    assert!(heads.is_empty());
    assert!(challenge(&headers).contains("DPoP"), "{headers:?}");

    // Why, from jwtd itself (nginx's 401 page carries no body of jwtd's).
    let (status, _, body) = http_get(
        stack.jwtd,
        "/auth",
        &[
            ("authorization", &auth),
            ("dpop", &good),
            ("x-original-uri", "/orders"),
            ("x-original-method", "GET"),
            ("x-forwarded-proto", "http"),
        ],
    );
    assert_eq!(status, 401);
    assert!(body.contains("dpop_replay"), "{body}");
}

/// Starts Caddy on a free port with the documented site, jwtd's and the upstream's ports in
/// place of the docs'; returns the port.
fn run_caddy(stack: &mut Stack) -> u16 {
    let caddy = binary("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]);
    let port = free_port();
    let documented = snippet("caddyfile");
    // Loopback only, like the nginx test's server, jwtd and the upstream.
    assert!(
        documented.starts_with("http://:8000 {\n    bind 127.0.0.1\n"),
        "{documented}"
    );
    let site = documented
        .replace("http://:8000", &format!("http://:{port}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", stack.upstream))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", stack.jwtd));
    for h in IDENTITY {
        assert!(site.contains(&format!("request_header -{h}\n")), "{h}");
        let underscores = h.replace('-', "_");
        assert!(
            site.contains(&format!("request_header -{underscores}\n")),
            "{h}"
        );
    }
    // No admin endpoint (other tests may run Caddy too) and no certificates.
    let file = stack.dir.join("Caddyfile");
    std::fs::write(
        &file,
        format!("{{\n    admin off\n    auto_https off\n}}\n{site}"),
    )
    .unwrap();
    let log = std::fs::File::create(stack.dir.join("logs/caddy.log")).unwrap();
    let child = Command::new(&caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", &stack.dir)
        .env("XDG_CONFIG_HOME", stack.dir.join("config"))
        .env("XDG_DATA_HOME", stack.dir.join("data"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    stack.spawn(child, port);
    port
}

#[test]
fn caddy_snippet_lets_no_spoofed_identity_header_through() {
    // jwtd reads Caddy's RFC 9440 Client-Cert (review M4).
    let mut stack = Stack::with("caddy", "[forwarded]\nclient_cert = \"rfc9440\"\n");
    let port = run_caddy(&mut stack);
    stack.check_proxy(port);
    // A client's own Client-Cert, naming the certificate a stolen token is bound to: the
    // snippet removes it, so the token is refused.
    let der = [0x30, 0x03, 1, 2, 3];
    let thumbprint = jwtd_gate::mtls::encode_thumbprint(&jwtd_gate::mtls::thumbprint_of(&der));
    let bound = stack.idp_token(json!({"cnf": {"x5t#S256": thumbprint}}));
    let forged = format!(":{}:", crate::mtls::b64_std(&der));
    let auth = format!("Bearer {bound}");
    // Sent straight to jwtd from loopback (a trusted proxy), the header would be believed.
    let (status, _, body) = http_get(
        stack.jwtd,
        "/auth",
        &[("authorization", &auth), ("client-cert", &forged)],
    );
    assert_eq!(status, 200, "{body}");
    let before = stack.seen.lock().unwrap().len();
    let (status, _, body) = crate::common::http_request(
        port,
        "GET",
        "/orders",
        &[("authorization", &auth), ("client-cert", &forged)],
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(stack.seen.lock().unwrap().len(), before, "nothing upstream");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["reason"], "mtls_certificate_missing", "{body}");
    // Not on the host's other addresses: Caddy binds only 127.0.0.1.
    if let Some(ip) = outward_ip() {
        let far = std::net::SocketAddr::new(ip, port);
        assert!(
            std::net::TcpStream::connect_timeout(&far, std::time::Duration::from_secs(2)).is_err(),
            "the Caddy site answers on {far}"
        );
    }
}

/// The `toml` block of docs/integrations.md: the per-route rules the proxies are tested with.
fn documented_rules() -> &'static str {
    let rules = snippet("toml");
    assert!(rules.contains("[[rule]]"), "{rules}");
    rules
}

impl Stack {
    /// Requests through the proxy on `port` under [`documented_rules`]: each route decided by
    /// its own rule from the original method and path, spoofed identity headers never reaching
    /// an upstream. `admin_upstream`: whether `/admin/` goes to the second upstream (nginx's
    /// two locations) or the first (Caddy's one site).
    fn check_rules(&self, port: u16, admin_upstream: bool) {
        // (method, path, token) → (status, body, what each upstream saw)
        let send = |method: &str, path: &str, token: Option<String>| {
            let (status, _, body, heads) = self.send(port, method, path, token.as_deref(), false);
            (status, body, heads)
        };
        let subject = |body: &str| -> String {
            let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
            v["x-auth-subject"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let mfa = || Some(self.idp_token(json!({"amr": ["pwd", "mfa"]})));

        // Public: no token needed, nothing of the client's passes.
        let (status, body, heads) = send("GET", "/healthz", None);
        assert_eq!(status, 200, "{body}");
        assert_eq!((heads.0.len(), heads.1.len()), (1, 0));
        assert_eq!(subject(&body), "");

        // Orders: either issuer, GET only.
        for (token, sub) in [
            (self.partner_token(), "partner-svc"),
            (self.idp_token(json!({})), "alice"),
        ] {
            let (status, body, heads) = send("GET", "/orders/7", Some(token));
            assert_eq!(status, 200, "{body}");
            assert_eq!((heads.0.len(), heads.1.len()), (1, 0));
            assert_eq!(subject(&body), sub);
        }
        let (status, _, heads) = send("GET", "/orders/7", None);
        assert_eq!(status, 401);
        assert_eq!((heads.0.len(), heads.1.len()), (0, 0));
        // No rule takes DELETE /orders/7, nor /elsewhere: refused, whatever the token.
        for (method, path) in [("DELETE", "/orders/7"), ("GET", "/elsewhere")] {
            let (status, _, heads) = send(method, path, mfa());
            assert_eq!(status, 403, "{method} {path}");
            assert_eq!((heads.0.len(), heads.1.len()), (0, 0), "{method} {path}");
        }

        // Admin: idp only, with mfa in amr; on nginx, the second location's upstream.
        let admin_ok = |path: &str| {
            let (status, body, heads) = send("GET", path, mfa());
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(subject(&body), "alice");
            let to_admin = if admin_upstream { &heads.1 } else { &heads.0 };
            assert_eq!(to_admin.len(), 1, "{path} reached the admin upstream");
        };
        admin_ok("/admin/users");
        for (token, status) in [
            (self.idp_token(json!({})), 403),
            (self.idp_token(json!({"amr": ["pwd"]})), 403),
            (self.partner_token(), 401),
        ] {
            let (got, _, heads) = send("GET", "/admin/users", Some(token));
            assert_eq!(got, status);
            assert_eq!((heads.0.len(), heads.1.len()), (0, 0));
        }
        // A path that reaches /admin/ only once normalised is decided by the admin rule too.
        let (status, _, heads) = send("GET", "/orders/../admin/users", Some(self.partner_token()));
        assert_eq!(status, 401, "the admin rule decides /orders/../admin/users");
        assert_eq!((heads.0.len(), heads.1.len()), (0, 0));
        admin_ok("/orders/../admin/users");
    }
}

#[test]
fn nginx_two_locations_are_decided_by_their_own_rules() {
    let mut stack = Stack::with("nginx-rules", documented_rules());
    let server = snippet("nginx rules")
        .replace(
            "http://orders",
            &format!("http://127.0.0.1:{}", stack.upstream),
        )
        .replace("http://admin", &format!("http://127.0.0.1:{}", stack.admin));
    for h in IDENTITY {
        assert!(server.contains(&format!("proxy_set_header {h} ")), "{h}");
    }
    let port = run_nginx(&mut stack, &server);
    stack.check_rules(port, true);
}

#[test]
fn caddy_forwards_the_original_request_to_the_rules() {
    let mut stack = Stack::with("caddy-rules", documented_rules());
    let port = run_caddy(&mut stack);
    stack.check_rules(port, false);
}
