//! The conformance table every front must answer alike (for tests; hidden from the docs):
//! `conformance/jwtd.toml` (two issuers, the rules of the engine's examples) and
//! `conformance/cases.json` (request, token → status, reason, rule, identity headers). The
//! engine's own tests run it against [`crate::Engine`]; `jwtd serve`'s run it against `/auth`
//! over HTTP, jwtd-tower's through the layer, jwtd-extauthz's over gRPC and jwtd-proxy's
//! through the proxy to a real upstream.

use jwtd_core::{Algorithm, SigningKey};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it shows.
    pub name: String,
    /// The request's method.
    pub method: String,
    /// The request's path (and query), raw.
    pub path: String,
    /// The token's label (see [`Suite::token`]), or none.
    pub token: Option<String>,
    /// The expected status: 200 allowed, else the refusal's.
    pub status: u16,
    /// The expected reason code of a refusal.
    #[serde(default)]
    pub reason: Option<String>,
    /// The rule expected to decide (none: no rule matched).
    #[serde(default)]
    pub rule: Option<String>,
    /// Identity headers expected on an allowed forward-auth answer.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The table, with its configuration written out for a test.
#[derive(Debug)]
pub struct Suite {
    /// The directory holding the secret files.
    pub dir: PathBuf,
    /// The configuration text, `{dir}` filled in.
    pub config: String,
    /// The rows.
    pub cases: Vec<Case>,
}

const CORP: &[u8] = b"conformance-corp-secret-0123456789abcdef";
const PARTNER: &[u8] = b"conformance-partner-secret-0123456789abcd";

impl Suite {
    /// Writes the secrets into a fresh directory under `tmp` (one of its own for every suite,
    /// also within one process) and reads the table.
    pub fn new(tmp: &Path) -> Suite {
        static SUITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
        let dir = tmp.join(format!(
            "jwtd-conformance-{}-{}-{}",
            std::process::id(),
            jwtd_core::unix_now(),
            SUITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("conformance dir");
        std::fs::write(dir.join("corp.secret"), CORP).expect("secret");
        std::fs::write(dir.join("partner.secret"), PARTNER).expect("secret");
        let config = std::fs::read_to_string(root.join("jwtd.toml"))
            .expect("conformance/jwtd.toml")
            .replace("{dir}", &dir.display().to_string());
        let cases: Vec<Case> = serde_json::from_str(
            &std::fs::read_to_string(root.join("cases.json")).expect("conformance/cases.json"),
        )
        .expect("cases.json parses");
        Suite { dir, config, cases }
    }

    /// The token a label names: `<issuer>-<kind>`, signed now.
    pub fn token(&self, label: &str) -> String {
        let now = jwtd_core::unix_now();
        let (secret, iss, sub) = match label.split('-').next() {
            Some("corp") => (CORP, "https://corp.test", "alice"),
            Some("partner") => (PARTNER, "https://partner.test", "bob"),
            _ => (CORP, "https://unknown.test", "mallory"),
        };
        let mut claims = serde_json::json!({
            "iss": iss, "sub": sub, "aud": "api", "iat": now, "exp": now + 300,
        });
        let kind = label.split_once('-').map_or("", |(_, k)| k);
        match kind {
            "orders-read" => claims["scope"] = "orders:read profile".into(),
            "mfa" => claims["amr"] = serde_json::json!(["pwd", "mfa"]),
            "plain" => claims["amr"] = serde_json::json!(["pwd"]),
            "aud-partner-api" => claims["aud"] = "partner-api".into(),
            "expired" => {
                claims["iat"] = (now - 600).into();
                claims["exp"] = (now - 300).into();
            }
            _ => {}
        }
        let key = SigningKey::hmac(secret, Algorithm::HS256, None).expect("hmac key");
        let token = jwtd_core::sign(&key, claims.as_object().expect("object"), None).expect("sign");
        if kind == "bad-signature" {
            // Another signature of the right length: the last character flipped.
            let mut t = token.into_bytes();
            let last = t.len() - 2;
            t[last] = if t[last] == b'A' { b'B' } else { b'A' };
            return String::from_utf8(t).expect("ascii");
        }
        token
    }
}

/// What a front answered, as the table compares it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The status.
    pub status: u16,
    /// The reason code of a refusal.
    pub reason: Option<String>,
    /// The deciding rule, when the front reports it (`None`: not reported).
    pub rule: Option<Option<String>>,
    /// Identity headers, when the front forwards them (`None`: not checked).
    pub headers: Option<BTreeMap<String, String>>,
}

/// Compares one row with what a front answered; the message names the row and the difference.
pub fn check(case: &Case, got: &Observed) -> Result<(), String> {
    let fail = |what: String| Err(format!("{}: {what}", case.name));
    if got.status != case.status {
        return fail(format!("status {} instead of {}", got.status, case.status));
    }
    if case.status != 200 && got.reason != case.reason {
        return fail(format!(
            "reason {:?} instead of {:?}",
            got.reason, case.reason
        ));
    }
    if let Some(rule) = &got.rule {
        if *rule != case.rule {
            return fail(format!("rule {rule:?} instead of {:?}", case.rule));
        }
    }
    if let Some(headers) = &got.headers {
        for (name, want) in &case.headers {
            if headers.get(name) != Some(want) {
                return fail(format!(
                    "header {name}: {:?} instead of {want:?}",
                    headers.get(name)
                ));
            }
        }
    }
    Ok(())
}
