//! The verified-token cache: hits answer like misses, time rules hold on hits, scope changes
//! (key removal, reload) miss, memory stays within the bounds.

use jwtd_core::{Algorithm, KeySet, Reason, SigningKey, TokenCache, TokenCacheConfig, Validation};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn setup() -> (SigningKey, KeySet, Validation) {
    let k = SigningKey::hmac(&[3u8; 32], Algorithm::HS256, Some("k".into())).unwrap();
    let keys = KeySet::new().with(k.verifying_key());
    let v = Validation::new(&[Algorithm::HS256])
        .issuer("iss")
        .audience("aud")
        .leeway(0);
    (k, keys, v)
}

fn token(k: &SigningKey, sub: &str, exp: u64) -> String {
    let c = json!({"iss": "iss", "aud": "aud", "sub": sub, "iat": NOW - 5, "exp": exp});
    jwtd_core::sign(k, c.as_object().unwrap(), None).unwrap()
}

#[test]
fn hit_answers_like_a_miss_and_rechecks_time() {
    let (k, keys, v) = setup();
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let t = token(&k, "alice", NOW + 100);
    let miss = cache.verify([1, 0], &keys, &v, &t, NOW).unwrap();
    let hit = cache.verify([1, 0], &keys, &v, &t, NOW + 10).unwrap();
    assert_eq!(miss, hit);
    // A lookup handle never shows the token it holds.
    let shown = format!("{:?}", cache.lookup(&t));
    assert!(!shown.contains(t.split('.').nth(2).unwrap()), "{shown}");
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    // On a hit past exp: expired, and the entry is gone.
    let e = cache.verify([1, 0], &keys, &v, &t, NOW + 100).unwrap_err();
    assert_eq!(e.reason(), Reason::Expired);
    assert_eq!(cache.stats().entries, 0);
    // nbf/iat rules too: a verification "in the past" of iat is refused on a hit.
    let t2 = token(&k, "bob", NOW + 100);
    cache.verify([1, 0], &keys, &v, &t2, NOW).unwrap();
    let e = cache
        .verify([1, 0], &keys, &v, &t2, NOW - 1000)
        .unwrap_err();
    assert_eq!(e.reason(), Reason::IssuedInFuture);
    // Max age is enforced on hits with the caller's policy.
    let strict = v.clone().max_age(10);
    let e = cache
        .verify([1, 0], &keys, &strict, &t2, NOW + 20)
        .unwrap_err();
    assert_eq!(e.reason(), Reason::TooOld);
}

#[test]
fn failures_are_never_cached_and_a_new_scope_misses() {
    let (k, keys, v) = setup();
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let bad = token(&k, "x", NOW - 1);
    for _ in 0..3 {
        assert_eq!(
            cache
                .verify([1, 0], &keys, &v, &bad, NOW)
                .unwrap_err()
                .reason(),
            Reason::Expired
        );
    }
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.stats().misses, 3);
    // The key is removed from the set: the caller's key-set generation changes the scope, and
    // the next request is answered from the new set.
    let t = token(&k, "alice", NOW + 100);
    cache.verify([1, 0], &keys, &v, &t, NOW).unwrap();
    let empty = KeySet::new();
    let e = cache.verify([1, 1], &empty, &v, &t, NOW).unwrap_err();
    assert_eq!(e.reason(), Reason::UnknownKey);
    // A different token, same signature bytes appended elsewhere: never a hit.
    let mut other = t.clone();
    other.insert(10, 'A');
    assert!(cache.verify([1, 0], &keys, &v, &other, NOW).is_err());
    // Same length, one byte changed (in the signature, or its last, partly unused base64
    // character): never a hit, each is verified and refused.
    let hits = cache.stats().hits;
    for at in [t.len() - 1, t.len() - 20, 5] {
        let mut b = t.clone().into_bytes();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(b).unwrap();
        assert!(cache.verify([1, 0], &keys, &v, &changed, NOW).is_err());
    }
    assert_eq!(cache.stats().hits, hits);
}

#[test]
fn every_hit_answers_for_its_own_token() {
    let (k, keys, v) = setup();
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let tokens: Vec<String> = (0..2000)
        .map(|i| token(&k, &format!("user-{i}"), NOW + 100))
        .collect();
    for t in &tokens {
        cache.verify([1, 0], &keys, &v, t, NOW).unwrap();
    }
    for (i, t) in tokens.iter().enumerate() {
        let hit = cache.verify([1, 0], &keys, &v, t, NOW).unwrap();
        assert_eq!(hit.sub(), Some(format!("user-{i}").as_str()));
    }
    let s = cache.stats();
    assert_eq!((s.misses, s.hits, s.entries), (2000, 2000, 2000));
}

