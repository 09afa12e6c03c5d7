//! # jwtd-tower
//!
//! jwtd inside a Rust backend: a tower [`Layer`] that verifies the bearer token of every request
//! with the same issuer configuration as `jwtd serve` (file or builder, remote key caches and the
//! verified-token cache shared across requests), and axum extractors for the result.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use jwtd_tower::{Claims, JwtdLayer};
//!
//! #[derive(serde::Deserialize)]
//! struct User {
//!     sub: String,
//! }
//!
//! async fn me(Claims(user): Claims<User>) -> String {
//!     user.sub
//! }
//!
//! # async fn run() -> Result<(), String> {
//! let jwtd = JwtdLayer::from_config_file("jwtd.toml".as_ref()).await?;
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route_layer(jwtd_tower::require_scope("orders:read"))
//!     .layer(jwtd);
//! # Ok(()) }
//! ```
//!
//! Rejections answer like the service (RFC 6750), from the one mapping in `jwtd_core::Reason`
//! (docs/security.md, "Reason codes"): 401 with `WWW-Authenticate` for a missing or invalid
//! token, 403 `insufficient_scope` for a failed scope or claim check, 400 `invalid_request` for
//! a request carrying more than one token (or `Authorization` header), 503
//! `temporarily_unavailable` with `Retry-After` when the keys or the revocation list are
//! unavailable.
//!
//! Certificate-bound tokens (RFC 8705, `cnf["x5t#S256"]`) are checked against the client
//! certificate the application's TLS acceptor puts in the request's extensions as a
//! [`jwtd_gate::mtls::PeerCertificate`] (the DER of the peer's end-entity certificate);
//! without one the request has none, and a bound token is refused `mtls_certificate_missing`
//! (docs/mtls.md).
//!
//! For a tonic (gRPC) server, [`JwtdLayer::grpc`] reads the token from the `authorization`
//! metadata the same way and answers rejections as gRPC statuses instead: `UNAUTHENTICATED`,
//! `PERMISSION_DENIED` (failed scope or claim check), `UNAVAILABLE` (keys or revocation list
//! unavailable) or `INVALID_ARGUMENT` (more than one token), with the reason code in
//! `grpc-message`. Handlers find the [`Identity`] in the
//! request's extensions (`request.extensions().get::<Identity>()`).
//!
//! ```no_run
//! # async fn run(greeter: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//! let jwtd = jwtd_tower::JwtdLayer::from_config_file("jwtd.toml".as_ref()).await?;
//! tonic::transport::Server::builder()
//!     .layer(jwtd.grpc())
//!     .add_routes(greeter)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Request, Response};
use jwtd_core::{ClaimCheck, Error, Reason, Verified};
use jwtd_gate::config::{GateConfig, TokenSources};
use jwtd_gate::issuers::{Issuers, RevocationCheck};
use jwtd_gate::rules::RuleSet;
use jwtd_gate::{Denial, Engine};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The verified identity of a request, placed in its extensions by [`JwtdLayer`].
#[derive(Clone, Debug)]
pub struct Identity {
    /// Name of the issuer that verified the token.
    pub issuer: String,
    /// The verified token.
    pub verified: Arc<Verified>,
}

#[derive(Debug)]
struct Shared {
    engine: Engine,
    optional: bool,
}

/// How a rejection is answered: [`Http`] (RFC 6750) or [`Grpc`] (a gRPC status).
pub trait Rejection<RB>: Send + Sync + 'static {
    /// The response for `d` (from the engine's one table, `jwtd_gate::refusal`).
    fn reject(d: &Denial) -> Response<RB>;
}

/// Rejections as RFC 6750 HTTP answers (401/403/400/503 with `WWW-Authenticate` and a JSON
/// body): the engine's one table, `jwtd_gate::refusal::http`, as `jwtd serve` answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Http;

impl Rejection<Body> for Http {
    fn reject(d: &Denial) -> Response<Body> {
        http_denial(d)
    }
}

fn http_refusal(e: &Error) -> Response<Body> {
    http_denial(&Denial::new(e.clone()))
}

fn http_denial(d: &Denial) -> Response<Body> {
    let answer = jwtd_gate::refusal::http_denial(d);
    let mut r = Response::new(Body::from(answer.body));
    *r.status_mut() = answer.status;
    r.headers_mut().extend(answer.headers);
    r
}

/// Rejections as gRPC statuses (HTTP 200, trailers-only: `grpc-status` from
/// `jwtd_core::Reason::grpc_code`, `grpc-message` `<reason>: <message>`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Grpc;

impl<RB: Default> Rejection<RB> for Grpc {
    fn reject(d: &Denial) -> Response<RB> {
        let e = &d.error;
        // The engine's one table, as the service's HTTP answers.
        let (code, message) = jwtd_gate::refusal::grpc(e);
        let mut r = Response::new(RB::default());
        let h = r.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", axum::http::HeaderValue::from(code));
        if let Ok(v) = axum::http::HeaderValue::from_str(&message) {
            h.insert("grpc-message", v);
        }
        r
    }
}

