//! Keys: import (JWK, PEM, DER), algorithm binding, pre-parsing, export and generation.
//!
//! Every key jwtd holds is bound to exactly one [`Algorithm`] and parsed once, at import.
//! Verification then uses the pre-parsed form. An RSA, EC or OKP key can never act as an HMAC
//! secret: HMAC keys only come from [`VerifyingKey::hmac`] or an `oct` JWK.

use crate::alg::{Algorithm, Curve, Family};
use crate::b64;
use crate::error::KeyError;
use crate::jwk::Jwk;
use aws_lc_rs::encoding::{AsBigEndian, AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use aws_lc_rs::{hmac, rand, rsa};
use der::Decode;
use std::fmt;
use zeroize::Zeroizing;

/// The smallest RSA modulus jwtd accepts, in bits (RFC 7518 section 3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// Public key material kept for export and thumbprints.
#[derive(Clone, PartialEq, Eq)]
enum Public {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Okp {
        x: Vec<u8>,
    },
}

impl Public {
    fn to_jwk(&self) -> Jwk {
        match self {
            Public::Rsa { n, e } => Jwk {
                kty: "RSA".into(),
                n: Some(b64::encode(n)),
                e: Some(b64::encode(e)),
                ..Jwk::default()
            },
            Public::Ec { curve, x, y } => Jwk {
                kty: "EC".into(),
                crv: Some(curve.as_str().into()),
                x: Some(b64::encode(x)),
                y: Some(b64::encode(y)),
                ..Jwk::default()
            },
            Public::Okp { x } => Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64::encode(x)),
                ..Jwk::default()
            },
        }
    }

    fn family(&self) -> Family {
        match self {
            Public::Rsa { .. } => Family::Rsa,
            Public::Ec { .. } => Family::Ec,
            Public::Okp { .. } => Family::Okp,
        }
    }

    fn curve(&self) -> Option<Curve> {
        match self {
            Public::Ec { curve, .. } => Some(*curve),
            Public::Okp { .. } => Some(Curve::Ed25519),
            Public::Rsa { .. } => None,
        }
    }

    /// Checks this key can serve `alg` and parses it for that algorithm.
    fn parse_for(&self, alg: Algorithm) -> Result<ParsedPublicKey, KeyError> {
        if alg.family() != self.family() {
            return Err(KeyError::invalid(format!(
                "a {} key cannot be used with {alg}",
                family_name(self.family())
            )));
        }
        if let (Some(have), Some(want)) = (self.curve(), alg.curve()) {
            if have != want {
                return Err(KeyError::invalid(format!(
                    "a {} key cannot be used with {alg} (needs {})",
                    have.as_str(),
                    want.as_str()
                )));
            }
        }
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            KeyError::invalid(format!("public key rejected by the crypto library: {e}"))
        };
        match self {
            Public::Rsa { n, e } => {
                let bits = bit_len(n);
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::weak(format!(
                        "RSA modulus is {bits} bits; at least {MIN_RSA_BITS} are required"
                    )));
                }
                if bits > 8192 {
                    return Err(KeyError::invalid(format!(
                        "RSA modulus is {bits} bits; at most 8192 are supported"
                    )));
                }
                let components = rsa::PublicKeyComponents {
                    n: strip_zeros(n),
                    e: strip_zeros(e),
                };
                components
                    .to_parsed_public_key(alg.rsa_parameters().expect("RSA alg"))
                    .map_err(rejected)
            }
            Public::Ec { x, y, .. } => {
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                ParsedPublicKey::new(alg.verification().expect("asymmetric"), point)
                    .map_err(rejected)
            }
            Public::Okp { x } => {
                ParsedPublicKey::new(alg.verification().expect("asymmetric"), x).map_err(rejected)
            }
        }
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Hmac => "HMAC (oct)",
        Family::Rsa => "RSA",
        Family::Ec => "EC",
        Family::Okp => "OKP",
    }
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[first..]
}

fn bit_len(v: &[u8]) -> usize {
    let v = strip_zeros(v);
    match v.first() {
        None => 0,
        Some(&b) => v.len() * 8 - b.leading_zeros() as usize,
    }
}

/// ECDSA group orders, big-endian, for the range check on `r` and `s`.
fn group_order(curve: Curve) -> &'static [u8] {
    const P256: [u8; 32] = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    const P384: [u8; 48] = hex("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973");
    const P521: [u8; 66] = hex("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409");
    const K256: [u8; 32] = hex("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141");
    match curve {
        Curve::P256 => &P256,
        Curve::P384 => &P384,
        Curve::P521 => &P521,
        Curve::Secp256k1 => &K256,
        Curve::Ed25519 => &[],
    }
}

