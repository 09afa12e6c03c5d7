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
//! Rejections answer like the service (RFC 6750): 401 with `WWW-Authenticate` for a missing or
//! invalid token, 403 `insufficient_scope` for a failed scope or claim check.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Request, Response};
use jwtd_core::{ClaimCheck, Error, Reason, Verified};
use jwtd_service::config::TokenSources;
use jwtd_service::{Config, Issuers};
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
    issuers: Issuers,
    sources: TokenSources,
    optional: bool,
}

/// Verifies bearer tokens before the inner service runs.
#[derive(Clone, Debug)]
pub struct JwtdLayer {
    shared: Arc<Shared>,
}

impl JwtdLayer {
    /// A layer for the issuers of a `jwtd serve` configuration file (its `[[issuer]]` and
    /// `[tokens]` tables). Must run inside a tokio runtime: remote key sources start fetching.
    pub async fn from_config_file(path: &std::path::Path) -> Result<JwtdLayer, String> {
        let config = Config::load(path).map_err(|e| e.to_string())?;
        JwtdLayer::connect(&config).await
    }

    /// A layer for an already parsed configuration, with its `[revocation]` store when it has
    /// one (the list is loaded before this returns and kept in step afterwards).
    pub async fn connect(config: &Config) -> Result<JwtdLayer, String> {
        let mut issuers = Issuers::build(config, None, None)?;
        issuers.revocations = jwtd_service::Revocations::from_config(config).await?;
        Ok(JwtdLayer::from_issuers(issuers, config.tokens.clone()))
    }

    /// A layer for an already parsed configuration without a `[revocation]` section (one with
    /// it needs the store: use [`JwtdLayer::connect`]).
    pub fn from_config(config: &Config) -> Result<JwtdLayer, String> {
        if config.revocation.is_some() {
            return Err(
                "the configuration has a [revocation] store: build the layer with JwtdLayer::connect"
                    .into(),
            );
        }
        let issuers = Issuers::build(config, None, None)?;
        Ok(JwtdLayer::from_issuers(issuers, config.tokens.clone()))
    }

    /// A layer for issuers built by hand.
    pub fn from_issuers(issuers: Issuers, sources: TokenSources) -> JwtdLayer {
        JwtdLayer {
            shared: Arc::new(Shared {
                issuers,
                sources,
                optional: false,
            }),
        }
    }

    /// Lets requests without a token through (handlers see no [`Identity`]; use
    /// [`OptionalClaims`]). A token that is present must still verify.
    pub fn optional(self) -> JwtdLayer {
        let s = &self.shared;
        JwtdLayer {
            shared: Arc::new(Shared {
                issuers: Issuers {
                    list: s.issuers.list.clone(),
                    revocations: s.issuers.revocations.clone(),
                },
                sources: s.sources.clone(),
                optional: true,
            }),
        }
    }

    /// Waits until every remote issuer has keys, at most `timeout`.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        self.shared.issuers.wait_ready(timeout).await
    }
}

impl<S> Layer<S> for JwtdLayer {
    type Service = JwtdService<S>;
    fn layer(&self, inner: S) -> JwtdService<S> {
        JwtdService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`JwtdLayer`] wraps around yours.
#[derive(Clone, Debug)]
pub struct JwtdService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for JwtdService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready does the work (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let token = jwtd_service::extract_token(req.headers(), req.uri(), &shared.sources);
            let Some(token) = token else {
                if shared.optional {
                    return inner.call(req).await;
                }
                return Ok(jwtd_service::bearer_error(&Error::new(
                    Reason::MissingToken,
                    "no bearer token in the request",
                )));
            };
            match shared.issuers.verify(&token, jwtd_core::unix_now()).await {
                Ok((issuer, verified)) => {
                    req.extensions_mut().insert(Identity {
                        issuer: issuer.name.clone(),
                        verified,
                    });
                    inner.call(req).await
                }
                Err((_, e)) => Ok(jwtd_service::bearer_error(&e)),
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
            Some(id) => claims_of(id)
                .map(Claims)
                .map_err(|e| jwtd_service::bearer_error(&e)),
            None => Err(jwtd_service::bearer_error(&Error::new(
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
                .map_err(|e| jwtd_service::bearer_error(&e)),
            None => Ok(OptionalClaims(None)),
        }
    }
}

/// A per-route requirement: the verified claims must pass `check`, else 403
/// `insufficient_scope`. Apply with `route_layer` after [`JwtdLayer`].
pub fn require(check: ClaimCheck) -> RequireLayer {
    RequireLayer {
        check: Arc::new(check),
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

/// See [`require`].
#[derive(Clone, Debug)]
pub struct RequireLayer {
    check: Arc<ClaimCheck>,
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;
    fn layer(&self, inner: S) -> RequireService<S> {
        RequireService {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service of [`RequireLayer`].
#[derive(Clone, Debug)]
pub struct RequireService<S> {
    inner: S,
    check: Arc<ClaimCheck>,
}

impl<S, B> Service<Request<B>> for RequireService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let check = self.check.clone();
        Box::pin(async move {
            let Some(id) = req.extensions().get::<Identity>() else {
                return Ok(jwtd_service::bearer_error(&Error::new(
                    Reason::MissingToken,
                    "no verified bearer token",
                )));
            };
            let claims = id.verified.claims();
            // The same rule engine as the service: one policy with just this check.
            let policy = jwtd_core::Validation::new(&[])
                .require_exp(false)
                .any_audience()
                .check((*check).clone());
            match policy.validate_claims(&claims, jwtd_core::unix_now()) {
                Ok(()) => inner.call(req).await,
                Err(e) => Ok(jwtd_service::bearer_error(&e)),
            }
        })
    }
}
