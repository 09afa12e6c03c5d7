//! Remote keys against a local test provider over real HTTP and TLS.

mod provider;

use jwtd_core::{Algorithm, Reason, SigningKey, Validation};
use jwtd_remote::{CacheConfig, FetchErrorKind, HttpConfig, RemoteKeys, Source};
use provider::{Mode, Provider};
use serde_json::json;
use std::time::{Duration, Instant};

const AUD: &str = "api";

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some(kid.into()))
}

fn token(k: &SigningKey, iss: &str) -> String {
    let now = jwtd_core::unix_now();
    let c = json!({"iss": iss, "aud": AUD, "sub": "u", "iat": now, "exp": now + 600});
    jwtd_core::sign(k, c.as_object().unwrap(), None).unwrap()
}

fn policy(iss: &str) -> Validation {
    Validation::new(&[Algorithm::ES256])
        .issuer(iss)
        .audience(AUD)
}

fn fast_cache() -> CacheConfig {
    CacheConfig {
        cooldown: Duration::from_millis(500),
        negative_ttl: Duration::from_millis(500),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..CacheConfig::default()
    }
}

fn http_for(p: &Provider) -> HttpConfig {
    HttpConfig {
        ca_bundle_pem: p.ca_pem.clone().map(String::into_bytes),
        ..HttpConfig::default()
    }
}

async fn started(p: &Provider, source: Source, cache: CacheConfig) -> RemoteKeys {
    let keys = RemoteKeys::start(source, vec![Algorithm::ES256], http_for(p), cache).unwrap();
    assert!(
        keys.wait_ready(Duration::from_secs(5)).await,
        "ready: {:?}",
        keys.last_error()
    );
    keys
}

/// Finding 3: identical refetches of a JWKS keep the generation (caches of verified tokens stay
/// warm); a changed verify set moves it, and the snapshot carries keys and generation together.
#[tokio::test]
async fn identical_refetches_keep_the_generation_and_changed_sets_move_it() {
    let p = Provider::start(false).await;
    let (a, b) = (key("a"), key("b"));
    p.set_keys(vec![a.clone_for_test()]);
    let keys = started(&p, Source::JwksUrl(p.jwks_url()), fast_cache()).await;
    let g0 = keys.snapshot().unwrap().generation;
    for _ in 0..3 {
        keys.refresh().await.unwrap();
    }
    assert_eq!(p.jwks_hits(), 4);
    assert_eq!(
        keys.snapshot().unwrap().generation,
        g0,
        "same keys, same generation"
    );
    p.set_keys(vec![a.clone_for_test(), b.clone_for_test()]);
    keys.refresh().await.unwrap();
    let snap = keys.snapshot().unwrap();
    assert!(snap.generation > g0, "a key was added");
    assert_eq!(snap.keys.keys().len(), 2);
    // The same kid with other key material is another verify set too.
    let g1 = snap.generation;
    p.set_keys(vec![a.clone_for_test(), key("b")]);
    keys.refresh().await.unwrap();
    assert!(
        keys.snapshot().unwrap().generation > g1,
        "b's key was replaced"
    );
}

