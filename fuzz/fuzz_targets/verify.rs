//! Parse + verify any input as a token, against keys of every family and a strict policy.
//! Must never panic; whatever it returns must carry a reason code and a message.
#![no_main]

use jwtd_core::{Algorithm, KeySet, SigningKey, Validation, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut keys = KeySet::new();
        keys.push(SigningKey::hmac(&[7; 32], Algorithm::HS256, Some("hs".into())).unwrap().verifying_key());
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::ES256K] {
            keys.push(SigningKey::generate(alg).unwrap().with_default_kid().verifying_key());
        }
        let algs: Vec<Algorithm> = Algorithm::ALL.to_vec();
        Verifier::new(keys, Validation::new(&algs).issuer("iss").audience("aud")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        match verifier().verify(token, 1_800_000_000) {
            Ok(v) => {
                let _ = v.claims();
            }
            Err(e) => assert!(!e.message().is_empty() && !e.reason().as_str().is_empty()),
        }
        let _ = jwtd_core::decode_unverified(token);
    }
    let _ = verifier().verify_jws(data);
});
