//! `jwtd rules test` and `jwtd rules explain`: the per-route rules of a configuration, seen
//! from the command line with the engine `jwtd serve` decides with.

use crate::args::RulesTestArgs;
use crate::cmd::{await_keys, print_json, Failure, Result};
use crate::io;
use http::{HeaderMap, HeaderName, HeaderValue};
use jwtd_core::Reason;
use jwtd_gate::rules::{DefaultAction, Rule, RuleSet};
use jwtd_gate::{Decision, Engine};
use serde_json::{json, Map, Value};
use std::path::Path;

/// A `--request` as the engine sees it.
#[derive(Debug, PartialEq, Eq)]
struct ParsedRequest {
    method: String,
    /// `http` or `https`, lower-cased.
    scheme: String,
    /// `host[:port]` from the URL.
    host: String,
    /// The path and query, raw (percent-encoded) as given; `/` when the URL has no path.
    path_and_query: String,
}

fn request_usage(why: &str) -> Failure {
    Failure::Usage(format!(
        "--request: {why}; give `METHOD URL` with an absolute http(s) URL, e.g. \
         'GET https://api.example/v1/orders/7'"
    ))
}

/// Parses `METHOD URL`: a method token, then an absolute `http`/`https` URL with a host and
/// no user information or fragment (neither reaches a server).
fn parse_request(s: &str) -> Result<ParsedRequest> {
    let mut parts = s.split_whitespace();
    let (Some(method), Some(url), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(request_usage(&format!(
            "{s:?} is not two words (a URL holds no raw space: write %20)"
        )));
    };
    if !jwtd_gate::rules::is_method_token(method) {
        return Err(request_usage(&format!("{method:?} is not an HTTP method")));
    }
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| request_usage(&format!("{url:?} is not an absolute URL")))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(request_usage(&format!(
            "{url:?}: the scheme must be http or https"
        )));
    }
    if url.contains('#') {
        return Err(request_usage(&format!(
            "{url:?} has a fragment (#...), which is never sent to a server"
        )));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| request_usage(&format!("{url:?} is not a URL: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| request_usage(&format!("{url:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(request_usage(&format!(
            "{url:?} has user information (user@host), which /auth never sees"
        )));
    }
    if jwtd_gate::rules::normalise_host(authority.as_str()).is_none() {
        return Err(request_usage(&format!(
            "{:?} is not a host name or address",
            authority.as_str()
        )));
    }
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/".to_owned(),
        Some(p) if p.starts_with('?') => format!("/{p}"),
        Some(p) => p.to_owned(),
    };
    Ok(ParsedRequest {
        method: method.to_owned(),
        scheme: scheme.to_ascii_lowercase(),
        host: authority.as_str().to_owned(),
        path_and_query,
    })
}

/// Parses the `--header` values, `Name: value` each, in order (repeats are kept).
fn parse_headers(given: &[String]) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for h in given {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| Failure::Usage(format!("--header {h:?} is not `Name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            Failure::Usage(format!(
                "--header {h:?}: {:?} is not a header name",
                name.trim()
            ))
        })?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            Failure::Usage(format!(
                "--header {:?}: the value is not a header value",
                name.as_str()
            ))
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The token of `--token`, `--token-file` or none (`--no-token`).
fn given_token(a: &RulesTestArgs) -> Result<Option<String>> {
    if let Some(t) = &a.token {
        return Ok(Some(io::read_token(Some(t)).map_err(Failure::Usage)?));
    }
    if let Some(f) = &a.token_file {
        let raw = io::read_file(f).map_err(Failure::Usage)?;
        let text = std::str::from_utf8(&raw)
            .map_err(|_| Failure::Usage(format!("{} is not text", f.display())))?;
        let empty = format!("{} holds no token", f.display());
        return Ok(Some(io::token_text(text, &empty).map_err(Failure::Usage)?));
    }
    Ok(None)
}

