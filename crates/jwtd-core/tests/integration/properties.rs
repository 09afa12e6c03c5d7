//! Property tests: sign-then-verify round-trips for every algorithm, and any one-bit change
//! anywhere in a token is rejected.

use jwtd_core::{Algorithm, Family, KeySet, SigningKey, Validation, Verifier};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;

/// One signing key per algorithm (RSA generation is slow; share them across cases).
fn keys() -> &'static Vec<SigningKey> {
    static K: OnceLock<Vec<SigningKey>> = OnceLock::new();
    K.get_or_init(|| {
        Algorithm::ALL
            .iter()
            .map(|&alg| {
                let k = if alg.family() == Family::Hmac {
                    SigningKey::hmac(&vec![0x5a; alg.hash_len()], alg, None).unwrap()
                } else {
                    SigningKey::generate(alg).unwrap()
                };
                k.with_default_kid()
            })
            .collect()
    })
}

fn verifier(key: &SigningKey) -> Verifier {
    Verifier::new(
        KeySet::new().with(key.verifying_key()),
        Validation::new(&[key.algorithm()])
            .issuer("iss")
            .audience("aud"),
    )
    .unwrap()
}

fn claims(sub: &str, extra: &str, n: i64) -> Map<String, Value> {
    json!({"iss": "iss", "aud": "aud", "sub": sub, "exp": NOW + 60, "x": extra, "n": n})
        .as_object()
        .unwrap()
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The fast routing hint never disagrees with the parser about a token's iss, whatever the
    /// claims hold (an `iss` string, a nested or decoy `"iss"`, escapes).
    #[test]
    fn issuer_hint_is_the_parsed_iss_or_nothing(
        iss in prop::option::of("[a-z:/.\"\\\\]{0,20}"),
        decoy in prop::option::of("[a-z\"\\\\]{0,12}"),
        nested in any::<bool>(),
        as_value in any::<bool>(),
    ) {
        let mut c = Map::new();
        if let Some(i) = &iss {
            c.insert("iss".into(), Value::from(i.clone()));
        }
        if let Some(d) = &decoy {
            c.insert("note".into(), Value::from(format!("\"iss\":\"{d}\"")));
        }
        if nested {
            c.insert("act".into(), json!({"iss": "https://nested"}));
        }
        if as_value {
            c.insert("kind".into(), Value::from("iss"));
        }
        let token = jwtd_core::sign(&keys()[0], &c, None).unwrap();
        let hint = jwtd_core::issuer_hint(&token);
        let parsed = jwtd_core::peek_issuer(&token).unwrap();
        // When the token has an iss, the hint is it or nothing. (Without one, a nested "iss"
        // may be offered: routing on it is safe because the chosen issuer checks iss.)
        if let (Some(h), Some(p)) = (&hint, &parsed) {
            prop_assert_eq!(h, p);
        }
        if parsed.is_none() {
            prop_assert!(hint.is_none() || nested);
        }
        // A plain iss alone is always found.
        if !nested && decoy.is_none() && !as_value {
            if let Some(i) = &iss {
                if !i.contains('"') && !i.contains('\\') {
                    prop_assert_eq!(hint.as_deref(), Some(i.as_str()));
                }
            }
        }
    }

    #[test]
    fn sign_then_verify_round_trips(alg in 0..Algorithm::ALL.len(), sub in ".{0,40}", extra in ".{0,200}", n in any::<i64>()) {
        let key = &keys()[alg];
        let c = claims(&sub, &extra, n);
        let token = jwtd_core::sign(key, &c, None).unwrap();
        let verified = verifier(key).verify(&token, NOW).unwrap();
        prop_assert_eq!(verified.claims(), c);
        prop_assert_eq!(verified.header.alg, key.algorithm());
    }

    #[test]
    fn any_one_bit_flip_is_rejected(alg in 0..Algorithm::ALL.len(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = &keys()[alg];
        let token = jwtd_core::sign(key, &claims("alice", "payload", 7), None).unwrap();
        let mut bytes = token.into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // A flipped byte may not even be UTF-8; such input cannot reach the verifier as &str.
        if let Ok(t) = String::from_utf8(bytes) {
            prop_assert!(verifier(key).verify(&t, NOW).is_err(), "accepted a token with byte {} bit {} flipped", i, bit);
        }
    }
}

#[test]
fn every_algorithm_round_trips_once() {
    for key in keys() {
        let token = jwtd_core::sign(key, &claims("s", "e", 1), None).unwrap();
        verifier(key).verify(&token, NOW).unwrap();
    }
}
