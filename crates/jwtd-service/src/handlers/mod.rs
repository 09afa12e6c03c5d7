//! HTTP endpoints.

use crate::issuers::{Issuer, Keys};
use crate::telemetry::{fingerprint, metrics_handle};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use jwtd_core::{Error, Reason, Verified};
use jwtd_gate::extract::{extract, extract_ref};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The service's routes. The endpoints that read a body (`POST /v1/verify`, `/introspect`,
/// `/v1/tokens`, `/v1/revocations`) take at most `[server] max_request_body` bytes (413 past
/// it); the others never read theirs. `/v1/verify` and `/v1/tokens/{token}` answer
/// cross-origin requests from the `[cors]` origins (see `CorsSettings`).
pub fn router(state: Arc<AppState>) -> Router {
    metrics_handle();
    let limit = DefaultBodyLimit::max(state.runtime().config.server.max_request_body);
    Router::new()
        .route(
            "/v1/verify",
            get(verify)
                .post(verify_post)
                .layer(limit)
                .layer(from_fn_with_state(state.clone(), cors_get_post)),
        )
        .route(
            "/v1/tokens/{token}",
            get(token_path).layer(from_fn_with_state(state.clone(), cors_get)),
        )
        .route("/auth", any(forward_auth))
        // Envoy's ext_authz appends the original path to its path_prefix.
        .route("/auth/{*original}", any(forward_auth))
        .route("/introspect", post(introspect).layer(limit))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin_reload))
        .route("/admin/status", get(admin_status))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/v1/tokens", post(mint).layer(limit))
        .route(
            "/v1/revocations",
            post(revoke).get(revocation_status).layer(limit),
        )
        .with_state(state)
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

async fn cors_get_post(state: State<Arc<AppState>>, req: Request, next: Next) -> Response {
    cors(state, req, next, "GET, POST").await
}

async fn cors_get(state: State<Arc<AppState>>, req: Request, next: Next) -> Response {
    cors(state, req, next, "GET").await
}

/// The headers a page may send on a cross-origin request (all that jwtd reads from one).
const CORS_ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("authorization, content-type");

/// The answer's headers a page may read: the challenge, the request id, the retry delay.
const CORS_EXPOSE_HEADERS: HeaderValue =
    HeaderValue::from_static("www-authenticate, x-request-id, retry-after");

/// CORS for one route (`methods`: its methods but `OPTIONS`), per `[cors]`, read at each
/// request. Without `[cors]` the route answers as if this layer were not there (a preflight
/// gets 405). With it, every answer carries `Vary: Origin`, and when the request's one
/// `Origin` is allowed:
/// - a preflight (`OPTIONS` with `Access-Control-Request-Method` naming one of `methods`) is
///   answered 204 with `Access-Control-Allow-Origin` (that origin), `-Allow-Methods`,
///   `-Allow-Headers` (`authorization, content-type`), `-Max-Age` and, with
///   `allow_credentials`, `-Allow-Credentials: true`;
/// - any other answer gets `Access-Control-Allow-Origin`, `-Expose-Headers`
///   (`www-authenticate, x-request-id, retry-after`) and `-Allow-Credentials` likewise.
///
/// A request from an origin not allowed, or a preflight for another method, gets no
/// `Access-Control-*` header at all (a preflight then gets the route's 405).
async fn cors(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
    methods: &'static str,
) -> Response {
    let rt = state.runtime();
    let Some(cors) = &rt.config.cors else {
        drop(rt);
        return next.run(req).await;
    };
    let mut origins = req.headers().get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (Some(o), None) if cors.allows(o.as_bytes()) => Some(o.clone()),
        _ => None,
    };
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| methods.split(", ").any(|x| x == m));
    // An OPTIONS request that is not a preflight this route accepts gets no CORS headers.
    let origin = origin.filter(|_| preflight || req.method() != axum::http::Method::OPTIONS);
    let credentials = cors.allow_credentials;
    let mut r = match &origin {
        Some(_) if preflight => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS);
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(cors.max_age.0),
            );
            r
        }
        _ => {
            drop(rt);
            let mut r = next.run(req).await;
            if origin.is_some() {
                r.headers_mut()
                    .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE_HEADERS);
            }
            r
        }
    };
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        if credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
    r
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id: the client's `X-Request-Id` when the configuration trusts it
/// (`trust_request_id`) and it is 1-64 visible ASCII characters, else `jwtd-<counter in hex>`. Kept as the header value it is sent back as (no copy of the
/// client's, no formatting machinery for ours: this runs on every request).
struct Rid(HeaderValue);

impl Rid {
    fn as_str(&self) -> &str {
        // Both kinds are visible ASCII, so this never falls back.
        self.0.to_str().unwrap_or("")
    }
}