/// Puts the token where the configuration reads tokens: `Authorization: Bearer`, else the
/// `[tokens]` cookie, else its query parameter.
fn place_token(
    token: &str,
    sources: &jwtd_gate::config::TokenSources,
    headers: &mut HeaderMap,
    path_and_query: &mut String,
) -> Result<()> {
    let unusable = || Failure::Usage("the token is not a header value".into());
    if sources.bearer {
        let v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unusable())?;
        headers.append(http::header::AUTHORIZATION, v);
    } else if let Some(cookie) = &sources.cookie {
        let v = HeaderValue::from_str(&format!("{cookie}={token}")).map_err(|_| unusable())?;
        headers.append(http::header::COOKIE, v);
    } else if let Some(param) = &sources.query {
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(Failure::Usage(
                "the token cannot be sent as a query parameter as it is (a JWS is base64url and dots)"
                    .into(),
            ));
        }
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        path_and_query.push(sep);
        path_and_query.push_str(&format!("{param}={token}"));
    } else {
        return Err(Failure::Usage(
            "[tokens] reads no token at all (bearer = false, no cookie, no query)".into(),
        ));
    }
    Ok(())
}

fn default_name(d: DefaultAction) -> &'static str {
    match d {
        DefaultAction::Deny => "deny",
        DefaultAction::Public => "public",
        DefaultAction::Authenticated => "authenticated",
    }
}

/// How the decision found its rule, for the output's `matched`.
fn matched(decision: &Decision<'_>, engine: &Engine) -> &'static str {
    match (&decision.rule, &decision.outcome) {
        (Some(_), _) => "rule",
        (None, _) if engine.rules.is_empty() => "no_rules",
        (None, Err(d)) if d.error.reason() == Reason::BadPath => "bad_path",
        (None, _) => "default",
    }
}

/// `jwtd rules test`.
pub fn test(a: RulesTestArgs) -> Result<()> {
    let req = parse_request(&a.request)?;
    let mut headers = parse_headers(&a.headers)?;
    let token = given_token(&a)?;
    let config =
        jwtd_service::Config::load(&a.config).map_err(|e| Failure::Usage(e.to_string()))?;
    let file = a.config.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let runtime = jwtd_service::Runtime::build_read_only(config)
            .await
            .map_err(|e| Failure::Usage(format!("{file}: {e}")))?;
        let engine = &runtime.engine;
        let mut path_and_query = req.path_and_query.clone();
        if let Some(t) = &token {
            place_token(t, &engine.sources, &mut headers, &mut path_and_query)?;
            // The keys of the issuer the token routes to, as a running service has them.
            if let Ok(issuer) = engine.issuers.select(t) {
                if let Some(why) = await_keys(&issuer, a.fetch_timeout).await? {
                    eprintln!(
                        "jwtd: note: the keys of issuer {:?} could not be fetched within {} s ({why}); deciding without them",
                        issuer.name, a.fetch_timeout
                    );
                }
            }
        }
        let target = jwtd_gate::Request {
            method: &req.method,
            scheme: &req.scheme,
            host: &req.host,
            path_and_query: &path_and_query,
            headers: &headers,
            client_cert: Default::default(),
        };
        let decision = engine.decide(&target, jwtd_core::unix_now()).await;
        let out = report(&decision, engine, token.as_deref());
        if a.json {
            print_json(&out);
        } else {
            print_report(&a.request, &out);
        }
        match decision.outcome {
            Ok(_) => Ok(()),
            Err(_) => Err(Failure::Denied),
        }
    })
}

