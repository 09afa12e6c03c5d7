//! Finding 14: the client samples in `examples/clients` (Express, Flask, FastAPI, curl), each
//! run against a real `jwtd serve` (the embedded default): a valid token is answered 200 with
//! its subject, no token and a bad token 401 with jwtd's reason, and jwtd down or stuck 503
//! (fail closed). docs/integrations.md shows the samples verbatim: a test holds it to the files.
//!
//! Node, npm's Express, and the venv's Flask, FastAPI and uvicorn come from
//! `scripts/ensure-deps` (under `target/`); a missing one fails the test with that advice.

use crate::common::{free_port, http_get, http_post, wait_for_http, Guard};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn samples() -> PathBuf {
    repo().join("examples/clients")
}

const ENSURE: &str = "run scripts/ensure-deps (or scripts/test), which installs it under target/";

/// A program the tests need, or a failure saying how to get it (never a silent skip).
fn require(program: &Path, what: &str) -> PathBuf {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{what} ({}) is missing: {ENSURE}", program.display());
    program.to_owned()
}

fn venv_python(modules: &str) -> PathBuf {
    let python = require(
        &repo().join("target/test-venv/bin/python"),
        "the test venv's Python",
    );
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "Python modules {modules} are missing from target/test-venv: {ENSURE}"
    );
    python
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtd-clients-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `jwtd serve` on the embedded default, and a token for alice with `aud` `my-api`.
struct Jwtd {
    port: u16,
    guard: Guard,
    token: String,
}

