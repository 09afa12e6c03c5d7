//! # jwtd-gate
//!
//! The decision engine: from a description of a request (method, scheme, host, path, headers,
//! peer) to a decision (allow, with identity headers; or a refusal with everything a transport
//! needs to answer it). Every front — `jwtd serve`'s `/auth` and `/v1/verify`, the tower layer,
//! Envoy ext_authz, the proxy mode — calls the same engine, so the same request gets the same
//! answer everywhere.
//!
//! The engine is sans-I/O apart from key fetching (remote key sources), and depends on no HTTP
//! framework: a request is a [`rules::Target`] (borrowed strings and an [`http::HeaderMap`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
#[doc(hidden)]
pub mod conformance;
pub mod decide;
pub mod dpop;
pub mod env;
pub mod extract;
pub mod issuers;
pub mod mtls;
pub mod refusal;
pub mod request_id;
pub mod resource;
pub mod rules;
pub mod source;

pub use decide::{Allowed, Decision, Denial, Engine, Proven, Request};
pub use env::Env;
pub use mtls::ClientCert;
pub use request_id::RequestId;
pub use source::EngineSource;
