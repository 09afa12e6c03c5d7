//! The negative suite: every strictness rule, one named case each, asserting the exact reason.
//! Positive controls sit beside the rules they bound, so a case cannot pass by rejecting
//! everything.

use jwtd_core::b64;
use jwtd_core::{
    Algorithm, AudienceMode, ClaimCheck, Jwk, KeySet, Reason, SigningKey, Validation, Verifier,
    VerifyingKey,
};
use serde_json::json;
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";

struct Fixture {
    hs: SigningKey,
    rs: SigningKey,
    es: SigningKey,
    ed: SigningKey,
    attacker_es: SigningKey,
    rs_public_pem: String,
}

fn f() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rs = SigningKey::generate(Algorithm::RS256)
            .unwrap()
            .with_kid(Some("rs".into()));
        let rs_public_pem = jwtd_core::public_key_pem(&rs.verifying_key()).unwrap();
        Fixture {
            hs: SigningKey::hmac(&[7u8; 32], Algorithm::HS256, Some("hs".into())).unwrap(),
            rs,
            es: SigningKey::generate(Algorithm::ES256)
                .unwrap()
                .with_kid(Some("es".into())),
            ed: SigningKey::generate(Algorithm::EdDSA)
                .unwrap()
                .with_kid(Some("ed".into())),
            attacker_es: SigningKey::generate(Algorithm::ES256)
                .unwrap()
                .with_kid(Some("es".into())),
            rs_public_pem,
        }
    })
}

fn keys() -> KeySet {
    let f = f();
    KeySet::new()
        .with(f.hs.verifying_key())
        .with(f.rs.verifying_key())
        .with(f.es.verifying_key())
        .with(f.ed.verifying_key())
}

fn policy() -> Validation {
    Validation::new(&[
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ])
    .issuer(ISS)
    .audience("api")
}

fn claims() -> serde_json::Value {
    json!({"iss": ISS, "aud": "api", "sub": "user-1", "iat": NOW - 10, "exp": NOW + 600})
}

fn claims_with(extra: serde_json::Value) -> String {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c.to_string()
}

fn header(key: &SigningKey) -> String {
    json!({"alg": key.algorithm().as_str(), "kid": key.kid(), "typ": "JWT"}).to_string()
}

/// Signs raw header and payload text with `key` (whatever the header says).
fn raw(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = key.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(sig))
}

fn good(key: &SigningKey) -> String {
    raw(key, &header(key), &claims().to_string())
}

fn with_claims(key: &SigningKey, extra: serde_json::Value) -> String {
    raw(key, &header(key), &claims_with(extra))
}

fn with_header(key: &SigningKey, h: serde_json::Value) -> String {
    raw(key, &h.to_string(), &claims().to_string())
}

/// Replaces the signature part.
fn resign(token: &str, sig: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64::encode(sig))
}

fn sig_of(token: &str) -> Vec<u8> {
    b64::decode(token.rsplit_once('.').unwrap().1.as_bytes()).unwrap()
}

fn run(token: &str, v: Validation) -> Result<(), Reason> {
    let plain = Verifier::new(keys(), v.clone())
        .unwrap()
        .verify(token, NOW)
        .map(|_| ())
        .map_err(|e| {
            assert!(!e.message().is_empty());
            e.reason()
        });
    // The verified-token cache answers every case exactly as a plain verification, on the
    // first lookup (a miss) and on the second (a hit when the first succeeded).
    let cache = jwtd_core::TokenCache::new(Default::default()).unwrap();
    let set = keys();
    for _ in 0..2 {
        let cached = cache
            .verify([0, 0], &set, &v, token, NOW)
            .map(|_| ())
            .map_err(|e| e.reason());
        assert_eq!(cached, plain, "cache disagrees with plain verification");
    }
    plain
}

macro_rules! case {
    ($name:ident, $expect:expr, |$f:ident| $token:expr) => {
        case!($name, $expect, |$f| $token, |v| v);
    };
    ($name:ident, $expect:expr, |$f:ident| $token:expr, |$v:ident| $policy:expr) => {
        #[test]
        fn $name() {
            let $f = f();
            let token: String = $token;
            let $v = policy();
            let got = run(&token, $policy);
            let want: Result<(), Reason> = $expect;
            assert_eq!(got, want, "case {}", stringify!($name));
        }
    };
}

use Reason::*;
const OK: Result<(), Reason> = Ok(());
fn no(r: Reason) -> Result<(), Reason> {
    Err(r)
}

// ---- positive controls -----------------------------------------------------------------
case!(ok_hs256, OK, |f| good(&f.hs));
case!(ok_rs256, OK, |f| good(&f.rs));
case!(ok_es256, OK, |f| good(&f.es));
case!(ok_eddsa, OK, |f| good(&f.ed));
case!(ok_no_kid_tries_fitting_keys, OK, |f| raw(
    &f.es,
    r#"{"alg":"ES256"}"#,
    &claims().to_string()
));

