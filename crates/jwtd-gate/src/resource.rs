//! Protected resources (RFC 9728): the `[[resource]]` tables, their metadata documents, and
//! the `/.well-known/oauth-protected-resource` answers.
//!
//! ```toml
//! [[resource]]
//! uri = "https://mcp.example.com/mcp"     # the canonical resource URI
//! issuers = ["corp"]                       # [[issuer]] names → authorization_servers
//! scopes_supported = ["mcp:read"]          # optional; default: the scopes its rules require
//! resource_name = "Example MCP server"     # optional
//! resource_documentation = "https://docs.example.com/mcp"   # optional
//!
//! [[rule]]
//! id = "mcp"
//! path = "/mcp"
//! auth = "corp"
//! resource = "https://mcp.example.com/mcp" # this rule guards the resource
//! scopes = { all = ["mcp:read"] }
//! ```
//!
//! A rule belongs to a resource only when it names it (`resource = "<uri>"`): never by its
//! host or path. A rule under a resource is audience-bound to it (tokens must carry the
//! resource URI in `aud`, RFC 8707) unless it sets `audiences`, and every 401/403 it produces
//! carries `resource_metadata="<metadata URL>"` and `scope="<every scope it requires>"`
//! ([`crate::refusal::http_denial`]); inferring the link from paths would apply that
//! audience check to rules that happen to fall under a URI, and cannot work for rules
//! without hosts or behind a proxy that rewrites paths.
//!
//! The metadata document ([`Resource::document`]) is built once at load. Its
//! `bearer_methods_supported` follows `[tokens]`: `"header"` when `Authorization: Bearer` is
//! read, `"query"` when a query parameter is; a cookie is not an RFC 6750 method and is not
//! listed. `tls_client_certificate_bound_access_tokens` is true when every route of the
//! resource takes only certificate-bound tokens (RFC 8705, [`crate::mtls`]: its issuers'
//! `[issuer.mtls] mode = "require"`, or its rules' `mtls = "require"`; set by the engine,
//! [`crate::Engine::with_resources`]). `dpop_bound_access_tokens_required` is true when every
//! route of the resource requires DPoP (its rules' `dpop = "require"`, or their issuers'
//! `[issuer.dpop] mode = "require"`; without a rule under it, its issuers'), and
//! `dpop_signing_alg_values_supported` names the algorithms its issuers take
//! ([`Resources::with_dpop`], then the engine).

use crate::config::{line_of, TokenSources};
use crate::rules::{is_scope_token, RuleSet};
use http::{header, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use std::sync::Arc;
use toml::Spanned;

/// The well-known path RFC 9728 defines; a resource with a path has it inserted after this.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
/// The most `[[resource]]` tables.
pub const MAX_RESOURCES: usize = 64;
/// The longest `uri` or `resource_documentation`.
pub const MAX_URI_LEN: usize = 2048;
/// The longest `resource_name`.
pub const MAX_NAME_LEN: usize = 200;
/// The most entries of `issuers` or `scopes_supported`.
pub const MAX_LIST: usize = 64;
/// How long clients and caches may keep a metadata document (`Cache-Control: public,
/// max-age=…`), in seconds: an hour. A reload that changes a document is seen within it.
pub const MAX_AGE: u64 = 3600;

/// How long a browser may keep a metadata preflight's answer (`Access-Control-Max-Age`), in
/// seconds: a day.
pub const PREFLIGHT_MAX_AGE: u32 = 86_400;

/// One `[[resource]]` table as written.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The canonical resource URI (`https://mcp.example.com/mcp`): absolute, `https` (`http`
    /// only for a loopback host), lower-case scheme and host, no default port, no query, no
    /// fragment, no user info, RFC 3986 characters only.
    pub uri: Spanned<String>,
    /// Names of `[[issuer]]`s (or `self`) whose `iss` are the `authorization_servers`; at
    /// least one.
    pub issuers: Spanned<Vec<String>>,
    /// `scopes_supported`; default: the scopes the rules under this resource require.
    #[serde(default)]
    pub scopes_supported: Option<Spanned<Vec<String>>>,
    /// `resource_name`, for people.
    #[serde(default)]
    pub resource_name: Option<Spanned<String>>,
    /// `resource_documentation`: an absolute `https` (or loopback `http`) URL.
    #[serde(default)]
    pub resource_documentation: Option<Spanned<String>>,
}

