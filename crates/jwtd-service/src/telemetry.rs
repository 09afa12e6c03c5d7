//! Logging and metrics.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Installs the global tracing subscriber: `RUST_LOG` filters (default `info`); every line goes
/// to stderr (with `jwtd serve`'s banner; stdout stays clean); text lines are coloured only
/// when stderr is a terminal, never in files or pipes; JSON lines are one object each, with
/// the event's text under `fields.message` (no other field is named `message`).
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Installs jwtd's Prometheus recorder as the process's global `metrics` recorder, once:
/// later calls return the same handle. `jwtd serve` calls it at start; an embedding process
/// calls it only if it wants jwtd's `/metrics` (see [`crate::AppState::with_metrics`]).
///
/// Fails, without panicking and without touching the recorder in place, when the process
/// already has another one: jwtd's series then go to that recorder, and `/metrics` is left to
/// the embedder.
///
/// Histograms use jwtd's buckets (50 µs to 1 s); the series' help texts are registered; a
/// thread drains the histogram samples every 5 s (they would otherwise grow until a scrape).
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0,
        ])
        .map_err(|e| format!("metrics buckets: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| {
        "another metrics recorder is already installed in this process: jwtd's metrics go to it, \
         and jwtd does not export them itself"
            .to_owned()
    })?;
    metrics::describe_counter!(
        "jwtd_requests_total",
        "Requests by endpoint, issuer, outcome and reason."
    );
    metrics::describe_histogram!(
        "jwtd_request_duration_seconds",
        "Time to answer, by endpoint."
    );
    metrics::describe_gauge!("jwtd_key_fetches_total", "JWKS fetches per remote issuer.");
    metrics::describe_gauge!(
        "jwtd_key_fetch_failures_total",
        "Failed key fetches per remote issuer."
    );
    metrics::describe_gauge!("jwtd_keys", "Keys held per issuer.");
    metrics::describe_gauge!(
        "jwtd_key_age_seconds",
        "Age of the last good key fetch per remote issuer."
    );
    // Histogram samples are kept until drained: without a scrape they would grow with every
    // request. Drain them every few seconds whatever the scrape interval.
    let upkeep = handle.clone();
    let _ = std::thread::Builder::new()
        .name("jwtd-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            upkeep.run_upkeep();
        });
    *installed = Some(handle.clone());
    Ok(handle)
}

/// A short, non-reversible fingerprint of a token for logs: the first 12 hex digits of its
/// SHA-256. Tokens themselves are never logged.
pub fn fingerprint(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// `jwtd_decisions_total{rule, outcome, reason}`: `/auth`'s decisions by rule id (`default`
/// when no rule matched) and reason code, counted when the configuration has rules (without
/// them `jwtd_requests_total` says it all). One set per configuration: a reload starts a new
/// one over the new rules, and the counters keep their values, being keyed by the labels.
#[derive(Debug, Default)]
pub struct DecisionCounters {
    /// The allowed counter of each rule, by index, then the default's: created on first use,
    /// then an increment without a lookup.
    allowed: Vec<OnceLock<metrics::Counter>>,
    /// Refusals, by (rule slot, reason).
    denied: std::sync::RwLock<std::collections::HashMap<(usize, &'static str), metrics::Counter>>,
}

impl DecisionCounters {
    /// Counters for a rule set of `rules` rules.
    pub fn new(rules: usize) -> DecisionCounters {
        DecisionCounters {
            allowed: (0..=rules).map(|_| OnceLock::new()).collect(),
            denied: Default::default(),
        }
    }

    /// Counts one decision: by `rule` (`None`: the default), allowed or refused with `reason`.
    /// Nothing without rules.
    pub fn record(&self, rule: Option<&jwtd_gate::rules::Rule>, denied: Option<jwtd_core::Reason>) {
        if self.allowed.len() <= 1 {
            return;
        }
        let slot = rule.map_or(self.allowed.len() - 1, |r| r.index());
        let id = || rule.map_or("default", |r| r.id()).to_owned();
        let Some(reason) = denied else {
            if let Some(c) = self.allowed.get(slot) {
                c.get_or_init(|| metrics::counter!("jwtd_decisions_total", "rule" => id(), "outcome" => "allowed", "reason" => ""))
                    .increment(1);
            }
            return;
        };
        let key = (slot, reason.as_str());
        if let Some(c) = self.denied.read().expect("lock").get(&key) {
            c.increment(1);
            return;
        }
        let c = metrics::counter!("jwtd_decisions_total", "rule" => id(), "outcome" => "denied", "reason" => key.1);
        c.increment(1);
        self.denied.write().expect("lock").insert(key, c);
    }
}