// ---- structure ---------------------------------------------------------------------------
case!(empty_token, no(Malformed), |_f| String::new());
case!(one_part, no(Malformed), |_f| "abc".into());
case!(two_parts, no(Malformed), |f| {
    let t = good(&f.hs);
    t[..t.rfind('.').unwrap()].to_string()
});
case!(four_parts, no(Malformed), |f| good(&f.hs) + ".AA");
case!(five_parts_jwe, no(Malformed), |_f| {
    "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.AA.AA.AA.AA".into()
});
case!(header_not_base64url, no(Malformed), |f| format!(
    "!{}",
    good(&f.hs)
));
case!(header_padded, no(Malformed), |f| {
    // {"alg":"HS256"} is 15 bytes: padding would be one '='; force padded form.
    let t = raw(
        &f.hs,
        r#"{"alg":"HS256","kid":"hs"} "#,
        &claims().to_string(),
    );
    let (h, rest) = t.split_once('.').unwrap();
    format!("{h}=.{rest}")
});
case!(header_standard_alphabet, no(Malformed), |f| {
    let t = good(&f.hs);
    t.replacen('e', "+", 1)
});
case!(whitespace_inside, no(Malformed), |f| {
    let t = good(&f.hs);
    let (h, rest) = t.split_once('.').unwrap();
    format!("{h} .{rest}")
});
case!(signature_trailing_bits, no(Malformed), |f| {
    // 64-byte ES256 signatures end in a character with 4 unused bits: set one.
    let t = good(&f.es);
    let last = t.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let bumped = alphabet.as_bytes()[idx ^ 1] as char;
    format!("{}{bumped}", &t[..t.len() - 1])
});
case!(header_not_json, no(Malformed), |f| raw(
    &f.hs,
    "alg=HS256",
    &claims().to_string()
));
case!(header_json_array, no(Malformed), |f| raw(
    &f.hs,
    r#"["HS256"]"#,
    &claims().to_string()
));
case!(header_duplicate_alg, no(Malformed), |f| raw(
    &f.hs,
    r#"{"alg":"none","alg":"HS256","kid":"hs"}"#,
    &claims().to_string()
));
case!(header_duplicate_kid, no(Malformed), |f| raw(
    &f.hs,
    r#"{"alg":"HS256","kid":"x","kid":"hs"}"#,
    &claims().to_string()
));
case!(header_missing_alg, no(Malformed), |f| raw(
    &f.hs,
    r#"{"kid":"hs"}"#,
    &claims().to_string()
));
case!(header_alg_not_string, no(Malformed), |f| raw(
    &f.hs,
    r#"{"alg":256,"kid":"hs"}"#,
    &claims().to_string()
));
case!(header_trailing_garbage, no(Malformed), |f| raw(
    &f.hs,
    r#"{"alg":"HS256","kid":"hs"}x"#,
    &claims().to_string()
));
case!(header_nested_too_deep, no(Malformed), |f| raw(
    &f.hs,
    &format!(
        r#"{{"alg":"HS256","kid":"hs","x":{}1{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    ),
    &claims().to_string()
));
case!(header_enc_member, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","enc":"A256GCM"})
));
case!(crit_unknown, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","crit":["exp"],"exp":1})
));
case!(crit_empty, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","crit":[]})
));
case!(crit_not_array, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","crit":"b64"})
));
case!(b64_false, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","b64":false,"crit":["b64"]})
));
case!(b64_false_without_crit, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","b64":false})
));
case!(b64_not_bool, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","b64":"false"})
));
case!(kid_not_string, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":7})
));
case!(typ_not_string, no(Malformed), |f| with_header(
    &f.hs,
    json!({"alg":"HS256","kid":"hs","typ":["JWT"]})
));
case!(payload_not_json, no(Malformed), |f| raw(
    &f.hs,
    &header(&f.hs),
    "hello"
));
case!(payload_json_array, no(Malformed), |f| raw(
    &f.hs,
    &header(&f.hs),
    "[1,2]"
));
case!(payload_not_utf8, no(Malformed), |f| {
    let h = b64::encode(header(&f.hs));
    let p = b64::encode(b"{\"sub\":\"\xff\"}");
    let input = format!("{h}.{p}");
    let sig = f.hs.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(sig))
});
case!(payload_duplicate_claim, no(Malformed), |f| raw(
    &f.hs,
    &header(&f.hs),
    &format!(
        r#"{{"iss":"{ISS}","aud":"api","exp":{},"sub":"a","sub":"admin"}}"#,
        NOW + 60
    )
));
case!(payload_duplicate_nested, no(Malformed), |f| raw(
    &f.hs,
    &header(&f.hs),
    &format!(
        r#"{{"iss":"{ISS}","aud":"api","exp":{},"r":{{"admin":false,"admin":true}}}}"#,
        NOW + 60
    )
));
case!(payload_nested_too_deep, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"x": serde_json::from_str::<serde_json::Value>(&format!("{}1{}", "[".repeat(30), "]".repeat(30))).unwrap()})
));
case!(
    payload_depth_limit_configurable,
    no(Malformed),
    |f| with_claims(&f.hs, json!({"x": {"y": {"z": 1}}})),
    |v| v.max_json_depth(2)
);
case!(exp_string, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"exp": "1900000000"})
));
case!(exp_negative, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"exp": -1})
));
case!(exp_beyond_year_9999, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"exp": 1e20})
));
case!(exp_overflowing_number, no(Malformed), |f| raw(
    &f.hs,
    &header(&f.hs),
    &format!(r#"{{"iss":"{ISS}","aud":"api","exp":1e400}}"#)
));
case!(nbf_bool, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"nbf": true})
));
case!(iat_string, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"iat": "now"})
));
case!(auth_time_string, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"auth_time": "yesterday"})
));
case!(aud_number, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"aud": 42})
));
case!(aud_array_with_number, no(Malformed), |f| with_claims(
    &f.hs,
    json!({"aud": ["api", 42]})
));

