//! # jwtd-extauthz
//!
//! jwtd as an Envoy external authorizer: the gRPC service
//! `envoy.service.auth.v3.Authorization/Check` (Envoy's `ext_authz` filter with a
//! `grpc_service`, Istio `AuthorizationPolicy` with `action: CUSTOM`, Envoy Gateway
//! `SecurityPolicy.extAuth`, Contour `ExtensionService`) on the decision engine
//! ([`jwtd_gate::Engine`]): the same request gets the same decision as `jwtd serve`'s `/auth`,
//! answered through the one refusal table ([`jwtd_gate::refusal`]).
//!
//! ## Input
//!
//! - `attributes.request.http`: `method`, `host` (`:authority`), `path` (with the query, raw)
//!   and the headers. These come from Envoy itself and are authoritative, unlike the
//!   `X-Forwarded-*` headers a forward-auth endpoint has to trust a proxy for.
//!   The headers are read from `header_map` when Envoy sends one (`encode_raw_headers`: each
//!   header line apart, so two `Authorization` headers stay two and are refused as
//!   `multiple_tokens`), else from the `headers` map (Envoy joins repeated headers with `,`
//!   there). Pseudo-headers (`:path`, ...) are skipped: the fields above carry them.
//! - At most [`Options::max_headers`] entries and [`Options::max_header_bytes`] bytes of names
//!   and values: more, or a name or value that is not valid HTTP, is refused 400 `bad_headers`
//!   (`invalid_request`), a denial like any other, never a gRPC error.
//! - `attributes.context_extensions["jwtd_rule"]` (per route, from Envoy's
//!   `ExtAuthzPerRoute.check_settings.context_extensions`) names a rule: it decides
//!   ([`jwtd_gate::Engine::decide_by_rule`]) without the matcher (but with the rule's own
//!   conditions; an unknown id or a request the rule does not take is 403
//!   `no_matching_rule`).
//!
//! ## Allow
//!
//! `status.code = OK` and an `OkHttpResponse`:
//! - `headers`: every identity header this decision has a value for (`X-Auth-Subject`,
//!   `X-Auth-Issuer`, `[issuer.headers]`, rule `set_headers`), each with `append: false` and
//!   `append_action: OVERWRITE_IF_EXISTS_OR_ADD`, so Envoy overwrites whatever the client sent
//!   under that name;
//! - `headers_to_remove`: every other identity header jwtd owns (the engine's
//!   [`jwtd_gate::issuers::IdentityHeaders::names`], whatever this decision set), and
//!   `authorization` when [`Options::remove_authorization`] is on. So each identity header jwtd
//!   owns is either overwritten or removed: a spoofed one never reaches the upstream. (Envoy
//!   applies `headers_to_remove` *after* `headers`, so a header is never in both: that would
//!   remove the value jwtd just set. `/auth` answers such a header present and empty; here it
//!   is absent.)
//!
//! ## Deny
//!
//! The refusal table's gRPC code in `status` (`UNAUTHENTICATED` for the 401 answers,
//! `PERMISSION_DENIED` for 403, `INVALID_ARGUMENT` for 400) with a `DeniedHttpResponse`
//! carrying the table's HTTP status, `WWW-Authenticate` (RFC 6750, with `scope=` for
//! `missing_scope`), `Content-Type` and the JSON body `/auth` sends. jwtd's own failures
//! (`key_fetch_failed`, `revocation_unavailable`: 503, `UNAVAILABLE`) are an `error_response`
//! instead, with the 503 and `Retry-After`: Envoy counts them as `ext_authz_error` and lets
//! them through only when the operator set `failure_mode_allow: true`.
//!
//! ## Dynamic metadata
//!
//! Every answer carries `dynamic_metadata` (namespace `envoy.filters.http.ext_authz` in Envoy,
//! for RBAC, rate limits and access logs), a Struct with these members, each only where
//! present:
//!
//! | member | type | what |
//! |---|---|---|
//! | `rule` | string | the deciding rule's id; `-` without rules; `default` when none matched |
//! | `issuer` | string | the configured issuer (`[[issuer]] name`) that verified the token |
//! | `sub` | string | the token's `sub` |
//! | `iss` | string | the token's `iss` |
//! | `client_id` | string | the token's `client_id` (RFC 9068) |
//! | `scope` | list of strings | the token's `scope` (split on spaces) or `scp` (an array) |
//! | `jti` | string | the token's `jti` |
//! | `reason` | string | refusals only: the reason code (`bad_signature`, ...) |
//!
//! ## Protos
//!
//! The generated types come from the `envoy-types` crate (re-exported as [`envoy_types`]):
//! generated from Envoy's own protos, on tonic 0.14 and prost 0.14 like the rest of the
//! workspace, with `error_response` present. It costs compile time (every Envoy proto, about
//! 8 MB of generated code) but no `protoc` at build time and no vendored protos to keep in
//! step with Envoy; only this crate touches it, so vendoring just the ext_authz protos later
//! stays a local change.
//!
//! ## Serving
//!
//! [`Authorizer`] implements the tonic service trait; [`serve`] runs it on a listener (h2c,
//! cleartext HTTP/2 as Envoy's `envoy_grpc` cluster speaks it) with the bounds of [`Limits`].
//! The engine is read per request through an [`EngineSource`], so a service that swaps its
//! engine on reload is followed without restarting the listener.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use envoy_types;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as PbHeader, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context::HttpRequest, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{
    value::Kind, BoolValue, ListValue, Struct, Value as PbValue,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::{HeaderMap, HeaderName, HeaderValue};
