//! The Debian package, as a user without a Rust toolchain gets jwtd: `cargo deb` packages the
//! jwtd binary these tests built (staged as the release binary cargo-deb expects, so CI needs no
//! release build), `dpkg -i` installs it, and the installed binary is started the way
//! `jwtd.service` would start it: the unit's own ExecStartPre and ExecStart lines, as its User=,
//! with its UMask=, LimitNOFILE=, the state directory StateDirectory= creates, no new privileges
//! and an empty capability bounding set. It answers /healthz, mints and verifies a token, reloads
//! on the unit's ExecReload signal and stops in time on SIGTERM; then `dpkg -r` and `--purge`
//! remove it. The machine has no systemd as PID 1, so the unit's sandbox (ProtectSystem=, the
//! namespaces, the system call filter) is checked by `systemd-analyze verify` and `security
//! --offline` only, never enforced here (docs/deployment.md says so).
//!
//! Needs root, dpkg, cargo-deb, setpriv and systemd-analyze (scripts/ensure-deps installs them):
//! it fails, never skips, without them. It installs into the real system, so it holds a lock
//! for the whole install-to-purge run (another worktree's run waits), refuses to touch a jwtd
//! package it did not install, and purges its own on any failure.

use crate::common::{free_port, http_get, http_post, wait_for_http};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian revision of the packages this test builds: a jwtd package installed with it was
/// left by an earlier run of this test (killed before it purged), and may be purged.
const TEST_REVISION: &str = "0jwtdselftest";

const UNIT: &str = "/usr/lib/systemd/system/jwtd.service";

/// Runs `cmd` to completion within `limit` (killed past it), its output in files under `dir`;
/// returns (success, stdout, stderr).
fn run(cmd: &mut Command, dir: &Path, what: &str, limit: Duration) -> (bool, String, String) {
    let out = dir.join(format!("{what}.out"));
    let err = dir.join(format!("{what}.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: {cmd:?} still running after {limit:?}\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        fs::read_to_string(&out).unwrap(),
        fs::read_to_string(&err).unwrap(),
    )
}

/// Like [`run`], and the command must succeed.
fn ok(cmd: &mut Command, dir: &Path, what: &str, limit: Duration) -> String {
    let (success, out, err) = run(cmd, dir, what, limit);
    assert!(
        success,
        "{what}: {cmd:?} failed\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// `dpkg-query`'s status and version of jwtd, if dpkg knows the package.
fn installed() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev} ${Version}", "jwtd"])
        .stderr(Stdio::null())
        .output()
        .expect("dpkg-query (dpkg) is required");
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty() && !s.starts_with("un ")).then_some(s)
}

fn purge() {
    let _ = Command::new("dpkg")
        .args(["--purge", "jwtd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills the service and purges the package when the test fails half-way.
struct Cleanup(Option<Child>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            purge();
        }
    }
}

/// The `[Service]` settings of a unit file (the last value of each key).
fn service_settings(unit: &str) -> HashMap<String, String> {
    let mut section = "";
    let mut map = HashMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                map.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    map
}

fn require(tool: &str, args: &[&str]) {
    let found = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the Debian package test needs `{tool}` (run scripts/ensure-deps, as root)"
    );
}

/// Holds an exclusive lock on a file under /run/lock for the whole install-to-purge run:
/// another worktree's run of this test waits (up to 10 minutes) instead of fighting over dpkg.
fn system_lock() -> fs::File {
    use std::os::fd::AsRawFd;
    let f = fs::File::create("/run/lock/jwtd-package-test.lock").unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    // SAFETY: flock on a file descriptor this function owns.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(
            Instant::now() < deadline,
            "another run of the Debian package test held /run/lock/jwtd-package-test.lock for 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    f
}

fn mode(p: &str) -> (u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    (m.permissions().mode() & 0o7777, m.uid())
}

