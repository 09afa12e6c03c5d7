//! Replays the fuzz seed corpora (`fuzz/seeds/`) through the calls the fuzz targets make, so the
//! ordinary test run covers them: nothing may panic, and every rejection has a reason.

use jwtd_core::{Algorithm, Jwk, Jwks, KeySet, SigningKey, Validation, Verifier, VerifyingKey};
use std::path::Path;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(out.len() >= 5, "seed corpus {target} is populated");
    out.sort();
    out
}

#[test]
fn verify_seeds_never_panic() {
    let mut keys = KeySet::new();
    keys.push(
        SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .verifying_key(),
    );
    let v = Verifier::new(keys, Validation::new(&Algorithm::ALL).audience("aud")).unwrap();
    let mut rejected = 0;
    for seed in seeds("verify") {
        if let Ok(token) = std::str::from_utf8(&seed) {
            if let Err(e) = v.verify(token, 1_800_000_000) {
                assert!(!e.message().is_empty());
                rejected += 1;
            }
            let _ = jwtd_core::decode_unverified(token);
        }
        // Truncations and bit flips of every seed, as a fuzzer's first mutations would be.
        for cut in (0..seed.len()).step_by(7) {
            let _ = v.verify_jws(&seed[..cut]);
        }
        let mut flipped = seed.clone();
        for i in (0..flipped.len()).step_by(5) {
            flipped[i] ^= 0x20;
            let _ = v.verify_jws(&flipped);
        }
    }
    assert!(rejected > 0);
}

#[test]
fn jwk_seeds_never_panic() {
    let mut imported = 0;
    for seed in seeds("jwk") {
        if let Ok(jwk) = Jwk::from_json(&seed) {
            imported += VerifyingKey::from_jwk(&jwk, Some(Algorithm::RS256)).is_ok() as usize;
            let _ = SigningKey::from_jwk(&jwk, Some(Algorithm::HS256));
            let _ = jwk.thumbprint();
        }
        if let Ok(jwks) = Jwks::from_json(&seed) {
            let (set, _) = KeySet::from_jwks(&jwks, &Algorithm::ALL);
            imported += set.keys().len();
        }
        imported += VerifyingKey::from_pem(&seed, Some(Algorithm::RS256), None).is_ok() as usize;
        let _ = SigningKey::from_pem(&seed, Some(Algorithm::PS256), None);
        let _ = VerifyingKey::from_spki_der(&seed, None, None);
        let _ = SigningKey::from_pkcs8_der(&seed, None, None);
        for cut in (0..seed.len()).step_by(11) {
            let _ = Jwk::from_json(&seed[..cut]);
            let _ = VerifyingKey::from_pem(&seed[..cut], None, None);
        }
    }
    assert!(imported >= 10, "the seeds include usable keys ({imported})");
}
