//! The proof-key cache (`jwtd_gate::dpop::ProofKeyCache`): a header answered from the cache
//! is refused for exactly what a freshly parsed one is refused for (every named failure, the
//! same key under another policy, headers that differ from a kept one by a byte), a header
//! kept for other bytes is never used, only proofs that passed are kept, a flood of distinct
//! keys stays inside the entry and byte bounds while a returning client stays cached, and the
//! engine keeps a passing proof's key (and no refused one's).

use jwtd_core::{
    access_token_hash, b64, sign_raw, Algorithm, DpopPolicy, DpopRequest, Jwk, ProofHeader,
    ProofKeys, SigningKey,
};
use jwtd_gate::dpop::ProofKeyCache;
use serde_json::{json, Value};
use std::sync::Arc;

const NOW: u64 = 1_800_000_000;
const URI: &str = "https://api.example/v1/orders?page=2";
const HTU: &str = "https://api.example/v1/orders";
const TOKEN: &str = "an.access-token.x";

fn bare_jwk(k: &SigningKey) -> Value {
    let p = k.public_jwk().unwrap();
    serde_json::to_value(Jwk {
        kty: p.kty,
        crv: p.crv,
        n: p.n,
        e: p.e,
        x: p.x,
        y: p.y,
        ..Jwk::default()
    })
    .unwrap()
}

fn header(k: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": k.algorithm().as_str(), "jwk": bare_jwk(k)})
}

fn claims(jti: &str) -> Value {
    json!({"jti": jti, "htm": "GET", "htu": HTU, "iat": NOW, "ath": access_token_hash(TOKEN)})
}

/// A proof with this header and these claims, signed by `k` (whose alg the header names).
fn forge(k: &SigningKey, header: &Value, claims: &Value) -> String {
    sign_raw(
        k,
        header.as_object().unwrap(),
        &serde_json::to_vec(claims).unwrap(),
    )
    .unwrap()
}

/// A proof with any header (one `sign_raw` refuses to sign under, e.g. another alg than the
/// key's), carrying the signature of `signed_by`.
fn assemble(header: &Value, claims: &Value, signed_by: &str) -> String {
    let sig = signed_by.rsplit('.').next().unwrap();
    format!(
        "{}.{}.{sig}",
        b64::encode(serde_json::to_vec(header).unwrap()),
        b64::encode(serde_json::to_vec(claims).unwrap())
    )
}

fn segment(proof: &str) -> &[u8] {
    proof.split('.').next().unwrap().as_bytes()
}

/// The proof's check under `policy`: through `keys` when given, else parsed afresh.
fn check(
    policy: &DpopPolicy,
    keys: Option<&ProofKeyCache>,
    proof: &str,
    token: &str,
) -> Result<String, &'static str> {
    let req = DpopRequest {
        proofs: &[proof.as_bytes()],
        method: "GET",
        uri: URI,
        access_token: Some(token),
    };
    let r = match keys {
        Some(c) => {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            let hash: [u8; 32] = hash.as_ref().try_into().unwrap();
            c.verify(policy, &req, Some(&hash), NOW)
        }
        None => policy.verify(&req, NOW),
    };
    r.map(|p| p.jkt).map_err(|e| e.reason().as_str())
}

/// A case: its name, the policy, the proof, the token presented, the expected answer, and
/// whether the cache answers it from the kept header.
type Case<'a> = (
    &'static str,
    &'a DpopPolicy,
    String,
    &'static str,
    Result<String, &'static str>,
    bool,
);

