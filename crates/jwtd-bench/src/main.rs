//! `jwtd-bench`: stable, same-run comparisons of verify cost.
//!
//! - `jwtd-bench instructions [ALG...]`: instructions per verify under valgrind's callgrind
//!   (repeatable on a noisy machine) for the raw aws-lc-rs primitive, jwtd-core and
//!   jsonwebtoken, with ratios. Needs `valgrind` on PATH.
//! - `jwtd-bench wallclock [ALG...]`: nanoseconds per verify, median of 7 rounds, same three.
//! - `jwtd-bench run ALG IMPL N`: the measured loop itself (what callgrind runs).
//! - `jwtd-bench remote-flood ISSUER AUD ALG TOKENS SECONDS CONCURRENCY`: verifies the tokens in
//!   file TOKENS (one per line) in a loop through jwtd-remote's cache (OIDC discovery of ISSUER)
//!   and prints verifications per second and outcomes; run it against a mock IdP to count the
//!   key fetches an unknown-kid flood causes.
//! - `jwtd-bench cache [ALG...]`: the verified-token cache's hit cost next to a full verify,
//!   and what a miss adds to it (the lookup, the insert and an eviction from a full cache).
//! - `jwtd-bench revocation [ALG...]`: the cost of checking a 100,000-entry revocation list
//!   after a verify and after a cache hit (instructions and nanoseconds).
//! - `jwtd-bench sign [ALG...]`: nanoseconds per signature, raw aws-lc-rs key pair vs
//!   `jwtd_core::sign` (header and claims serialized, encoded and signed), median of 7 rounds.
//! - `jwtd-bench junk [ALG...]`: instructions per refusal of the costliest unauthenticated junk
//!   of one size (the size of a token whose header has 1,050 members) next to a valid token of
//!   that size: the pre-signature work must stay within 3x of a valid token's whole verify.
//! - `jwtd-bench dpop [ALG...]`: a DPoP proof check (`DpopPolicy::verify`, and through
//!   jwtd-gate's proof-key cache with and without the token's hash kept) next to a token
//!   verification of the same algorithm and the proof's bare signature check, in instructions.
//! - `jwtd-bench kid-flood [TOKENS [KID_LEN]]`: the resident memory a flood of tokens naming
//!   unknown `kid`s costs a remote key source (its negative cache), against an in-process JWKS
//!   server.
//! - `jwtd-bench mint ALG N ISS AUD TOKENS_OUT JWKS_OUT`: a fresh key, its JWKS, and N distinct
//!   tokens (one per line) for load tests.
//! - `jwtd-bench http-ceiling ADDR`: a minimal hyper server answering 200 to everything: the
//!   HTTP ceiling of this machine, measured in the same run as jwtd.
//! - `jwtd-bench rotation ISSUER AUD ALG OLD_TOKEN_FILE NEW_TOKEN_FILE 'COMMAND'`: warms the cache
//!   with the old token, runs COMMAND (which publishes a new key and writes a token signed with
//!   it), then reports how long until that token is first accepted and how many fetches it took.

use jwtd_bench::{Fixture, ALGS};
use jwtd_core::Algorithm;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

mod grpc;
mod remote;
mod serve;

const IMPLS: [&str; 3] = ["raw", "jwtd", "jsonwebtoken"];

/// The 100,000-entry revocation list of the `revocation` mode (built once, outside the
/// measured loop).
fn revocations() -> &'static jwtd_core::RevocationList {
    static LIST: std::sync::OnceLock<jwtd_core::RevocationList> = std::sync::OnceLock::new();
    LIST.get_or_init(|| jwtd_bench::revocation_list(100_000))
}

/// The verified-token cache of the `cache-hit` loop (warmed outside it).
fn hit_cache() -> &'static jwtd_core::TokenCache {
    static CACHE: std::sync::OnceLock<jwtd_core::TokenCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| jwtd_core::TokenCache::new(Default::default()).expect("cache"))
}

/// Distinct tokens the `cache-miss` loop fills its cache with before measuring.
const MISS_FILL: usize = 300;

