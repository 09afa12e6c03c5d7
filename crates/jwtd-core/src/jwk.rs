//! JSON Web Keys (RFC 7517) as they appear on the wire, and RFC 7638 thumbprints.
//!
//! [`Jwk`] is the plain data form: every member is a string as in the JSON. Turning it into a
//! usable key (validation, algorithm binding, pre-parsing) is [`crate::VerifyingKey::from_jwk`]
//! and [`crate::SigningKey::from_jwk`].

use crate::{b64, json};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One JSON Web Key. Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`) are redacted by
/// `Debug`; members jwtd does not use are ignored on import, as RFC 7517 section 4 asks.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP` or `oct`.
    pub kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm this key is for; jwtd binds the key to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Public key use; jwtd only uses `sig` keys (or keys without `use`).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("use", &self.use_)
            .field("key_ops", &self.key_ops)
            .field("crv", &self.crv)
            .field("n", &self.n)
            .field("e", &self.e)
            .field("x", &self.x)
            .field("y", &self.y)
            .field("d", &secret(&self.d))
            .field("k", &secret(&self.k))
            .finish_non_exhaustive()
    }
}

/// Maximum nesting accepted in a JWK or JWKS document.
const KEY_JSON_DEPTH: usize = 8;

impl Jwk {
    /// Parses one JWK from JSON text, refusing duplicate members.
    pub fn from_json(text: &[u8]) -> Result<Jwk, String> {
        let map = json::parse_object(text, KEY_JSON_DEPTH)?;
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    }

    /// Reads the content of an HMAC secret file, which is either the raw secret or a JWK of
    /// `kty` `oct` (what `jwtd keygen --alg HS256` writes): `Ok(Some(jwk))` for a JSON object
    /// with a `"kty"` member, `Ok(None)` for anything else (the bytes are the secret itself).
    /// A JWK of another `kty` is refused: it is not an HMAC secret.
    pub fn from_secret_file(bytes: &[u8]) -> Result<Option<Jwk>, String> {
        if !bytes.trim_ascii_start().starts_with(b"{") {
            return Ok(None);
        }
        let Ok(map) = json::parse_object(bytes, KEY_JSON_DEPTH) else {
            return Ok(None);
        };
        if !map.contains_key("kty") {
            return Ok(None);
        }
        let jwk: Jwk = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| format!("not a usable JWK: {e}"))?;
        if jwk.kty != "oct" {
            return Err(format!(
                "a JWK of kty {:?} is not an HMAC secret (kty \"oct\")",
                jwk.kty
            ));
        }
        Ok(Some(jwk))
    }

    /// True when the JWK carries private key material.
    pub fn is_private(&self) -> bool {
        self.d.is_some() || self.k.is_some()
    }

    /// The public part: private members removed.
    pub fn to_public(&self) -> Jwk {
        Jwk {
            d: None,
            p: None,
            q: None,
            dp: None,
            dq: None,
            qi: None,
            k: None,
            ..self.clone()
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url-encoded. `None` when a required member is
    /// missing or for an unknown `kty`.
    pub fn thumbprint(&self) -> Option<String> {
        // Required members only, in lexicographic order, no whitespace (RFC 7638 section 3.2).
        let canonical = match self.kty.as_str() {
            "RSA" => {
                serde_json::json!({"e": self.e.as_ref()?, "kty": "RSA", "n": self.n.as_ref()?})
            }
            "EC" => serde_json::json!({
                "crv": self.crv.as_ref()?, "kty": "EC", "x": self.x.as_ref()?, "y": self.y.as_ref()?
            }),
            "OKP" => {
                serde_json::json!({"crv": self.crv.as_ref()?, "kty": "OKP", "x": self.x.as_ref()?})
            }
            "oct" => serde_json::json!({"k": self.k.as_ref()?, "kty": "oct"}),
            _ => return None,
        };
        // serde_json's default map is ordered by key, which is exactly RFC 7638's order.
        let text = serde_json::to_vec(&canonical).ok()?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &text);
        Some(b64::encode(digest.as_ref()))
    }
}

/// A JSON Web Key Set: `{"keys": [...]}`. Each member stays raw JSON so that one key jwtd cannot
/// use (an encryption key, an unknown `kty`) does not make the whole set unusable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, in document order.
    pub keys: Vec<serde_json::Value>,
}

impl Jwks {
    /// Parses a JWKS document, refusing duplicate members anywhere in it.
    pub fn from_json(text: &[u8]) -> Result<Jwks, String> {
        let mut map = json::parse_object(text, KEY_JSON_DEPTH)?;
        match map.remove("keys") {
            Some(serde_json::Value::Array(keys)) => Ok(Jwks { keys }),
            Some(_) => Err("\"keys\" is not an array".into()),
            None => Err("no \"keys\" member: not a JWKS document".into()),
        }
    }

    /// A set built from JWKs.
    pub fn from_keys(keys: impl IntoIterator<Item = Jwk>) -> Jwks {
        Jwks {
            keys: keys
                .into_iter()
                .map(|k| serde_json::to_value(k).expect("a Jwk always serializes"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_files_are_raw_bytes_or_an_oct_jwk() {
        assert_eq!(super::Jwk::from_secret_file(b"plain secret\n"), Ok(None));
        assert_eq!(super::Jwk::from_secret_file(b"{not json"), Ok(None));
        assert_eq!(super::Jwk::from_secret_file(b"{\"a\":1}"), Ok(None));
        let jwk = super::Jwk::from_secret_file(b" {\"kty\":\"oct\",\"k\":\"AAAA\"}\n")
            .unwrap()
            .unwrap();
        assert_eq!(jwk.k.as_deref(), Some("AAAA"));
        assert!(super::Jwk::from_secret_file(b"{\"kty\":\"EC\"}").is_err());
    }

    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk = Jwk::from_json(br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#).unwrap();
        assert_eq!(
            jwk.thumbprint().as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn debug_redacts_private_members() {
        let jwk = Jwk {
            kty: "oct".into(),
            k: Some("c2VjcmV0".into()),
            ..Jwk::default()
        };
        let shown = format!("{jwk:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn jwks_needs_keys_array() {
        assert!(Jwks::from_json(br#"{"keys":[]}"#).is_ok());
        assert!(Jwks::from_json(br#"{"key":[]}"#).is_err());
        assert!(Jwks::from_json(br#"{"keys":{}}"#).is_err());
        assert!(Jwks::from_json(br#"{"keys":[],"keys":[]}"#).is_err());
    }
}
