//! HTTP hygiene for key fetches: timeouts, size limit, bounded redirects, HTTPS unless loopback,
//! no downgrade or detour into internal addresses, no URL credentials in any message.

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

    /// True when retrying the same source soon will not help: the URL is refused by the
    /// rules, or the source answered with a document that can never be used (issuer mismatch,
    /// no usable key, not a valid document, too large, a redirect loop or a refused redirect).
    /// False for timeouts, network failures and error statuses, which an outage or a restart
    /// explains. Services retry either way; one-shot callers (the command line) stop at once.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            FetchErrorKind::Timeout | FetchErrorKind::Network | FetchErrorKind::Status
        )
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

/// `url` as text with its userinfo (`user:password@`) replaced by `***@`: the only form in
/// which jwtd puts a URL in a message or a log.
pub fn redact(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    // Cannot fail: the URL has a host (it had userinfo).
    let _ = u.set_password(None);
    let _ = u.set_username("***");
    u.to_string()
}

/// [`redact`] for text that may not parse as a URL: whatever sits between `://` and the last
/// `@` before the path is replaced by `***`.
pub fn redact_str(text: &str) -> String {
    if let Ok(u) = Url::parse(text) {
        return redact(&u);
    }
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

/// Refuses URLs that are not HTTPS, except plain HTTP to loopback (or anywhere when
/// `allow_insecure_http`). This is the rule for a URL the operator configured; a URL reached
/// from it (a redirect, a discovered `jwks_uri`) must also pass [`check_reached`].
pub fn check_url(url: &Url, allow_insecure_http: bool) -> Result<(), FetchError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!(
                "{} is plain HTTP to a non-loopback host; use HTTPS (or allow_insecure_http)",
                redact(url)
            ),
        )),
        other => Err(FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!("{}: scheme {other:?} is not HTTP(S)", redact(url)),
        )),
    }
}

/// The rule for a URL reached from the `configured` one, by a redirect or as the `jwks_uri` of
/// its discovery document, on top of [`check_url`]:
///
/// - never a downgrade: from an HTTPS configured URL, only HTTPS;
/// - never into loopback, link-local, private or otherwise internal addresses (`localhost`,
///   127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10,
///   0.0.0.0/8, ::1, fc00::/7, fe80::/10, IPv4-mapped forms of these), unless the configured
///   URL's host is itself one of them.
///
/// Only literal addresses and `localhost` names are recognised: a DNS name that resolves to an
/// internal address is not checked (see docs/security.md).
pub fn check_reached(
    configured: &Url,
    target: &Url,
    allow_insecure_http: bool,
) -> Result<(), FetchError> {
    check_url(target, allow_insecure_http)?;
    if target.scheme() == "http" && configured.scheme() == "https" {
        return Err(FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!(
                "{} is plain HTTP, reached from the HTTPS {}: a scheme downgrade is never followed",
                redact(target),
                redact(configured)
            ),
        ));
    }
    if is_internal(target) && !is_internal(configured) {
        return Err(FetchError::new(
            FetchErrorKind::InsecureUrl,
            format!(
                "{} is a loopback, link-local or private address, reached from {}: only a configured URL may name one",
                redact(target),
                redact(configured)
            ),
        ));
    }
    Ok(())
}

