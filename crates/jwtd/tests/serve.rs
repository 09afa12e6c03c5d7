//! `jwtd serve` as a process: the embedded default (the README's first command: mint, verify,
//! revoke), configuration errors at start, SIGHUP reload (a broken file keeps the running
//! configuration), SIGTERM drains and exits.

mod common;

use common::{free_port, http_get, http_post, wait_for, Guard};
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = Guard(vec![child]);
    wait_for(port);
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
    wait_for(port);
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