/// The `cache-miss` loop's tokens: [`MISS_FILL`] to fill the cache, then one per iteration.
static MISS_TOKENS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// The 100-entry verified-token cache of the `cache-miss` loop: filled before the loop, so
/// every miss in it also evicts.
fn miss_cache() -> &'static jwtd_core::TokenCache {
    static CACHE: std::sync::OnceLock<jwtd_core::TokenCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        jwtd_core::TokenCache::new(jwtd_core::TokenCacheConfig {
            max_entries: 100,
            ..Default::default()
        })
        .expect("cache")
    })
}

/// The DPoP proof of the `dpop*` loops (made before the loop).
static DPOP: std::sync::OnceLock<jwtd_bench::DpopFixture> = std::sync::OnceLock::new();

/// The token of the `padded`, `many-claims` and `junk:*` loops (made before the loop).
static CASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[inline(never)]
fn measured_loop(f: &Fixture, which: &str, n: u64) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        let r = match which {
            "raw" => f.run_raw(),
            "jwtd" => f.run_jwtd(),
            "jwtd+revocations" => f.run_jwtd_revocations(revocations()),
            "cache-hit" => f.run_jwtd_cached(hit_cache()),
            "cache-miss" => {
                let t = &MISS_TOKENS.get().expect("made before the loop")[MISS_FILL + i as usize];
                f.run_jwtd_cache_miss(miss_cache(), t)
            }
            "dpop" => f.run_dpop(DPOP.get().expect("made")),
            "dpop-raw" => f.run_dpop_raw(DPOP.get().expect("made")),
            "dpop-cached" => f.run_dpop_cached(DPOP.get().expect("made")),
            "dpop-cached-key" => f.run_dpop_cached_key(DPOP.get().expect("made")),
            "dpop-raw-parsing" => f.run_dpop_raw_parsing(DPOP.get().expect("made")),
            "padded" | "many-claims" => f
                .jwtd
                .verify(CASE.get().expect("made"), jwtd_bench::NOW)
                .is_ok(),
            w if w.starts_with("junk:") => f
                .jwtd
                .verify(CASE.get().expect("made"), jwtd_bench::NOW)
                .is_err(),
            _ => f.run_jsonwebtoken().unwrap_or(false),
        };
        ok += black_box(r) as u64;
    }
    ok
}

fn algs(args: &[String]) -> Vec<Algorithm> {
    if args.is_empty() {
        ALGS.to_vec()
    } else {
        args.iter()
            .map(|a| a.parse().unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }
}

fn callgrind(alg: Algorithm, which: &str, n: u64) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out =
        std::env::temp_dir().join(format!("jwtd-cg-{}-{alg}-{which}.out", std::process::id()));
    let status = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--toggle-collect=*measured_loop*",
            &format!("--callgrind-out-file={}", out.display()),
        ])
        .arg(&exe)
        .args(["run", alg.as_str(), which, &n.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("valgrind runs (apt-get install valgrind)");
    assert!(status.success(), "callgrind run failed for {alg} {which}");
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let total: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(total / n as f64)
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}x", a / b),
        _ => "n/a".into(),
    }
}

fn table(title: &str, unit: &str, rows: Vec<(Algorithm, [Option<f64>; 3])>) {
    println!("{title}");
    println!(
        "| alg | raw aws-lc-rs ({unit}) | jwtd ({unit}) | jsonwebtoken ({unit}) | jwtd / raw | jsonwebtoken / jwtd |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (alg, [raw, jwtd, jwt]) in rows {
        println!(
            "| {alg} | {} | {} | {} | {} | {} |",
            fmt(raw),
            fmt(jwtd),
            fmt(jwt),
            ratio(jwtd, raw),
            ratio(jwt, jwtd)
        );
    }
}

/// Raw aws-lc-rs signing with the same key, for the sign table (unboxed: no indirection in
/// the baseline).
#[allow(clippy::large_enum_variant)]
enum RawSigner {
    Hmac(aws_lc_rs::hmac::Key),
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
    Ed(aws_lc_rs::signature::Ed25519KeyPair),
    Rsa(
        aws_lc_rs::rsa::KeyPair,
        &'static dyn aws_lc_rs::signature::RsaEncoding,
    ),
}

