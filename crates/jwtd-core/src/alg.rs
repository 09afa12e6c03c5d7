//! The JWS algorithms jwtd implements (RFC 7518, RFC 8037, RFC 8812) and their crypto mapping.

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use std::fmt;
use std::str::FromStr;

/// A JWS `alg`. `none` is deliberately absent: it can never be named, configured or accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    /// ECDSA on secp256k1 with SHA-256 (RFC 8812).
    ES256K,
    /// EdDSA; jwtd supports the Ed25519 curve (RFC 8037).
    EdDSA,
}

/// The key type an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// HMAC with a shared secret (`kty` `oct`).
    Hmac,
    /// RSASSA-PKCS1-v1_5 or RSASSA-PSS (`kty` `RSA`).
    Rsa,
    /// ECDSA (`kty` `EC`).
    Ec,
    /// EdDSA (`kty` `OKP`).
    Okp,
}

/// An elliptic curve used by ECDSA or EdDSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
    /// secp256k1.
    Secp256k1,
    /// Ed25519.
    Ed25519,
}

impl Curve {
    /// The JWK `crv` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::Secp256k1 => "secp256k1",
            Curve::Ed25519 => "Ed25519",
        }
    }

    /// Parses a JWK `crv` name.
    pub fn from_name(name: &str) -> Option<Curve> {
        Some(match name {
            "P-256" => Curve::P256,
            "P-384" => Curve::P384,
            "P-521" => Curve::P521,
            "secp256k1" => Curve::Secp256k1,
            "Ed25519" => Curve::Ed25519,
            _ => return None,
        })
    }

    /// Length in bytes of one coordinate or scalar.
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Secp256k1 | Curve::Ed25519 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The one algorithm a key on this curve may serve.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
            Curve::P521 => Algorithm::ES512,
            Curve::Secp256k1 => Algorithm::ES256K,
            Curve::Ed25519 => Algorithm::EdDSA,
        }
    }
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 14] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::ES256K,
        Algorithm::EdDSA,
    ];

    /// The registered `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::ES256K => "ES256K",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Looks up an `alg` name exactly (names are case-sensitive, RFC 7515 section 4.1.1).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The key family this algorithm needs.
    pub fn family(self) -> Family {
        use Algorithm::*;
        match self {
            HS256 | HS384 | HS512 => Family::Hmac,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
            ES256 | ES384 | ES512 | ES256K => Family::Ec,
            EdDSA => Family::Okp,
        }
    }

    /// The curve an EC or OKP algorithm is defined on.
    pub fn curve(self) -> Option<Curve> {
        Some(match self {
            Algorithm::ES256 => Curve::P256,
            Algorithm::ES384 => Curve::P384,
            Algorithm::ES512 => Curve::P521,
            Algorithm::ES256K => Curve::Secp256k1,
            Algorithm::EdDSA => Curve::Ed25519,
            _ => return None,
        })
    }

    /// Output length of the hash; the minimum HMAC secret length for HS*.
    pub fn hash_len(self) -> usize {
        use Algorithm::*;
        match self {
            HS256 | RS256 | PS256 | ES256 | ES256K => 32,
            HS384 | RS384 | PS384 | ES384 => 48,
            HS512 | RS512 | PS512 | ES512 | EdDSA => 64,
        }
    }

    /// Exact signature length for ECDSA (raw `r || s`) and EdDSA.
    pub fn fixed_signature_len(self) -> Option<usize> {
        match self.family() {
            Family::Ec | Family::Okp => self.curve().map(|c| 2 * c.coordinate_len()),
            _ => None,
        }
    }

    pub(crate) fn hmac(self) -> Option<aws_lc_rs::hmac::Algorithm> {
        use aws_lc_rs::hmac;
        Some(match self {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => return None,
        })
    }

    /// The aws-lc-rs verification algorithm for asymmetric algorithms.
    pub(crate) fn verification(self) -> Option<&'static dyn VerificationAlgorithm> {
        use Algorithm::*;
        Some(match self {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => self.rsa_parameters()?,
            ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            ES512 => &signature::ECDSA_P521_SHA512_FIXED,
            ES256K => &signature::ECDSA_P256K1_SHA256_FIXED,
            EdDSA => &signature::ED25519,
            HS256 | HS384 | HS512 => return None,
        })
    }

    /// RSA verification parameters (2048 to 8192-bit moduli) for RS* and PS*.
    pub(crate) fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    pub(crate) fn ecdsa_signing(self) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        Some(match self {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            Algorithm::ES256K => &signature::ECDSA_P256K1_SHA256_FIXED_SIGNING,
            _ => return None,
        })
    }

    pub(crate) fn rsa_encoding(self) -> Option<&'static dyn signature::RsaEncoding> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_SHA512,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error from parsing an algorithm name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.eq_ignore_ascii_case("none") {
            write!(f, "algorithm \"none\" is never accepted")
        } else {
            let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
            write!(
                f,
                "unknown algorithm {:?}; supported: {}",
                self.0,
                names.join(", ")
            )
        }
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
