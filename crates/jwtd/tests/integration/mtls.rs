//! Certificate-bound tokens (RFC 8705) through `jwtd serve` as a process: docs/mtls.md's
//! configuration as written (its files replaced by the test's), with a CA, a server
//! certificate and two client certificates made here (rcgen), and a real rustls client:
//! `/auth` over jwtd's own TLS listener (the right certificate, another, none; the thumbprint
//! cross-checked with OpenSSL, and docs/mtls.md's curl call over HTTP/2), a bound token
//! through a trusted proxy's `Client-Cert` header, the same header from a peer that is not
//! trusted (ignored), the proxy mode on its TLS listener (required client certificates, the
//! thumbprint header and `X-Forwarded-Proto: https` upstream, a client's `Client-Cert`
//! removed), and ext_authz with `attributes.source.certificate`.

use crate::common::{free_port, Guard};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"mtls-process-secret-0123456789abcdef-0123";

/// The ```toml block after `<!-- mtls-example -->` in docs/mtls.md.
fn doc_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mtls.md");
    let text = std::fs::read_to_string(path).unwrap();
    let after = text
        .split("<!-- mtls-example -->")
        .nth(1)
        .expect("the example marker in docs/mtls.md");
    let block = after.split("```toml\n").nth(1).unwrap();
    block.split("\n```").next().unwrap().to_owned()
}

/// A client's certificate: its DER, and its chain and key for rustls.
struct Client {
    der: Vec<u8>,
    pem: String,
    key: String,
}

impl Client {
    fn thumbprint(&self) -> String {
        jwtd_gate::mtls::encode_thumbprint(&jwtd_gate::mtls::thumbprint_of(&self.der))
    }
}

/// A CA, the server's certificate (localhost, 127.0.0.1) and two client certificates, the
/// server's files written into `dir/tls/` as the example names them.
fn pki(dir: &Path) -> (PathBuf, Client, Client) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (curl) reads a leaf named like its issuer as self-signed.
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jwtd test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.distinguished_name = rcgen::DistinguishedName::new();
    server
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let server = server.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(tls.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(tls.join("client-ca.pem"), ca.pem()).unwrap();
    std::fs::write(tls.join("server.pem"), server.pem()).unwrap();
    std::fs::write(tls.join("server.key"), server_key.serialize_pem()).unwrap();
    let client = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&key, &issuer).unwrap();
        Client {
            der: c.der().to_vec(),
            pem: c.pem(),
            key: key.serialize_pem(),
        }
    };
    (tls.join("ca.pem"), client("alice"), client("mallory"))
}

fn token(bound_to: Option<&Client>) -> String {
    let now = jwtd_core::unix_now();
    let mut claims = serde_json::json!({"iss": "https://idp.example.com", "sub": "alice",
        "aud": "api", "iat": now, "exp": now + 300});
    if let Some(c) = bound_to {
        claims["cnf"] = serde_json::json!({"x5t#S256": c.thumbprint()});
    }
    jwtd_test_support::hs256(SECRET, &claims)
}

/// An answer: status, lower-cased headers, body.
type Answer = (u16, Vec<(String, String)>, String);

/// One HTTP/1.1 request over TLS (rustls, trusting `ca`), with `cert` as the client
/// certificate; `Err` when the connection fails (a refused handshake).
fn tls_request(
    port: u16,
    ca: &Path,
    cert: Option<&Client>,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    tls_request_from(Ipv4Addr::LOCALHOST, port, ca, cert, path, headers)
}

/// [`tls_request`] from the source address `from` (any of 127.0.0.0/8: a trusted proxy and
/// a direct client on one host).
fn tls_request_from(
    from: Ipv4Addr,
    port: u16,
    ca: &Path,
    cert: Option<&Client>,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der.clone())],
                PrivateKeyDer::from_pem_slice(c.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = connect_from(from, port)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify after its answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {raw:?}")))?;
    let hs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, hs, body.to_owned()))
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.1.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn reason(a: &Answer) -> String {
    let v: serde_json::Value = serde_json::from_str(&a.2).unwrap_or_else(|_| panic!("{a:?}"));
    v["reason"].as_str().unwrap_or_default().to_owned()
}

