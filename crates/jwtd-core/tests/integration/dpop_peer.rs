//! DPoP proofs, RFC 7638 thumbprints and a DPoP-bound access token made by panva's `jose`
//! (Node), an implementation independent of jwtd: every valid proof passes with the thumbprint
//! jose computed, and every named bad proof is refused with its reason code.
//!
//! Needs `node` and jose in target/dpop-peer (scripts/ensure-deps installs it from
//! crates/jwtd-core/tests/dpop-peer/package-lock.json); fails, never skips, without them.

use jwtd_core::{
    check_token_binding, DpopPolicy, DpopReason, DpopRequest, Jwk, KeySet, Validation, Verifier,
    VerifyingKey,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const ENSURE: &str = "run scripts/ensure-deps (it installs jose into target/dpop-peer)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the jose script and returns its JSON document.
fn peer_document() -> Value {
    let dir = repo().join("target/dpop-peer");
    assert!(
        dir.join("node_modules/jose/package.json").is_file(),
        "jose is missing from {}: {ENSURE}",
        dir.display()
    );
    // The script resolves `jose` from its own directory: run a copy beside node_modules.
    let script = dir.join(format!("proofs-{}.mjs", std::process::id()));
    std::fs::copy(
        repo().join("crates/jwtd-core/tests/dpop-peer/proofs.mjs"),
        &script,
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {ENSURE}"));
    let _ = std::fs::remove_file(&script);
    assert!(
        out.status.success(),
        "the jose script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints one JSON document")
}

fn reason_of(code: &str) -> DpopReason {
    DpopReason::ALL
        .into_iter()
        .find(|r| r.as_str() == code)
        .unwrap_or_else(|| panic!("unknown reason code {code}"))
}

#[test]
fn proofs_made_by_jose_pass_or_fail_as_named() {
    let doc = peer_document();
    let now = doc["now"].as_u64().unwrap();
    let method = doc["method"].as_str().unwrap();
    let uri = doc["uri"].as_str().unwrap();
    let token = doc["token"].as_str().unwrap();
    // The DPoP-bound access token, verified with the issuer's key as jose exported it.
    let issuer_jwk: Jwk = serde_json::from_value(doc["issuer_jwk"].clone()).unwrap();
    let verifier = Verifier::new(
        KeySet::new().with(VerifyingKey::from_jwk(&issuer_jwk, None).unwrap()),
        Validation::new(&[jwtd_core::Algorithm::ES256])
            .issuer("https://as.example")
            .typ("at+jwt"),
    )
    .unwrap();
    let access = verifier.verify(token, now).expect("jose's access token");
    let policy = DpopPolicy::default();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 17, "every named case came back");
    let mut names = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        names.push(name);
        let proof = case["proof"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let got = policy.verify(
            &DpopRequest {
                proofs: &[proof.as_bytes()],
                method,
                uri,
                access_token: Some(token),
            },
            now,
        );
        match expect {
            "ok" | "dpop_jkt_mismatch" => {
                let p = got.unwrap_or_else(|e| panic!("{name}: refused: {e}"));
                assert_eq!(
                    Some(p.jkt.as_str()),
                    case["jkt"].as_str(),
                    "{name}: jose's RFC 7638 thumbprint"
                );
                assert_eq!(p.nonce.as_deref(), case["nonce"].as_str(), "{name}");
                assert_eq!(p.iat, now as f64, "{name}");
                assert!(!p.jti.is_empty(), "{name}");
                let binding = check_token_binding(&access, &p);
                if case["bound"] == Value::Bool(true) {
                    binding.unwrap_or_else(|e| panic!("{name}: binding: {e}"));
                } else {
                    // Proofs by another key than the one the token is bound to.
                    assert_eq!(
                        binding.unwrap_err().reason(),
                        DpopReason::JktMismatch,
                        "{name}"
                    );
                }
            }
            code => {
                let e = got.expect_err(name);
                assert_eq!(e.reason(), reason_of(code), "{name}: {e}");
                assert_eq!(e.reason().error_code(), "invalid_dpop_proof", "{name}");
            }
        }
    }
    for named in [
        "valid ES256",
        "valid RS256",
        "valid PS256",
        "valid EdDSA",
        "wrong htm",
        "htu with a query",
        "stale iat",
        "wrong ath",
        "private key in jwk",
        "alg none",
        "HS256 proof",
        "typ missing",
        "token bound to another key",
    ] {
        assert!(names.contains(&named), "case {named:?} is missing");
    }
}
