//! jwtd-service's integration tests, one module per subject, in one test binary (one link for
//! the whole crate; `cargo test -p jwtd-service --test integration signing::` runs one module).
//! The tests run at once on the threads of one process: each parses its configuration in its
//! own environment ([`jwtd_service::Env`], never `std::env::set_var`), and the metrics recorder
//! is the process's, shared by every instance.

mod common;

mod cache;
mod cluster;
mod config;
mod recipes;
mod resource;
mod revocation;
mod service;
mod shared_store;
mod signing;