impl RawSigner {
    fn new(alg: Algorithm, key: &jwtd_core::SigningKey) -> RawSigner {
        use aws_lc_rs::signature as s;
        use jwtd_core::Family;
        match alg.family() {
            Family::Hmac => RawSigner::Hmac(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &vec![0x42; alg.hash_len()],
            )),
            _ => {
                let der = key.to_pkcs8_der().expect("pkcs8");
                match alg {
                    Algorithm::ES256 => RawSigner::Ecdsa(
                        s::EcdsaKeyPair::from_pkcs8(&s::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                            .expect("key"),
                    ),
                    Algorithm::ES384 => RawSigner::Ecdsa(
                        s::EcdsaKeyPair::from_pkcs8(&s::ECDSA_P384_SHA384_FIXED_SIGNING, &der)
                            .expect("key"),
                    ),
                    Algorithm::EdDSA => {
                        RawSigner::Ed(s::Ed25519KeyPair::from_pkcs8(&der).expect("key"))
                    }
                    Algorithm::RS256 => RawSigner::Rsa(
                        aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).expect("key"),
                        &s::RSA_PKCS1_SHA256,
                    ),
                    Algorithm::PS256 => RawSigner::Rsa(
                        aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).expect("key"),
                        &s::RSA_PSS_SHA256,
                    ),
                    other => panic!("sign table: {other} not included"),
                }
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> usize {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            RawSigner::Hmac(k) => aws_lc_rs::hmac::sign(k, msg).as_ref().len(),
            RawSigner::Ecdsa(k) => k.sign(&rng, msg).expect("sign").as_ref().len(),
            RawSigner::Ed(k) => k.sign(msg).as_ref().len(),
            RawSigner::Rsa(k, enc) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(*enc, &rng, msg, &mut sig).expect("sign");
                sig.len()
            }
        }
    }
}

fn sign_table(args: &[String]) {
    let list = if args.is_empty() {
        vec![
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ]
    } else {
        algs(args)
    };
    println!("Nanoseconds per signature (median of 7 rounds)");
    println!("| alg | raw aws-lc-rs sign (ns) | jwtd_core::sign, whole token (ns) | jwtd / raw |");
    println!("|---|---:|---:|---:|");
    for alg in list {
        let key = jwtd_bench::signing_key(alg);
        let raw = RawSigner::new(alg, &key);
        let claims = serde_json::json!({"iss": jwtd_bench::ISS, "sub": "alice", "aud": jwtd_bench::AUD, "iat": 1, "exp": 2, "scope": "openid email"});
        let claims = claims.as_object().expect("object").clone();
        let input = jwtd_core::sign(&key, &claims, None).expect("sign");
        let input = input.rsplit_once('.').expect("parts").0.as_bytes().to_vec();
        let n: u64 = match alg.family() {
            jwtd_core::Family::Hmac => 20_000,
            jwtd_core::Family::Rsa => 100,
            _ => 1000,
        };
        let measure = |f: &dyn Fn() -> usize| {
            let mut v: Vec<f64> = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(f());
                    }
                    t.elapsed().as_nanos() as f64 / n as f64
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[3]
        };
        let r = measure(&|| raw.sign(black_box(&input)));
        let j = measure(&|| {
            jwtd_core::sign(&key, black_box(&claims), None)
                .expect("sign")
                .len()
        });
        println!("| {alg} | {r:.0} | {j:.0} | {:.3}x |", j / r);
    }
}