/// Starts `jwtd serve` on `config` in `dir`; waits until `port` takes TLS connections.
fn serve(dir: &Path, config: &str, port: u16, ca: &Path) -> Guard {
    std::fs::write(dir.join("jwtd.toml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", "jwtd.toml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let guard = Guard(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tls_request(port, ca, None, "/healthz", &[])
        .map(|a| a.0)
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "jwtd did not answer over TLS: {}",
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

/// docs/mtls.md's example: `/auth` over jwtd's own TLS listener checks the binding against
/// the connection's client certificate, and against a trusted proxy's `Client-Cert`.
#[test]
fn the_documented_mtls_configuration_runs() {
    let dir = jwtd_test_support::temp_dir("serve-mtls");
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    let (ca, alice, mallory) = pki(&dir);
    let port = free_port();
    let config = doc_example().replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"));
    assert!(config.contains(&format!("127.0.0.1:{port}")), "{config}");
    let _jwtd = serve(&dir, &config, port, &ca);
    let bound = format!("Bearer {}", token(Some(&alice)));
    let plain = format!("Bearer {}", token(None));
    let auth = |cert: Option<&Client>, headers: &[(&str, &str)]| {
        tls_request(port, &ca, cert, "/auth", headers).unwrap()
    };

    // The right certificate: 200, and its thumbprint for the upstream.
    let a = auth(Some(&alice), &[("authorization", &bound)]);
    assert_eq!(a.0, 200, "{a:?}");
    assert_eq!(header(&a, "x-auth-subject"), Some("alice"));
    assert_eq!(
        header(&a, "x-auth-cert-thumbprint"),
        Some(alice.thumbprint().as_str())
    );
    // The thumbprint as OpenSSL computes it (an implementation other than jwtd's), and the
    // documented curl call over HTTP/2 with the client certificate.
    std::fs::write(dir.join("client.pem"), &alice.pem).unwrap();
    std::fs::write(dir.join("client.key"), &alice.key).unwrap();
    let sh = |script: &str| {
        let o = Command::new("sh")
            .args(["-c", script])
            .current_dir(&dir)
            .output()
            .expect("sh runs");
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let openssl = sh(
        "openssl x509 -in client.pem -outform DER | openssl dgst -sha256 -binary \
                      | base64 | tr '+/' '-_' | tr -d '=\n'",
    );
    assert_eq!(openssl, alice.thumbprint());
    let curl = sh(&format!(
        "curl -sS --http2 --resolve localhost:{port}:127.0.0.1 -D - -o /dev/null --cacert tls/ca.pem --cert client.pem --key client.key \
         -H 'Authorization: {bound}' https://localhost:{port}/auth"
    ));
    assert!(curl.starts_with("HTTP/2 200"), "{curl}");
    assert!(
        curl.contains(&format!("x-auth-cert-thumbprint: {openssl}")),
        "{curl}"
    );
    // Another certificate, or none: 401 invalid_token with the reason.
    let a = auth(Some(&mallory), &[("authorization", &bound)]);
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_mismatch")
    );
    assert!(header(&a, "www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    let a = auth(None, &[("authorization", &bound)]);
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_missing")
    );
    // An unbound token needs no certificate (enforce-cnf); the thumbprint header is empty.
    let a = auth(None, &[("authorization", &plain)]);
    assert_eq!(a.0, 200, "{a:?}");
    assert_eq!(header(&a, "x-auth-cert-thumbprint"), Some(""));

    // `/v1/verify` checks the binding as `/auth` does (review M2): against the connection's
    // certificate.
    let verify = |cert: Option<&Client>, token: &str| {
        tls_request(port, &ca, cert, "/v1/verify", &[("authorization", token)]).unwrap()
    };
    assert_eq!(verify(Some(&alice), &bound).0, 200);
    let a = verify(None, &bound);
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_missing")
    );
    let a = verify(Some(&mallory), &bound);
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_mismatch")
    );
    assert_eq!(verify(None, &plain).0, 200);
    // `/v1/tokens/{token}` is a bearer use with no proof: it never vouches for a bound token
    // (certificate- or DPoP-bound), even over a connection with the right certificate.
    let tokens = |cert: Option<&Client>, token: &str| {
        tls_request(port, &ca, cert, &format!("/v1/tokens/{token}"), &[]).unwrap()
    };
    let a = tokens(Some(&alice), bound.trim_start_matches("Bearer "));
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_missing")
    );
    assert_eq!(tokens(None, plain.trim_start_matches("Bearer ")).0, 200);
    let now = jwtd_core::unix_now();
    let jkt_bound = jwtd_test_support::hs256(
        SECRET,
        &serde_json::json!({"iss": "https://idp.example.com", "sub": "alice", "aud": "api",
            "iat": now, "exp": now + 300, "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
    );
    let a = tokens(None, &jkt_bound);
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "dpop_token_bound_as_bearer")
    );
    assert!(header(&a, "www-authenticate").unwrap().contains("DPoP"));

    // From 127.0.0.2 (trusted_proxies, the front), a forwarded Client-Cert is the
    // certificate: it passes without a TLS client certificate, and wins over the
    // connection's own.
    let front = Ipv4Addr::new(127, 0, 0, 2);
    let proxied = |cert: Option<&Client>, headers: &[(&str, &str)]| {
        tls_request_from(front, port, &ca, cert, "/auth", headers).unwrap()
    };
    let forwarded = format!(":{}:", b64_std(&alice.der));
    let a = proxied(
        None,
        &[("authorization", &bound), ("client-cert", &forwarded)],
    );
    assert_eq!(a.0, 200, "{a:?}");
    let a = proxied(
        Some(&mallory),
        &[("authorization", &bound), ("client-cert", &forwarded)],
    );
    assert_eq!(a.0, 200, "{a:?}");
    // Without the header, the front's client had no certificate: the front's own TLS
    // certificate never stands in for it (second review, M2).
    let a = proxied(Some(&alice), &[("authorization", &bound)]);
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_missing")
    );
    let a = proxied(
        None,
        &[("authorization", &bound), ("client-cert", ":bm90IGRlcg==:")],
    );
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_bad_forwarded_certificate")
    );
    drop(_jwtd);

    // The same header from a peer that is not a trusted proxy: ignored.
    let port = free_port();
    let untrusted = doc_example()
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .replace("trusted_proxies = [\"127.0.0.2\"]", "trusted_proxies = []")
        .replace(
            "[tls]\n",
            "[server]\nheader_read_timeout = \"1s\"\n\n[tls]\n",
        );
    assert!(untrusted.contains("trusted_proxies = []"));
    assert!(untrusted.contains("header_read_timeout"));
    let _jwtd = serve(&dir, &untrusted, port, &ca);
    // A connection that never starts its handshake is closed at the header deadline.
    closed_within(port, Duration::from_secs(3));
    let a = tls_request(
        port,
        &ca,
        None,
        "/auth",
        &[("authorization", &bound), ("client-cert", &forwarded)],
    )
    .unwrap();
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_missing")
    );
    let a = tls_request(
        port,
        &ca,
        Some(&mallory),
        "/auth",
        &[("authorization", &bound), ("client-cert", &forwarded)],
    )
    .unwrap();
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_mismatch")
    );
}

