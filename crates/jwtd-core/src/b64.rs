//! Strict, canonical base64url (RFC 7515 section 2): no padding, no `+`/`/`, no whitespace,
//! no stray trailing bits. Exactly one encoding is accepted for any byte string.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes canonical unpadded base64url; `None` for anything else.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    ENGINE.decode(input).ok()
}

/// Decodes into `out` (cleared first); false when the input is not canonical base64url.
pub fn decode_into(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    ENGINE.decode_vec(input, out).is_ok()
}

/// Decodes into `out`, returning the length; `None` when not canonical or too long for `out`.
pub fn decode_slice(input: &[u8], out: &mut [u8]) -> Option<usize> {
    ENGINE.decode_slice(input, out).ok()
}

/// Encodes as unpadded base64url.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    ENGINE.encode(input)
}

/// Appends the unpadded base64url encoding of `input` to `out`.
pub fn encode_to(input: impl AsRef<[u8]>, out: &mut String) {
    ENGINE.encode_string(input, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_canonical_forms() {
        assert_eq!(decode(b"AQ").as_deref(), Some(&[1u8][..]));
        assert!(decode(b"AQ==").is_none(), "padding");
        assert!(decode(b"AR").is_none(), "trailing bits");
        assert!(decode(b"A+8").is_none(), "standard alphabet");
        assert!(decode(b"A/8").is_none(), "standard alphabet");
        assert!(decode(b"AQ ").is_none(), "whitespace");
        assert!(decode(b"A").is_none(), "impossible length");
        assert_eq!(decode(b"").as_deref(), Some(&[][..]));
    }
}
