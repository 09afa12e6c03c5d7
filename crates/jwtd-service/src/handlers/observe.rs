//! What every verification leaves behind: `jwtd_requests_total` and
//! `jwtd_request_duration_seconds` (handles cached, no allocation on the request path) and a
//! log line, with the token's fingerprint, never the token; rejections are logged at INFO at
//! most once a second ([`LogGate`]).

use super::extract::RequestId;
use crate::issuers::Issuer;
use crate::issuers::ENDPOINTS;
use crate::telemetry::fingerprint;
use jwtd_core::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
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

/// The request series of one service state: `jwtd_requests_total` by endpoint, issuer,
/// outcome and reason, and `jwtd_request_duration_seconds` by endpoint, their handles made once
/// and borrowed on the request path (no allocation, no lock but a read lock for rejections).
///
/// Per state, not per process: a handle made before a recorder is installed stays a no-op for
/// good, and a state that exports metrics is built after the recorder it renders
/// ([`crate::install_metrics`]).
#[derive(Debug)]
pub(crate) struct RequestSeries {
    /// One per `ENDPOINTS` entry, in its order.
    durations: Vec<metrics::Histogram>,
    /// By (endpoint, outcome, reason), then issuer: looked up by `&str`, no allocation.
    counters: RwLock<HashMap<CounterKey, HashMap<String, metrics::Counter>>>,
    /// `{endpoint="proxy", issuer="-", outcome="ok"}`: a proxy request allowed without a token
    /// (a public rule), without the lookup.
    proxy_public_ok: std::sync::OnceLock<metrics::Counter>,
}

type CounterKey = (&'static str, &'static str, &'static str);

impl RequestSeries {
    /// Handles on the recorder installed now (none: no-ops).
    pub(crate) fn new() -> RequestSeries {
        RequestSeries {
            durations: ENDPOINTS
                .iter()
                .map(|e| metrics::histogram!("jwtd_request_duration_seconds", "endpoint" => *e))
                .collect(),
            counters: RwLock::default(),
            proxy_public_ok: std::sync::OnceLock::new(),
        }
    }

    /// Counts, times and logs one request of the reverse proxy (`endpoint="proxy"`): `ok`
    /// (allowed, the upstream's answer passed on), `rejected` with the refusal's reason (logged
    /// as `/auth`'s, with the token's fingerprint), or `failed` with the upstream's
    /// (`upstream_unavailable`, `upstream_timeout`) or the client body's
    /// (`request_body_timeout`, `bad_request_body`) reason (the proxy logs those itself).
    pub(crate) fn observe_proxy(&self, a: &jwtd_gate::source::Answer<'_>) {
        use jwtd_gate::source::{AnswerIssuer, Outcome};
        const ENDPOINT: &str = "proxy";
        let issuer = a.issuer.as_ref().map_or("-", AnswerIssuer::name);
        match (a.outcome, a.issuer) {
            (Outcome::Allowed, Some(AnswerIssuer::Issuer(i))) => match i.ok_counter(ENDPOINT) {
                Some(c) => c.increment(1),
                None => self.counter(ENDPOINT, issuer, "ok", "").increment(1),
            },
            (Outcome::Allowed, None) => self
                .proxy_public_ok
                .get_or_init(|| self.counter(ENDPOINT, issuer, "ok", ""))
                .increment(1),
            (Outcome::Allowed, Some(_)) => self.counter(ENDPOINT, issuer, "ok", "").increment(1),
            (Outcome::Refused(e), _) => self
                .counter(ENDPOINT, issuer, "rejected", e.reason().as_str())
                .increment(1),
            (Outcome::Failed { reason }, _) => self
                .counter(ENDPOINT, issuer, "failed", reason)
                .increment(1),
        }
        let elapsed = a.started.elapsed().as_secs_f64();
        match ENDPOINTS.iter().position(|e| *e == ENDPOINT) {
            Some(i) => self.durations[i].record(elapsed),
            None => metrics::histogram!("jwtd_request_duration_seconds", "endpoint" => ENDPOINT)
                .record(elapsed),
        }
        let rid = a.request_id.as_str();
        match a.outcome {
            Outcome::Allowed => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    tracing::debug!(request_id = rid, endpoint = ENDPOINT, issuer, "forwarded");
                }
            }
            Outcome::Refused(e) => log_rejection(rid, ENDPOINT, issuer, a.token, e),
            Outcome::Failed { .. } => {}
        }
    }

    /// Counts, times and logs one verification by `endpoint`.
    pub(super) fn observe(
        &self,
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
                None => self.counter(endpoint, issuer, label, reason).increment(1),
            },
            _ => self.counter(endpoint, issuer, label, reason).increment(1),
        }
        let elapsed = started.elapsed().as_secs_f64();
        match ENDPOINTS.iter().position(|e| *e == endpoint) {
            Some(i) => self.durations[i].record(elapsed),
            // An endpoint missing from ENDPOINTS is still measured, just without the cached handle.
            None => metrics::histogram!("jwtd_request_duration_seconds", "endpoint" => endpoint)
                .record(elapsed),
        }
        match outcome {
            Ok(()) => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let fp = token.map(fingerprint).unwrap_or_default();
                    tracing::debug!(request_id = rid.as_str(), endpoint, issuer, token = %fp, "verified");
                }
            }
            Err(e) => log_rejection(rid.as_str(), endpoint, issuer, token, e),
        }
    }

    fn counter(
        &self,
        endpoint: &'static str,
        issuer: &str,
        outcome: &'static str,
        reason: &'static str,
    ) -> metrics::Counter {
        let key = (endpoint, outcome, reason);
        if let Some(c) = self
            .counters
            .read()
            .expect("lock")
            .get(&key)
            .and_then(|by_issuer| by_issuer.get(issuer))
        {
            return c.clone();
        }
        let c = metrics::counter!("jwtd_requests_total", "endpoint" => endpoint, "issuer" => issuer.to_owned(), "outcome" => outcome, "reason" => reason);
        self.counters
            .write()
            .expect("lock")
            .entry(key)
            .or_default()
            .insert(issuer.to_owned(), c.clone());
        c
    }
}

/// Logs a rejection, with the token's fingerprint (a SHA-256, computed only when the line is
/// actually logged). Rejections are counted in metrics; logged at INFO at most once a second
/// (with how many were not), the rest at DEBUG, so a flood of junk cannot flood the logs.
fn log_rejection(rid: &str, endpoint: &str, issuer: &str, token: Option<&str>, e: &Error) {
    let fp = || token.map(fingerprint).unwrap_or_default();
    let reason = e.reason().as_str();
    match REJECTIONS_LOGGED.pass() {
        Some(unlogged) => {
            tracing::info!(request_id = rid, endpoint, issuer, token = %fp(), reason, detail = e.message(), unlogged, "rejected")
        }
        None if tracing::enabled!(tracing::Level::DEBUG) => {
            tracing::debug!(request_id = rid, endpoint, issuer, token = %fp(), reason, detail = e.message(), "rejected")
        }
        None => {}
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