fn request_id(headers: &HeaderMap, state: &AppState) -> Rid {
    if !state.runtime_guard().config.trust_request_id {
        return generated_id(REQUEST_IDS.fetch_add(1, Ordering::Relaxed));
    }
    if let Some(v) = headers.get(&X_REQUEST_ID).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 64 && b.iter().all(u8::is_ascii_graphic)
    }) {
        return Rid(v.clone());
    }
    generated_id(REQUEST_IDS.fetch_add(1, Ordering::Relaxed))
}

/// `jwtd-<n in hex>`.
fn generated_id(n: u64) -> Rid {
    let mut buf = *b"jwtd-0000000000000000";
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        buf[5 + digits - 1 - i] = b"0123456789abcdef"[(n >> (4 * i)) as usize & 0xf];
    }
    Rid(HeaderValue::from_bytes(&buf[..5 + digits]).expect("visible ASCII"))
}

/// Verifies with the issuer the token's `iss` selects.
async fn check(
    state: &AppState,
    token: &str,
) -> Result<(Arc<Issuer>, Arc<Verified>), (Option<String>, Error)> {
    state
        .runtime()
        .engine
        .issuers
        .verify(token, jwtd_core::unix_now())
        .await
}

/// RFC 6750 `error_description` allows `%x20-21 / %x23-5B / %x5D-7E` only.
/// The answer to a rejection, from the one mapping in `jwtd_core::Reason`
/// ([`Reason::http_status`], [`Reason::bearer_error`], [`Reason::challenge_error`],
/// [`Reason::retry_after`]): 401 `invalid_token`, 403 `insufficient_scope`, 400
/// `invalid_request` (several tokens) or 503 `temporarily_unavailable` (keys or revocation list
/// unavailable, with `Retry-After`); a JSON body `{"error", "reason", "message"}` and
/// `WWW-Authenticate`, which names the error for the three RFC 6750 codes and is a bare
/// `Bearer realm="jwtd"` for a missing token and a 503.
pub fn bearer_error(e: &Error) -> Response {
    let answer = jwtd_gate::refusal::http(e);
    let mut r = (answer.status, answer.body).into_response();
    r.headers_mut().extend(answer.headers);
    r
}

/// [`bearer_error`] with the request id.
fn error_response(e: &Error, rid: &Rid) -> Response {
    let mut r = bearer_error(e);
    set_request_id(r.headers_mut(), rid);
    r
}

fn set_request_id(h: &mut HeaderMap, rid: &Rid) {
    h.insert(X_REQUEST_ID, rid.0.clone());
}