/// The decision as the documented JSON object (see `jwtd rules test --help`).
fn report(decision: &Decision<'_>, engine: &Engine, token: Option<&str>) -> Value {
    let how = matched(decision, engine);
    let mut out = Map::new();
    let rule = decision.rule;
    out.insert(
        "decision".into(),
        json!(if decision.outcome.is_ok() {
            "allow"
        } else {
            "deny"
        }),
    );
    out.insert("rule".into(), json!(rule.map(Rule::id)));
    out.insert("rule_line".into(), json!(rule.and_then(Rule::line)));
    out.insert("matched".into(), json!(how));
    out.insert(
        "default".into(),
        json!((how == "default").then(|| default_name(engine.rules.default_action()))),
    );
    let null = Value::Null;
    match &decision.outcome {
        Ok(allowed) => {
            out.insert("status".into(), json!(200));
            for k in ["reason", "error", "message"] {
                out.insert(k.into(), null.clone());
            }
            out.insert(
                "issuer".into(),
                json!(allowed.identity.as_ref().map(|(i, _)| i.name.as_str())),
            );
            out.insert("www_authenticate".into(), null.clone());
            out.insert("retry_after".into(), null.clone());
            let mut h = Map::new();
            for (name, value) in &allowed.headers {
                h.insert(
                    name.as_str().to_owned(),
                    json!(String::from_utf8_lossy(value.as_bytes())),
                );
            }
            out.insert("headers".into(), Value::Object(h));
        }
        Err(denial) => {
            let answer = jwtd_gate::refusal::http_denial(denial);
            let header = |n: http::HeaderName| {
                answer
                    .headers
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let reason = denial.error.reason();
            out.insert("status".into(), json!(answer.status.as_u16()));
            out.insert("reason".into(), json!(reason.as_str()));
            out.insert("error".into(), json!(reason.bearer_error().as_str()));
            out.insert("message".into(), json!(denial.error.message()));
            out.insert("issuer".into(), json!(denial.issuer));
            out.insert(
                "www_authenticate".into(),
                json!(header(http::header::WWW_AUTHENTICATE)),
            );
            out.insert(
                "retry_after".into(),
                json!(header(http::header::RETRY_AFTER).and_then(|v| v.parse::<u64>().ok())),
            );
            out.insert("headers".into(), json!({}));
        }
    }
    out.insert("token".into(), json!(token.map(jwtd_service::fingerprint)));
    Value::Object(out)
}

/// The report in words, one item a line.
fn print_report(request: &str, r: &Value) {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    println!(
        "request:  {}",
        request.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    println!(
        "token:    {}",
        match r["token"].as_str() {
            Some(f) => format!("fingerprint {f} (SHA-256; the token itself is never printed)"),
            None => "none".to_owned(),
        }
    );
    println!("decision: {}", s("decision"));
    let rule = match s("matched").as_str() {
        "rule" => match r["rule_line"].as_u64() {
            Some(l) => format!("{} (line {l})", s("rule")),
            None => s("rule"),
        },
        "default" => format!(
            "default (no rule matches; [rules] default = \"{}\")",
            s("default")
        ),
        "no_rules" => {
            "none configured (every request needs a valid token from a configured issuer)"
                .to_owned()
        }
        _ => "none (the path cannot be matched safely)".to_owned(),
    };
    println!("rule:     {rule}");
    println!("status:   {}", r["status"]);
    if let Some(reason) = r["reason"].as_str() {
        println!("reason:   {reason} ({}): {}", s("error"), s("message"));
    }
    if let Some(i) = r["issuer"].as_str() {
        println!("issuer:   {i}");
    }
    if let Some(w) = r["www_authenticate"].as_str() {
        println!("www-authenticate: {w}");
    }
    if let Some(n) = r["retry_after"].as_u64() {
        println!("retry-after: {n}");
    }
    if let Some(h) = r["headers"].as_object().filter(|h| !h.is_empty()) {
        println!("headers:");
        for (name, value) in h {
            println!("  {name}: {}", value.as_str().unwrap_or(""));
        }
    }
}

/// One rule, as `rules explain --json` lists it.
fn rule_json(r: &Rule) -> Value {
    let list = |v: Vec<String>| Value::from(v);
    json!({
        "id": r.id(),
        "line": r.line(),
        "hosts": list(r.hosts().iter().map(ToString::to_string).collect()),
        "methods": r.methods().to_string(),
        "path": r.path().source,
        "when_headers": r.when_headers().iter().map(|(n, t)| (n.as_str().to_owned(), Value::from(t.to_string()))).collect::<Map<String, Value>>(),
        "requirement": r.requirement().to_string(),
        "audiences": r.audiences(),
        "scopes": r.scopes().map(ToString::to_string),
        "claims": list(r.claims().iter().map(ToString::to_string).collect()),
        "cors_preflight_bypass": r.cors_preflight_bypass(),
        "set_headers": r.set_headers().iter().map(|(n, t)| (n.as_str().to_owned(), Value::from(t.to_string()))).collect::<Map<String, Value>>(),
        "specificity": r.specificity(),
    })
}

/// What `[rules] default` does, in words.
fn default_words(d: DefaultAction) -> &'static str {
    match d {
        DefaultAction::Deny => "a request no rule matches is refused (403 no_matching_rule)",
        DefaultAction::Public => "a request no rule matches passes without a token",
        DefaultAction::Authenticated => {
            "a request no rule matches needs a valid token from any configured issuer"
        }
    }
}

/// `jwtd rules explain`.
pub fn explain(path: &Path, as_json: bool) -> Result<()> {
    let config =
        jwtd_service::Config::load_settings(path).map_err(|e| Failure::Usage(e.to_string()))?;
    let set: RuleSet = config
        .rule_set()
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let ordered = set.rules_in_match_order();
    let warnings = set.lint();
    let default = set.default_action();
    if as_json {
        print_json(&json!({
            "rules": ordered.iter().map(|r| rule_json(r)).collect::<Vec<_>>(),
            "default": default_name(default),
            "warnings": warnings,
        }));
        return Ok(());
    }
    if ordered.is_empty() {
        println!(
            "{}: no [[rule]]: every request needs a valid token from a configured issuer",
            path.display()
        );
    } else {
        println!(
            "{}: {} rule(s), in match order (most specific first; the first whose conditions hold decides):",
            path.display(),
            ordered.len()
        );
    }
    let or_dash = |v: Vec<String>, sep: &str| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(sep)
        }
    };
    for (i, r) in ordered.iter().enumerate() {
        println!();
        match r.line() {
            Some(l) => println!("{}. {} (line {l})", i + 1, r.id()),
            None => println!("{}. {}", i + 1, r.id()),
        }
        let hosts = r.hosts().iter().map(ToString::to_string).collect();
        println!("   hosts:        {}", or_dash(hosts, " "));
        println!("   methods:      {}", r.methods());
        println!("   path:         {}", r.path().source);
        let when = r
            .when_headers()
            .iter()
            .map(|(n, t)| format!("{n} = {t}"))
            .collect();
        println!("   when_headers: {}", or_dash(when, ", "));
        println!("   requirement:  {}", r.requirement());
        let auds = r.audiences().map(<[String]>::to_vec).unwrap_or_default();
        println!("   audiences:    {}", or_dash(auds, " "));
        println!(
            "   scopes:       {}",
            r.scopes().map_or("-".to_owned(), |s| s.to_string())
        );
        let claims = r.claims().iter().map(ToString::to_string).collect();
        println!("   claims:       {}", or_dash(claims, "; "));
        if r.cors_preflight_bypass() {
            println!("   cors:         preflight passes without a token");
        }
        let set_headers = r
            .set_headers()
            .iter()
            .map(|(n, t)| format!("{n} = {t}"))
            .collect();
        println!("   set_headers:  {}", or_dash(set_headers, ", "));
        println!("   specificity:  {}", r.specificity());
    }
    if !ordered.is_empty() {
        println!();
        println!(
            "default: {}: {}",
            default_name(default),
            default_words(default)
        );
    }
    if !warnings.is_empty() {
        println!();
        println!("warnings:");
        for w in &warnings {
            println!("  {w}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_method_and_absolute_url() {
        let r = parse_request("POST https://API.example:8443/v1/orders/7?x=1").unwrap();
        assert_eq!(
            r,
            ParsedRequest {
                method: "POST".into(),
                scheme: "https".into(),
                host: "API.example:8443".into(),
                path_and_query: "/v1/orders/7?x=1".into(),
            }
        );
        assert_eq!(
            parse_request("GET http://api.example")
                .unwrap()
                .path_and_query,
            "/"
        );
        for bad in [
            "",
            "GET",
            "/v1/orders",
            "GET /v1/orders",
            "GET api.example/v1",
            "GET ftp://api.example/",
            "GET https://api.example/a b",
            "GET https://api.example/#top",
            "GET https://user@api.example/",
            "GE(T https://api.example/",
            "GET https:///path",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_name_colon_value() {
        let h = parse_headers(&["X-Tenant: acme".into(), "x-tenant:  b ".into()]).unwrap();
        let all: Vec<_> = h.get_all("x-tenant").iter().collect();
        assert_eq!(all, ["acme", "b"]);
        assert!(parse_headers(&["no colon".into()]).is_err());
        assert!(parse_headers(&["bad name: v".into()]).is_err());
    }
}
