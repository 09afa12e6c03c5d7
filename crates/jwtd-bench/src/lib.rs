//! Shared fixtures for jwtd's benchmarks: one key, token and verifier per algorithm for each of
//! the three contenders measured side by side:
//!
//! - `raw`: the aws-lc-rs primitive alone on a pre-parsed key (HMAC verify, or signature verify
//!   over the signing input with the signature already decoded): the physical limit;
//! - `jwtd`: `jwtd_core::Verifier::verify` on the whole token, every rule applied;
//! - `jsonwebtoken`: the `jsonwebtoken` crate's `decode` (aws-lc-rs backend) on the same token.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::ParsedPublicKey;
use jwtd_core::{Algorithm, Family, KeySet, SigningKey, Validation, Verifier};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// The verification time used by every contender.
pub const NOW: u64 = 1_800_000_000;
/// Issuer of the benchmark tokens.
pub const ISS: &str = "https://issuer.example.com/";
/// Audience of the benchmark tokens.
pub const AUD: &str = "https://api.example.com";

/// Algorithms benchmarked by default (the issue's bars, plus the rest jwtd supports).
pub const ALGS: [Algorithm; 10] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::HS512,
    Algorithm::RS512,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::ES256K,
];

/// The raw primitive for one algorithm (unboxed on purpose: no indirection in the baseline).
#[allow(clippy::large_enum_variant)]
pub enum Raw {
    /// HMAC key.
    Hmac(hmac::Key),
    /// Pre-parsed public key.
    Public(ParsedPublicKey),
}

/// Everything one algorithm's benchmark needs.
pub struct Fixture {
    /// The algorithm.
    pub alg: Algorithm,
    /// The token (a typical OIDC access token's claims).
    pub token: String,
    /// `header.payload` of the token.
    pub signing_input: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The raw primitive.
    pub raw: Raw,
    /// jwtd's verifier.
    pub jwtd: Verifier,
    /// jsonwebtoken's key and validation, when it supports the algorithm.
    pub jsonwebtoken: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
}

fn claims() -> Map<String, Value> {
    json!({
        "iss": ISS, "sub": "auth0|5f7c8ec7c33c6c004bbafe82", "aud": [AUD, "https://issuer.example.com/userinfo"],
        "iat": NOW - 60, "exp": NOW + 3600, "azp": "8g3ZP9x0LrZVJ6Wq6Yf2ZxYkQ1s",
        "scope": "openid profile email read:orders", "https://example.com/claims/roles": ["admin"]
    })
    .as_object()
    .expect("object")
    .clone()
}

/// A signing key per algorithm, cached on disk (RSA generation is slow, and very slow under
/// valgrind) in the system temp directory.
pub fn signing_key(alg: Algorithm) -> SigningKey {
    if alg.family() == Family::Hmac {
        return SigningKey::hmac(&vec![0x42; alg.hash_len()], alg, Some("bench".into()))
            .expect("hmac key");
    }
    let dir: PathBuf = std::env::temp_dir().join("jwtd-bench-keys");
    let path = dir.join(format!("{alg}.pem"));
    if let Ok(pem) = std::fs::read(&path) {
        if let Ok(k) = SigningKey::from_pem(&pem, Some(alg), Some("bench".into())) {
            return k;
        }
    }
    let k = SigningKey::generate(alg)
        .expect("keygen")
        .with_kid(Some("bench".into()));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&path, k.to_pkcs8_pem().expect("pem").as_bytes());
    k
}

fn jwt_alg(alg: Algorithm) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm as J;
    Some(match alg {
        Algorithm::HS256 => J::HS256,
        Algorithm::HS384 => J::HS384,
        Algorithm::HS512 => J::HS512,
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
        Algorithm::ES512 | Algorithm::ES256K => return None,
    })
}