/// Who answered a request, for metrics and logs.
#[derive(Clone, Copy)]
enum By<'a> {
    /// No issuer was selected.
    Nobody,
    /// The issuer, by name (rejections).
    Named(Option<&'a str>),
    /// The issuer itself (successes: its counters are cached on it).
    Issuer(&'a Issuer),
}

fn observe(
    endpoint: &'static str,
    started: Instant,
    by: By<'_>,
    outcome: Result<(), &Error>,
    rid: &Rid,
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
struct LogGate {
    last: AtomicU64,
    held: AtomicU64,
    every: u64,
}

impl LogGate {
    const fn new(every: u64) -> LogGate {
        LogGate {
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
            every,
        }
    }

    /// `Some(lines held back since the last one let through)`, or `None` (counted as held).
    fn pass(&self) -> Option<u64> {
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

fn missing() -> Error {
    Error::new(Reason::MissingToken, "no token in the request (Authorization: Bearer, or the configured cookie or query parameter)")
}

/// Shared body of `/v1/verify` (`with_header`: 200 `{"issuer", "iss", "header", "claims"}`)
/// and `/v1/tokens/{token}` (200 with the claims alone).
async fn verify_token(
    state: &AppState,
    endpoint: &'static str,
    token: Option<String>,
    rid: &Rid,
    with_header: bool,
) -> Response {
    let started = Instant::now();
    let Some(token) = token else {
        let e = missing();
        observe(endpoint, started, By::Nobody, Err(&e), rid, None);
        return error_response(&e, rid);
    };
    match check(state, &token).await {
        Ok((issuer, v)) => {
            observe(
                endpoint,
                started,
                By::Issuer(&issuer),
                Ok(()),
                rid,
                Some(&token),
            );
            let body = if with_header {
                // `issuer`: the configured issuer's name; `iss`: the token's own `iss` claim
                // (null when the token has none, or one that is not a string).
                format!(
                    "{{\"issuer\":{},\"iss\":{},\"header\":{},\"claims\":{}}}",
                    Value::from(issuer.name.as_str()),
                    Value::from(v.iss()),
                    v.header.json(),
                    v.claims_json()
                )
            } else {
                v.claims_json().to_owned()
            };
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, JSON);
            set_request_id(r.headers_mut(), rid);
            r
        }
        Err((issuer, e)) => {
            observe(
                endpoint,
                started,
                By::Named(issuer.as_deref()),
                Err(&e),
                rid,
                Some(&token),
            );
            error_response(&e, rid)
        }
    }
}

async fn verify(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let rid = request_id(req.headers(), &state);
    match extract(
        req.headers(),
        req.uri().query(),
        &state.runtime().config.tokens,
    ) {
        Ok(token) => verify_token(&state, "verify", token, &rid, true).await,
        Err(e) => refuse_request(&e, &rid),
    }
}

/// A request refused before any token was verified (several tokens).
fn refuse_request(e: &Error, rid: &Rid) -> Response {
    observe("verify", Instant::now(), By::Nobody, Err(e), rid, None);
    error_response(e, rid)
}

async fn verify_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let rid = request_id(&headers, &state);
    let token = match extract(&headers, uri.query(), &state.runtime().config.tokens) {
        Ok(t) => t,
        Err(e) => return refuse_request(&e, &rid),
    };
    // Or a JSON body {"token": "..."}; not both.
    let in_body = serde_json::from_slice::<Map<String, Value>>(&body)
        .ok()
        .and_then(|m| m.get("token").and_then(Value::as_str).map(str::to_owned));
    let token = match (token, in_body) {
        (Some(_), Some(_)) => {
            return refuse_request(
                &Error::new(
                    Reason::MultipleTokens,
                    "the request carries more than one token: send exactly one token, one way",
                ),
                &rid,
            )
        }
        (t, b) => t.or(b),
    };
    verify_token(&state, "verify", token, &rid, true).await
}

async fn token_path(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let rid = request_id(&headers, &state);
    verify_token(&state, "tokens", Some(token), &rid, false).await
}

/// The request the proxy is asking about, for rule matching. From a trusted proxy
/// (`trusted_proxies`, default loopback) the forwarded headers are believed: nginx's
/// `X-Original-Method` / `X-Original-URI` (set in the documented snippet), Traefik's and
/// Caddy's `X-Forwarded-Method` / `-Uri` / `-Host`, and Envoy's HTTP ext_authz, which appends
/// the original path to `/auth`. From anyone else they are ignored and the `/auth` request
/// itself is what is matched (so a rule set can never be steered by a client that reaches jwtd
/// directly).
fn original_request<'a>(req: &'a Request, trusted: bool) -> jwtd_gate::Request<'a> {
    let headers = req.headers();
    let get = |names: &[&str]| {
        names.iter().find_map(|n| {
            let mut all = headers.get_all(*n).iter();
            // Exactly one value: two could be read differently by two parsers.
            match (all.next(), all.next()) {
                (Some(v), None) => v.to_str().ok(),
                _ => None,
            }
        })
    };
    let own_path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(req.uri().host())
        .unwrap_or("");
    if !trusted {
        return jwtd_gate::Request {
            method: req.method().as_str(),
            host,
            path_and_query: own_path,
            headers,
        };
    }
    let envoy = own_path
        .strip_prefix("/auth")
        .filter(|rest| rest.starts_with('/'));
    jwtd_gate::Request {
        method: get(&["x-original-method", "x-forwarded-method"]).unwrap_or(req.method().as_str()),
        host: get(&["x-forwarded-host"]).unwrap_or(host),
        path_and_query: get(&["x-original-uri", "x-forwarded-uri"])
            .or(envoy)
            .unwrap_or(own_path),
        headers,
    }
}

async fn forward_auth(State(state): State<Arc<AppState>>, req: Request) -> Response {
    // The request is borrowed, not its headers cloned: this is the hottest path.
    let rid = request_id(req.headers(), &state);
    let started = Instant::now();
    let rt = state.runtime_guard();
    let engine = &rt.engine;
    let trusted = !engine.rules.is_empty()
        && req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|c| rt.trusted_proxies.contains(c.0.ip()));
    let target = original_request(&req, trusted);
    let decision = engine.decide(&target, jwtd_core::unix_now()).await;
    let token = decision_token(&target, engine);
    rt.decisions.record(
        decision.rule,
        decision.outcome.as_ref().err().map(|d| d.error.reason()),
    );
    match decision.outcome {
        Ok(allowed) => {
            let mut r = StatusCode::OK.into_response();
            *r.headers_mut() = allowed.headers;
            set_request_id(r.headers_mut(), &rid);
            let by = match &allowed.identity {
                Some((issuer, _)) => By::Issuer(issuer),
                None => By::Nobody,
            };
            observe("auth", started, by, Ok(()), &rid, token);
            r
        }
        Err(denial) => {
            let by = By::Named(denial.issuer.as_deref());
            observe("auth", started, by, Err(&denial.error), &rid, token);
            let mut r = denial_response(&denial);
            set_request_id(r.headers_mut(), &rid);
            r
        }
    }
}

