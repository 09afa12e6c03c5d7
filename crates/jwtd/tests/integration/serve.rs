//! `jwtd serve` as a process: the embedded default (the README's first command: mint, verify,
//! revoke), configuration errors at start, SIGHUP reload (a broken file keeps the running
//! configuration), SIGTERM drains and exits; the `[server]` limits: slow and idle clients by
//! the thousand neither starve requests nor outlive their deadlines, body limits and timeouts,
//! and a shutdown bounded by its drain deadline with stuck clients; the client samples in
//! `examples/clients` against a real `jwtd serve` (`clients`).

mod clients;
mod package;

use crate::common::{free_port, http_get, http_post, wait_for_http, Guard};
use jwtd_core::{Algorithm, Jwks, SigningKey};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config(port: u16, jwks: &std::path::Path, audiences: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\n[[issuer]]\nname = \"idp\"\nissuer = \"https://idp.example/\"\njwks_file = \"{}\"\nalgorithms = [\"ES256\"]\naudiences = {audiences}\n",
        jwks.display()
    )
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn embedded_default_mints_verifies_and_revokes() {
    let dir = std::env::temp_dir().join(format!("jwtd-serve-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .env_remove("JWTD_KEK")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = Guard(vec![child]);
    wait_for_http(port);
    // Once it serves: the banner, and the first key as a sentence (not `Created("…", Active)`).
    let log = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(log.contains("mint a token"), "{log}");
    assert!(
        log.contains("key ring: created a key that signs now") && !log.contains("Created("),
        "{log}"
    );
    let admin = std::fs::read_to_string(dir.join("jwtd-data/admin.key")).unwrap();
    let admin = admin.trim();
    let (status, body) = http_post(
        port,
        "/v1/tokens",
        admin,
        r#"{"sub":"alice","aud":"my-api","ttl":"10m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let minted: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let (status, _, _) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 200);
    // A token minted for a partner is not accepted by the embedded issuer (finding 7).
    let (status, body) = http_post(
        port,
        "/v1/tokens",
        admin,
        r#"{"sub":"alice","aud":"partner-42","ttl":"10m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let partner: serde_json::Value = serde_json::from_str(&body).unwrap();
    let partner = format!("Bearer {}", partner["token"].as_str().unwrap());
    let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &partner)]);
    assert_eq!(status, 401);
    assert!(body.contains("\"reason\":\"wrong_audience\""), "{body}");
    let (status, body) = http_post(port, "/v1/revocations", admin, r#"{"sub":"alice"}"#);
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 401);
    assert!(body.contains("\"reason\":\"revoked\""), "{body}");
    // The data directory is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("jwtd-data"), 0o700);
    assert_eq!(mode("jwtd-data/keys.db"), 0o600);
    assert_eq!(mode("jwtd-data/admin.key"), 0o600);
    signal(pid, "-TERM");
    let status = guard.0[0].wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Finding 1 (High), as a user meets it: `echo "$UNSET" > admin.key` (an empty key, or a newline)
/// must not switch admin authentication off: `jwtd serve` and `jwtd config check` refuse it.
#[test]
fn an_empty_admin_key_file_is_refused_by_serve_and_config_check() {
    let dir = std::env::temp_dir().join(format!("jwtd-serve-emptykey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("jwtd-data")).unwrap();
    let cfg = dir.join("jwtd.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{}\"\n[admin]\napi_key_file = \"{}\"\n[signing]\ndata_dir = \"{}\"\n",
            free_port(),
            dir.join("admin.key").display(),
            dir.join("jwtd-data").display()
        ),
    )
    .unwrap();
    for content in ["", "\n", "short-key\n"] {
        std::fs::write(dir.join("admin.key"), content).unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_jwtd"))
            .args(["config", "check"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(check.status.code(), Some(2), "{content:?}");
        assert!(String::from_utf8_lossy(&check.stderr).contains("admin api key"));
        let serve = Command::new(env!("CARGO_BIN_EXE_jwtd"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("JWTD_KEK")
            .output()
            .unwrap();
        assert_eq!(serve.status.code(), Some(2), "{content:?}");
        assert!(String::from_utf8_lossy(&serve.stderr).contains("admin api key"));
        assert!(
            !dir.join("jwtd-data/kek.key").exists(),
            "refused before any KEK or key was created"
        );
    }
    // The embedded default, too: an emptied jwtd-data/admin.key is refused, not trusted.
    std::fs::write(dir.join("jwtd-data/admin.key"), "\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .current_dir(&dir)
        .env_remove("JWTD_KEK")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("empty"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_config_at_start_exits_2_with_the_line() {
    let dir = std::env::temp_dir().join(format!("jwtd-serve-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("broken.toml");
    std::fs::write(&f, "listen = \"127.0.0.1:1\"\n\n[[issuer]]\nname = \"x\"\nalgorithms = [\"HS256\", \"none\"]\nsecret_env = \"S\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.toml:5:"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.toml:5:"));
}

#[test]
fn sighup_reloads_and_sigterm_drains() {
    let dir = std::env::temp_dir().join(format!("jwtd-serve-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&Jwks::from_keys(key.public_jwk())).unwrap(),
    )
    .unwrap();
    let port = free_port();
    let cfg = dir.join("jwtd.toml");
    std::fs::write(&cfg, config(port, &jwks, "[\"api\"]")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = Guard(vec![child]);
    wait_for_http(port);
    let now = jwtd_core::unix_now();
    let c = serde_json::json!({"iss": "https://idp.example/", "aud": "billing", "sub": "a", "exp": now + 600});
    let auth = format!(
        "Bearer {}",
        jwtd_core::sign(&key, c.as_object().unwrap(), None).unwrap()
    );
    let status = || http_get(port, "/v1/verify", &[("authorization", &auth)]).0;
    assert_eq!(status(), 401);
    // A valid change, then SIGHUP: the new audience is accepted.
    std::fs::write(&cfg, config(port, &jwks, "[\"api\", \"billing\"]")).unwrap();
    signal(pid, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status() != 200 {
        assert!(Instant::now() < deadline, "reload never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken file, then SIGHUP: the running configuration stays.
    std::fs::write(&cfg, "this is not toml =").unwrap();
    signal(pid, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(), 200);
    // SIGTERM: exits cleanly.
    signal(pid, "-TERM");
    let mut child = guard.0.pop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `jwtd serve` with `[server]` settings, an issuer and a valid bearer header.
struct Limited {
    port: u16,
    pid: u32,
    guard: Guard,
    bearer: String,
}

fn start_limited(name: &str, server: &str) -> Limited {
    let dir = std::env::temp_dir().join(format!("jwtd-serve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&Jwks::from_keys(key.public_jwk())).unwrap(),
    )
    .unwrap();
    let port = free_port();
    let cfg = dir.join("jwtd.toml");
    std::fs::write(
        &cfg,
        format!("{}\n[server]\n{server}\n", config(port, &jwks, "[\"api\"]")),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = Guard(vec![child]);
    wait_for_http(port);
    let now = jwtd_core::unix_now();
    let c = serde_json::json!({"iss": "https://idp.example/", "aud": "api", "sub": "a", "exp": now + 600});
    let bearer = format!(
        "Bearer {}",
        jwtd_core::sign(&key, c.as_object().unwrap(), None).unwrap()
    );
    Limited {
        port,
        pid,
        guard,
        bearer,
    }
}

/// Held by each test that opens a connection flood, so two floods (each with a latency bound)
/// never share the two cores: a flood test measures the server next to its own slow clients,
/// not next to another test's thousand.
static FLOODS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes sure this process may open `n` descriptors (raising the soft limit up to the hard
/// one); fails rather than skips when it cannot. Returns the flood lock ([`FLOODS`]), to hold
/// for the test.
fn allow_open_files(n: libc::rlim_t) -> std::sync::MutexGuard<'static, ()> {
    let flood = FLOODS.lock().unwrap_or_else(|e| e.into_inner());
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            lim.rlim_cur = lim.rlim_max.min(n);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= n,
        "this test needs {n} open files; the hard limit is {}",
        lim.rlim_max
    );
    flood
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Whether the server closed `s` before `deadline` (EOF or reset; `false` if it stayed open).
fn closed_by(mut s: &std::net::TcpStream, deadline: Instant) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error answer (408, 400) before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

const SLOW_CLIENTS: usize = 1000;

#[test]
fn slow_header_clients_do_not_starve_requests() {
    use std::io::Write;
    let _flood = allow_open_files(SLOW_CLIENTS as libc::rlim_t + 256);
    let max_connections = 100;
    let s = start_limited(
        "slow-headers",
        &format!("max_connections = {max_connections}\nheader_read_timeout = \"2s\"\nidle_timeout = \"2s\"\n"),
    );
    let baseline = open_fds(s.pid);
    // 1,000 clients that start a request header and never finish it, ten times the cap.
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let _ = c.write_all(b"GET /v1/verify HTTP/1.1\r\nhost: localhost\r\nx-slow: ");
        slow.push(c);
    }
    let opened = Instant::now();
    // They trickle a byte every 200 ms (which must not extend their deadline) while normal
    // requests keep arriving: every one is answered, promptly.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let mut conns: Vec<_> = slow.iter().map(|c| c.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &mut conns {
                    let _ = c.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut most_fds = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let t = Instant::now();
        let (status, _, body) = http_get(s.port, "/v1/verify", &[("authorization", &s.bearer)]);
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200, "{body}");
        most_fds = most_fds.max(open_fds(s.pid));
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!(
        "{SLOW_CLIENTS} slow clients, cap {max_connections}: slowest of 40 requests {slowest:?}, \
         at most {most_fds} descriptors open (baseline {baseline})"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?} next to {SLOW_CLIENTS} slow clients"
    );
    // The server never held much more than the cap (plus one batch being closed).
    assert!(
        most_fds <= baseline + max_connections + 2 * 32 + 8,
        "{most_fds} descriptors open (baseline {baseline}, cap {max_connections})"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    // Every slow client is closed by the header deadline (2 s from its accept), trickle or not.
    let deadline = opened + Duration::from_secs(2) + Duration::from_secs(3);
    let still_open = slow.iter().filter(|c| !closed_by(c, deadline)).count();
    assert_eq!(still_open, 0, "slow clients the server never closed");
    drop(s.guard);
}

/// Review of finding 5: clients that send a header and then trickle a body (a request "in
/// progress" from the header on) must not hold every slot: a body still arriving is bounded by
/// the header deadline and its connection may be evicted at the cap.
#[test]
fn slow_body_clients_do_not_starve_requests() {
    use std::io::Write;
    let _flood = allow_open_files(SLOW_CLIENTS as libc::rlim_t + 256);
    let max_connections = 50;
    let s = start_limited(
        "slow-bodies",
        &format!("max_connections = {max_connections}\nheader_read_timeout = \"2s\"\nrequest_timeout = \"60s\"\n"),
    );
    // Five times the cap, each with a header in and a 60,000-byte body announced.
    let mut slow = Vec::new();
    for _ in 0..5 * max_connections {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let _ = c.write_all(
            b"POST /v1/verify HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{",
        );
        slow.push(c);
    }
    let opened = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let mut conns: Vec<_> = slow.iter().map(|c| c.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &mut conns {
                    let _ = c.write_all(b" ");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let (status, _, body) = http_get(s.port, "/v1/verify", &[("authorization", &s.bearer)]);
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!(
        "{} slow-body clients, cap {max_connections}: slowest of 20 requests {slowest:?}",
        slow.len()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    // Every slow body is cut by the header deadline after its header (2 s), trickle or not.
    let deadline = opened + Duration::from_secs(2) + Duration::from_secs(3);
    let still_open = slow.iter().filter(|c| !closed_by(c, deadline)).count();
    assert_eq!(still_open, 0, "slow bodies the server never closed");
    drop(s.guard);
}

#[test]
fn idle_connections_are_closed_after_their_timeouts() {
    use std::io::{Read, Write};
    let _flood = allow_open_files(SLOW_CLIENTS as libc::rlim_t + 256);
    let s = start_limited(
        "idle",
        "header_read_timeout = \"1s\"\nidle_timeout = \"4s\"\n",
    );
    // 1,000 connections that never send a byte...
    let idle: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    let opened = Instant::now();
    // ...a kept-alive connection after one request, and requests that keep being answered.
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        kept,
        "GET /v1/verify HTTP/1.1\r\nhost: localhost\r\nauthorization: {}\r\n\r\n",
        s.bearer
    )
    .unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let answered = Instant::now();
    for _ in 0..10 {
        let (status, _, body) = http_get(s.port, "/v1/verify", &[("authorization", &s.bearer)]);
        assert_eq!(status, 200, "{body}");
    }
    // The kept-alive one lives out its idle timeout (4 s)...
    assert!(
        answered.elapsed() < Duration::from_millis(2500),
        "too slow to tell"
    );
    assert!(
        !closed_by(&kept, answered + Duration::from_millis(2500)),
        "closed before the idle timeout"
    );
    // ...the silent ones went at the header deadline (1 s after their accept)...
    let deadline = opened + Duration::from_secs(1) + Duration::from_secs(3);
    let still_open = idle.iter().filter(|c| !closed_by(c, deadline)).count();
    assert_eq!(still_open, 0, "silent connections the server never closed");
    // ...and the kept-alive one goes after its idle timeout.
    assert!(
        closed_by(
            &kept,
            answered + Duration::from_secs(4) + Duration::from_secs(2)
        ),
        "kept-alive connection outlived the idle timeout"
    );
}

/// A kept-alive connection that starts its next request and never finishes the header is
/// closed at the header deadline, not at the (much later) idle one: the watchdog is not woken
/// by the request's first byte, so its sleeps must never outlast the header deadline.
#[test]
fn a_header_started_on_a_kept_alive_connection_times_out_at_the_header_deadline() {
    use std::io::{Read, Write};
    let s = start_limited(
        "kept-slow-header",
        "header_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    );
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    // Two answered requests, then idle for longer than the header deadline (the watchdog's
    // sleep is under way), then half a header.
    for _ in 0..2 {
        write!(
            kept,
            "GET /v1/verify HTTP/1.1\r\nhost: localhost\r\nauthorization: {}\r\n\r\n",
            s.bearer
        )
        .unwrap();
        let n = kept.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    kept.write_all(b"GET /v1/verify HTTP/1.1\r\nhost: loc")
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_by(&kept, started + Duration::from_millis(2500)),
        "a header started on a kept-alive connection outlived the header deadline"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the header deadline: {:?}",
        started.elapsed()
    );
}

#[test]
fn request_bodies_and_headers_are_limited_and_slow_bodies_time_out() {
    use std::io::{Read, Write};
    let s = start_limited(
        "bodies",
        "max_request_body = 4096\nmax_header_bytes = 8192\nrequest_timeout = \"1s\"\n",
    );
    let token = s.bearer.trim_start_matches("Bearer ");
    let post = |body: &str| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "POST /v1/verify HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        let _ = c.read_to_string(&mut raw);
        raw
    };
    let small = format!("{{\"token\":\"{token}\"}}");
    assert!(post(&small).starts_with("HTTP/1.1 200"));
    let large = format!("{{\"token\":\"{token}\",\"pad\":\"{}\"}}", "x".repeat(4096));
    let answer = post(&large);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A header over max_header_bytes: 431.
    let (status, _, _) = http_get(s.port, "/v1/verify", &[("x-pad", &"x".repeat(10_000))]);
    assert_eq!(status, 431);
    // A body that trickles in slower than request_timeout: 408, then the connection closes.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        c,
        "POST /v1/verify HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"token\":"
    )
    .unwrap();
    let sent = Instant::now();
    let mut c2 = c.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..30 {
            if c2.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let took = sent.elapsed();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn shutdown_finishes_within_the_drain_deadline_with_stuck_clients() {
    use std::io::{Read, Write};
    // Long client timeouts: only the drain deadline can end this.
    let s = start_limited(
        "drain",
        "shutdown_timeout = \"1s\"\nheader_read_timeout = \"60s\"\nidle_timeout = \"60s\"\nrequest_timeout = \"60s\"\n",
    );
    let connect = || {
        let c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    };
    let half_body = |c: &mut std::net::TcpStream| {
        write!(
            c,
            "POST /v1/verify HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{{\"token\":"
        )
        .unwrap();
    };
    // A request whose body never completes, a half-sent header, a silent connection, and a
    // request in progress that completes during the drain.
    let mut stuck_body = connect();
    half_body(&mut stuck_body);
    let mut half_header = connect();
    half_header
        .write_all(b"GET /v1/verify HTTP/1.1\r\nhost: loc")
        .unwrap();
    let silent = connect();
    let mut finishing = connect();
    half_body(&mut finishing);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    signal(s.pid, "-TERM");
    // Connections without a request in progress close as the drain starts.
    let drain_start = t0 + Duration::from_millis(500);
    assert!(
        closed_by(&half_header, drain_start),
        "half-sent header kept open"
    );
    assert!(
        closed_by(&silent, drain_start),
        "silent connection kept open"
    );
    finishing.write_all(b"\"x\"}       ").unwrap();
    let mut answer = String::new();
    let _ = finishing.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "a request in progress is answered during the drain: {answer:?}"
    );
    let mut guard = s.guard;
    let mut child = guard.0.pop().unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "still running {:?} after SIGTERM with a 1 s drain deadline",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}: before the drain deadline, with a request in progress"
    );
    // The stuck request was dropped; nothing listens any more.
    assert!(closed_by(
        &stuck_body,
        Instant::now() + Duration::from_secs(1)
    ));
    assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err());
}

fn jwtd_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(args)
        .current_dir(dir)
        .env_remove("JWTD_KEK")
        .stdin(Stdio::null())
        .output()
        .expect("jwtd runs")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let o = jwtd_in(dir, args);
    assert!(o.status.success(), "jwtd {args:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Exit 2 with `needle` on stderr.
fn refused(dir: &std::path::Path, args: &[&str], needle: &str) {
    let o = jwtd_in(dir, args);
    assert_eq!(o.status.code(), Some(2), "jwtd {args:?}: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(needle),
        "jwtd {args:?} should say {needle:?}: {}",
        text(&o)
    );
}

/// `jwtd serve --config FILE` in `dir`, listening on `port`.
fn serve_in(dir: &std::path::Path, file: &str, port: u16) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", file])
        .current_dir(dir)
        .env_remove("JWTD_KEK")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(vec![child]);
    wait_for_http(port);
    guard
}

fn stop(mut g: Guard) {
    signal(g.0[0].id(), "-TERM");
    assert!(g.0[0].wait().unwrap().success());
    g.0.clear();
}

fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtd-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `jwtd keys list` row: (kid, alg, state, created, activate_at, retire_after).
type KeyRow = (String, String, String, i64, Option<i64>, Option<i64>);

/// The rows of `jwtd keys list --json`; each date is also checked against its RFC 3339 form.
fn key_rows(out: &str) -> Vec<KeyRow> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(out).expect("keys list --json");
    rows.iter()
        .map(|r| {
            let t = |name: &str| {
                let unix = r[format!("{name}_unix")].as_i64();
                let date = r[name].as_str().map(|d| {
                    humantime::parse_rfc3339(d)
                        .unwrap()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64
                });
                assert_eq!(unix, date, "{name} in {r}");
                unix
            };
            (
                r["kid"].as_str().unwrap().to_owned(),
                r["alg"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
                t("created_at").unwrap(),
                t("activate_at"),
                t("retire_after"),
            )
        })
        .collect()
}

fn token_header(token: &str) -> serde_json::Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&jwtd_core::b64::decode(h.as_bytes()).unwrap()).unwrap()
}

fn token_claims(token: &str) -> serde_json::Value {
    let c = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&jwtd_core::b64::decode(c.as_bytes()).unwrap()).unwrap()
}

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// An issuer configuration for the `keys` and `token` commands to read.
fn issuer_config(dir: &std::path::Path, port: u16, signing: &str) -> &'static str {
    std::fs::write(dir.join("admin.key"), format!("{ADMIN_KEY}\n")).unwrap();
    std::fs::write(
        dir.join("jwtd.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\n[signing]\nissuer = \"https://auth.test\"\n\
             data_dir = \"data\"\n{signing}\n[admin]\napi_key_file = \"admin.key\"\n"
        ),
    )
    .unwrap();
    "jwtd.toml"
}

#[test]
fn keys_and_token_commands_read_the_service_configuration() {
    let dir = test_dir("keys-config");
    let port = free_port();
    let cfg = issuer_config(
        &dir,
        port,
        "algorithm = \"RS256\"\npublish_lead = \"1d\"\nmax_ttl = \"2h\"\ndefault_ttl = \"15m\"\ngrace = \"5m\"",
    );
    let serving = serve_in(&dir, cfg, port);
    let (status, headers, _) = http_get(port, "/.well-known/jwks.json", &[]);
    assert_eq!(status, 200);
    let cache = headers
        .iter()
        .find(|(k, _)| k == "cache-control")
        .map(|(_, v)| v.clone());
    assert_eq!(cache.as_deref(), Some("public, max-age=43200"));

    // rotate: the configured algorithm and a lead of a day (published for at least the
    // JWKS max-age before it signs).
    ok(&dir, &["keys", "rotate", "--config", cfg]);
    let rows = key_rows(&ok(&dir, &["keys", "list", "--json", "--config", cfg]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "RS256"), "{rows:?}");
    let pending = rows.iter().find(|r| r.2 == "pending").unwrap().clone();
    assert_eq!(pending.4.unwrap() - pending.3, 86_400, "{pending:?}");
    // The table prints UTC dates, not Unix seconds (finding 16).
    let date = |secs: i64| {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let table = ok(&dir, &["keys", "list", "--config", cfg]);
    let line = table.lines().find(|l| l.starts_with(&pending.0)).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            pending.0.as_str(),
            "RS256",
            "pending",
            &date(pending.3),
            &date(pending.4.unwrap()),
            "-"
        ],
        "{table}"
    );
    // A lead below the JWKS max-age, or another algorithm, is refused.
    refused(
        &dir,
        &["keys", "rotate", "--config", cfg, "--publish-lead", "1h"],
        "43200",
    );
    refused(
        &dir,
        &["keys", "rotate", "--config", cfg, "--alg", "ES256"],
        "signs with RS256",
    );
    // Without --config, rotate keeps the signing key's algorithm.
    refused(
        &dir,
        &["keys", "rotate", "--data-dir", "data", "--alg", "ES256"],
        "signs with RS256",
    );
    // retire: published for the configured max ttl + grace.
    let now = jwtd_core::unix_now() as i64;
    ok(&dir, &["keys", "retire", "--config", cfg, &pending.0]);
    let rows = key_rows(&ok(&dir, &["keys", "list", "--json", "--config", cfg]));
    let retiring = rows.iter().find(|r| r.0 == pending.0).unwrap();
    assert_eq!(retiring.2, "retiring");
    let until = retiring.5.unwrap() - now;
    assert!((7500..7510).contains(&until), "{retiring:?}");
    // --max-ttl belongs to the configuration.
    refused(
        &dir,
        &[
            "keys",
            "retire",
            "--config",
            cfg,
            "--max-ttl",
            "1m",
            &pending.0,
        ],
        "--config",
    );
    ok(&dir, &["keys", "rotate", "--data-dir", "data"]);
    let rows = key_rows(&ok(&dir, &["keys", "list", "--json", "--data-dir", "data"]));
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.1 == "RS256"), "{rows:?}");

    // token mint: the cap is [signing] max_ttl, the default ttl and iss are the configured ones.
    refused(
        &dir,
        &[
            "token", "mint", "--config", cfg, "--sub", "bob", "--ttl", "3h",
        ],
        "[signing] max_ttl",
    );
    let token = ok(&dir, &["token", "mint", "--config", cfg, "--sub", "bob"]);
    let token = token.trim();
    assert_eq!(token_header(token)["alg"], "RS256");
    let claims = token_claims(token);
    assert_eq!(claims["iss"], "https://auth.test");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    let bearer = format!("Bearer {token}");
    let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    stop(serving);
}

#[test]
fn retiring_the_signing_key_never_leaves_the_issuer_unable_to_sign() {
    let dir = test_dir("retire-active");
    let port = free_port();
    let cfg = issuer_config(&dir, port, "publish_lead = \"1h\"");
    let serving = serve_in(&dir, cfg, port);
    let rows = key_rows(&ok(&dir, &["keys", "list", "--json", "--config", cfg]));
    let [(active, ..)] = rows.as_slice() else {
        panic!("{rows:?}")
    };
    let active = active.clone();
    // No successor: refused, with what to do.
    refused(
        &dir,
        &["keys", "retire", "--config", cfg, &active],
        "jwtd keys rotate",
    );
    ok(&dir, &["keys", "rotate", "--config", cfg]);
    // The successor's lead is running: refused unless --promote.
    refused(
        &dir,
        &["keys", "retire", "--config", cfg, &active],
        "--promote",
    );
    let o = jwtd_in(
        &dir,
        &["keys", "retire", "--config", cfg, "--promote", &active],
    );
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("WARNING") && said.contains("fetch the keys again"),
        "{said}"
    );
    let rows = key_rows(&ok(&dir, &["keys", "list", "--json", "--config", cfg]));
    let successor = rows.iter().find(|r| r.2 == "active").unwrap().0.clone();
    assert_ne!(successor, active);
    assert_eq!(rows.iter().find(|r| r.0 == active).unwrap().2, "retiring");
    let minted = ok(&dir, &["token", "mint", "--config", cfg, "--sub", "bob"]);
    assert_eq!(token_header(minted.trim())["kid"], successor.as_str());
    // The service, restarted on this ring, is ready and signs with the successor.
    stop(serving);
    let serving = serve_in(&dir, cfg, port);
    let (status, _, body) = http_get(port, "/readyz", &[]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_post(port, "/v1/tokens", ADMIN_KEY, r#"{"sub":"alice"}"#);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        token_header(v["token"].as_str().unwrap())["kid"],
        successor.as_str()
    );
    // Emergency removal of the signing key: a new key of the issuer's algorithm signs.
    ok(&dir, &["keys", "remove", "--config", cfg, &successor]);
    let rows = key_rows(&ok(&dir, &["keys", "list", "--json", "--config", cfg]));
    let signer = rows
        .iter()
        .find(|r| r.2 == "active")
        .expect("a signing key");
    assert_eq!(signer.1, "ES256");
    stop(serving);
}

#[test]
fn every_keygen_output_works_with_sign_verify_and_serve() {
    let dir = test_dir("keygen-round-trip");
    let port = free_port();
    let mut config = format!("listen = \"127.0.0.1:{port}\"\n");
    let mut tokens = Vec::new();
    let algs = [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "ES512", "ES256K", "EdDSA",
    ];
    for alg in algs {
        let hmac = alg.starts_with("HS");
        let kid = format!("kid-{alg}");
        let out = if hmac {
            format!("{alg}.jwk")
        } else {
            format!("{alg}.pem")
        };
        let public = format!("{alg}.jwks.json");
        let mut keygen = vec!["keygen", "--alg", alg, "--kid", &kid, "--out", &out];
        if !hmac {
            keygen.extend(["--public-out", &public]);
        }
        ok(&dir, &keygen);
        // sign takes the private output as it is (RSA PEMs need their algorithm named); the
        // token carries the kid given to keygen.
        let iss = format!("https://{}.test", alg.to_ascii_lowercase());
        let sign = |key_flag: &str, iss: &str| {
            let mut a = vec!["sign", key_flag, &out, "--iss", iss, "--sub", "alice"];
            if alg.starts_with('R') || alg.starts_with('P') {
                a.extend(["--alg", alg]);
            }
            ok(&dir, &a).trim().to_owned()
        };
        let token = sign("--key", &iss);
        assert_eq!(token_header(&token)["kid"], kid.as_str(), "{alg}");
        assert_eq!(token_header(&token)["alg"], alg);
        // verify takes every output as it is.
        let mut sources = vec![vec!["--key", out.as_str()]];
        if hmac {
            sources.push(vec!["--secret-file", &out]);
        } else {
            sources.push(vec!["--jwks", &public]);
        }
        for src in &sources {
            let mut a = vec!["verify", &token, "--alg", alg, "--iss", &iss];
            a.extend(src.iter().copied());
            let claims: serde_json::Value = serde_json::from_str(&ok(&dir, &a)).unwrap();
            assert_eq!(claims["sub"], "alice", "{alg} {src:?}");
        }
        // So does the configuration: the public JWKS, the private PEM, the HMAC JWK.
        let name = alg.to_ascii_lowercase();
        if hmac {
            let t = sign("--secret-file", &iss);
            assert_eq!(token_header(&t)["kid"], kid.as_str(), "{alg}");
            config.push_str(&format!(
                "[[issuer]]\nname = \"{name}\"\nissuer = \"{iss}\"\nsecret_file = \"{out}\"\nalgorithms = [\"{alg}\"]\n"
            ));
            tokens.push((alg, token));
            tokens.push((alg, t));
        } else {
            let pem_iss = format!("https://pem-{name}.test");
            config.push_str(&format!(
                "[[issuer]]\nname = \"{name}\"\nissuer = \"{iss}\"\njwks_file = \"{public}\"\nalgorithms = [\"{alg}\"]\n\
                 [[issuer]]\nname = \"pem-{name}\"\nissuer = \"{pem_iss}\"\npem_file = \"{out}\"\nalgorithms = [\"{alg}\"]\n"
            ));
            tokens.push((alg, token));
            tokens.push((alg, sign("--key", &pem_iss)));
        }
    }
    std::fs::write(dir.join("jwtd.toml"), &config).unwrap();
    ok(&dir, &["config", "check", "jwtd.toml"]);
    let serving = serve_in(&dir, "jwtd.toml", port);
    for (alg, token) in &tokens {
        let bearer = format!("Bearer {token}");
        let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
        assert_eq!(status, 200, "{alg}: {body}");
    }
    stop(serving);
}

#[test]
fn claim_values_are_typed_explicitly() {
    let dir = test_dir("claim-types");
    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.join("secret"), format!("{secret}\n")).unwrap();
    let sign = |flags: &[&str]| {
        let mut a = vec!["sign", "--secret-file", "secret", "--alg", "HS256"];
        a.extend(flags);
        ok(&dir, &a).trim().to_owned()
    };
    // --claim is a string, whatever it looks like; --claim-json is JSON.
    let as_string = sign(&["--claim", "client_id=12345", "--claim", "admin=true"]);
    assert_eq!(token_claims(&as_string)["client_id"], "12345");
    assert_eq!(token_claims(&as_string)["admin"], "true");
    let as_number = sign(&[
        "--claim-json",
        "client_id=12345",
        "--claim-json",
        "admin=true",
    ]);
    assert_eq!(token_claims(&as_number)["client_id"], 12345);
    assert_eq!(token_claims(&as_number)["admin"], true);
    let verify = |token: &str, check: &[&str]| {
        let mut a = vec!["verify", token, "--secret-file", "secret", "--alg", "HS256"];
        a.extend(check);
        jwtd_in(&dir, &a)
    };
    // The README's xApp row with an all-digit API key.
    let o = verify(&as_string, &["--claim", "client_id=12345"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = verify(&as_number, &["--claim-json", "client_id=12345"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = verify(&as_number, &["--claim", "client_id=12345"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(r#"expected string \"12345\", found number 12345"#),
        "{err}"
    );
    let o = verify(&as_string, &["--claim-one-of", "client_id=12345,678"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = verify(
        &as_number,
        &["--claim-one-of-json", "client_id=[12345,678]"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    refused(
        &dir,
        &[
            "sign",
            "--secret-file",
            "secret",
            "--alg",
            "HS256",
            "--claim-json",
            "x=not json",
        ],
        "not JSON",
    );
    // The configuration compares TOML values: "12345" is a string, and a mismatch says so.
    let port = free_port();
    std::fs::write(
        dir.join("jwtd.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\n[[issuer]]\nname = \"xapp\"\nsecret_file = \"secret\"\n\
             algorithms = [\"HS256\"]\n[issuer.claims]\nclient_id = \"12345\"\n"
        ),
    )
    .unwrap();
    let serving = serve_in(&dir, "jwtd.toml", port);
    let bearer = format!("Bearer {as_string}");
    let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Bearer {as_number}");
    let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(r#"expected string \"12345\", found number 12345"#),
        "{body}"
    );
    stop(serving);
}

/// Finding 7: a start that cannot bind its port (another jwtd holds it) exits 2 saying so,
/// prints no banner and creates nothing: no data directory, KEK, signing key or admin key.
#[test]
fn a_taken_port_exits_2_before_anything_is_created_or_announced() {
    let dir = test_dir("taken-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = jwtd_in(&dir, &["serve", "--listen", &addr]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}: the port is taken")),
        "{}",
        text(&o)
    );
    assert!(!err.contains("mint a token"), "no banner: {}", text(&o));
    assert!(!dir.join("jwtd-data").exists(), "nothing created");
    // The same with a configuration of its own issuer: no data directory, KEK or key.
    let port = taken.local_addr().unwrap().port();
    let cfg = issuer_config(&dir, port, "");
    let o = jwtd_in(&dir, &["serve", "--config", cfg]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the port is taken"));
    assert!(!dir.join("data").exists(), "nothing created");
    assert!(o.stdout.is_empty(), "{}", text(&o));
    drop(taken);
}

/// `jwtd serve --config FILE` in `dir` with RUST_LOG=debug, stderr captured in `log`.
fn serve_logging(dir: &std::path::Path, file: &str, port: u16, log: &std::path::Path) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", file])
        .current_dir(dir)
        .env_remove("JWTD_KEK")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let guard = Guard(vec![child]);
    wait_for_http(port);
    guard
}

/// Waits until `log` holds `needle`.
fn wait_log(log: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::fs::read_to_string(log).unwrap();
        if s.contains(needle) {
            return s;
        }
        assert!(Instant::now() < deadline, "never logged {needle:?}:\n{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn static_issuer(dir: &std::path::Path, port: u16, extra: &str) -> &'static str {
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string(&Jwks::from_keys(key.public_jwk())).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("jwtd.toml"),
        format!(
            "{extra}\n{}",
            config(port, &dir.join("jwks.json"), "[\"api\"]")
        ),
    )
    .unwrap();
    "jwtd.toml"
}

/// Finding 8: `log_format = "json"` writes one JSON object per line on stderr (stdout stays
/// empty), each with unique keys, a rejection's detail included: what `jq` reads whole.
#[test]
fn json_logs_are_one_object_per_line_with_unique_keys_on_stderr() {
    let dir = test_dir("json-logs");
    let port = free_port();
    let cfg = static_issuer(&dir, port, "log_format = \"json\"");
    let log = dir.join("stderr");
    let g = serve_logging(&dir, cfg, port, &log);
    for _ in 0..2 {
        let (status, _, _) = http_get(port, "/v1/verify", &[("authorization", "Bearer a.b.c")]);
        assert_eq!(status, 401);
    }
    wait_log(&log, "rejected");
    stop(g);
    let out = std::fs::read_to_string(&log).unwrap();
    let mut rejected = 0;
    for line in out.lines() {
        // jwtd_core's parser refuses duplicate keys at any depth.
        let strict = jwtd_core::parse_json_object(line.as_bytes(), 16)
            .unwrap_or_else(|e| panic!("not one JSON object with unique keys ({e}): {line}"));
        let fields = strict["fields"].as_object().expect("fields");
        assert!(fields["message"].is_string(), "{line}");
        if fields["message"] == "rejected" {
            rejected += 1;
            assert!(fields["detail"].is_string(), "{line}");
            assert!(fields["reason"].is_string(), "{line}");
        }
    }
    assert!(rejected >= 1, "{out}");
    assert!(
        out.contains("issuer ready") && out.contains("listening"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("stdout")).unwrap(), "");
}

/// Findings 8, 11 and 16: text logs in a file carry no ANSI colours; start-up says what runs
/// (each issuer, its key source and readiness, the address); a reload that changes `listen`
/// warns that it needs a restart and keeps serving on the running address.
#[test]
fn text_logs_are_plain_say_what_runs_and_warn_when_a_reload_changes_listen() {
    let dir = test_dir("text-logs");
    let port = free_port();
    let cfg = static_issuer(&dir, port, "");
    let log = dir.join("stderr");
    let g = serve_logging(&dir, cfg, port, &log);
    let (status, _, _) = http_get(port, "/v1/verify", &[("authorization", "Bearer a.b.c")]);
    assert_eq!(status, 401);
    let start = wait_log(&log, "rejected");
    let jwks = dir.join("jwks.json").display().to_string();
    let issuer_line = start
        .lines()
        .find(|l| l.contains("issuer ready"))
        .unwrap_or_else(|| panic!("no issuer line: {start}"));
    for part in [
        "issuer=idp",
        "iss=https://idp.example/",
        &format!("source=jwks_file {jwks}"),
        "ready=true",
    ] {
        assert!(issuer_line.contains(part), "{part}: {issuer_line}");
    }
    assert!(
        start.contains(&format!("listen=http://127.0.0.1:{port}")),
        "{start}"
    );
    // A reload with another address: a warning, and the running address keeps serving.
    let other = free_port();
    let text = std::fs::read_to_string(dir.join(cfg)).unwrap();
    std::fs::write(
        dir.join(cfg),
        text.replace(&format!(":{port}\""), &format!(":{other}\"")),
    )
    .unwrap();
    signal(g.0[0].id(), "-HUP");
    let out = wait_log(&log, "configuration reloaded");
    assert!(
        out.contains("listen changes take effect at the next start"),
        "{out}"
    );
    let (status, _, _) = http_get(port, "/healthz", &[]);
    assert_eq!(status, 200);
    stop(g);
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(!out.contains("\x1b["), "no colours in a file: {out:?}");
}

/// Finding 16: a configuration with nothing to verify (no [[issuer]], no [signing]) is refused
/// by `config check` and `serve`, saying what to add.
#[test]
fn a_configuration_with_nothing_to_verify_is_refused() {
    let dir = test_dir("empty-config");
    std::fs::write(
        dir.join("jwtd.toml"),
        format!("listen = \"127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    refused(&dir, &["config", "check", "jwtd.toml"], "nothing to verify");
    refused(
        &dir,
        &["serve", "--config", "jwtd.toml"],
        "add an [[issuer]]",
    );
}

/// `[ext_authz]`: `jwtd serve` answers Envoy's gRPC `Authorization/Check` on its own listener,
/// bound before it serves HTTP (so it accepts as soon as the HTTP port does), and stops with
/// it on SIGTERM; a taken `[ext_authz] listen` exits 2 before anything is created.
#[test]
fn serve_answers_ext_authz_on_its_own_listener() {
    use jwtd_extauthz::envoy_types::pb::envoy::service::auth::v3::{
        attribute_context::{HttpRequest, Request},
        authorization_client::AuthorizationClient,
        check_response::HttpResponse,
        AttributeContext, CheckRequest,
    };
    let dir = test_dir("ext-authz");
    let secret = b"ext-authz-secret-0123456789abcdef-0123456";
    std::fs::write(dir.join("secret"), secret).unwrap();
    let (port, grpc) = (free_port(), free_port());
    let write = |grpc: u16| {
        std::fs::write(
            dir.join("jwtd.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\n[ext_authz]\nlisten = \"127.0.0.1:{grpc}\"\n\
                 remove_authorization = true\n[[issuer]]\nname = \"app\"\n\
                 issuer = \"https://app.test\"\nsecret_file = \"secret\"\n\
                 algorithms = [\"HS256\"]\naudiences = [\"api\"]\n"
            ),
        )
        .unwrap();
    };
    write(grpc);
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
    let key = SigningKey::hmac(secret, Algorithm::HS256, None).unwrap();
    let now = jwtd_core::unix_now();
    let claims = serde_json::json!({"iss": "https://app.test", "sub": "alice", "aud": "api",
        "exp": now + 300});
    let token = jwtd_core::sign(&key, claims.as_object().unwrap(), None).unwrap();
    let check = |auth: Option<String>| {
        let mut headers = std::collections::HashMap::new();
        if let Some(a) = auth {
            headers.insert("authorization".to_string(), a);
        }
        CheckRequest {
            attributes: Some(AttributeContext {
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
    // A worker keeps the client's connection alive (answering pings) after block_on.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(async {
        let mut c = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        let r = c
            .check(check(Some(format!("Bearer {token}"))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status.as_ref().unwrap().code, 0, "{r:?}");
        let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
            panic!("{r:?}");
        };
        let subject = ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "x-auth-subject")
            .map(|h| h.value.clone());
        assert_eq!(subject.as_deref(), Some("alice"));
        assert!(ok.headers_to_remove.iter().any(|h| h == "authorization"));
        let r = c.check(check(None)).await.unwrap().into_inner();
        assert_eq!(r.status.as_ref().unwrap().code, 16, "{r:?}");
        c
    });
    // SIGTERM with the client's connection open (as Envoy keeps it): both listeners drain.
    let started = Instant::now();
    stop(guard);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(c);
    drop(rt);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err(),
        "stopped with it"
    );

    // A taken [ext_authz] port: exit 2, saying which key, before serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    write(taken.local_addr().unwrap().port());
    let o = jwtd_in(&dir, &["serve", "--config", "jwtd.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("([ext_authz] listen)"),
        "{}",
        text(&o)
    );
    drop(taken);
}
