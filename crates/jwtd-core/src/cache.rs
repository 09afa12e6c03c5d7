//! The verified-token cache: repeated tokens at the cost of a hash and a comparison, without
//! weakening any check.
//!
//! - Identity: an entry answers only for the *exact* token it was verified from, under the same
//!   caller-supplied *scope* (the issuer configuration and the generation of its key set). The
//!   entry keeps the whole token and a lookup compares every byte of it, in constant time, after
//!   the scope. Never the signature alone (ECDSA signatures are malleable) and never a digest
//!   alone: two tokens that differ anywhere never share an entry, with no probability involved.
//!   The cached tokens are bearer credentials held in memory (as requests in flight are);
//!   each is wiped when its entry leaves.
//! - Finding the entry: a 64-bit hash of the token (foldhash, seeded at random once per
//!   process) picks the bucket; it is never shown outside the process, and only successful
//!   verifications are inserted, so a client can neither aim collisions nor fill the table.
//!   The hash leaves the scope out, so a token hashed once ([`TokenLookup`]) can be looked up
//!   in several caches (one per issuer) before anything routes it.
//!   An earlier version keyed entries by a keyed SHA-256 of the token: about 310 ns for a
//!   480-byte token and 550 ns for a 950-byte RS256 one with the CPU's SHA extensions, most of
//!   the cost of a hit; the seeded hash and the constant-time comparison take about 40 + 40 ns
//!   for the 950 bytes.
//! - On a hit, every time rule (`exp`, `nbf`, `iat`, max age, max auth age) is checked again at
//!   the current time; an entry found expired is dropped, and [`TokenCache::purge_expired`]
//!   sweeps the ones nobody presents again. No hit ever outlives the token.
//! - Only successful verifications are cached.
//! - Bounded by entries and by bytes. The bytes are the heap the entries really hold: the
//!   token, what its verified claims and header own, the shared `Verified` and the table's
//!   slots (counted twice: the table grows by doubling and remembers recently evicted keys);
//!   `tests/integration/cache_memory.rs` checks the bound against a counting allocator.
//! - A new scope (configuration reloaded, key set changed) misses everything cached under the
//!   old one, which ages out; [`TokenCache::clear`] drops everything at once.

use crate::error::{Error, Reason};
use crate::policy::{Times, Validation};
use crate::token::{verify_with_times, KeySet, Verified};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Cache bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Most entries held (default 20,000).
    pub max_entries: usize,
    /// Most bytes held: the heap the entries really use, counted per entry as its token, what
    /// its verified claims and header own, room for what a front renders for it
    /// ([`Verified::memo_budget`]: 256 bytes plus half the claims) and a fixed 672 bytes
    /// (default 48 MiB: 20,000 entries of 800-byte RS256 access tokens weigh about 44 MiB, so
    /// the entry bound usually binds first).
    pub max_bytes: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig {
            max_entries: 20_000,
            max_bytes: 48 * 1024 * 1024,
        }
    }
}

/// Cache counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that verified the token.
    pub misses: u64,
    /// Entries pushed out by the bounds (or found expired).
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes held now (approximate).
    pub bytes: u64,
}

#[derive(Clone)]
struct Entry {
    verified: Arc<Verified>,
    times: Times,
    weight: u64,
    /// `exp` plus the policy's leeway: from then on no hit can succeed
    /// ([`TokenCache::purge_expired`] drops it).
    dead_at: f64,
}

/// What an entry is found by: the whole token under its scope, with their seeded hash.
struct Key {
    hash: u64,
    scope: [u64; 2],
    /// Wiped when the entry leaves the cache.
    token: zeroize::Zeroizing<Box<[u8]>>,
}

/// A lookup: the same fields, borrowing the token.
struct Probe<'a> {
    hash: u64,
    scope: [u64; 2],
    token: &'a [u8],
}

impl Probe<'_> {
    fn matches(&self, hash: u64, scope: [u64; 2], token: &[u8]) -> bool {
        // The hash and scope are not secret; the token is, so its bytes are compared in
        // constant time (lengths are public).
        self.hash == hash
            && self.scope == scope
            && self.token.len() == token.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(self.token, token).is_ok()
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::hash::Hash for Probe<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        other.probe().matches(self.hash, self.scope, &self.token)
    }
}