#[test]
fn debian_package_installs_serves_as_its_unit_would_and_purges() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the Debian package test installs a package: run the tests as root (CI does)"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    require(&cargo, &["deb", "--version"]);
    for tool in ["dpkg", "dpkg-deb", "setpriv", "systemd-analyze"] {
        require(tool, &["--version"]);
    }
    let _lock = system_lock();
    match installed() {
        Some(s) if s.ends_with(TEST_REVISION) => purge(),
        Some(s) => panic!(
            "a jwtd package not made by this test is installed ({s}); the test would replace \
             it and purge /var/lib/jwtd: remove it first (dpkg --purge jwtd)"
        ),
        None => {}
    }
    assert!(
        !Path::new("/var/lib/jwtd").exists() && !Path::new("/etc/jwtd").exists(),
        "/var/lib/jwtd or /etc/jwtd exist without the jwtd package: remove them first"
    );

    let dir = std::env::temp_dir().join(format!("jwtd-package-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let release = dir.join("target/release");
    fs::create_dir_all(&release).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_jwtd"), release.join("jwtd")).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let deb = dir.join("jwtd.deb");

    // The package, from the binary these tests built (no release build), stripped.
    let started = Instant::now();
    ok(
        Command::new(&cargo)
            .args(["deb", "-p", "jwtd", "--no-build", "--locked", "--fast"])
            .args(["--strip", "--no-separate-debug-symbols", "--no-dbgsym"])
            .arg("--no-compress-debug-symbols")
            .args(["--deb-revision", TEST_REVISION, "--output"])
            .arg(&deb)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .current_dir(&root),
        &dir,
        "cargo-deb",
        Duration::from_secs(300),
    );
    eprintln!("cargo deb: {:?}", started.elapsed());
    let info = ok(
        Command::new("dpkg-deb").args(["-f"]).arg(&deb),
        &dir,
        "dpkg-deb-f",
        Duration::from_secs(30),
    );
    assert!(info.contains("Package: jwtd"), "{info}");
    assert!(info.contains("libc6"), "Depends from $auto: {info}");

    let mut cleanup = Cleanup(None);
    ok(
        Command::new("dpkg").arg("-i").arg(&deb),
        &dir,
        "dpkg-i",
        Duration::from_secs(120),
    );
    assert!(installed().unwrap().starts_with("ii "), "{:?}", installed());
    for (path, want) in [
        ("/usr/bin/jwtd", 0o755),
        ("/usr/libexec/jwtd/jwtd-prepare-state", 0o755),
        (UNIT, 0o644),
        ("/usr/lib/sysusers.d/jwtd.conf", 0o644),
        ("/etc/jwtd/jwtd.toml", 0o644),
        ("/usr/share/doc/jwtd/README.md", 0o644),
        ("/usr/share/doc/jwtd/deployment.md", 0o644),
        ("/usr/share/doc/jwtd/configuration.md", 0o644),
        ("/usr/share/doc/jwtd/copyright", 0o644),
    ] {
        assert_eq!(mode(path), (want, 0), "{path}: mode and owner");
    }
    let conffiles = ok(
        Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "jwtd"]),
        &dir,
        "conffiles",
        Duration::from_secs(30),
    );
    assert!(conffiles.contains("/etc/jwtd/jwtd.toml"), "{conffiles}");
    let version = ok(
        Command::new("/usr/bin/jwtd").arg("--version"),
        &dir,
        "version",
        Duration::from_secs(10),
    );
    assert_eq!(
        version.trim(),
        format!("jwtd {}", env!("CARGO_PKG_VERSION"))
    );
    // The postinst created the system user (systemd-sysusers), with no login shell.
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("jwtd:"))
        .unwrap_or_else(|| panic!("no jwtd user after dpkg -i"))
        .to_owned();
    assert!(user.ends_with(":/var/lib/jwtd:/usr/sbin/nologin"), "{user}");
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system user: {user}");

    // The unit as installed: valid, and as hardened as it was (exposure at most 2.0 of 10).
    let (valid, out, err) = run(
        Command::new("systemd-analyze").args(["verify", UNIT]),
        &dir,
        "verify",
        Duration::from_secs(60),
    );
    assert!(
        valid && !err.contains(UNIT),
        "systemd-analyze verify: {out}{err}"
    );
    let (hardened, out, err) = run(
        Command::new("systemd-analyze").args(["security", "--offline=yes", "--threshold=20", UNIT]),
        &dir,
        "security",
        Duration::from_secs(60),
    );
    assert!(
        hardened,
        "systemd-analyze security: exposure above 2.0\n{out}{err}"
    );
    let exposure = out
        .lines()
        .chain(err.lines())
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_owned();
    eprintln!("{exposure}");

    let unit = service_settings(&fs::read_to_string(UNIT).unwrap());
    let get = |k: &str| {
        unit.get(k)
            .unwrap_or_else(|| panic!("jwtd.service has no {k}="))
            .clone()
    };
    assert_eq!(
        get("ExecStart"),
        "/usr/bin/jwtd serve --config /etc/jwtd/jwtd.toml"
    );
    assert_eq!(get("User"), "jwtd");
    assert_eq!(get("StateDirectory"), "jwtd");
    assert_eq!(get("StateDirectoryMode"), "0700");
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    let stop: u64 = get("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(
        stop > 11,
        "TimeoutStopSec {stop} s must exceed the 10 s drain (+1 s)"
    );

    // The shipped configuration listens on loopback only; like an admin, the test edits the
    // conffile to a free port (another service may hold 8080 on this machine).
    let cfg = fs::read_to_string("/etc/jwtd/jwtd.toml").unwrap();
    assert!(cfg.contains("\nlisten = \"127.0.0.1:8080\""), "{cfg}");
    let port = free_port();
    fs::write(
        "/etc/jwtd/jwtd.toml",
        cfg.replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();

    // What systemd does before ExecStart: StateDirectory= creates /var/lib/jwtd, owned by
    // User=, StateDirectoryMode=; then each Exec line runs as User= with UMask= and
    // LimitNOFILE=, a clean environment, NoNewPrivileges= and no capabilities.
    let state = format!("/var/lib/{}", get("StateDirectory"));
    ok(
        Command::new("install").args([
            "-d",
            "-o",
            "jwtd",
            "-g",
            "jwtd",
            "-m",
            &get("StateDirectoryMode"),
            &state,
        ]),
        &dir,
        "state-dir",
        Duration::from_secs(10),
    );
    // LimitNOFILE=: systemd (root) raises the hard limit up to the kernel's nr_open; a
    // container may cap it lower (this CI's: 20000), and then the test uses that cap, saying so.
    let mut nofile: u64 = get("LimitNOFILE").parse().unwrap();
    let can_raise = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("ulimit -n {nofile}"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !can_raise {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        eprintln!(
            "LimitNOFILE={nofile} cannot be set on this machine (hard limit {}): testing with {}",
            lim.rlim_max, lim.rlim_max
        );
        nofile = lim.rlim_max;
    }
    let as_unit = |line: &str| {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(
                "umask \"$1\" && ulimit -n \"$2\" && shift 2 && exec setpriv --reuid=jwtd \
                 --regid=jwtd --init-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- \"$@\"",
            )
            .arg("sh")
            .arg(get("UMask"))
            .arg(nofile.to_string())
            .args(line.split_whitespace())
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &state)
            .env("USER", "jwtd")
            .env("LOGNAME", "jwtd")
            .env("STATE_DIRECTORY", &state)
            .env("CONFIGURATION_DIRECTORY", "/etc/jwtd");
        c
    };
    ok(
        &mut as_unit(&get("ExecStartPre")),
        &dir,
        "exec-start-pre",
        Duration::from_secs(30),
    );
    let log = dir.join("serve.err");
    let child = as_unit(&get("ExecStart"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("serve.out")).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    cleanup.0 = Some(child);
    wait_for_http(port);
    let (status, _, body) = http_get(port, "/healthz", &[]);
    assert_eq!(status, 200, "{body}");

    // The process is the service user's, with the unit's limits and no privileges.
    let proc_status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("CapBnd:"), "0000000000000000");
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        open_files,
        format!("Max open files {nofile} {nofile} files")
    );

    // Mint with the admin key the ExecStartPre created, verify, as the README says.
    let admin = fs::read_to_string(format!("{state}/admin.key")).unwrap();
    let admin = admin.trim();
    assert_eq!(admin.len(), 43, "32 bytes in base64url: {admin:?}");
    let (status, body) = http_post(
        port,
        "/v1/tokens",
        admin,
        r#"{"sub":"alice","aud":"my-api","ttl":"10m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let minted: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", minted["token"].as_str().unwrap());
    let (status, _, body) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"sub\":\"alice\""), "{body}");
    let (status, _, _) = http_get(port, "/v1/verify", &[]);
    assert_eq!(status, 401);

    // Everything in the state directory is the service user's and private.
    assert_eq!(mode(&state), (0o700, uid));
    for f in ["admin.key", "kek.key", "keys.db"] {
        assert_eq!(mode(&format!("{state}/{f}")), (0o600, uid), "{f}");
    }

    // ExecReload: SIGHUP re-reads the configuration; the service keeps serving.
    let reload = get("ExecReload").replace("$MAINPID", &pid.to_string());
    ok(
        Command::new("/bin/sh").arg("-c").arg(&reload),
        &dir,
        "reload",
        Duration::from_secs(10),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fs::read_to_string(&log)
        .unwrap()
        .contains("configuration reloaded")
    {
        assert!(
            Instant::now() < deadline,
            "no reload logged after SIGHUP:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _, _) = http_get(port, "/v1/verify", &[("authorization", &bearer)]);
    assert_eq!(status, 200);

    // systemctl stop: SIGTERM, and jwtd exits 0 well within TimeoutStopSec.
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let child = cleanup.0.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(stop);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "jwtd ignored SIGTERM for {stop} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    cleanup.0 = None;
    assert!(
        exit.success(),
        "{exit:?}\n{}",
        fs::read_to_string(&log).unwrap()
    );

    // dpkg -r: the program goes, the configuration and the key ring stay.
    ok(
        Command::new("dpkg").args(["-r", "jwtd"]),
        &dir,
        "dpkg-r",
        Duration::from_secs(120),
    );
    assert!(installed().unwrap().starts_with("rc "), "{:?}", installed());
    for gone in [
        "/usr/bin/jwtd",
        UNIT,
        "/usr/libexec/jwtd",
        "/usr/share/doc/jwtd",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left by dpkg -r");
    }
    assert!(Path::new("/etc/jwtd/jwtd.toml").exists());
    assert!(Path::new(&format!("{state}/keys.db")).exists());
    // dpkg --purge: the configuration and the state directory go too.
    ok(
        Command::new("dpkg").args(["--purge", "jwtd"]),
        &dir,
        "dpkg-purge",
        Duration::from_secs(120),
    );
    assert_eq!(installed(), None);
    for gone in [
        "/etc/jwtd",
        "/var/lib/jwtd",
        "/usr/lib/sysusers.d/jwtd.conf",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left by dpkg --purge");
    }
    drop(cleanup);
    let _ = fs::remove_dir_all(&dir);
}
