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

/// The `X-Request-Id` of an answer.
fn request_id(headers: &[(String, String)]) -> String {
    let ids: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "x-request-id")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one X-Request-Id: {headers:?}");
    ids[0].to_owned()
}

/// The proxy of a `jwtd serve` process as /auth is observed: every answer (allowed, refused,
/// 502) carries an `X-Request-Id` the upstream got too, a client's only with
/// `trust_request_id` (swapped by a reload); `jwtd_requests_total{endpoint="proxy"}` and
/// `jwtd_request_duration_seconds{endpoint="proxy"}` on /metrics; a refusal logged with its
/// request id and the token's fingerprint, never the token; a 502 logged with its id.
#[test]
fn proxy_requests_carry_request_ids_and_are_counted_and_logged() {
    let dir = jwtd_test_support::temp_dir("serve-proxy-observe");
    std::fs::write(dir.join("corp.secret"), SECRET).unwrap();
    let (up, mut upstream) = crate::common::proxy_upstream();
    let (port, proxy) = (free_port(), free_port());
    let config = format!("log_format = \"json\"\n{}", doc_example())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{proxy}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{up}"));
    std::fs::write(dir.join("jwtd.toml"), &config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", "jwtd.toml"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let guard = Guard(vec![child]);
    wait_for_http(port);
    let auth = format!("Bearer {}", token("alice"));

    // Untrusted: the client's id replaced, to the upstream and back.
    let (status, headers, _) = http_request(
        proxy,
        "GET",
        "/orders/1",
        &[("authorization", &auth), ("x-request-id", "client-1")],
    );
    assert_eq!(status, 200);
    let allowed = request_id(&headers);
    assert!(allowed.starts_with("jwtd-"), "{allowed}");
    assert_eq!(
        received(&echo(&headers), "x-request-id"),
        [allowed.as_str()]
    );
    // Refused, with a token signed by another key.
    let forged = jwtd_test_support::hs256(
        b"another-secret-0123456789abcdef-0123456789",
        &serde_json::json!({"iss": "https://corp.example", "sub": "mallory", "aud": "api",
            "exp": jwtd_core::unix_now() + 300}),
    );
    let bearer = format!("Bearer {forged}");
    let (status, headers, _) =
        http_request(proxy, "GET", "/orders/1", &[("authorization", &bearer)]);
    assert_eq!(status, 401);
    let refused = request_id(&headers);
    assert!(
        refused.starts_with("jwtd-") && refused != allowed,
        "{refused}"
    );
    // /auth and the proxy share one generator: ids never repeat across them.
    let (_, headers, _) = http_request(port, "GET", "/auth", &[("authorization", &auth)]);
    let auth_id = request_id(&headers);
    assert!(![&allowed, &refused].contains(&&auth_id), "{auth_id}");

    // A reload to trust_request_id: the client's id both ways.
    std::fs::write(
        dir.join("jwtd.toml"),
        format!("trust_request_id = true\n{config}"),
    )
    .unwrap();
    kill(guard.0[0].id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, _) =
            http_request(proxy, "GET", "/healthz", &[("x-request-id", "client-2")]);
        if status == 200 && request_id(&headers) == "client-2" {
            break;
        }
        assert!(Instant::now() < deadline, "the reload reached the proxy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, headers, _) = http_request(
        proxy,
        "GET",
        "/orders/3",
        &[("authorization", &auth), ("x-request-id", "client-3")],
    );
    assert_eq!(status, 200);
    assert_eq!(request_id(&headers), "client-3");
    assert_eq!(received(&echo(&headers), "x-request-id"), ["client-3"]);

    // The upstream gone: 502 with an id, logged with it.
    for c in &mut upstream.0 {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let (status, headers, _) = http_request(proxy, "GET", "/orders/2", &[("authorization", &auth)]);
    assert_eq!(status, 502);
    let failed = request_id(&headers);
    assert!(failed.starts_with("jwtd-"), "{failed}");

    let (_, _, metrics) = http_request(port, "GET", "/metrics", &[]);
    let line = |want: &[&str]| {
        metrics
            .lines()
            .find(|l| want.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("a line with {want:?} in {metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let total = "jwtd_requests_total{";
    let proxy_ep = "endpoint=\"proxy\"";
    assert_eq!(
        line(&[total, proxy_ep, "issuer=\"corp\"", "outcome=\"ok\""]),
        2.0
    );
    assert_eq!(
        line(&[
            total,
            proxy_ep,
            "outcome=\"rejected\"",
            "reason=\"bad_signature\""
        ]),
        1.0
    );
    assert_eq!(
        line(&[
            total,
            proxy_ep,
            "outcome=\"failed\"",
            "reason=\"upstream_unavailable\""
        ]),
        1.0
    );
    // Besides those four, the reload's probes of /healthz (public: issuer "-").
    assert!(line(&[total, proxy_ep, "issuer=\"-\"", "outcome=\"ok\""]) >= 1.0);
    assert!(line(&["jwtd_request_duration_seconds_count{", proxy_ep]) >= 5.0);

    // Logs: the refusal with its id, reason and the token's fingerprint; the 502 with its id.
    let log = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(!log.contains(&forged) && !log.contains(&auth[7..]), "{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let with_id = |id: &str| {
        events
            .iter()
            .find(|e| e.to_string().contains(&format!("\"request_id\":\"{id}\"")))
            .unwrap_or_else(|| panic!("a line with request id {id} in {log}"))
            .to_string()
    };
    let rejected = with_id(&refused);
    assert!(
        rejected.contains("bad_signature") && rejected.contains("\"endpoint\":\"proxy\""),
        "{rejected}"
    );
    // The fingerprint: the first 12 hex digits of the token's SHA-256.
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:12])",
        ])
        .arg(&forged)
        .output()
        .unwrap();
    let fp = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(fp.len(), 12);
    assert!(rejected.contains(&fp), "the fingerprint {fp} in {rejected}");
    assert!(with_id(&failed).contains("upstream request failed"));
}
