//! An OIDC discovery document and a `Cache-Control` value, as an identity provider could answer
//! them: parsed as jwtd-remote parses them, then the discovered `jwks_uri` is checked with the
//! redirect/downgrade rules. Must never panic; every refusal has a kind and a message.
#![no_main]

use jwtd_remote::{check_reached, parse_discovery, parse_max_age, redact};
use libfuzzer_sys::fuzz_target;
use url::Url;

/// Two configured issuers: a public HTTPS one and a loopback HTTP one (the internal-address
/// rules differ between them).
const ISSUERS: [&str; 2] = ["https://issuer.example", "http://127.0.0.1:8080/realms/a"];

fuzz_target!(|data: &[u8]| {
    for issuer in ISSUERS {
        let url = Url::parse(&format!("{issuer}/.well-known/openid-configuration")).unwrap();
        match parse_discovery(data, issuer, &url) {
            Ok(jwks_uri) => {
                let _ = redact(&jwks_uri);
                for insecure in [false, true] {
                    if let Err(e) = check_reached(&url, &jwks_uri, insecure) {
                        assert!(!e.message.is_empty());
                    }
                }
            }
            Err(e) => assert!(!e.message.is_empty() && !e.kind.as_str().is_empty()),
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_max_age(text);
    }
});
