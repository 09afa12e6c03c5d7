//! The request → decision path as far as it exists: a request head (target and headers) from
//! the fuzz input, the token extracted as `jwtd serve` extracts it (`Authorization: Bearer`,
//! a cookie, a query parameter), verified against a fixed small key set and policy, and the
//! RFC 6750 answer built for any refusal. Must never panic.
//!
//! Input: byte 0 picks the token sources (bit 0 bearer, bit 1 cookie `at`, bit 2 query `at`;
//! `'7'` turns all three on), then lines: the request target (`/path?query`), then headers as
//! `name: value`. Lines that are not a valid target or header are skipped.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use jwtd_core::{Algorithm, KeySet, Reason, SigningKey, Validation};
use jwtd_gate::config::TokenSources;
use jwtd_gate::extract::extract as extract_token;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The HMAC key of the seeds' valid tokens (fuzz/seeds/request): 32 bytes of 7.
const HS_KEY: [u8; 32] = [7; 32];

fn keys() -> &'static (KeySet, Validation) {
    static K: OnceLock<(KeySet, Validation)> = OnceLock::new();
    K.get_or_init(|| {
        let mut keys = KeySet::new();
        keys.push(
            SigningKey::hmac(&HS_KEY, Algorithm::HS256, Some("hs".into()))
                .unwrap()
                .verifying_key(),
        );
        keys.push(
            SigningKey::generate(Algorithm::ES256)
                .unwrap()
                .with_default_kid()
                .verifying_key(),
        );
        let policy = Validation::new(&[Algorithm::HS256, Algorithm::ES256])
            .issuer("iss")
            .audience("aud");
        (keys, policy)
    })
}

fn request(data: &[u8]) -> (TokenSources, Uri, HeaderMap) {
    let flags = data.first().copied().unwrap_or(0);
    let sources = TokenSources {
        bearer: flags & 1 != 0,
        cookie: (flags & 2 != 0).then(|| "at".to_owned()),
        query: (flags & 4 != 0).then(|| "at".to_owned()),
    };
    let mut lines = data.get(1..).unwrap_or_default().split(|&b| b == b'\n');
    let uri = lines
        .next()
        .and_then(|l| Uri::try_from(l.strip_suffix(b"\r").unwrap_or(l)).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    (sources, uri, headers)
}

fn answer(e: &jwtd_core::Error) {
    let r = jwtd_gate::refusal::http(e);
    // Every refusal carries its RFC 6750 challenge.
    assert!(r
        .headers
        .iter()
        .any(|(n, _)| n == http::header::WWW_AUTHENTICATE));
}

fuzz_target!(|data: &[u8]| {
    let (sources, uri, headers) = request(data);
    match extract_token(&headers, uri.query(), &sources) {
        Ok(Some(token)) => {
            // An empty token is "no token", never a token to verify.
            assert!(!token.is_empty(), "empty token extracted");
            let (keys, policy) = keys();
            match jwtd_core::verify(keys, policy, &token, 1_800_000_000) {
                Ok(v) => {
                    let _ = v.claims_json();
                }
                Err(e) => {
                    assert!(!e.message().is_empty());
                    answer(&e);
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            assert_eq!(e.reason(), Reason::MultipleTokens);
            answer(&e);
        }
    }
});