impl Fixture {
    /// Builds the fixture for `alg`.
    pub fn new(alg: Algorithm) -> Fixture {
        let key = signing_key(alg);
        let token = jwtd_core::sign(&key, &claims(), None).expect("sign");
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        let signature = jwtd_core::b64::decode(sig.as_bytes()).expect("b64");
        let raw = match alg.family() {
            Family::Hmac => Raw::Hmac(hmac::Key::new(
                match alg {
                    Algorithm::HS256 => hmac::HMAC_SHA256,
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    _ => hmac::HMAC_SHA512,
                },
                &vec![0x42; alg.hash_len()],
            )),
            _ => {
                let spki = jwtd_core::public_key_pem(&key.verifying_key()).expect("pem");
                let der = pem_body(&spki);
                let v = verification(alg);
                Raw::Public(ParsedPublicKey::new(v, der).expect("raw key"))
            }
        };
        let jwtd = Verifier::new(
            KeySet::new().with(key.verifying_key()),
            Validation::new(&[alg]).issuer(ISS).audience(AUD),
        )
        .expect("verifier");
        let jsonwebtoken = jwt_alg(alg).map(|ja| {
            let dk = match alg.family() {
                Family::Hmac => jsonwebtoken::DecodingKey::from_secret(&vec![0x42; alg.hash_len()]),
                _ => {
                    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
                        serde_json::to_value(key.public_jwk().expect("public")).expect("json"),
                    )
                    .expect("jsonwebtoken reads the JWK");
                    jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("jsonwebtoken key")
                }
            };
            let mut v = jsonwebtoken::Validation::new(ja);
            v.set_issuer(&[ISS]);
            v.set_audience(&[AUD]);
            (dk, v)
        });
        let f = Fixture {
            alg,
            signing_input: input.as_bytes().to_vec(),
            signature,
            token,
            raw,
            jwtd,
            jsonwebtoken,
        };
        assert!(
            f.run_raw() && f.run_jwtd() && f.run_jsonwebtoken().unwrap_or(true),
            "{alg} fixture verifies"
        );
        f
    }

    /// One raw primitive verification.
    #[inline]
    pub fn run_raw(&self) -> bool {
        match &self.raw {
            Raw::Hmac(k) => hmac::verify(k, &self.signing_input, &self.signature).is_ok(),
            Raw::Public(k) => k.verify_sig(&self.signing_input, &self.signature).is_ok(),
        }
    }

    /// One full jwtd verification.
    #[inline]
    pub fn run_jwtd(&self) -> bool {
        self.jwtd.verify(&self.token, NOW).is_ok()
    }

    /// One verification through `cache` (a hit once the token is in it).
    #[inline]
    pub fn run_jwtd_cached(&self, cache: &jwtd_core::TokenCache) -> bool {
        cache
            .verify(
                [1, 0],
                self.jwtd.keys(),
                self.jwtd.validation(),
                &self.token,
                NOW,
            )
            .is_ok()
    }

    /// One verification of `token` through `cache`, which has not seen it: a miss, the full
    /// verification, and the insert (plus an eviction once the cache is full).
    #[inline]
    pub fn run_jwtd_cache_miss(&self, cache: &jwtd_core::TokenCache, token: &str) -> bool {
        cache
            .verify([1, 0], self.jwtd.keys(), self.jwtd.validation(), token, NOW)
            .is_ok()
    }

    /// `n` distinct tokens like the fixture's (the same claims and length, each its own
    /// `sub`), signed with its key; cached on disk beside the key (signing is very slow under
    /// valgrind), and made again when the cached ones do not verify with the key.
    pub fn distinct_tokens(&self, n: usize) -> Vec<String> {
        let path = std::env::temp_dir()
            .join("jwtd-bench-keys")
            .join(format!("{}-distinct.txt", self.alg));
        let verifies =
            |t: &str| jwtd_core::verify(self.jwtd.keys(), self.jwtd.validation(), t, NOW).is_ok();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let t: Vec<String> = text.lines().take(n).map(str::to_owned).collect();
            if t.len() == n && verifies(&t[0]) && verifies(&t[n - 1]) {
                return t;
            }
        }
        let key = signing_key(self.alg);
        let mut c = claims();
        let tokens: Vec<String> = (0..n)
            .map(|i| {
                c["sub"] = format!("auth0|5f7c8ec7c33c6c00{i:08x}").into();
                jwtd_core::sign(&key, &c, None).expect("sign")
            })
            .collect();
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, tokens.join("\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        tokens
    }

    /// One full jwtd verification followed by the revocation check against `list`.
    #[inline]
    pub fn run_jwtd_revocations(&self, list: &jwtd_core::RevocationList) -> bool {
        match self.jwtd.verify(&self.token, NOW) {
            Ok(v) => list.check(&v).is_ok(),
            Err(_) => false,
        }
    }

    /// One jsonwebtoken verification, `None` when it lacks the algorithm.
    #[inline]
    pub fn run_jsonwebtoken(&self) -> Option<bool> {
        self.jsonwebtoken
            .as_ref()
            .map(|(k, v)| jsonwebtoken::decode::<Map<String, Value>>(&self.token, k, v).is_ok())
    }
}

