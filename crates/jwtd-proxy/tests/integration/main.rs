//! The proxy's integration tests in one binary: a real upstream (tests/integration/upstream.py,
//! Python's standard library) on 127.0.0.1, the proxy in this process on a listener of its
//! own, and clients speaking raw HTTP/1.1 over TCP (so the tests control every byte: chunked
//! bodies, hop-by-hop and spoofed headers, smuggling attempts, a WebSocket handshake, an
//! attacker's requests).

mod wire;

mod attack;
mod conformance;
mod forward;
mod lifecycle;
mod limits;
mod observe;
mod refuse;
mod smuggle;
mod upgrade;

use jwtd_gate::Engine;
use jwtd_proxy::{Limits, Options, Proxy};
use jwtd_test_support::{free_port, Guard};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The shared secret of the test issuer `corp`.
pub const SECRET: &[u8] = b"proxy-test-corp-secret-0123456789abcdef";

/// The test configuration: one issuer (`corp`, its `email` claim forwarded as
/// `X-Auth-Email`), `/public/**` open, everything else needs a `corp` token.
pub fn config(dir: &std::path::Path) -> String {
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    format!(
        r#"
[rules]
default = "deny"

[[issuer]]
name = "corp"
issuer = "https://corp.test"
secret_file = "{dir}/corp.secret"
algorithms = ["HS256"]
audiences = ["api"]
[issuer.headers]
x-auth-email = "email"

[[rule]]
id = "public"
path = "/public/**"
auth = "public"

[[rule]]
id = "all"
path = "/**"
auth = "corp"
"#,
        dir = dir.display()
    )
}

/// An engine over a configuration text.
pub fn engine_of(text: &str) -> Arc<Engine> {
    let config =
        jwtd_gate::config::GateConfig::parse(text, "test").unwrap_or_else(|e| panic!("{e}"));
    Arc::new(Engine::from_config(&config).unwrap())
}

/// The engine of [`config`].
pub fn engine() -> Arc<Engine> {
    engine_of(&config(&jwtd_test_support::temp_dir("proxy")))
}

/// A `corp` token for `sub`, with an `email`.
pub fn token(sub: &str) -> String {
    let now = jwtd_core::unix_now();
    jwtd_test_support::hs256(
        SECRET,
        &serde_json::json!({
            "iss": "https://corp.test", "sub": sub, "aud": "api", "iat": now, "exp": now + 300,
            "email": format!("{sub}@corp.test"),
        }),
    )
}

/// The Python upstream, killed when dropped.
pub struct Upstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _guard: Guard,
}

/// Starts the upstream and waits (10 s at most) until it listens. python3 missing fails the
/// test: it is never skipped.
pub fn upstream() -> Upstream {
    upstream_with(&[])
}

/// An HTTPS upstream (a leaf for `localhost` and 127.0.0.1 signed by a test CA made by
/// rcgen) and the CA's PEM file.
pub fn tls_upstream() -> (Upstream, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = jwtd_test_support::temp_dir("proxy-tls");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let up = upstream_with(&[cert.to_str().unwrap(), key.to_str().unwrap()]);
    (up, ca)
}

fn upstream_with(extra: &[&str]) -> Upstream {
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/upstream.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the test upstream (install python3)");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(vec![child]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream starts within 10 s");
    assert_eq!(line.trim(), "ready", "the upstream started");
    Upstream {
        port,
        _guard: guard,
    }
}

/// A proxy over `source` with `options`, on a loopback listener of its own.
pub async fn start_with<S: jwtd_proxy::EngineSource>(
    source: S,
    options: Options,
    limits: Limits,
) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let proxy = Proxy::new(source, options).unwrap();
    tokio::spawn(async move { jwtd_proxy::serve(proxy, l, &limits, std::future::pending()).await });
    addr
}

/// A proxy over [`engine`] forwarding to `upstream` with the defaults but for `tweak`.
pub async fn start(upstream: &Upstream, tweak: impl FnOnce(&mut Options)) -> SocketAddr {
    let mut options = Options::new(format!("http://127.0.0.1:{}", upstream.port));
    tweak(&mut options);
    start_with(engine(), options, Limits::default()).await
}