/// The token of the request, for the log fingerprint only.
fn decision_token<'a>(req: &jwtd_gate::Request<'a>, engine: &jwtd_gate::Engine) -> Option<&'a str> {
    extract_ref(req.headers, req.query(), &engine.sources)
        .ok()
        .flatten()
}

/// The answer to an engine refusal: [`bearer_error`], with the RFC 6750 `scope` parameter
/// when the rule needs scopes the token lacks.
fn denial_response(d: &jwtd_gate::Denial) -> Response {
    let answer = jwtd_gate::refusal::http_denial(d);
    let mut r = (answer.status, answer.body).into_response();
    r.headers_mut().extend(answer.headers);
    r
}

/// The request's `Authorization` header when it has exactly one.
fn single_authorization(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    match (all.next(), all.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Compares a presented credential with the expected secret in constant time. An empty
/// expected value never matches (an empty secret must not mean "no authentication").
///
/// Both sides are first MACed under a key drawn at random once per process, and the fixed-length
/// tags compared: neither the content nor the length of the secret shows in the timing.
fn ct_eq(given: &[u8], expected: &[u8]) -> bool {
    use aws_lc_rs::hmac;
    static KEY: std::sync::OnceLock<hmac::Key> = std::sync::OnceLock::new();
    if expected.is_empty() {
        return false;
    }
    let key = KEY.get_or_init(|| {
        let mut raw = [0u8; 32];
        // Should randomness fail, the key is still independent of every secret and the
        // comparison exact (HMAC-SHA256 collisions aside).
        let _ = jwtd_core::fill_random(&mut raw);
        hmac::Key::new(hmac::HMAC_SHA256, &raw)
    });
    let (a, b) = (hmac::sign(key, given), hmac::sign(key, expected));
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

/// How long a failed admin or introspection authentication waits before it is answered.
const AUTH_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// At most one log line per this many seconds per endpoint for failed authentications (the
/// count of the others is in the next line and in `jwtd_auth_failures_total`).
const AUTH_FAILURE_LOG_EVERY: u64 = 10;

/// Counts (`jwtd_auth_failures_total{endpoint}`), logs (rate-limited) and delays a failed
/// admin or introspection authentication.
async fn auth_failed(endpoint: &'static str, rid: &Rid) {
    static GATES: [LogGate; 2] = [
        LogGate::new(AUTH_FAILURE_LOG_EVERY),
        LogGate::new(AUTH_FAILURE_LOG_EVERY),
    ];
    metrics::counter!("jwtd_auth_failures_total", "endpoint" => endpoint).increment(1);
    if let Some(suppressed) = GATES[usize::from(endpoint != "admin")].pass() {
        tracing::warn!(
            endpoint,
            request_id = rid.as_str(),
            suppressed,
            "authentication failed (further failures within {AUTH_FAILURE_LOG_EVERY} s are counted, not logged)"
        );
    }
    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
}

async fn introspect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rid = request_id(&headers, &state);
    let started = Instant::now();
    let rt = state.runtime();
    let (Some(cfg), Some(secret)) = (&rt.config.introspection, &rt.introspection_secret) else {
        return (StatusCode::NOT_FOUND, "introspection is not configured\n").into_response();
    };
    // Exactly one Authorization header: with several, which one a proxy or upstream reads
    // differs (RFC 6750 section 3.1 / RFC 7235).
    let authorized = single_authorization(&headers)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b)| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .is_some_and(|raw| {
            let (id, pw) = match raw.iter().position(|&c| c == b':') {
                Some(i) => (&raw[..i], &raw[i + 1..]),
                None => (&raw[..], &[][..]),
            };
            // Both compared in full, in constant time, before deciding.
            let id_ok = ct_eq(id, cfg.client_id.as_bytes());
            let pw_ok = ct_eq(pw, secret);
            id_ok & pw_ok
        });
    if !authorized {
        auth_failed("introspect", &rid).await;
        let mut r = (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_client\"}").into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, JSON);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"jwtd\""),
        );
        return r;
    }
    let token = std::str::from_utf8(&body).ok().and_then(|form| {
        form.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| *k == "token")
                .map(|(_, v)| v.to_owned())
        })
    });
    let body = match &token {
        None => {
            let mut r =
                (StatusCode::BAD_REQUEST, "{\"error\":\"invalid_request\"}").into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, JSON);
            return r;
        }
        Some(token) => match check(&state, token).await {
            Ok((issuer, v)) => {
                observe(
                    "introspect",
                    started,
                    By::Issuer(&issuer),
                    Ok(()),
                    &rid,
                    Some(token),
                );
                // `active` last: a token's own "active" claim never decides it.
                let mut m = v.claims();
                m.insert("active".into(), Value::Bool(true));
                Value::Object(m).to_string()
            }
            Err((issuer, e)) => {
                observe(
                    "introspect",
                    started,
                    By::Named(issuer.as_deref()),
                    Err(&e),
                    &rid,
                    Some(token),
                );
                "{\"active\":false}".to_owned()
            }
        },
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, JSON);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// True when `[admin] protect_status` is on and the request does not carry the admin key.
async fn status_hidden(rt: &crate::Runtime, headers: &HeaderMap) -> bool {
    match &rt.config.admin {
        // A probe without credentials is not an authentication failure (not counted, not
        // delayed): it just gets no details.
        Some(a) if a.protect_status => {
            !headers.contains_key(header::AUTHORIZATION)
                || admin_denied(rt, headers).await.is_some()
        }
        _ => false,
    }
}