fn cache_table(args: &[String]) {
    let list = if args.is_empty() {
        vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256]
    } else {
        algs(args)
    };
    println!(
        "Verified-token cache: wall clock (median of 7 rounds) and callgrind instruction counts"
    );
    println!("| alg | token (bytes) | miss path: jwtd verify (ns) | cache hit (ns) | hit speed-up | SHA-256 of the token (ns) | verify (Ir) | cache hit (Ir) | miss + insert + eviction (Ir) | miss cost over verify |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for alg in list {
        let f = Fixture::new(alg);
        let cache = jwtd_core::TokenCache::new(Default::default()).expect("cache");
        let keys = f.jwtd.keys();
        let v = f.jwtd.validation();
        cache
            .verify([1, 0], keys, v, &f.token, jwtd_bench::NOW)
            .expect("verifies");
        let n = 20_000u64;
        let time = |g: &dyn Fn() -> bool| {
            let mut s: Vec<f64> = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..n {
                        black_box(g());
                    }
                    t.elapsed().as_nanos() as f64 / n as f64
                })
                .collect();
            s.sort_by(f64::total_cmp);
            s[3]
        };
        let hit = time(&|| {
            cache
                .verify([1, 0], keys, v, black_box(&f.token), jwtd_bench::NOW)
                .is_ok()
        });
        let miss = time(&|| f.run_jwtd());
        // The raw primitive a digest-keyed cache would pay on every hit, for comparison.
        let sha = time(&|| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(f.token.as_bytes()))
                .as_ref()[0]
                == 0
        });
        let n_verify = match alg.family() {
            jwtd_core::Family::Hmac => 2000,
            _ => 100,
        };
        // Signed here, natively, for the callgrind run to read.
        f.distinct_tokens(MISS_FILL + n_verify as usize);
        let verify_ir = callgrind(alg, "jwtd", n_verify);
        let miss_ir = callgrind(alg, "cache-miss", n_verify);
        let over = match (verify_ir, miss_ir) {
            (Some(v), Some(m)) => format!("{:+.2}%", (m / v - 1.0) * 100.0),
            _ => "n/a".into(),
        };
        println!(
            "| {alg} | {} | {miss:.0} | {hit:.0} | {:.0}x | {sha:.0} | {} | {} | {} | {over} |",
            f.token.len(),
            miss / hit,
            fmt(verify_ir),
            fmt(callgrind(alg, "cache-hit", 20_000)),
            fmt(miss_ir),
        );
    }
}

fn revocation_table(args: &[String]) {
    let chosen = if args.is_empty() {
        vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256]
    } else {
        algs(args)
    };
    let list = revocations();
    println!(
        "Revocation check with {} entries (90% jti, 9% sub, 1% kid), none covering the token",
        list.len()
    );
    println!("| alg | verify (Ir) | verify + check (Ir) | cost | verify (ns) | verify + check (ns) | cost | cache hit (ns) | hit + check (ns) | cost |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let pct = |a: f64, b: f64| format!("{:+.2}%", (b / a - 1.0) * 100.0);
    for alg in chosen {
        let f = Fixture::new(alg);
        let n = match alg.family() {
            jwtd_core::Family::Hmac => 2000,
            _ => 100,
        };
        let ir = callgrind(alg, "jwtd", n).unwrap_or(f64::NAN);
        let ir_r = callgrind(alg, "jwtd+revocations", n).unwrap_or(f64::NAN);
        let cache = jwtd_core::TokenCache::new(Default::default()).expect("cache");
        let (keys, v) = (f.jwtd.keys(), f.jwtd.validation());
        cache
            .verify([1, 0], keys, v, &f.token, jwtd_bench::NOW)
            .expect("verifies");
        let n: u64 = match alg.family() {
            jwtd_core::Family::Hmac => 20_000,
            _ => 400,
        };
        let time = |g: &dyn Fn() -> bool| {
            let mut s: Vec<f64> = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..n {
                        assert!(black_box(g()));
                    }
                    t.elapsed().as_nanos() as f64 / n as f64
                })
                .collect();
            s.sort_by(f64::total_cmp);
            s[3]
        };
        let ns = time(&|| f.run_jwtd());
        let ns_r = time(&|| f.run_jwtd_revocations(list));
        let hit = |check: bool| {
            cache
                .verify([1, 0], keys, v, black_box(&f.token), jwtd_bench::NOW)
                .map(|v| !check || list.check(&v).is_ok())
                .unwrap_or(false)
        };
        let h = time(&|| hit(false));
        let h_r = time(&|| hit(true));
        println!(
            "| {alg} | {ir:.0} | {ir_r:.0} | {} | {ns:.0} | {ns_r:.0} | {} | {h:.0} | {h_r:.0} | {} |",
            pct(ir, ir_r),
            pct(ns, ns_r),
            pct(h, h_r)
        );
    }
}