const fn hex<const N: usize>(s: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 2 * N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// True when `r || s` are both in `[1, n-1]` (the "psychic signature" check, CVE-2022-21449).
fn ecdsa_scalars_in_range(curve: Curve, sig: &[u8]) -> bool {
    let n = group_order(curve);
    let (r, s) = sig.split_at(sig.len() / 2);
    let ok = |v: &[u8]| v.iter().any(|&b| b != 0) && v < n;
    r.len() == n.len() && ok(r) && ok(s)
}

enum Verifier {
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey, Public),
}

/// A key that verifies signatures for exactly one algorithm: a public key, or an HMAC secret.
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    inner: Verifier,
    /// [`VerifyingKey::material_id`], computed on first use.
    material: std::sync::OnceLock<String>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

impl VerifyingKey {
    /// An HMAC key for `alg` (HS256/384/512). Secrets shorter than the hash output are refused
    /// as weak (RFC 7518 section 3.2).
    pub fn hmac(secret: &[u8], alg: Algorithm, kid: Option<String>) -> Result<Self, KeyError> {
        let h = alg.hmac().ok_or_else(|| {
            KeyError::invalid(format!(
                "{alg} is not an HMAC algorithm; a secret cannot serve it"
            ))
        })?;
        if secret.len() < alg.hash_len() {
            return Err(KeyError::weak(format!(
                "{alg} secret is {} bytes; at least {} are required",
                secret.len(),
                alg.hash_len()
            )));
        }
        Ok(VerifyingKey {
            kid,
            alg,
            inner: Verifier::Hmac(Box::new(hmac::Key::new(h, secret))),
            material: std::sync::OnceLock::new(),
        })
    }

    /// Imports a JWK for verification. The key is bound to its `alg`; without one, EC and OKP
    /// keys take the one algorithm their curve allows and RSA and `oct` keys take `fallback`,
    /// or are refused. `use` must be `sig` and `key_ops` must include `verify` when present.
    /// A private JWK is accepted and only its public part kept.
    pub fn from_jwk(jwk: &Jwk, fallback: Option<Algorithm>) -> Result<Self, KeyError> {
        check_use(jwk, "verify")?;
        let alg = jwk_algorithm(jwk, fallback)?;
        if jwk.kty == "oct" {
            let k = decode_member(jwk, "k", &jwk.k)?;
            let k = Zeroizing::new(k);
            return VerifyingKey::hmac(&k, alg, jwk.kid.clone());
        }
        let public = public_from_jwk(jwk)?;
        VerifyingKey::from_public(public, alg, jwk.kid.clone())
    }

    fn from_public(public: Public, alg: Algorithm, kid: Option<String>) -> Result<Self, KeyError> {
        let parsed = public.parse_for(alg)?;
        Ok(VerifyingKey {
            kid,
            alg,
            inner: Verifier::Public(parsed, public),
            material: std::sync::OnceLock::new(),
        })
    }