use jwtd_core::{BearerError, Error, Reason, Verified};
use jwtd_gate::{Allowed, Denial, Engine, Request};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The context extension naming the rule that decides.
pub const RULE_EXTENSION: &str = "jwtd_rule";

/// Default for [`Options::max_headers`].
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Default for [`Options::max_header_bytes`] (Envoy's own default header limit is 60 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// Where the authorizer reads the engine in force, once per check (shared with the other
/// fronts: defined in `jwtd-gate`).
pub use jwtd_gate::EngineSource;

/// What the authorizer answers besides the decision itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// List `authorization` in `headers_to_remove` on allowed requests, so the upstream never
    /// sees the client's token. Default off.
    pub remove_authorization: bool,
    /// Most header entries a `CheckRequest` may carry ([`DEFAULT_MAX_HEADERS`]).
    pub max_headers: usize,
    /// Most bytes of header names and values a `CheckRequest` may carry
    /// ([`DEFAULT_MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            remove_authorization: false,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// The bounds of the gRPC listener ([`serve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `CheckRequest` decoded, bytes (tonic's `max_decoding_message_size`); a larger
    /// one is refused with `RESOURCE_EXHAUSTED` before it is decoded.
    pub max_message_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Longest a check may take before it is cancelled (`CANCELLED`/`DEADLINE_EXCEEDED`), and
    /// the HTTP/2 keep-alive ping timeout.
    pub request_timeout: Duration,
    /// Largest HTTP/2 header list of a gRPC request (the call's own metadata, not the
    /// checked request's headers, which travel in the message).
    pub max_header_list_bytes: u32,
    /// Most connections open at once: at the cap the listener stops accepting (the kernel's
    /// backlog queues the rest) until one closes. Envoy keeps a few connections per worker and
    /// many streams on each, so the cap is for floods from anyone else.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 256 * 1024,
            max_concurrent_streams: 128,
            request_timeout: Duration::from_secs(5),
            max_header_list_bytes: 16 * 1024,
            max_connections: 10_000,
        }
    }
}

/// The `Authorization` service over an [`EngineSource`].
#[derive(Clone, Debug)]
pub struct Authorizer<S> {
    source: S,
    options: Options,
}

impl<S: EngineSource> Authorizer<S> {
    /// An authorizer deciding with the engines of `source`.
    pub fn new(source: S, options: Options) -> Authorizer<S> {
        Authorizer { source, options }
    }