#[test]
fn a_cache_hit_refuses_exactly_what_a_miss_refuses() {
    for (alg, wrong_alg, other_policy) in [
        (Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA),
        (Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES256),
        (Algorithm::RS256, Algorithm::ES256, Algorithm::PS256),
    ] {
        let k = SigningKey::generate(alg).unwrap();
        let other = SigningKey::generate(alg).unwrap();
        let jkt = k.public_jwk().unwrap().thumbprint().unwrap();
        let policy = DpopPolicy::default();
        let cache = ProofKeyCache::new(100, 1 << 20);
        let good = forge(&k, &header(&k), &claims("warm"));
        assert_eq!(check(&policy, Some(&cache), &good, TOKEN), Ok(jkt.clone()));
        assert!(
            cache.holds(segment(&good)),
            "{alg}: a passing proof's key is kept"
        );
        let with_claim = |name: &str, v: Value| {
            let mut c = claims("c");
            c[name] = v;
            forge(&k, &header(&k), &c)
        };
        let with_header = |f: &dyn Fn(&mut Value)| {
            let mut h = header(&k);
            f(&mut h);
            assemble(&h, &claims("h"), &good)
        };
        let only_other = DpopPolicy::new(&[other_policy]).unwrap();
        let cases: Vec<Case<'_>> = vec![
            (
                "same header, a fresh jti",
                &policy,
                forge(&k, &header(&k), &claims("again")),
                TOKEN,
                Ok(jkt.clone()),
                true,
            ),
            (
                "same header, another key's signature",
                &policy,
                forge(&other, &header(&k), &claims("x")),
                TOKEN,
                Err("dpop_bad_signature"),
                true,
            ),
            (
                "same header, a signature cut short",
                &policy,
                {
                    let (input, sig) = good.rsplit_once('.').unwrap();
                    let sig = b64::decode(sig.as_bytes()).unwrap();
                    format!("{input}.{}", b64::encode(&sig[..sig.len() - 1]))
                },
                TOKEN,
                Err("dpop_bad_signature"),
                true,
            ),
            (
                "same header, under a policy without its alg",
                &only_other,
                forge(&k, &header(&k), &claims("p")),
                TOKEN,
                Err("dpop_algorithm_not_allowed"),
                true,
            ),
            (
                "same header, wrong htm",
                &policy,
                with_claim("htm", json!("POST")),
                TOKEN,
                Err("dpop_htm_mismatch"),
                true,
            ),
            (
                "same header, stale iat",
                &policy,
                with_claim("iat", json!(NOW - 3600)),
                TOKEN,
                Err("dpop_stale"),
                true,
            ),
            (
                "same header, ath of another token",
                &policy,
                with_claim("ath", json!(access_token_hash("another.token.y"))),
                TOKEN,
                Err("dpop_ath_mismatch"),
                true,
            ),
            (
                "same proof, presented with another token",
                &policy,
                good.clone(),
                "another.token.y",
                Err("dpop_ath_mismatch"),
                true,
            ),
            (
                "same jwk, another alg",
                &policy,
                with_header(&|h| h["alg"] = json!(wrong_alg.as_str())),
                TOKEN,
                Err("dpop_bad_key"),
                false,
            ),
            (
                "same jwk, alg none",
                &policy,
                with_header(&|h| h["alg"] = json!("none")),
                TOKEN,
                Err("dpop_algorithm_not_allowed"),
                false,
            ),
            (
                "same jwk, alg HS256",
                &policy,
                with_header(&|h| h["alg"] = json!("HS256")),
                TOKEN,
                Err("dpop_algorithm_not_allowed"),
                false,
            ),
            (
                "same jwk, typ jwt",
                &policy,
                with_header(&|h| h["typ"] = json!("jwt")),
                TOKEN,
                Err("dpop_wrong_type"),
                false,
            ),
            (
                "same jwk, no typ",
                &policy,
                with_header(&|h| {
                    h.as_object_mut().unwrap().remove("typ");
                }),
                TOKEN,
                Err("dpop_wrong_type"),
                false,
            ),
            (
                "same jwk plus a private member",
                &policy,
                with_header(&|h| h["jwk"]["d"] = json!("AAAA")),
                TOKEN,
                Err("dpop_private_key"),
                false,
            ),
            (
                "same jwk, a member of another type",
                &policy,
                with_header(&|h| h["jwk"]["kty"] = json!(7)),
                TOKEN,
                Err("dpop_bad_key"),
                false,
            ),
            (
                "another key's jwk in the header",
                &policy,
                with_header(&|h| h["jwk"] = bare_jwk(&other)),
                TOKEN,
                Err("dpop_bad_signature"),
                false,
            ),
            (
                "same jwk, crit in the header",
                &policy,
                with_header(&|h| h["crit"] = json!(["x"])),
                TOKEN,
                Err("dpop_invalid"),
                false,
            ),
        ];
        for (case, p, proof, token, want, hit) in cases {
            let miss = check(p, None, &proof, token);
            assert_eq!(miss, want, "{alg}, {case}: parsed afresh");
            let (hits, _) = cache.hits_misses();
            let got = check(p, Some(&cache), &proof, token);
            assert_eq!(got, miss, "{alg}, {case}: through the cache");
            let answered = cache.hits_misses().0 > hits;
            assert_eq!(
                answered, hit,
                "{alg}, {case}: answered from the kept header"
            );
        }
        // Refused proofs kept nothing; passing ones kept their own header only.
        assert_eq!(cache.len(), 1, "{alg}");
    }
}