fn start_jwtd(dir: &Path) -> Jwtd {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("JWTD_KEK")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(vec![child]);
    wait_until_listening(port, &mut guard, &dir.join("none"), "jwtd serve");
    // jwtd binds before it creates its data (admin.key included): wait until it answers.
    wait_for_http(port);
    let admin = std::fs::read_to_string(dir.join("jwtd-data/admin.key")).unwrap();
    let (status, body) = http_post(
        port,
        "/v1/tokens",
        admin.trim(),
        r#"{"sub":"alice","aud":"my-api","ttl":"10m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let minted: serde_json::Value = serde_json::from_str(&body).unwrap();
    Jwtd {
        port,
        guard,
        token: minted["token"].as_str().unwrap().to_owned(),
    }
}

/// Waits (at most 20 s) for `port` to open; fails with the process's log if it exits first.
fn wait_until_listening(port: u16, guard: &mut Guard, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = guard.0[0].try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} never listened on 127.0.0.1:{port} ({exited:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a sample app on a free port, told where jwtd is.
fn start_app(mut cmd: Command, dir: &Path, jwtd_port: u16, what: &str) -> (u16, Guard) {
    let port = free_port();
    let log = dir.join("app.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .env("PORT", port.to_string())
        .env("JWTD_URL", format!("http://127.0.0.1:{jwtd_port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut guard = Guard(vec![child]);
    wait_until_listening(port, &mut guard, &log, what);
    (port, guard)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// jwtd's reason in an app's refusal.
fn reason(body: &serde_json::Value) -> &str {
    body["reason"].as_str().unwrap_or_default()
}

/// The cases against an app serving `GET /whoami` behind jwtd: a valid token, none, bad ones,
/// then jwtd stopped, then a port that accepts and never answers in its place.
fn check_app(what: &str, app: u16, mut jwtd: Jwtd) {
    let bearer = format!("Bearer {}", jwtd.token);
    let (status, _, body) = http_get(app, "/whoami", &[("authorization", &bearer)]);
    assert_eq!(status, 200, "{what}, valid token: {body}");
    let b = json(&body);
    assert_eq!(b["sub"], "alice", "{what}: {body}");
    let iss = format!("http://127.0.0.1:{}", jwtd.port);
    assert_eq!(b["iss"], iss.as_str(), "{what}: the token's iss: {body}");

    let (status, headers, body) = http_get(app, "/whoami", &[]);
    assert_eq!(status, 401, "{what}, no token: {body}");
    assert_eq!(reason(&json(&body)), "missing_token", "{what}: {body}");
    let www = headers.iter().find(|(k, _)| k == "www-authenticate");
    assert_eq!(
        www.map(|(_, v)| v.as_str()),
        Some("Bearer realm=\"jwtd\""),
        "{what}: {headers:?}"
    );

    // The signature's first character changed (the last one may carry unused bits: changing
    // it can make the encoding non-canonical, refused as malformed instead).
    let at = jwtd.token.rfind('.').unwrap() + 1;
    let first = &jwtd.token[at..at + 1];
    let tampered = format!(
        "{}{}{}",
        &jwtd.token[..at],
        if first == "A" { "B" } else { "A" },
        &jwtd.token[at + 1..]
    );
    for (token, expected) in [
        ("not.a.token", "malformed"),
        (tampered.as_str(), "bad_signature"),
    ] {
        let bad = format!("Bearer {token}");
        let (status, headers, body) = http_get(app, "/whoami", &[("authorization", &bad)]);
        assert_eq!(status, 401, "{what}, bad token: {body}");
        assert_eq!(reason(&json(&body)), expected, "{what}: {body}");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "www-authenticate" && v.contains("error=\"invalid_token\"")),
            "{what}: {headers:?}"
        );
    }

    // jwtd down: the app fails closed, at once.
    let mut child = jwtd.guard.0.remove(0);
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    let (status, headers, body) = http_get(app, "/whoami", &[("authorization", &bearer)]);
    assert_eq!(status, 503, "{what}, jwtd down: {body}");
    assert_eq!(reason(&json(&body)), "jwtd_unavailable", "{what}: {body}");
    assert!(
        headers.iter().any(|(k, _)| k == "retry-after"),
        "{what}: {headers:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{what}: {:?}",
        started.elapsed()
    );
    // jwtd stuck (connections accepted, never answered): 503 once the 2 s timeout passes.
    let _stuck = std::net::TcpListener::bind(("127.0.0.1", jwtd.port)).unwrap();
    let started = Instant::now();
    let (status, _, body) = http_get(app, "/whoami", &[("authorization", &bearer)]);
    let took = started.elapsed();
    assert_eq!(status, 503, "{what}, jwtd stuck: {body}");
    assert_eq!(reason(&json(&body)), "jwtd_unavailable", "{what}: {body}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{what}: answered after {took:?}"
    );
}

#[test]
fn express_middleware_sample_against_jwtd() {
    let node = require(Path::new("node"), "Node");
    let modules = repo().join("target/test-node/node_modules");
    assert!(
        modules.join("express").is_dir(),
        "Express is missing from {}: {ENSURE}",
        modules.display()
    );
    let dir = test_dir("express");
    let jwtd = start_jwtd(&dir);
    let mut cmd = Command::new(node);
    cmd.arg(samples().join("express/app.js"))
        .env("NODE_PATH", &modules);
    let (app, _app) = start_app(cmd, &dir, jwtd.port, "the Express sample");
    check_app("express", app, jwtd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flask_sample_against_jwtd() {
    let python = venv_python("flask");
    let dir = test_dir("flask");
    let jwtd = start_jwtd(&dir);
    let mut cmd = Command::new(python);
    cmd.arg(samples().join("flask/app.py"));
    let (app, _app) = start_app(cmd, &dir, jwtd.port, "the Flask sample");
    check_app("flask", app, jwtd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fastapi_sample_against_jwtd() {
    let python = venv_python("fastapi, uvicorn");
    let dir = test_dir("fastapi");
    let jwtd = start_jwtd(&dir);
    let mut cmd = Command::new(python);
    cmd.arg(samples().join("fastapi/app.py"));
    let (app, _app) = start_app(cmd, &dir, jwtd.port, "the FastAPI sample");
    check_app("fastapi", app, jwtd);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `curl.sh`: exit 0 and the answer, 1 and jwtd's reason, 3 when jwtd is down or stuck.
#[test]
fn curl_sample_against_jwtd() {
    require(Path::new("curl"), "curl");
    let dir = test_dir("curl");
    let mut jwtd = start_jwtd(&dir);
    let run = |token: &str| {
        let o = Command::new("sh")
            .arg(samples().join("curl.sh"))
            .arg(token)
            .env("JWTD_URL", format!("http://127.0.0.1:{}", jwtd.port))
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (o.status.code(), text(&o.stdout), text(&o.stderr))
    };
    let (code, out, err) = run(&jwtd.token);
    assert_eq!(code, Some(0), "{out}{err}");
    let answer = json(&out);
    assert_eq!(answer["claims"]["sub"], "alice", "{out}");
    assert_eq!(answer["issuer"], "self", "{out}");
    assert_eq!(
        answer["iss"],
        format!("http://127.0.0.1:{}", jwtd.port).as_str(),
        "{out}"
    );
    for (token, expected) in [("", "missing_token"), ("not.a.token", "malformed")] {
        let (code, out, err) = run(token);
        assert_eq!(code, Some(1), "{token:?}: {out}{err}");
        assert_eq!(reason(&json(&err)), expected, "{err}");
    }
    let mut child = jwtd.guard.0.remove(0);
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, out, err) = run(&jwtd.token);
    assert_eq!(code, Some(3), "jwtd down: {out}{err}");
    let _stuck = std::net::TcpListener::bind(("127.0.0.1", jwtd.port)).unwrap();
    let started = Instant::now();
    let (code, out, err) = run(&jwtd.token);
    assert_eq!(code, Some(3), "jwtd stuck: {out}{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/integrations.md shows every sample file verbatim: each block that follows a
/// `<!-- file: PATH -->` line is that file, and every sample file has such a block.
#[test]
fn integrations_doc_shows_the_samples_verbatim() {
    let doc = std::fs::read_to_string(repo().join("docs/integrations.md")).unwrap();
    let mut shown = Vec::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("<!-- file: ") {
        let after = &rest[at + "<!-- file: ".len()..];
        let (path, after) = after.split_once(" -->\n").expect("<!-- file: PATH -->");
        let after = after
            .split_once('\n')
            .expect("a fence line after the marker")
            .1;
        let (block, after) = after.split_once("\n```\n").expect("a closing fence");
        let file = std::fs::read_to_string(repo().join(path))
            .unwrap_or_else(|e| panic!("docs/integrations.md shows {path}: {e}"));
        assert_eq!(
            format!("{block}\n"),
            file,
            "docs/integrations.md's block for {path} differs from the file: copy the file into the doc"
        );
        shown.push(path.to_owned());
        rest = after;
    }
    let mut files = Vec::new();
    let mut dirs = vec![samples()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if !p.ends_with("package-lock.json") {
                files.push(p.strip_prefix(repo()).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    shown.sort();
    assert_eq!(
        shown, files,
        "every sample in examples/clients is shown once in docs/integrations.md"
    );
}