fn junk_table(args: &[String]) {
    let list = if args.is_empty() {
        vec![Algorithm::HS256, Algorithm::ES256, Algorithm::RS256]
    } else {
        algs(args)
    };
    println!(
        "Unauthenticated junk vs a valid token of the same size: instructions per verify (callgrind, Ir)"
    );
    println!("| alg | token (bytes) | case | Ir | / valid padded token |");
    println!("|---|---:|---|---:|---:|");
    let n = 200;
    for alg in list {
        let f = Fixture::new(alg);
        let len = f.junk_len();
        let valid = callgrind(alg, "padded", n);
        let row = |case: &str, bytes: usize, ir: Option<f64>| {
            println!(
                "| {alg} | {bytes} | {case} | {} | {} |",
                fmt(ir),
                ratio(ir, valid)
            );
        };
        row("valid, padded claim", f.padded_token(len).len(), valid);
        let many = f.many_claims_token();
        row(
            &format!("valid, {} claims members", jwtd_bench::JUNK_MEMBERS),
            many.len(),
            callgrind(alg, "many-claims", n),
        );
        let mut worst: Option<(f64, &str)> = None;
        for (name, t) in f.junk_tokens(len) {
            let ir = callgrind(alg, &format!("junk:{name}"), n);
            row(&format!("junk: {name}"), t.len(), ir);
            if let (Some(ir), Some(v)) = (ir, valid) {
                match worst {
                    Some((w, _)) if w >= ir / v => {}
                    _ => worst = Some((ir / v, name)),
                }
            }
        }
        if let Some((w, name)) = worst {
            eprintln!("{alg}: worst junk {name} at {w:.2}x a valid token");
        }
    }
}

