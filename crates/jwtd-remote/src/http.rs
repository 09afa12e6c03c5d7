//! HTTP hygiene for key fetches: timeouts, size limit, bounded redirects, HTTPS unless loopback.

use std::fmt;
use std::time::Duration;
use url::{Host, Url};

/// How keys are fetched over HTTP.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// TCP + TLS connect timeout (default 2 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout, body included (default 5 s).
    pub timeout: Duration,
    /// Largest accepted body (default 1 MiB).
    pub max_body: usize,
    /// Redirects followed at most (default 3).
    pub max_redirects: usize,
    /// Allow plain `http://` to hosts other than loopback (default false).
    pub allow_insecure_http: bool,
    /// Extra trusted CA certificates (PEM bundle), added to the system's roots.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// `User-Agent` sent (default `jwtd/<version>`).
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_body: 1024 * 1024,
            max_redirects: 3,
            allow_insecure_http: false,
            ca_bundle_pem: None,
            user_agent: format!("jwtd/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What went wrong fetching a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// The URL is not allowed (plain HTTP to a non-loopback host, unknown scheme).
    InsecureUrl,
    /// Connect or total timeout.
    Timeout,
    /// Connection, TLS or protocol failure.
    Network,
    /// Too many redirects, or a redirect to a disallowed URL.
    Redirect,
    /// A status other than 200.
    Status,
    /// The body is larger than the limit.
    TooLarge,
    /// The body is not a valid document (JSON, JWKS or discovery).
    Malformed,
    /// The discovery document's `issuer` is not the configured issuer.
    IssuerMismatch,
    /// The JWKS holds no key usable with the allowed algorithms.
    NoUsableKey,
}

impl FetchErrorKind {
    /// A stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchErrorKind::InsecureUrl => "insecure_url",
            FetchErrorKind::Timeout => "timeout",
            FetchErrorKind::Network => "network",
            FetchErrorKind::Redirect => "redirect",
            FetchErrorKind::Status => "status",
            FetchErrorKind::TooLarge => "too_large",
            FetchErrorKind::Malformed => "malformed",
            FetchErrorKind::IssuerMismatch => "issuer_mismatch",
            FetchErrorKind::NoUsableKey => "no_usable_key",
        }
    }
}

/// A failed fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchError {
    /// The kind.
    pub kind: FetchErrorKind,
    /// What happened, for humans.
    pub message: String,
}

impl FetchError {
    pub(crate) fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for FetchError {}

/// Refuses URLs that are not HTTPS, except plain HTTP to loopback (or anywhere when
/// `allow_insecure_http`).
pub fn check_url(url: &Url, allow_insecure_http: bool) -> Result<(), FetchError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!(
                "{url} is plain HTTP to a non-loopback host; use HTTPS (or allow_insecure_http)"
            ),
        )),
        other => Err(FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!("{url}: scheme {other:?} is not HTTP(S)"),
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A body and the freshness lifetime its `Cache-Control` gave, if any.
pub(crate) struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<Duration>,
}

/// The HTTP client with jwtd's rules built in.
#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_body: usize,
    allow_insecure_http: bool,
}

impl Fetcher {
    pub fn new(cfg: &HttpConfig) -> Result<Fetcher, FetchError> {
        let allow = cfg.allow_insecure_http;
        let max = cfg.max_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                return attempt.error(format!("more than {max} redirects"));
            }
            if let Err(e) = check_url(attempt.url(), allow) {
                return attempt.error(e.message);
            }
            attempt.follow()
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .redirect(policy)
            .user_agent(cfg.user_agent.clone());
        if let Some(pem) = &cfg.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                FetchError::new(FetchErrorKind::Network, format!("bad CA bundle: {e}"))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::new(FetchErrorKind::Network, format!("HTTP client: {e}")))?;
        Ok(Fetcher {
            client,
            max_body: cfg.max_body,
            allow_insecure_http: allow,
        })
    }

    pub fn check(&self, url: &Url) -> Result<(), FetchError> {
        check_url(url, self.allow_insecure_http)
    }

    /// GETs `url`, enforcing status 200 and the body limit.
    pub async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        self.check(url)?;
        let mut resp = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| classify(url, e))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::new(
                FetchErrorKind::Status,
                format!("{url} answered {}", resp.status()),
            ));
        }
        let too_large = || {
            FetchError::new(
                FetchErrorKind::TooLarge,
                format!("{url}: body larger than {} bytes", self.max_body),
            )
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large());
        }
        let max_age = resp
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(url, e))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, max_age })
    }
}

fn classify(url: &Url, e: reqwest::Error) -> FetchError {
    let kind = if e.is_timeout() {
        FetchErrorKind::Timeout
    } else if e.is_redirect() {
        FetchErrorKind::Redirect
    } else {
        FetchErrorKind::Network
    };
    // reqwest's Display omits the cause chain; include it (TLS errors live there).
    let mut message = format!("{url}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    FetchError::new(kind, message)
}

/// `max-age` from one `Cache-Control` value; `no-store`/`no-cache` count as 0.
pub(crate) fn parse_max_age(value: &str) -> Option<Duration> {
    let mut out = None;
    for directive in value.split(',') {
        let d = directive.trim();
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if let Some((name, v)) = d.split_once('=') {
            if name.trim().eq_ignore_ascii_case("max-age") {
                out = v
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        let ok = |s: &str| check_url(&Url::parse(s).unwrap(), false).is_ok();
        assert!(ok("https://idp.example/jwks"));
        assert!(ok("http://127.0.0.1:9000/jwks"));
        assert!(ok("http://127.8.9.1/jwks"));
        assert!(ok("http://[::1]:80/jwks"));
        assert!(ok("http://localhost/jwks"));
        assert!(!ok("http://idp.example/jwks"));
        assert!(!ok("http://10.0.0.1/jwks"));
        assert!(!ok("ftp://idp.example/jwks"));
        assert!(!ok("file:///etc/passwd"));
        assert!(check_url(&Url::parse("http://idp.example/").unwrap(), true).is_ok());
    }

    #[test]
    fn cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_max_age("max-age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
