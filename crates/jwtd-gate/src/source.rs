//! [`EngineSource`]: where a front (the Envoy authorizer, the reverse proxy) reads the engine
//! in force, once per request, so a service that swaps its engine on reload is followed
//! without restarting the listener.

use crate::issuers::Issuer;
use crate::request_id::RequestId;
use crate::rules::Rule;
use crate::Engine;
use jwtd_core::{Error, Reason};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

/// Where a front reads the engine in force, once per request.
pub trait EngineSource: Send + Sync + 'static {
    /// A handle on the engine, held for one request.
    type Handle: Deref<Target = Engine> + Send + Sync + 'static;

    /// The engine in force now.
    fn engine(&self) -> Self::Handle;

    /// Called once per request with what decided it (metrics, e.g. `jwtd serve`'s
    /// `jwtd_decisions_total`): the rule (`None`: no rule matched, or none was consulted) and
    /// the reason of a refusal. Nothing by default.
    fn decided(&self, handle: &Self::Handle, rule: Option<&Rule>, refused: Option<Reason>) {
        let _ = (handle, rule, refused);
    }

    /// True when `peer` is a proxy whose forwarded headers (`X-Forwarded-For`, `-Proto`,
    /// `-Host`) a front may keep and extend rather than replace (`jwtd serve`'s
    /// `trusted_proxies`). False by default: every client value is replaced.
    fn trusts_forwarded(&self, handle: &Self::Handle, peer: IpAddr) -> bool {
        let _ = (handle, peer);
        false
    }

    /// True when a client's `X-Request-Id` (1-64 visible ASCII) may be the request's id
    /// ([`RequestId::of`]; `jwtd serve`'s `trust_request_id`). False by default: every request
    /// gets a generated id.
    fn trusts_request_id(&self, handle: &Self::Handle) -> bool {
        let _ = handle;
        false
    }

    /// Called once per answered request, when its response head is ready (metrics and logs,
    /// e.g. `jwtd serve`'s `jwtd_requests_total{endpoint="proxy"}`), after
    /// [`EngineSource::decided`] for a request the engine decided. Nothing by default.
    fn answered(&self, handle: &Self::Handle, answer: &Answer<'_>) {
        let _ = (handle, answer);
    }
}

/// A request a front answered, for [`EngineSource::answered`].
#[derive(Debug)]
pub struct Answer<'a> {
    /// The request's id (sent back, and forwarded, as `X-Request-Id`).
    pub request_id: &'a RequestId,
    /// When the front took the request (its head read).
    pub started: std::time::Instant,
    /// How it ended.
    pub outcome: Outcome<'a>,
    /// The issuer that allowed or refused it, when one was selected: allowed, the issuer
    /// itself; refused, its name.
    pub issuer: Option<AnswerIssuer<'a>>,
    /// The one token the decision looked at (refusals only: never log it, only a
    /// fingerprint).
    pub token: Option<&'a str>,
}

/// The issuer of an [`Answer`].
#[derive(Clone, Copy, Debug)]
pub enum AnswerIssuer<'a> {
    /// The issuer that verified the token of an allowed request.
    Issuer(&'a Issuer),
    /// The name of the issuer that refused.
    Named(&'a str),
}

impl AnswerIssuer<'_> {
    /// The issuer's name.
    pub fn name(&self) -> &str {
        match self {
            AnswerIssuer::Issuer(i) => &i.name,
            AnswerIssuer::Named(n) => n,
        }
    }
}

/// How a front's request ended.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// Allowed and answered by the upstream (its response head passed on; for an answer the
    /// front makes itself, such as protected-resource metadata, answered).
    Allowed,
    /// Refused by the engine (or by the front before it: `bad_path`, `bad_headers`).
    Refused(&'a Error),
    /// Allowed, but not answered by the upstream: a stable reason code
    /// (`upstream_unavailable`, `upstream_timeout`, or the client's own request body:
    /// `request_body_timeout`, `bad_request_body`). The front logs what happened itself, with
    /// the request id.
    Failed {
        /// The reason code.
        reason: &'static str,
    },
}

/// A fixed engine.
impl EngineSource for Arc<Engine> {
    type Handle = Arc<Engine>;

    fn engine(&self) -> Arc<Engine> {
        self.clone()
    }
}
