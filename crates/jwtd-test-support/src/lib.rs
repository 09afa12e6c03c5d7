//! # jwtd-test-support
//!
//! What the integration tests of several jwtd crates need alike, in one place: the PostgreSQL
//! they share ([`pg_url`]), names that never collide between tests or runs ([`unique`],
//! [`schema`], [`temp_dir`]), ports for servers started as child processes ([`free_port`],
//! [`wait_for_http`], [`Guard`]) and tokens ([`sign`], [`hs256`]).
//!
//! A dev-dependency only (`publish = false`): no library or binary of the workspace depends on
//! it. Every helper is safe to call from many tests at once on the threads of one test binary.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PostgreSQL the tests share: `JWTD_TEST_POSTGRES_URL`, else
/// `postgres://postgres@127.0.0.1:5432/test` (what `scripts/ensure-deps` starts, trust auth).
/// A missing PostgreSQL fails the tests that need it; they are never skipped.
pub fn pg_url() -> String {
    std::env::var("JWTD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `prefix`, the time in Unix seconds and 8 random hex digits, joined by `_`
/// (`jwtd_svc_1767225600_0a1b2c3d`): a name no other test, run or machine picks.
pub fn unique(prefix: &str) -> String {
    let mut r = [0u8; 4];
    jwtd_core::fill_random(&mut r).expect("random bytes");
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{}_{hex}", jwtd_core::unix_now())
}

/// A PostgreSQL schema name for one test, `jwtd_<kind>_<unix time>_<8 hex digits>`: the
/// creation time lets `scripts/test` drop the schemas old runs left behind (the pattern it
/// matches). `kind` is lower-case letters and `_`.
pub fn schema(kind: &str) -> String {
    assert!(
        !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "schema kind {kind:?}: lower-case letters and _ only (scripts/test matches them)"
    );
    unique(&format!("jwtd_{kind}"))
}

/// A new, empty directory under the system's temporary directory, named after `name`, this
/// process and a random suffix (`jwtd-<name>-<pid>-<hex>`), so tests running at once never
/// share one. Left in place for a failing test's files to be looked at.
pub fn temp_dir(name: &str) -> PathBuf {
    let mut r = [0u8; 4];
    jwtd_core::fill_random(&mut r).expect("random bytes");
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let d = std::env::temp_dir().join(format!("jwtd-{name}-{}-{hex}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

/// The first port of the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`;
/// 32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A TCP port on 127.0.0.1 that nothing listens on, for a server a test starts as a child
/// process (which has to be told its port; a server in the test's own process binds port 0
/// instead). The port is below the kernel's ephemeral range, where the kernel never picks one
/// by itself (neither for a `bind` to port 0 nor as the local port of an outgoing
/// connection), so it stays free until the child binds it even while other tests of the binary
/// open thousands of connections; each port is handed out once per process (from a random
/// start, so that two test processes rarely meet) and is checked free by binding it.
pub fn free_port() -> u16 {
    const LOW: u32 = 10_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let high = ephemeral_low().clamp(LOW + 1_000, 65_536);
    let span = high - LOW;
    let next = NEXT.get_or_init(|| {
        let mut r = [0u8; 4];
        jwtd_core::fill_random(&mut r).expect("random bytes");
        AtomicU32::new(u32::from_le_bytes(r) % span)
    });
    for _ in 0..span {
        let port = (LOW + next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {LOW}..{high}");
}

/// Waits (up to 10 s, else panics) until an HTTP server answers on 127.0.0.1:`port`, with any
/// status to `GET /healthz`. An open port is not enough: `jwtd serve` binds before it builds
/// its state (data directory, keys), and answers the connections queued meanwhile once it
/// serves.
pub fn wait_for_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let answers = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")?;
        let mut head = [0u8; 5];
        s.read_exact(&mut head)?;
        Ok(&head == b"HTTP/")
    };
    while !matches!(answers(), Ok(true)) {
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Child processes killed (and reaped) when the guard is dropped, also when the test fails.
pub struct Guard(pub Vec<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A compact JWS of `claims` (a JSON object) signed by `key`, with the key's `kid`.
pub fn sign(key: &jwtd_core::SigningKey, claims: &serde_json::Value) -> String {
    let claims = claims.as_object().expect("claims are a JSON object");
    jwtd_core::sign(key, claims, None).expect("signing")
}

/// An HS256 token of `claims` under the shared `secret`, without `kid` (as an issuer
/// configured with `secret_env` verifies).
pub fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let key = jwtd_core::SigningKey::hmac(secret, jwtd_core::Algorithm::HS256, None)
        .expect("an HMAC key of at least 32 bytes");
    sign(&key, claims)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_match_what_scripts_test_drops() {
        let s = super::schema("svc");
        let parts: Vec<&str> = s.rsplitn(3, '_').collect();
        assert_eq!(parts.len(), 3, "{s}");
        assert_eq!(parts[2], "jwtd_svc");
        assert_eq!(parts[1].len(), 10, "{s}");
        assert!(parts[0].len() == 8 && parts[0].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(super::unique("x"), super::unique("x"));
    }

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| super::free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| u32::from(*p) < super::ephemeral_low()));
    }
}
