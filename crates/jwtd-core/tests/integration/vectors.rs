//! Known-answer vectors: RFC 7515 appendix A, RFC 7520 section 4 (raw-JWS mode: their payload
//! is text, not claims), RFC 8037 appendix A.4, and tokens signed by PyJWT
//! (`tests/data/interop-pyjwt.json`, made by `scripts/interop/gen_pyjwt.py`).

use jwtd_core::{
    Algorithm, Jwk, Jwks, KeySet, Reason, SigningKey, Validation, Verifier, VerifyingKey,
};

fn jwk(text: &str) -> Jwk {
    Jwk::from_json(text.as_bytes()).unwrap()
}

fn raw_verifier(key: VerifyingKey) -> Verifier {
    let alg = key.algorithm();
    Verifier::new(KeySet::new().with(key), Validation::new(&[alg])).unwrap()
}

// ---- RFC 7515 appendix A --------------------------------------------------------------------
const RFC7515_PAYLOAD: &[u8] =
    b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
const RFC7515_RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

fn rfc7515_cases() -> Vec<(&'static str, VerifyingKey, String)> {
    let payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    vec![
        (
            "A.1 HS256",
            VerifyingKey::from_jwk(&jwk(r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#), Some(Algorithm::HS256)).unwrap(),
            format!("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{payload}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        ),
        (
            "A.2 RS256",
            VerifyingKey::from_jwk(&jwk(&format!(r#"{{"kty":"RSA","n":"{RFC7515_RSA_N}","e":"AQAB"}}"#)), Some(Algorithm::RS256)).unwrap(),
            format!("eyJhbGciOiJSUzI1NiJ9.{payload}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"),
        ),
        (
            "A.3 ES256",
            VerifyingKey::from_jwk(&jwk(r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#), None).unwrap(),
            format!("eyJhbGciOiJFUzI1NiJ9.{payload}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"),
        ),
    ]
}

#[test]
fn rfc7515_appendix_a_verify_as_jwt() {
    for (name, key, token) in rfc7515_cases() {
        let alg = key.algorithm();
        let v = Verifier::new(
            KeySet::new().with(key),
            Validation::new(&[alg]).issuer("joe"),
        )
        .unwrap();
        let ok = v
            .verify(&token, 1_300_819_300)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ok.claims()["http://example.com/is_root"], true, "{name}");
        // The same token after its exp (1300819380) plus leeway is expired.
        assert_eq!(
            v.verify(&token, 1_300_819_410).unwrap_err().reason(),
            Reason::Expired,
            "{name}"
        );
        let (_, payload) = v.verify_jws(token.as_bytes()).unwrap();
        assert_eq!(payload, RFC7515_PAYLOAD, "{name}");
    }
}

// ---- RFC 7520 section 4 (keys from section 3) -----------------------------------------------
const RFC7520_PAYLOAD: &str = "It\u{2019}s a dangerous business, Frodo, going out your door. You step onto the road, and if you don't keep your feet, there\u{2019}s no knowing where you might be swept off to.";
const RFC7520_PAYLOAD_B64: &str = "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
const RFC7520_RSA: &str = r#"{"kty":"RSA","kid":"bilbo.baggins@hobbiton.example","use":"sig","n":"n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw","e":"AQAB"}"#;
const RFC7520_EC: &str = r#"{"kty":"EC","kid":"bilbo.baggins@hobbiton.example","use":"sig","crv":"P-521","x":"AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt","y":"AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"}"#;
const RFC7520_HMAC: &str = r#"{"kty":"oct","kid":"018c0ae5-4d9b-471b-bfd6-eef314bc7037","use":"sig","alg":"HS256","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}"#;

#[test]
fn rfc7520_section4_raw_jws() {
    let cases = [
        ("4.1 RS256", RFC7520_RSA, Some(Algorithm::RS256),
         "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
         "MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg"),
        ("4.2 PS384", RFC7520_RSA, Some(Algorithm::PS384),
         "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
         "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw"),
        ("4.3 ES512", RFC7520_EC, None,
         "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
         "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2"),
        ("4.4 HS256", RFC7520_HMAC, None,
         "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9",
         "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0"),
    ];
    for (name, key, alg, header, sig) in cases {
        let v = raw_verifier(VerifyingKey::from_jwk(&jwk(key), alg).unwrap());
        let token = format!("{header}.{RFC7520_PAYLOAD_B64}.{sig}");
        let (h, payload) = v
            .verify_jws(token.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(h.kid.as_deref().map(|k| k.len() > 10), Some(true), "{name}");
        assert_eq!(payload, RFC7520_PAYLOAD.as_bytes(), "{name}");
        // As a JWT it must be refused: its payload is not a claims set.
        assert_eq!(
            v.verify(&token, 0).unwrap_err().reason(),
            Reason::Malformed,
            "{name}"
        );
    }
}

#[test]
fn rfc7520_hs256_signature_is_reproduced() {
    // HMAC is deterministic: signing the same input with the 3.5 key yields the RFC's value.
    let key = SigningKey::from_jwk(&jwk(RFC7520_HMAC), None).unwrap();
    let input = format!("eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.{RFC7520_PAYLOAD_B64}");
    let sig = key.sign_bytes(input.as_bytes()).unwrap();
    assert_eq!(
        jwtd_core::b64::encode(sig),
        "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0"
    );
}

// ---- RFC 8037 appendix A -------------------------------------------------------------------
#[test]
fn rfc8037_ed25519() {
    let public =
        jwk(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#);
    // A.3: the RFC 7638 thumbprint of the public key.
    assert_eq!(
        public.thumbprint().as_deref(),
        Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
    );
    let v = raw_verifier(VerifyingKey::from_jwk(&public, None).unwrap());
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let (_, payload) = v.verify_jws(token.as_bytes()).unwrap();
    assert_eq!(payload, b"Example of Ed25519 signing");
    // A.1 private key: Ed25519 is deterministic, so signing reproduces the RFC's signature.
    let private = jwk(
        r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
    );
    let sk = SigningKey::from_jwk(&private, None).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    assert_eq!(
        jwtd_core::b64::encode(sk.sign_bytes(input.as_bytes()).unwrap()),
        sig
    );
}

// ---- PyJWT interop -------------------------------------------------------------------------
#[test]
fn interop_pyjwt() {
    let data: serde_json::Value =
        serde_json::from_str(include_str!("../data/interop-pyjwt.json")).unwrap();
    assert!(data["provenance"]["library"]
        .as_str()
        .unwrap()
        .starts_with("PyJWT"));
    let vectors = data["vectors"].as_array().unwrap();
    let mut seen = Vec::new();
    for v in vectors {
        let alg: Algorithm = v["alg"].as_str().unwrap().parse().unwrap();
        let jwks = Jwks {
            keys: vec![v["jwk"].clone()],
        };
        let (set, skipped) = KeySet::from_jwks(&jwks, &[alg]);
        assert!(skipped.is_empty(), "{alg}: {skipped:?}");
        let verifier = Verifier::new(
            set,
            Validation::new(&[alg])
                .issuer("https://pyjwt.example")
                .audience("jwtd-tests"),
        )
        .unwrap();
        let ok = verifier
            .verify(v["token"].as_str().unwrap(), 1_800_000_000)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(
            serde_json::Value::Object(ok.claims()),
            data["claims"],
            "{alg}"
        );
        seen.push(alg);
    }
    seen.sort();
    let mut all = Algorithm::ALL.to_vec();
    all.sort();
    assert_eq!(seen, all, "every algorithm has a PyJWT vector");
}