/// Standard base64 with padding (RFC 8941 byte sequences).
pub(crate) fn b64_std(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A TCP connection that sends nothing is closed by the server within `limit`.
fn closed_within(port: u16, limit: Duration) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(limit + Duration::from_secs(2)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server sent bytes to a silent client");
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
}

fn received(a: &Answer, name: &str) -> Vec<String> {
    let echo: serde_json::Value =
        serde_json::from_str(header(a, "x-echo").expect("X-Echo")).unwrap();
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect()
}

/// The proxy mode on a TLS listener that requires client certificates, and ext_authz's
/// `source.certificate`, in one `jwtd serve` (the API on cleartext HTTP).
#[test]
fn proxy_tls_listener_and_ext_authz_check_the_binding() {
    use jwtd_extauthz::envoy_types::pb::envoy::service::auth::v3::{
        attribute_context::{HttpRequest, Peer, Request},
        authorization_client::AuthorizationClient,
        AttributeContext, CheckRequest,
    };
    let dir = jwtd_test_support::temp_dir("serve-mtls-proxy");
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    let (ca, alice, mallory) = pki(&dir);
    let (up, _upstream) = crate::common::proxy_upstream();
    let (port, proxy, grpc) = (free_port(), free_port(), free_port());
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\ntrusted_proxies = []\n\
         [forwarded]\nclient_cert = \"rfc9440\"\n\
         [proxy]\nlisten = \"127.0.0.1:{proxy}\"\n\
         [proxy.tls]\ncert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\n\
         client_ca_file = \"tls/client-ca.pem\"\nclient_auth = \"required\"\n\
         [upstream]\nurl = \"http://127.0.0.1:{up}\"\n\
         [server]\nheader_read_timeout = \"1s\"\n\
         [ext_authz]\nlisten = \"127.0.0.1:{grpc}\"\n\
         [[issuer]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\n\
         secret_file = \"corp.secret\"\nalgorithms = [\"HS256\"]\naudiences = [\"api\"]\n"
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
    let _jwtd = Guard(vec![child]);
    crate::common::wait_for_http(port);
    let bound = format!("Bearer {}", token(Some(&alice)));
    let plain = format!("Bearer {}", token(None));
    let forwarded = format!(":{}:", b64_std(&alice.der));

    // The right certificate: forwarded with its thumbprint, as https.
    let a = tls_request(
        proxy,
        &ca,
        Some(&alice),
        "/orders",
        &[("authorization", &bound)],
    )
    .unwrap();
    assert_eq!(a.0, 200, "{a:?}");
    assert_eq!(received(&a, "x-auth-cert-thumbprint"), [alice.thumbprint()]);
    assert_eq!(received(&a, "x-forwarded-proto"), ["https"]);
    // Another one: refused by jwtd, the upstream never asked.
    let a = tls_request(
        proxy,
        &ca,
        Some(&mallory),
        "/orders",
        &[("authorization", &bound)],
    )
    .unwrap();
    assert_eq!(
        (a.0, reason(&a).as_str()),
        (401, "mtls_certificate_mismatch")
    );
    assert!(header(&a, "x-echo").is_none());
    // client_auth = "required": no certificate, no connection.
    assert!(tls_request(proxy, &ca, None, "/orders", &[("authorization", &plain)]).is_err());
    // A silent connection is closed at the header deadline, handshake or not.
    closed_within(proxy, Duration::from_secs(3));
    // A client's Client-Cert (not a trusted proxy) neither counts nor reaches the upstream;
    // nor does its own X-Auth-Cert-Thumbprint.
    let a = tls_request(
        proxy,
        &ca,
        Some(&mallory),
        "/orders",
        &[
            ("authorization", &plain),
            ("client-cert", &forwarded),
            ("x-auth-cert-thumbprint", &alice.thumbprint()),
        ],
    )
    .unwrap();
    assert_eq!(a.0, 200, "{a:?}");
    assert!(received(&a, "client-cert").is_empty(), "{a:?}");
    assert_eq!(
        received(&a, "x-auth-cert-thumbprint"),
        [mallory.thumbprint()]
    );

    // ext_authz: Envoy's source.certificate decides; no header is read.
    let check = |cert: &str, auth: &str, extra: Option<(&str, &str)>| {
        let mut headers = std::collections::HashMap::new();
        headers.insert("authorization".to_string(), auth.to_string());
        if let Some((n, v)) = extra {
            headers.insert(n.to_string(), v.to_string());
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    certificate: cert.to_string(),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        host: "api.test".into(),
                        path: "/orders".into(),
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
        let code = |r: &jwtd_extauthz::envoy_types::pb::envoy::service::auth::v3::CheckResponse| {
            r.status.as_ref().unwrap().code
        };
        let meta_reason =
            |r: &jwtd_extauthz::envoy_types::pb::envoy::service::auth::v3::CheckResponse| {
                use jwtd_extauthz::envoy_types::pb::google::protobuf::value::Kind;
                match r
                    .dynamic_metadata
                    .as_ref()
                    .and_then(|m| m.fields.get("reason"))
                    .and_then(|v| v.kind.as_ref())
                {
                    Some(Kind::StringValue(s)) => s.clone(),
                    _ => String::new(),
                }
            };
        let r = c
            .check(check(&url_encode(&alice.pem), &bound, None))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r), 0, "{r:?}");
        let r = c
            .check(check(&url_encode(&mallory.pem), &bound, None))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (code(&r), meta_reason(&r).as_str()),
            (16, "mtls_certificate_mismatch")
        );
        // No certificate from Envoy: a forwarded header does not stand in for it.
        let r = c
            .check(check("", &bound, Some(("client-cert", &forwarded))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (code(&r), meta_reason(&r).as_str()),
            (16, "mtls_certificate_missing")
        );
    });
}