    /// Its options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Decides about `req` at `now` (Unix seconds): the `CheckResponse` the gRPC call answers
    /// (see the crate docs).
    pub async fn decide(&self, req: &CheckRequest, now: u64) -> CheckResponse {
        let handle = self.source.engine();
        let engine: &Engine = &handle;
        let attributes = req.attributes.as_ref();
        let Some(http) = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            let e = bad_headers("the CheckRequest has no attributes.request.http");
            self.source.decided(&handle, None, Some(e.reason()));
            return denied("-", &Denial::new(e));
        };
        let headers = match header_map(http, &self.options) {
            Ok(h) => h,
            Err(e) => {
                self.source.decided(&handle, None, Some(e.reason()));
                return denied("-", &Denial::new(e));
            }
        };
        // Envoy's own view of the downstream TLS peer: authoritative (URL-encoded PEM, empty
        // without a client certificate); no forwarded header is read.
        let certificate = attributes
            .and_then(|a| a.source.as_ref())
            .map_or("", |s| s.certificate.as_str());
        let request = Request {
            method: &http.method,
            // Envoy's own view of the request, authoritative (the DPoP proof's `htu`).
            scheme: &http.scheme,
            host: &http.host,
            path_and_query: &http.path,
            headers: &headers,
            client_cert: jwtd_gate::ClientCert::Pem(certificate),
        };
        let named = attributes.and_then(|a| a.context_extensions.get(RULE_EXTENSION));
        let decision = match named {
            Some(id) => engine.decide_by_rule(id, &request, now).await,
            None => engine.decide(&request, now).await,
        };
        let refused = decision.outcome.as_ref().err().map(|d| d.error.reason());
        self.source.decided(&handle, decision.rule, refused);
        let rule = decision.rule_id(engine).to_owned();
        let token = decision.token;
        match decision.outcome {
            Ok(allowed) => self.allowed(engine, &rule, allowed, token),
            Err(denial) => denied(&rule, &denial),
        }
    }

    /// The gRPC service, with the message size bound of `limits`.
    pub fn into_service(self, limits: &Limits) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes)
    }

    fn allowed(
        &self,
        engine: &Engine,
        rule: &str,
        allowed: Allowed,
        token: Option<&str>,
    ) -> CheckResponse {
        let mut ok = OkHttpResponse::default();
        let owned = engine.identity.names();
        for name in &owned {
            match allowed.headers.get(name) {
                Some(v) if !v.is_empty() => ok.headers.push(overwrite(name, v)),
                _ => ok.headers_to_remove.push(name.as_str().to_owned()),
            }
        }
        // Anything the decision rendered outside the union (none today): set as well.
        for (name, v) in &allowed.headers {
            if !owned.contains(name) && !v.is_empty() {
                ok.headers.push(overwrite(name, v));
            }
        }
        if self.options.remove_authorization {
            ok.headers_to_remove
                .push(http::header::AUTHORIZATION.as_str().to_owned());
        } else if let Some(token) = strip_dpop(&allowed, token) {
            // `on_pass = "strip"`: the upstream gets a bearer token and no proof.
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                ok.headers.push(overwrite(&http::header::AUTHORIZATION, &v));
            }
        }
        if let Some(n) = allowed.dpop.as_ref().and_then(|p| p.nonce.as_deref()) {
            // A fresh server nonce, to the client (RFC 9449 section 8.2).
            if let Ok(v) = HeaderValue::from_str(n) {
                ok.response_headers_to_add
                    .push(overwrite(&jwtd_gate::refusal::DPOP_NONCE, &v));
            }
        }
        // `on_pass = "strip"`: no `DPoP` header upstream, checked or not.
        if allowed.strip_dpop {
            ok.headers_to_remove
                .push(jwtd_gate::dpop::DPOP.as_str().to_owned());
        }
        // rule, issuer, sub, iss, client_id, scope, jti: room for all without growing.
        let mut meta = Struct {
            fields: std::collections::HashMap::with_capacity(8),
        };
        put(&mut meta, "rule", string(rule));
        if let Some((issuer, v)) = &allowed.identity {
            put(&mut meta, "issuer", string(&issuer.name));
            token_metadata(&mut meta, v);
        }
        CheckResponse {
            status: Some(RpcStatus {
                code: 0,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(ok)),
            dynamic_metadata: Some(meta),
        }
    }
}