#[tokio::test]
async fn discovery_over_tls_with_test_ca() {
    let p = Provider::start(true).await;
    let a = key("a");
    p.set_keys(vec![a.clone_for_test()]);
    let keys = started(&p, Source::Discovery(p.issuer()), fast_cache()).await;
    let v = keys
        .verify(&policy(&p.issuer()), &token(&a, &p.issuer()))
        .await
        .unwrap();
    assert_eq!(v.claims()["sub"], "u");
    let s = keys.stats();
    assert_eq!((s.fetches, s.discovery_fetches, s.keys), (1, 1, 1));
    assert_eq!(
        p.discovery_hits.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Without the test CA, the same provider is refused (TLS), and keys never become ready.
    let untrusted = RemoteKeys::start(
        Source::Discovery(p.issuer()),
        vec![Algorithm::ES256],
        HttpConfig::default(),
        fast_cache(),
    )
    .unwrap();
    assert!(!untrusted.wait_ready(Duration::from_millis(800)).await);
    let e = untrusted.last_error().unwrap();
    assert_eq!(e.kind, FetchErrorKind::Network, "{e}");
    let err = untrusted
        .verify(&policy(&p.issuer()), &token(&a, &p.issuer()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::KeyFetchFailed);
}

#[tokio::test]
async fn rotation_has_no_false_rejections_and_bounded_fetches() {
    let p = Provider::start(false).await;
    let (a, b) = (key("a"), key("b"));
    p.set_keys(vec![a.clone_for_test()]);
    let keys = started(&p, Source::JwksUrl(p.jwks_url()), fast_cache()).await;
    let pol = policy(&p.issuer());
    for _ in 0..50 {
        keys.verify(&pol, &token(&a, &p.issuer())).await.unwrap();
    }
    assert_eq!(p.jwks_hits(), 1);
    // Publish b right after the start-up fetch: b's first token costs one fetch, no waiting
    // (background fetches do not start the unknown-kid cooldown).
    p.set_keys(vec![a.clone_for_test(), b.clone_for_test()]);
    let published = Instant::now();
    keys.verify(&pol, &token(&b, &p.issuer())).await.unwrap();
    let delay = published.elapsed();
    assert_eq!(p.jwks_hits(), 2, "exactly one fetch for the new key");
    // A third key within the cooldown of b's fetch is refused (no fetch) ...
    let c = key("c");
    p.set_keys(vec![b.clone_for_test(), c.clone_for_test()]);
    let early = keys
        .verify(&pol, &token(&c, &p.issuer()))
        .await
        .unwrap_err();
    assert_eq!(early.reason(), Reason::UnknownKey);
    assert_eq!(p.jwks_hits(), 2, "no fetch within the cooldown");
    // ... and after it, 64 concurrent first uses cost one fetch (single flight), even though
    // the negative cache remembered c for a while.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tc = token(&c, &p.issuer());
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (keys, pol, tc) = (keys.clone(), pol.clone(), tc.clone());
        tasks.push(tokio::spawn(async move { keys.verify(&pol, &tc).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(p.jwks_hits(), 3, "64 concurrent requests, one fetch");
    // a was removed from the JWKS: tokens with a are now unknown (after the refetch above).
    let err = keys
        .verify(&pol, &token(&a, &p.issuer()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::UnknownKey);
    eprintln!("publication-to-acceptance delay: {delay:?}");
}

#[tokio::test]
async fn random_kid_flood_is_bounded_by_the_cooldown() {
    let p = Provider::start(false).await;
    let a = key("a");
    p.set_keys(vec![a.clone_for_test()]);
    let cache = CacheConfig {
        cooldown: Duration::from_millis(300),
        negative_ttl: Duration::from_millis(300),
        ..fast_cache()
    };
    let keys = started(&p, Source::JwksUrl(p.jwks_url()), cache).await;
    let pol = policy(&p.issuer());
    let before = p.jwks_hits();
    let start = Instant::now();
    let attacker = key("x");
    let mut tasks = Vec::new();
    for i in 0..10_000u32 {
        // Each token names a fresh random kid the provider has never published.
        let t = {
            let k = attacker
                .clone_for_test()
                .with_kid(Some(format!("unknown-{i:08x}")));
            token(&k, &p.issuer())
        };
        let (keys, pol) = (keys.clone(), pol.clone());
        tasks.push(tokio::spawn(async move { keys.verify(&pol, &t).await }));
        if tasks.len() == 500 {
            for t in tasks.drain(..) {
                assert_eq!(t.await.unwrap().unwrap_err().reason(), Reason::UnknownKey);
            }
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().reason(), Reason::UnknownKey);
    }
    let elapsed = start.elapsed();
    let fetches = p.jwks_hits() - before;
    let bound = (elapsed.as_secs_f64() / 0.3).ceil() as u64 + 1;
    eprintln!("flood: 10000 tokens in {elapsed:?}, {fetches} fetches (bound {bound})");
    assert!(fetches <= bound, "{fetches} fetches > bound {bound}");
    // Valid tokens still pass throughout.
    keys.verify(&pol, &token(&a, &p.issuer())).await.unwrap();
}

#[tokio::test]
async fn provider_down_serves_stale_then_fails_clearly() {
    let p = Provider::start(false).await;
    let a = key("a");
    p.set_keys(vec![a.clone_for_test()]);
    p.state.lock().unwrap().cache_control = Some("max-age=0".into());
    let cache = CacheConfig {
        min_ttl: Duration::from_millis(200),
        stale_if_error: Duration::from_millis(1500),
        ..fast_cache()
    };
    let keys = started(&p, Source::JwksUrl(p.jwks_url()), cache).await;
    let pol = policy(&p.issuer());
    p.set_mode(Mode::Down);
    // Well past the 200 ms lifetime: the stale set keeps verifying.
    tokio::time::sleep(Duration::from_millis(800)).await;
    keys.verify(&pol, &token(&a, &p.issuer())).await.unwrap();
    assert!(keys.stats().failures >= 1);
    assert_eq!(keys.last_error().unwrap().kind, FetchErrorKind::Status);
    // Past lifetime + stale-if-error: a clear key_fetch_failed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = keys
        .verify(&pol, &token(&a, &p.issuer()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::KeyFetchFailed, "{err}");
    // The provider comes back: the background retry recovers without a restart.
    p.set_mode(Mode::Normal);
    tokio::time::sleep(Duration::from_millis(600)).await;
    keys.verify(&pol, &token(&a, &p.issuer())).await.unwrap();
}

#[tokio::test]
async fn start_while_provider_down_retries_until_ready() {
    let p = Provider::start(false).await;
    let a = key("a");
    p.set_keys(vec![a.clone_for_test()]);
    p.set_mode(Mode::Down);
    let keys = RemoteKeys::start(
        Source::JwksUrl(p.jwks_url()),
        vec![Algorithm::ES256],
        HttpConfig::default(),
        fast_cache(),
    )
    .unwrap();
    assert!(!keys.wait_ready(Duration::from_millis(400)).await);
    assert!(!keys.is_ready());
    p.set_mode(Mode::Normal);
    assert!(keys.wait_ready(Duration::from_secs(3)).await);
    keys.verify(&policy(&p.issuer()), &token(&a, &p.issuer()))
        .await
        .unwrap();
}

async fn failure_kind(p: &Provider, source: Source, http: HttpConfig) -> FetchErrorKind {
    let keys = RemoteKeys::start(source, vec![Algorithm::ES256], http, fast_cache()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = keys.last_error() {
            assert!(!keys.is_ready());
            return e.kind;
        }
        assert!(
            Instant::now() < deadline,
            "no error recorded (mode {:?}, ready {})",
            p.state.lock().unwrap().mode,
            keys.is_ready()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = p;
    }
}

#[tokio::test]
async fn each_bad_provider_is_a_clear_error() {
    let p = Provider::start(false).await;
    p.set_keys(vec![key("a")]);
    let slow = HttpConfig {
        timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    p.set_mode(Mode::Slow(Duration::from_secs(2)));
    assert_eq!(
        failure_kind(&p, Source::JwksUrl(p.jwks_url()), slow).await,
        FetchErrorKind::Timeout
    );
    p.set_mode(Mode::Oversized);
    assert_eq!(
        failure_kind(&p, Source::JwksUrl(p.jwks_url()), HttpConfig::default()).await,
        FetchErrorKind::TooLarge
    );
    p.set_mode(Mode::Malformed);
    assert_eq!(
        failure_kind(&p, Source::JwksUrl(p.jwks_url()), HttpConfig::default()).await,
        FetchErrorKind::Malformed
    );
    p.set_mode(Mode::RedirectLoop);
    assert_eq!(
        failure_kind(&p, Source::JwksUrl(p.jwks_url()), HttpConfig::default()).await,
        FetchErrorKind::Redirect
    );
    p.set_mode(Mode::Normal);
    p.state.lock().unwrap().issuer_override = Some("https://evil.example".into());
    assert_eq!(
        failure_kind(&p, Source::Discovery(p.issuer()), HttpConfig::default()).await,
        FetchErrorKind::IssuerMismatch
    );
    p.state.lock().unwrap().issuer_override = None;
    // A JWKS whose keys all misfit the allowed algorithms.
    p.set_keys(vec![SigningKey::generate(Algorithm::EdDSA).unwrap()]);
    assert_eq!(
        failure_kind(&p, Source::JwksUrl(p.jwks_url()), HttpConfig::default()).await,
        FetchErrorKind::NoUsableKey
    );
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_up_front() {
    for url in [
        "http://idp.example/jwks",
        "http://10.1.2.3/jwks",
        "ftp://idp.example/jwks",
    ] {
        let e = RemoteKeys::start(
            Source::JwksUrl(url.into()),
            vec![Algorithm::ES256],
            HttpConfig::default(),
            CacheConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind, FetchErrorKind::InsecureUrl, "{url}");
    }
    let e = RemoteKeys::start(
        Source::Discovery("http://idp.example".into()),
        vec![Algorithm::ES256],
        HttpConfig::default(),
        CacheConfig::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::InsecureUrl);
}

/// Test-only cloning of a signing key through its private JWK.
trait CloneForTest {
    fn clone_for_test(&self) -> SigningKey;
}

impl CloneForTest for SigningKey {
    fn clone_for_test(&self) -> SigningKey {
        SigningKey::from_jwk(&self.to_private_jwk().unwrap(), None).unwrap()
    }
}
