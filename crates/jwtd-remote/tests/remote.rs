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

/// Resident memory of this process in bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// An unsigned-looking ES256 token naming `kid`, with a zero signature (never verified: the
/// kid is unknown).
fn junk_with_kid(kid: &str) -> String {
    let header = json!({"alg": "ES256", "kid": kid}).to_string();
    format!(
        "{}.e30.{}",
        jwtd_core::b64::encode(header.as_bytes()),
        jwtd_core::b64::encode([0u8; 64])
    )
}

#[tokio::test]
async fn unknown_kid_memory_is_bounded_by_bytes() {
    let p = Provider::start(false).await;
    let a = key("a");
    p.set_keys(vec![a.clone_for_test()]);
    // A cooldown that never ends within the test: every unknown kid goes to the negative
    // cache without a fetch.
    let cache = CacheConfig {
        cooldown: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(3600),
        ..fast_cache()
    };
    let keys = started(&p, Source::JwksUrl(p.jwks_url()), cache).await;
    let pol = Validation::new(&[Algorithm::ES256]).any_audience();
    let _ = keys.verify(&pol, &junk_with_kid("first")).await;
    let before = rss();
    // 12,000 tokens near the 16 KiB token limit, each naming its own 12,000-byte kid: kept
    // as they came, that is 140 MiB. They are refused before any lookup.
    for i in 0..12_000u32 {
        let kid = format!("{i:08x}{}", "k".repeat(11_992));
        let e = keys.verify(&pol, &junk_with_kid(&kid)).await.unwrap_err();
        assert_ne!(e.reason(), Reason::KeyFetchFailed);
    }
    let long = rss().saturating_sub(before);
    // 12,000 of the longest kids accepted: remembered as fixed-size hashes, bounded in count.
    for i in 0..12_000u32 {
        let kid = format!("{i:08x}{}", "k".repeat(jwtd_core::MAX_KID_LEN - 8));
        let e = keys.verify(&pol, &junk_with_kid(&kid)).await.unwrap_err();
        assert_eq!(e.reason(), Reason::UnknownKey);
    }
    let s = keys.stats();
    let all = rss().saturating_sub(before);
    eprintln!(
        "RSS growth: {long} bytes after the long kids, {all} after all; negative cache: {} kids, {} bytes",
        s.unknown_kids, s.unknown_kid_bytes
    );
    assert!(long < 16 << 20, "{long} bytes for refused kids");
    assert!(all < 16 << 20, "{all} bytes");
    assert!(s.unknown_kids > 0 && s.unknown_kids <= jwtd_remote::MAX_NEGATIVE);
    assert!(
        s.unknown_kid_bytes <= jwtd_remote::MAX_NEGATIVE_BYTES,
        "{s:?}"
    );
    assert_eq!(s.fetches, 2, "the cooldown held: {s:?}");
    // A remembered kid is still refused without a fetch, and real keys still verify.
    let kid = format!("{:08x}{}", 11_999, "k".repeat(jwtd_core::MAX_KID_LEN - 8));
    assert_eq!(
        keys.verify(&pol, &junk_with_kid(&kid))
            .await
            .unwrap_err()
            .reason(),
        Reason::UnknownKey
    );
    keys.verify(&policy(&p.issuer()), &token(&a, &p.issuer()))
        .await
        .unwrap();
}

