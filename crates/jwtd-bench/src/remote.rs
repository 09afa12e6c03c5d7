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