/// One checked resource, with its metadata document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The resource URI as configured (canonical).
    pub uri: String,
    /// Its authority (`host` or `host:port`), lower case.
    pub authority: String,
    /// The path of its metadata on the resource's host: [`WELL_KNOWN`] with the resource's
    /// path appended.
    pub well_known_path: String,
    /// The metadata URL (`https://host/.well-known/oauth-protected-resource/path`), named by
    /// `resource_metadata` in challenges.
    pub metadata_url: Arc<str>,
    /// The scopes it advertises.
    pub scopes: Vec<String>,
    /// The JSON metadata document (RFC 9728 section 2).
    pub document: String,
    /// The `[[issuer]]` names of its `issuers` (its authorization servers).
    pub issuers: Vec<String>,
}

/// The configured resources and which rule guards which.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    list: Vec<Resource>,
    /// Per rule index: the resource it guards.
    by_rule: Vec<Option<usize>>,
}

/// An answer to a request for a metadata document, independent of any framework.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataAnswer {
    /// 200, 404 or 405.
    pub status: StatusCode,
    /// `Content-Type`, `Cache-Control`, `Access-Control-Allow-Origin` (200), `Allow` (405).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The document, or a JSON error body.
    pub body: String,
}

/// The `(authority, path)` of an acceptable absolute URL, or why it is refused; `what` names
/// the key in messages. `strict` (a resource URI): also no query, canonical form, no lone
/// `/` path.
fn check_url(text: &str, what: &str, strict: bool) -> Result<(String, String), String> {
    if text.len() > MAX_URI_LEN {
        return Err(format!("{what} is longer than {MAX_URI_LEN} bytes"));
    }
    // RFC 3986 characters only: `http::Uri` also takes `"`, `\`, `{`, `|`, non-ASCII... in a
    // path, which a challenge's quoted `resource_metadata` (and a client) cannot carry.
    let rfc3986 = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
    if !text.bytes().all(rfc3986) {
        return Err(format!(
            "{what} {text:?} has a character outside RFC 3986 (percent-encode it)"
        ));
    }
    if strict && text.contains('#') {
        return Err(format!(
            "{what} {text:?} has a fragment; a resource URI has none"
        ));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{what} {text:?} is not a URI: {e}"))?;
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!(
            "{what} {text:?} must be absolute (https://host/path)"
        ));
    };
    if auth.as_str().contains('@') {
        return Err(format!("{what} {text:?} must not hold user information"));
    }
    if strict && uri.query().is_some() {
        return Err(format!("{what} {text:?} must not have a query"));
    }
    let host = auth.host();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{what} {text:?} must use https (http only for a loopback host)"
            ))
        }
        _ => return Err(format!("{what} {text:?} must use https")),
    }
    if !strict {
        return Ok((auth.as_str().to_owned(), uri.path().to_owned()));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = match auth.port_u16() {
        Some(p) if p == default_port => {
            return Err(format!(
                "{what} {text:?} names the default port; write it without (canonical form)"
            ))
        }
        Some(p) => format!(":{p}"),
        None => String::new(),
    };
    let path = uri.path();
    // http::Uri gives "/" for no path at all.
    let written_path = if text
        .get(scheme.len() + 3 + auth.as_str().len()..)
        .map_or(true, str::is_empty)
    {
        ""
    } else {
        path
    };
    let canonical = format!(
        "{scheme}://{}{port}{written_path}",
        host.to_ascii_lowercase()
    );
    if written_path == "/" {
        return Err(format!(
            "{what} {text:?}: write {:?} (no lone trailing slash, as RFC 9728 compares it)",
            canonical.trim_end_matches('/')
        ));
    }
    if canonical != text {
        return Err(format!(
            "{what} {text:?} is not in canonical form (lower-case scheme and host): write {canonical:?}"
        ));
    }
    Ok((
        format!("{}{port}", host.to_ascii_lowercase()),
        written_path.to_owned(),
    ))
}

