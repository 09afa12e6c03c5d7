//! The DPoP `jti` table shared through PostgreSQL (`[dpop_replay]`, `replay_store =
//! "shared"`), as users run it: several `jwtd serve` processes on the machine's real
//! PostgreSQL (its own schema per run), proofs made by panva's `jose`
//! (crates/jwtd/tests/dpop-peer/replay.mjs), sent to `/auth` as nginx forwards them. A proof
//! accepted by one instance is `dpop_replay` on the other; with the store down (a port
//! nothing listens on) proofs are refused 503 `dpop_replay_unavailable` by default and
//! decided by the memory cache with `on_unavailable = "local"`; one key flooding its
//! `replay_max_per_key` is refused `dpop_replay_key_limit` while another key's proof passes.
//! `--nocapture` prints the cost of the shared table per request (1000 requests each way).
//!
//! Needs `node` and jose in target/dpop-peer and PostgreSQL (scripts/ensure-deps); fails,
//! never skips, without them.

use crate::common::{free_port, http_request, wait_for_http, Guard};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENSURE: &str = "run scripts/ensure-deps (it installs jose into target/dpop-peer)";
const HTU: &str = "https://api.example/v1/orders/7";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn jose(n: usize, m: usize) -> Value {
    let dir = repo().join("target/dpop-peer");
    assert!(
        dir.join("node_modules/jose/package.json").is_file(),
        "jose is missing from {}: {ENSURE}",
        dir.display()
    );
    let script = dir.join(format!("replay-{}.mjs", std::process::id()));
    std::fs::copy(
        repo().join("crates/jwtd/tests/dpop-peer/replay.mjs"),
        &script,
    )
    .unwrap();
    let arg = serde_json::json!({"method": "GET", "htu": HTU, "n": n, "m": m});
    let out = Command::new("node")
        .arg(&script)
        .arg(arg.to_string())
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

/// Starts `jwtd serve` in `dir/<name>` with `[issuer.dpop]` = `dpop` and the extra
/// top-level tables `extra`; its port.
fn serve(dir: &Path, name: &str, dpop: &str, extra: &str, guard: &mut Guard) -> u16 {
    let port = free_port();
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(dir.join("jwks.json"), d.join("jwks.json")).unwrap();
    std::fs::write(
        d.join("jwtd.toml"),
        format!(
            r#"listen = "127.0.0.1:{port}"

{extra}

[[issuer]]
name = "as"
issuer = "https://as.example"
jwks_file = "jwks.json"
algorithms = ["ES256"]
audiences = ["api"]
typ = "at+jwt"

[issuer.dpop]
max_age = "10m"
{dpop}
"#
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config", "jwtd.toml"])
        .current_dir(&d)
        .env_remove("JWTD_KEK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    guard.0.push(child);
    wait_for_http(port);
    port
}

/// `/auth` as nginx sends it (forwarded method, scheme, host, URI from a loopback peer):
/// status, the reason (`ok` for 200) and the `Retry-After` header.
fn auth(port: u16, token: &str, proof: &str) -> (u16, String, Option<String>) {
    let authz = format!("DPoP {token}");
    let (status, headers, body) = http_request(
        port,
        "GET",
        "/auth",
        &[
            ("authorization", &authz),
            ("dpop", proof),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example"),
            ("x-forwarded-uri", "/v1/orders/7"),
            ("x-forwarded-method", "GET"),
        ],
    );
    let reason = if status == 200 {
        "ok".to_owned()
    } else {
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status} {body}"));
        v["reason"].as_str().unwrap().to_owned()
    };
    let retry = headers
        .iter()
        .find(|(n, _)| n == "retry-after")
        .map(|(_, v)| v.clone());
    (status, reason, retry)
}

#[test]
fn a_proof_accepted_by_one_instance_is_a_replay_on_another() {
    const TIMED: usize = 1000;
    let dir = jwtd_test_support::temp_dir("dpop-shared");
    let doc = jose(TIMED + 10, TIMED + 2);
    std::fs::write(dir.join("jwks.json"), doc["jwks"].to_string()).unwrap();
    let token = doc["token"].as_str().unwrap();
    let proofs: Vec<&str> = doc["proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let other = doc["other"]["token"].as_str().unwrap();
    let others: Vec<&str> = doc["other"]["proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();

    let url = jwtd_test_support::pg_url();
    let schema = jwtd_test_support::schema("dpop_shared");
    let shared = format!(
        "[dpop_replay]\nstore = \"{url}\"\nstore_schema = \"{schema}\"\ntimeout = \"1s\"\n"
    );
    let down =
        "[dpop_replay]\nstore = \"postgres://postgres@127.0.0.1:1/test\"\ntimeout = \"300ms\"\n";
    let mut guard = Guard(vec![]);
    let a = serve(&dir, "a", "replay_store = \"shared\"", &shared, &mut guard);
    let b = serve(&dir, "b", "replay_store = \"shared\"", &shared, &mut guard);

    // Accepted by a, replayed to b: refused there, and on a too (its memory cache).
    assert_eq!(auth(a, token, proofs[0]).1, "ok");
    assert_eq!(auth(b, token, proofs[0]).1, "dpop_replay", "b sees a's jti");
    assert_eq!(auth(a, token, proofs[0]).1, "dpop_replay");
    // And the other way round.
    assert_eq!(auth(b, token, proofs[1]).1, "ok");
    let (status, reason, _) = auth(a, token, proofs[1]);
    assert_eq!(
        (status, reason.as_str()),
        (401, "dpop_replay"),
        "a sees b's jti"
    );

    // The store down: 503 dpop_replay_unavailable (Retry-After), by default...
    let reject = serve(
        &dir,
        "reject",
        "replay_store = \"shared\"",
        down,
        &mut guard,
    );
    let (status, reason, retry) = auth(reject, token, proofs[2]);
    assert_eq!((status, reason.as_str()), (503, "dpop_replay_unavailable"));
    assert_eq!(retry.as_deref(), Some("5"));
    // ... not burnt: the same proof is refused again for the store, not as a replay.
    assert_eq!(auth(reject, token, proofs[2]).1, "dpop_replay_unavailable");
    // ... and with on_unavailable = "local" the memory cache decides alone.
    let local = serve(
        &dir,
        "local",
        "replay_store = \"shared\"",
        &format!("{down}on_unavailable = \"local\"\n"),
        &mut guard,
    );
    assert_eq!(auth(local, token, proofs[3]).1, "ok");
    assert_eq!(auth(local, token, proofs[3]).1, "dpop_replay");

    // The memory cache alone (the baseline), with a cap per key: TIMED proofs of one key pass,
    // the next is refused for its key, and another key's proof still passes.
    let memory = serve(
        &dir,
        "memory",
        &format!("replay_max_per_key = {TIMED}"),
        "",
        &mut guard,
    );
    let time = |port: u16, token: &str, proofs: &[&str]| {
        let start = Instant::now();
        for p in proofs {
            assert_eq!(auth(port, token, p).1, "ok");
        }
        start.elapsed() / proofs.len() as u32
    };
    let mem = time(memory, token, &proofs[10..10 + TIMED]);
    let (status, reason, retry) = auth(memory, token, proofs[4]);
    assert_eq!(
        (status, reason.as_str(), retry.as_deref()),
        (503, "dpop_replay_key_limit", Some("5"))
    );
    assert_eq!(
        auth(memory, other, others[0]).1,
        "ok",
        "another key is unaffected"
    );
    // The same number through the shared table (another key: the memory instance's cap is its
    // own).
    let pg = time(a, other, &others[1..=TIMED]);
    let extra = pg.saturating_sub(mem);
    println!(
        "/auth with a DPoP proof over {TIMED} requests: {mem:?} each with the memory cache, \
         {pg:?} with the shared PostgreSQL table ({extra:?} more)"
    );
    // Bounded by the timeout even when the store is down.
    let t = Instant::now();
    assert_eq!(auth(reject, token, proofs[5]).1, "dpop_replay_unavailable");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Each call the store did not answer is counted, by what the proof got.
    let metric = |port: u16, outcome: &str| -> String {
        let (_, _, body) = http_request(port, "GET", "/metrics", &[]);
        let name = format!("jwtd_dpop_replay_store_failures_total{{outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&name))
            .unwrap_or_else(|| panic!("no {name}in {body}"))
            .to_owned()
    };
    assert_eq!(metric(reject, "rejected"), "3");
    // The second sighting of proofs[3] was caught by the memory cache: no call.
    assert_eq!(metric(local, "local"), "1");
}