async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = state.runtime();
    if status_hidden(&rt, &headers).await {
        let ready = rt.engine.issuers.list.iter().all(|i| i.ready());
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return json_response(status, serde_json::json!({ "ready": ready }));
    }
    let waiting: Vec<&str> = rt
        .engine
        .issuers
        .list
        .iter()
        .filter(|i| !i.ready())
        .map(|i| i.name.as_str())
        .collect();
    let (status, body) = if waiting.is_empty() {
        (StatusCode::OK, serde_json::json!({"ready": true}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "issuers_without_keys": waiting}),
        )
    };
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, JSON);
    r
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(a) = &state.runtime().config.admin {
        if a.protect_status {
            if let Some(refusal) = admin_denied(&state.runtime(), &headers).await {
                return refusal;
            }
        }
    }
    for i in &state.runtime().engine.issuers.list {
        let name = i.name.clone();
        if let Some(c) = &i.cache {
            let s = c.stats();
            metrics::counter!("jwtd_token_cache_hits_total", "issuer" => name.clone())
                .absolute(s.hits);
            metrics::counter!("jwtd_token_cache_misses_total", "issuer" => name.clone())
                .absolute(s.misses);
            metrics::counter!("jwtd_token_cache_evictions_total", "issuer" => name.clone())
                .absolute(s.evictions);
            metrics::gauge!("jwtd_token_cache_entries", "issuer" => name.clone())
                .set(s.entries as f64);
            metrics::gauge!("jwtd_token_cache_bytes", "issuer" => name.clone()).set(s.bytes as f64);
        }
        match &i.keys {
            Keys::Static(set) => {
                metrics::gauge!("jwtd_keys", "issuer" => name).set(set.keys().len() as f64);
            }
            Keys::Ring(ring) => {
                metrics::gauge!("jwtd_keys", "issuer" => name)
                    .set(ring.verify_view().0.keys().len() as f64);
            }
            Keys::Remote(r) => {
                let s = r.stats();
                metrics::gauge!("jwtd_keys", "issuer" => name.clone()).set(s.keys as f64);
                metrics::counter!("jwtd_key_fetches_total", "issuer" => name.clone())
                    .absolute(s.fetches);
                metrics::counter!("jwtd_key_fetch_failures_total", "issuer" => name.clone())
                    .absolute(s.failures);
                if let Some(age) = s.last_success_age {
                    metrics::gauge!("jwtd_key_age_seconds", "issuer" => name)
                        .set(age.as_secs_f64());
                }
            }
        }
    }
    if let Some(r) = &state.runtime().revocations {
        metrics::gauge!("jwtd_revocations").set(r.len() as f64);
        metrics::gauge!("jwtd_revocations_pending").set(r.pending() as f64);
        let age = jwtd_core::unix_now() as i64 - r.synced_at();
        metrics::gauge!("jwtd_revocation_age_seconds").set(age as f64);
    }
    let mut r = metrics_handle().render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, JSON);
    r
}

/// Checks `Authorization: Bearer <admin key>` in constant time; `Some(refusal)` when it fails.
async fn admin_denied(rt: &crate::Runtime, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = &rt.admin_key else {
        return Some((StatusCode::NOT_FOUND, "the admin API is not configured\n").into_response());
    };
    let given = single_authorization(headers)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().as_bytes().to_vec())
        .unwrap_or_default();
    if ct_eq(&given, key) {
        None
    } else {
        auth_failed(
            "admin",
            &generated_id(REQUEST_IDS.fetch_add(1, Ordering::Relaxed)),
        )
        .await;
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid_token", "message": "an admin API key is required"}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"jwtd-admin\""),
        );
        Some(r)
    }
}

async fn jwks(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = state.runtime();
    let Some(s) = &rt.signing else {
        return (StatusCode::NOT_FOUND, "signing is not configured\n").into_response();
    };
    let body = s.ring.jwks_json();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let etag = format!(
        "\"{}\"",
        digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = format!("public, max-age={}", s.jwks_max_age());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&cache).expect("ascii"),
    );
    r
}