/// Verifies bearer tokens before the inner service runs; `R` chooses how rejections are
/// answered ([`Http`] by default, [`Grpc`] via [`JwtdLayer::grpc`]).
#[derive(Debug)]
pub struct JwtdLayer<R = Http> {
    shared: Arc<Shared>,
    style: std::marker::PhantomData<fn() -> R>,
}

impl<R> Clone for JwtdLayer<R> {
    fn clone(&self) -> Self {
        JwtdLayer {
            shared: self.shared.clone(),
            style: std::marker::PhantomData,
        }
    }
}

impl JwtdLayer {
    /// A layer for the issuers of a `jwtd serve` configuration file (its `[[issuer]]`,
    /// `[tokens]` and `[cache]` tables, checked as `jwtd serve` checks them; see
    /// [`GateConfig::parse`] for what is refused), read in the process environment. Must run
    /// inside a tokio runtime: remote key sources start fetching.
    pub async fn from_config_file(path: &std::path::Path) -> Result<JwtdLayer, String> {
        let config = GateConfig::load(path).map_err(|e| e.to_string())?;
        JwtdLayer::from_config(&config)
    }

    /// A layer for an already parsed configuration, its `[[rule]]`s included (each request
    /// is decided by the rule its method, host and path match, as `/auth` decides); secrets are
    /// read from the environment it was parsed in ([`GateConfig::env`]; see
    /// [`GateConfig::parse_with_env`]). Must run inside a tokio runtime.
    pub fn from_config(config: &GateConfig) -> Result<JwtdLayer, String> {
        Ok(JwtdLayer::from_engine(Engine::from_config(config)?))
    }

    /// A layer deciding with `engine`.
    pub fn from_engine(engine: Engine) -> JwtdLayer {
        JwtdLayer {
            shared: Arc::new(Shared {
                engine,
                optional: false,
            }),
            style: std::marker::PhantomData,
        }
    }

    /// A layer for issuers built by hand (no rules).
    pub fn from_issuers(issuers: Issuers, sources: TokenSources) -> JwtdLayer {
        JwtdLayer::from_engine(Engine::new(issuers, RuleSet::default(), sources))
    }

    /// The same verification for a tonic (gRPC) server: rejections become gRPC statuses.
    pub fn grpc(self) -> JwtdLayer<Grpc> {
        JwtdLayer {
            shared: self.shared,
            style: std::marker::PhantomData,
        }
    }
}

impl<R> JwtdLayer<R> {
    /// Checks `revocations` after every verification (and every cache hit): a revoked token
    /// is refused 401 `revoked`, an unavailable list 503 `revocation_unavailable`. `jwtd
    /// serve`'s store-backed list (`jwtd_service::Revocations`) is one; so may be yours.
    pub fn with_revocations(self, revocations: Arc<dyn RevocationCheck>) -> JwtdLayer<R> {
        let mut engine = self.shared.engine.clone();
        engine.issuers.revocations = Some(revocations);
        JwtdLayer {
            shared: Arc::new(Shared {
                engine,
                optional: self.shared.optional,
            }),
            style: std::marker::PhantomData,
        }
    }

    /// Lets requests without a token through (handlers see no [`Identity`]; use
    /// [`OptionalClaims`]). A token that is present must still verify.
    pub fn optional(self) -> JwtdLayer<R> {
        JwtdLayer {
            shared: Arc::new(Shared {
                engine: self.shared.engine.clone(),
                optional: true,
            }),
            style: std::marker::PhantomData,
        }
    }

    /// Waits until every remote issuer has keys, at most `timeout`.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        self.shared.engine.issuers.wait_ready(timeout).await
    }
}

impl<S, R> Layer<S> for JwtdLayer<R> {
    type Service = JwtdService<S, R>;
    fn layer(&self, inner: S) -> JwtdService<S, R> {
        JwtdService {
            inner,
            shared: self.shared.clone(),
            style: std::marker::PhantomData,
        }
    }
}

/// The service [`JwtdLayer`] wraps around yours.
#[derive(Debug)]
pub struct JwtdService<S, R = Http> {
    inner: S,
    shared: Arc<Shared>,
    style: std::marker::PhantomData<fn() -> R>,
}

impl<S: Clone, R> Clone for JwtdService<S, R> {
    fn clone(&self) -> Self {
        JwtdService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            style: std::marker::PhantomData,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB, R> Service<Request<B>> for JwtdService<S, R>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: 'static,
    R: Rejection<RB>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready does the work (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let engine = &shared.engine;
            let target = jwtd_gate::Request {
                method: req.method().as_str(),
                // An in-process request carries no scheme unless it came in absolute form:
                // `http` then (a DPoP proof's `htu` is compared with it).
                scheme: req.uri().scheme_str().unwrap_or("http"),
                host: req
                    .headers()
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or(req.uri().host())
                    .unwrap_or(""),
                path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                headers: req.headers(),
                // The application's TLS acceptor may put the peer's certificate here.
                client_cert: match req.extensions().get::<jwtd_gate::mtls::PeerCertificate>() {
                    Some(c) => jwtd_gate::ClientCert::Der(&c.0),
                    None => jwtd_gate::ClientCert::None,
                },
            };
            // `optional` without rules: no token is fine (several are still refused; a present
            // one must verify). With rules, each rule says whether a token is optional.
            if shared.optional && engine.rules.is_empty() {
                match jwtd_gate::extract::extract_ref(
                    target.headers,
                    target.query(),
                    &engine.sources,
                ) {
                    Ok(None) => return inner.call(req).await,
                    Ok(Some(_)) => {}
                    Err(e) => return Ok(R::reject(&Denial::new(e))),
                }
            }
            let decision = engine
                .decide_in_process(&target, jwtd_core::unix_now())
                .await;
            match decision.outcome {
                Ok(allowed) => {
                    if let Some((issuer, verified)) = allowed.identity {
                        req.extensions_mut().insert(Identity {
                            issuer: issuer.name.clone(),
                            verified,
                        });
                    }
                    inner.call(req).await
                }
                Err(d) => Ok(R::reject(&d)),
            }
        })
    }
}

