//! What every verification leaves behind: `jwtd_requests_total` and
//! `jwtd_request_duration_seconds` (handles cached, no allocation on the request path) and a
//! log line, with the token's fingerprint, never the token; rejections are logged at INFO at
//! most once a second ([`LogGate`]).

use super::extract::RequestId;
use crate::issuers::Issuer;
use crate::telemetry::fingerprint;
use jwtd_core::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Who answered a request, for metrics and logs.
#[derive(Clone, Copy)]
pub(super) enum By<'a> {
    /// No issuer was selected.
    Nobody,
    /// The issuer, by name (rejections).
    Named(Option<&'a str>),
    /// The issuer itself (successes: its counters are cached on it).
    Issuer(&'a Issuer),
}

/// Counts, times and logs one verification by `endpoint`.
pub(super) fn observe(
    endpoint: &'static str,
    started: Instant,
    by: By<'_>,
    outcome: Result<(), &Error>,
    rid: &RequestId,
    token: Option<&str>,
) {
    let (label, reason) = match outcome {
        Ok(()) => ("ok", ""),
        Err(e) => ("rejected", e.reason().as_str()),
    };
    let issuer = match by {
        By::Nobody | By::Named(None) => "-",
        By::Named(Some(name)) => name,
        By::Issuer(i) => &i.name,
    };
    match (by, outcome) {
        (By::Issuer(i), Ok(())) => match i.ok_counter(endpoint) {
            Some(c) => c.increment(1),
            None => counter(endpoint, issuer, label, reason).increment(1),
        },
        _ => counter(endpoint, issuer, label, reason).increment(1),
    }
    let elapsed = started.elapsed().as_secs_f64();
    match histogram(endpoint) {
        Some(h) => h.record(elapsed),
        // An endpoint missing from ENDPOINTS is still measured, just without the cached handle.
        None => metrics::histogram!("jwtd_request_duration_seconds", "endpoint" => endpoint)
            .record(elapsed),
    }
    // The fingerprint (a SHA-256) is computed only when the line is actually logged.
    let fp = || token.map(fingerprint).unwrap_or_default();
    match outcome {
        Ok(()) => {
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(request_id = rid.as_str(), endpoint, issuer, token = %fp(), "verified");
            }
        }
        Err(e) => {
            // Rejections are counted in metrics; logged at INFO at most once a second (with how
            // many were not), the rest at DEBUG, so a flood of junk cannot flood the logs.
            match REJECTIONS_LOGGED.pass() {
                Some(unlogged) => {
                    tracing::info!(request_id = rid.as_str(), endpoint, issuer, token = %fp(), reason, detail = e.message(), unlogged, "rejected")
                }
                None if tracing::enabled!(tracing::Level::DEBUG) => {
                    tracing::debug!(request_id = rid.as_str(), endpoint, issuer, token = %fp(), reason, detail = e.message(), "rejected")
                }
                None => {}
            }
        }
    }
}

/// Lets one log line through per `every` seconds and counts the ones held back: what keeps a
/// flood of bad requests from flooding the logs.
pub(super) struct LogGate {
    last: AtomicU64,
    held: AtomicU64,
    every: u64,
}

impl LogGate {
    pub(super) const fn new(every: u64) -> LogGate {
        LogGate {
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
            every,
        }
    }

    /// `Some(lines held back since the last one let through)`, or `None` (counted as held).
    pub(super) fn pass(&self) -> Option<u64> {
        let now = jwtd_core::unix_now();
        let last = self.last.load(Ordering::Relaxed);
        if now >= last.saturating_add(self.every)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.held.swap(0, Ordering::Relaxed))
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Rejections logged at INFO: at most one a second.
static REJECTIONS_LOGGED: LogGate = LogGate::new(1);

type CounterKey = (&'static str, &'static str, &'static str);

fn counter(
    endpoint: &'static str,
    issuer: &str,
    outcome: &'static str,
    reason: &'static str,
) -> metrics::Counter {
    use std::collections::HashMap;
    use std::sync::{OnceLock, RwLock};
    // By (endpoint, outcome, reason), then issuer: looked up by `&str`, no allocation.
    type Counters = HashMap<CounterKey, HashMap<String, metrics::Counter>>;
    static CACHE: OnceLock<RwLock<Counters>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (endpoint, outcome, reason);
    if let Some(c) = cache
        .read()
        .expect("lock")
        .get(&key)
        .and_then(|by_issuer| by_issuer.get(issuer))
    {
        return c.clone();
    }
    let c = metrics::counter!("jwtd_requests_total", "endpoint" => endpoint, "issuer" => issuer.to_owned(), "outcome" => outcome, "reason" => reason);
    cache
        .write()
        .expect("lock")
        .entry(key)
        .or_default()
        .insert(issuer.to_owned(), c.clone());
    c
}

fn histogram(endpoint: &'static str) -> Option<&'static metrics::Histogram> {
    use crate::issuers::ENDPOINTS;
    use std::sync::OnceLock;
    // One handle per endpoint, created once and borrowed: no lock, no reference count traffic
    // on the request path.
    static HANDLES: OnceLock<Vec<metrics::Histogram>> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        ENDPOINTS
            .iter()
            .map(|e| metrics::histogram!("jwtd_request_duration_seconds", "endpoint" => *e))
            .collect()
    });
    let i = ENDPOINTS.iter().position(|e| *e == endpoint)?;
    Some(&handles[i])
}
