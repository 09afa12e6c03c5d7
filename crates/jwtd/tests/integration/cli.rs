//! The `jwtd` command-line contract: exit codes, output shapes, file modes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn jwtd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jwtd"))
}

fn run(args: &[&str], dir: &Path) -> Output {
    jwtd()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("jwtd runs")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jwtd-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr_json(o: &Output) -> serde_json::Value {
    let text = String::from_utf8(o.stderr.clone()).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {text}"))
}

/// keygen + sign for `alg` in `dir`, returning the token.
fn setup(dir: &Path, alg: &str) -> String {
    let o = run(
        &[
            "keygen",
            "--alg",
            alg,
            "--out",
            "k.pem",
            "--public-out",
            "jwks.json",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(
        &[
            "sign",
            "--key",
            "k.pem",
            "--alg",
            alg,
            "--iss",
            "https://id.example",
            "--aud",
            "api",
            "--sub",
            "alice",
            "--ttl",
            "10m",
            "--claim",
            "scope=openid email",
            "--claim-json",
            "admin=true",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o).trim().to_owned()
}

#[test]
fn keygen_sign_verify_round_trip_for_each_family() {
    for alg in ["ES256", "RS256", "EdDSA", "PS256", "ES256K"] {
        let dir = tmp(&format!("rt-{alg}"));
        let token = setup(&dir, alg);
        let mode = std::fs::metadata(dir.join("k.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key file mode");
        let o = run(
            &[
                "verify",
                &token,
                "--jwks",
                "jwks.json",
                "--alg",
                alg,
                "--iss",
                "https://id.example",
                "--aud",
                "api",
                "--claim-contains",
                "scope=email",
                "--claim-json",
                "admin=true",
            ],
            &dir,
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{alg}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let claims: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["admin"], true);
        assert!(claims["jti"].as_str().unwrap().len() >= 16);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            600
        );
    }
}

#[test]
fn rejected_token_exits_1_with_reason_on_stderr() {
    let dir = tmp("reject");
    let token = setup(&dir, "ES256");
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--aud", "other"], "wrong_audience", "invalid_token"),
        (
            &["--aud", "api", "--iss", "https://evil.example"],
            "wrong_issuer",
            "invalid_token",
        ),
        (
            &["--aud", "api", "--claim-contains", "scope=payments"],
            "claim_mismatch",
            "insufficient_scope",
        ),
        (
            &["--aud", "api", "--now", "4000000000"],
            "expired",
            "invalid_token",
        ),
        (
            &["--aud", "api", "--typ", "at+jwt"],
            "wrong_type",
            "invalid_token",
        ),
        (
            &["--aud", "api", "--require", "email"],
            "missing_claim",
            "invalid_token",
        ),
    ];
    for (extra, reason, error) in cases {
        let mut args = vec![
            "verify",
            token.as_str(),
            "--jwks",
            "jwks.json",
            "--alg",
            "ES256",
        ];
        args.extend_from_slice(extra);
        let o = run(&args, &dir);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        assert!(o.stdout.is_empty(), "nothing on stdout when rejected");
        let e = stderr_json(&o);
        assert_eq!(e["reason"], *reason, "{extra:?}");
        assert_eq!(e["error"], *error, "{extra:?}");
        assert!(!e["message"].as_str().unwrap().is_empty());
        // Member order as documented.
        let raw = String::from_utf8(o.stderr.clone()).unwrap();
        assert!(raw.starts_with("{\"error\":"), "{raw}");
    }
    // A tampered token.
    let mut bad = token.clone();
    bad.push('A');
    let o = run(
        &[
            "verify",
            &bad,
            "--jwks",
            "jwks.json",
            "--alg",
            "ES256",
            "--aud",
            "api",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1));
    let reason = stderr_json(&o)["reason"].as_str().unwrap().to_owned();
    assert!(
        reason == "malformed" || reason == "bad_signature",
        "{reason}"
    );
}

#[test]
fn usage_and_key_errors_exit_2() {
    let dir = tmp("usage");
    let token = setup(&dir, "ES256");
    std::fs::write(dir.join("garbage.pem"), "not a key").unwrap();
    let cases: &[&[&str]] = &[
        &["verify", &token, "--jwks", "jwks.json"], // no --alg
        &["verify", &token, "--alg", "ES256"],      // no key source
        &["verify", &token, "--key", "garbage.pem", "--alg", "ES256"], // bad key file
        &["verify", &token, "--key", "missing.pem", "--alg", "ES256"], // unreadable
        &["verify", &token, "--jwks", "jwks.json", "--alg", "none"], // none never parses
        &[
            "verify",
            &token,
            "--jwks",
            "jwks.json",
            "--alg",
            "ES256",
            "--bogus",
        ],
        &["keygen", "--alg", "ES256", "--out", "k.pem"], // exists, no --force
    ];
    for args in cases {
        let o = run(args, &dir);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn hmac_secret_from_env_and_file() {
    let dir = tmp("hmac");
    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.join("secret"), format!("{secret}\n")).unwrap();
    let o = jwtd()
        .args([
            "sign",
            "--secret-env",
            "APP_SECRET",
            "--alg",
            "HS256",
            "--claim",
            "client_id=key-1",
            "--ttl",
            "24h",
        ])
        .env("APP_SECRET", secret)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = stdout(&o).trim().to_owned();
    let ok = run(
        &[
            "verify",
            &token,
            "--secret-file",
            "secret",
            "--alg",
            "HS256",
            "--claim",
            "client_id=key-1",
        ],
        &dir,
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = run(
        &[
            "verify",
            &token,
            "--secret-file",
            "secret",
            "--alg",
            "HS256",
            "--claim",
            "client_id=key-2",
        ],
        &dir,
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(stderr_json(&wrong)["reason"], "claim_mismatch");
    // A short secret is refused as weak, before anything is signed.
    let weak = jwtd()
        .args(["sign", "--secret-env", "S", "--alg", "HS256"])
        .env("S", "short")
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("weak_key"));
    // The secret never appears in any output.
    for o in [&ok, &wrong, &weak] {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
        assert!(!String::from_utf8_lossy(&o.stderr).contains(secret));
    }
}

#[test]
fn decode_warns_and_shows_dates() {
    let dir = tmp("decode");
    let token = setup(&dir, "EdDSA");
    let o = jwtd()
        .args(["decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("NOT verified"));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["header"]["alg"], "EdDSA");
    assert!(v["dates_utc"]["exp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn jwks_from_pems_and_rsa_needs_alg() {
    let dir = tmp("jwks");
    assert!(run(&["keygen", "--alg", "RS256", "--out", "rsa.pem"], &dir)
        .status
        .success());
    assert!(run(&["keygen", "--alg", "ES384", "--out", "ec.pem"], &dir)
        .status
        .success());
    let o = run(&["jwks", "rsa.pem", "ec.pem"], &dir);
    assert_eq!(
        o.status.code(),
        Some(2),
        "RSA key without --alg is ambiguous"
    );
    let o = run(&["jwks", "--alg", "PS256", "rsa.pem", "ec.pem"], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys[0]["alg"], "PS256");
    assert_eq!(keys[1]["alg"], "ES384");
    for k in keys {
        assert!(k.get("d").is_none(), "no private member is exported");
        assert_eq!(
            k["kid"].as_str().unwrap().len(),
            43,
            "RFC 7638 thumbprint kid"
        );
    }
}

/// Issue 15 #16: every command's `--help` ends with examples, one whole command a line, as
/// they can be pasted: at 80 columns and at the default width, no example is wrapped mid-command
/// (each example line is exactly one of the commands listed here, and all of them are there).
#[test]
fn every_command_has_help_with_examples_that_can_be_pasted() {
    let commands: &[(&[&str], &[&str])] = &[
        (&[], &[
            "jwtd keygen --alg ES256 --out signing.pem --public-out jwks.json",
            "TOKEN=$(jwtd sign --key signing.pem --iss https://id.example --aud api --sub alice --ttl 10m)",
            "jwtd verify \"$TOKEN\" --jwks jwks.json --alg ES256 --iss https://id.example --aud api",
            "jwtd decode \"$TOKEN\"",
        ]),
        (&["decode"], &["jwtd decode eyJhbGciOi...", "echo \"$TOKEN\" | jwtd decode -"]),
        (&["verify"], &[
            "jwtd verify \"$TOKEN\" --jwks jwks.json --alg RS256 --iss https://id.example/ --aud https://api.example",
            "jwtd verify \"$TOKEN\" --secret-env APP_SECRET --alg HS256 --claim client_id=12345 --any-aud",
            "jwtd verify \"$TOKEN\" --secret-file secret.jwk --alg HS256 --claim-json admin=true --any-aud",
            "jwtd verify \"$TOKEN\" --key public.pem --alg ES256 --aud example.com --max-auth-age 300",
            "jwtd verify \"$TOKEN\" --discovery https://tenant.example/ --alg RS256 --iss https://tenant.example/ --aud https://api.example",
            "jwtd verify \"$TOKEN\" --jwks wallet.json --alg RS256 --aud partner-42 --claim-contains scope=payments",
            "jwtd verify \"$TOKEN\" --config jwtd.toml",
            "jwtd verify \"$TOKEN\" --jwks jwks.json --alg ES256 --aud api --explain",
        ]),
        (&["sign"], &[
            "jwtd sign --key signing.pem --iss https://id.example --sub alice --aud api --ttl 10m",
            "jwtd sign --secret-env APP_SECRET --alg HS256 --claim client_id=12345 --claim-json admin=true",
            "jwtd sign --secret-file secret.jwk --sub alice",
            "jwtd sign --key rsa.pem --alg RS256 --claims-json claims.json --ttl 1h",
        ]),
        (&["keygen"], &[
            "jwtd keygen --alg ES256 --out signing.pem --public-out jwks.json",
            "jwtd keygen --alg RS256 --bits 3072 --kid 2026-11 --out rsa.pem",
            "jwtd keygen --alg HS256 --out secret.jwk",
        ]),
        (&["serve"], &[
            "jwtd serve --config jwtd.toml",
            "jwtd serve --listen 127.0.0.1:8080 --issuer https://tenant.example/ --audience https://api.example",
            "jwtd serve --issuer https://auth.example --audience example.com --alg ES256",
        ]),
        (&["config", "check"], &["jwtd config check jwtd.toml"]),
        (&["rules", "test"], &[
            "jwtd rules test --config jwtd.toml --request 'GET https://api.example/healthz' --no-token",
            "jwtd rules test --config jwtd.toml --request 'POST https://api.example/v1/orders/7' --token \"$TOKEN\"",
            "jwtd rules test --config jwtd.toml --request 'GET https://api.example/v1/orders/7' --token-file token.txt --json",
            "jwtd rules test --config jwtd.toml --request 'GET https://api.example/v1/orders/7' --token \"$TOKEN\" --header 'X-Tenant: acme'",
        ]),
        (&["rules", "explain"], &[
            "jwtd rules explain --config jwtd.toml",
            "jwtd rules explain --config jwtd.toml --json",
        ]),
        (&["keys", "list"], &[
            "jwtd keys list",
            "jwtd keys list --data-dir /var/lib/jwtd",
            "jwtd keys list --config jwtd.toml --json",
        ]),
        (&["keys", "rotate"], &[
            "jwtd keys rotate --config /etc/jwtd/jwtd.toml",
            "jwtd keys rotate",
            "jwtd keys rotate --config jwtd.toml --alg RS256 --publish-lead 2d",
        ]),
        (&["keys", "retire"], &[
            "jwtd keys retire --config jwtd.toml KID",
            "jwtd keys retire --config jwtd.toml --promote KID",
        ]),
        (&["keys", "remove"], &["jwtd keys remove --config jwtd.toml KID"]),
        (&["keys", "export-public"], &["jwtd keys export-public > jwks.json"]),
        (&["token", "mint"], &[
            "jwtd token mint --config jwtd.toml --sub alice --aud partner-42 --ttl 10m",
            "jwtd token mint --iss https://auth.example.com --sub alice --claim client_id=12345 --claim-json admin=true",
        ]),
        (&["dpop", "proof"], &[
            "jwtd dpop proof --key client.pem --method GET --url https://api.example/v1/orders/7 --token \"$TOKEN\"",
            "jwtd dpop proof --key client.jwk --method POST --url https://as.example/token --nonce \"$NONCE\"",
            "curl -H \"Authorization: DPoP $TOKEN\" -H \"DPoP: $(jwtd dpop proof --key client.pem --method GET --url \"$URL\" --token \"$TOKEN\")\" \"$URL\"",
        ]),
        (&["dpop", "verify"], &[
            "jwtd dpop verify --proof \"$PROOF\" --method GET --url https://api.example/v1/orders/7 --token \"$TOKEN\"",
            "jwtd dpop verify --proof - --method POST --url https://as.example/token --json < proof.txt",
        ]),
        (&["jwks"], &[
            "jwtd jwks signing.pem old-signing.pem > jwks.json",
            "jwtd jwks --alg PS256 rsa-public.pem",
        ]),
    ];
    // Every command there is, from the help's own lists: a new one must be added above.
    let mut leaves: Vec<Vec<String>> = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(cmd) = todo.pop() {
        let o = jwtd().args(&cmd).arg("--help").output().unwrap();
        let help = stdout(&o);
        let Some((_, list)) = help.split_once("\nCommands:\n") else {
            leaves.push(cmd);
            continue;
        };
        for line in list.lines().take_while(|l| !l.is_empty()) {
            // A name at two spaces; wrapped descriptions are indented further.
            let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) else {
                continue;
            };
            let name = name.split_whitespace().next().unwrap();
            if name != "help" {
                let mut sub = cmd.clone();
                sub.push(name.to_owned());
                todo.push(sub);
            }
        }
    }
    for leaf in &leaves {
        assert!(
            commands.iter().any(|(c, _)| c.iter().eq(leaf.iter())),
            "jwtd {} --help is not checked here",
            leaf.join(" ")
        );
    }
    assert!(leaves.len() >= 15, "{leaves:?}");
    for (cmd, expected) in commands {
        for columns in [Some("80"), None] {
            let mut c = jwtd();
            c.args(*cmd).arg("--help");
            match columns {
                Some(w) => c.env("COLUMNS", w),
                None => c.env_remove("COLUMNS"),
            };
            let o = c.output().unwrap();
            assert!(o.status.success(), "{cmd:?}");
            let help = stdout(&o);
            let (_, examples) = help
                .split_once("\nExamples:\n")
                .unwrap_or_else(|| panic!("{cmd:?} --help has examples:\n{help}"));
            let shown: Vec<&str> = examples.lines().collect();
            for line in &shown {
                let command = line.strip_prefix("  ").unwrap_or_else(|| {
                    panic!("{cmd:?} (COLUMNS {columns:?}): {line:?} is not an indented example")
                });
                assert!(
                    expected.contains(&command),
                    "{cmd:?} (COLUMNS {columns:?}): {line:?} is not a whole example command:\n{help}"
                );
            }
            let shown: Vec<&str> = shown.iter().map(|l| l.trim_start()).collect();
            assert_eq!(shown, *expected, "{cmd:?} (COLUMNS {columns:?})");
        }
    }
}

#[test]
fn keys_and_token_mint_against_the_store() {
    let dir = tmp("keys");
    // No store yet: a clear usage error.
    let o = run(&["keys", "list"], &dir);
    assert_eq!(o.status.code(), Some(2));
    // Create the store as `jwtd serve` would, through the library.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let data = dir.join("jwtd-data");
        std::fs::create_dir_all(&data).unwrap();
        let (kek, _) = jwtd_store::Kek::load_or_create(&data.join("kek.key")).unwrap();
        let store = jwtd_store::SqliteStore::open(&data.join("keys.db"))
            .await
            .unwrap();
        let ring = jwtd_store::KeyRing::open(store, kek, jwtd_store::RingConfig::default())
            .await
            .unwrap();
        ring.ensure_active(1).await.unwrap();
        // Closed before the CLI runs, so no connection of this process lingers on the file.
        ring.store().pool().close().await;
    });
    drop(rt);
    let o = run(&["keys", "rotate"], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = stdout(&run(&["keys", "list"], &dir));
    assert!(
        list.contains("active") && list.contains("pending"),
        "{list}"
    );
    let token = stdout(&run(
        &[
            "token",
            "mint",
            "--iss",
            "https://auth.example",
            "--sub",
            "bob",
            "--aud",
            "partner-42",
            "--claim",
            "scope=payments read",
        ],
        &dir,
    ))
    .trim()
    .to_owned();
    let jwks = run(&["keys", "export-public"], &dir);
    assert!(jwks.status.success());
    std::fs::write(dir.join("pub.json"), &jwks.stdout).unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        2,
        "active and pending are published"
    );
    let o = run(
        &[
            "verify",
            &token,
            "--jwks",
            "pub.json",
            "--alg",
            "ES256",
            "--iss",
            "https://auth.example",
            "--aud",
            "partner-42",
            "--claim-contains",
            "scope=payments",
        ],
        &dir,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Reserved claims cannot be smuggled in.
    let o = run(
        &[
            "token", "mint", "--iss", "x", "--sub", "bob", "--claim", "exp=1",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    // Emergency removal of the signing key: the pending key takes over, the old one is gone.
    let active = list
        .lines()
        .find(|l| l.contains("active"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let o = run(&["keys", "remove", &active], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = stdout(&run(&["keys", "list"], &dir));
    assert!(!after.contains(&active), "{after}");
    assert_eq!(
        after.lines().filter(|l| l.contains("active")).count(),
        1,
        "{after}"
    );
}

#[test]
fn keys_against_the_shared_postgres_store() {
    let url = jwtd_test_support::pg_url();
    let schema = jwtd_test_support::schema("cli");
    let dir = tmp("pgkeys");
    let kek = jwtd_core::b64::encode([42u8; 32]);
    let pg = |args: &[&str], with_kek: bool| {
        let mut c = jwtd();
        c.args(args)
            .args(["--store", &url, "--store-schema", &schema])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .env_remove("JWTD_KEK");
        if with_kek {
            c.env("JWTD_KEK", &kek);
        }
        c.output().expect("jwtd runs")
    };
    // Without the instances' KEK: refused, and no KEK file is generated.
    let o = pg(&["keys", "list"], false);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("JWTD_KEK"));
    assert!(!dir.join("jwtd-data/kek.key").exists());
    // With it: a rotation on the shared store, listed and published.
    let o = pg(&["keys", "rotate"], true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = stdout(&pg(&["keys", "list"], true));
    assert!(list.contains("pending"), "{list}");
    let jwks: serde_json::Value =
        serde_json::from_slice(&pg(&["keys", "export-public"], true).stdout).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

/// A plain HTTP server on 127.0.0.1 answering `routes` (path, status, body); 404 otherwise.
/// Returns its base URL.
fn http_server(routes: Vec<(&'static str, u16, String)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, "{}".into()));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

/// A key source that answers with something that can never work (a discovery document naming
/// another issuer, a JWKS with no key for the allowed algorithm) is a key error: exit 2 at once,
/// not exit 1 after retrying for the whole --fetch-timeout. A source that is down (an error
/// status) is retried until the timeout, then exit 1 with key_fetch_failed.
#[test]
fn unusable_remote_key_sources_exit_2_at_once() {
    let dir = tmp("remote");
    let token = setup(&dir, "ES256");
    let jwks = std::fs::read_to_string(dir.join("jwks.json")).unwrap();
    let base = http_server(vec![
        (
            "/.well-known/openid-configuration",
            200,
            serde_json::json!({"issuer": "https://someone-else.example/", "jwks_uri": "/jwks"})
                .to_string(),
        ),
        ("/jwks", 200, jwks),
        ("/down", 503, "{}".into()),
    ]);
    let verify = |source: &[&str], alg: &str, timeout: &str| {
        let mut args = vec!["verify", token.as_str(), "--alg", alg, "--any-aud"];
        args.extend_from_slice(source);
        args.extend_from_slice(&["--fetch-timeout", timeout]);
        let started = std::time::Instant::now();
        let o = run(&args, &dir);
        (o, started.elapsed())
    };
    let discovery = format!("{base}/");
    let jwks_url = format!("{base}/jwks");
    // The server works: the token verifies from its JWKS.
    let (o, _) = verify(&["--jwks-url", &jwks_url], "ES256", "20");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (source, alg, why) in [
        (
            ["--discovery", discovery.as_str()],
            "ES256",
            "issuer_mismatch",
        ),
        (["--jwks-url", jwks_url.as_str()], "RS256", "no_usable_key"),
    ] {
        let (o, took) = verify(&source, alg, "20");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{source:?}: {err}");
        assert!(err.contains(why), "{source:?}: {err}");
        assert!(
            took < std::time::Duration::from_secs(5),
            "{source:?}: {took:?}"
        );
    }
    let (o, took) = verify(&["--jwks-url", &format!("{base}/down")], "ES256", "1");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr_json(&o)["reason"], "key_fetch_failed");
    assert_eq!(stderr_json(&o)["error"], "temporarily_unavailable");
    assert!(
        took >= std::time::Duration::from_secs(1),
        "retried until the timeout"
    );
}

#[test]
fn pasted_bearer_prefix_is_removed_with_a_note() {
    let dir = tmp("bearer");
    let token = setup(&dir, "ES256");
    for pasted in [format!("Bearer {token}"), format!("bearer  {token}")] {
        let o = run(
            &[
                "verify",
                &pasted,
                "--jwks",
                "jwks.json",
                "--alg",
                "ES256",
                "--iss",
                "https://id.example",
                "--aud",
                "api",
            ],
            &dir,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(err.contains("removed a leading \"Bearer \""), "{err}");
        let o = run(&["decode", &pasted], &dir);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("removed a leading \"Bearer \""), "{err}");
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["claims"]["sub"], "alice");
    }
    let o = run(&["decode", "Bearer "], &dir);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn decode_says_whether_the_token_is_expired() {
    let dir = tmp("decode-exp");
    let token = setup(&dir, "EdDSA");
    let o = run(&["decode", &token], &dir);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    // 600 s, or 599 s when a second turned between sign and decode.
    assert!(
        err.contains("expires in 10 minutes (") || err.contains("expires in 9 minutes ("),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["expired"], false);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let then = (now - 780).to_string();
    let o = run(
        &["sign", "--key", "k.pem", "--ttl", "10m", "--now", &then],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let old = stdout(&o).trim().to_owned();
    let o = run(&["decode", &old], &dir);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("expired 3 minutes ago ("), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["expired"], true);
}

#[test]
fn unknown_key_names_the_kids_there_are() {
    let dir = tmp("unknown-kid");
    let token = setup(&dir, "ES256");
    let o = run(
        &[
            "keygen",
            "--alg",
            "ES256",
            "--kid",
            "other-key",
            "--out",
            "k2.pem",
            "--public-out",
            "jwks2.json",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(
        &[
            "verify",
            &token,
            "--jwks",
            "jwks2.json",
            "--alg",
            "ES256",
            "--aud",
            "api",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr_json(&o);
    assert_eq!(e["reason"], "unknown_key");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.ends_with("; known kids: \"other-key\" (ES256)"),
        "{message}"
    );
}

#[test]
fn swapped_jwks_and_key_get_a_hint() {
    let dir = tmp("swapped");
    let token = setup(&dir, "ES256");
    let base = ["verify", token.as_str(), "--alg", "ES256", "--aud", "api"];
    let o = run(&[&base[..], &["--jwks", "k.pem"]].concat(), &dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("this looks like a PEM file, not a JWKS: use --key k.pem"),
        "{err}"
    );
    let o = run(&[&base[..], &["--key", "jwks.json"]].concat(), &dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("this looks like a JWKS ({\"keys\": [...]}): use --jwks jwks.json"),
        "{err}"
    );
    // One JWK given as a JWKS.
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("jwks.json")).unwrap()).unwrap();
    std::fs::write(dir.join("one.jwk"), jwks["keys"][0].to_string()).unwrap();
    let o = run(&[&base[..], &["--jwks", "one.jwk"]].concat(), &dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("this looks like one JWK, not a JWKS"), "{err}");
    // ... which works with --key.
    let o = run(&[&base[..], &["--key", "one.jwk"]].concat(), &dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn verify_with_a_service_configuration() {
    let dir = tmp("verify-config");
    let token = setup(&dir, "ES256");
    std::fs::write(
        dir.join("jwtd.toml"),
        "[[issuer]]\nname = \"local\"\nissuer = \"https://id.example\"\n\
         jwks_file = \"jwks.json\"\nalgorithms = [\"ES256\"]\naudiences = [\"api\"]\n\
         [[issuer]]\nname = \"other\"\nissuer = \"https://other.example\"\n\
         jwks_file = \"jwks.json\"\nalgorithms = [\"ES256\"]\naudiences = [\"billing\"]\n",
    )
    .unwrap();
    let o = run(&["verify", "--config", "jwtd.toml", &token], &dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("verified by issuer \"local\""), "{err}");
    let claims: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(claims["sub"], "alice");
    // The configured policy applies: here, its audience.
    std::fs::write(
        dir.join("billing.toml"),
        "[[issuer]]\nname = \"local\"\nissuer = \"https://id.example\"\n\
         jwks_file = \"jwks.json\"\nalgorithms = [\"ES256\"]\naudiences = [\"billing\"]\n",
    )
    .unwrap();
    let o = run(&["verify", "--config", "billing.toml", &token], &dir);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr_json(&o)["reason"], "wrong_audience");
    // Policy flags do not go with --config.
    let o = run(
        &["verify", "--config", "jwtd.toml", "--aud", "api", &token],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn verify_explain_prints_every_check_in_words() {
    let dir = tmp("explain");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = setup(&dir, "ES256");
    let then = (now - 780).to_string();
    let o = run(
        &[
            "sign",
            "--key",
            "k.pem",
            "--iss",
            "https://id.example",
            "--aud",
            "api",
            "--ttl",
            "10m",
            "--now",
            &then,
            "--claim",
            "scope=openid",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let old = stdout(&o).trim().to_owned();
    let o = run(
        &[
            "verify",
            &old,
            "--jwks",
            "jwks.json",
            "--alg",
            "ES256",
            "--iss",
            "https://id.example",
            "--aud",
            "billing",
            "--claim-contains",
            "scope=email",
            "--explain",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "algorithm: ES256 (allowed: ES256)",
        "(expired 3 minutes ago)",
        "times (leeway 30 s, exp required): FAILS (expired:",
        "iss: \"https://id.example\", expected \"https://id.example\": ok",
        "aud: \"api\", expected \"billing\": FAILS (wrong_audience:",
        "claim \"scope\" contains \"email\": FAILS (claim_mismatch:",
        "result: rejected (expired:",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    // With --config: the issuer picked and the key used.
    std::fs::write(
        dir.join("jwtd.toml"),
        "[[issuer]]\nname = \"local\"\nissuer = \"https://id.example\"\n\
         jwks_file = \"jwks.json\"\nalgorithms = [\"ES256\"]\naudiences = [\"api\"]\n\
         [[issuer]]\nname = \"other\"\nissuer = \"https://other.example\"\n\
         jwks_file = \"jwks.json\"\nalgorithms = [\"ES256\"]\nany_audience = true\n",
    )
    .unwrap();
    let o = run(
        &["verify", "--config", "jwtd.toml", "--explain", &token],
        &dir,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for want in [
        "issuer: \"local\" (the token's iss \"https://id.example\" selects it)",
        "signature: verified with the key kid \"",
        "(expires in ",
        "aud: \"api\", expected \"api\": ok",
        "result: verified",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    serde_json::from_str::<serde_json::Value>(&stdout(&o)).expect("claims JSON on stdout");
}

/// Runs `cmd` to its end, killing it (and failing) if it still runs after 30 s: a `serve` that
/// should have refused its configuration must not hang the test.
fn output_within_30s(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{cmd:?} still runs after 30 s");
        }
    }
}

/// stderr of a refused command as the lines it printed, without the leading `jwtd: `.
fn error_lines(o: &Output) -> Vec<String> {
    let text = String::from_utf8(o.stderr.clone()).unwrap();
    let text = text.strip_prefix("jwtd: ").unwrap_or(&text);
    text.lines().map(str::to_owned).collect()
}

/// Issue 15 #4, as a user runs it: `jwtd config check` reports every error of a file at once,
/// each with its line (an unknown key in one issuer, a bad algorithm in another, a missing
/// `jwks_file` and `ca_file`, unset secrets), and exits 2; `jwtd serve` refuses the same file
/// with the same lines, before it binds or creates anything.
#[test]
fn config_check_and_serve_report_every_error_with_its_line() {
    let dir = tmp("check-all");
    let text = "\
listen = \"127.0.0.1:1\"
[admin]
api_key_env = \"JWTD_CHECK_TEST_UNSET_ADMIN\"

[[issuer]]
name = \"idp\"
issuer = \"https://idp.example\"
discovery = \"https://idp.example\"
algorithms = [\"RS256\"]
audiences = [\"api\"]
audience = \"api\"
ca_file = \"missing-ca.pem\"

[[issuer]]
name = \"partner\"
issuer = \"https://partner.example\"
jwks_url = \"https://partner.example/jwks.json\"
algorithms = [\"RS265\"]

[[issuer]]
name = \"files\"
issuer = \"https://files.example\"
jwks_file = \"missing-jwks.json\"
algorithms = [\"ES256\"]

[[issuer]]
name = \"internal\"
issuer = \"https://internal.example\"
secret_env = \"JWTD_CHECK_TEST_UNSET_SECRET\"
algorithms = [\"HS256\"]
";
    std::fs::write(dir.join("jwtd.toml"), text).unwrap();
    let expected = [
        "jwtd.toml:3: admin api key: environment variable JWTD_CHECK_TEST_UNSET_ADMIN is not set",
        "jwtd.toml:11: issuer \"idp\": unknown field `audience`, expected one of",
        "jwtd.toml:12: issuer \"idp\": cannot read missing-ca.pem: ",
        "jwtd.toml:18: issuer \"partner\": unknown algorithm \"RS265\"",
        "jwtd.toml:23: issuer \"files\": cannot read missing-jwks.json: ",
        "jwtd.toml:29: issuer \"internal\": HMAC secret: environment variable JWTD_CHECK_TEST_UNSET_SECRET is not set",
    ];
    let check = |args: &[&str]| {
        let o = output_within_30s(
            jwtd()
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .env_remove("JWTD_CHECK_TEST_UNSET_ADMIN")
                .env_remove("JWTD_CHECK_TEST_UNSET_SECRET"),
        );
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
        let lines = error_lines(&o);
        assert_eq!(
            lines.len(),
            expected.len(),
            "{args:?}: one line per error: {lines:#?}"
        );
        for (line, want) in lines.iter().zip(expected) {
            assert!(
                line.starts_with(want),
                "{args:?}: {line:?} is not {want:?}: {lines:#?}"
            );
        }
        lines
    };
    let checked = check(&["config", "check", "jwtd.toml"]);
    let served = check(&["serve", "--config", "jwtd.toml"]);
    assert_eq!(checked, served, "serve says what config check says");
    assert!(!dir.join("jwtd-data").exists(), "serve created nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The full sample of docs/configuration.md: refused while the secrets it names are unset and
/// its `ca_file` is missing (by `config check` as by `serve`, each on its key's line), accepted
/// once they are there.
#[test]
fn the_documented_sample_passes_config_check_once_its_inputs_exist() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap();
    let sample = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("docs/configuration.md has a toml sample");
    let dir = tmp("doc-sample");
    std::fs::write(dir.join("jwtd.toml"), sample).unwrap();
    let line_of = |key: &str| {
        1 + sample
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in the sample"))
    };
    let vars = ["JWTD_INTROSPECTION_SECRET", "JWTD_ADMIN_KEY"];
    let refused = |args: &[&str]| {
        let mut cmd = jwtd();
        cmd.args(args).current_dir(&dir).stdin(Stdio::null());
        for v in vars {
            cmd.env_remove(v);
        }
        let o = output_within_30s(&mut cmd);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let lines = error_lines(&o);
        for (key, what) in [
            ("client_secret_env", "introspection client secret: environment variable JWTD_INTROSPECTION_SECRET is not set"),
            ("api_key_env", "admin api key: environment variable JWTD_ADMIN_KEY is not set"),
            ("ca_file", "issuer \"auth0\": cannot read ca.pem"),
        ] {
            let want = format!("jwtd.toml:{}: {what}", line_of(key));
            assert!(
                lines.iter().any(|l| l.starts_with(&want)),
                "{args:?}: {want:?} in {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 3, "{args:?}: {lines:#?}");
    };
    refused(&["config", "check", "jwtd.toml"]);
    refused(&["serve", "--config", "jwtd.toml"]);
    std::fs::write(dir.join("ca.pem"), "a CA bundle\n").unwrap();
    let o = jwtd()
        .args(["config", "check", "jwtd.toml"])
        .current_dir(&dir)
        .env(
            "JWTD_INTROSPECTION_SECRET",
            "an-introspection-secret-0123456789",
        )
        .env("JWTD_ADMIN_KEY", "an-admin-key-0123456789abcdef")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o).trim(),
        "jwtd.toml: ok (1 issuer(s), listen 127.0.0.1:8080)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rules of the `jwtd rules` tests: a public health check, a scoped order read (a literal
/// `mine` beside it), an admin route needing `amr` to contain `mfa`; no catch-all, so a path
/// no rule takes gets `[rules] default` (deny).
const RULES_TOML: &str = "\
[[issuer]]
name = \"corp\"
issuer = \"https://id.example\"
secret_file = \"secret\"
algorithms = [\"HS256\"]
audiences = [\"api\"]

[[rule]]
id = \"health\"
path = \"/healthz\"
auth = \"public\"

[[rule]]
id = \"orders-read\"
hosts = [\"api.example\"]
path = \"/v1/orders/:id\"
methods = [\"GET\"]
auth = \"corp\"
scopes = { all = [\"orders:read\"] }
[rule.set_headers]
x-order-id = \"{path.id}\"

[[rule]]
id = \"orders-mine\"
path = \"/v1/orders/mine\"
methods = [\"GET\"]
auth = \"corp\"

[[rule]]
id = \"admin\"
path = \"/admin/**\"
methods = [\"POST\"]
auth = \"corp\"
claims = [{ path = \"amr\", contains = \"mfa\" }]
";

/// The 1-based line of the first line of `text` equal to `line`.
fn line_in(text: &str, line: &str) -> u64 {
    1 + text
        .lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} in the text")) as u64
}

/// A directory with RULES_TOML as jwtd.toml and its HMAC secret.
fn rules_dir(name: &str) -> PathBuf {
    let dir = tmp(name);
    std::fs::write(dir.join("secret"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(dir.join("jwtd.toml"), RULES_TOML).unwrap();
    dir
}

/// An HS256 token of the corp issuer for alice, with `extra` claim flags.
fn corp_token(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "sign",
        "--secret-file",
        "secret",
        "--alg",
        "HS256",
        "--iss",
        "https://id.example",
        "--aud",
        "api",
        "--sub",
        "alice",
        "--ttl",
        "10m",
    ];
    args.extend_from_slice(extra);
    let o = run(&args, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o).trim().to_owned()
}

/// `jwtd rules test ... --json`: the exit code and the decision object; the token appears in
/// no output.
fn rules_test(dir: &Path, request: &str, token: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec![
        "rules",
        "test",
        "--config",
        "jwtd.toml",
        "--request",
        request,
    ];
    args.extend_from_slice(token);
    args.push("--json");
    let o = run(&args, dir);
    for t in token.iter().filter(|t| t.len() > 40) {
        assert!(!stdout(&o).contains(t), "the token is never printed");
        assert!(!String::from_utf8_lossy(&o.stderr).contains(t));
    }
    let v = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{request}: stdout is not JSON ({e}): {o:?}"));
    (o.status.code(), v)
}

#[test]
fn rules_test_allows_with_the_headers_it_would_set() {
    let dir = rules_dir("rules-allow");
    let reader = corp_token(&dir, &["--claim", "scope=orders:read profile"]);
    let (code, v) = rules_test(
        &dir,
        "GET https://api.example/v1/orders/7?expand=items",
        &["--token", &reader],
    );
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["rule"], "orders-read");
    assert_eq!(v["matched"], "rule");
    assert_eq!(v["rule_line"], line_in(RULES_TOML, "id = \"orders-read\""));
    assert_eq!(v["status"], 200);
    assert_eq!(v["issuer"], "corp");
    assert_eq!(v["reason"], serde_json::Value::Null);
    assert_eq!(v["www_authenticate"], serde_json::Value::Null);
    assert_eq!(v["headers"]["x-order-id"], "7");
    assert_eq!(v["headers"]["x-auth-subject"], "alice");
    assert_eq!(v["headers"]["x-auth-issuer"], "https://id.example");
    let fp = v["token"].as_str().unwrap();
    assert_eq!(fp.len(), 12, "a fingerprint, not the token: {fp}");
    // The literal beats the parameter; the public health check needs no token.
    let (code, v) = rules_test(
        &dir,
        "GET https://api.example/v1/orders/mine",
        &["--token", &reader],
    );
    assert_eq!(
        (code, v["rule"].as_str()),
        (Some(0), Some("orders-mine")),
        "{v:#}"
    );
    assert_eq!(
        v["headers"]["x-order-id"], "",
        "every identity header is answered"
    );
    let (code, v) = rules_test(&dir, "GET https://other.example/healthz", &["--no-token"]);
    assert_eq!(
        (code, v["rule"].as_str()),
        (Some(0), Some("health")),
        "{v:#}"
    );
    assert_eq!(v["token"], serde_json::Value::Null);
    // An admin token with mfa passes the claim predicate; from a file, too.
    let admin = corp_token(&dir, &["--claim-json", "amr=[\"pwd\",\"mfa\"]"]);
    std::fs::write(dir.join("token.txt"), format!("{admin}\n")).unwrap();
    let (code, v) = rules_test(
        &dir,
        "POST https://api.example/admin/users",
        &["--token-file", "token.txt"],
    );
    assert_eq!(
        (code, v["rule"].as_str()),
        (Some(0), Some("admin")),
        "{v:#}"
    );
    // In words: the same decision, the headers one a line, never the token.
    let o = run(
        &[
            "rules",
            "test",
            "--config",
            "jwtd.toml",
            "--request",
            "GET https://api.example/v1/orders/7",
            "--token",
            &reader,
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = stdout(&o);
    for want in [
        "decision: allow\n".to_owned(),
        format!(
            "rule:     orders-read (line {})\n",
            line_in(RULES_TOML, "id = \"orders-read\"")
        ),
        "status:   200\n".to_owned(),
        "  x-order-id: 7\n".to_owned(),
        "  x-auth-subject: alice\n".to_owned(),
        format!("token:    fingerprint {fp} "),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }
    assert!(!text.contains(&reader));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rules_test_denies_with_the_reason_status_and_challenge() {
    let dir = rules_dir("rules-deny");
    let profile = corp_token(&dir, &["--claim", "scope=profile"]);
    // A token without the scope: 403 insufficient_scope naming the scope needed.
    let (code, v) = rules_test(
        &dir,
        "GET https://api.example/v1/orders/7",
        &["--token", &profile],
    );
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "orders-read");
    assert_eq!(v["status"], 403);
    assert_eq!(v["reason"], "missing_scope");
    assert_eq!(v["error"], "insufficient_scope");
    assert_eq!(v["issuer"], "corp");
    let www = v["www_authenticate"].as_str().unwrap();
    assert!(
        www.starts_with("Bearer realm=\"jwtd\", error=\"insufficient_scope\""),
        "{www}"
    );
    assert!(www.ends_with(", scope=\"orders:read\""), "{www}");
    assert_eq!(v["headers"], serde_json::json!({}));
    // No token: 401 with the bare challenge.
    let (code, v) = rules_test(&dir, "GET https://api.example/v1/orders/7", &["--no-token"]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(
        (v["status"].as_u64(), v["reason"].as_str()),
        (Some(401), Some("missing_token"))
    );
    assert_eq!(v["www_authenticate"], "Bearer realm=\"jwtd\"");
    // The host condition: another host does not match orders-read, and nothing else takes
    // the path: the default (deny).
    for request in [
        "GET https://other.example/v1/orders/7",
        "DELETE https://api.example/v1/orders/7",
        "GET https://api.example/nothing/here",
    ] {
        let (code, v) = rules_test(&dir, request, &["--token", &profile]);
        assert_eq!(code, Some(1), "{request}: {v:#}");
        assert_eq!(v["matched"], "default", "{request}");
        assert_eq!(v["default"], "deny", "{request}");
        assert_eq!(v["rule"], serde_json::Value::Null, "{request}");
        assert_eq!(v["status"], 403, "{request}");
        assert_eq!(v["reason"], "no_matching_rule", "{request}");
    }
    // The admin claim predicate: without mfa, 403 claim_mismatch.
    let (code, v) = rules_test(
        &dir,
        "POST https://api.example/admin/users",
        &["--token", &profile],
    );
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(
        (v["rule"].as_str(), v["reason"].as_str()),
        (Some("admin"), Some("claim_mismatch"))
    );
    // A path the matcher refuses: 400.
    let (code, v) = rules_test(
        &dir,
        "GET https://api.example/v1//orders/7",
        &["--no-token"],
    );
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(
        (v["matched"].as_str(), v["status"].as_u64()),
        (Some("bad_path"), Some(400))
    );
    // In words: the reason, the status and the challenge.
    let o = run(
        &[
            "rules",
            "test",
            "--config",
            "jwtd.toml",
            "--request",
            "GET https://api.example/v1/orders/7",
            "--token",
            &profile,
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let text = stdout(&o);
    for want in [
        "decision: deny\n",
        "status:   403\n",
        "reason:   missing_scope (insufficient_scope): ",
        "www-authenticate: Bearer realm=\"jwtd\", error=\"insufficient_scope\"",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    assert!(
        o.stderr.is_empty(),
        "a denial is the answer, not an error: {o:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rules_test_refuses_malformed_input_with_exit_2() {
    let dir = rules_dir("rules-usage");
    let token = corp_token(&dir, &[]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--request", "GET /v1/orders/7", "--no-token"],
            "is not an absolute URL",
        ),
        (
            &["--request", "https://api.example/v1/orders/7", "--no-token"],
            "is not two words",
        ),
        (
            &["--request", "GET ftp://api.example/x", "--no-token"],
            "the scheme must be http or https",
        ),
        (
            &["--request", "GET https://api.example/a b", "--no-token"],
            "is not two words",
        ),
        (
            &["--request", "GET https://api.example/a#b", "--no-token"],
            "fragment",
        ),
        (
            &["--request", "G(T https://api.example/a", "--no-token"],
            "is not an HTTP method",
        ),
        (
            &["--request", "GET https://u@api.example/a", "--no-token"],
            "user information",
        ),
        (
            &[
                "--request",
                "GET https://api.example/a",
                "--no-token",
                "--header",
                "no colon",
            ],
            "is not `Name: value`",
        ),
        // Exactly one of --token, --token-file, --no-token.
        (&["--request", "GET https://api.example/a"], "--no-token"),
        (
            &[
                "--request",
                "GET https://api.example/a",
                "--no-token",
                "--token",
                &token,
            ],
            "cannot be used with",
        ),
        (
            &[
                "--request",
                "GET https://api.example/a",
                "--token-file",
                "missing.txt",
            ],
            "cannot read missing.txt",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["rules", "test", "--config", "jwtd.toml"];
        args.extend_from_slice(extra);
        let o = run(&args, &dir);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {o:?}");
        assert!(err.contains(want), "{extra:?}: {want:?} in {err}");
        assert!(o.stdout.is_empty(), "{extra:?}");
        assert!(
            !err.contains(&token),
            "{extra:?}: the token is never printed"
        );
    }
    // A configuration that does not load: exit 2 with its lines.
    std::fs::write(
        dir.join("bad.toml"),
        "[[rule]]\nid = \"x\"\npath = \"/a\"\nauth = \"nobody\"\n",
    )
    .unwrap();
    let o = run(
        &[
            "rules",
            "test",
            "--config",
            "bad.toml",
            "--request",
            "GET https://a.example/a",
            "--no-token",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("bad.toml:4: rule \"x\": auth: unknown issuer \"nobody\""),
        "{o:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The engine of `jwtd rules test` is the one `jwtd serve` builds, jwtd's own `[signing]`
/// issuer included, but nothing is created or changed: without the key ring it exits 2 and
/// says so; with it, it reads it and leaves every file as it was.
#[test]
fn rules_test_reads_the_key_ring_and_creates_nothing() {
    let dir = tmp("rules-ring");
    std::fs::write(dir.join("admin.key"), "an-admin-key-0123456789abcdef\n").unwrap();
    std::fs::set_permissions(
        dir.join("admin.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        dir.join("jwtd.toml"),
        "listen = \"127.0.0.1:8080\"\n[signing]\ndata_dir = \"data\"\naudiences = [\"api\"]\n\
         [revocation]\n[admin]\napi_key_file = \"admin.key\"\n\
         [[rule]]\nid = \"own\"\npath = \"/**\"\nauth = \"self\"\n",
    )
    .unwrap();
    let test = |token: &[&str]| {
        let mut args = vec![
            "rules",
            "test",
            "--config",
            "jwtd.toml",
            "--request",
            "GET https://api.example/x",
        ];
        args.extend_from_slice(token);
        args.push("--json");
        run(&args, &dir)
    };
    let o = test(&["--no-token"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not exist here yet") && err.contains("creates nothing"),
        "{err}"
    );
    assert!(!dir.join("data").exists(), "no data directory created");
    // The ring as `jwtd serve` leaves it, then a token it minted.
    let data = dir.join("data");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        std::fs::create_dir_all(&data).unwrap();
        let (kek, _) = jwtd_store::Kek::load_or_create(&data.join("kek.key")).unwrap();
        let store = jwtd_store::SqliteStore::open(&data.join("keys.db"))
            .await
            .unwrap();
        let ring = jwtd_store::KeyRing::open(store, kek, jwtd_store::RingConfig::default())
            .await
            .unwrap();
        ring.ensure_active(1).await.unwrap();
        ring.store().pool().close().await;
    });
    drop(rt);
    let o = run(
        &[
            "token",
            "mint",
            "--config",
            "jwtd.toml",
            "--sub",
            "bob",
            "--aud",
            "api",
        ],
        &dir,
    );
    assert!(o.status.success(), "{o:?}");
    let token = stdout(&o).trim().to_owned();
    let files = || {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    // `token mint` exits without closing its connection: its -wal stays, as after a stopped
    // `jwtd serve`, and the read-only store reads through it.
    let before = files();
    let o = test(&["--token", &token]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["rule"].as_str(), v["issuer"].as_str()),
        (Some("own"), Some("self"))
    );
    assert_eq!(v["headers"]["x-auth-subject"], "bob");
    let o = test(&["--no-token"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        files(),
        before,
        "the key ring and the revocation store are left as they were"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Remote keys are fetched as `jwtd serve` fetches them (here from a JWKS on 127.0.0.1).
#[test]
fn rules_test_fetches_remote_keys_as_serve_does() {
    let dir = tmp("rules-remote");
    let token = setup(&dir, "ES256");
    let jwks = std::fs::read_to_string(dir.join("jwks.json")).unwrap();
    let base = http_server(vec![("/jwks.json", 200, jwks)]);
    std::fs::write(
        dir.join("jwtd.toml"),
        format!(
            "[[issuer]]\nname = \"remote\"\nissuer = \"https://id.example\"\n\
             jwks_url = \"{base}/jwks.json\"\nalgorithms = [\"ES256\"]\naudiences = [\"api\"]\n\
             [[rule]]\nid = \"email\"\npath = \"/mail/**\"\nauth = \"remote\"\n\
             scopes = {{ any = [\"email\"] }}\n"
        ),
    )
    .unwrap();
    let (code, v) = rules_test(
        &dir,
        "GET http://127.0.0.1:9/mail/inbox",
        &["--token", &token],
    );
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(
        (v["rule"].as_str(), v["issuer"].as_str()),
        (Some("email"), Some("remote"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rules_explain_lists_the_rules_in_match_order() {
    let dir = rules_dir("rules-explain");
    let o = run(
        &["rules", "explain", "--config", "jwtd.toml", "--json"],
        &dir,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admin", "health", "orders-mine", "orders-read"]);
    let read = &v["rules"][3];
    assert_eq!(read["line"], line_in(RULES_TOML, "id = \"orders-read\""));
    assert_eq!(read["hosts"], serde_json::json!(["api.example"]));
    assert_eq!(read["methods"], "GET");
    assert_eq!(read["path"], "/v1/orders/:id");
    assert_eq!(read["requirement"], "corp");
    assert_eq!(read["scopes"], "scope holds all of [orders:read]");
    assert_eq!(
        read["set_headers"],
        serde_json::json!({"x-order-id": "{path.id}"})
    );
    assert_eq!(read["audiences"], serde_json::Value::Null);
    assert!(
        read["specificity"].as_str().unwrap().contains("param :id"),
        "{read:#}"
    );
    assert_eq!(
        v["rules"][0]["claims"],
        serde_json::json!(["amr contains \"mfa\""])
    );
    assert_eq!(v["rules"][1]["requirement"], "public");
    assert_eq!(v["default"], "deny");
    assert_eq!(v["warnings"], serde_json::json!([]));
    // In words: numbered in the same order, then the default.
    let o = run(&["rules", "explain", "--config", "jwtd.toml"], &dir);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = stdout(&o);
    let numbered: Vec<&str> = text
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    let line = |id: &str| line_in(RULES_TOML, &format!("id = \"{id}\""));
    assert_eq!(
        numbered,
        [
            format!("1. admin (line {})", line("admin")),
            format!("2. health (line {})", line("health")),
            format!("3. orders-mine (line {})", line("orders-mine")),
            format!("4. orders-read (line {})", line("orders-read")),
        ]
    );
    assert!(text.contains("\ndefault: deny: "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `jwtd config check` prints the rules' lint warnings on stderr, with their lines, and still
/// exits 0; `jwtd rules explain` lists the same warnings.
#[test]
fn config_check_prints_rule_warnings_with_their_lines() {
    let dir = rules_dir("rules-lint");
    let text = format!(
        "{RULES_TOML}\n[[rule]]\nid = \"docs-write\"\npath = \"/docs/**\"\nmethods = [\"PUT\"]\nauth = \"corp\"\n\
         \n[[rule]]\nid = \"docs\"\npath = \"/docs/**\"\nauth = \"public\"\n"
    );
    std::fs::write(dir.join("lint.toml"), &text).unwrap();
    let o = run(&["config", "check", "lint.toml"], &dir);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o).trim(),
        "lint.toml: ok (1 issuer(s), listen 127.0.0.1:8080)"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let want = format!(
        "lint.toml: warning: rule \"docs-write\" (line {}) needs a token for \"/docs/**\", but other methods than PUT on that path fall back to the public rule \"docs\" (line {}) (\"/docs/**\") and pass without a token",
        line_in(&text, "id = \"docs-write\""),
        line_in(&text, "id = \"docs\""),
    );
    assert_eq!(lines, [want.as_str()], "{err}");
    // Without the public fallback: no warning.
    let o = run(&["config", "check", "jwtd.toml"], &dir);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");
    let o = run(
        &["rules", "explain", "--config", "lint.toml", "--json"],
        &dir,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["warnings"],
        serde_json::json!([want.strip_prefix("lint.toml: warning: ").unwrap()])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `jwtd config check` warns about an issuer whose `[issuer.dpop] mode = "off"` (its
/// DPoP-bound tokens are then bearer tokens), naming it with its line; and refuses
/// `[forwarded] client_cert` without an explicit `trusted_proxies` (exit 2), as `jwtd serve`
/// does (review M4).
#[test]
fn config_check_warns_of_dpop_off_and_refuses_an_implicit_certificate_proxy() {
    let dir = rules_dir("dpop-off");
    let text = RULES_TOML.replace(
        "audiences = [\"api\"]\n",
        "audiences = [\"api\"]\n[issuer.dpop]\nmode = \"off\"\n",
    );
    assert!(text.contains("[issuer.dpop]"));
    std::fs::write(dir.join("off.toml"), &text).unwrap();
    let o = run(&["config", "check", "off.toml"], &dir);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    let want = format!(
        "off.toml: warning: issuer \"corp\" (line {}) has [issuer.dpop] mode = \"off\"",
        line_in(&text, "name = \"corp\"")
    );
    assert!(err.lines().any(|l| l.starts_with(&want)), "{err}");
    // The default (enforce-cnf): no warning.
    let o = run(&["config", "check", "jwtd.toml"], &dir);
    assert!(o.stderr.is_empty(), "{o:?}");

    let forwarded = format!("[forwarded]\nclient_cert = \"rfc9440\"\n\n{RULES_TOML}");
    std::fs::write(dir.join("fwd.toml"), &forwarded).unwrap();
    for args in [
        &["config", "check", "fwd.toml"][..],
        &["serve", "--config", "fwd.toml"][..],
    ] {
        let o = run(args, &dir);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("[forwarded] client_cert needs an explicit trusted_proxies"),
            "{args:?}: {err}"
        );
    }
    let explicit = format!("trusted_proxies = [\"127.0.0.1\"]\n{forwarded}");
    std::fs::write(dir.join("fwd.toml"), &explicit).unwrap();
    let o = run(&["config", "check", "fwd.toml"], &dir);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `jwtd rules` transcript of docs/configuration.md ("Trying rules"), run as it is: its
/// sample as `rules.toml`, each `$ ` line through `sh` (with this build's `jwtd` first on the
/// PATH), each output compared with the lines the document shows under it (token
/// fingerprints aside: every run signs a new token).
#[test]
fn the_documented_rules_transcript_is_what_jwtd_prints() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap();
    let section = doc
        .split("### Trying rules")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/configuration.md has the \"Trying rules\" section");
    let block = |fence: &str| {
        section
            .split(fence)
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap_or_else(|| panic!("a {fence} block"))
            .to_owned()
    };
    let (sample, console) = (block("```toml\n"), block("```console\n"));
    let dir = tmp("doc-rules");
    std::fs::write(dir.join("rules.toml"), &sample).unwrap();
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
    let out = stdout(&o);
    let fingerprint = |s: &str| match s.split_once("fingerprint ") {
        Some((a, b)) if b.len() >= 12 => format!("{a}fingerprint <12 hex>{}", &b[12..]),
        _ => s.to_owned(),
    };
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
        let shown: Vec<String> = shown.lines().map(fingerprint).collect();
        let expected: Vec<String> = expected.iter().map(|l| fingerprint(l)).collect();
        assert_eq!(shown, expected, "{cmd}");
        assert!(
            shown
                .iter()
                .all(|l| !l.contains("fingerprint ") || l.contains("<12 hex>")),
            "{cmd}"
        );
    }
    assert_eq!(
        codes,
        [0, 0, 0, 1, 1, 1, 0],
        "exit codes as the document says"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
