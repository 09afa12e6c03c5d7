//! The key encryption key and sealing of private keys (AES-256-GCM, aws-lc-rs).

use crate::StoreError;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use zeroize::Zeroizing;

/// Environment variable holding the KEK (32 bytes, base64url).
pub const KEK_ENV: &str = "JWTD_KEK";

/// The key encryption key.
pub struct Kek {
    key: LessSafeKey,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// A KEK as text: base64url without padding (what jwtd writes), or standard base64 with or
/// without padding (what `openssl rand -base64 32` prints).
fn decode_kek(text: &str) -> Option<Vec<u8>> {
    let url: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    jwtd_core::b64::decode(url.as_bytes())
}

fn aad(kid: &str, alg: &str) -> String {
    format!("jwtd/key/v1|{kid}|{alg}")
}

impl Kek {
    /// A KEK from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| StoreError("the key encryption key must be 32 bytes".into()))?;
        Ok(Kek {
            key: LessSafeKey::new(unbound),
        })
    }

    /// The KEK from the process's `JWTD_KEK`, else from `file`: [`Kek::load_or_create_with`]
    /// with the value of [`KEK_ENV`] in the process environment (when it is Unicode).
    pub fn load_or_create(file: &Path) -> Result<(Kek, bool), StoreError> {
        let from_env = std::env::var(KEK_ENV).ok().map(Zeroizing::new);
        Kek::load_or_create_with(from_env.as_deref().map(String::as_str), file)
    }

    /// The KEK from `from_env` (the value of `JWTD_KEK` in the environment the caller reads,
    /// base64url or standard base64), else from `file`; when neither exists, a new one is
    /// generated into `file` with mode 0600, and a warning says so. Returns the KEK and whether
    /// it was generated.
    pub fn load_or_create_with(
        from_env: Option<&str>,
        file: &Path,
    ) -> Result<(Kek, bool), StoreError> {
        if let Some(v) = from_env {
            let raw = Zeroizing::new(decode_kek(v.trim()).ok_or_else(|| {
                StoreError(format!(
                    "{KEK_ENV} is not base64 (make one with `openssl rand -base64 32`)"
                ))
            })?);
            return Ok((Kek::from_bytes(&raw)?, false));
        }
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let mode = std::fs::metadata(file)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(StoreError(format!(
                        "{} is readable by others (mode {mode:o}); chmod 600 it",
                        file.display()
                    )));
                }
                let raw =
                    Zeroizing::new(decode_kek(text.trim()).ok_or_else(|| {
                        StoreError(format!("{} is not base64url", file.display()))
                    })?);
                Ok((Kek::from_bytes(&raw)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = Zeroizing::new([0u8; 32]);
                jwtd_core::fill_random(&mut raw[..]).map_err(|e| StoreError(e.to_string()))?;
                let text = Zeroizing::new(jwtd_core::b64::encode(&raw[..]) + "\n");
                crate::fsutil::write_atomic(
                    file,
                    text.as_bytes(),
                    0o600,
                    crate::fsutil::Replace::Never,
                )
                .map_err(|e| StoreError(format!("cannot create {}: {e}", file.display())))?;
                tracing::warn!(
                    path = %file.display(),
                    "no key encryption key given ({KEK_ENV} unset): generated one next to the data; \
                     keep it apart from backups of the store, or set {KEK_ENV}"
                );
                Ok((Kek::from_bytes(&raw[..])?, true))
            }
            Err(e) => Err(StoreError(format!("cannot read {}: {e}", file.display()))),
        }
    }

    /// Seals `plaintext` for key `kid`/`alg`; returns (nonce, ciphertext with tag).
    pub fn seal(
        &self,
        kid: &str,
        alg: &str,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        jwtd_core::fill_random(&mut nonce).map_err(|e| StoreError(e.to_string()))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kid, alg).as_bytes()),
                &mut buf,
            )
            .map_err(|_| StoreError("sealing failed".into()))?;
        Ok((nonce.to_vec(), buf))
    }

    /// Opens a sealed key; fails when the row was altered, moved to another kid or algorithm,
    /// or sealed under another KEK.
    pub fn open(
        &self,
        kid: &str,
        alg: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let bad = || {
            StoreError(format!(
                "key {kid:?} failed to decrypt: the stored row was altered or swapped, or the key encryption key is wrong; it will not be used"
            ))
        };
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kid, alg).as_bytes()),
                &mut buf,
            )
            .map_err(|_| bad())?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    /// Issue 15: `JWTD_KEK` (and the KEK file) take the output of `openssl rand -base64 32`
    /// (standard alphabet, padded) as well as jwtd's own base64url.
    #[test]
    fn a_kek_may_be_standard_or_url_safe_base64() {
        let raw: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(250))
            .collect();
        let std_b64 = "+v8kSW6TuN0CJ0xxlrvgBSpPdJm+4wgtUnecwea/MDU=";
        let url_b64 = jwtd_core::b64::encode(&raw);
        assert_eq!(super::decode_kek(&url_b64).as_deref(), Some(&raw[..]));
        let decoded = super::decode_kek(std_b64).expect("standard base64");
        assert_eq!(decoded.len(), 32);
        assert_eq!(
            jwtd_core::b64::encode(&decoded),
            std_b64
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_")
        );
        assert!(super::decode_kek("not base64!").is_none());
    }
}