#[tonic::async_trait]
impl<S: EngineSource> Authorization for Authorizer<S> {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let answer = self.decide(request.get_ref(), jwtd_core::unix_now()).await;
        Ok(tonic::Response::new(answer))
    }
}

/// Serves `authorizer` on `listener` (cleartext HTTP/2, as Envoy's `envoy_grpc` clusters
/// speak it) within `limits` until `shutdown` resolves; then lets checks in progress finish.
pub async fn serve<S: EngineSource>(
    authorizer: Authorizer<S>,
    listener: tokio::net::TcpListener,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = Capped {
        listener,
        permits: Arc::new(Semaphore::new(
            limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        )),
        acquiring: None,
        permit: None,
    };
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .timeout(limits.request_timeout)
        .http2_keepalive_timeout(Some(limits.request_timeout))
        .http2_max_header_list_size(limits.max_header_list_bytes)
        .add_service(authorizer.into_service(limits))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The listener's connections, at most [`Limits::max_connections`] open at once: a permit is
/// taken before each accept and held by the connection until it closes.
struct Capped {
    listener: tokio::net::TcpListener,
    permits: Arc<Semaphore>,
    /// A permit being waited for (kept across polls: the server's select may drop a poll).
    acquiring: Option<Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>>,
    /// The permit for the next accepted connection.
    permit: Option<OwnedSemaphorePermit>,
}

impl futures_core::Stream for Capped {
    type Item = std::io::Result<Permitted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.permit.is_none() {
            let permits = this.permits.clone();
            let acquiring = this.acquiring.get_or_insert_with(|| {
                Box::pin(async move {
                    permits
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed")
                })
            });
            match acquiring.as_mut().poll(cx) {
                Poll::Ready(p) => {
                    this.acquiring = None;
                    this.permit = Some(p);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.listener.poll_accept(cx) {
            Poll::Ready(Ok((io, _))) => {
                let _ = io.set_nodelay(true);
                let permit = this.permit.take().expect("taken above");
                Poll::Ready(Some(Ok(Permitted {
                    io,
                    _permit: permit,
                })))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An accepted connection holding its permit.
struct Permitted {
    io: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for Permitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl tokio::io::AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Permitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The refusal `d` as a `CheckResponse`: the table's gRPC code, and its HTTP answer as a
/// `denied_response` (or an `error_response` when jwtd cannot decide now).
fn denied(rule: &str, d: &Denial) -> CheckResponse {
    let answer = jwtd_gate::refusal::http_denial(d);
    let (code, message) = jwtd_gate::refusal::grpc(&d.error);
    let response = DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(answer.status.as_u16()),
        }),
        headers: answer
            .headers
            .iter()
            .enumerate()
            .map(|(i, (n, v))| {
                // A second field of a name (the `Bearer` challenge beside a `DPoP` one) is
                // appended, not written over the first.
                if answer.headers[..i].iter().any(|(m, _)| m == n) {
                    append(n, v)
                } else {
                    overwrite(n, v)
                }
            })
            .collect(),
        body: answer.body,
    };
    let http_response = if d.error.reason().bearer_error() == BearerError::TemporarilyUnavailable {
        HttpResponse::ErrorResponse(response)
    } else {
        HttpResponse::DeniedResponse(response)
    };
    let mut meta = Struct::default();
    put(&mut meta, "rule", string(rule));
    if let Some(issuer) = &d.issuer {
        put(&mut meta, "issuer", string(issuer));
    }
    put(&mut meta, "reason", string(d.error.reason().as_str()));
    CheckResponse {
        status: Some(RpcStatus {
            code,
            message,
            details: Vec::new(),
        }),
        http_response: Some(http_response),
        dynamic_metadata: Some(meta),
    }
}

/// `name: value`, overwriting: `append: false` (deprecated in Envoy's API, but what every
/// Envoy reads first, and the older ones only) and `append_action:
/// OVERWRITE_IF_EXISTS_OR_ADD` (without either, current Envoy would *add* a value next to
/// the client's).
#[allow(deprecated)]
fn overwrite(name: &HeaderName, value: &HeaderValue) -> HeaderValueOption {
    let (value, raw_value) = match value.to_str() {
        Ok(s) => (s.to_owned(), Vec::new()),
        Err(_) => (String::new(), value.as_bytes().to_vec()),
    };
    HeaderValueOption {
        header: Some(PbHeader {
            key: name.as_str().to_owned(),
            value,
            raw_value,
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The token to send upstream as `Authorization: Bearer` when the request passed with a DPoP
/// proof and its issuer strips proofs (`on_pass = "strip"`).
fn strip_dpop<'t>(allowed: &Allowed, token: Option<&'t str>) -> Option<&'t str> {
    allowed
        .dpop
        .as_ref()
        .filter(|p| p.on_pass == jwtd_gate::config::OnPass::Strip)
        .and(token)
}

/// `name: value`, appended to the fields of that name already set.
#[allow(deprecated)]
fn append(name: &HeaderName, value: &HeaderValue) -> HeaderValueOption {
    HeaderValueOption {
        append: Some(BoolValue { value: true }),
        append_action: HeaderAppendAction::AppendIfExistsOrAdd as i32,
        ..overwrite(name, value)
    }
}

fn bad_headers(why: impl Into<String>) -> Error {
    Error::new(Reason::BadHeaders, why.into())
}

/// The checked request's headers as the engine takes them, within `options`' bounds.
fn header_map(http: &HttpRequest, options: &Options) -> Result<HeaderMap, Error> {
    let raw: Vec<(&str, &[u8])> = match &http.header_map {
        Some(m) if !m.headers.is_empty() => m
            .headers
            .iter()
            .map(|h| {
                let v = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    h.raw_value.as_slice()
                };
                (h.key.as_str(), v)
            })
            .collect(),
        _ => http
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect(),
    };
    if raw.len() > options.max_headers {
        return Err(bad_headers(format!(
            "{} headers, more than the {} this authorizer takes",
            raw.len(),
            options.max_headers
        )));
    }
    let bytes: usize = raw.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > options.max_header_bytes {
        return Err(bad_headers(format!(
            "{bytes} bytes of headers, more than the {} this authorizer takes",
            options.max_header_bytes
        )));
    }
    let mut map = HeaderMap::with_capacity(raw.len());
    for (k, v) in raw {
        if k.starts_with(':') {
            continue;
        }
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad_headers("a header name is not valid HTTP"))?;
        let value = HeaderValue::from_bytes(v)
            .map_err(|_| bad_headers(format!("the value of {name} is not valid HTTP")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn string(s: &str) -> PbValue {
    PbValue {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn put(meta: &mut Struct, key: &str, value: PbValue) {
    meta.fields.insert(key.to_owned(), value);
}

/// `sub`, `iss`, `client_id`, `scope` and `jti` of a verified token, where present.
fn token_metadata(meta: &mut Struct, v: &Verified) {
    if let Some(s) = v.sub() {
        put(meta, "sub", string(s));
    }
    if let Some(s) = v.iss() {
        put(meta, "iss", string(s));
    }
    // The three top-level claims in one read of the claims set (verification already refused
    // duplicate members), every other member skipped unparsed.
    #[derive(serde::Deserialize)]
    struct Wanted {
        client_id: Option<serde_json::Value>,
        scope: Option<serde_json::Value>,
        scp: Option<serde_json::Value>,
    }
    let Wanted {
        client_id,
        scope,
        scp,
    } = serde_json::from_str(v.claims_json()).unwrap_or(Wanted {
        client_id: None,
        scope: None,
        scp: None,
    });
    if let Some(serde_json::Value::String(s)) = client_id {
        put(meta, "client_id", string(&s));
    }
    let scopes: Option<Vec<String>> = match (scope, scp) {
        (Some(serde_json::Value::String(s)), _) => {
            Some(s.split_ascii_whitespace().map(str::to_owned).collect())
        }
        (_, Some(serde_json::Value::Array(a))) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    if let Some(scopes) = scopes {
        let values = scopes.iter().map(|s| string(s)).collect();
        put(
            meta,
            "scope",
            PbValue {
                kind: Some(Kind::ListValue(ListValue { values })),
            },
        );
    }
    if let Some(s) = v.jti() {
        put(meta, "jti", string(s));
    }
}