/// A cache that answers every look-up with one header, whatever the bytes.
struct Liar(Arc<ProofHeader>);

impl ProofKeys for Liar {
    fn get(&self, _: &[u8]) -> Option<Arc<ProofHeader>> {
        Some(self.0.clone())
    }
    fn keep(&self, _: Arc<ProofHeader>) {}
}

#[test]
fn a_header_kept_for_other_bytes_is_never_used() {
    let a = SigningKey::generate(Algorithm::ES256).unwrap();
    let b = SigningKey::generate(Algorithm::ES256).unwrap();
    let policy = DpopPolicy::default();
    let pa = forge(&a, &header(&a), &claims("a"));
    let liar = Liar(Arc::new(policy.parse_header(segment(&pa)).unwrap()));
    let run = |proof: &str| {
        policy
            .verify_with(
                &DpopRequest {
                    proofs: &[proof.as_bytes()],
                    method: "GET",
                    uri: URI,
                    access_token: Some(TOKEN),
                },
                NOW,
                &liar,
                None,
            )
            .map(|p| p.jkt)
            .map_err(|e| e.reason().as_str())
    };
    // B's own proof passes under B's key, not A's.
    let pb = forge(&b, &header(&b), &claims("b"));
    assert_eq!(run(&pb), Ok(b.public_jwk().unwrap().thumbprint().unwrap()));
    // B's header signed by A: checked under B's key, so refused.
    let forged = forge(&a, &header(&b), &claims("f")).replacen(
        std::str::from_utf8(segment(&forge(&a, &header(&a), &claims("f")))).unwrap(),
        std::str::from_utf8(segment(&pb)).unwrap(),
        1,
    );
    assert_eq!(run(&forged), Err("dpop_bad_signature"));
    // A header that fails parsing is refused, though the liar has a good one.
    let mut h = header(&a);
    h["typ"] = json!("jwt");
    assert_eq!(
        run(&assemble(&h, &claims("t"), &pa)),
        Err("dpop_wrong_type")
    );
}

#[test]
fn only_proofs_that_pass_are_kept() {
    let cache = ProofKeyCache::new(100, 1 << 20);
    let policy = DpopPolicy::default();
    let signer = SigningKey::generate(Algorithm::ES256).unwrap();
    for i in 0..20 {
        // A valid public key in the header, a signature by another key.
        let k = SigningKey::generate(Algorithm::ES256).unwrap();
        let p = forge(&signer, &header(&k), &claims(&format!("j{i}")));
        assert_eq!(
            check(&policy, Some(&cache), &p, TOKEN),
            Err("dpop_bad_signature")
        );
        // Its own signature, but for another request.
        let mut c = claims(&format!("k{i}"));
        c["htu"] = json!("https://api.example/elsewhere");
        let p = forge(&k, &header(&k), &c);
        assert_eq!(
            check(&policy, Some(&cache), &p, TOKEN),
            Err("dpop_htu_mismatch")
        );
    }
    assert!(cache.is_empty(), "no refused proof's key was kept");
}