    /// Imports a public key from PEM: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1). A private
    /// key PEM is accepted too and only its public part kept. RSA keys need `alg`; for EC and
    /// Ed25519 keys `alg` may be omitted and must match the curve when given.
    pub fn from_pem(
        pem: &[u8],
        alg: Option<Algorithm>,
        kid: Option<String>,
    ) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => VerifyingKey::from_spki_der(&der, alg, kid),
            "RSA PUBLIC KEY" => {
                let public = rsa_public_from_pkcs1(&der)?;
                let alg = alg_for(&public, alg)?;
                VerifyingKey::from_public(public, alg, kid)
            }
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                Ok(SigningKey::from_pem(pem, alg, kid)?.verifying_key())
            }
            other => Err(KeyError::invalid(format!(
                "PEM label {other:?} is not a key jwtd reads (PUBLIC KEY, RSA PUBLIC KEY, PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY)"
            ))),
        }
    }

    /// Imports a DER SubjectPublicKeyInfo (RSA, EC on P-256/P-384/P-521/secp256k1, Ed25519).
    pub fn from_spki_der(
        der: &[u8],
        alg: Option<Algorithm>,
        kid: Option<String>,
    ) -> Result<Self, KeyError> {
        let public = public_from_spki(der)?;
        let alg = alg_for(&public, alg)?;
        VerifyingKey::from_public(public, alg, kid)
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Sets the key id.
    pub fn with_kid(mut self, kid: Option<String>) -> Self {
        self.kid = kid;
        self
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// True for an HMAC secret.
    pub fn is_symmetric(&self) -> bool {
        matches!(self.inner, Verifier::Hmac(_))
    }

    /// The public JWK (with `kid`, `alg` and `use`), or `None` for an HMAC secret, which is
    /// never exported from a verifying key.
    pub fn to_public_jwk(&self) -> Option<Jwk> {
        match &self.inner {
            Verifier::Hmac(_) => None,
            Verifier::Public(_, public) => {
                let mut jwk = public.to_jwk();
                jwk.kid = self.kid.clone();
                jwk.alg = Some(self.alg.as_str().into());
                jwk.use_ = Some("sig".into());
                Some(jwk)
            }
        }
    }

    /// A name for the key material alone, whatever `kid` it is configured under: the RFC 7638
    /// thumbprint of a public key; for an HMAC secret, `hmac:` and a MAC of a fixed label under
    /// the secret (base64url, 128 bits), which tells nothing about it. Revocation by key matches
    /// it too, so one key published under two kids is revoked under both. Computed once.
    pub fn material_id(&self) -> &str {
        self.material.get_or_init(|| match &self.inner {
            Verifier::Public(..) => self.thumbprint().unwrap_or_default(),
            Verifier::Hmac(key) => {
                let tag = hmac::sign(key, b"jwtd/key-material-id/v1");
                format!("hmac:{}", b64::encode(&tag.as_ref()[..16]))
            }
        })
    }

    /// What identifies this key for caches of verified tokens: its algorithm, its `kid` and its
    /// key material (the RFC 7638 thumbprint of a public key; for an HMAC secret, a MAC of a fixed
    /// label under the secret, which tells nothing about it), hashed. Two keys with the same
    /// identity verify exactly the same tokens under the same `kid`.
    pub fn identity(&self) -> [u8; 32] {
        let material = match &self.inner {
            Verifier::Public(..) => self.thumbprint().unwrap_or_default().into_bytes(),
            Verifier::Hmac(key) => hmac::sign(key, b"jwtd/key-identity/v1").as_ref().to_vec(),
        };
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [
            self.alg.as_str().as_bytes(),
            self.kid.as_deref().unwrap_or("").as_bytes(),
            &material,
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(&[u8::from(self.kid.is_some())]);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The RSA modulus length in bytes (`None` for other keys).
    pub(crate) fn modulus_len(&self) -> Option<usize> {
        match &self.inner {
            Verifier::Public(_, Public::Rsa { n, .. }) => Some(n.len()),
            _ => None,
        }
    }

    /// What this key's own members hold on the Rust heap (its `kid`, the public key material
    /// kept for export, the material id once made); not what aws-lc holds for the parsed key.
    pub(crate) fn heap_bytes(&self) -> usize {
        let public = match &self.inner {
            Verifier::Public(_, Public::Rsa { n, e }) => n.capacity() + e.capacity(),
            Verifier::Public(_, Public::Ec { x, y, .. }) => x.capacity() + y.capacity(),
            Verifier::Public(_, Public::Okp { x }) => x.capacity(),
            Verifier::Hmac(_) => std::mem::size_of::<hmac::Key>(),
        };
        self.kid.as_ref().map_or(0, String::capacity)
            + public
            + self.material.get().map_or(0, String::capacity)
    }

    /// The RFC 7638 thumbprint of the public key (`None` for HMAC secrets, whose hash would help
    /// an attacker guess a weak secret offline).
    pub fn thumbprint(&self) -> Option<String> {
        self.to_public_jwk().and_then(|j| j.thumbprint())
    }

    /// Verifies `signature` over `message`. The caller has already checked that the token's
    /// `alg` is this key's algorithm. ECDSA signatures must be raw `r || s` of the exact length
    /// with both scalars in range; HMAC tags are compared in constant time.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Verifier::Public(parsed, public) => {
                if let Some(len) = self.alg.fixed_signature_len() {
                    if signature.len() != len {
                        return false;
                    }
                    if let Public::Ec { curve, .. } = public {
                        if !ecdsa_scalars_in_range(*curve, signature) {
                            return false;
                        }
                    }
                }
                parsed.verify_sig(message, signature).is_ok()
            }
        }
    }
}

fn check_use(jwk: &Jwk, op: &str) -> Result<(), KeyError> {
    if let Some(u) = &jwk.use_ {
        if u != "sig" {
            return Err(KeyError::invalid(format!(
                "key use is {u:?}; only \"sig\" keys verify or sign tokens"
            )));
        }
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|o| o == op) {
            return Err(KeyError::invalid(format!(
                "key_ops {ops:?} does not include {op:?}"
            )));
        }
    }
    Ok(())
}

