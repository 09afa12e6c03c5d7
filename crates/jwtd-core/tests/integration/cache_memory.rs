//! The verified-token cache's byte bound holds for the memory it really uses: a counting
//! allocator measures the heap the cache holds while distinct tokens stream through it, small
//! ones (where the fixed overhead per entry dominates) and typical OIDC access tokens. It counts
//! only what the measuring thread allocates and frees (the cache works on its caller's thread),
//! so the other tests of this binary, running on other threads meanwhile, are not counted.

use jwtd_core::{Algorithm, KeySet, SigningKey, TokenCache, TokenCacheConfig, Validation};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes this thread has allocated minus those it has freed, while [`COUNTING`] is on.
    /// Const-initialised and without a destructor: reading it never allocates.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Whether this thread's allocations are counted (only [`stream`]'s thread turns it on).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Adds `delta` to this thread's count when it counts.
fn count(delta: isize) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = LIVE.try_with(|l| l.set(l.get() + delta));
        }
    });
}

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a thread-local
// counter is added (which never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            count(l.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        count(-(l.size() as isize));
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            count(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NOW: u64 = 1_800_000_000;

/// What this thread holds of the heap since it started counting.
fn live() -> isize {
    LIVE.with(Cell::get)
}

/// What [`stream`] saw.
struct Held {
    /// The most heap the cache held at a checkpoint (every 1,000 tokens, none in flight).
    most: isize,
    /// Its entries then.
    entries: u64,
    /// The tokens' length.
    token_len: usize,
}

/// Streams `n` distinct tokens with `claims(i)` through a cache bounded by `cfg`.
fn stream(cfg: TokenCacheConfig, n: usize, claims: &dyn Fn(usize) -> serde_json::Value) -> Held {
    let k = SigningKey::hmac(&[3u8; 32], Algorithm::HS256, Some("k".into())).unwrap();
    let keys = KeySet::new().with(k.verifying_key());
    let v = Validation::new(&[Algorithm::HS256])
        .issuer("https://issuer.example.com/")
        .audience("https://api.example.com");
    COUNTING.with(|on| on.set(true));
    let before = live();
    let cache = TokenCache::new(cfg).unwrap();
    let (mut most, mut entries, mut len) = (0, 0, 0);
    for i in 0..n {
        let t = jwtd_core::sign(&k, claims(i).as_object().unwrap(), None).unwrap();
        len = t.len();
        cache.verify([1, 0], &keys, &v, &t, NOW).unwrap();
        if i % 1_000 == 999 {
            drop(t);
            if live() - before > most {
                most = live() - before;
                entries = cache.stats().entries;
            }
        }
    }
    let s = cache.stats();
    assert!(
        s.evictions as usize >= n / 2,
        "the bound was reached: {s:?}"
    );
    drop(cache);
    // Everything the cache held is given back.
    assert!(live() - before < 4096, "{} bytes left", live() - before);
    COUNTING.with(|on| on.set(false));
    Held {
        most,
        entries,
        token_len: len,
    }
}

#[test]
fn the_byte_bound_holds_for_the_heap_the_cache_really_uses() {
    let n: usize = std::env::var("JWTD_CACHE_TEST_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
        .max(20_000);
    let small = |i: usize| {
        json!({"iss": "https://issuer.example.com/", "aud": "https://api.example.com",
               "sub": format!("u{i}"), "exp": NOW + 600})
    };
    let typical = |i: usize| {
        json!({
            "iss": "https://issuer.example.com/", "sub": format!("auth0|{i:024x}"),
            "aud": ["https://api.example.com", "https://issuer.example.com/userinfo"],
            "iat": NOW - 60, "exp": NOW + 3600, "azp": "8g3ZP9x0LrZVJ6Wq6Yf2ZxYkQ1s",
            "scope": "openid profile email read:orders write:orders",
            "https://example.com/claims/roles": ["admin", "billing"],
            "https://example.com/claims/tenant": "acme-corporation"
        })
    };
    for (name, claims) in [
        ("small", &small as &dyn Fn(usize) -> serde_json::Value),
        ("typical", &typical),
    ] {
        // Bound by bytes (entries could hold far more): the heap stays under the bound.
        let by_bytes = TokenCacheConfig {
            max_entries: 1_000_000,
            max_bytes: 1024 * 1024,
        };
        let h = stream(by_bytes, n, claims);
        let per_entry = h.most as f64 / h.entries as f64;
        eprintln!(
            "{name} ({}-byte tokens), 1 MiB bound: at most {} bytes held, {} entries, {per_entry:.0} bytes each",
            h.token_len, h.most, h.entries
        );
        assert!(
            h.most as u64 <= by_bytes.max_bytes,
            "{name}: {} bytes",
            h.most
        );
        // Bound by entries (the bytes far away): the heap is that many entries' worth, however
        // many distinct tokens went through (the keys remembered of evicted entries are
        // bounded too).
        let by_entries = TokenCacheConfig {
            max_entries: 2_000,
            max_bytes: 64 * 1024 * 1024,
        };
        let h = stream(by_entries, n.min(50_000), claims);
        eprintln!(
            "{name}, 2,000-entry bound: at most {} bytes held, {} entries",
            h.most, h.entries
        );
        assert!(h.entries <= 2_000, "{name}: {} entries", h.entries);
        let allowed = 2_000.0 * per_entry * 1.15;
        assert!((h.most as f64) <= allowed, "{name}: {} bytes", h.most);
    }
}