impl Eq for Key {}

impl Key {
    fn probe(&self) -> Probe<'_> {
        Probe {
            hash: self.hash,
            scope: self.scope,
            token: &self.token,
        }
    }
}

impl quick_cache::Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.matches(key.hash, key.scope, &key.token)
    }
}

#[derive(Clone)]
struct Weight {
    min: u64,
}

impl quick_cache::Weighter<Key, Entry> for Weight {
    fn weight(&self, _key: &Key, e: &Entry) -> u64 {
        e.weight.max(self.min)
    }
}

/// Fixed per-entry memory counted on top of what the entry's token and verified claims own on
/// the heap: the shared `Verified` itself, and the table's slot for the key and entry counted
/// twice (the table grows by doubling, and keeps the keys of recently evicted entries).
const ENTRY_OVERHEAD: u64 = (std::mem::size_of::<Verified>()
    + 2 * std::mem::size_of::<usize>()
    + 2 * (std::mem::size_of::<Key>() + std::mem::size_of::<Entry>() + 32))
    as u64;

/// What an entry typically weighs (an 800-byte token, its claims and header, the overhead),
/// for sizing the table.
const TYPICAL_ENTRY: u64 = 1700;

/// The bucket hash, seeded at random once per process (from the system's generator), so a
/// [`TokenLookup`] made by one cache serves every cache of the process.
static HASHER: std::sync::OnceLock<foldhash::quality::SeedableRandomState> =
    std::sync::OnceLock::new();

/// A token, hashed once for any number of lookups (in one cache or several, e.g. one per
/// issuer: the hash is the same for every cache of the process).
#[derive(Clone, Copy)]
pub struct TokenLookup<'a> {
    hash: u64,
    token: &'a str,
}

/// Never shows the token (a bearer credential), only its length.
impl std::fmt::Debug for TokenLookup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLookup")
            .field("token_len", &self.token.len())
            .finish_non_exhaustive()
    }
}

impl<'a> TokenLookup<'a> {
    /// The token.
    pub fn token(&self) -> &'a str {
        self.token
    }

    fn probe(&self, scope: [u64; 2]) -> Probe<'a> {
        Probe {
            hash: self.hash,
            scope,
            token: self.token.as_bytes(),
        }
    }
}

/// A bounded cache of successful verifications, shared by every request (`Sync`).
pub struct TokenCache {
    cache: quick_cache::sync::Cache<Key, Entry, Weight>,
    hasher: &'static foldhash::quality::SeedableRandomState,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// An empty cache. The first one made seeds the process's bucket hash.
    pub fn new(cfg: TokenCacheConfig) -> Result<TokenCache, Error> {
        let hasher = match HASHER.get() {
            Some(h) => h,
            None => {
                let mut seed = [0u8; 16];
                crate::fill_random(&mut seed)?;
                let (a, b) = seed.split_at(8);
                let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
                let (per_hasher, shared) = (word(a), word(b));
                HASHER.get_or_init(|| {
                    // Made once per process, so leaking the 48-byte shared seed is bounded.
                    let shared = Box::leak(Box::new(foldhash::SharedSeed::from_u64(shared)));
                    foldhash::quality::SeedableRandomState::with_seed(per_hasher, shared)
                })
            }
        };
        let max_entries = cfg.max_entries.max(1);
        // Every entry weighs at least bytes/entries, so both bounds hold.
        let min = (cfg.max_bytes / max_entries as u64).max(1);
        // The table also remembers the keys of recently evicted entries ("ghosts", up to half
        // the estimated item count, unweighed): estimating no more entries than the byte bound
        // holds at a typical weight keeps them a small share of it.
        let estimated = (max_entries as u64)
            .min(cfg.max_bytes / TYPICAL_ENTRY)
            .max(1) as usize;
        Ok(TokenCache {
            cache: quick_cache::sync::Cache::with_weighter(
                estimated,
                cfg.max_bytes.max(min),
                Weight { min },
            ),
            hasher,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        })
    }