/// The algorithm a JWK is bound to.
fn jwk_algorithm(jwk: &Jwk, fallback: Option<Algorithm>) -> Result<Algorithm, KeyError> {
    let family = match jwk.kty.as_str() {
        "RSA" => Family::Rsa,
        "EC" => Family::Ec,
        "OKP" => Family::Okp,
        "oct" => Family::Hmac,
        other => return Err(KeyError::invalid(format!("unsupported kty {other:?}"))),
    };
    let curve = match &jwk.crv {
        Some(c) if matches!(family, Family::Ec | Family::Okp) => Some(
            Curve::from_name(c)
                .ok_or_else(|| KeyError::invalid(format!("unsupported crv {c:?}")))?,
        ),
        None if matches!(family, Family::Ec | Family::Okp) => {
            return Err(KeyError::invalid(format!("{} key without crv", jwk.kty)))
        }
        _ => None,
    };
    let alg = match &jwk.alg {
        Some(name) => Algorithm::from_name(name).ok_or_else(|| {
            KeyError::invalid(format!(
                "key alg {name:?} is not a supported signature algorithm"
            ))
        })?,
        None => match (curve, fallback) {
            (Some(c), _) => c.algorithm(),
            (None, Some(f)) => f,
            (None, None) => {
                return Err(KeyError::invalid(format!(
                    "{} key{} has no \"alg\"; name the algorithm it is for",
                    jwk.kty,
                    jwk.kid
                        .as_deref()
                        .map(|k| format!(" {k:?}"))
                        .unwrap_or_default()
                )))
            }
        },
    };
    if alg.family() != family {
        return Err(KeyError::invalid(format!(
            "a {} key cannot be used with {alg}",
            jwk.kty
        )));
    }
    if let (Some(have), Some(want)) = (curve, alg.curve()) {
        if have != want {
            return Err(KeyError::invalid(format!(
                "a {} key cannot be used with {alg}",
                have.as_str()
            )));
        }
    }
    Ok(alg)
}

fn decode_member(jwk: &Jwk, name: &str, v: &Option<String>) -> Result<Vec<u8>, KeyError> {
    let v = v
        .as_ref()
        .ok_or_else(|| KeyError::invalid(format!("{} JWK lacks \"{name}\"", jwk.kty)))?;
    b64::decode(v.as_bytes()).ok_or_else(|| {
        KeyError::invalid(format!("JWK member \"{name}\" is not canonical base64url"))
    })
}

fn public_from_jwk(jwk: &Jwk) -> Result<Public, KeyError> {
    match jwk.kty.as_str() {
        "RSA" => Ok(Public::Rsa {
            n: decode_member(jwk, "n", &jwk.n)?,
            e: decode_member(jwk, "e", &jwk.e)?,
        }),
        "EC" => {
            let crv = jwk.crv.as_deref().unwrap_or_default();
            let curve = Curve::from_name(crv)
                .filter(|c| *c != Curve::Ed25519)
                .ok_or_else(|| KeyError::invalid(format!("unsupported EC crv {crv:?}")))?;
            let x = decode_member(jwk, "x", &jwk.x)?;
            let y = decode_member(jwk, "y", &jwk.y)?;
            let len = curve.coordinate_len();
            if x.len() != len || y.len() != len {
                return Err(KeyError::invalid(format!(
                    "{crv} coordinates must be {len} bytes each"
                )));
            }
            Ok(Public::Ec { curve, x, y })
        }
        "OKP" => {
            let crv = jwk.crv.as_deref().unwrap_or_default();
            if crv != "Ed25519" {
                return Err(KeyError::invalid(format!("unsupported OKP crv {crv:?}")));
            }
            let x = decode_member(jwk, "x", &jwk.x)?;
            if x.len() != 32 {
                return Err(KeyError::invalid("Ed25519 public key must be 32 bytes"));
            }
            Ok(Public::Okp { x })
        }
        other => Err(KeyError::invalid(format!("unsupported kty {other:?}"))),
    }
}

fn alg_for(public: &Public, alg: Option<Algorithm>) -> Result<Algorithm, KeyError> {
    match (alg, public.curve()) {
        (Some(a), _) => Ok(a),
        (None, Some(c)) => Ok(c.algorithm()),
        (None, None) => Err(KeyError::invalid(
            "an RSA key needs its algorithm named (RS256, RS384, RS512, PS256, PS384 or PS512)",
        )),
    }
}

fn decode_pem(pem: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::invalid("PEM is not UTF-8 text"))?;
    // Tolerate leading text (comments, `openssl` headers) before the first boundary.
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| KeyError::invalid("no PEM \"-----BEGIN\" line found"))?;
    let (label, der) = der::pem::decode_vec(text[start..].trim_end().as_bytes())
        .map_err(|e| KeyError::invalid(format!("bad PEM: {e}")))?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}

mod oid {
    use der::asn1::ObjectIdentifier as Oid;
    pub const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    pub const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    pub const P521: Oid = Oid::new_unwrap("1.3.132.0.35");
    pub const K256: Oid = Oid::new_unwrap("1.3.132.0.10");
}