/// True for a host that is a literal internal address or a `localhost` name.
fn is_internal(url: &Url) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    fn v4(ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || ip.is_unspecified()
            || ip.is_broadcast()
            || o[0] == 0
            || (o[0] == 100 && (o[1] & 0xc0) == 64)
    }
    fn v6(ip: Ipv6Addr) -> bool {
        let s = ip.segments();
        ip.is_loopback()
            || ip.is_unspecified()
            || (s[0] & 0xfe00) == 0xfc00
            || (s[0] & 0xffc0) == 0xfe80
            || ip.to_ipv4_mapped().is_some_and(v4)
    }
    match url.host() {
        Some(Host::Ipv4(ip)) => v4(ip),
        Some(Host::Ipv6(ip)) => v6(ip),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => true,
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

/// The HTTP client with jwtd's rules built in, for one configured URL and the URLs reached
/// from it.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_body: usize,
    allow_insecure_http: bool,
    configured: Url,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("configured", &redact(&self.configured))
            .field("max_body", &self.max_body)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    pub fn new(cfg: &HttpConfig, configured: &Url) -> Result<Fetcher, FetchError> {
        let allow = cfg.allow_insecure_http;
        let max = cfg.max_redirects;
        let origin = configured.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                return attempt.error(format!("more than {max} redirects"));
            }
            let target = attempt.url();
            // No downgrade from any HTTPS hop either (a discovered jwks_uri starts its own
            // chain).
            let refused = if target.scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https")
            {
                Some(format!(
                    "redirect from HTTPS to the plain HTTP {}: a scheme downgrade is never followed",
                    redact(target)
                ))
            } else {
                check_reached(&origin, target, allow)
                    .err()
                    .map(|e| e.message)
            };
            if let Some(why) = refused {
                return attempt.error(why);
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
            configured: configured.clone(),
        })
    }

    /// [`check_url`] for the configured URL, [`check_reached`] for any other.
    pub fn check(&self, url: &Url) -> Result<(), FetchError> {
        if *url == self.configured {
            check_url(url, self.allow_insecure_http)
        } else {
            check_reached(&self.configured, url, self.allow_insecure_http)
        }
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
                format!("{} answered {}", redact(url), resp.status()),
            ));
        }
        let too_large = || {
            FetchError::new(
                FetchErrorKind::TooLarge,
                format!("{}: body larger than {} bytes", redact(url), self.max_body),
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
    // reqwest's Display names the URL as requested, userinfo included: drop it, and name the
    // URL redacted. Its Display omits the cause chain; include it (TLS errors live there).
    let e = e.without_url();
    let mut message = format!("{}: {e}", redact(url));
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    FetchError::new(kind, message)
}

/// `max-age` from one `Cache-Control` value; `no-store`/`no-cache` count as 0. Public (hidden)
/// for the discovery fuzz target: the header comes from the identity provider.
pub fn parse_max_age(value: &str) -> Option<Duration> {
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
    fn userinfo_is_redacted() {
        let u = Url::parse("https://jwtd:s3cret@idp.example:8443/keys?x=1").unwrap();
        assert_eq!(redact(&u), "https://***@idp.example:8443/keys?x=1");
        let u = Url::parse("https://jwtd@idp.example/").unwrap();
        assert_eq!(redact(&u), "https://***@idp.example/");
        let u = Url::parse("https://idp.example/").unwrap();
        assert_eq!(redact(&u), "https://idp.example/");
        assert_eq!(
            redact_str("https://a:b@idp.example/x"),
            "https://***@idp.example/x"
        );
        // Text that does not parse is redacted by its shape.
        assert_eq!(redact_str("https://a:b@[bad/x"), "https://***@[bad/x");
        assert_eq!(redact_str("not a url @ all"), "not a url @ all");
        let e = check_url(&Url::parse("http://u:pw@idp.example/").unwrap(), false).unwrap_err();
        assert!(!e.message.contains("pw"), "{e}");
    }

    #[test]
    fn reached_urls_never_downgrade_or_detour_inside() {
        let reached = |from: &str, to: &str| {
            check_reached(&Url::parse(from).unwrap(), &Url::parse(to).unwrap(), false)
        };
        let public = "https://idp.example/.well-known/openid-configuration";
        assert!(reached(public, "https://keys.idp.example/jwks").is_ok());
        for to in [
            "http://127.0.0.1/jwks",
            "http://localhost/jwks",
            "http://idp.example/jwks",
            "https://127.0.0.1/jwks",
            "https://127.1/jwks",
            "https://2130706433/jwks",
            "https://localhost/jwks",
            "https://keys.localhost./jwks",
            "https://10.1.2.3/jwks",
            "https://172.16.0.1/jwks",
            "https://192.168.1.1/jwks",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/jwks",
            "https://0.0.0.0/jwks",
            "https://[::1]/jwks",
            "https://[fd00::1]/jwks",
            "https://[fe80::1]/jwks",
            "https://[::ffff:127.0.0.1]/jwks",
            "https://[::ffff:10.0.0.1]/jwks",
        ] {
            assert!(reached(public, to).is_err(), "{to}");
        }
        // An internal configured origin may reach internal addresses, but never downgrade.
        let internal = "https://10.0.0.5/.well-known/openid-configuration";
        assert!(reached(internal, "https://10.0.0.6/jwks").is_ok());
        assert!(reached(internal, "https://127.0.0.1/jwks").is_ok());
        assert!(reached(internal, "http://10.0.0.6/jwks").is_err());
        let local = "https://localhost:8443/.well-known/openid-configuration";
        assert!(reached(local, "https://127.0.0.1:8443/jwks").is_ok());
        assert!(reached(local, "http://127.0.0.1:8080/jwks").is_err());
        // A plain-HTTP loopback configured URL (a development IdP) may reach loopback.
        let dev = "http://localhost:8080/.well-known/openid-configuration";
        assert!(reached(dev, "http://127.0.0.1:8080/jwks").is_ok());
        assert!(reached(dev, "https://idp.example/jwks").is_ok());
        assert!(reached(dev, "http://idp.example/jwks").is_err());
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