#[tokio::test]
async fn key_fetch_errors_reach_clients_as_a_fixed_message() {
    let p = Provider::start(false).await;
    p.set_keys(vec![key("a")]);
    p.set_mode(Mode::Down);
    let port = p.base.rsplit(':').next().unwrap().to_owned();
    let a = key("a");
    for url in [
        // An HTTP error status, and a transport error (nothing listens on port 9).
        format!("http://jwtd:hunter2-secret@127.0.0.1:{port}/jwks"),
        "http://jwtd:hunter2-secret@127.0.0.1:9/jwks".to_owned(),
    ] {
        let keys = RemoteKeys::start(
            Source::JwksUrl(url.clone()),
            vec![Algorithm::ES256],
            HttpConfig::default(),
            fast_cache(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while keys.last_error().is_none() {
            assert!(Instant::now() < deadline, "no error recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The client is told nothing about the cause ...
        let e = keys
            .verify(&policy(&p.issuer()), &token(&a, &p.issuer()))
            .await
            .unwrap_err();
        assert_eq!(e.reason(), Reason::KeyFetchFailed);
        assert_eq!(e.message(), jwtd_remote::KEYS_UNAVAILABLE);
        // ... the status view and the logs get it, with the userinfo redacted.
        let detail = keys.last_error().unwrap().to_string();
        assert!(detail.contains("***@127.0.0.1"), "{detail}");
        for shown in [detail, format!("{keys:?}"), keys.source_redacted()] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
    // Configuration errors, at start-up, are redacted too.
    let e = RemoteKeys::start(
        Source::JwksUrl("http://jwtd:hunter2-secret@idp.example/jwks".into()),
        vec![Algorithm::ES256],
        HttpConfig::default(),
        fast_cache(),
    )
    .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[tokio::test]
async fn https_sources_never_downgrade_to_plain_http() {
    let tls = Provider::start(true).await;
    let plain = Provider::start(false).await;
    let a = key("a");
    tls.set_keys(vec![a.clone_for_test()]);
    plain.set_keys(vec![a.clone_for_test()]);
    let plain_jwks = plain.jwks_url().replace("localhost", "127.0.0.1");
    // A redirect from the HTTPS JWKS to plain HTTP on loopback is not followed.
    tls.set_mode(Mode::RedirectTo(plain_jwks.clone()));
    assert_eq!(
        failure_kind(&tls, Source::JwksUrl(tls.jwks_url()), http_for(&tls)).await,
        FetchErrorKind::Redirect
    );
    // Nor is a discovered jwks_uri that names it.
    tls.set_mode(Mode::Normal);
    tls.state.lock().unwrap().jwks_uri_override = Some(plain_jwks);
    assert_eq!(
        failure_kind(&tls, Source::Discovery(tls.issuer()), http_for(&tls)).await,
        FetchErrorKind::InsecureUrl
    );
    assert_eq!(
        plain.jwks_hits(),
        0,
        "the plain HTTP keys were never fetched"
    );
    // A redirect that stays on HTTPS is followed.
    tls.state.lock().unwrap().jwks_uri_override = None;
    tls.set_mode(Mode::RedirectTo("/.well-known/jwks-moved".into()));
    let e = failure_kind(&tls, Source::JwksUrl(tls.jwks_url()), http_for(&tls)).await;
    assert_eq!(e, FetchErrorKind::Status, "followed to a 404");
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

/// The discovery fuzz target's seeds (`fuzz/seeds/discovery/`), replayed through the same calls
/// on every test run: nothing panics, and the seeds reach the outcomes they were written for.
#[test]
fn discovery_fuzz_seeds() {
    use jwtd_remote::{check_reached, parse_discovery, parse_max_age};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/discovery");
    let issuer = "https://issuer.example";
    let url = url::Url::parse(&format!("{issuer}/.well-known/openid-configuration")).unwrap();
    let outcome = |name: &str| {
        let body = std::fs::read(dir.join(name)).unwrap();
        parse_discovery(&body, issuer, &url)
            .and_then(|u| check_reached(&url, &u, false).map(|()| u))
            .map_err(|e| e.kind)
    };
    assert_eq!(
        outcome("google.json").unwrap().as_str(),
        "https://www.issuer.example/oauth2/v3/certs"
    );
    for (seed, kind) in [
        ("downgrade.json", FetchErrorKind::InsecureUrl),
        ("internal-userinfo.json", FetchErrorKind::InsecureUrl),
        ("file-scheme.json", FetchErrorKind::InsecureUrl),
        ("duplicate.json", FetchErrorKind::Malformed),
        ("jwks-uri-number.json", FetchErrorKind::Malformed),
        ("issuer-mismatch.json", FetchErrorKind::IssuerMismatch),
        ("keycloak-loopback.json", FetchErrorKind::IssuerMismatch),
    ] {
        assert_eq!(outcome(seed), Err(kind), "{seed}");
    }
    // A userinfo password never reaches a message.
    let body = std::fs::read(dir.join("internal-userinfo.json")).unwrap();
    let u = parse_discovery(&body, issuer, &url).unwrap();
    let e = check_reached(&url, &u, false).unwrap_err();
    assert!(!e.message.contains("secret"), "{}", e.message);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let body = std::fs::read(entry.unwrap().path()).unwrap();
        for cut in 0..body.len() {
            let _ = parse_discovery(&body[..cut], issuer, &url);
        }
        if let Ok(text) = std::str::from_utf8(&body) {
            let _ = parse_max_age(text);
        }
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(
        parse_max_age(&read("cache-control.txt")),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        parse_max_age(&read("cache-control-no-store.txt")),
        Some(Duration::ZERO)
    );
}