impl Resources {
    /// Sets each resource's DPoP metadata (RFC 9449 section 5.2, in the RFC 9728 document)
    /// from the DPoP settings of the issuers it names (`configs`, in the order the resources
    /// were built from): `dpop_signing_alg_values_supported`, the algorithms a proof may use
    /// under any of them (absent when every one has `mode = "off"`), and
    /// `dpop_bound_access_tokens_required`, true when every one has `mode = "require"`.
    pub fn with_dpop(
        mut self,
        configs: &[ResourceConfig],
        dpop: &crate::dpop::DpopEngine,
    ) -> Resources {
        for (r, cfg) in self.list.iter_mut().zip(configs) {
            let settings: Vec<_> = cfg
                .issuers
                .get_ref()
                .iter()
                .filter_map(|n| dpop.of(n))
                .collect();
            let mut algs: Vec<&str> = Vec::new();
            for d in settings
                .iter()
                .filter(|d| d.mode != crate::config::DpopMode::Off)
            {
                for a in d.policy.algorithms() {
                    if !algs.contains(&a.as_str()) {
                        algs.push(a.as_str());
                    }
                }
            }
            let required = !settings.is_empty()
                && settings
                    .iter()
                    .all(|d| d.mode == crate::config::DpopMode::Require);
            let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_str(&r.document) else {
                continue;
            };
            if !algs.is_empty() {
                doc.insert("dpop_signing_alg_values_supported".into(), algs.into());
            }
            doc.insert("dpop_bound_access_tokens_required".into(), required.into());
            r.document = serde_json::Value::Object(doc).to_string();
        }
        self
    }