/// The aws-lc-rs verification algorithm of an asymmetric `alg` (panics for HMAC).
pub fn verification(alg: Algorithm) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
    match alg {
        Algorithm::RS256 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::ES512 => &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED,
        Algorithm::ES256K => &aws_lc_rs::signature::ECDSA_P256K1_SHA256_FIXED,
        Algorithm::EdDSA => &aws_lc_rs::signature::ED25519,
        _ => unreachable!(),
    }
}

/// A DPoP proof for the fixture's token, made by the fixture's key (what a client sends with
/// it), and what checking it costs at least: its signature on a pre-parsed key, and on a key
/// parsed for each check (a proof brings its own key).
pub struct DpopFixture {
    /// The proof.
    pub proof: String,
    /// The default policy.
    pub policy: jwtd_core::DpopPolicy,
    /// `header.payload` of the proof.
    pub signing_input: Vec<u8>,
    /// The proof's decoded signature.
    pub signature: Vec<u8>,
    /// The proof key as SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// A proof-key cache holding the proof's key (warmed when made).
    pub keys: jwtd_gate::dpop::ProofKeyCache,
    /// The fixture's token, verified, its SHA-256 kept with it (as a token from the
    /// verified-token cache has it after its first DPoP request).
    pub verified: jwtd_core::Verified,
}

/// The request URI of the DPoP fixture (with a query, as requests have).
pub const DPOP_URI: &str = "https://api.example.com/v1/orders/7?expand=items";

impl Fixture {
    /// The DPoP proof fixture (asymmetric algorithms only).
    pub fn dpop(&self) -> DpopFixture {
        let key = signing_key(self.alg);
        let proof = jwtd_core::make_proof(
            &key,
            &jwtd_core::ProofClaims {
                method: "GET",
                url: DPOP_URI,
                access_token: Some(&self.token),
                iat: NOW,
                ..Default::default()
            },
        )
        .expect("proof");
        let (input, sig) = proof.rsplit_once('.').expect("three parts");
        let spki = pem_body(&jwtd_core::public_key_pem(&key.verifying_key()).expect("pem"));
        let verified = self.jwtd.verify(&self.token, NOW).expect("token verifies");
        let _ = verified.token_sha256(&self.token);
        let d = DpopFixture {
            signing_input: input.as_bytes().to_vec(),
            signature: jwtd_core::b64::decode(sig.as_bytes()).expect("b64"),
            proof,
            policy: jwtd_core::DpopPolicy::default(),
            spki,
            keys: jwtd_gate::dpop::ProofKeyCache::new(16, 1 << 20),
            verified,
        };
        assert!(
            self.run_dpop(&d)
                && self.run_dpop_raw(&d)
                && self.run_dpop_raw_parsing(&d)
                && self.run_dpop_cached(&d)
                && self.run_dpop_cached_key(&d),
            "{} DPoP fixture verifies",
            self.alg
        );
        assert_eq!(d.keys.len(), 1, "the proof's key is kept");
        d
    }