/// `jwtd-bench dpop [ALG...]`: a DPoP proof check next to one token verification of the same
/// algorithm, and the proof's signature alone on a pre-parsed key, in callgrind instructions:
/// the check with its key parsed and the token hashed per call (a client's first proof, or
/// `DpopPolicy::verify` alone), with the key from jwtd-gate's proof-key cache (the token
/// hashed), and with both the key and the token's hash kept (a returning client whose token
/// the verified-token cache holds). The bar: the check costs at most one signature
/// verification of the proof plus 10% of the token's verification.
fn dpop_table(args: &[String]) {
    let algs = if args.is_empty() {
        vec![
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
            Algorithm::PS256,
        ]
    } else {
        algs(args)
    };
    println!("DPoP proof check vs token verification: instructions per call (callgrind, Ir)");
    println!(
        "| alg | token verify | proof sig (raw, parsed key) | proof sig (raw, key parsed per call) | check, cold key | check, cached key | check, cached key + token hash | cold - sig (parsed per call) | cold - sig | cached key - sig | cached key + hash - sig |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for alg in algs {
        let f = jwtd_bench::Fixture::new(alg);
        f.dpop(); // warms the key cache outside valgrind
        let n = 100;
        let token = callgrind(alg, "jwtd", n);
        let raw = callgrind(alg, "dpop-raw", n);
        let raw_parsing = callgrind(alg, "dpop-raw-parsing", n);
        let cold = callgrind(alg, "dpop", n);
        let key = callgrind(alg, "dpop-cached-key", n);
        let both = callgrind(alg, "dpop-cached", n);
        let over_base = |check: Option<f64>, base: Option<f64>| match (check, base, token) {
            (Some(c), Some(b), Some(t)) if t > 0.0 => {
                format!("{:.0} ({:.1}%)", c - b, 100.0 * (c - b) / t)
            }
            _ => "n/a".into(),
        };
        let over = |check| over_base(check, raw);
        println!(
            "| {alg} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(token),
            fmt(raw),
            fmt(raw_parsing),
            fmt(cold),
            fmt(key),
            fmt(both),
            over_base(cold, raw_parsing),
            over(cold),
            over(key),
            over(both)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => {
            let alg: Algorithm = args[1].parse().expect("algorithm");
            let n: u64 = args[3].parse().expect("count");
            let f = Fixture::new(alg);
            if args[2] == "jwtd+revocations" {
                revocations(); // built outside the measured loop
            }
            if args[2] == "cache-hit" {
                assert!(f.run_jwtd_cached(hit_cache()), "warms the cache");
            }
            if args[2] == "cache-miss" {
                let tokens = MISS_TOKENS.get_or_init(|| f.distinct_tokens(MISS_FILL + n as usize));
                for t in &tokens[..MISS_FILL] {
                    assert!(f.run_jwtd_cache_miss(miss_cache(), t), "fills the cache");
                }
                assert!(
                    miss_cache().stats().evictions > 0,
                    "full: inserts now evict"
                );
            }
            if args[2].starts_with("dpop") {
                assert!(DPOP.set(f.dpop()).is_ok(), "set once");
            }
            let case = match args[2].as_str() {
                "padded" => Some(f.padded_token(f.junk_len())),
                "many-claims" => Some(f.many_claims_token()),
                w => w.strip_prefix("junk:").map(|name| {
                    f.junk_tokens(f.junk_len())
                        .into_iter()
                        .find(|(n, _)| *n == name)
                        .expect("a junk case")
                        .1
                }),
            };
            if let Some(t) = case {
                CASE.set(t).expect("set once");
            }
            let ok = measured_loop(&f, &args[2], n);
            if args[2] != "jsonwebtoken" || f.jsonwebtoken.is_some() {
                assert_eq!(ok, n, "every verification succeeds");
            }
        }
        Some("instructions") => {
            let mut rows = Vec::new();
            for alg in algs(&args[1..]) {
                let f = Fixture::new(alg); // warms the key cache outside valgrind
                let n = match alg.family() {
                    jwtd_core::Family::Hmac => 2000,
                    _ => 100,
                };
                let mut r = [None; 3];
                for (i, which) in IMPLS.iter().enumerate() {
                    if *which == "jsonwebtoken" && f.jsonwebtoken.is_none() {
                        continue;
                    }
                    r[i] = callgrind(alg, which, n);
                }
                eprintln!("measured {alg}");
                rows.push((alg, r));
            }
            table("Instructions per verify (callgrind, Ir)", "Ir", rows);
        }
        Some("wallclock") => {
            let mut rows = Vec::new();
            for alg in algs(&args[1..]) {
                let f = Fixture::new(alg);
                let n: u64 = match alg.family() {
                    jwtd_core::Family::Hmac => 20_000,
                    _ => 400,
                };
                let mut r = [None; 3];
                for (i, which) in IMPLS.iter().enumerate() {
                    if *which == "jsonwebtoken" && f.jsonwebtoken.is_none() {
                        continue;
                    }
                    let mut samples: Vec<f64> = (0..7)
                        .map(|_| {
                            let t = Instant::now();
                            measured_loop(&f, which, n);
                            t.elapsed().as_nanos() as f64 / n as f64
                        })
                        .collect();
                    samples.sort_by(f64::total_cmp);
                    r[i] = Some(samples[3]);
                }
                rows.push((alg, r));
            }
            table("Nanoseconds per verify (median of 7 rounds)", "ns", rows);
        }
        Some("junk") => junk_table(&args[1..]),
        Some("dpop") => dpop_table(&args[1..]),
        Some("kid-flood") => remote::kid_flood(&args[1..]),
        Some("remote-flood") => remote::flood(&args[1..]),
        Some("mint") => serve::mint(&args[1..]),
        Some("sign") => sign_table(&args[1..]),
        Some("cache") => cache_table(&args[1..]),
        Some("revocation") => revocation_table(&args[1..]),
        Some("http-ceiling") => serve::ceiling(&args[1..]),
        Some("grpc-load") => grpc::load(&args[1..]),
        Some("rotation") => remote::rotation(&args[1..]),
        _ => {
            eprintln!("usage: jwtd-bench instructions|wallclock [ALG...] | run ALG raw|jwtd|jsonwebtoken N | remote-flood ... | rotation ... | grpc-load ADDR TOKENS CONNS SECONDS|--count N");
            std::process::exit(2);
        }
    }
}
