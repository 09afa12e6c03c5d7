//! jwtd-service's integration tests, one module per subject, in one test binary (one link for
//! the whole crate; `cargo test -p jwtd-service --test integration signing::` runs one module).

mod common;

mod cache;
mod cluster;
mod recipes;
mod revocation;
mod service;
mod shared_store;
mod signing;
