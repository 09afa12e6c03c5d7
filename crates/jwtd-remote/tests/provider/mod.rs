//! A local test identity provider over real HTTP or HTTPS (with a test CA made by rcgen):
//! discovery, a JWKS whose keys tests rotate, fault modes, and hit counters.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jwtd_core::{Jwks, SigningKey};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the JWKS endpoint misbehaves.
#[derive(Clone, Debug, PartialEq)]
#[allow(dead_code)]
pub enum Mode {
    Normal,
    Down,
    Slow(Duration),
    Oversized,
    Malformed,
    RedirectLoop,
    /// The JWKS endpoint redirects to this URL.
    RedirectTo(String),
}

pub struct State {
    pub keys: Vec<SigningKey>,
    pub mode: Mode,
    pub cache_control: Option<String>,
    pub issuer_override: Option<String>,
    /// The `jwks_uri` the discovery document names, instead of this provider's own.
    pub jwks_uri_override: Option<String>,
}

pub struct Provider {
    pub base: String,
    pub ca_pem: Option<String>,
    pub state: Arc<Mutex<State>>,
    pub jwks_hits: Arc<AtomicU64>,
    pub discovery_hits: Arc<AtomicU64>,
}

#[allow(dead_code)]
impl Provider {
    pub async fn start(tls: bool) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://localhost:{port}");
        let state = Arc::new(Mutex::new(State {
            keys: Vec::new(),
            mode: Mode::Normal,
            cache_control: Some("public, max-age=3600".into()),
            issuer_override: None,
            jwks_uri_override: None,
        }));
        let jwks_hits = Arc::new(AtomicU64::new(0));
        let discovery_hits = Arc::new(AtomicU64::new(0));
        let (acceptor, ca_pem) = if tls {
            let (a, ca) = tls_acceptor();
            (Some(a), Some(ca))
        } else {
            (None, None)
        };
        let ctx = Arc::new(Ctx {
            base: base.clone(),
            state: state.clone(),
            jwks_hits: jwks_hits.clone(),
            discovery_hits: discovery_hits.clone(),
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let ctx = ctx.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, Infallible>(ctx.handle(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Provider {
            base,
            ca_pem,
            state,
            jwks_hits,
            discovery_hits,
        }
    }

    pub fn issuer(&self) -> String {
        self.base.clone()
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    pub fn set_keys(&self, keys: Vec<SigningKey>) {
        self.state.lock().unwrap().keys = keys;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn jwks_hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

struct Ctx {
    base: String,
    state: Arc<Mutex<State>>,
    jwks_hits: Arc<AtomicU64>,
    discovery_hits: Arc<AtomicU64>,
}

impl Ctx {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/.well-known/openid-configuration" => {
                self.discovery_hits.fetch_add(1, Ordering::SeqCst);
                let (issuer, jwks_uri) = {
                    let s = self.state.lock().unwrap();
                    (
                        s.issuer_override
                            .clone()
                            .unwrap_or_else(|| self.base.clone()),
                        s.jwks_uri_override
                            .clone()
                            .unwrap_or_else(|| format!("{}/jwks", self.base)),
                    )
                };
                let doc = serde_json::json!({
                    "issuer": issuer, "jwks_uri": jwks_uri,
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"]
                });
                json(StatusCode::OK, doc.to_string(), None)
            }
            "/jwks" => {
                self.jwks_hits.fetch_add(1, Ordering::SeqCst);
                let (mode, body, cc) = {
                    let s = self.state.lock().unwrap();
                    let jwks = Jwks::from_keys(s.keys.iter().filter_map(|k| k.public_jwk()));
                    (
                        s.mode.clone(),
                        serde_json::to_string(&jwks).unwrap(),
                        s.cache_control.clone(),
                    )
                };
                match mode {
                    Mode::Normal => json(StatusCode::OK, body, cc),
                    Mode::Down => json(StatusCode::SERVICE_UNAVAILABLE, "{}".into(), None),
                    Mode::Slow(d) => {
                        tokio::time::sleep(d).await;
                        json(StatusCode::OK, body, cc)
                    }
                    Mode::Oversized => {
                        let pad = "x".repeat(2 * 1024 * 1024);
                        json(
                            StatusCode::OK,
                            format!("{{\"keys\":[],\"pad\":\"{pad}\"}}"),
                            cc,
                        )
                    }
                    Mode::Malformed => json(StatusCode::OK, "{\"keys\": [".into(), cc),
                    Mode::RedirectLoop => redirect("/jwks"),
                    Mode::RedirectTo(to) => redirect(&to),
                }
            }
            "/loop" => redirect("/loop"),
            _ => json(StatusCode::NOT_FOUND, "{}".into(), None),
        }
    }
}

fn json(status: StatusCode, body: String, cache_control: Option<String>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(cc) = cache_control {
        b = b.header("cache-control", cc);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", to)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_cert.pem(),
    )
}