fn curve_from_oid(o: der::asn1::ObjectIdentifier) -> Result<Curve, KeyError> {
    Ok(match o {
        oid::P256 => Curve::P256,
        oid::P384 => Curve::P384,
        oid::P521 => Curve::P521,
        oid::K256 => Curve::Secp256k1,
        other => return Err(KeyError::invalid(format!("unsupported EC curve {other}"))),
    })
}

fn rsa_public_from_pkcs1(der: &[u8]) -> Result<Public, KeyError> {
    let k = pkcs1::RsaPublicKey::from_der(der)
        .map_err(|e| KeyError::invalid(format!("bad PKCS#1 RSA public key: {e}")))?;
    Ok(Public::Rsa {
        n: k.modulus.as_bytes().to_vec(),
        e: k.public_exponent.as_bytes().to_vec(),
    })
}

fn public_from_spki(der: &[u8]) -> Result<Public, KeyError> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| KeyError::invalid(format!("bad SubjectPublicKeyInfo: {e}")))?;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| KeyError::invalid("public key bit string has unused bits"))?;
    match spki.algorithm.oid {
        oid::RSA => rsa_public_from_pkcs1(bits),
        oid::EC => {
            let curve_oid = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyError::invalid("EC key without a named curve"))?;
            let curve = curve_from_oid(curve_oid)?;
            ec_public_from_point(curve, bits)
        }
        oid::ED25519 => {
            if bits.len() != 32 {
                return Err(KeyError::invalid("Ed25519 public key must be 32 bytes"));
            }
            Ok(Public::Okp { x: bits.to_vec() })
        }
        other => Err(KeyError::invalid(format!(
            "unsupported public key algorithm {other}"
        ))),
    }
}

fn ec_public_from_point(curve: Curve, point: &[u8]) -> Result<Public, KeyError> {
    let len = curve.coordinate_len();
    if point.len() != 1 + 2 * len || point[0] != 4 {
        return Err(KeyError::invalid(
            "EC public key must be an uncompressed point (compressed points are not supported)",
        ));
    }
    Ok(Public::Ec {
        curve,
        x: point[1..1 + len].to_vec(),
        y: point[1 + len..].to_vec(),
    })
}

enum Signer {
    Hmac(Box<hmac::Key>, Zeroizing<Vec<u8>>),
    Rsa(rsa::KeyPair),
    Ecdsa(EcdsaKeyPair, Curve),
    Ed25519(Ed25519KeyPair),
}

/// A private key (or HMAC secret) that signs tokens for exactly one algorithm.
pub struct SigningKey {
    kid: Option<String>,
    alg: Algorithm,
    signer: Signer,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn rejected(what: &str) -> impl Fn(aws_lc_rs::error::KeyRejected) -> KeyError + '_ {
    move |e| KeyError::invalid(format!("{what} rejected by the crypto library: {e}"))
}