#[test]
fn a_flood_of_distinct_keys_stays_within_the_bounds() {
    let policy = DpopPolicy::default();
    let max_bytes = 64 * 1024;
    let cache = ProofKeyCache::new(1000, max_bytes);
    let by_entries = ProofKeyCache::new(20, 1 << 30);
    let regular = SigningKey::generate(Algorithm::ES256).unwrap();
    let regular_proof = forge(&regular, &header(&regular), &claims("r"));
    let rsa: Vec<SigningKey> = (0..7)
        .map(|_| SigningKey::generate(Algorithm::RS256).unwrap())
        .collect();
    let mut most = (0, 0);
    for i in 0..400 {
        let k = if i % 60 == 0 {
            &rsa[i / 60]
        } else {
            &SigningKey::generate(if i % 2 == 0 {
                Algorithm::ES256
            } else {
                Algorithm::EdDSA
            })
            .unwrap()
        };
        let p = forge(k, &header(k), &claims(&format!("f{i}")));
        for c in [&cache, &by_entries] {
            assert!(check(&policy, Some(c), &p, TOKEN).is_ok());
        }
        if i % 4 == 0 {
            // A returning client, among the flood.
            assert!(check(&policy, Some(&cache), &regular_proof, TOKEN).is_ok());
        }
        assert!(
            cache.bytes() <= max_bytes,
            "{} bytes held after {i} keys; the bound is {max_bytes}",
            cache.bytes()
        );
        assert!(by_entries.len() <= 20, "{} entries", by_entries.len());
        most = (most.0.max(cache.len()), most.1.max(by_entries.len()));
    }
    // The bounds were reached (the flood evicted), not just never approached.
    assert!(most.0 >= 25, "at most {} keys held", most.0);
    assert!(
        cache.bytes() * 10 >= max_bytes * 6,
        "{} bytes",
        cache.bytes()
    );
    assert!(most.1 >= 15, "at most {} keys held", most.1);
    // The returning client's key survived the flood.
    assert!(cache.holds(segment(&regular_proof)));
    let (hits, misses) = cache.hits_misses();
    assert!(hits >= 95, "{hits} hits, {misses} misses");
}

#[tokio::test]
async fn the_engine_keeps_a_passing_proofs_key_and_no_refused_ones() {
    let e = super::dpop::engine(super::dpop::CONFIG);
    let shared = ProofKeyCache::shared();
    let c = super::dpop::client(json!({}));
    let auth = format!("DPoP {}", c.token);
    let url = "https://api.example/v1/orders/7";
    let refused = c.proof("POST", url);
    assert_eq!(
        super::dpop::code(super::dpop::decide(&e, "GET", "/v1/orders/7", &auth, &[&refused]).await),
        "dpop_htm_mismatch"
    );
    assert!(
        !shared.holds(segment(&refused)),
        "a refused proof's key is not kept"
    );
    // A proof that passes by itself but is signed by another key than the token's is
    // refused, and its key is not kept either (second review, L1: one token holder could
    // otherwise churn the cache with fresh keys).
    let thief = super::dpop::client(json!({}));
    let stolen = thief.proof_with("GET", url, jwtd_core::unix_now(), None, Some(&c.token));
    assert_eq!(
        super::dpop::code(super::dpop::decide(&e, "GET", "/v1/orders/7", &auth, &[&stolen]).await),
        "dpop_jkt_mismatch"
    );
    assert!(
        !shared.holds(segment(&stolen)),
        "a proof of another key than the token's is not kept"
    );
    let p = c.proof("GET", url);
    let (hits, _) = shared.hits_misses();
    assert_eq!(
        super::dpop::code(super::dpop::decide(&e, "GET", "/v1/orders/7", &auth, &[&p]).await),
        "ok"
    );
    assert!(shared.holds(segment(&p)), "the passing proof's key is kept");
    // The next proof of the client's key is answered from it, and passes the same way.
    let again = c.proof("GET", url);
    assert_eq!(
        super::dpop::code(super::dpop::decide(&e, "GET", "/v1/orders/7", &auth, &[&again]).await),
        "ok"
    );
    assert!(shared.hits_misses().0 > hits);
    // A kept key with another request's proof is still refused.
    let late = c.proof_with(
        "GET",
        url,
        jwtd_core::unix_now() - 3600,
        None,
        Some(&c.token),
    );
    assert_eq!(
        super::dpop::code(super::dpop::decide(&e, "GET", "/v1/orders/7", &auth, &[&late]).await),
        "dpop_stale"
    );
}