/// TLS files that cannot be used, and `client_auth` without a CA, stop `jwtd serve` with exit 2
/// naming the key and the file, before it serves anything.
#[test]
fn tls_configuration_errors_exit_2_naming_the_file() {
    let dir = jwtd_test_support::temp_dir("serve-mtls-errors");
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    let (_ca, _, _) = pki(&dir);
    let issuer = "[[issuer]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\n\
                  secret_file = \"corp.secret\"\nalgorithms = [\"HS256\"]\naudiences = [\"api\"]\n";
    let run = |config: &str| {
        std::fs::write(dir.join("jwtd.toml"), config).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_jwtd"))
            .args(["serve", "--config", "jwtd.toml"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"tls/missing.pem\"\nkey_file = \"tls/server.key\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("[tls] cert_file tls/missing.pem"), "{err}");
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"tls/server.pem\"\nkey_file = \"tls/server.pem\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("[tls] key_file tls/server.pem"), "{err}");
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\n\
         client_auth = \"required\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("jwtd.toml:2: [tls] client_auth needs client_ca_file"),
        "{err}"
    );
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[proxy]\nlisten = \"127.0.0.1:0\"\n[proxy.tls]\n\
         cert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\nclient_ca_file = \"tls/none.pem\"\n\
         [upstream]\nurl = \"http://127.0.0.1:9\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("[proxy.tls] client_ca_file tls/none.pem"),
        "{err}"
    );
}

/// A blocking TCP connection to 127.0.0.1:`port` from the source address `from`.
fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((from, 0).into())?;
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            socket.connect((Ipv4Addr::LOCALHOST, port).into()),
        )
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.into_std()
    })?;
    tcp.set_nonblocking(false)?;
    Ok(tcp)
}