// ---- algorithms ----------------------------------------------------------------------------
fn unsigned(alg: &str) -> String {
    format!(
        "{}.{}.",
        b64::encode(format!(r#"{{"alg":"{alg}"}}"#)),
        b64::encode(claims().to_string())
    )
}
case!(alg_none, no(UnsupportedAlgorithm), |_f| unsigned("none"));
case!(alg_none_upper, no(UnsupportedAlgorithm), |_f| unsigned(
    "NONE"
));
case!(
    alg_none_mixed_case,
    no(UnsupportedAlgorithm),
    |_f| unsigned("nOnE")
);
case!(alg_none_with_signature, no(UnsupportedAlgorithm), |f| {
    let t = good(&f.hs);
    let sig = t.rsplit_once('.').unwrap().1.to_owned();
    format!("{}{sig}", unsigned("none"))
});
case!(alg_unknown, no(UnsupportedAlgorithm), |_f| unsigned("HS1"));
case!(alg_lowercase, no(UnsupportedAlgorithm), |_f| unsigned(
    "hs256"
));
case!(
    alg_not_allowed_by_policy,
    no(AlgorithmNotAllowed),
    |f| good(&f.rs),
    |v| {
        let _ = v;
        Validation::new(&[Algorithm::ES256])
            .issuer(ISS)
            .audience("api")
    }
);
case!(
    hs256_with_rsa_public_key_as_secret,
    no(AlgorithmNotAllowed),
    |f| {
        // The classic confusion: sign HS256 with the RSA public key's PEM bytes, name the RSA kid.
        let forged = SigningKey::hmac(f.rs_public_pem.as_bytes(), Algorithm::HS256, None).unwrap();
        raw(
            &forged,
            r#"{"alg":"HS256","kid":"rs"}"#,
            &claims().to_string(),
        )
    }
);
case!(
    hs256_confusion_without_kid,
    no(BadSignature),
    |f| {
        let forged = SigningKey::hmac(f.rs_public_pem.as_bytes(), Algorithm::HS256, None).unwrap();
        raw(&forged, r#"{"alg":"HS256"}"#, &claims().to_string())
    },
    |v| {
        let _ = v;
        Validation::new(&[Algorithm::RS256, Algorithm::HS256])
            .issuer(ISS)
            .audience("api")
    }
);
case!(kid_pinned_to_other_ec_alg, no(AlgorithmNotAllowed), |f| {
    with_header(&f.es, json!({"alg":"ES384","kid":"es"}))
});
case!(rsa_key_used_with_pss, no(AlgorithmNotAllowed), |f| {
    with_header(&f.rs, json!({"alg":"PS256","kid":"rs"}))
});
case!(ec_kid_used_for_eddsa, no(AlgorithmNotAllowed), |f| {
    with_header(&f.ed, json!({"alg":"EdDSA","kid":"es"}))
});

// ---- key selection ---------------------------------------------------------------------------
case!(unknown_kid, no(UnknownKey), |f| with_header(
    &f.es,
    json!({"alg":"ES256","kid":"nope"})
));
case!(no_key_for_alg, no(UnknownKey), |_f| {
    let k = SigningKey::generate(Algorithm::ES384).unwrap();
    raw(&k, r#"{"alg":"ES384"}"#, &claims().to_string())
});
case!(embedded_jwk_not_trusted, no(BadSignature), |f| {
    let jwk = serde_json::to_value(f.attacker_es.public_jwk().unwrap()).unwrap();
    with_header(&f.attacker_es, json!({"alg":"ES256","jwk":jwk}))
});
case!(embedded_jwk_with_unknown_kid, no(UnknownKey), |f| {
    let jwk = serde_json::to_value(f.attacker_es.public_jwk().unwrap()).unwrap();
    with_header(
        &f.attacker_es,
        json!({"alg":"ES256","kid":"attacker","jwk":jwk}),
    )
});
case!(jku_not_trusted, no(BadSignature), |f| with_header(
    &f.attacker_es,
    json!({"alg":"ES256","kid":"es","jku":"https://attacker.example/jwks.json"})
));
case!(x5u_not_trusted, no(BadSignature), |f| with_header(
    &f.attacker_es,
    json!({"alg":"ES256","kid":"es","x5u":"https://attacker.example/cert.pem"})
));
case!(x5c_not_trusted, no(BadSignature), |f| with_header(
    &f.attacker_es,
    json!({"alg":"ES256","kid":"es","x5c":["MIIB"]})
));

#[test]
fn hs256_confusion_against_rsa_only_key_set() {
    let f = f();
    let forged = SigningKey::hmac(f.rs_public_pem.as_bytes(), Algorithm::HS256, None).unwrap();
    let token = raw(&forged, r#"{"alg":"HS256"}"#, &claims().to_string());
    let v = Validation::new(&[Algorithm::RS256, Algorithm::HS256])
        .issuer(ISS)
        .audience("api");
    let set = KeySet::new().with(f.rs.verifying_key());
    let err = Verifier::new(set, v)
        .unwrap()
        .verify(&token, NOW)
        .unwrap_err();
    assert_eq!(err.reason(), UnknownKey);
}

#[test]
fn too_many_kidless_candidates() {
    let mut set = KeySet::new();
    let mut first = None;
    for _ in 0..=jwtd_core::MAX_CANDIDATES {
        let k = SigningKey::generate(Algorithm::ES256).unwrap();
        set.push(k.verifying_key());
        first.get_or_insert(k);
    }
    let token = raw(
        first.as_ref().unwrap(),
        r#"{"alg":"ES256"}"#,
        &claims().to_string(),
    );
    let err = Verifier::new(set, policy())
        .unwrap()
        .verify(&token, NOW)
        .unwrap_err();
    assert_eq!(err.reason(), UnknownKey);
}

/// Finding 12: one candidate cap for every branch: many keys sharing the token's `kid`, and many
/// keys without a kid when the token names an unknown `kid`, are refused before any signature
/// check (2,000 such keys cost ~280 ms per junk token before).
#[test]
fn one_candidate_cap_bounds_every_key_selection_branch() {
    let k = SigningKey::generate(Algorithm::ES256).unwrap();
    let n = jwtd_core::MAX_CANDIDATES + 1;
    let same_kid: KeySet = (0..n).fold(KeySet::new(), |s, _| {
        s.with(k.verifying_key().with_kid(Some("dup".into())))
    });
    let anonymous: KeySet = (0..n).fold(KeySet::new(), |s, _| {
        s.with(k.verifying_key().with_kid(None))
    });
    let named = raw(&k, r#"{"alg":"ES256","kid":"dup"}"#, &claims().to_string());
    let unknown = raw(&k, r#"{"alg":"ES256","kid":"nope"}"#, &claims().to_string());
    for (set, token) in [(same_kid, &named), (anonymous, &unknown)] {
        let err = Verifier::new(set, policy())
            .unwrap()
            .verify(token, NOW)
            .unwrap_err();
        assert_eq!(err.reason(), UnknownKey, "{}", err.message());
        assert!(
            err.message().contains("refusing to try more than"),
            "{}",
            err.message()
        );
    }
    // At the cap, the keys are tried (the token is valid for each).
    let at_cap: KeySet = (0..jwtd_core::MAX_CANDIDATES).fold(KeySet::new(), |s, _| {
        s.with(k.verifying_key().with_kid(Some("dup".into())))
    });
    Verifier::new(at_cap, policy())
        .unwrap()
        .verify(&named, NOW)
        .unwrap();
}

// ---- signatures ------------------------------------------------------------------------------
fn flip_sig(token: &str) -> String {
    let mut sig = sig_of(token);
    sig[0] ^= 1;
    resign(token, &sig)
}
case!(hs256_tampered, no(BadSignature), |f| flip_sig(&good(&f.hs)));
case!(rs256_tampered, no(BadSignature), |f| flip_sig(&good(&f.rs)));
case!(es256_tampered, no(BadSignature), |f| flip_sig(&good(&f.es)));
case!(eddsa_tampered, no(BadSignature), |f| flip_sig(&good(&f.ed)));
case!(es256_der_signature, no(BadSignature), |f| {
    let t = good(&f.es);
    let sig = sig_of(&t);
    // Re-encode r||s as ASN.1 DER: SEQUENCE { INTEGER r, INTEGER s }.
    let int = |v: &[u8]| {
        let mut v = v.to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![2, v.len() as u8];
        out.extend(v);
        out
    };
    let mut body = int(&sig[..32]);
    body.extend(int(&sig[32..]));
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    resign(&t, &der)
});
case!(es256_psychic_zero_signature, no(BadSignature), |f| resign(
    &good(&f.es),
    &[0u8; 64]
));
case!(es256_r_s_equal_group_order, no(BadSignature), |f| {
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let mut sig = n.clone();
    sig.extend(n);
    resign(&good(&f.es), &sig)
});
case!(es256_s_zero, no(BadSignature), |f| {
    let t = good(&f.es);
    let mut sig = sig_of(&t);
    sig[32..].fill(0);
    resign(&t, &sig)
});
case!(es256_truncated_signature, no(BadSignature), |f| {
    let t = good(&f.es);
    let sig = sig_of(&t);
    resign(&t, &sig[..63])
});
case!(es256_extended_signature, no(BadSignature), |f| {
    let t = good(&f.es);
    let mut sig = sig_of(&t);
    sig.push(0);
    resign(&t, &sig)
});
case!(empty_signature, no(BadSignature), |f| resign(
    &good(&f.es),
    &[]
));
case!(rs256_short_signature, no(BadSignature), |f| {
    let t = good(&f.rs);
    let sig = sig_of(&t);
    resign(&t, &sig[1..])
});
case!(signed_by_other_key_same_kid, no(BadSignature), |f| good(
    &f.attacker_es
));
case!(payload_swapped, no(BadSignature), |f| {
    let a = good(&f.hs);
    let b = with_claims(&f.hs, json!({"sub": "admin"}));
    let (ah, rest) = a.split_once('.').unwrap();
    let (_, asig) = rest.split_once('.').unwrap();
    let bp = b.split('.').nth(1).unwrap();
    format!("{ah}.{bp}.{asig}")
});
case!(header_swapped, no(BadSignature), |f| {
    let a = good(&f.hs);
    let other = b64::encode(r#"{"alg":"HS256","kid":"hs","typ":"at+jwt"}"#);
    let (_, rest) = a.split_once('.').unwrap();
    format!("{other}.{rest}")
});
case!(hs256_other_secret, no(BadSignature), |f| {
    let other = SigningKey::hmac(&[8u8; 32], Algorithm::HS256, Some("hs".into())).unwrap();
    let _ = f;
    good(&other)
});
case!(eddsa_s_plus_group_order, no(BadSignature), |f| {
    // Ed25519 malleability: S + L must be refused (S must be < L).
    let t = good(&f.ed);
    let mut sig = sig_of(&t);
    let l = hex("EDD3F55C1A631258D69CF7A2DEF9DE1400000000000000000000000000000010");
    let mut carry = 0u16;
    for i in 0..32 {
        let v = sig[32 + i] as u16 + l[i] as u16 + carry;
        sig[32 + i] = v as u8;
        carry = v >> 8;
    }
    resign(&t, &sig)
});

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ---- times -----------------------------------------------------------------------------------
case!(expired, no(Expired), |f| with_claims(
    &f.es,
    json!({"exp": NOW - 600})
));
case!(expired_within_leeway_accepted, OK, |f| with_claims(
    &f.es,
    json!({"exp": NOW - 29})
));
case!(expired_at_leeway_boundary, no(Expired), |f| with_claims(
    &f.es,
    json!({"exp": NOW - 30})
));
case!(
    expired_with_zero_leeway,
    no(Expired),
    |f| with_claims(&f.es, json!({"exp": NOW})),
    |v| v.leeway(0)
);
case!(not_yet_valid, no(NotYetValid), |f| with_claims(
    &f.es,
    json!({"nbf": NOW + 600})
));
case!(nbf_within_leeway_accepted, OK, |f| with_claims(
    &f.es,
    json!({"nbf": NOW + 30})
));
case!(issued_in_future, no(IssuedInFuture), |f| with_claims(
    &f.es,
    json!({"iat": NOW + 600})
));
case!(missing_exp, no(MissingClaim), |f| with_claims(
    &f.es,
    json!({"exp": null})
));
case!(
    missing_exp_allowed_when_configured,
    OK,
    |f| with_claims(&f.es, json!({"exp": null})),
    |v| v.require_exp(false)
);
case!(
    too_old_by_iat,
    no(TooOld),
    |f| with_claims(&f.es, json!({"iat": NOW - 4000})),
    |v| v.max_age(3600)
);
case!(
    max_age_without_iat,
    no(MissingClaim),
    |f| with_claims(&f.es, json!({"iat": null})),
    |v| v.max_age(3600)
);
case!(
    auth_time_too_old,
    no(TooOld),
    |f| with_claims(&f.es, json!({"auth_time": NOW - 301 - 30})),
    |v| v.max_auth_age(300)
);
case!(
    auth_time_recent_accepted,
    OK,
    |f| with_claims(&f.es, json!({"auth_time": NOW - 200})),
    |v| v.max_auth_age(300)
);
case!(
    max_auth_age_without_auth_time,
    no(MissingClaim),
    |f| good(&f.es),
    |v| v.max_auth_age(300)
);

// ---- issuer and audience ---------------------------------------------------------------------
case!(wrong_issuer, no(WrongIssuer), |f| with_claims(
    &f.es,
    json!({"iss": "https://evil.example"})
));
case!(issuer_trailing_slash_differs, no(WrongIssuer), |f| {
    with_claims(&f.es, json!({"iss": "https://issuer.example/"}))
});
case!(issuer_not_string, no(WrongIssuer), |f| with_claims(
    &f.es,
    json!({"iss": ["https://issuer.example"]})
));
case!(missing_issuer, no(MissingClaim), |f| with_claims(
    &f.es,
    json!({"iss": null})
));
case!(wrong_audience, no(WrongAudience), |f| with_claims(
    &f.es,
    json!({"aud": "other-api"})
));
case!(audience_array_without_match, no(WrongAudience), |f| {
    with_claims(&f.es, json!({"aud": ["a", "b"]}))
});
case!(audience_array_with_match_accepted, OK, |f| with_claims(
    &f.es,
    json!({"aud": ["a", "api"]})
));
case!(audience_empty_array, no(WrongAudience), |f| with_claims(
    &f.es,
    json!({"aud": []})
));
case!(missing_audience, no(MissingClaim), |f| with_claims(
    &f.es,
    json!({"aud": null})
));
case!(
    audience_all_of_missing_one,
    no(WrongAudience),
    |f| with_claims(&f.es, json!({"aud": ["api"]})),
    |v| v.audience("billing").audience_mode(AudienceMode::All)
);
case!(
    audience_all_of_accepted,
    OK,
    |f| with_claims(&f.es, json!({"aud": ["billing", "api"]})),
    |v| v.audience("billing").audience_mode(AudienceMode::All)
);
case!(
    audience_present_but_none_configured,
    no(WrongAudience),
    |f| good(&f.es),
    |v| {
        let _ = v;
        Validation::new(&[Algorithm::ES256]).issuer(ISS)
    }
);
case!(audience_case_sensitive, no(WrongAudience), |f| with_claims(
    &f.es,
    json!({"aud": "API"})
));

// ---- type ------------------------------------------------------------------------------------
case!(wrong_type, no(WrongType), |f| good(&f.es), |v| v
    .typ("at+jwt"));
case!(
    missing_type,
    no(WrongType),
    |f| with_header(&f.es, json!({"alg":"ES256","kid":"es"})),
    |v| v.typ("at+jwt")
);
case!(
    type_with_media_prefix_accepted,
    OK,
    |f| with_header(
        &f.es,
        json!({"alg":"ES256","kid":"es","typ":"application/AT+JWT"})
    ),
    |v| v.typ("at+jwt")
);

// ---- claims ----------------------------------------------------------------------------------
case!(
    required_claim_missing,
    no(MissingClaim),
    |f| good(&f.es),
    |v| v.require("email")
);
case!(
    required_nested_claim_missing,
    no(MissingClaim),
    |f| with_claims(&f.es, json!({"realm": {"roles": []}})),
    |v| v.require("realm.groups")
);
fn client_id_is(v: Validation, id: &str) -> Validation {
    v.check(ClaimCheck::Equals {
        claim: "client_id".into(),
        value: json!(id),
    })
}
case!(
    client_id_mismatch,
    no(ClaimMismatch),
    |f| with_claims(&f.hs, json!({"client_id": "other-key"})),
    |v| client_id_is(v, "api-key-1")
);
case!(client_id_absent, no(ClaimMismatch), |f| good(&f.hs), |v| {
    client_id_is(v, "api-key-1")
});
case!(
    client_id_number_not_string,
    no(ClaimMismatch),
    |f| with_claims(&f.hs, json!({"client_id": 1})),
    |v| client_id_is(v, "1")
);
case!(
    client_id_match_accepted,
    OK,
    |f| with_claims(&f.hs, json!({"client_id": "api-key-1"})),
    |v| client_id_is(v, "api-key-1")
);
fn scope_has(v: Validation, s: &str) -> Validation {
    v.check(ClaimCheck::Contains {
        claim: "scope".into(),
        item: s.into(),
    })
}
case!(
    scope_string_lacks_item,
    no(ClaimMismatch),
    |f| with_claims(&f.rs, json!({"scope": "openid profile"})),
    |v| scope_has(v, "email")
);
case!(
    scope_substring_is_not_item,
    no(ClaimMismatch),
    |f| with_claims(&f.rs, json!({"scope": "emails openid"})),
    |v| scope_has(v, "email")
);
case!(
    scope_array_lacks_item,
    no(ClaimMismatch),
    |f| with_claims(&f.rs, json!({"scope": ["openid"]})),
    |v| scope_has(v, "email")
);
case!(
    scope_number_not_list,
    no(ClaimMismatch),
    |f| with_claims(&f.rs, json!({"scope": 5})),
    |v| scope_has(v, "email")
);
case!(
    scope_contains_accepted,
    OK,
    |f| with_claims(&f.rs, json!({"scope": "openid email profile"})),
    |v| scope_has(v, "email")
);
case!(
    one_of_fails,
    no(ClaimMismatch),
    |f| with_claims(&f.rs, json!({"tier": "free"})),
    |v| v.check(ClaimCheck::OneOf {
        claim: "tier".into(),
        values: vec![json!("pro"), json!("enterprise")]
    })
);
case!(
    namespaced_claim_false,
    no(ClaimMismatch),
    |f| with_claims(
        &f.rs,
        json!({"https://example.com/claims/user/is_verified": false})
    ),
    |v| v.check(ClaimCheck::Equals {
        claim: "https://example.com/claims/user/is_verified".into(),
        value: json!(true)
    })
);
case!(
    namespaced_claim_true_accepted,
    OK,
    |f| with_claims(
        &f.rs,
        json!({"https://example.com/claims/user/is_verified": true})
    ),
    |v| v.check(ClaimCheck::Equals {
        claim: "https://example.com/claims/user/is_verified".into(),
        value: json!(true)
    })
);
case!(
    dotted_path_mismatch,
    no(ClaimMismatch),
    |f| with_claims(&f.rs, json!({"org": {"plan": "free"}})),
    |v| v.check(ClaimCheck::Equals {
        claim: "org.plan".into(),
        value: json!("pro")
    })
);

// ---- size ------------------------------------------------------------------------------------
case!(
    token_over_default_limit,
    no(TokenTooLarge),
    |f| with_claims(&f.hs, json!({"pad": "x".repeat(17 * 1024)}))
);
case!(
    token_over_configured_limit,
    no(TokenTooLarge),
    |f| good(&f.hs),
    |v| v.max_token_len(64)
);
case!(
    huge_garbage_rejected_before_decoding,
    no(TokenTooLarge),
    |_f| "!".repeat(100_000)
);

// ---- weak and misbound keys (rejected at import) ---------------------------------------------
#[test]
fn weak_hmac_secret() {
    let e = VerifyingKey::hmac(&[1u8; 31], Algorithm::HS256, None).unwrap_err();
    assert!(e.is_weak());
    assert_eq!(jwtd_core::Error::from(e).reason(), WeakKey);
}

#[test]
fn weak_hmac_secret_for_hs512() {
    let e = SigningKey::hmac(&[1u8; 32], Algorithm::HS512, None).unwrap_err();
    assert!(e.is_weak());
}

#[test]
fn weak_rsa_modulus() {
    let mut n = vec![0xC5u8; 128];
    n[127] = 0x01;
    let jwk = Jwk {
        kty: "RSA".into(),
        alg: Some("RS256".into()),
        n: Some(b64::encode(&n)),
        e: Some("AQAB".into()),
        ..Jwk::default()
    };
    let e = VerifyingKey::from_jwk(&jwk, None).unwrap_err();
    assert!(e.is_weak(), "{e}");
    assert_eq!(jwtd_core::Error::from(e).reason(), WeakKey);
}

#[test]
fn rsa_key_never_an_hmac_secret() {
    let f = f();
    let mut jwk = f.rs.public_jwk().unwrap();
    jwk.alg = Some("HS256".into());
    assert!(VerifyingKey::from_jwk(&jwk, None).is_err());
}

#[test]
fn ec_key_alg_must_fit_curve() {
    let mut jwk = f().es.public_jwk().unwrap();
    jwk.alg = Some("ES384".into());
    assert!(VerifyingKey::from_jwk(&jwk, None).is_err());
}

#[test]
fn encryption_keys_refused() {
    let mut jwk = f().es.public_jwk().unwrap();
    jwk.use_ = Some("enc".into());
    assert!(VerifyingKey::from_jwk(&jwk, None).is_err());
    let mut jwk = f().es.public_jwk().unwrap();
    jwk.key_ops = Some(vec!["sign".into()]);
    assert!(VerifyingKey::from_jwk(&jwk, None).is_err());
}

#[test]
fn rsa_jwk_without_alg_needs_one() {
    let mut jwk = f().rs.public_jwk().unwrap();
    jwk.alg = None;
    assert!(VerifyingKey::from_jwk(&jwk, None).is_err());
    assert_eq!(
        VerifyingKey::from_jwk(&jwk, Some(Algorithm::PS256))
            .unwrap()
            .algorithm(),
        Algorithm::PS256
    );
}

#[test]
fn every_reason_maps_to_rfc6750() {
    for r in Reason::ALL {
        let want = match r {
            ClaimMismatch | Reason::MissingScope | Reason::NoMatchingRule => "insufficient_scope",
            Reason::MultipleTokens | Reason::BadPath | Reason::BadHeaders => "invalid_request",
            Reason::KeyFetchFailed
            | Reason::RevocationUnavailable
            | Reason::UpstreamUnavailable
            | Reason::UpstreamTimeout => "temporarily_unavailable",
            _ => "invalid_token",
        };
        assert_eq!(r.bearer_error().as_str(), want, "{r}");
    }
}

/// RFC 6750 ties `invalid_token` to a bad token: when the server cannot decide (keys or the
/// revocation list unavailable), the answer is 503 `temporarily_unavailable` with a bare
/// challenge, `Retry-After` and gRPC `UNAVAILABLE`, never `invalid_token`.
#[test]
fn an_outage_is_never_invalid_token() {
    for r in Reason::ALL {
        let upstream = matches!(r, Reason::UpstreamUnavailable | Reason::UpstreamTimeout);
        let outage =
            upstream || matches!(r, Reason::KeyFetchFailed | Reason::RevocationUnavailable);
        assert_eq!(r.http_status() == 503, outage && !upstream, "{r}");
        assert_eq!(r.retry_after().is_some(), outage && !upstream, "{r}");
        assert_eq!(
            r.grpc_code() == jwtd_core::GrpcCode::Unavailable,
            outage,
            "{r}"
        );
        if outage {
            assert_eq!(
                r.bearer_error(),
                jwtd_core::BearerError::TemporarilyUnavailable
            );
            assert_eq!(r.challenge_error(), None, "{r}: no error in the challenge");
            assert_eq!(r.grpc_code().as_i32(), 14);
        }
    }
    assert_eq!(Reason::UpstreamUnavailable.http_status(), 502);
    assert_eq!(Reason::UpstreamTimeout.http_status(), 504);
    assert_eq!(Reason::MissingToken.challenge_error(), None);
    assert_eq!(
        Reason::MultipleTokens.challenge_error(),
        Some(jwtd_core::BearerError::InvalidRequest)
    );
}

#[test]
fn messages_never_echo_secrets() {
    let secret = b"super-secret-value-that-is-32-bytes!";
    let key = SigningKey::hmac(secret, Algorithm::HS256, Some("hs".into())).unwrap();
    let token = good(&key);
    let err = Verifier::new(keys(), policy())
        .unwrap()
        .verify(&token, NOW)
        .unwrap_err();
    assert!(!err.message().contains("super-secret"));
    assert!(!format!("{key:?}").contains("super-secret"));
}

// ---- cost bounds on unauthenticated input ----------------------------------------------------

/// `n` members `"m0":0, "m1":0, ...`.
fn members(n: usize) -> String {
    (0..n)
        .map(|i| format!("\"m{i}\":0"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPU time this thread has used, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`): unlike the
/// wall clock it does not count the time the thread waits for a core, which a call of several
/// milliseconds nearly always does on a loaded machine, or while the other tests of this binary
/// run on the other cores.
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the libc defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// The least CPU time `f` takes, in nanoseconds, over `rounds` rounds of `reps` calls: the
/// minimum is what the machine's noise (caches, frequency changes) cannot inflate.
fn least_ns(rounds: usize, reps: usize, f: &mut dyn FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = thread_cpu_ns();
            for _ in 0..reps {
                f();
            }
            (thread_cpu_ns() - t) as f64 / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn duplicate_member_detection_is_linear() {
    // Valid tokens (the claims are parsed after the signature check, and must stay linear
    // too) with 1,000 and 4,000 claims members: linear is 4x the time, quadratic 16x.
    let k = &f().hs;
    let v = policy().max_token_len(256 * 1024);
    let verifier = Verifier::new(keys(), v).unwrap();
    let token = |n: usize| {
        let c = format!(
            "{{\"iss\":\"{ISS}\",\"aud\":\"api\",\"exp\":{},{}}}",
            NOW + 600,
            members(n)
        );
        raw(k, &header(k), &c)
    };
    let (small, large) = (token(1_000), token(4_000));
    verifier.verify(&small, NOW).unwrap();
    verifier.verify(&large, NOW).unwrap();
    let mut t_small = f64::INFINITY;
    let mut t_large = f64::INFINITY;
    for _ in 0..5 {
        t_small = t_small.min(least_ns(3, 4, &mut || {
            verifier.verify(&small, NOW).unwrap();
        }));
        t_large = t_large.min(least_ns(3, 1, &mut || {
            verifier.verify(&large, NOW).unwrap();
        }));
    }
    let ratio = t_large / t_small;
    eprintln!("4,000 members: {t_large:.0} ns, 1,000 members: {t_small:.0} ns, {ratio:.1}x");
    assert!(ratio < 8.0, "4x the members cost {ratio:.1}x the time");
    // A duplicate is still found wherever it is, in a large object as in a small one.
    for (at, dup) in [(3, "m1"), (500, "m2"), (3_999, "m3998")] {
        let c = format!(
            "{{\"iss\":\"{ISS}\",\"aud\":\"api\",\"exp\":{},{},\"{dup}\":1}}",
            NOW + 600,
            members(at + 1)
        );
        assert_eq!(
            run(&raw(k, &header(k), &c), policy().max_token_len(256 * 1024)),
            no(Malformed),
            "{dup}"
        );
    }
}

#[test]
fn header_member_count_is_capped() {
    let k = &f().hs;
    let h = |extra: &str| format!("{{\"alg\":\"HS256\",\"kid\":\"hs\",{extra}}}");
    // 64 members in all pass; one more is malformed, at the top level or nested.
    assert_eq!(
        run(&raw(k, &h(&members(62)), &claims().to_string()), policy()),
        OK
    );
    assert_eq!(
        run(&raw(k, &h(&members(63)), &claims().to_string()), policy()),
        no(Malformed)
    );
    let nested = h(&format!("\"x\":{{{}}}", members(61)));
    assert_eq!(run(&raw(k, &nested, &claims().to_string()), policy()), OK);
    let nested = h(&format!("\"x\":[{{{}}},{{\"a\":1}}]", members(61)));
    assert_eq!(
        run(&raw(k, &nested, &claims().to_string()), policy()),
        no(Malformed)
    );
    // Array elements count too: a certificate chain is a few, a deep or long array is refused.
    let chain = h(r#""x5c":["MIIB","MIIC","MIID"]"#);
    assert_eq!(run(&raw(k, &chain, &claims().to_string()), policy()), OK);
    let long = h(&format!("\"x\":[{}]", vec!["0"; 62].join(",")));
    assert_eq!(
        run(&raw(k, &long, &claims().to_string()), policy()),
        no(Malformed)
    );
    let deep = h(&format!("\"x\":{}0{}", "[".repeat(15), "]".repeat(15)));
    assert_eq!(run(&raw(k, &deep, &claims().to_string()), policy()), OK);
    let err = Verifier::new(keys(), policy())
        .unwrap()
        .verify(&raw(k, &h(&members(1_050)), &claims().to_string()), NOW)
        .unwrap_err();
    assert!(err.message().contains("more than 64 members"), "{err}");
    // The claims have no such cap (they are parsed after the signature check).
    let c = claims_with(json!({}));
    let c = format!("{},{}}}", &c[..c.len() - 1], members(500));
    assert_eq!(run(&raw(k, &header(k), &c), policy()), OK);
}

#[test]
fn kid_length_is_capped() {
    let k = &f().hs;
    let with_kid = |kid: &str| {
        raw(
            k,
            &json!({"alg": "HS256", "kid": kid}).to_string(),
            &claims().to_string(),
        )
    };
    // 256 bytes is an ordinary unknown kid; 257 is refused before any key lookup.
    assert_eq!(run(&with_kid(&"k".repeat(256)), policy()), no(UnknownKey));
    assert_eq!(run(&with_kid(&"k".repeat(257)), policy()), no(Malformed));
    // Counted after unescaping: 100 escapes spelling 100 bytes pass the length rule, and the
    // rule's edge is the same for escaped kids.
    for (n, want) in [
        (100, no(UnknownKey)),
        (256, no(UnknownKey)),
        (257, no(Malformed)),
    ] {
        let escaped = format!("{{\"alg\":\"HS256\",\"kid\":\"{}\"}}", "\\u006b".repeat(n));
        assert_eq!(
            run(&raw(k, &escaped, &claims().to_string()), policy()),
            want,
            "{n}"
        );
    }
    // A JWKS key with a longer kid could never be named: it is skipped, with the reason.
    let mut jwk = f().es.public_jwk().unwrap();
    jwk.kid = Some("k".repeat(257));
    let jwks = jwtd_core::Jwks::from_keys([jwk]);
    let (set, skipped) = KeySet::from_jwks(&jwks, &[Algorithm::ES256]);
    assert!(set.is_empty());
    assert!(skipped[0].why.contains("256"), "{:?}", skipped[0]);
}

#[test]
fn junk_header_costs_at_most_3x_a_valid_token_of_its_size() {
    // The review's token: a header of 1,050 members, refused before the signature check. Its
    // refusal, and that of other junk of the same size, must cost at most 3x a valid token of
    // the same size (one padded claim), verified in full.
    let k = &f().hs;
    let verifier = Verifier::new(keys(), policy()).unwrap();
    let junk_header = format!("{{\"alg\":\"HS256\",\"kid\":\"hs\",{}}}", members(1_050));
    let size = raw(k, &junk_header, "{}").len();
    let base = good(k).len();
    let pad = (size - base - 12) * 3 / 4;
    let valid = with_claims(k, json!({"pad": "p".repeat(pad)}));
    verifier.verify(&valid, NOW).unwrap();
    let deep = {
        let one = format!("{}0{}", "[".repeat(14), "]".repeat(14));
        let list = vec![one; 1_050 * 9 / 29].join(",");
        format!("{{\"alg\":\"HS256\",\"kid\":\"hs\",\"x\":[{list}]}}")
    };
    let junk = [
        ("header members", raw(k, &junk_header, "{}")),
        (
            "nested header members",
            raw(
                k,
                &format!(
                    "{{\"alg\":\"HS256\",\"kid\":\"hs\",\"x\":{{{}}}}}",
                    members(1_050)
                ),
                "{}",
            ),
        ),
        ("deep arrays", raw(k, &deep, "{}")),
        (
            "escaped kid",
            raw(
                k,
                &format!(
                    "{{\"alg\":\"HS256\",\"kid\":\"{}\"}}",
                    "\\u006b".repeat(1_570)
                ),
                "{}",
            ),
        ),
    ];
    for (name, t) in &junk {
        assert!(verifier.verify(t, NOW).is_err(), "{name}");
        let len = t.len() as f64;
        assert!(
            (len / valid.len() as f64 - 1.0).abs() < 0.1,
            "{name}: {} vs {} bytes",
            t.len(),
            valid.len()
        );
        let mut t_valid = f64::INFINITY;
        let mut t_junk = f64::INFINITY;
        for _ in 0..5 {
            t_valid = t_valid.min(least_ns(3, 10, &mut || {
                verifier.verify(&valid, NOW).unwrap();
            }));
            t_junk = t_junk.min(least_ns(3, 10, &mut || {
                verifier.verify(t, NOW).unwrap_err();
            }));
        }
        let ratio = t_junk / t_valid;
        eprintln!("{name}: {t_junk:.0} ns, valid: {t_valid:.0} ns, {ratio:.2}x");
        assert!(
            ratio <= 3.0,
            "{name}: {ratio:.2}x a valid token of its size"
        );
    }
}

#[test]
fn jwks_exact_duplicates_are_skipped_and_imports_capped() {
    let es = f().es.public_jwk().unwrap();
    let mut renamed = es.clone();
    renamed.kid = Some("es-2026".into());
    let hs = f().hs.to_private_jwk().unwrap();
    // An exact duplicate (key, kid, alg) is skipped with its reason; the same key under
    // another kid (a rotation's renaming) and a duplicated HMAC secret are handled alike.
    let jwks =
        jwtd_core::Jwks::from_keys([es.clone(), es.clone(), renamed, hs.clone(), hs.clone()]);
    let (set, skipped) = KeySet::from_jwks(&jwks, &[Algorithm::ES256, Algorithm::HS256]);
    assert_eq!(set.keys().len(), 3, "{skipped:?}");
    let dups: Vec<usize> = skipped.iter().map(|s| s.index).collect();
    assert_eq!(dups, [1, 4]);
    assert!(
        skipped.iter().all(|s| s.why.contains("duplicate")),
        "{skipped:?}"
    );
    assert_eq!(skipped[0].kid.as_deref(), Some("es"));
    // At most MAX_JWKS_KEYS keys are imported; the rest are skipped as too many.
    let many: Vec<Jwk> = (0..jwtd_core::MAX_JWKS_KEYS + 5)
        .map(|i| {
            let mut j = es.clone();
            j.kid = Some(format!("k{i}"));
            j
        })
        .collect();
    let (set, skipped) = KeySet::from_jwks(&jwtd_core::Jwks::from_keys(many), &[Algorithm::ES256]);
    assert_eq!(set.keys().len(), jwtd_core::MAX_JWKS_KEYS);
    assert_eq!(skipped.len(), 5);
    assert_eq!(skipped[0].index, jwtd_core::MAX_JWKS_KEYS);
    assert!(
        skipped.iter().all(|s| s.why.contains("too many keys")),
        "{skipped:?}"
    );
    // Entries skipped for other reasons do not count against the cap.
    let mut mixed: Vec<Jwk> = (0..150)
        .map(|i| {
            let mut j = es.clone();
            j.kid = Some(format!("k{i}"));
            if i % 2 == 0 {
                j.use_ = Some("enc".into());
            }
            j
        })
        .collect();
    mixed.truncate(150);
    let (set, _) = KeySet::from_jwks(&jwtd_core::Jwks::from_keys(mixed), &[Algorithm::ES256]);
    assert_eq!(set.keys().len(), 75);
}
