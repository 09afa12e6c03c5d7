//! [`EngineSource`]: where a front (the Envoy authorizer, the reverse proxy) reads the engine
//! in force, once per request, so a service that swaps its engine on reload is followed
//! without restarting the listener.

use crate::rules::Rule;
use crate::Engine;
use jwtd_core::Reason;
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
}

/// A fixed engine.
impl EngineSource for Arc<Engine> {
    type Handle = Arc<Engine>;

    fn engine(&self) -> Arc<Engine> {
        self.clone()
    }
}