#[test]
fn memory_stays_within_the_bounds() {
    let (k, keys, v) = setup();
    let cfg = TokenCacheConfig {
        max_entries: 2_000,
        max_bytes: 512 * 1024,
    };
    let cache = TokenCache::new(cfg).unwrap();
    let n: usize = std::env::var("JWTD_CACHE_TEST_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    for i in 0..n {
        let t = token(&k, &format!("user-{i}"), NOW + 100);
        cache.verify([7, 0], &keys, &v, &t, NOW).unwrap();
        if i % 10_000 == 0 {
            let s = cache.stats();
            assert!(s.entries <= cfg.max_entries as u64 + 64, "{s:?}");
            assert!(s.bytes <= cfg.max_bytes, "{s:?}");
        }
    }
    let s = cache.stats();
    assert!(
        s.entries <= cfg.max_entries as u64 + 64 && s.bytes <= cfg.max_bytes,
        "{s:?}"
    );
    assert!(s.evictions as usize >= n - cfg.max_entries - 64, "{s:?}");
}

#[test]
fn long_tokens_are_cached_too() {
    let (k, keys, v) = setup();
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let c = json!({"iss": "iss", "aud": "aud", "sub": "x".repeat(3000), "exp": NOW + 100});
    let t = jwtd_core::sign(&k, c.as_object().unwrap(), None).unwrap();
    assert!(t.len() > 4000);
    let miss = cache.verify([1, 0], &keys, &v, &t, NOW).unwrap();
    let hit = cache.verify([1, 0], &keys, &v, &t, NOW).unwrap();
    assert_eq!(miss, hit);
    assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    // A different scope misses.
    cache.verify([2, 0], &keys, &v, &t, NOW).unwrap();
    assert_eq!(cache.stats().misses, 2);
}

#[test]
fn expired_entries_are_swept_even_when_never_presented_again() {
    let (k, keys, _) = setup();
    let v = Validation::new(&[jwtd_core::Algorithm::HS256])
        .issuer("iss")
        .audience("aud")
        .leeway(30);
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let short = token(&k, "short", NOW + 100);
    let long = token(&k, "long", NOW + 1000);
    cache.verify([1, 0], &keys, &v, &short, NOW).unwrap();
    cache.verify([1, 0], &keys, &v, &long, NOW).unwrap();
    assert_eq!(cache.purge_expired(NOW + 99), 0);
    // Within the leeway the token is still accepted, so its entry stays.
    assert_eq!(cache.purge_expired(NOW + 129), 0);
    assert!(cache.verify([1, 0], &keys, &v, &short, NOW + 129).is_ok());
    assert_eq!(cache.purge_expired(NOW + 130), 1);
    let s = cache.stats();
    assert_eq!((s.entries, s.evictions), (1, 1));
    // The survivor still answers from the cache.
    cache.verify([1, 0], &keys, &v, &long, NOW + 130).unwrap();
    assert_eq!(cache.stats().hits, 2);
}

/// The token's SHA-256 (a DPoP proof's `ath`) is kept with a cached verification: the hit
/// shares it; it is the token's hash, and a token of another length is hashed afresh.
#[test]
fn a_cached_token_keeps_its_sha256() {
    let (k, keys, v) = setup();
    let cache = TokenCache::new(TokenCacheConfig::default()).unwrap();
    let t = token(&k, "alice", NOW + 100);
    let want = |t: &str| -> [u8; 32] {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes())
            .as_ref()
            .try_into()
            .unwrap()
    };
    let miss = cache.verify([1, 0], &keys, &v, &t, NOW).unwrap();
    assert_eq!(miss.token_sha256(&t), want(&t));
    let hit = cache.verify([1, 0], &keys, &v, &t, NOW + 1).unwrap();
    assert!(std::sync::Arc::ptr_eq(&miss, &hit));
    assert_eq!(hit.token_sha256(&t), want(&t));
    assert_eq!(
        jwtd_core::access_token_hash(&t),
        jwtd_core::b64::encode(hit.token_sha256(&t))
    );
    let longer = format!("{t}x");
    assert_eq!(hit.token_sha256(&longer), want(&longer), "not the memo");
    assert_eq!(hit.token_sha256(&t), want(&t), "the memo is unchanged");
}