    fn dpop_request<'a>(&'a self, proofs: &'a [&'a [u8]]) -> jwtd_core::DpopRequest<'a> {
        jwtd_core::DpopRequest {
            proofs,
            method: "GET",
            uri: DPOP_URI,
            access_token: Some(&self.token),
        }
    }

    /// One DPoP proof check as jwtd-gate makes it for a returning client: the proof's key
    /// from the proof-key cache, the token's SHA-256 kept with its verification.
    #[inline]
    pub fn run_dpop_cached(&self, d: &DpopFixture) -> bool {
        d.keys
            .verify(
                &d.policy,
                &self.dpop_request(&[d.proof.as_bytes()]),
                Some(&d.verified.token_sha256(&self.token)),
                NOW,
            )
            .is_ok()
    }

    /// [`Fixture::run_dpop_cached`] with the token hashed for the check (a token verified
    /// afresh: its first DPoP request, or the verified-token cache off).
    #[inline]
    pub fn run_dpop_cached_key(&self, d: &DpopFixture) -> bool {
        d.keys
            .verify(
                &d.policy,
                &self.dpop_request(&[d.proof.as_bytes()]),
                None,
                NOW,
            )
            .is_ok()
    }

    /// One DPoP proof check (`DpopPolicy::verify`) for the fixture's token.
    #[inline]
    pub fn run_dpop(&self, d: &DpopFixture) -> bool {
        d.policy
            .verify(
                &jwtd_core::DpopRequest {
                    proofs: &[d.proof.as_bytes()],
                    method: "GET",
                    uri: DPOP_URI,
                    access_token: Some(&self.token),
                },
                NOW,
            )
            .is_ok()
    }

    /// The proof's signature alone, on the pre-parsed key.
    #[inline]
    pub fn run_dpop_raw(&self, d: &DpopFixture) -> bool {
        match &self.raw {
            Raw::Public(k) => k.verify_sig(&d.signing_input, &d.signature).is_ok(),
            Raw::Hmac(_) => false,
        }
    }

    /// The proof's signature alone, the key parsed from its DER first (as a proof's key is).
    #[inline]
    pub fn run_dpop_raw_parsing(&self, d: &DpopFixture) -> bool {
        match ParsedPublicKey::new(verification(self.alg), &d.spki) {
            Ok(k) => k.verify_sig(&d.signing_input, &d.signature).is_ok(),
            Err(_) => false,
        }
    }
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

/// A revocation list of `n` entries shaped like a busy deployment's (90% by `jti`, 9% by
/// subject, 1% by key), none of which covers the fixtures' tokens.
pub fn revocation_list(n: usize) -> jwtd_core::RevocationList {
    use jwtd_core::Revocation;
    let mut list = jwtd_core::RevocationList::new();
    for i in 0..n {
        let r = match i % 100 {
            0 => Revocation::key(&format!("revoked-key-{i}"), Some(ISS), None),
            1..=9 => Revocation::subject(
                &format!("auth0|revoked{i:020}"),
                Some(ISS),
                NOW as i64,
                None,
            ),
            _ => Revocation::jti(&format!("{i:032x}"), Some(ISS), None),
        };
        list.insert(&r);
    }
    list
}

/// Members in the header of the `junk` case's many-member tokens: the outside review's 1,050.
pub const JUNK_MEMBERS: usize = 1_050;

/// `header.payload.signature` with the given header JSON, claims JSON and a signature of
/// `sig_len` zero bytes: well-formed, never valid.
fn junk_token(header: &str, claims: &str, sig_len: usize) -> String {
    let mut t = jwtd_core::b64::encode(header.as_bytes());
    t.push('.');
    t.push_str(&jwtd_core::b64::encode(claims.as_bytes()));
    t.push('.');
    t.push_str(&jwtd_core::b64::encode(vec![0u8; sig_len]));
    t
}