impl SigningKey {
    /// Generates a new key for `alg`: RSA 2048 bits for RS*/PS* (see
    /// [`SigningKey::generate_rsa`] for larger), a fresh curve key for ES*/EdDSA, and a random
    /// secret of the hash length for HS*.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let failed = |_| KeyError::invalid("key generation failed");
        let signer = match alg.family() {
            Family::Hmac => {
                let mut secret = Zeroizing::new(vec![0u8; alg.hash_len()]);
                rand::fill(&mut secret).map_err(failed)?;
                return SigningKey::hmac(&secret, alg, None);
            }
            Family::Rsa => return SigningKey::generate_rsa(alg, 2048),
            Family::Ec => Signer::Ecdsa(
                EcdsaKeyPair::generate(alg.ecdsa_signing().expect("EC alg")).map_err(failed)?,
                alg.curve().expect("EC alg"),
            ),
            Family::Okp => Signer::Ed25519(Ed25519KeyPair::generate().map_err(failed)?),
        };
        Ok(SigningKey {
            kid: None,
            alg,
            signer,
        })
    }

    /// Generates an RSA key of `bits` (2048, 3072 or 4096) for an RS* or PS* algorithm.
    pub fn generate_rsa(alg: Algorithm, bits: usize) -> Result<Self, KeyError> {
        if alg.family() != Family::Rsa {
            return Err(KeyError::invalid(format!("{alg} is not an RSA algorithm")));
        }
        let size = match bits {
            2048 => rsa::KeySize::Rsa2048,
            3072 => rsa::KeySize::Rsa3072,
            4096 => rsa::KeySize::Rsa4096,
            other => {
                return Err(KeyError::invalid(format!(
                    "RSA size {other} not supported; use 2048, 3072 or 4096"
                )))
            }
        };
        let kp = rsa::KeyPair::generate(size)
            .map_err(|_| KeyError::invalid("RSA key generation failed"))?;
        Ok(SigningKey {
            kid: None,
            alg,
            signer: Signer::Rsa(kp),
        })
    }

    /// An HMAC signing key; the same length rules as [`VerifyingKey::hmac`].
    pub fn hmac(secret: &[u8], alg: Algorithm, kid: Option<String>) -> Result<Self, KeyError> {
        // Validates algorithm and length.
        VerifyingKey::hmac(secret, alg, None)?;
        let h = alg.hmac().expect("checked");
        Ok(SigningKey {
            kid,
            alg,
            signer: Signer::Hmac(
                Box::new(hmac::Key::new(h, secret)),
                Zeroizing::new(secret.to_vec()),
            ),
        })
    }

    /// Imports a private key PEM: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC1). RSA keys need `alg`; EC and Ed25519 keys infer it from the curve.
    pub fn from_pem(
        pem: &[u8],
        alg: Option<Algorithm>,
        kid: Option<String>,
    ) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        match label.as_str() {
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der, alg, kid),
            "RSA PRIVATE KEY" => {
                let kp = rsa::KeyPair::from_der(&der).map_err(rejected("RSA private key"))?;
                SigningKey::finish(Signer::Rsa(kp), alg, kid)
            }
            "EC PRIVATE KEY" => {
                let sec1 = sec1::EcPrivateKey::from_der(&der)
                    .map_err(|e| KeyError::invalid(format!("bad SEC1 EC private key: {e}")))?;
                let curve_oid = sec1
                    .parameters
                    .and_then(|p| p.named_curve())
                    .ok_or_else(|| KeyError::invalid("EC private key without a named curve"))?;
                let curve = curve_from_oid(curve_oid)?;
                let signing = curve.algorithm().ecdsa_signing().expect("EC");
                let kp = EcdsaKeyPair::from_private_key_der(signing, &der)
                    .map_err(rejected("EC private key"))?;
                SigningKey::finish(Signer::Ecdsa(kp, curve), alg, kid)
            }
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::invalid(
                "encrypted PKCS#8 is not supported; decrypt it first (openssl pkcs8 -in F -out F2)",
            )),
            other => Err(KeyError::invalid(format!(
                "PEM label {other:?} is not a private key (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY)"
            ))),
        }
    }

    /// Imports an unencrypted PKCS#8 DER private key.
    pub fn from_pkcs8_der(
        der: &[u8],
        alg: Option<Algorithm>,
        kid: Option<String>,
    ) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfo::from_der(der)
            .map_err(|e| KeyError::invalid(format!("bad PKCS#8 private key: {e}")))?;
        let signer = match info.algorithm.oid {
            oid::RSA => {
                Signer::Rsa(rsa::KeyPair::from_pkcs8(der).map_err(rejected("RSA private key"))?)
            }
            oid::EC => {
                let curve_oid = info
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| KeyError::invalid("EC key without a named curve"))?;
                let curve = curve_from_oid(curve_oid)?;
                let signing = curve.algorithm().ecdsa_signing().expect("EC");
                Signer::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(signing, der).map_err(rejected("EC private key"))?,
                    curve,
                )
            }
            oid::ED25519 => Signer::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(rejected("Ed25519 private key"))?,
            ),
            other => {
                return Err(KeyError::invalid(format!(
                    "unsupported private key algorithm {other}"
                )))
            }
        };
        SigningKey::finish(signer, alg, kid)
    }

    /// Imports a private JWK (RSA with CRT members, EC, OKP Ed25519, or oct).
    pub fn from_jwk(jwk: &Jwk, fallback: Option<Algorithm>) -> Result<Self, KeyError> {
        check_use(jwk, "sign")?;
        let alg = jwk_algorithm(jwk, fallback)?;
        let kid = jwk.kid.clone();
        if jwk.kty == "oct" {
            let k = Zeroizing::new(decode_member(jwk, "k", &jwk.k)?);
            return SigningKey::hmac(&k, alg, kid);
        }
        let public = public_from_jwk(jwk)?;
        let d = Zeroizing::new(decode_member(jwk, "d", &jwk.d)?);
        let signer = match &public {
            Public::Rsa { n, e } => {
                let part = |name: &str, v: &Option<String>| {
                    decode_member(jwk, name, v).map(Zeroizing::new)
                };
                let (p, q) = (part("p", &jwk.p)?, part("q", &jwk.q)?);
                let (dp, dq, qi) = (
                    part("dp", &jwk.dp)?,
                    part("dq", &jwk.dq)?,
                    part("qi", &jwk.qi)?,
                );
                let components = rsa::KeyPairComponents {
                    public_key: rsa::PublicKeyComponents {
                        n: strip_zeros(n),
                        e: strip_zeros(e),
                    },
                    d: strip_zeros(&d),
                    p: strip_zeros(&p),
                    q: strip_zeros(&q),
                    dP: strip_zeros(&dp),
                    dQ: strip_zeros(&dq),
                    qInv: strip_zeros(&qi),
                };
                Signer::Rsa(
                    rsa::KeyPair::from_components(&components)
                        .map_err(rejected("RSA private JWK"))?,
                )
            }
            Public::Ec { curve, x, y } => {
                let mut point = vec![4u8];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let signing = curve.algorithm().ecdsa_signing().expect("EC");
                Signer::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(signing, &d, &point)
                        .map_err(rejected("EC private JWK"))?,
                    *curve,
                )
            }
            Public::Okp { x } => Signer::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&d, x)
                    .map_err(rejected("Ed25519 private JWK"))?,
            ),
        };
        SigningKey::finish(signer, Some(alg), kid)
    }

    fn finish(
        signer: Signer,
        alg: Option<Algorithm>,
        kid: Option<String>,
    ) -> Result<Self, KeyError> {
        let public = public_of(&signer);
        let alg = match &public {
            Some(p) => alg_for(p, alg)?,
            None => alg.ok_or_else(|| KeyError::invalid("HMAC key needs an algorithm"))?,
        };
        if let Some(p) = &public {
            // Validates family, curve and strength exactly as for verification.
            p.parse_for(alg)?;
        }
        Ok(SigningKey { kid, alg, signer })
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Sets the key id.
    pub fn with_kid(mut self, kid: Option<String>) -> Self {
        self.kid = kid;
        self
    }

    /// Sets the key id to the RFC 7638 thumbprint when it has none (asymmetric keys only).
    pub fn with_default_kid(self) -> Self {
        if self.kid.is_some() {
            return self;
        }
        let kid = self.public_jwk().and_then(|j| j.thumbprint());
        self.with_kid(kid)
    }

    /// The one algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The matching verifying key (same `kid` and algorithm).
    pub fn verifying_key(&self) -> VerifyingKey {
        match (&self.signer, public_of(&self.signer)) {
            (Signer::Hmac(_, secret), _) => {
                VerifyingKey::hmac(secret, self.alg, self.kid.clone()).expect("validated")
            }
            (_, Some(public)) => {
                VerifyingKey::from_public(public, self.alg, self.kid.clone()).expect("validated")
            }
            (_, None) => unreachable!("asymmetric keys have a public part"),
        }
    }

    /// The public JWK (`None` for HMAC).
    pub fn public_jwk(&self) -> Option<Jwk> {
        self.verifying_key().to_public_jwk()
    }

    /// The whole private key as a JWK. Handle with care: it contains the secret.
    pub fn to_private_jwk(&self) -> Result<Jwk, KeyError> {
        let mut jwk = match &self.signer {
            Signer::Hmac(_, secret) => Jwk {
                kty: "oct".into(),
                k: Some(b64::encode(secret.as_slice())),
                ..Jwk::default()
            },
            Signer::Rsa(_) => {
                let pkcs8 = self.to_pkcs8_der()?;
                let info = pkcs8::PrivateKeyInfo::from_der(&pkcs8)
                    .map_err(|e| KeyError::invalid(format!("PKCS#8 re-parse failed: {e}")))?;
                let k = pkcs1::RsaPrivateKey::from_der(info.private_key)
                    .map_err(|e| KeyError::invalid(format!("PKCS#1 re-parse failed: {e}")))?;
                let enc = |u: pkcs1::UintRef<'_>| Some(b64::encode(u.as_bytes()));
                Jwk {
                    kty: "RSA".into(),
                    n: enc(k.modulus),
                    e: enc(k.public_exponent),
                    d: enc(k.private_exponent),
                    p: enc(k.prime1),
                    q: enc(k.prime2),
                    dp: enc(k.exponent1),
                    dq: enc(k.exponent2),
                    qi: enc(k.coefficient),
                    ..Jwk::default()
                }
            }
            Signer::Ecdsa(kp, _) => {
                let mut jwk = public_of(&self.signer).expect("EC").to_jwk();
                let d = kp
                    .private_key()
                    .as_be_bytes()
                    .map_err(|_| KeyError::invalid("EC private key export failed"))?;
                jwk.d = Some(b64::encode(d.as_ref()));
                jwk
            }
            Signer::Ed25519(kp) => {
                let mut jwk = public_of(&self.signer).expect("OKP").to_jwk();
                let seed = kp
                    .seed()
                    .and_then(|s| s.as_be_bytes())
                    .map_err(|_| KeyError::invalid("Ed25519 seed export failed"))?;
                jwk.d = Some(b64::encode(seed.as_ref()));
                jwk
            }
        };
        jwk.kid = self.kid.clone();
        jwk.alg = Some(self.alg.as_str().into());
        jwk.use_ = Some("sig".into());
        Ok(jwk)
    }

    /// Unencrypted PKCS#8 DER of an asymmetric key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let failed = |_| KeyError::invalid("PKCS#8 export failed");
        let der: Pkcs8V1Der<'static> = match &self.signer {
            Signer::Hmac(..) => {
                return Err(KeyError::invalid(
                    "an HMAC secret has no PKCS#8 form; export it as a JWK",
                ))
            }
            Signer::Rsa(kp) => kp.as_der().map_err(failed)?,
            Signer::Ecdsa(kp, _) => {
                return kp
                    .to_pkcs8v1()
                    .map(|d| Zeroizing::new(d.as_ref().to_vec()))
                    .map_err(failed)
            }
            Signer::Ed25519(kp) => kp.as_der().map_err(failed)?,
        };
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The private key as a `PRIVATE KEY` (PKCS#8) PEM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.to_pkcs8_der()?;
        der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|e| KeyError::invalid(format!("PEM encoding failed: {e}")))
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::invalid("signing failed");
        Ok(match &self.signer {
            Signer::Hmac(key, _) => hmac::sign(key, message).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    self.alg.rsa_encoding().expect("RSA alg"),
                    &rand::SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(failed)?;
                sig
            }
            Signer::Ecdsa(kp, _) => kp
                .sign(&rand::SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(kp) => kp.sign(message).as_ref().to_vec(),
        })
    }
}

