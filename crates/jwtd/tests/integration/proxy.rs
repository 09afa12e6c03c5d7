//! `[proxy]` and `[upstream]` as a `jwtd serve` process: the example configuration of
//! docs/proxy.md as written (its addresses and secret replaced by the test's), in front of the
//! Python upstream of jwtd-proxy's tests: allowed requests reach it with jwtd's identity
//! headers and none of the client's, refusals come from jwtd, a SIGHUP reload swaps the rules
//! the proxy decides with, SIGTERM drains it; configuration errors exit 2 with their line.

use crate::common::{free_port, http_request, wait_for_http, Guard};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"proxy-process-secret-0123456789abcdef-01";

/// The ```toml block after `<!-- proxy-example -->` in docs/proxy.md.
fn doc_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/proxy.md");
    let text = std::fs::read_to_string(path).unwrap();
    let after = text
        .split("<!-- proxy-example -->")
        .nth(1)
        .expect("the example marker in docs/proxy.md");
    let block = after.split("```toml\n").nth(1).unwrap();
    block.split("\n```").next().unwrap().to_owned()
}

fn token(sub: &str) -> String {
    let now = jwtd_core::unix_now();
    jwtd_test_support::hs256(
        SECRET,
        &serde_json::json!({"iss": "https://corp.example", "sub": sub, "aud": "api",
            "iat": now, "exp": now + 300, "email": format!("{sub}@corp.example")}),
    )
}

/// What the upstream received, from its `X-Echo` answer header.
fn echo(headers: &[(String, String)]) -> serde_json::Value {
    let v = &headers
        .iter()
        .find(|(n, _)| n == "x-echo")
        .expect("X-Echo")
        .1;
    serde_json::from_str(v).unwrap()
}

fn received<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap())
        .collect()
}

fn kill(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn the_documented_proxy_configuration_runs() {
    let dir = jwtd_test_support::temp_dir("serve-proxy");
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    let (up, _upstream) = crate::common::proxy_upstream();
    let (port, proxy) = (free_port(), free_port());
    let config = doc_example()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{proxy}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{up}"));
    assert!(config.contains(&format!("127.0.0.1:{up}")), "{config}");
    std::fs::write(dir.join("jwtd.toml"), &config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", "jwtd.toml"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut guard = Guard(vec![child]);
    wait_for_http(port);
    // The proxy's listener was bound before the API's answered.
    let t = token("alice");
    let auth = format!("Bearer {t}");
    let (status, headers, _) = http_request(
        proxy,
        "GET",
        "/orders/42?x=1",
        &[
            ("authorization", &auth),
            ("x-auth-subject", "admin"),
            ("x-auth-email", "x@y"),
        ],
    );
    assert_eq!(status, 200);
    let e = echo(&headers);
    assert_eq!(e["path"], "/orders/42?x=1");
    assert_eq!(received(&e, "x-auth-subject"), ["alice"]);
    assert_eq!(received(&e, "x-auth-email"), ["alice@corp.example"]);
    assert_eq!(received(&e, "x-forwarded-for"), ["127.0.0.1"]);
    // Refused by jwtd, as /auth answers.
    let (status, headers, body) = http_request(proxy, "GET", "/orders/42", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(headers.iter().all(|(n, _)| n != "x-echo"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], "missing_token");
    let (status, _, _) = http_request(proxy, "GET", "/healthz", &[]);
    assert_eq!(status, 200, "the public rule");
    // The proxy's decisions are counted with /auth's.
    let (_, _, metrics) = http_request(port, "GET", "/metrics", &[]);
    let counted = |outcome: &str| {
        metrics.lines().any(|l| {
            l.starts_with("jwtd_decisions_total")
                && l.contains("rule=\"app\"")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(counted("allowed") && counted("denied"), "{metrics}");

    // A reload swaps the rules: /healthz now needs a token too.
    std::fs::write(
        dir.join("jwtd.toml"),
        config.replace("auth = \"public\"", "auth = \"corp\""),
    )
    .unwrap();
    kill(guard.0[0].id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_request(proxy, "GET", "/healthz", &[]).0 != 401 {
        assert!(Instant::now() < deadline, "the reload reached the proxy");
        std::thread::sleep(Duration::from_millis(50));
    }

    // SIGTERM: both listeners close, the process exits 0.
    let started = Instant::now();
    kill(guard.0[0].id(), "-TERM");
    assert!(guard.0[0].wait().unwrap().success());
    guard.0.clear();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(std::net::TcpStream::connect(("127.0.0.1", proxy)).is_err());
}

/// `[proxy]` and `[upstream]` problems are refused at load, each on its line; a taken proxy
/// port exits 2 naming the key.
#[test]
fn proxy_configuration_errors_name_their_line() {
    let dir = jwtd_test_support::temp_dir("serve-proxy-errors");
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    let issuer = "[[issuer]]\nname = \"corp\"\nissuer = \"https://corp.example\"\n\
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
        "listen = \"127.0.0.1:0\"\n[proxy]\nlisten = \"127.0.0.1:0\"\n[upstream]\n\
         url = \"ftp://app\"\nconnect_timeout = \"1ms\"\nmax_idle_per_host = 20000\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    for want in [
        "jwtd.toml:5: upstream: url \"ftp://app\" must start with http:// or https://",
        "jwtd.toml:6: upstream: connect_timeout 1ms is outside 10ms..=5m",
        "jwtd.toml:7: upstream: max_idle_per_host 20000 is outside 0..=10000",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[proxy]\nlisten = \"127.0.0.1:0\"\nbody_timeout = \"5ms\"\n\
         tunnel_idle_timeout = \"2d\"\ntunnel_max_lifetime = \"8days\"\n\
         [upstream]\nurl = \"http://127.0.0.1:1\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    for want in [
        "jwtd.toml:4: proxy: body_timeout 5ms is outside 10ms..=1h",
        "jwtd.toml:5: proxy: tunnel_idle_timeout 2days is outside 10ms..=1day",
        "jwtd.toml:6: proxy: tunnel_max_lifetime 8days is outside 10ms..=7days",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[proxy]\nlisten = \"127.0.0.1:0\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("[proxy] needs an [upstream] url"), "{err}");
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("[upstream] is used only with [proxy]"),
        "{err}"
    );
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[proxy]\nlisten = \"127.0.0.1:0\"\n[upstream]\n\
         url = \"https://127.0.0.1:1\"\nca_file = \"corp.secret\"\n{issuer}"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ca_file"),
        "a ca_file without a certificate: {err}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, err) = run(&format!(
        "listen = \"127.0.0.1:0\"\n[proxy]\nlisten = \"{}\"\n[upstream]\n\
         url = \"http://127.0.0.1:1\"\n{issuer}",
        taken.local_addr().unwrap()
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("([proxy] listen)"), "{err}");
}