async fn discovery(State(state): State<Arc<AppState>>) -> Response {
    let rt = state.runtime();
    let Some(s) = &rt.signing else {
        return (StatusCode::NOT_FOUND, "signing is not configured\n").into_response();
    };
    let mut algs: Vec<String> = s
        .ring
        .keys()
        .iter()
        .filter(|k| k.state.published())
        .map(|k| k.alg.clone())
        .collect();
    algs.sort();
    algs.dedup();
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "issuer": s.iss,
            "jwks_uri": format!("{}/.well-known/jwks.json", s.iss),
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        }),
    )
}

/// Claims the minting request cannot set through `claims`.
const RESERVED: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

async fn mint(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let rt = state.runtime();
    if let Some(refusal) = admin_denied(&rt, &headers).await {
        return refusal;
    }
    let Some(s) = &rt.signing else {
        return (StatusCode::NOT_FOUND, "signing is not configured\n").into_response();
    };
    let bad = |m: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "message": m}),
        )
    };
    let req = match jwtd_core::parse_json_object(&body, 16) {
        Ok(m) => m,
        Err(e) => return bad(format!("body must be a JSON object: {e}")),
    };
    for k in req.keys() {
        if !["sub", "aud", "ttl", "claims"].contains(&k.as_str()) {
            return bad(format!("unknown member {k:?} (sub, aud, ttl, claims)"));
        }
    }
    let Some(sub) = req.get("sub").and_then(Value::as_str) else {
        return bad("\"sub\" (a string) is required".into());
    };
    let ttl = match req.get("ttl") {
        None => s.default_ttl,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => n,
            None => return bad("\"ttl\" must be a positive number of seconds".into()),
        },
        Some(Value::String(d)) => match humantime::parse_duration(d) {
            Ok(d) => d.as_secs(),
            Err(e) => return bad(format!("\"ttl\": {e}")),
        },
        Some(_) => return bad("\"ttl\" must be seconds or a duration string".into()),
    };
    if ttl == 0 || ttl > s.max_ttl {
        return bad(format!(
            "ttl {ttl}s is outside 1..={}s (the configured cap)",
            s.max_ttl
        ));
    }
    let mut claims = Map::new();
    if let Some(extra) = req.get("claims") {
        let Value::Object(extra) = extra else {
            return bad("\"claims\" must be an object".into());
        };
        for (k, v) in extra {
            if RESERVED.contains(&k.as_str()) {
                return bad(format!("claim {k:?} is reserved and cannot be set"));
            }
            claims.insert(k.clone(), v.clone());
        }
    }
    match req.get("aud") {
        None => {}
        Some(a @ Value::String(_)) => {
            claims.insert("aud".into(), a.clone());
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) && !items.is_empty() => {
            claims.insert("aud".into(), Value::Array(items.clone()));
        }
        Some(_) => return bad("\"aud\" must be a string or a non-empty array of strings".into()),
    }
    let now = jwtd_core::unix_now();
    let mut jti = [0u8; 16];
    if jwtd_core::fill_random(&mut jti).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "random source failed\n").into_response();
    }
    claims.insert("iss".into(), Value::from(s.iss.clone()));
    claims.insert("sub".into(), Value::from(sub));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl));
    claims.insert("jti".into(), Value::from(jwtd_core::b64::encode(jti)));
    let Some(signer) = s.ring.signer() else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "no_signing_key"}),
        );
    };
    match jwtd_core::sign(&signer, &claims, None) {
        Ok(token) => {
            metrics::counter!("jwtd_tokens_minted_total").increment(1);
            json_response(
                StatusCode::OK,
                serde_json::json!({"token": token, "expires_at": now + ttl, "kid": signer.kid()}),
            )
        }
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

/// `POST /admin/reload[?refetch=keys]` (admin): re-reads the configuration file; with
/// `refetch=keys`, also fetches every remote issuer's keys now (after a key compromise at an
/// identity provider, so a removed key stops being trusted at once). Without a configuration
/// file, `refetch=keys` only refetches.
async fn admin_reload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let rt = state.runtime();
    if let Some(refusal) = admin_denied(&rt, &headers).await {
        return refusal;
    }
    drop(rt);
    let refetch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "refetch=keys"));
    let mut status = StatusCode::OK;
    let mut body = Map::new();
    if !refetch || state.has_config_file() {
        match state.reload().await {
            Ok(()) => {
                body.insert("reloaded".into(), Value::Bool(true));
            }
            Err(e) => {
                tracing::error!(error = %e, "reload requested by POST /admin/reload failed; keeping the running configuration");
                status = StatusCode::UNPROCESSABLE_ENTITY;
                body.insert("reloaded".into(), Value::Bool(false));
                body.insert("error".into(), Value::from(e));
            }
        }
    }
    if refetch {
        let mut results = Vec::new();
        for i in &state.runtime().engine.issuers.list {
            if let Keys::Remote(r) = &i.keys {
                let outcome =
                    tokio::time::timeout(std::time::Duration::from_secs(10), r.refresh()).await;
                let error = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("timed out after 10 s".to_owned()),
                };
                if let Some(e) = &error {
                    tracing::warn!(issuer = %i.name, error = %e, "key refetch failed");
                    status = StatusCode::BAD_GATEWAY;
                } else {
                    tracing::info!(issuer = %i.name, "keys refetched on request");
                }
                results.push(
                    serde_json::json!({"issuer": i.name, "ok": error.is_none(), "error": error}),
                );
            }
        }
        body.insert("refetched".into(), Value::Array(results));
    }
    json_response(status, Value::Object(body))
}

