//! `jwtd dpop proof` and `jwtd dpop verify`: the transcript of docs/dpop.md run as it is, and
//! the usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jwtd-dpop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("jwtd runs")
}

/// The members that differ from run to run (a new key, a random `jti`, the clock), shown as
/// `<varies>`; the rest of the line is kept.
fn mask(line: &str) -> String {
    for key in ["jkt:", "jti:", "iat:", "\"jkt\":", "\"jti\":", "\"iat\":"] {
        if let Some(at) = line.find(key) {
            if line[..at].trim().is_empty() {
                return format!("{}{key} <varies>", &line[..at]);
            }
        }
    }
    line.to_owned()
}

/// The `jwtd dpop` transcript of docs/dpop.md, run as it is: each `$ ` line through `sh` (with
/// this build's `jwtd` first on the PATH), each output compared with the lines the document
/// shows under it (the key's thumbprint, the jti and iat aside, which are checked for shape).
#[test]
fn the_documented_dpop_transcript_is_what_jwtd_prints() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dpop.md"))
            .unwrap();
    let section = doc
        .split("## Trying it: `jwtd dpop proof` and `jwtd dpop verify`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/dpop.md has the \"Trying it\" section");
    let console = section
        .split("```console\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a console block");
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in console.lines() {
        match line.strip_prefix("$ ") {
            Some(cmd) => steps.push((cmd.to_owned(), Vec::new())),
            None => steps
                .last_mut()
                .expect("a command first")
                .1
                .push(line.to_owned()),
        }
    }
    let mut script = String::new();
    for (i, (cmd, _)) in steps.iter().enumerate() {
        script.push_str(&format!("{cmd}\necho \"@@{i} $?\"\n"));
    }
    let dir = tmp("doc");
    let bin = Path::new(env!("CARGO_BIN_EXE_jwtd")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    let pem = std::fs::read_to_string(dir.join("client.pem")).unwrap();
    let kid = pem
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .expect("keygen names the key")
        .to_owned();
    let mut rest = out.as_str();
    let mut codes = Vec::new();
    for (i, (cmd, expected)) in steps.iter().enumerate() {
        let marker = format!("@@{i} ");
        let (shown, after) = rest
            .split_once(&marker)
            .unwrap_or_else(|| panic!("{cmd}: no end marker in {out}\n{o:?}"));
        let (code, after) = after.split_once('\n').unwrap();
        codes.push(code.parse::<i32>().unwrap());
        rest = after;
        for line in shown.lines() {
            let value = line
                .split_once(':')
                .map(|(_, v)| v.trim().trim_matches([',', '"']));
            match line.trim_start().split(':').next() {
                Some("jkt" | "\"jkt\"") => assert_eq!(value, Some(kid.as_str()), "{cmd}"),
                Some("jti" | "\"jti\"") => assert_eq!(value.map(str::len), Some(22), "{cmd}"),
                Some("iat" | "\"iat\"") => assert!(
                    value.is_some_and(|v| v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit())),
                    "{cmd}: {line}"
                ),
                _ => {}
            }
        }
        let shown: Vec<String> = shown.lines().map(mask).collect();
        let expected: Vec<String> = expected.iter().map(|l| mask(l)).collect();
        assert_eq!(shown, expected, "{cmd}");
    }
    assert_eq!(
        codes,
        [0, 0, 0, 0, 1, 1, 0, 1, 0],
        "exit codes as the document says"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dpop_usage_errors_exit_2() {
    let dir = tmp("usage");
    assert!(run(&["keygen", "--alg", "ES256", "--out", "es.pem"], &dir)
        .status
        .success());
    assert!(run(&["keygen", "--alg", "HS256", "--out", "hs.jwk"], &dir)
        .status
        .success());
    let url = "https://api.example/a";
    for (args, says) in [
        (
            vec![
                "dpop", "proof", "--key", "hs.jwk", "--method", "GET", "--url", url,
            ],
            "HMAC secret cannot sign",
        ),
        (
            vec![
                "dpop", "proof", "--key", "es.pem", "--method", "G T", "--url", url,
            ],
            "is not an HTTP method",
        ),
        (
            vec![
                "dpop", "proof", "--key", "es.pem", "--method", "GET", "--url", "/a",
            ],
            "absolute",
        ),
        (
            vec![
                "dpop", "proof", "--key", "es.pem", "--alg", "ES384", "--method", "GET", "--url",
                url,
            ],
            "cannot be used with ES384",
        ),
        (
            vec![
                "dpop", "verify", "--proof", "x.y.z", "--method", "GET", "--url", url, "--alg",
                "HS256",
            ],
            "HS256 cannot sign DPoP proofs",
        ),
        (
            vec![
                "dpop",
                "verify",
                "--proof",
                "x.y.z",
                "--method",
                "GET",
                "--url",
                "ftp://e/a",
            ],
            "http or https",
        ),
    ] {
        let o = run(&args, &dir);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A refused proof is exit 1 with the reason on stdout; a proof by a PEM key verifies.
    let o = run(
        &[
            "dpop", "verify", "--proof", "x.y.z", "--method", "GET", "--url", url,
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("reason:  dpop_invalid"));
    let o = run(
        &[
            "dpop", "proof", "--key", "es.pem", "--method", "GET", "--url", url, "--nonce", "n1",
        ],
        &dir,
    );
    assert!(o.status.success());
    let proof = String::from_utf8(o.stdout).unwrap();
    let o = run(
        &[
            "dpop",
            "verify",
            "--proof",
            proof.trim(),
            "--method",
            "GET",
            "--url",
            url,
            "--json",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["nonce"], "n1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A proof's `jti` and `nonce` are the client's text: `jwtd dpop verify` prints them escaped,
/// so a proof cannot write terminal escapes or forge output lines (a `reason:` line) on the
/// operator's terminal.
#[test]
fn verify_prints_the_proofs_own_text_escaped() {
    let dir = tmp("escape");
    assert!(
        run(&["keygen", "--alg", "ES256", "--out", "client.pem"], &dir)
            .status
            .success()
    );
    let url = "https://api.example/x";
    let o = run(
        &[
            "dpop",
            "proof",
            "--key",
            "client.pem",
            "--method",
            "GET",
            "--url",
            url,
            "--jti",
            "\u{1b}[2Kj\u{7}\u{202e}",
            "--nonce",
            "n\nreason:  forged",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let proof = String::from_utf8(o.stdout).unwrap();
    let o = run(
        &[
            "dpop",
            "verify",
            "--proof",
            proof.trim(),
            "--method",
            "GET",
            "--url",
            url,
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(!out.lines().any(|l| l.starts_with("reason:")), "{out}");
    assert!(
        out.contains("jti:     \\u{1b}[2Kj\\u{7}\\u{202e}\n"),
        "{out}"
    );
    assert!(out.contains("nonce:   n\\nreason:  forged\n"), "{out}");
}