fn public_of(signer: &Signer) -> Option<Public> {
    match signer {
        Signer::Hmac(..) => None,
        Signer::Rsa(kp) => {
            let pk = kp.public_key();
            Some(Public::Rsa {
                n: pk.modulus().big_endian_without_leading_zero().to_vec(),
                e: pk.exponent().big_endian_without_leading_zero().to_vec(),
            })
        }
        Signer::Ecdsa(kp, curve) => ec_public_from_point(*curve, kp.public_key().as_ref()).ok(),
        Signer::Ed25519(kp) => Some(Public::Okp {
            x: kp.public_key().as_ref().to_vec(),
        }),
    }
}

/// Writes a public key as a `PUBLIC KEY` (SPKI) PEM.
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    let Verifier::Public(parsed, _) = &key.inner else {
        return Err(KeyError::invalid("an HMAC secret has no public key"));
    };
    let der = parsed
        .as_der()
        .map_err(|_| KeyError::invalid("SPKI export failed"))?;
    der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, der.as_ref())
        .map_err(|e| KeyError::invalid(format!("PEM encoding failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_range_check() {
        let n = group_order(Curve::P256);
        let mut sig = vec![1u8; 64];
        assert!(ecdsa_scalars_in_range(Curve::P256, &sig));
        sig[..32].copy_from_slice(n);
        assert!(!ecdsa_scalars_in_range(Curve::P256, &sig), "r = n");
        let mut zero = vec![0u8; 64];
        zero[63] = 1;
        assert!(!ecdsa_scalars_in_range(Curve::P256, &zero), "r = 0");
    }

    #[test]
    fn pem_round_trips_for_every_asymmetric_alg() {
        for alg in Algorithm::ALL {
            if alg.family() == Family::Hmac {
                continue;
            }
            let sk = SigningKey::generate(alg).unwrap().with_default_kid();
            let pem = sk.to_pkcs8_pem().unwrap();
            let back = SigningKey::from_pem(pem.as_bytes(), Some(alg), None).unwrap();
            assert_eq!(
                back.public_jwk().unwrap().thumbprint(),
                sk.public_jwk().unwrap().thumbprint()
            );
            let pub_pem = public_key_pem(&sk.verifying_key()).unwrap();
            let vk = VerifyingKey::from_pem(pub_pem.as_bytes(), Some(alg), None).unwrap();
            let sig = sk.sign_bytes(b"msg").unwrap();
            assert!(vk.verify_signature(b"msg", &sig), "{alg}");
            assert!(!vk.verify_signature(b"msh", &sig), "{alg}");
            // Private JWK round trip.
            let jwk = sk.to_private_jwk().unwrap();
            let sk2 = SigningKey::from_jwk(&jwk, None).unwrap();
            let sig2 = sk2.sign_bytes(b"msg").unwrap();
            assert!(vk.verify_signature(b"msg", &sig2), "{alg} via JWK");
        }
    }
}