    /// Hashes `token` for [`TokenCache::cached`] and [`TokenCache::verify_lookup`], here or in
    /// any other cache of the process.
    pub fn lookup<'a>(&self, token: &'a str) -> TokenLookup<'a> {
        use std::hash::BuildHasher;
        TokenLookup {
            hash: self.hasher.hash_one(token.as_bytes()),
            token,
        }
    }

    /// Answers from the cache only: `None` when this exact token was not verified before under
    /// `scope` (nothing is verified and no miss is counted). A hit still checks every time
    /// rule of `validation` at `now`, and drops the entry once the token has expired.
    pub fn cached(
        &self,
        lookup: &TokenLookup<'_>,
        scope: [u64; 2],
        validation: &Validation,
        now: u64,
    ) -> Option<Result<Arc<Verified>, Error>> {
        let k = lookup.probe(scope);
        let e = self.cache.get(&k)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(match validation.check_times(&e.times, now) {
            Ok(()) => Ok(e.verified),
            Err(err) => {
                if err.reason() == Reason::Expired {
                    self.cache.remove(&k);
                }
                Err(err)
            }
        })
    }

    /// Verifies `token` like [`crate::verify`], answering from the cache when this exact token
    /// was verified before under the same `scope`. The caller chooses `scope` so that anything
    /// that changes the answer changes it: typically `[issuer configuration id, key set
    /// generation]`.
    pub fn verify(
        &self,
        scope: [u64; 2],
        keys: &KeySet,
        validation: &Validation,
        token: &str,
        now: u64,
    ) -> Result<Arc<Verified>, Error> {
        self.verify_lookup(&self.lookup(token), scope, keys, validation, now)
    }

    /// [`TokenCache::verify`] for a token already hashed by [`TokenCache::lookup`].
    pub fn verify_lookup(
        &self,
        lookup: &TokenLookup<'_>,
        scope: [u64; 2],
        keys: &KeySet,
        validation: &Validation,
        now: u64,
    ) -> Result<Arc<Verified>, Error> {
        if let Some(answer) = self.cached(lookup, scope, validation, now) {
            return answer;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let token = lookup.token;
        let (verified, times) = verify_with_times(keys, validation, token, now)?;
        let weight = ENTRY_OVERHEAD + token.len() as u64 + verified.heap_bytes() as u64;
        let verified = Arc::new(verified);
        self.cache.insert(
            Key {
                hash: lookup.hash,
                scope,
                token: zeroize::Zeroizing::new(token.as_bytes().into()),
            },
            Entry {
                verified: verified.clone(),
                times,
                weight,
                dead_at: times
                    .exp
                    .map_or(f64::INFINITY, |exp| exp + validation.leeway as f64),
            },
        );
        self.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(verified)
    }

    /// Drops the entry of `token` under `scope`, if any (e.g. once the token is found revoked:
    /// the refusal no longer depends on the revocation list keeping it). Returns whether one
    /// was held.
    pub fn forget(&self, scope: [u64; 2], token: &str) -> bool {
        self.cache
            .remove(&self.lookup(token).probe(scope))
            .is_some()
    }

    /// Drops every entry whose token has expired at `now` (past `exp` and the leeway), so
    /// that entries, and the tokens they keep, do not outlive their tokens even when nobody
    /// presents them again (a hit on an expired entry drops it too). Returns how many went.
    /// The service runs it every 30 seconds.
    pub fn purge_expired(&self, now: u64) -> usize {
        let before = self.cache.len();
        let now = now as f64;
        self.cache.retain(|_, e| now < e.dead_at);
        before.saturating_sub(self.cache.len())
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// Counters.
    pub fn stats(&self) -> TokenCacheStats {
        let entries = self.cache.len() as u64;
        let inserts = self.inserts.load(Ordering::Relaxed);
        TokenCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: inserts.saturating_sub(entries),
            entries,
            bytes: self.cache.weight(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The per-entry overhead the docs state (docs/configuration.md, `TokenCacheConfig`).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_documented_overhead() {
        assert_eq!(super::ENTRY_OVERHEAD, 672);
    }
}
