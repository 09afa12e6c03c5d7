//! Remote-key scenarios against a running identity provider (e.g. the shared mock IdP).

use jwtd_core::{Algorithm, Validation};
use jwtd_remote::{CacheConfig, HttpConfig, RemoteKeys, Source};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn setup(issuer: &str, aud: &str, alg: &str) -> (RemoteKeys, Validation) {
    let alg: Algorithm = alg.parse().expect("algorithm");
    let keys = RemoteKeys::start(
        Source::Discovery(issuer.to_owned()),
        vec![alg],
        HttpConfig::default(),
        CacheConfig::default(),
    )
    .expect("source");
    (keys, Validation::new(&[alg]).issuer(issuer).audience(aud))
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("token file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `remote-flood ISSUER AUD ALG TOKENS SECONDS CONCURRENCY`
pub fn flood(args: &[String]) {
    let [issuer, aud, alg, tokens, secs, conc] = args else {
        panic!("remote-flood ISSUER AUD ALG TOKENS SECONDS CONCURRENCY");
    };
    let tokens = std::sync::Arc::new(lines(tokens));
    let secs: u64 = secs.parse().expect("seconds");
    let conc: usize = conc.parse().expect("concurrency");
    runtime().block_on(async {
        let (keys, policy) = setup(issuer, aud, alg);
        assert!(keys.wait_ready(Duration::from_secs(10)).await, "keys ready");
        let before = keys.stats();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for w in 0..conc {
            let (keys, policy, tokens) = (keys.clone(), policy.clone(), tokens.clone());
            tasks.push(tokio::spawn(async move {
                let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
                let mut i = w * 31;
                while Instant::now() < deadline {
                    let t = &tokens[i % tokens.len()];
                    i += 1;
                    let o = match keys.verify(&policy, t).await {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => e.reason().as_str().to_owned(),
                    };
                    *outcomes.entry(o).or_default() += 1;
                }
                outcomes
            }));
        }
        let mut total: BTreeMap<String, u64> = BTreeMap::new();
        for t in tasks {
            for (k, v) in t.await.expect("task") {
                *total.entry(k).or_default() += v;
            }
        }
        let after = keys.stats();
        let n: u64 = total.values().sum();
        println!(
            "RESULT verifications={n} per_s={:.0} outcomes={total:?} jwks_fetches_during_run={} discovery_fetches_during_run={}",
            n as f64 / secs as f64,
            after.fetches - before.fetches,
            after.discovery_fetches - before.discovery_fetches
        );
    });
}

/// `rotation ISSUER AUD ALG OLD_TOKEN_FILE NEW_TOKEN_FILE COMMAND`
pub fn rotation(args: &[String]) {
    let [issuer, aud, alg, old, new, command] = args else {
        panic!("rotation ISSUER AUD ALG OLD_TOKEN_FILE NEW_TOKEN_FILE COMMAND");
    };
    runtime().block_on(async {
        let (keys, policy) = setup(issuer, aud, alg);
        assert!(keys.wait_ready(Duration::from_secs(10)).await, "keys ready");
        let old = lines(old).remove(0);
        keys.verify(&policy, &old).await.expect("old token verifies");
        let before = keys.stats().fetches;
        let status = std::process::Command::new("sh")
            .args(["-c", command])
            .status()
            .expect("command runs");
        assert!(status.success(), "command failed");
        let new = lines(new).remove(0);
        let published = Instant::now();
        let mut rejected = 0;
        loop {
            match keys.verify(&policy, &new).await {
                Ok(_) => break,
                Err(e) => {
                    rejected += 1;
                    assert!(published.elapsed() < Duration::from_secs(120), "never accepted: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        println!(
            "RESULT publication_to_first_accept_ms={:.1} rejections_before={rejected} jwks_fetches={}",
            published.elapsed().as_secs_f64() * 1000.0,
            keys.stats().fetches - before
        );
        let old_after = keys.verify(&policy, &old).await;
        println!(
            "RESULT old_token_after_rotation={}",
            old_after.map(|_| "accepted".to_owned()).unwrap_or_else(|e| e.reason().to_string())
        );
    });
}

/// Resident and peak resident memory of this process, in bytes (Linux `/proc/self/status`).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Serves `jwks` to every request on a loopback port; returns its JWKS URL.
async fn serve_jwks(jwks: String) -> String {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://127.0.0.1:{}/jwks",
        l.local_addr().expect("addr").port()
    );
    let body = bytes::Bytes::from(jwks);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(body),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    url
}

/// `kid-flood [TOKENS [KID_LEN]]`: TOKENS (default 50,000) unauthenticated tokens, each naming
/// its own unknown `kid` of KID_LEN bytes (default 12,000: the largest a 16 KiB token holds),
/// through one remote key source whose cooldown never lets them fetch; prints the resident
/// memory before and after and the outcomes.
pub fn kid_flood(args: &[String]) {
    let n: usize = args.first().map_or(50_000, |s| s.parse().expect("tokens"));
    let kid_len: usize = args
        .get(1)
        .map_or(12_000, |s| s.parse().expect("kid length"));
    runtime().block_on(async {
        let alg = Algorithm::ES256;
        let key = jwtd_core::SigningKey::generate(alg)
            .expect("keygen")
            .with_kid(Some("real".into()));
        let jwks = jwtd_core::Jwks::from_keys(key.public_jwk());
        let url = serve_jwks(serde_json::to_string(&jwks).expect("json")).await;
        let cache = CacheConfig {
            cooldown: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(3600),
            ..CacheConfig::default()
        };
        let keys = RemoteKeys::start(Source::JwksUrl(url), vec![alg], HttpConfig::default(), cache)
            .expect("source");
        assert!(keys.wait_ready(Duration::from_secs(10)).await, "keys ready");
        let policy = Validation::new(&[alg]).any_audience();
        // One fetch for an unknown kid starts the cooldown: every later one is refused at once.
        let _ = keys.verify(&policy, &flood_token(0, kid_len)).await;
        let (before, _) = rss();
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        let started = Instant::now();
        for i in 1..=n {
            let t = flood_token(i, kid_len);
            let o = match keys.verify(&policy, &t).await {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.reason().as_str().to_owned(),
            };
            *outcomes.entry(o).or_default() += 1;
        }
        let (after, peak) = rss();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!("| tokens | kid (bytes) | RSS before (MiB) | RSS after (MiB) | peak RSS (MiB) | growth (MiB) | outcomes | fetches | seconds |");
        println!("|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        println!(
            "| {n} | {kid_len} | {:.1} | {:.1} | {:.1} | {:.1} | {outcomes:?} | {} | {:.1} |",
            mib(before),
            mib(after),
            mib(peak),
            mib(after.saturating_sub(before)),
            keys.stats().fetches,
            started.elapsed().as_secs_f64()
        );
    });
}

/// An ES256-shaped token naming kid `<i>` padded to `kid_len` bytes, with a zero signature.
fn flood_token(i: usize, kid_len: usize) -> String {
    let mut kid = format!("{i:08x}");
    kid.extend(std::iter::repeat_n('k', kid_len.saturating_sub(kid.len())));
    let header = format!("{{\"alg\":\"ES256\",\"kid\":\"{kid}\"}}");
    let mut t = jwtd_core::b64::encode(header.as_bytes());
    t.push_str(".e30.");
    t.push_str(&jwtd_core::b64::encode([0u8; 64]));
    t
}