    /// Checks and builds the `[[resource]]` tables. `issuers` are the configured issuers as
    /// `(name, iss)` (jwtd's own `self` included when it signs); `rules` are the compiled
    /// rules, whose `resource` must each name a configured `uri`; `tokens` gives
    /// `bearer_methods_supported`; `text` is the (interpolated) file the spans point into (empty:
    /// no lines). Every error as `(line, message)`, line 0 when unknown.
    pub fn build(
        configs: &[ResourceConfig],
        issuers: &[(&str, Option<&str>)],
        rules: &RuleSet,
        tokens: &TokenSources,
        text: &str,
    ) -> Result<Resources, Vec<(usize, String)>> {
        let line = |span: std::ops::Range<usize>| {
            if text.is_empty() {
                0
            } else {
                line_of(text, span.start)
            }
        };
        let mut errors = Vec::new();
        if configs.len() > MAX_RESOURCES {
            errors.push((
                0,
                format!(
                    "{} [[resource]] tables: at most {MAX_RESOURCES}",
                    configs.len()
                ),
            ));
            return Err(errors);
        }
        let mut methods = Vec::new();
        if tokens.bearer {
            methods.push("header");
        }
        if tokens.query.is_some() {
            methods.push("query");
        }
        let mut list: Vec<Resource> = Vec::new();
        for cfg in configs {
            let uri = cfg.uri.get_ref();
            let at = line(cfg.uri.span());
            let mut err = |l: usize, m: String| errors.push((l, format!("resource {uri:?}: {m}")));
            let (authority, path) = match check_url(uri, "uri", true) {
                Ok(v) => v,
                Err(m) => {
                    err(at, m);
                    continue;
                }
            };
            if list.iter().any(|r| r.uri == *uri) {
                err(
                    at,
                    "configured twice (two [[resource]] with this uri)".into(),
                );
                continue;
            }
            let mut servers = Vec::new();
            let names = cfg.issuers.get_ref();
            let names_at = line(cfg.issuers.span());
            if names.is_empty() {
                err(
                    names_at,
                    "issuers must name at least one issuer (its authorization server)".into(),
                );
            } else if names.len() > MAX_LIST {
                err(names_at, format!("issuers lists more than {MAX_LIST}"));
            }
            for name in names {
                match issuers.iter().find(|(n, _)| n == name) {
                    None => err(names_at, format!("issuers: no issuer is named {name:?}")),
                    Some((_, None)) => err(
                        names_at,
                        format!(
                            "issuers: issuer {name:?} has no \"issuer\" (iss), so it cannot be named as an authorization server"
                        ),
                    ),
                    Some((_, Some(iss))) => {
                        if !servers.contains(iss) {
                            servers.push(*iss);
                        }
                    }
                }
            }
            let scopes: Vec<String> = match &cfg.scopes_supported {
                Some(s) => {
                    let l = line(s.span());
                    if s.get_ref().len() > MAX_LIST {
                        err(l, format!("scopes_supported lists more than {MAX_LIST}"));
                    }
                    for sc in s.get_ref() {
                        if !is_scope_token(sc) {
                            err(l, format!("scopes_supported: {sc:?} is not a scope token"));
                        }
                    }
                    s.get_ref().clone()
                }
                None => {
                    let mut out: Vec<String> = Vec::new();
                    for r in rules.rules().iter().filter(|r| r.resource() == Some(uri)) {
                        for sc in r.scopes().map(|s| s.scopes.as_slice()).unwrap_or(&[]) {
                            if !out.contains(sc) {
                                out.push(sc.clone());
                            }
                        }
                    }
                    out
                }
            };
            if let Some(n) = &cfg.resource_name {
                let v = n.get_ref();
                if v.trim().is_empty() || v.len() > MAX_NAME_LEN || v.chars().any(char::is_control)
                {
                    err(
                        line(n.span()),
                        format!(
                            "resource_name must be 1 to {MAX_NAME_LEN} bytes without control characters"
                        ),
                    );
                }
            }
            if let Some(d) = &cfg.resource_documentation {
                if let Err(m) = check_url(d.get_ref(), "resource_documentation", false) {
                    err(line(d.span()), m);
                }
            }
            let mut doc = serde_json::Map::new();
            doc.insert("resource".into(), uri.clone().into());
            doc.insert("authorization_servers".into(), servers.clone().into());
            if !scopes.is_empty() {
                doc.insert("scopes_supported".into(), scopes.clone().into());
            }
            doc.insert("bearer_methods_supported".into(), methods.clone().into());
            if let Some(n) = &cfg.resource_name {
                doc.insert("resource_name".into(), n.get_ref().clone().into());
            }
            if let Some(d) = &cfg.resource_documentation {
                doc.insert("resource_documentation".into(), d.get_ref().clone().into());
            }
            // The engine sets it from the mTLS policies (`Engine::with_resources`). The DPoP
            // members are set by `Resources::with_dpop` from the issuers' `[issuer.dpop]`.
            doc.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                false.into(),
            );
            doc.insert("dpop_bound_access_tokens_required".into(), false.into());
            let scheme = &uri[..uri.find(':').unwrap_or(0)];
            let well_known_path = format!("{WELL_KNOWN}{path}");
            list.push(Resource {
                uri: uri.clone(),
                metadata_url: Arc::from(format!("{scheme}://{authority}{well_known_path}")),
                authority,
                well_known_path,
                scopes,
                document: serde_json::Value::Object(doc).to_string(),
                issuers: cfg.issuers.get_ref().clone(),
            });
        }
        let mut by_rule = Vec::new();
        for r in rules.rules() {
            let Some(uri) = r.resource() else { continue };
            match list.iter().position(|x| x.uri == uri) {
                Some(i) => {
                    if by_rule.len() <= r.index() {
                        by_rule.resize(r.index() + 1, None);
                    }
                    by_rule[r.index()] = Some(i);
                }
                None if configs.iter().any(|c| c.uri.get_ref() == uri) => {} // refused above
                None => errors.push((
                    r.resource_span().map(&line).unwrap_or(0),
                    format!(
                        "rule {:?}: resource {uri:?} is not the uri of any [[resource]]",
                        r.id()
                    ),
                )),
            }
        }
        if errors.is_empty() {
            Ok(Resources { list, by_rule })
        } else {
            Err(errors)
        }
    }

    /// Warnings about resources that load but probably do not do what was meant: a resource no
    /// rule names (its metadata is published, but no request is audience-bound to it or
    /// challenged with it), and a rule under a resource that takes tokens of an issuer the
    /// resource's `issuers` (its `authorization_servers`) do not name (a client following the
    /// metadata cannot get such a token).
    pub fn lint(&self, configs: &[ResourceConfig], rules: &RuleSet) -> Vec<String> {
        let mut out = Vec::new();
        for (i, r) in self.list.iter().enumerate() {
            let under: Vec<_> = rules
                .rules()
                .iter()
                .filter(|rule| self.of_rule(rule.index()).is_some_and(|x| x.uri == r.uri))
                .collect();
            if under.is_empty() {
                out.push(format!(
                    "resource {:?}: no rule names it (resource = ...): its metadata is published, but no request is audience-bound to it or challenged with it",
                    r.uri
                ));
            }
            let Some(cfg) = configs.get(i) else { continue };
            for rule in under {
                for name in rule.requirement().issuers() {
                    if !cfg.issuers.get_ref().iter().any(|n| n == name) {
                        let at = rule
                            .line()
                            .map(|l| format!(" (line {l})"))
                            .unwrap_or_default();
                        out.push(format!(
                            "rule {:?}{at} takes tokens of issuer {name:?}, which resource {:?} does not list in issuers (its authorization_servers)",
                            rule.id(),
                            r.uri
                        ));
                    }
                }
            }
        }
        out
    }

    /// The resources, in file order.
    pub fn list(&self) -> &[Resource] {
        &self.list
    }

    /// Marks resource `index` of [`Resources::list`] as taking only certificate-bound tokens:
    /// its document's `tls_client_certificate_bound_access_tokens` becomes true (the engine
    /// decides, from its issuers' and rules' `mtls` policies).
    pub(crate) fn set_tls_bound(&mut self, index: usize) {
        let Some(r) = self.list.get_mut(index) else {
            return;
        };
        if let Ok(mut doc) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&r.document)
        {
            doc.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                true.into(),
            );
            r.document = serde_json::Value::Object(doc).to_string();
        }
    }

    /// Sets resource `index`'s `dpop_bound_access_tokens_required` (the engine decides, from
    /// its issuers' and rules' `dpop` modes).
    pub(crate) fn set_dpop_required(&mut self, index: usize, required: bool) {
        let Some(r) = self.list.get_mut(index) else {
            return;
        };
        if let Ok(mut doc) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&r.document)
        {
            doc.insert("dpop_bound_access_tokens_required".into(), required.into());
            r.document = serde_json::Value::Object(doc).to_string();
        }
    }

    /// No resource is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The resource the rule at `index` (its [`crate::rules::Rule::index`]) guards.
    pub fn of_rule(&self, index: usize) -> Option<&Resource> {
        self.by_rule
            .get(index)
            .copied()
            .flatten()
            .and_then(|i| self.list.get(i))
    }

    /// The resource whose metadata a request for `path` (no query) on `host` asks for:
    /// the resources whose [`Resource::well_known_path`] is `path`; if several, the one whose
    /// authority is the request's host. At [`WELL_KNOWN`] itself, when no resource without a
    /// path is configured, the one resource (of this host, if several) is served: MCP clients
    /// fall back to the root form for a path-bearing resource.
    pub fn for_metadata_path(&self, host: &str, path: &str) -> Option<&Resource> {
        let host = normalise_authority(host);
        fn pick<'a>(c: Vec<&'a Resource>, host: &str) -> Option<&'a Resource> {
            if c.len() == 1 {
                return c.first().copied();
            }
            let mut on_host = c.into_iter().filter(|r| r.authority == host);
            match (on_host.next(), on_host.next()) {
                (Some(r), None) => Some(r),
                _ => None,
            }
        }
        let exact: Vec<&Resource> = self
            .list
            .iter()
            .filter(|r| r.well_known_path == path)
            .collect();
        if exact.is_empty() && path == WELL_KNOWN {
            return pick(self.list.iter().collect(), &host);
        }
        pick(exact, &host)
    }

    /// The answer to `method path` on `host` when `path` (query ignored) is [`WELL_KNOWN`] or
    /// under it, else `None`: 200 with the document (`GET`, `HEAD`), 405 for another method,
    /// 404 when no resource has this metadata path; [`Resources::answer_request`] also
    /// answers a CORS preflight.
    pub fn answer(&self, method: &str, host: &str, path_and_query: &str) -> Option<MetadataAnswer> {
        self.answer_inner(method, host, path_and_query, None)
    }

    /// [`Resources::answer`] given the request's headers, so that a CORS preflight (`OPTIONS`
    /// with `Origin` and `Access-Control-Request-Method`, [`crate::rules::is_cors_preflight`])
    /// of a known path is answered 204 with `Access-Control-Allow-Origin: *`,
    /// `Access-Control-Allow-Methods: GET, HEAD`, the asked `Access-Control-Request-Headers`
    /// allowed (when they are a list of header names) and `Access-Control-Max-Age`
    /// ([`PREFLIGHT_MAX_AGE`]): browser-based MCP clients send `MCP-Protocol-Version`.
    pub fn answer_request(
        &self,
        method: &str,
        host: &str,
        path_and_query: &str,
        headers: &http::HeaderMap,
    ) -> Option<MetadataAnswer> {
        let preflight = crate::rules::is_cors_preflight(method, headers).then(|| {
            headers
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        });
        self.answer_inner(method, host, path_and_query, preflight)
    }

    fn answer_inner(
        &self,
        method: &str,
        host: &str,
        path_and_query: &str,
        preflight: Option<&str>,
    ) -> Option<MetadataAnswer> {
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        let under = path
            .strip_prefix(WELL_KNOWN)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !under {
            return None;
        }
        let json = HeaderValue::from_static("application/json");
        let error = |status: StatusCode, code: &str, message: &str| MetadataAnswer {
            status,
            headers: vec![
                (header::CONTENT_TYPE, json.clone()),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body: serde_json::json!({"error": code, "message": message}).to_string(),
        };
        let Some(r) = self.for_metadata_path(host, path) else {
            return Some(error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no protected resource has metadata here",
            ));
        };
        if method == "OPTIONS" && preflight.is_some() {
            // A browser-based client's CORS preflight (MCP clients send
            // `MCP-Protocol-Version`): the document is public, every origin may read it.
            let mut headers = vec![
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from(PREFLIGHT_MAX_AGE),
                ),
            ];
            if let Some(asked) = preflight.filter(|h| !h.is_empty() && is_header_list(h)) {
                if let Ok(v) = HeaderValue::from_str(asked) {
                    headers.push((header::ACCESS_CONTROL_ALLOW_HEADERS, v));
                }
            }
            return Some(MetadataAnswer {
                status: StatusCode::NO_CONTENT,
                headers,
                body: String::new(),
            });
        }
        if method != "GET" && method != "HEAD" {
            let mut a = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the metadata is read with GET or HEAD",
            );
            a.headers
                .push((header::ALLOW, HeaderValue::from_static("GET, HEAD")));
            return Some(a);
        }
        Some(MetadataAnswer {
            status: StatusCode::OK,
            headers: vec![
                (header::CONTENT_TYPE, json),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_str(&format!("public, max-age={MAX_AGE}")).expect("ASCII"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
            ],
            body: r.document.clone(),
        })
    }
}

/// A comma-separated list of header names (RFC 9110 tokens), at most 1,024 bytes.
fn is_header_list(s: &str) -> bool {
    s.len() <= 1024
        && s.split(',').all(|t| {
            let t = t.trim();
            !t.is_empty() && http::HeaderName::from_bytes(t.as_bytes()).is_ok()
        })
}

/// `host[:port]` lower-cased, without a default port (443 or 80) or a trailing dot.
fn normalise_authority(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    let h = h
        .strip_suffix(":443")
        .or_else(|| h.strip_suffix(":80"))
        .unwrap_or(&h);
    h.trim_end_matches('.').to_owned()
}