/// `GET /admin/status` (admin): every issuer with its key source (URL userinfo redacted),
/// readiness, key count, last fetch and last fetch error: the details clients never see.
async fn admin_status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = state.runtime();
    if let Some(refusal) = admin_denied(&rt, &headers).await {
        return refusal;
    }
    let issuers: Vec<Value> = rt
        .engine
        .issuers
        .list
        .iter()
        .map(|i| {
            let mut m = serde_json::json!({"name": i.name, "iss": i.iss, "ready": i.ready()});
            match &i.keys {
                Keys::Static(set) => {
                    m["source"] = Value::from("static");
                    m["keys"] = Value::from(set.keys().len());
                }
                Keys::Ring(ring) => {
                    let (keys, generation) = ring.verify_view();
                    m["source"] = Value::from("ring");
                    m["keys"] = Value::from(keys.keys().len());
                    m["generation"] = Value::from(generation);
                    m["signing_kid"] = Value::from(ring.signing_kid());
                }
                Keys::Remote(r) => {
                    let st = r.stats();
                    m["source"] = Value::from(r.source_redacted());
                    m["keys"] = Value::from(st.keys);
                    m["fetches"] = Value::from(st.fetches);
                    m["failures"] = Value::from(st.failures);
                    m["last_success_age_seconds"] =
                        Value::from(st.last_success_age.map(|a| a.as_secs()));
                    m["last_error"] = Value::from(r.last_error().map(|e| e.to_string()));
                    m["generation"] = Value::from(r.snapshot().map(|s| s.generation));
                }
            }
            m
        })
        .collect();
    let mut r = json_response(StatusCode::OK, serde_json::json!({ "issuers": issuers }));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /v1/revocations` (admin): revoke by `jti`, by `sub` (tokens issued before `before`,
/// default now), by `kid`, or a whole `token` (its `jti`). Optional `iss` (only that issuer's
/// tokens), `exp`/`expires_at` (when the entry may be purged), `note`. 201 when stored, 202
/// when applied here and waiting for the store to come back.
async fn revoke(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let rt = state.runtime();
    if let Some(refusal) = admin_denied(&rt, &headers).await {
        return refusal;
    }
    let Some(revocations) = rt.revocations.clone() else {
        return (StatusCode::NOT_FOUND, "revocation is not configured\n").into_response();
    };
    let limits = revocations.limits();
    let r = match revocation_request(&body, limits.max_token_lifetime) {
        Ok(r) => r,
        Err(m) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_request", "message": m}),
            )
        }
    };
    let (revocation, note) = r;
    let describe = serde_json::json!({
        "kind": revocation.kind.as_str(),
        "value": revocation.value,
        "iss": revocation.iss,
        "issued_before": revocation.issued_before,
        "expires_at": revocation.expires_at,
    });
    // A key revocation also names the key material of every key now known under that kid, so
    // the same key configured or published under another kid (or none) is revoked too.
    let mut materials = Vec::new();
    if revocation.kind == jwtd_core::RevocationKind::Key {
        for i in &rt.engine.issuers.list {
            let set = match &i.keys {
                Keys::Static(set) => set.clone(),
                Keys::Ring(ring) => ring.verify_view().0,
                Keys::Remote(r) => match r.snapshot() {
                    Some(snap) => Arc::new(snap.keys.clone()),
                    None => continue,
                },
            };
            for k in set.keys() {
                if k.kid() == Some(revocation.value.as_str()) {
                    let m = k.material_id().to_owned();
                    if m != revocation.value && !materials.contains(&m) {
                        materials.push(m);
                    }
                }
            }
        }
    }
    for m in &materials {
        let mut also = revocation.clone();
        also.value = m.clone();
        revocations.revoke(also, note.clone()).await;
    }
    let outcome = revocations.revoke(revocation, note).await;
    let mut body = describe;
    if !materials.is_empty() {
        body["key_material"] = serde_json::json!(materials);
    }
    let status = match outcome {
        crate::revocation::Recorded::Stored(id) => {
            body["status"] = "stored".into();
            body["id"] = id.into();
            StatusCode::CREATED
        }
        crate::revocation::Recorded::Pending => {
            body["status"] = "pending".into();
            StatusCode::ACCEPTED
        }
    };
    tracing::info!(kind = %body["kind"], status = %body["status"], "revocation recorded");
    json_response(status, body)
}

/// How long a revocation outlives the last moment its tokens could be valid: more than any
/// sensible leeway, so an entry is never purged while a token it covers is still accepted.
const KEEP_MARGIN: i64 = 3600;

/// Reads a revocation request; `max_lifetime` bounds entries whose tokens' expiry is unknown.
fn revocation_request(
    body: &[u8],
    max_lifetime: u64,
) -> Result<(jwtd_core::Revocation, Option<String>), String> {
    use jwtd_core::Revocation;
    let req = jwtd_core::parse_json_object(body, 8)
        .map_err(|e| format!("body must be a JSON object: {e}"))?;
    const MEMBERS: [&str; 9] = [
        "jti",
        "sub",
        "kid",
        "token",
        "iss",
        "exp",
        "before",
        "expires_at",
        "note",
    ];
    if let Some(k) = req.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(format!("unknown member {k:?} ({})", MEMBERS.join(", ")));
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match req.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
            Some(_) => Err(format!(
                "{name:?} must be a non-empty string (at most 1024 bytes)"
            )),
        }
    };
    let time = |name: &str| -> Result<Option<i64>, String> {
        match req.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|t| (0..=jwtd_core::MAX_NUMERIC_DATE as i64).contains(t))
                .map(Some)
                .ok_or_else(|| format!("{name:?} must be a Unix time in seconds")),
        }
    };
    let now = jwtd_core::unix_now() as i64;
    let lifetime = max_lifetime as i64;
    let mut iss = text("iss")?;
    let mut exp = time("exp")?;
    let note = text("note")?;
    let chosen: Vec<&str> = ["jti", "sub", "kid", "token"]
        .into_iter()
        .filter(|k| req.contains_key(*k))
        .collect();
    let [what] = chosen.as_slice() else {
        return Err("name exactly one of \"jti\", \"sub\", \"kid\", \"token\"".into());
    };
    let mut r = match *what {
        "token" => {
            let token = req
                .get("token")
                .and_then(Value::as_str)
                .ok_or("\"token\" must be a string")?;
            let claims = jwtd_core::decode_unverified(token)
                .map_err(|e| format!("\"token\": {e}"))?
                .claims
                .map_err(|e| format!("\"token\": {e}"))?;
            let jti = claims
                .get("jti")
                .and_then(Value::as_str)
                .ok_or("the token has no \"jti\": revoke its \"sub\" instead")?;
            iss = iss.or_else(|| claims.get("iss").and_then(Value::as_str).map(Into::into));
            // The token is not verified here: its `exp` could be doctored (a past one would
            // purge the entry at once). Kept for the longest lifetime any accepted token has.
            exp = exp.or(Some(now.saturating_add(lifetime)));
            Revocation::jti(jti, iss.as_deref(), None)
        }
        "jti" => Revocation::jti(&text("jti")?.unwrap_or_default(), iss.as_deref(), None),
        "sub" => {
            let before = time("before")?.unwrap_or(now + 1);
            let mut r = Revocation::subject(
                &text("sub")?.unwrap_or_default(),
                iss.as_deref(),
                before,
                None,
            );
            r.expires_at = Some(before.saturating_add(lifetime).saturating_add(KEEP_MARGIN));
            r
        }
        _ => Revocation::key(&text("kid")?.unwrap_or_default(), iss.as_deref(), None),
    };
    if r.kind == jwtd_core::RevocationKind::Jti {
        // Kept until the token expired, or for the longest lifetime any token has when its
        // `exp` is unknown, plus a margin beyond any issuer's leeway.
        r.expires_at = Some(
            match exp {
                Some(e) => e,
                None => now.saturating_add(lifetime),
            }
            .saturating_add(KEEP_MARGIN),
        );
    }
    if let Some(t) = time("expires_at")? {
        r.expires_at = Some(t);
    }
    if r.value.is_empty() {
        return Err(format!("\"{what}\" must be a non-empty string"));
    }
    Ok((r, note))
}

/// `GET /v1/revocations` (admin): how many entries, how fresh, how many wait for the store.
async fn revocation_status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = state.runtime();
    if let Some(refusal) = admin_denied(&rt, &headers).await {
        return refusal;
    }
    let Some(r) = &rt.revocations else {
        return (StatusCode::NOT_FOUND, "revocation is not configured\n").into_response();
    };
    let now = jwtd_core::unix_now() as i64;
    let age = now - r.synced_at();
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "entries": r.len(),
            "pending": r.pending(),
            "synced_at": r.synced_at(),
            "age_seconds": age,
            "stale": age > r.limits().max_staleness as i64,
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_request_ids_are_the_counter_in_hex() {
        for n in [0, 1, 9, 10, 15, 16, 0xabc, 1 << 32, u64::MAX - 1, u64::MAX] {
            assert_eq!(super::generated_id(n).as_str(), format!("jwtd-{n:x}"));
        }
    }
}