/// The verified claims, deserialized into `T`. Rejects with 401 when the request carries no
/// verified identity, and with 401 `missing_claim` when the claims do not fit `T`.
#[derive(Clone, Debug)]
pub struct Claims<T>(pub T);

/// Like [`Claims`], but `None` when the request carried no token (with [`JwtdLayer::optional`]).
#[derive(Clone, Debug)]
pub struct OptionalClaims<T>(pub Option<T>);

fn claims_of<T: DeserializeOwned>(id: &Identity) -> Result<T, Error> {
    serde_json::from_str(id.verified.claims_json()).map_err(|e| {
        Error::new(
            Reason::MissingClaim,
            format!("the token's claims do not fit this route: {e}"),
        )
    })
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Claims<T> {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Identity>() {
            Some(id) => claims_of(id).map(Claims).map_err(|e| http_refusal(&e)),
            None => Err(http_refusal(&Error::new(
                Reason::MissingToken,
                "no verified bearer token (is JwtdLayer applied to this route?)",
            ))),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for OptionalClaims<T> {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Identity>() {
            Some(id) => claims_of(id)
                .map(|c| OptionalClaims(Some(c)))
                .map_err(|e| http_refusal(&e)),
            None => Ok(OptionalClaims(None)),
        }
    }
}

/// A per-route requirement: the verified claims must pass `check`, else 403
/// `insufficient_scope`. Apply with `route_layer` after [`JwtdLayer`].
pub fn require(check: ClaimCheck) -> RequireLayer {
    RequireLayer {
        check: Arc::new(check),
        style: std::marker::PhantomData,
    }
}

/// [`require`] for the common case: the `scope` claim (space-separated or an array) contains
/// `scope`.
pub fn require_scope(scope: &str) -> RequireLayer {
    require(ClaimCheck::Contains {
        claim: "scope".into(),
        item: scope.into(),
    })
}

/// See [`require`]; `R` chooses how a failed check is answered (see [`JwtdLayer`]).
#[derive(Debug)]
pub struct RequireLayer<R = Http> {
    check: Arc<ClaimCheck>,
    style: std::marker::PhantomData<fn() -> R>,
}

impl<R> Clone for RequireLayer<R> {
    fn clone(&self) -> Self {
        RequireLayer {
            check: self.check.clone(),
            style: std::marker::PhantomData,
        }
    }
}

impl RequireLayer {
    /// The same requirement on a tonic (gRPC) service: `PERMISSION_DENIED` when it fails.
    pub fn grpc(self) -> RequireLayer<Grpc> {
        RequireLayer {
            check: self.check,
            style: std::marker::PhantomData,
        }
    }
}

impl<S, R> Layer<S> for RequireLayer<R> {
    type Service = RequireService<S, R>;
    fn layer(&self, inner: S) -> RequireService<S, R> {
        RequireService {
            inner,
            check: self.check.clone(),
            style: std::marker::PhantomData,
        }
    }
}

/// The service of [`RequireLayer`].
#[derive(Debug)]
pub struct RequireService<S, R = Http> {
    inner: S,
    check: Arc<ClaimCheck>,
    style: std::marker::PhantomData<fn() -> R>,
}

impl<S: Clone, R> Clone for RequireService<S, R> {
    fn clone(&self) -> Self {
        RequireService {
            inner: self.inner.clone(),
            check: self.check.clone(),
            style: std::marker::PhantomData,
        }
    }
}

impl<S, B, RB, R> Service<Request<B>> for RequireService<S, R>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: 'static,
    R: Rejection<RB>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let check = self.check.clone();
        Box::pin(async move {
            let Some(id) = req.extensions().get::<Identity>() else {
                return Ok(R::reject(&Denial::new(Error::new(
                    Reason::MissingToken,
                    "no verified bearer token",
                ))));
            };
            let claims = id.verified.claims();
            // The same rule engine as the service: one policy with just this check.
            let policy = jwtd_core::Validation::new(&[])
                .require_exp(false)
                .any_audience()
                .check((*check).clone());
            match policy.validate_claims(&claims, jwtd_core::unix_now()) {
                Ok(()) => inner.call(req).await,
                Err(e) => Ok(R::reject(&Denial::new(e))),
            }
        })
    }
}
