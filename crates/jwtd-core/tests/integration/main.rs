//! jwtd-core's integration tests, one module per subject, in one test binary (one link for the
//! whole crate; `cargo test -p jwtd-core --test integration negative::` runs one module).

mod cache;
mod cache_memory;
mod dpop_peer;
mod dpop_reasons;
mod fuzz_seeds;
mod negative;
mod properties;
mod revocation;
mod vectors;
