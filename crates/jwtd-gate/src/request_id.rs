//! Request ids: the one generator of `jwtd serve`'s endpoints and the reverse proxy, so an id
//! names one request of the process whichever listener took it.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};

/// `X-Request-Id`: the header a request id is read from (when trusted) and sent back in.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id taken, bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;

/// The counter behind generated ids, shared by every front of the process.
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A request id: the client's `X-Request-Id` when trusted (`trust_request_id`) and it is 1-64
/// visible ASCII characters, else `jwtd-<counter in hex>`. Kept as the header value it is sent
/// as (no copy of the client's, no formatting machinery for a generated one: this runs on every
/// request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id of a request with `headers`: the client's when `trusted` and acceptable, else a
    /// new one.
    pub fn of(headers: &HeaderMap, trusted: bool) -> RequestId {
        if trusted {
            if let Some(v) = headers
                .get(&X_REQUEST_ID)
                .filter(|v| acceptable(v.as_bytes()))
            {
                return RequestId(v.clone());
            }
        }
        RequestId::next()
    }

    /// A new id, `jwtd-<n in hex>`.
    pub fn next() -> RequestId {
        RequestId::generated(COUNTER.fetch_add(1, Ordering::Relaxed))
    }

    /// `jwtd-<n in hex>`.
    fn generated(n: u64) -> RequestId {
        let mut buf = *b"jwtd-0000000000000000";
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in 0..digits {
            buf[5 + digits - 1 - i] = b"0123456789abcdef"[(n >> (4 * i)) as usize & 0xf];
        }
        RequestId(HeaderValue::from_bytes(&buf[..5 + digits]).expect("visible ASCII"))
    }

    /// The id, for logs.
    pub fn as_str(&self) -> &str {
        // Both kinds are visible ASCII, so this never falls back.
        self.0.to_str().unwrap_or("")
    }

    /// The id as the header value it is sent as.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as the header value it is sent as, taken.
    pub fn into_header_value(self) -> HeaderValue {
        self.0
    }
}

/// 1-64 visible ASCII characters.
fn acceptable(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_CLIENT_ID_BYTES && b.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_the_counter_in_hex() {
        for n in [0, 1, 9, 10, 15, 16, 0xabc, 1 << 32, u64::MAX - 1, u64::MAX] {
            assert_eq!(RequestId::generated(n).as_str(), format!("jwtd-{n:x}"));
        }
    }

    #[test]
    fn a_client_id_is_taken_only_when_trusted_and_acceptable() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-1"));
        assert_eq!(RequestId::of(&h, true).as_str(), "abc-1");
        assert!(RequestId::of(&h, false).as_str().starts_with("jwtd-"));
        for bad in ["", "a b", &"x".repeat(65)] {
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            assert!(
                RequestId::of(&h, true).as_str().starts_with("jwtd-"),
                "{bad:?}"
            );
        }
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(64)).unwrap(),
        );
        assert_eq!(RequestId::of(&h, true).as_str().len(), 64);
    }
}
