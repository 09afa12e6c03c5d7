//! JWK, JWKS and PEM import of arbitrary bytes. Must never panic.
#![no_main]

use jwtd_core::{Algorithm, Jwk, Jwks, KeySet, SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jwk) = Jwk::from_json(data) {
        let _ = VerifyingKey::from_jwk(&jwk, Some(Algorithm::RS256));
        let _ = SigningKey::from_jwk(&jwk, Some(Algorithm::HS256));
        let _ = jwk.thumbprint();
    }
    if let Ok(jwks) = Jwks::from_json(data) {
        let _ = KeySet::from_jwks(&jwks, &Algorithm::ALL);
    }
    let _ = VerifyingKey::from_pem(data, None, None);
    let _ = SigningKey::from_pem(data, Some(Algorithm::PS256), None);
    let _ = VerifyingKey::from_spki_der(data, None, None);
    let _ = SigningKey::from_pkcs8_der(data, None, None);
});