/// `n` members `"m0":0, "m1":0, ...`, their names spelled with an escape when `escaped`.
fn members(n: usize, escaped: bool) -> String {
    (0..n)
        .map(|i| {
            if escaped {
                format!("\"\\u006d{i}\":0")
            } else {
                format!("\"m{i}\":0")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Fixture {
    /// Unauthenticated junk of about `len` bytes, each shaped to make one part of the work
    /// before the signature check as costly as it can: the `junk` case's contenders, by name.
    /// Each is refused.
    pub fn junk_tokens(&self, len: usize) -> Vec<(&'static str, String)> {
        let alg = self.alg.as_str();
        let sig = self.signature.len();
        let claims = r#"{"iss":"x"}"#;
        // Room for the header's JSON in `len` bytes of token.
        let room = (len.saturating_sub(sig * 4 / 3 + 20)) * 3 / 4;
        let fill = |f: &dyn Fn(usize) -> String| {
            let mut n = 1;
            while f(n * 2).len() < room {
                n *= 2;
            }
            let (mut lo, mut hi) = (n, n * 2);
            while lo + 1 < hi {
                let mid = (lo + hi) / 2;
                if f(mid).len() <= room {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            junk_token(&f(lo), claims, sig)
        };
        let top = |n: usize| {
            format!(
                "{{\"alg\":\"{alg}\",\"kid\":\"bench\",{}}}",
                members(n, false)
            )
        };
        let escaped = |n: usize| {
            format!(
                "{{\"alg\":\"{alg}\",\"kid\":\"bench\",{}}}",
                members(n, true)
            )
        };
        let nested = |n: usize| {
            format!(
                "{{\"alg\":\"{alg}\",\"kid\":\"bench\",\"x\":{{{}}}}}",
                members(n, false)
            )
        };
        let objects = |n: usize| {
            let list = (0..n)
                .map(|_| r#"{"a":0,"b":0}"#)
                .collect::<Vec<_>>()
                .join(",");
            format!("{{\"alg\":\"{alg}\",\"kid\":\"bench\",\"x\":[{list}]}}")
        };
        let deep = |n: usize| {
            let one = format!("{}0{}", "[".repeat(14), "]".repeat(14));
            let list = (0..n).map(|_| one.as_str()).collect::<Vec<_>>().join(",");
            format!("{{\"alg\":\"{alg}\",\"kid\":\"bench\",\"x\":[{list}]}}")
        };
        let long_kid = |n: usize| format!("{{\"alg\":\"{alg}\",\"kid\":\"{}\"}}", "k".repeat(n));
        let escaped_kid =
            |n: usize| format!("{{\"alg\":\"{alg}\",\"kid\":\"{}\"}}", "\\u006b".repeat(n));
        let out = vec![
            ("header-members", fill(&top)),
            ("header-escaped-names", fill(&escaped)),
            ("header-nested-members", fill(&nested)),
            ("header-small-objects", fill(&objects)),
            ("header-deep-arrays", fill(&deep)),
            ("header-long-kid", fill(&long_kid)),
            ("header-escaped-kid", fill(&escaped_kid)),
            // A header that passes, a valid-looking claims set of the same size, a bad
            // signature: the signature check itself, on `len` bytes.
            ("bad-signature", {
                let t = self.padded_token(len);
                let (rest, _) = t.rsplit_once('.').expect("three parts");
                format!("{rest}.{}", jwtd_core::b64::encode(vec![0u8; sig]))
            }),
        ];
        for (name, t) in &out {
            assert!(self.jwtd.verify(t, NOW).is_err(), "{name} is refused");
        }
        out
    }

    /// A valid token of the fixture's key and claims, padded to about `len` bytes by one string
    /// claim: the `junk` case's yardstick.
    pub fn padded_token(&self, len: usize) -> String {
        let key = signing_key(self.alg);
        let mut c = claims();
        let base = jwtd_core::sign(&key, &c, None).expect("sign").len();
        let pad = (len.saturating_sub(base + 12)) * 3 / 4;
        c.insert("pad".into(), "p".repeat(pad).into());
        let t = jwtd_core::sign(&key, &c, None).expect("sign");
        assert!(
            self.jwtd.verify(&t, NOW).is_ok(),
            "the padded token verifies"
        );
        t
    }

    /// A valid token of about `len` bytes whose claims hold [`JUNK_MEMBERS`] extra members:
    /// what the claims' parse costs, after the signature check.
    pub fn many_claims_token(&self) -> String {
        let key = signing_key(self.alg);
        let mut c = claims();
        for i in 0..JUNK_MEMBERS {
            c.insert(format!("m{i}"), 0.into());
        }
        let t = jwtd_core::sign(&key, &c, None).expect("sign");
        assert!(
            self.jwtd.verify(&t, NOW).is_ok(),
            "the many-claims token verifies"
        );
        t
    }

    /// The size of the review's junk token: a header of [`JUNK_MEMBERS`] members.
    pub fn junk_len(&self) -> usize {
        let h = format!(
            "{{\"alg\":\"{}\",\"kid\":\"bench\",{}}}",
            self.alg,
            members(JUNK_MEMBERS, false)
        );
        junk_token(&h, r#"{"iss":"x"}"#, self.signature.len()).len()
    }
}
