//! The rule engine: matching, specificity, load errors, evaluation pieces, properties.

use http::{HeaderMap, HeaderName, HeaderValue};
use jwtd_gate::rules::*;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    rules: RuleOptions,
    #[serde(default)]
    rule: Vec<RuleConfig>,
}

#[path = "rules/dpop.rs"]
mod dpop;

#[path = "rules/dpop_keys.rs"]
mod dpop_keys;

const ISSUERS: [&str; 3] = ["corp", "partner", "partner-api"];

fn reserved() -> Vec<HeaderName> {
    ["x-auth-subject", "x-auth-issuer", "authorization", "cookie"]
        .iter()
        .map(|s| HeaderName::from_static(s))
        .collect()
}

fn try_load(text: &str) -> Result<RuleSet, Vec<RuleError>> {
    let f: File = toml::from_str(text).expect("toml");
    RuleSet::build_with_source(text, f.rules, &f.rule, &ISSUERS, &reserved())
}

fn load(text: &str) -> RuleSet {
    match try_load(text) {
        Ok(s) => s,
        Err(e) => panic!(
            "errors: {}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn errors(text: &str) -> Vec<String> {
    match try_load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_error(text: &str, needle: &str) {
    let errs = errors(text);
    assert!(
        errs.iter().any(|e| e.contains(needle)),
        "no error containing {needle:?} in {errs:#?}"
    );
}

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in list {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// A match as tests compare it: the rule id and the params.
type Found = Option<(String, Vec<(String, String)>)>;

/// A table row: method, host, path, and the expected rule id with params.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<(&'a str, &'a [(&'a str, &'a str)])>,
);

/// `(rule id, params)` for a request, or `None`.
fn find_in(
    set: &RuleSet,
    method: &str,
    host: &str,
    path: &str,
    h: &HeaderMap,
) -> Result<Found, PathError> {
    let t = Target {
        method,
        host,
        path,
        headers: h,
    };
    Ok(set.find(&t)?.map(|m| {
        (
            m.rule.id().to_owned(),
            m.params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }))
}

fn id_of(set: &RuleSet, method: &str, host: &str, path: &str) -> Option<String> {
    find_in(set, method, host, path, &HeaderMap::new())
        .expect("path ok")
        .map(|(id, _)| id)
}

const ISSUE: &str = r#"
[[rule]]
id = "health"
path = "/healthz"
auth = "public"

[[rule]]
id = "orders-read"
path = "/v1/orders/:id"
methods = ["GET", "HEAD"]
auth = { any = ["corp", "partner"] }
scopes = { all = ["orders:read"] }
[rule.set_headers]
x-order-id = "{path.id}"
x-user = "{claim.sub}"

[[rule]]
id = "admin"
path = "/admin/**"
methods = ["POST"]
auth = "corp"
claims = [{ path = "amr", contains = "mfa" }]

[[rule]]
id = "partner-api"
hosts = ["partner.example.com"]
path = "/partner/*rest"
auth = "partner-api"
audiences = ["https://partner.example.com/api"]
"#;

#[test]
fn issue_examples_table() {
    let set = load(ISSUE);
    let none = HeaderMap::new();
    let table: &[Row<'_>] = &[
        ("GET", "api.example.com", "/healthz", Some(("health", &[]))),
        (
            "POST",
            "api.example.com",
            "/healthz?x=1",
            Some(("health", &[])),
        ),
        ("GET", "api.example.com", "/healthz/", None),
        (
            "GET",
            "api.example.com",
            "/v1/orders/7",
            Some(("orders-read", &[("id", "7")])),
        ),
        (
            "head",
            "api.example.com",
            "/v1/orders/a%20b",
            Some(("orders-read", &[("id", "a b")])),
        ),
        ("POST", "api.example.com", "/v1/orders/7", None),
        ("GET", "api.example.com", "/v1/orders", None),
        ("POST", "x", "/admin", Some(("admin", &[]))),
        ("POST", "x", "/admin/users/7", Some(("admin", &[]))),
        ("GET", "x", "/admin/users/7", None),
        (
            "GET",
            "Partner.Example.com:8443",
            "/partner/a/b/",
            Some(("partner-api", &[("rest", "a/b/")])),
        ),
        ("GET", "other.example.com", "/partner/a", None),
    ];
    for (m, h, p, want) in table {
        let got = find_in(&set, m, h, p, &none).unwrap();
        let want = want.map(|(id, ps)| {
            (
                id.to_owned(),
                ps.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(got, want, "{m} {h} {p}");
    }
    let r = set.get("orders-read").unwrap();
    assert_eq!(r.requirement().issuers(), vec!["corp", "partner"]);
    assert!(r.requirement().needs_token());
    assert_eq!(r.scopes().unwrap().scopes, vec!["orders:read".to_owned()]);
    let p = set.get("partner-api").unwrap();
    assert_eq!(
        p.audiences(),
        Some(&["https://partner.example.com/api".to_owned()][..])
    );
    assert!(set.get("health").unwrap().requirement().is_public());
    assert!(set.get("nope").is_none());
    assert_eq!(set.default_action(), DefaultAction::Deny);
}

#[test]
fn admin_needs_mfa_claim() {
    let set = load(ISSUE);
    let r = set.get("admin").unwrap();
    let h = HeaderMap::new();
    let b = Binding {
        params: &[],
        headers: &h,
    };
    let with: Map<String, Value> = json!({"amr": ["pwd", "mfa"]}).as_object().unwrap().clone();
    let without: Map<String, Value> = json!({"amr": ["pwd"]}).as_object().unwrap().clone();
    assert!(r.failing_claim(&with, &b).is_none());
    assert_eq!(
        r.failing_claim(&without, &b).unwrap().to_string(),
        "amr contains \"mfa\""
    );
    assert!(r.failing_claim(&NoClaims, &b).is_some());
}

#[test]
fn output_headers_render() {
    let set = load(ISSUE);
    let h = HeaderMap::new();
    let t = Target {
        method: "GET",
        host: "a",
        path: "/v1/orders/42",
        headers: &h,
    };
    let m = set.find(&t).unwrap().unwrap();
    let claims: Map<String, Value> = json!({"sub": "alice"}).as_object().unwrap().clone();
    let out = m.rule.render_headers(&claims, &m.binding(&h));
    assert_eq!(
        out,
        vec![
            (
                HeaderName::from_static("x-order-id"),
                Some(HeaderValue::from_static("42"))
            ),
            (
                HeaderName::from_static("x-user"),
                Some(HeaderValue::from_static("alice"))
            ),
        ]
    );
    // A missing claim renders as nothing; a CR LF in a parameter cannot make a header.
    let t = Target {
        path: "/v1/orders/a%0D%0Ab",
        ..t
    };
    let m = set.find(&t).unwrap().unwrap();
    let out = m.rule.render_headers(&NoClaims, &m.binding(&h));
    assert_eq!(out[0].1, None);
    assert_eq!(out[1].1, None);
}

// ---------------------------------------------------------------- specificity

#[test]
fn literal_beats_param_beats_wildcard() {
    let set = load(
        r#"
[[rule]]
id = "rest"
path = "/v1/**"
auth = "corp"
[[rule]]
id = "param"
path = "/v1/orders/:id"
auth = "corp"
[[rule]]
id = "literal"
path = "/v1/orders/mine"
auth = "corp"
[[rule]]
id = "param-rest"
path = "/v1/:kind/**"
auth = "corp"
[[rule]]
id = "exact-a"
path = "/a"
auth = "corp"
[[rule]]
id = "a-rest"
path = "/a/*rest"
auth = "corp"
"#,
    );
    assert_eq!(
        id_of(&set, "GET", "h", "/v1/orders/mine").unwrap(),
        "literal"
    );
    assert_eq!(id_of(&set, "GET", "h", "/v1/orders/7").unwrap(), "param");
    assert_eq!(
        id_of(&set, "GET", "h", "/v1/orders/7/x").unwrap(),
        "param-rest"
    );
    assert_eq!(id_of(&set, "GET", "h", "/v1/orders").unwrap(), "param-rest");
    assert_eq!(id_of(&set, "GET", "h", "/v1").unwrap(), "rest");
    assert_eq!(id_of(&set, "GET", "h", "/a").unwrap(), "exact-a");
    assert_eq!(id_of(&set, "GET", "h", "/a/").unwrap(), "a-rest");
    assert_eq!(id_of(&set, "GET", "h", "/a/b").unwrap(), "a-rest");
    let order: Vec<&str> = set.rules_in_match_order().iter().map(|r| r.id()).collect();
    assert_eq!(
        order,
        vec![
            "exact-a",
            "a-rest",
            "literal",
            "param",
            "param-rest",
            "rest"
        ]
    );
    for r in set.rules_in_match_order() {
        assert!(r.specificity().contains("path ["), "{}", r.specificity());
    }
}

#[test]
fn host_exact_beats_wildcard_beats_none() {
    let set = load(
        r#"
[[rule]]
id = "any-host"
path = "/x"
auth = "corp"
[[rule]]
id = "wild"
hosts = ["*.example.com"]
path = "/x"
auth = "corp"
[[rule]]
id = "wild-eu"
hosts = ["*.eu.example.com"]
path = "/x"
auth = "corp"
[[rule]]
id = "exact"
hosts = ["API.example.com"]
path = "/x"
auth = "corp"
"#,
    );
    assert_eq!(
        id_of(&set, "GET", "api.example.com:443", "/x").unwrap(),
        "exact"
    );
    assert_eq!(
        id_of(&set, "GET", "API.EXAMPLE.COM.", "/x").unwrap(),
        "exact"
    );
    assert_eq!(id_of(&set, "GET", "b.example.com", "/x").unwrap(), "wild");
    assert_eq!(id_of(&set, "GET", "a.b.example.com", "/x").unwrap(), "wild");
    assert_eq!(
        id_of(&set, "GET", "a.eu.example.com", "/x").unwrap(),
        "wild-eu"
    );
    assert_eq!(id_of(&set, "GET", "example.com", "/x").unwrap(), "any-host");
    assert_eq!(id_of(&set, "GET", "", "/x").unwrap(), "any-host");
    assert_eq!(
        id_of(&set, "GET", "evil.com/.example.com", "/x").unwrap(),
        "any-host"
    );
}

#[test]
fn backtracking_when_most_specific_fails_method_host_or_header() {
    let set = load(
        r#"
[[rule]]
id = "post-one"
path = "/orders/:id"
methods = ["POST"]
auth = "corp"
[[rule]]
id = "tenant"
path = "/orders/**"
when_headers = { "x-tenant" = "acme" }
auth = "corp"
[[rule]]
id = "all-orders"
path = "/orders/**"
auth = "partner"
[[rule]]
id = "not-trace"
path = "/**"
methods = ["!TRACE"]
auth = "corp"
[[rule]]
id = "fallback"
path = "/**"
auth = "public"
"#,
    );
    let none = HeaderMap::new();
    let acme = headers(&[("x-tenant", "acme")]);
    let twice = headers(&[("x-tenant", "acme"), ("x-tenant", "acme")]);
    let f = |m: &str, p: &str, h: &HeaderMap| find_in(&set, m, "h", p, h).unwrap().unwrap().0;
    assert_eq!(f("POST", "/orders/7", &none), "post-one");
    assert_eq!(f("GET", "/orders/7", &none), "all-orders");
    assert_eq!(f("GET", "/orders/7", &acme), "tenant");
    assert_eq!(f("GET", "/orders/7", &twice), "all-orders");
    assert_eq!(f("GET", "/other", &none), "not-trace");
    assert_eq!(f("TRACE", "/other", &none), "fallback");
    // The lint sees the public fallback behind "not-trace" and "post-one".
    let lint = set.lint();
    assert!(
        lint.iter()
            .any(|l| l.contains("\"not-trace\"") && l.contains("\"fallback\"")),
        "{lint:#?}"
    );
    assert!(lint.iter().any(|l| l.contains("\"post-one\"")), "{lint:#?}");
}

#[test]
fn methods_rank_explicit_over_all_but_over_all() {
    let set = load(
        r#"
[[rule]]
id = "all"
path = "/m"
auth = "corp"
[[rule]]
id = "but"
path = "/m"
methods = ["!DELETE"]
auth = "corp"
[[rule]]
id = "get"
path = "/m"
methods = ["get"]
auth = "corp"
"#,
    );
    assert_eq!(id_of(&set, "GET", "h", "/m").unwrap(), "get");
    assert_eq!(id_of(&set, "get", "h", "/m").unwrap(), "get");
    assert_eq!(id_of(&set, "PUT", "h", "/m").unwrap(), "but");
    assert_eq!(id_of(&set, "DELETE", "h", "/m").unwrap(), "all");
}

#[test]
fn equal_specificity_disjoint_first_in_file() {
    let set = load(
        r#"
[[rule]]
id = "acme"
path = "/t"
when_headers = { "x-tenant" = "acme" }
auth = "corp"
[[rule]]
id = "globex"
path = "/t"
when_headers = { "x-tenant" = "globex" }
auth = "partner"
[[rule]]
id = "get"
path = "/u"
methods = ["GET"]
auth = "corp"
[[rule]]
id = "post"
path = "/u"
methods = ["POST"]
auth = "corp"
"#,
    );
    let g = headers(&[("x-tenant", "globex")]);
    assert_eq!(
        find_in(&set, "GET", "h", "/t", &g).unwrap().unwrap().0,
        "globex"
    );
    assert_eq!(
        find_in(&set, "GET", "h", "/t", &HeaderMap::new()).unwrap(),
        None
    );
    assert_eq!(id_of(&set, "POST", "h", "/u").unwrap(), "post");
}

#[test]
fn header_condition_bound_to_path_param() {
    let set = load(
        r#"
[[rule]]
id = "org"
path = "/orgs/:org/**"
when_headers = { "x-org" = "org-{path.org}" }
auth = "corp"
claims = [{ path = "org", equals = "{path.org}" }, { path = "tenant", equals = "{header.x-tenant}" }]
"#,
    );
    let h = headers(&[("x-org", "org-acme"), ("x-tenant", "t1")]);
    let t = Target {
        method: "GET",
        host: "h",
        path: "/orgs/acme/x",
        headers: &h,
    };
    let m = set.find(&t).unwrap().unwrap();
    assert_eq!(m.rule.id(), "org");
    let good: Map<String, Value> = json!({"org": "acme", "tenant": "t1"})
        .as_object()
        .unwrap()
        .clone();
    let bad: Map<String, Value> = json!({"org": "globex", "tenant": "t1"})
        .as_object()
        .unwrap()
        .clone();
    assert!(m.rule.failing_claim(&good, &m.binding(&h)).is_none());
    assert!(m.rule.failing_claim(&bad, &m.binding(&h)).is_some());
    let t2 = Target {
        path: "/orgs/globex/x",
        ..t
    };
    assert!(set.find(&t2).unwrap().is_none());
}

// ---------------------------------------------------------------- normalisation

fn one_rule(options: &str, path: &str) -> RuleSet {
    load(&format!(
        "[rules]\n{options}\n[[rule]]\nid = \"r\"\npath = \"{path}\"\nauth = \"corp\"\n"
    ))
}

#[test]
fn path_refusals() {
    let set = one_rule("", "/**");
    let h = HeaderMap::new();
    let f = |p: &str| find_in(&set, "GET", "h", p, &h).map(|o| o.map(|x| x.0));
    assert_eq!(f("/a//b"), Err(PathError::EmptySegment));
    assert_eq!(f("//a"), Err(PathError::EmptySegment));
    assert_eq!(f("/a/%2Fb"), Err(PathError::EncodedSlash));
    assert_eq!(f("/a/%2fb"), Err(PathError::EncodedSlash));
    assert_eq!(f("/a%00"), Err(PathError::Nul));
    assert_eq!(f("/a%ff"), Err(PathError::InvalidUtf8));
    assert_eq!(f("/a%4"), Err(PathError::BadEscape));
    assert_eq!(f("/a%zz"), Err(PathError::BadEscape));
    assert_eq!(f("a"), Err(PathError::NotOriginForm));
    assert_eq!(f("*"), Err(PathError::NotOriginForm));
    assert_eq!(f("http://x/a"), Err(PathError::NotOriginForm));
    assert_eq!(f(""), Err(PathError::NotOriginForm));
    assert_eq!(f("/a b"), Err(PathError::InvalidChar));
    assert_eq!(f("/a#b"), Err(PathError::InvalidChar));
    assert_eq!(f(&"/a".repeat(65)), Err(PathError::TooManySegments));
    assert_eq!(
        f(&format!("/{}", "a".repeat(MAX_PATH_LEN))),
        Err(PathError::TooLong)
    );
    assert_eq!(f("/a/b?x=//%2F"), Ok(Some("r".into())));
    // Dot segments do not count towards the limit when they go away.
    assert_eq!(f(&"/a/..".repeat(100)), Ok(Some("r".into())));
}

/// Double-encoded escapes (review L11): jwtd decodes once, so `%252e%252e` is the text
/// `%2e%2e` here, but `..` to an upstream that decodes twice: `/public/%252e%252e/admin` would
/// be decided under `/public/**` and served as `/admin`. Refused by default.
#[test]
fn double_encoded_escapes() {
    let rules = "[[rule]]\nid = \"admin\"\npath = \"/admin/**\"\nauth = \"corp\"\n\
                 [[rule]]\nid = \"pub\"\npath = \"/public/**\"\nauth = \"public\"\n";
    let h = HeaderMap::new();
    let set = load(rules);
    let f = |set: &RuleSet, p: &str| find_in(set, "GET", "h", p, &h).map(|o| o.map(|x| x.0));
    for p in [
        "/public/%252e%252e/admin/x",
        "/public/%252E%252E/admin/x",
        "/public/..%252fadmin",
        "/admin%253bx/secret",
        "/public/%25%32%65%25%32%65/admin",
        "/public/%25%32e",
        "/public/%252%65",
        "/public/%25252e",
    ] {
        assert_eq!(f(&set, p), Err(PathError::DoubleEncoded), "{p}");
    }
    assert_eq!(PathError::DoubleEncoded.code(), "path_double_encoded");
    // A `%25` that is a plain percent sign once decoded is fine, and so is a query's.
    assert_eq!(f(&set, "/public/100%25"), Ok(Some("pub".into())));
    assert_eq!(f(&set, "/public/100%25off"), Ok(Some("pub".into())));
    assert_eq!(f(&set, "/public/%25zz"), Ok(Some("pub".into())));
    assert_eq!(f(&set, "/public/x?q=%252e"), Ok(Some("pub".into())));
    // Under every encoded-slash mode.
    for mode in ["decode", "keep"] {
        let s = load(&format!("[rules]\nencoded_slashes = \"{mode}\"\n{rules}"));
        assert_eq!(
            f(&s, "/public/%252F"),
            Err(PathError::DoubleEncoded),
            "{mode}"
        );
    }
    // `allow`: decoded once, the rest text (only when nothing behind decodes twice).
    let allow = load(&format!("[rules]\ndouble_encoding = \"allow\"\n{rules}"));
    assert_eq!(
        f(&allow, "/public/%252e%252e/admin/x"),
        Ok(Some("pub".into()))
    );
    // A pattern with one could never match under `reject`: a load error naming the option.
    assert_error(
        "[[rule]]\nid = \"a\"\npath = \"/a%252eb\"\nauth = \"corp\"\n",
        "double_encoding = \"allow\"",
    );
    let e = toml::from_str::<File>("[rules]\ndouble_encoding = \"decode\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown variant"), "{e}");
}

/// `;` path parameters (the attack review's `/admin;x/secret`): Tomcat, Jetty and Spring strip
/// them before routing, so by default a path with one is refused (raw or `%3B`), never matched
/// as a literal segment that misses `/admin/**` and falls to a public rule.
#[test]
fn semicolon_path_parameters() {
    let rules = "[[rule]]\nid = \"admin\"\npath = \"/admin/**\"\nauth = \"corp\"\n\
                 [[rule]]\nid = \"pub\"\npath = \"/**\"\nauth = \"public\"\n";
    let h = HeaderMap::new();
    let set = load(rules);
    let f = |set: &RuleSet, p: &str| find_in(set, "GET", "h", p, &h).map(|o| o.map(|x| x.0));
    for p in [
        "/admin;x/secret",
        "/admin;/secret",
        "/admin/secret;jsessionid=1",
        "/public/..;/admin/secret",
        "/admin%3bx/secret",
        "/admin%3Bx/secret",
        "/;/admin",
    ] {
        assert_eq!(f(&set, p), Err(PathError::Semicolon), "{p}");
    }
    assert_eq!(PathError::Semicolon.code(), "path_semicolon");
    // In the query, `;` is not the path's.
    assert_eq!(f(&set, "/admin/secret?a=1;b=2"), Ok(Some("admin".into())));
    assert_eq!(f(&set, "/x?;"), Ok(Some("pub".into())));
    // `allow`: matched as text, as before (only for upstreams that do not strip them).
    let allow = load(&format!("[rules]\nsemicolons = \"allow\"\n{rules}"));
    assert_eq!(f(&allow, "/admin;x/secret"), Ok(Some("pub".into())));
    assert_eq!(f(&allow, "/admin/x;y"), Ok(Some("admin".into())));
    assert_eq!(f(&allow, "/admin%3Bx/secret"), Ok(Some("pub".into())));
    // The engine's own normalisation, used by every front.
    assert_eq!(
        normalise("/a;b", EncodedSlashes::Reject, TrailingSlash::Strict),
        Err(PathError::Semicolon)
    );
    assert_eq!(
        normalise_with(
            "/a;b",
            EncodedSlashes::Reject,
            TrailingSlash::Strict,
            Semicolons::Allow,
            DoubleEncoding::Reject,
        )
        .unwrap()
        .segments
        .len(),
        1
    );
    // A pattern with `;` could never match under `reject`: a load error naming the option.
    assert_error(
        "[[rule]]\nid = \"a\"\npath = \"/a;b\"\nauth = \"corp\"\n",
        "semicolons = \"allow\"",
    );
    assert_error(
        "[[rule]]\nid = \"a\"\npath = \"/a%3Bb\"\nauth = \"corp\"\n",
        "can never match",
    );
    let allowed = load(
        "[rules]\nsemicolons = \"allow\"\n[[rule]]\nid = \"a\"\npath = \"/a;b\"\nauth = \"corp\"\n",
    );
    assert_eq!(f(&allowed, "/a;b"), Ok(Some("a".into())));
    let e = toml::from_str::<File>("[rules]\nsemicolons = \"strip\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown variant"), "{e}");
}

#[test]
fn no_rules_reads_no_path() {
    let set = load("");
    assert!(set.is_empty());
    let h = HeaderMap::new();
    assert_eq!(find_in(&set, "GET", "h", "//%2F%00", &h), Ok(None));
}

#[test]
fn encoded_slashes_decode_and_keep() {
    let h = HeaderMap::new();
    let set = one_rule("encoded_slashes = \"decode\"", "/f/:name");
    assert_eq!(
        find_in(&set, "GET", "h", "/f/a%2Fb", &h)
            .unwrap()
            .unwrap()
            .1,
        vec![("name".into(), "a/b".into())]
    );
    let set = one_rule("encoded_slashes = \"keep\"", "/f/:name");
    assert_eq!(
        find_in(&set, "GET", "h", "/f/a%2fb", &h)
            .unwrap()
            .unwrap()
            .1,
        vec![("name".into(), "a%2Fb".into())]
    );
    // %252F is the text %2F encoded (refused by default, see `double_encoded_escapes`): under
    // keep it stays distinguishable from %2F.
    let set = one_rule(
        "encoded_slashes = \"keep\"\ndouble_encoding = \"allow\"",
        "/f/:name",
    );
    assert_eq!(
        find_in(&set, "GET", "h", "/f/a%252Fb", &h)
            .unwrap()
            .unwrap()
            .1,
        vec![("name".into(), "a%252Fb".into())]
    );
    let set = one_rule(
        "encoded_slashes = \"keep\"\ndouble_encoding = \"allow\"",
        "/f/a%2Fb",
    );
    assert!(find_in(&set, "GET", "h", "/f/a%2Fb", &h).unwrap().is_some());
    assert!(find_in(&set, "GET", "h", "/f/a%252Fb", &h)
        .unwrap()
        .is_none());
}

#[test]
fn trailing_slash_policies() {
    let strict = one_rule("", "/a");
    let slash = one_rule("", "/a/");
    let ignore = one_rule("trailing_slash = \"ignore\"", "/a");
    let ignore_slash = one_rule("trailing_slash = \"ignore\"", "/a/");
    assert!(id_of(&strict, "GET", "h", "/a").is_some());
    assert!(id_of(&strict, "GET", "h", "/a/").is_none());
    assert!(id_of(&slash, "GET", "h", "/a/").is_some());
    assert!(id_of(&slash, "GET", "h", "/a").is_none());
    for s in [&ignore, &ignore_slash] {
        assert!(id_of(s, "GET", "h", "/a").is_some());
        assert!(id_of(s, "GET", "h", "/a/").is_some());
    }
    // Under ignore, /a and /a/ are one path: two rules for them are ambiguous.
    assert_error(
        "[rules]\ntrailing_slash = \"ignore\"\n[[rule]]\nid = \"x\"\npath = \"/a\"\nauth = \"corp\"\n[[rule]]\nid = \"y\"\npath = \"/a/\"\nauth = \"corp\"\n",
        "equal specificity",
    );
}

#[test]
fn dot_segments() {
    let set = one_rule("", "/a/:x");
    let h = HeaderMap::new();
    let f = |p: &str| find_in(&set, "GET", "h", p, &h).unwrap().map(|x| x.1);
    let c = Some(vec![("x".to_owned(), "c".to_owned())]);
    assert_eq!(f("/a/./b/../c"), c);
    assert_eq!(f("/a/%2e/b/%2E%2e/c"), c);
    assert_eq!(f("/../../a/c"), c);
    assert_eq!(f("/a/c/."), None, "/a/c/. is /a/c/ (strict)");
    assert_eq!(f("/a/..."), Some(vec![("x".into(), "...".into())]));
}

#[test]
fn normalise_examples() {
    fn n(p: &str) -> NormPath<'_> {
        normalise(p, EncodedSlashes::Reject, TrailingSlash::Strict).unwrap()
    }
    assert_eq!(
        n("/"),
        NormPath {
            segments: vec![].into(),
            trailing: false
        }
    );
    assert_eq!(
        n("/.."),
        NormPath {
            segments: vec![].into(),
            trailing: false
        }
    );
    assert_eq!(
        n("/a/b/.."),
        NormPath {
            segments: vec!["a".into()].into(),
            trailing: true
        }
    );
    assert_eq!(
        normalise("/%252F", EncodedSlashes::Reject, TrailingSlash::Strict),
        Err(PathError::DoubleEncoded)
    );
    assert_eq!(
        normalise_with(
            "/%252F",
            EncodedSlashes::Reject,
            TrailingSlash::Strict,
            Semicolons::Reject,
            DoubleEncoding::Allow,
        )
        .unwrap(),
        NormPath {
            segments: vec!["%2F".into()].into(),
            trailing: false
        }
    );
}

// ---------------------------------------------------------------- load errors

#[test]
fn ambiguity_names_both_rules_and_lines() {
    let text = r#"
[[rule]]
id = "first"
path = "/v1/orders/:id"
methods = ["GET", "POST"]
auth = "corp"

[[rule]]
id = "second"
path = "/v1/orders/:order"
methods = ["POST"]
auth = "partner"
"#;
    let errs = try_load(text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!(e.rule.as_deref(), Some("second"));
    assert_eq!(e.line, Some(9));
    assert!(
        e.message.contains("rule \"first\" (line 3)"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("rule \"second\" (line 9)"),
        "{}",
        e.message
    );
}

#[test]
fn ambiguity_cases() {
    let rule =
        |id: &str, extra: &str| format!("[[rule]]\nid = \"{id}\"\nauth = \"corp\"\n{extra}\n");
    let amb = |a: &str, b: &str| format!("{}{}", rule("a", a), rule("b", b));
    // Ambiguous.
    for (a, b) in [
        ("path = \"/x\"", "path = \"/x\""),
        ("path = \"/x/**\"", "path = \"/x/*rest\""),
        (
            "path = \"/x\"\nhosts = [\"a.com\", \"*.b.com\"]",
            "path = \"/x\"\nhosts = [\"*.B.com\"]",
        ),
        (
            "path = \"/x\"\nmethods = [\"!GET\"]",
            "path = \"/x\"\nmethods = [\"!POST\"]",
        ),
        ("path = \"/x\"\nmethods = [\"ALL\"]", "path = \"/x\""),
        (
            "path = \"/x\"\nwhen_headers = { a = \"1\" }",
            "path = \"/x\"\nwhen_headers = { b = \"2\" }",
        ),
        (
            "path = \"/x/:p\"\nwhen_headers = { a = \"{path.p}\" }",
            "path = \"/x/:q\"\nwhen_headers = { a = \"2\" }",
        ),
    ] {
        let text = amb(a, b);
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.contains("equal specificity")
                && e.contains("\"a\"")
                && e.contains("\"b\"")),
            "{text}\n{errs:#?}"
        );
    }
    // Not ambiguous: disjoint or different specificity.
    for (a, b) in [
        ("path = \"/x\"", "path = \"/x/\""),
        ("path = \"/x\"", "path = \"/y\""),
        ("path = \"/x/:p\"", "path = \"/x/**\""),
        (
            "path = \"/x\"\nhosts = [\"a.com\"]",
            "path = \"/x\"\nhosts = [\"b.com\"]",
        ),
        (
            "path = \"/x\"\nhosts = [\"a.com\"]",
            "path = \"/x\"\nhosts = [\"*.com\"]",
        ),
        (
            "path = \"/x\"\nmethods = [\"GET\"]",
            "path = \"/x\"\nmethods = [\"POST\"]",
        ),
        (
            "path = \"/x\"\nmethods = [\"GET\"]",
            "path = \"/x\"\nmethods = [\"!GET\"]",
        ),
        (
            "path = \"/x\"\nwhen_headers = { a = \"1\" }",
            "path = \"/x\"\nwhen_headers = { A = \"2\" }",
        ),
        (
            "path = \"/x\"\nwhen_headers = { a = \"1\" }",
            "path = \"/x\"",
        ),
    ] {
        let text = amb(a, b);
        if let Err(e) = try_load(&text) {
            panic!("{text}\n{e:#?}");
        }
    }
}

#[test]
fn load_error_cases() {
    let base = |body: &str| format!("[[rule]]\n{body}\n");
    let cases: &[(&str, &str)] = &[
        ("id = \"bad id\"\npath = \"/\"\nauth = \"corp\"", "the id must be"),
        ("id = \"\"\npath = \"/\"\nauth = \"corp\"", "the id must be"),
        ("id = \"a\"\npath = \"/\"\nauth = \"nobody\"", "unknown issuer \"nobody\""),
        ("id = \"a\"\npath = \"/\"\nauth = { any = [] }", "`any` is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = { all = [] }", "`all` is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = { all = [\"corp\", \"partner\"] }", "a request carries one token"),
        ("id = \"a\"\npath = \"/\"\nauth = { all = [{ any = [\"corp\", \"partner\"] }, \"partner-api\"] }", "a request carries one token"),
        ("id = \"a\"\npath = \"/\"\nauth = { any = [\"public\", \"corp\"] }", "\"public\" stands alone"),
        ("id = \"a\"\npath = \"/\"\nauth = { optional = \"public\" }", "\"public\" stands alone"),
        ("id = \"a\"\npath = \"x\"\nauth = \"corp\"", "must start with /"),
        ("id = \"a\"\npath = \"/a/**/b\"\nauth = \"corp\"", "must be the last segment"),
        ("id = \"a\"\npath = \"/a/**/\"\nauth = \"corp\"", "nothing may follow"),
        ("id = \"a\"\npath = \"/:x/:x\"\nauth = \"corp\"", "two parameters named \"x\""),
        ("id = \"a\"\npath = \"/:x/*x\"\nauth = \"corp\"", "two parameters named \"x\""),
        ("id = \"a\"\npath = \"/a//b\"\nauth = \"corp\"", "empty segment"),
        ("id = \"a\"\npath = \"/a/../b\"\nauth = \"corp\"", "dot segment"),
        ("id = \"a\"\npath = \"/a%2Fb\"\nauth = \"corp\"", "can never match"),
        ("id = \"a\"\npath = \"/a/*\"\nauth = \"corp\"", "rest name"),
        ("id = \"a\"\npath = \"/a?x\"\nauth = \"corp\"", "must not hold ?"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nmethods = [\"GE T\"]", "not an HTTP method token"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nmethods = [\"GET\", \"!POST\"]", "mixes"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nmethods = [\"ALL\", \"GET\"]", "stands alone"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nmethods = []", "methods is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nhosts = [\"a.*.com\"]", "wildcard"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nhosts = [\"a.com:80\"]", "without a port"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nhosts = []", "hosts is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nwhen_headers = { \"bad header\" = \"x\" }", "not a header name"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nwhen_headers = { x = \"{path.nope}\" }", "does not define"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nwhen_headers = { x = \"{claim.sub}\" }", "not allowed here"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nclaims = [{ path = \"t\", equals = \"{path.nope}\" }]", "does not define"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nclaims = [{ path = \"t\" }]", "no operator"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nclaims = [{ path = \"t\", gt = 1, lt = 5 }]", "more than one operator"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nclaims = [{ path = \"t\", one_of = [] }]", "one_of is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nclaims = [{ path = \"\", exists = true }]", "path is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nclaims = [{ path = \"t\", equals = 1979-05-27 }]", "TOML dates"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nscopes = { all = [\"a\"], any = [\"b\"] }", "exactly one of"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nscopes = { all = [] }", "the list is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nscopes = { all = [\"a b\"] }", "not a scope token"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\naudiences = []", "audiences is empty"),
        ("id = \"a\"\npath = \"/\"\nauth = \"public\"\nscopes = { all = [\"a\"] }", "on a public rule"),
        ("id = \"a\"\npath = \"/\"\nauth = \"public\"\naudiences = [\"x\"]", "on a public rule"),
        ("id = \"a\"\npath = \"/\"\nauth = \"public\"\nclaims = [{ path = \"t\", exists = true }]", "on a public rule"),
        ("id = \"a\"\npath = \"/\"\nauth = \"public\"\nset_headers = { x-user = \"{claim.sub}\" }", "public rule"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { X-Auth-Subject = \"{claim.sub}\" }", "reserved"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { x-a = \"{claim.a}\", X-A = \"{claim.b}\" }", "listed twice"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { x-a = \"{path.id}\" }", "does not define"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { x-a = \"{header.x-b}\" }", "not allowed here"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { x-a = \"{claim.a\" }", "without"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { x-a = \"a}\" }", "lone"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { x-a = \"{other.a}\" }", "is not {claim.PATH}"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nmethods = [\"GET\"]\ncors_preflight = \"bypass\"", "exclude OPTIONS"),
        ("id = \"a\"\npath = \"/\"\nauth = \"corp\"\nscope_claim = \"scp\"", "scope_claim without scopes"),
        ("id = \"default\"\npath = \"/\"\nauth = \"corp\"", "reserved"),
        ("id = \"-\"\npath = \"/\"\nauth = \"corp\"", "reserved"),
    ];
    for (body, needle) in cases {
        assert_error(&base(body), needle);
    }
    // Duplicate ids, with the first one's line.
    assert_error(
        "[[rule]]\nid = \"a\"\npath = \"/x\"\nauth = \"corp\"\n[[rule]]\nid = \"a\"\npath = \"/y\"\nauth = \"corp\"\n",
        "line 6: rule \"a\": duplicate id: an earlier rule (line 2)",
    );
    // Every error, not only the first.
    let errs =
        errors("[[rule]]\nid = \"a\"\npath = \"x\"\nauth = \"nobody\"\nmethods = [\"G T\"]\n");
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs.iter().all(|e| e.starts_with("line ")), "{errs:#?}");
}

#[test]
fn too_many_rules() {
    let rules: Vec<RuleConfig> = (0..=MAX_RULES)
        .map(|i| {
            toml::from_str(&format!(
                "id = \"r{i}\"\npath = \"/p{i}\"\nauth = \"corp\"\n"
            ))
            .unwrap()
        })
        .collect();
    let e = RuleSet::build(RuleOptions::default(), &rules, &ISSUERS, &[]).unwrap_err();
    assert!(e[0].message.contains("at most 10000"), "{e:?}");
    assert_eq!(e[0].line, None);
}

#[test]
fn toml_shape_errors() {
    for (text, needle) in [
        (
            "[[rule]]\nid = \"a\"\npath = \"/\"\nauth = { any = [\"corp\"], all = [\"corp\"] }\n",
            "exactly one of",
        ),
        (
            "[[rule]]\nid = \"a\"\npath = \"/\"\nauth = { sometimes = [\"corp\"] }\n",
            "unknown key",
        ),
        (
            "[[rule]]\nid = \"a\"\npath = \"/\"\nauth = \"corp\"\nextra = 1\n",
            "unknown field",
        ),
        ("[rules]\ndefault = \"allow\"\n", "unknown variant"),
        ("[rules]\nencoded_slashes = \"maybe\"\n", "unknown variant"),
    ] {
        let e = toml::from_str::<File>(text).err().expect(text).to_string();
        assert!(e.contains(needle), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}

// ---------------------------------------------------------------- evaluation

#[test]
fn requirement_semantics() {
    let set = load(
        r#"
[[rule]]
id = "opt"
path = "/o"
auth = { optional = "corp" }
[[rule]]
id = "any"
path = "/a"
auth = { any = ["corp", { optional = "partner" }] }
[[rule]]
id = "all"
path = "/l"
auth = { all = ["corp", { any = ["corp", "partner"] }] }
[[rule]]
id = "pub"
path = "/p"
auth = "public"
"#,
    );
    let v = |i: &'static str| TokenState::Verified { issuer: i };
    let r = |id: &str| set.get(id).unwrap().requirement().clone();
    let opt = r("opt");
    assert_eq!(opt.evaluate(TokenState::Absent), Ok(()));
    assert_eq!(opt.evaluate(v("corp")), Ok(()));
    assert_eq!(opt.evaluate(v("partner")), Err(Unmet::WrongIssuer));
    assert!(!opt.needs_token());
    assert_eq!(opt.issuers(), vec!["corp"]);
    let any = r("any");
    assert_eq!(any.evaluate(TokenState::Absent), Ok(()));
    assert_eq!(any.evaluate(v("partner")), Ok(()));
    assert_eq!(any.evaluate(v("partner-api")), Err(Unmet::WrongIssuer));
    let all = r("all");
    assert_eq!(all.evaluate(v("corp")), Ok(()));
    assert_eq!(all.evaluate(v("partner")), Err(Unmet::WrongIssuer));
    assert_eq!(all.evaluate(TokenState::Absent), Err(Unmet::MissingToken));
    assert_eq!(all.issuers(), vec!["corp"]);
    assert!(all.needs_token());
    let p = r("pub");
    assert_eq!(p.evaluate(TokenState::Absent), Ok(()));
    assert!(p.issuers().is_empty());
    assert_eq!(
        Requirement::Issuer("corp".into()).evaluate(TokenState::Absent),
        Err(Unmet::MissingToken)
    );
    assert_eq!(
        Requirement::Any(vec![Requirement::Issuer("corp".into())]).evaluate(TokenState::Absent),
        Err(Unmet::MissingToken)
    );
}

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn scope_checks() {
    let all = ScopeCheck {
        claim: "scope".into(),
        mode: ScopeMode::All,
        scopes: vec!["a".into(), "b".into()],
    };
    assert_eq!(all.check(&claims(json!({"scope": "a  b c"}))), Ok(()));
    assert_eq!(
        all.check(&claims(json!({"scope": "a c"}))),
        Err(vec!["b".into()])
    );
    assert_eq!(
        all.check(&claims(json!({}))),
        Err(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        all.check(&claims(json!({"scope": 3}))).unwrap_err().len(),
        2
    );
    let scp = ScopeCheck {
        claim: "scp".into(),
        mode: ScopeMode::Any,
        scopes: vec!["a".into(), "b".into()],
    };
    assert_eq!(scp.check(&claims(json!({"scp": ["x", "b"]}))), Ok(()));
    assert_eq!(
        scp.check(&claims(json!({"scp": ["a b"]})))
            .unwrap_err()
            .len(),
        2
    );
    assert!(scp.check(&claims(json!({"scp": [1, null]}))).is_err());
    // Rule-level scope_claim and [rules] scope_claim.
    let set = load(
        "[rules]\nscope_claim = \"scp\"\n[[rule]]\nid = \"a\"\npath = \"/a\"\nauth = \"corp\"\nscopes = { any = [\"x\"] }\n[[rule]]\nid = \"b\"\npath = \"/b\"\nauth = \"corp\"\nscope_claim = \"roles\"\nscopes = { any = [\"x\"] }\n",
    );
    assert_eq!(set.get("a").unwrap().scopes().unwrap().claim, "scp");
    assert_eq!(set.get("b").unwrap().scopes().unwrap().claim, "roles");
}

#[test]
fn claim_predicates() {
    let set = load(
        r#"
[[rule]]
id = "c"
path = "/c/:id"
auth = "corp"
claims = [
  { path = "amr", contains = "mfa" },
  { path = "realm_access.roles", contains_any = ["ops", "admin"] },
  { path = "n", gt = 3 },
  { path = "n", le = 10.5 },
  { path = "level", one_of = [1, 2] },
  { path = "https://example.com/claims/verified", equals = true },
  { path = "/org/id", equals = "{path.id}" },
  { path = "banned", exists = false },
]
"#,
    );
    let rule = set.get("c").unwrap();
    let h = HeaderMap::new();
    let params = [("id", std::borrow::Cow::from("42"))];
    let b = Binding {
        params: &params,
        headers: &h,
    };
    let good = json!({
        "amr": ["pwd", "mfa"],
        "realm_access": {"roles": ["admin"]},
        "n": 4,
        "level": 2.0,
        "https://example.com/claims/verified": true,
        "org": {"id": 42},
    });
    assert_eq!(rule.failing_claim(&claims(good.clone()), &b), None);
    let fails = |patch: Value| {
        let mut c = claims(good.clone());
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
        rule.failing_claim(&c, &b).map(|p| p.to_string())
    };
    assert_eq!(
        fails(json!({"amr": "mfa"})),
        None,
        "a string claim equal to the item"
    );
    assert_eq!(
        fails(json!({"amr": "pwd mfa"})),
        None,
        "a space-separated string, as [issuer.contains] reads it"
    );
    assert_eq!(
        fails(json!({"amr": "pwd mfa-like"})).unwrap(),
        "amr contains \"mfa\"",
        "whole words only"
    );
    assert!(
        fails(json!({"amr": ["pwd mfa"]})).is_some(),
        "array items compare whole"
    );
    assert!(fails(json!({"amr": null})).is_some());
    assert!(fails(json!({"realm_access": {"roles": ["user"]}})).is_some());
    assert!(fails(json!({"n": "4"})).is_some(), "numbers only");
    assert!(fails(json!({"n": 3})).is_some());
    assert!(fails(json!({"n": 11})).is_some());
    assert!(fails(json!({"level": 3})).is_some());
    assert!(fails(json!({"https://example.com/claims/verified": "true"})).is_some());
    assert!(fails(json!({"org": {"id": "43"}})).is_some());
    assert_eq!(
        fails(json!({"org": {"id": "42"}})),
        None,
        "bindings compare as text"
    );
    assert!(fails(json!({"banned": false})).is_some());
}

#[test]
fn claim_source_for_verified_tokens() {
    use jwtd_core::{
        sign, unix_now, verify, Algorithm, KeySet, SigningKey, Validation, VerifyingKey,
    };
    let secret = [7u8; 32];
    let sk = SigningKey::hmac(&secret, Algorithm::HS256, None).unwrap();
    let mut keys = KeySet::new();
    keys.push(VerifyingKey::hmac(&secret, Algorithm::HS256, None).unwrap());
    let now = unix_now();
    let c = claims(
        json!({"exp": now + 60, "scp": ["orders:read"], "realm_access": {"roles": ["ops"]}}),
    );
    let token = sign(&sk, &c, None).unwrap();
    let v = verify(&keys, &Validation::new(&[Algorithm::HS256]), &token, now).unwrap();
    let sc = ScopeCheck {
        claim: "scp".into(),
        mode: ScopeMode::All,
        scopes: vec!["orders:read".into()],
    };
    assert_eq!(sc.check(&v), Ok(()));
    let h = HeaderMap::new();
    let b = Binding {
        params: &[],
        headers: &h,
    };
    let p = ClaimPredicate {
        path: "realm_access.roles".into(),
        op: ClaimOp::Contains(json!("ops")),
    };
    assert!(p.check(&v, &b));
    assert!(p.check(&&v, &b));
}

#[test]
fn templates() {
    let set = load(
        r#"
[[rule]]
id = "t"
path = "/t/:id/*rest"
auth = "corp"
[rule.set_headers]
x-a = "org={claim.org.id};id={path.id};rest={path.rest}"
x-b = "{{literal}}"
x-c = "{claim.roles}"
x-d = "{claim.n}-{claim.ok}"
"#,
    );
    let h = HeaderMap::new();
    let t = Target {
        method: "GET",
        host: "h",
        path: "/t/7/a/b",
        headers: &h,
    };
    let m = set.find(&t).unwrap().unwrap();
    let c = claims(json!({"org": {"id": "o1"}, "roles": ["a", "b"], "n": 1.5, "ok": true}));
    let out: Vec<Option<String>> = m
        .rule
        .set_headers()
        .iter()
        .map(|(_, t)| t.render(&c, &m.binding(&h)))
        .collect();
    assert_eq!(
        out,
        vec![
            Some("org=o1;id=7;rest=a/b".into()),
            Some("{literal}".into()),
            None,
            Some("1.5-true".into()),
        ]
    );
}

#[test]
fn cors_preflight() {
    let set = load(
        "[[rule]]\nid = \"a\"\npath = \"/a\"\nmethods = [\"GET\", \"OPTIONS\"]\nauth = \"corp\"\ncors_preflight = \"bypass\"\n",
    );
    assert!(set.get("a").unwrap().cors_preflight_bypass());
    let pre = headers(&[
        ("origin", "https://x"),
        ("access-control-request-method", "GET"),
    ]);
    assert!(is_cors_preflight("OPTIONS", &pre));
    assert!(!is_cors_preflight("GET", &pre));
    assert!(!is_cors_preflight(
        "OPTIONS",
        &headers(&[("origin", "https://x")])
    ));
    assert!(!is_cors_preflight(
        "OPTIONS",
        &headers(&[("access-control-request-method", "GET")])
    ));
}

#[test]
fn lint_warnings() {
    let set = load(
        r#"
[rules]
default = "public"
[[rule]]
id = "admin"
hosts = ["admin.example.com"]
path = "/admin/:x"
auth = "corp"
[[rule]]
id = "all-public"
path = "/**"
auth = "public"
[[rule]]
id = "opt"
path = "/o"
auth = { optional = "corp" }
scopes = { all = ["a"] }
[[rule]]
id = "plain"
path = "/p"
auth = "corp"
"#,
    );
    let lint = set.lint();
    assert_eq!(lint.len(), 3, "{lint:#?}");
    assert!(lint[0].contains("default = \"public\""));
    assert!(lint[1].contains("rule \"admin\" (line 5)") && lint[1].contains("other hosts"));
    assert!(lint[2].contains("rule \"opt\""));
}

// ---------------------------------------------------------------- cost

fn many(n: usize) -> RuleSet {
    let mut text = String::new();
    for i in 0..n {
        let (path, extra) = match i % 4 {
            0 => (format!("/svc{i}/items/:id"), ""),
            1 => (format!("/svc{i}/**"), "methods = [\"GET\"]\n"),
            2 => (format!("/api/v{i}/:a/:b"), ""),
            _ => ("/host/x".to_owned(), ""),
        };
        let hosts = if i % 4 == 3 {
            format!("hosts = [\"h{i}.example.com\"]\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\npath = \"{path}\"\nauth = \"corp\"\n{extra}{hosts}"
        ));
    }
    load(&text)
}

#[test]
fn lookup_cost_does_not_grow_with_rules() {
    let h = HeaderMap::new();
    let probe = |set: &RuleSet, path: &str, host: &str| {
        let t = Target {
            method: "GET",
            host,
            path,
            headers: &h,
        };
        let (r, stats) = set.find_with_stats(&t);
        (r.unwrap().map(|m| m.rule.id().to_owned()), stats)
    };
    let small = many(5);
    let (_, base) = probe(&small, "/svc0/items/7", "a");
    for n in [200, 2000] {
        let set = many(n);
        for (path, want) in [
            ("/svc0/items/7", Some("r0")),
            ("/svc1/a/b", Some("r1")),
            ("/api/v2/x/y", Some("r2")),
            ("/nothing/here", None),
        ] {
            let (got, stats) = probe(&set, path, "a");
            assert_eq!(got.as_deref(), want, "{n} {path}");
            assert!(
                stats.nodes <= base.nodes * 3 + 4 && stats.candidates <= base.candidates + 3,
                "{n} rules, {path}: {stats:?} vs {base:?}"
            );
        }
        // Rules sharing one path shape across hosts are indexed by exact host.
        for i in [3, n - 1] {
            let (got, stats) = probe(&set, "/host/x", &format!("h{i}.example.com"));
            assert_eq!(got, Some(format!("r{i}")));
            assert!(stats.candidates <= 1, "{i}: {stats:?}");
        }
        let (got, stats) = probe(&set, "/host/x", "nobody.example.com");
        assert_eq!(got, None);
        assert!(stats.candidates <= 1, "{stats:?}");
    }
}

// ---------------------------------------------------------------- properties

const UNRESERVED: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~";

fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(UNRESERVED.chars().collect::<Vec<_>>()),
        1..8,
    )
    .prop_map(|cs| cs.into_iter().collect::<String>())
    .prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn prop_set() -> RuleSet {
    prop_set_with("")
}

/// [`prop_set`]'s rules under `[rules]` `options`.
fn prop_set_with(options: &str) -> RuleSet {
    load(&format!(
        r#"
[rules]
{options}
[[rule]]
id = "one"
path = "/:a"
auth = "corp"
[[rule]]
id = "two"
path = "/:a/:b"
auth = "corp"
[[rule]]
id = "lit"
path = "/fixed/:b"
auth = "corp"
[[rule]]
id = "rest"
path = "/:a/:b/*rest"
auth = "corp"
[[rule]]
id = "slash"
path = "/:a/"
auth = "corp"
"#
    ))
}

fn encode_some(s: &str, mask: &[bool], upper: bool) -> String {
    s.chars()
        .zip(mask.iter().cycle())
        .map(|(c, &m)| {
            if m {
                if upper {
                    format!("%{:02X}", c as u32)
                } else {
                    format!("%{:02x}", c as u32)
                }
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn percent_encoding_unreserved_changes_nothing(
        segs in proptest::collection::vec(segment(), 1..5),
        mask in proptest::collection::vec(any::<bool>(), 1..8),
        upper in any::<bool>(),
        slash in any::<bool>(),
    ) {
        let set = prop_set();
        let h = HeaderMap::new();
        let plain = format!("/{}{}", segs.join("/"), if slash { "/" } else { "" });
        let enc: Vec<String> = segs.iter().map(|s| encode_some(s, &mask, upper)).collect();
        let encoded = format!("/{}{}", enc.join("/"), if slash { "/" } else { "" });
        let a = find_in(&set, "GET", "h", &plain, &h).unwrap();
        let b = find_in(&set, "GET", "h", &encoded, &h).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn dot_segments_resolve(
        segs in proptest::collection::vec(segment(), 1..4),
        junk in segment(),
        ups in 0usize..4,
    ) {
        let set = prop_set();
        let h = HeaderMap::new();
        let clean = format!("/{}", segs.join("/"));
        // /../../ at the start never climbs above the root; /x/.. and /. vanish.
        let dotted = format!("{}/{junk}/../.{}", "/..".repeat(ups), clean);
        let encoded = format!("{}/{junk}/%2E%2e/%2e{}", "/%2e%2E".repeat(ups), clean);
        let want = find_in(&set, "GET", "h", &clean, &h).unwrap();
        prop_assert_eq!(&find_in(&set, "GET", "h", &dotted, &h).unwrap(), &want);
        prop_assert_eq!(&find_in(&set, "GET", "h", &encoded, &h).unwrap(), &want);
    }

    #[test]
    fn trailing_slash_per_option(segs in proptest::collection::vec(segment(), 1..4)) {
        let h = HeaderMap::new();
        let p = format!("/{}", segs.join("/"));
        let pattern = format!("/{}", segs.iter().map(|s| s.replace('~', "%7E")).collect::<Vec<_>>().join("/"));
        let slashed = format!("{p}/");
        let strict = one_rule("", &pattern);
        let ignore = one_rule("trailing_slash = \"ignore\"", &pattern);
        prop_assert!(find_in(&strict, "GET", "h", &p, &h).unwrap().is_some());
        prop_assert!(find_in(&strict, "GET", "h", &slashed, &h).unwrap().is_none());
        prop_assert!(find_in(&ignore, "GET", "h", &p, &h).unwrap().is_some());
        prop_assert!(find_in(&ignore, "GET", "h", &slashed, &h).unwrap().is_some());
    }

    #[test]
    fn encoded_slash_refused_by_default(a in segment(), b in segment(), lower in any::<bool>()) {
        let set = prop_set();
        let h = HeaderMap::new();
        let p = format!("/{a}{}{b}", if lower { "%2f" } else { "%2F" });
        prop_assert_eq!(find_in(&set, "GET", "h", &p, &h), Err(PathError::EncodedSlash));
    }

    #[test]
    fn decoded_only_once(a in segment(), c in proptest::sample::select(vec!["2F", "2f", "2E", "41", "00", "25"])) {
        // %25XX is an escape encoded twice: refused by default; under `allow` it decodes to
        // the text %XX, never further: the param holds "%XX".
        let h = HeaderMap::new();
        let p = format!("/fixed/{a}%25{c}");
        prop_assert_eq!(find_in(&prop_set(), "GET", "h", &p, &h), Err(PathError::DoubleEncoded));
        let set = prop_set_with("double_encoding = \"allow\"");
        let got = find_in(&set, "GET", "h", &p, &h).unwrap().unwrap();
        prop_assert_eq!(got.0, "lit");
        prop_assert_eq!(&got.1[0].1, &format!("{a}%{c}"));
    }

    #[test]
    fn no_panic_on_any_input(
        method in ".{0,12}",
        host in ".{0,40}",
        path in proptest::collection::vec(any::<u8>(), 0..200),
        prefix in any::<bool>(),
    ) {
        let set = prop_set();
        let h = HeaderMap::new();
        let mut p = String::from_utf8_lossy(&path).into_owned();
        if prefix {
            p.insert(0, '/');
        }
        let _ = find_in(&set, &method, &host, &p, &h);
        for mode in [EncodedSlashes::Reject, EncodedSlashes::Decode, EncodedSlashes::Keep] {
            let _ = normalise(&p, mode, TrailingSlash::Ignore);
        }
        let _ = normalise_host(&host);
    }

    /// A request host is matched as exactly what a rule's `hosts` would take as an exact host.
    #[test]
    fn request_hosts_normalise_as_patterns_parse(
        host in "(\\[[0-9a-fA-F:.]{0,8}\\]|[a-zA-Z0-9._*-]{0,20})(:[0-9]{0,5})?\\.?",
    ) {
        let bare = if host.starts_with('[') {
            host.find(']').map_or(host.as_str(), |e| &host[..=e])
        } else {
            host.split(':').next().unwrap_or_default()
        };
        let bare = bare.strip_suffix('.').unwrap_or(bare);
        let want = match HostPattern::parse(bare) {
            Ok(HostPattern::Exact(h)) if !bare.is_empty() => Some(h),
            _ => None,
        };
        prop_assert_eq!(normalise_host(&host).map(|h| h.into_owned()), want, "{:?}", host);
    }

    #[test]
    fn no_panic_on_any_pattern(p in ".{0,60}", h in ".{0,30}", m in ".{0,10}") {
        let _ = PathPattern::parse(&p, EncodedSlashes::Keep, TrailingSlash::Strict);
        let _ = HostPattern::parse(&h);
        let _ = MethodSet::parse(Some(&[m]));
    }
}

#[test]
fn find_named_checks_that_rules_conditions() {
    let set = load(ISSUE);
    let h = HeaderMap::new();
    let t = |method, path| Target {
        method,
        host: "api.example.com",
        path,
        headers: &h,
    };
    let m = set
        .find_named("orders-read", &t("GET", "/v1/orders/%37"))
        .unwrap()
        .unwrap();
    assert_eq!(&m.params[..], &[("id", std::borrow::Cow::from("7"))]);
    assert!(set
        .find_named("orders-read", &t("POST", "/v1/orders/7"))
        .unwrap()
        .is_none());
    assert!(set
        .find_named("orders-read", &t("GET", "/v1/orders"))
        .unwrap()
        .is_none());
    assert!(set.find_named("nope", &t("GET", "/")).unwrap().is_none());
    assert_eq!(
        set.find_named("admin", &t("POST", "/admin//x"))
            .unwrap_err(),
        PathError::EmptySegment
    );
    // Spans point at the id's value.
    let r = set.get("health").unwrap();
    assert_eq!(&ISSUE[r.span()], "\"health\"");
    assert_eq!(line_of(ISSUE, r.span().start), 3);
}

// ---------------------------------------------------------------- the trie against a scan

/// Path ranks per position, host rank, method rank, header count, file order, id.
type OracleKey<'r> = (Vec<u8>, u32, u8, usize, std::cmp::Reverse<usize>, &'r str);

/// The winner by the documented specificity, by scanning every rule.
fn oracle<'r>(set: &'r RuleSet, method: &str, host: &str, path: &str) -> Option<&'r str> {
    let p = normalise(
        path,
        set.options().encoded_slashes,
        set.options().trailing_slash,
    )
    .ok()?;
    let host = normalise_host(host);
    let method = method.to_ascii_uppercase();
    let mut best: Option<OracleKey<'_>> = None;
    for r in set.rules() {
        if !r.path().matches(&p) || !r.methods().matches(&method) {
            continue;
        }
        let host_rank = if r.hosts().is_empty() {
            0
        } else {
            match r
                .hosts()
                .iter()
                .filter(|h| host.as_deref().is_some_and(|x| h.matches(x)))
                .map(HostPattern::rank)
                .max()
            {
                Some(x) => x,
                None => continue,
            }
        };
        let n = p.segments.len();
        let mut key = Vec::new();
        for i in 0..=n {
            key.push(match r.path().segments.get(i) {
                Some(Segment::Literal(_)) => 3,
                Some(Segment::Param(_)) => 2,
                Some(Segment::Rest(_)) => 1,
                None => 2,
            });
        }
        // Only a rest covers positions past its own; a pattern that ended at n is "end" (2).
        if let Some(pos) = r
            .path()
            .segments
            .iter()
            .position(|s| matches!(s, Segment::Rest(_)))
        {
            for k in key.iter_mut().skip(pos) {
                *k = 1;
            }
        }
        let cand = (
            key,
            host_rank,
            r.methods().rank(),
            r.when_headers().len(),
            std::cmp::Reverse(r.index()),
            r.id(),
        );
        if best.as_ref().map_or(true, |b| cand > *b) {
            best = Some(cand);
        }
    }
    best.map(|b| b.5)
}

fn pattern_seg() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["a", "b", ":p", ":q"])
}

fn rule_strategy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(pattern_seg(), 0..4),
        proptest::sample::select(vec!["", "/**", "/"]),
        proptest::sample::select(vec![
            "",
            "hosts = [\"x.com\"]",
            "hosts = [\"*.com\"]",
            "hosts = [\"x.com\", \"*.org\"]",
        ]),
        proptest::sample::select(vec![
            "",
            "methods = [\"GET\"]",
            "methods = [\"!GET\"]",
            "methods = [\"POST\", \"PUT\"]",
        ]),
    )
        .prop_map(|(segs, tail, hosts, methods)| {
            let mut path = String::new();
            let mut used = 0;
            for s in segs {
                // Unique parameter names.
                if s.starts_with(':') {
                    used += 1;
                    path.push_str(&format!("/:p{used}"));
                } else {
                    path.push('/');
                    path.push_str(s);
                }
            }
            if tail == "/" && path.is_empty() {
                path.push('/');
            } else {
                path.push_str(tail);
            }
            if path.is_empty() {
                path.push('/');
            }
            format!("path = \"{path}\"\nauth = \"corp\"\n{hosts}\n{methods}\n")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn trie_agrees_with_scan(
        rules in proptest::collection::vec(rule_strategy(), 1..12),
        requests in proptest::collection::vec((
            proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c"]), 0..5),
            any::<bool>(),
            proptest::sample::select(vec!["x.com", "y.com", "z.org", ""]),
            proptest::sample::select(vec!["GET", "POST", "DELETE"]),
        ), 1..10),
    ) {
        let text: String = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("[[rule]]\nid = \"r{i}\"\n{r}"))
            .collect();
        let f: File = toml::from_str(&text).unwrap();
        let Ok(set) = RuleSet::build(f.rules, &f.rule, &ISSUERS, &[]) else {
            return Ok(()); // ambiguous sets are load errors
        };
        for (segs, slash, host, method) in requests {
            let path = format!("/{}{}", segs.join("/"), if slash && !segs.is_empty() { "/" } else { "" });
            let got = id_of(&set, method, host, &path);
            let want = oracle(&set, method, host, &path);
            prop_assert_eq!(got.as_deref(), want, "{} {} {}\n{}", method, host, path, text);
        }
    }
}

/// The conformance table's configuration, as an engine.
fn conformance_engine() -> (jwtd_gate::conformance::Suite, jwtd_gate::Engine) {
    let suite = jwtd_gate::conformance::Suite::new(&std::env::temp_dir());
    let config = jwtd_gate::config::GateConfig::parse(&suite.config, "conformance/jwtd.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    (suite, jwtd_gate::Engine::from_config(&config).unwrap())
}

/// A public rule reads no token: two are neither verified nor refused there, while a rule that
/// needs a token refuses them 400 `multiple_tokens`.
#[tokio::test]
async fn public_rules_read_no_token_even_two() {
    let (suite, engine) = conformance_engine();
    let mut headers = HeaderMap::new();
    for label in ["corp-orders-read", "partner-orders-read"] {
        let v = format!("Bearer {}", suite.token(label));
        headers.append("authorization", HeaderValue::from_str(&v).unwrap());
    }
    let decide = |path: &'static str| {
        let req = jwtd_gate::Request {
            method: "GET",
            scheme: "https",
            host: "api.test",
            path_and_query: path,
            headers: &headers,
            client_cert: Default::default(),
        };
        let engine = &engine;
        async move {
            let d = engine.decide(&req, jwtd_core::unix_now()).await;
            (
                d.token.is_some(),
                d.outcome.map(|_| ()).map_err(|e| e.error.reason()),
            )
        }
    };
    assert_eq!(decide("/healthz").await, (false, Ok(())));
    assert_eq!(
        decide("/v1/orders/7").await,
        (false, Err(jwtd_core::Reason::MultipleTokens))
    );
}

/// The shared conformance table (conformance/), run against the engine itself, twice (the
/// second time from the caches).
#[tokio::test]
async fn conformance_table_against_the_engine() {
    use jwtd_gate::conformance::{check, Observed};
    let (suite, engine) = conformance_engine();
    let mut failures = Vec::new();
    let mut looked_at = 0;
    // Twice: the second pass is answered from the verified-token caches (two issuers: the
    // issuer is then found by its cache, not by `iss`), and must decide the same.
    for (pass, case) in ["first", "cached"]
        .into_iter()
        .flat_map(|p| suite.cases.iter().map(move |c| (p, c)))
    {
        let mut headers = HeaderMap::new();
        let sent = case.token.as_ref().map(|label| suite.token(label));
        if let Some(t) = &sent {
            let v = format!("Bearer {t}");
            headers.insert("authorization", HeaderValue::from_str(&v).unwrap());
        }
        let req = jwtd_gate::Request {
            method: &case.method,
            scheme: "https",
            host: "api.test",
            path_and_query: &case.path,
            headers: &headers,
            client_cert: Default::default(),
        };
        let d = engine.decide(&req, jwtd_core::unix_now()).await;
        // The token the decision reports (for log fingerprints) is the one sent, when the
        // decision looked at one.
        if let Some(t) = d.token {
            looked_at += 1;
            if sent.as_deref() != Some(t) {
                failures.push(format!(
                    "{pass} pass: {:?}: reported a token not sent",
                    case.name
                ));
            }
        }
        let rule = d.rule.map(|r| r.id().to_owned());
        let got = match d.outcome {
            Ok(allowed) => Observed {
                status: 200,
                reason: None,
                rule: Some(rule),
                headers: Some(
                    allowed
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                        .collect(),
                ),
            },
            Err(denial) => Observed {
                status: jwtd_gate::refusal::http_denial(&denial).status.as_u16(),
                reason: Some(denial.error.reason().as_str().to_owned()),
                rule: Some(rule),
                headers: None,
            },
        };
        if let Err(e) = check(case, &got) {
            failures.push(format!("{pass} pass: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(suite.cases.len() >= 20);
    assert!(
        looked_at >= 20,
        "{looked_at} decisions reported their token"
    );
}

/// A refusal for a missing scope names the scopes in the RFC 6750 challenge.
#[test]
fn missing_scope_challenge_names_the_scope() {
    let d = jwtd_gate::Denial {
        error: jwtd_core::Error::new(jwtd_core::Reason::MissingScope, "needs orders:read"),
        issuer: None,
        scope: Some("orders:read".into()),
        resource_metadata: None,
        dpop: None,
    };
    let answer = jwtd_gate::refusal::http_denial(&d);
    assert_eq!(answer.status.as_u16(), 403);
    let www = answer
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .unwrap();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.ends_with("scope=\"orders:read\""),
        "{www}"
    );
}

/// The request path's `takes_issuer` answers what the set `issuers()` holds, for every tree.
#[test]
fn takes_issuer_is_membership_in_issuers() {
    use Requirement::*;
    let i = |n: &str| Issuer(n.to_owned());
    let trees = [
        Public,
        i("a"),
        Any(vec![i("a"), i("b")]),
        All(vec![i("a"), Any(vec![i("a"), i("b")])]),
        All(vec![i("a"), i("b")]),
        All(vec![]),
        Any(vec![]),
        Optional(Box::new(Any(vec![i("b"), All(vec![i("c"), i("c")])]))),
        Any(vec![Optional(Box::new(i("a"))), All(vec![i("b"), i("c")])]),
    ];
    for t in &trees {
        for name in ["a", "b", "c", "d"] {
            assert_eq!(
                t.takes_issuer(name),
                t.issuers().contains(&name),
                "{t:?} / {name}"
            );
            // The engine checks takes_issuer before verifying and relies on it afterwards
            // instead of evaluating the tree again: the two agree for every rule that reads
            // tokens (`all = []`, vacuously true, is a load error).
            if *t != Public && *t != All(vec![]) {
                assert_eq!(
                    t.takes_issuer(name),
                    t.evaluate(TokenState::Verified { issuer: name }).is_ok(),
                    "{t:?} / {name}"
                );
            }
        }
    }
}

/// Issue 16: a secret pair validates into one reference (both set: an error naming both keys),
/// and a reference resolves as the configuration reads secrets (trailing newlines dropped;
/// unset, empty, whitespace-only and short values refused, never shown).
#[test]
fn config_secret_ref_from_pair_and_resolve() {
    use jwtd_gate::config::SecretRef;
    use jwtd_gate::Env;
    let pair = |e: Option<&str>, f: Option<&str>| SecretRef::from_pair(("k_env", e), ("k_file", f));
    assert_eq!(pair(None, None), Ok(None));
    assert_eq!(pair(Some("V"), None), Ok(Some(SecretRef::Env("V".into()))));
    assert_eq!(
        pair(None, Some("/f")),
        Ok(Some(SecretRef::File("/f".into())))
    );
    assert_eq!(
        pair(Some("V"), Some("/f")),
        Err("k_env and k_file are both set; set exactly one".into())
    );
    assert_eq!(SecretRef::Env("V".into()).key("k_env", "k_file"), "k_env");
    assert_eq!(
        SecretRef::File("/f".into()).key("k_env", "k_file"),
        "k_file"
    );

    let env = Env::from_vars([
        ("JWTD_REF_GOOD", "sixteen-bytes-ok"),
        ("JWTD_REF_EMPTY", ""),
        ("JWTD_REF_BLANK", " \t "),
        ("JWTD_REF_SHORT", "short"),
    ]);
    let var = |n: &str| SecretRef::Env(n.into()).resolve(&env, "test secret", 16);
    assert_eq!(&var("JWTD_REF_GOOD").unwrap()[..], b"sixteen-bytes-ok");
    for (name, says) in [
        (
            "JWTD_REF_UNSET",
            "test secret: environment variable JWTD_REF_UNSET is not set",
        ),
        (
            "JWTD_REF_EMPTY",
            "test secret: environment variable JWTD_REF_EMPTY is empty; an empty secret would let anyone in",
        ),
        (
            "JWTD_REF_BLANK",
            "test secret: environment variable JWTD_REF_BLANK is empty; an empty secret would let anyone in",
        ),
        (
            "JWTD_REF_SHORT",
            "test secret: environment variable JWTD_REF_SHORT holds 5 bytes; at least 16 are required (e.g. `openssl rand -base64 32`)",
        ),
    ] {
        assert_eq!(var(name).unwrap_err(), says);
    }
    let dir = std::env::temp_dir().join(format!("jwtd-secret-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    let file = || SecretRef::File(path.display().to_string()).resolve(&env, "test secret", 16);
    std::fs::write(&path, "sixteen-bytes-ok\r\n\n").unwrap();
    assert_eq!(&file().unwrap()[..], b"sixteen-bytes-ok");
    std::fs::write(&path, "\n\n").unwrap();
    assert!(file()
        .unwrap_err()
        .ends_with("is empty; an empty secret would let anyone in"));
    std::fs::remove_dir_all(&dir).unwrap();
    let e = file().unwrap_err();
    assert!(e.starts_with("test secret: cannot read "), "{e}");
}

/// Issue 16: the six key-source keys validate into one [`KeySource`]; none or several is an
/// error with the messages `jwtd config check` shows; an issuer built in code with both
/// `secret_env` and `secret_file` is refused (the variable silently won before).
#[test]
fn config_key_source_is_exactly_one() {
    use jwtd_gate::config::{IssuerConfig, KeySource, KeySourceError, SecretRef};
    let issuer = |keys: &str| -> IssuerConfig {
        toml::from_str(&format!("name = \"a\"\nalgorithms = [\"HS256\"]\n{keys}")).unwrap()
    };
    for (keys, source) in [
        (
            "secret_env = \"S\"",
            KeySource::Secret(SecretRef::Env("S".into())),
        ),
        (
            "secret_file = \"/s\"",
            KeySource::Secret(SecretRef::File("/s".into())),
        ),
        ("pem_file = \"/p\"", KeySource::PemFile("/p".into())),
        ("jwks_file = \"/j\"", KeySource::JwksFile("/j".into())),
        (
            "jwks_url = \"https://x/j\"",
            KeySource::JwksUrl("https://x/j".into()),
        ),
        (
            "discovery = \"https://x/\"",
            KeySource::Discovery("https://x/".into()),
        ),
    ] {
        let got = issuer(keys).key_source().unwrap();
        assert_eq!(got, source);
        assert!(keys.starts_with(got.key()), "{keys}");
        assert_eq!(got.is_remote(), keys.contains("https"));
    }
    let none = issuer("").key_source().unwrap_err();
    assert_eq!(none, KeySourceError::None);
    assert_eq!(
        none.to_string(),
        "no key source: set one of secret_env, secret_file, pem_file, jwks_file, jwks_url, discovery"
    );
    let mut both = issuer("secret_env = \"JWTD_KS_HS\"");
    both.secret_file = Some("/nonexistent/secret".into());
    assert_eq!(
        both.key_source().unwrap_err().to_string(),
        "several key sources (secret_env, secret_file); set exactly one"
    );
    let env = jwtd_gate::Env::from_vars([("JWTD_KS_HS", "a-long-enough-hmac-secret-0123456789")]);
    let cache = jwtd_gate::config::CacheSettings::default();
    let build = |ic: &IssuerConfig| {
        jwtd_gate::issuers::Issuers::build_with_env(
            std::slice::from_ref(ic),
            &cache,
            None,
            None,
            &env,
        )
    };
    assert!(build(&issuer("secret_env = \"JWTD_KS_HS\"")).is_ok());
    assert_eq!(
        build(&both).unwrap_err(),
        "issuer \"a\": several key sources (secret_env, secret_file); set exactly one"
    );
}

/// Issue 16: the headers rules may not set are computed one way, whether the rules are
/// compiled from configurations (`jwtd config check`, the service's file check) or against
/// built issuers (the engine): jwtd's reserved headers and every issuer's mapped headers.
#[test]
fn config_reserved_headers_are_the_same_from_configs_and_built_issuers() {
    use jwtd_gate::config::{CacheSettings, IssuerConfig, RESERVED_HEADERS};
    use jwtd_gate::issuers::{IdentityHeaders, Issuers};
    let configs: Vec<IssuerConfig> = [
        "name = \"corp\"\nissuer = \"https://corp\"\nsecret_env = \"JWTD_RH\"\nalgorithms = [\"HS256\"]\n\
         [headers]\nX-User = \"sub\"\nx-team = \"team\"\n",
        "name = \"partner\"\nissuer = \"https://partner\"\nsecret_env = \"JWTD_RH\"\nalgorithms = [\"HS256\"]\n\
         forward_payload = true\n[headers]\nx-user = \"email\"\nX-Partner = \"pid\"\n",
    ]
    .iter()
    .map(|t| toml::from_str(t).unwrap())
    .collect();
    let env = jwtd_gate::Env::from_vars([("JWTD_RH", "a-long-enough-hmac-secret-0123456789")]);
    let built =
        Issuers::build_with_env(&configs, &CacheSettings::default(), None, None, &env).unwrap();
    let from_configs = IdentityHeaders::of_configs(&configs);
    assert_eq!(from_configs, built.identity);
    assert_eq!(from_configs, IdentityHeaders::of(&built.list));
    assert!(from_configs.payload);
    let names: Vec<&str> = from_configs.mapped.iter().map(|h| h.as_str()).collect();
    assert_eq!(names, ["x-partner", "x-team", "x-user"]);
    let reserved = from_configs.reserved();
    assert_eq!(reserved, jwtd_gate::Engine::reserved_headers(&built));
    assert_eq!(reserved.len(), RESERVED_HEADERS.len() + 3);
    // A rule setting an issuer's header is refused both ways.
    let rule: File = toml::from_str(
        "[[rule]]\nid = \"a\"\npath = \"/\"\nauth = \"corp\"\nset_headers = { X-Team = \"{claim.sub}\" }\n",
    )
    .unwrap();
    let compiled =
        jwtd_gate::config::compile_rules(&rule.rules, &rule.rule, &configs, &[], "").unwrap_err();
    assert!(
        compiled[0].message.contains("\"X-Team\" is reserved"),
        "{compiled:?}"
    );
    let engine = jwtd_gate::Engine::with_rules(built, &rule.rules, &rule.rule, Default::default())
        .unwrap_err();
    assert!(engine.contains("\"X-Team\" is reserved"), "{engine}");
}

// ---- Protected resources (RFC 9728) and MCP ----

const MCP_SECRET: &str = "mcp-test-secret-0123456789abcdef-0123";

/// An MCP server's configuration: one resource, a base rule, a per-tool rule on the MCP
/// headers, and a rule under the resource with its own audiences.
const MCP_CONFIG: &str = r#"
[tokens]
query = "access_token"
cookie = "session"

[[issuer]]
name = "corp"
issuer = "https://auth.example.com"
secret_env = "MCP_SECRET"
algorithms = ["HS256"]
audiences = ["other-api"]

[[resource]]
uri = "https://mcp.example.com/mcp"
issuers = ["corp"]
resource_name = "Example MCP"
resource_documentation = "https://docs.example.com/mcp"

[[rule]]
id = "mcp"
path = "/mcp"
auth = "corp"
resource = "https://mcp.example.com/mcp"
scopes = { all = ["mcp:read", "mcp:tools"] }

[[rule]]
id = "mcp-deploy"
path = "/mcp"
auth = "corp"
resource = "https://mcp.example.com/mcp"
scopes = { all = ["mcp:read", "mcp:deploy"] }
when_headers = { mcp-method = "tools/call", mcp-name = "deploy" }

[[rule]]
id = "mcp-admin"
path = "/mcp/admin"
auth = "corp"
resource = "https://mcp.example.com/mcp"
audiences = ["mcp-admin"]

[[rule]]
id = "other"
path = "/other"
auth = "corp"
"#;

fn mcp_config(text: &str) -> Result<jwtd_gate::config::GateConfig, jwtd_gate::config::ConfigError> {
    let env = jwtd_gate::Env::from_vars([("MCP_SECRET", MCP_SECRET)]);
    jwtd_gate::config::GateConfig::parse_with_env(text, "mcp.toml", &env)
}

fn mcp_token(claims: Value) -> String {
    let sk = jwtd_core::SigningKey::hmac(MCP_SECRET.as_bytes(), jwtd_core::Algorithm::HS256, None)
        .unwrap();
    let now = jwtd_core::unix_now();
    let mut c =
        json!({"iss": "https://auth.example.com", "sub": "alice", "iat": now, "exp": now + 300});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    jwtd_core::sign(&sk, c.as_object().unwrap(), None).unwrap()
}

/// Every field of the metadata document: `resource`, `authorization_servers` from the
/// issuer's `iss`, `scopes_supported` derived from the rules under it (in file order, once
/// each), `bearer_methods_supported` from `[tokens]` (the cookie is no RFC 6750 method),
/// name, documentation, the mTLS field as false and the DPoP ones from the issuer's DPoP
/// settings.
#[tokio::test]
async fn resource_metadata_document_has_every_field() {
    let engine = jwtd_gate::Engine::from_config(&mcp_config(MCP_CONFIG).unwrap()).unwrap();
    let r = &engine.resources.list()[0];
    assert_eq!(r.uri, "https://mcp.example.com/mcp");
    assert_eq!(
        &*r.metadata_url,
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        r.well_known_path,
        "/.well-known/oauth-protected-resource/mcp"
    );
    let doc: Value = serde_json::from_str(&r.document).unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["mcp:read", "mcp:tools", "mcp:deploy"],
            "bearer_methods_supported": ["header", "query"],
            "resource_name": "Example MCP",
            "resource_documentation": "https://docs.example.com/mcp",
            "tls_client_certificate_bound_access_tokens": false,
            // The issuer's DPoP (no [issuer.dpop]: enforce-cnf, the default algorithms).
            "dpop_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    // Explicit scopes win; no optional field when not configured; bearer only by default.
    let text = MCP_CONFIG
        .replace("[tokens]\nquery = \"access_token\"\ncookie = \"session\"\n", "")
        .replace(
            "resource_name = \"Example MCP\"\nresource_documentation = \"https://docs.example.com/mcp\"\n",
            "scopes_supported = [\"mcp:read\"]\n",
        )
        // DPoP required by the one issuer: the metadata says so, with its algorithms.
        .replace(
            "audiences = [\"other-api\"]\n",
            "audiences = [\"other-api\"]\n[issuer.dpop]\nmode = \"require\"\nalgorithms = [\"ES256\"]\n",
        );
    let engine = jwtd_gate::Engine::from_config(&mcp_config(&text).unwrap()).unwrap();
    let doc: Value = serde_json::from_str(&engine.resources.list()[0].document).unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["mcp:read"],
            "bearer_methods_supported": ["header"],
            "tls_client_certificate_bound_access_tokens": false,
            "dpop_signing_alg_values_supported": ["ES256"],
            "dpop_bound_access_tokens_required": true,
        })
    );
    // DPoP off: no algorithms advertised, not required.
    let off = text.replace("mode = \"require\"", "mode = \"off\"");
    let engine = jwtd_gate::Engine::from_config(&mcp_config(&off).unwrap()).unwrap();
    let doc: Value = serde_json::from_str(&engine.resources.list()[0].document).unwrap();
    assert!(
        doc.get("dpop_signing_alg_values_supported").is_none(),
        "{doc}"
    );
    assert_eq!(doc["dpop_bound_access_tokens_required"], false);
    // Only a cookie: no RFC 6750 method at all (an empty list, as RFC 9728 allows).
    let text = MCP_CONFIG.replace(
        "[tokens]\nquery = \"access_token\"\n",
        "[tokens]\nbearer = false\n",
    );
    let engine = jwtd_gate::Engine::from_config(&mcp_config(&text).unwrap()).unwrap();
    let doc: Value = serde_json::from_str(&engine.resources.list()[0].document).unwrap();
    assert_eq!(doc["bearer_methods_supported"], json!([]));
}

/// Every `[[resource]]` problem is refused at load, on its line.
#[test]
fn resource_validation_errors_name_their_lines() {
    let base = "[[issuer]]\nname = \"corp\"\nissuer = \"https://auth.example.com\"\n\
                secret_env = \"MCP_SECRET\"\nalgorithms = [\"HS256\"]\n\
                [[issuer]]\nname = \"anon\"\nsecret_env = \"MCP_SECRET\"\nalgorithms = [\"HS256\"]\n";
    let refused = |resource: &str, want: &str| {
        let text = format!("{base}[[resource]]\n{resource}");
        let e = mcp_config(&text).expect_err(&text).to_string();
        assert!(e.contains(want), "{want:?} in {e}");
    };
    let issuers = "issuers = [\"corp\"]";
    refused(
        &format!("uri = \"http://mcp.example.com/mcp\"\n{issuers}"),
        "mcp.toml:11: resource \"http://mcp.example.com/mcp\": uri \"http://mcp.example.com/mcp\" must use https (http only for a loopback host)",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp#x\"\n{issuers}"),
        "mcp.toml:11: resource \"https://mcp.example.com/mcp#x\": uri \"https://mcp.example.com/mcp#x\" has a fragment",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp?a=1\"\n{issuers}"),
        "must not have a query",
    );
    refused(&format!("uri = \"/mcp\"\n{issuers}"), "must be absolute");
    refused(
        &format!("uri = \"ftp://h/mcp\"\n{issuers}"),
        "must use https",
    );
    refused(
        &format!("uri = \"https://u@mcp.example.com/mcp\"\n{issuers}"),
        "must not hold user information",
    );
    refused(
        &format!("uri = \"https://MCP.example.com/mcp\"\n{issuers}"),
        "is not in canonical form (lower-case scheme and host): write \"https://mcp.example.com/mcp\"",
    );
    refused(
        &format!("uri = \"https://mcp.example.com:443/mcp\"\n{issuers}"),
        "names the default port",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/\"\n{issuers}"),
        "write \"https://mcp.example.com\"",
    );
    refused(
        "uri = \"https://mcp.example.com/mcp\"\nissuers = [\"nobody\"]",
        "mcp.toml:12: resource \"https://mcp.example.com/mcp\": issuers: no issuer is named \"nobody\"",
    );
    refused(
        "uri = \"https://mcp.example.com/mcp\"\nissuers = [\"anon\"]",
        "issuer \"anon\" has no \"issuer\" (iss)",
    );
    refused(
        "uri = \"https://mcp.example.com/mcp\"\nissuers = []",
        "issuers must name at least one issuer",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp\"\n{issuers}\nscopes_supported = [\"a b\"]"),
        "mcp.toml:13: resource \"https://mcp.example.com/mcp\": scopes_supported: \"a b\" is not a scope token",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp\"\n{issuers}\nresource_documentation = \"http://docs.example.com\""),
        "resource_documentation \"http://docs.example.com\" must use https",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp\"\n{issuers}\nresource_name = \"\""),
        "resource_name must be 1 to 200 bytes",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp\"\n{issuers}\ndpop_bound_access_tokens_required = true"),
        "unknown field `dpop_bound_access_tokens_required`",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp\"\n{issuers}\n[[resource]]\nuri = \"https://mcp.example.com/mcp\"\n{issuers}"),
        "mcp.toml:14: resource \"https://mcp.example.com/mcp\": configured twice",
    );
    refused(
        &format!("uri = \"https://mcp.example.com/mcp\"\n{issuers}\n[[rule]]\nid = \"r\"\npath = \"/x\"\nauth = \"corp\"\nresource = \"https://mcp.example.com/other\""),
        "mcp.toml:17: rule \"r\": resource \"https://mcp.example.com/other\" is not the uri of any [[resource]]",
    );
    // Loopback hosts may use http; a port is kept in the metadata URL.
    for uri in [
        "http://localhost:8080/mcp",
        "http://127.0.0.1:9/mcp",
        "http://[::1]/mcp",
        "https://mcp.example.com",
    ] {
        let text = format!("{base}[[resource]]\nuri = \"{uri}\"\n{issuers}\n");
        mcp_config(&text).unwrap_or_else(|e| panic!("{uri}: {e}"));
    }
}

/// Status, headers (name, value) and body of a metadata answer.
type Answer = (u16, Vec<(String, String)>, String);

fn answer_of(engine: &jwtd_gate::Engine, method: &str, host: &str, path: &str) -> Option<Answer> {
    engine.resources.answer(method, host, path).map(|a| {
        (
            a.status.as_u16(),
            a.headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect(),
            a.body,
        )
    })
}

/// The well-known answers: the path-inserted form, the root form (MCP's fallback when only a
/// path-bearing resource exists), HEAD, 405 with `Allow`, 404 for an unknown path, nothing for
/// paths outside the prefix; several resources on one path are told apart by host.
#[tokio::test]
async fn metadata_answers_by_path_and_host() {
    let engine = jwtd_gate::Engine::from_config(&mcp_config(MCP_CONFIG).unwrap()).unwrap();
    let wk = "/.well-known/oauth-protected-resource";
    for (method, path) in [
        ("GET", format!("{wk}/mcp")),
        ("HEAD", format!("{wk}/mcp")),
        ("GET", format!("{wk}/mcp?x=1")),
        ("GET", wk.to_owned()),
    ] {
        let (status, headers, body) = answer_of(&engine, method, "mcp.example.com", &path).unwrap();
        assert_eq!(status, 200, "{method} {path}");
        assert!(headers.contains(&("cache-control".into(), "public, max-age=3600".into())));
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        assert!(headers.contains(&("access-control-allow-origin".into(), "*".into())));
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let (status, headers, _) =
            answer_of(&engine, method, "mcp.example.com", &format!("{wk}/mcp")).unwrap();
        assert_eq!(status, 405, "{method}");
        assert!(headers.contains(&("allow".into(), "GET, HEAD".into())));
    }
    // A browser's CORS preflight: 204, every origin, the asked headers when they are names.
    let preflight = |asked: &str, path: &str| {
        let mut h = headers(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ]);
        if !asked.is_empty() {
            h.insert(
                "access-control-request-headers",
                HeaderValue::from_str(asked).unwrap(),
            );
        }
        let a = engine
            .resources
            .answer_request("OPTIONS", "mcp.example.com", path, &h)
            .unwrap();
        let hs: Map<String, Value> = a
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), json!(v.to_str().unwrap())))
            .collect();
        (a.status.as_u16(), Value::Object(hs))
    };
    let mcp_path = format!("{wk}/mcp");
    assert_eq!(
        preflight("mcp-protocol-version, content-type", &mcp_path),
        (
            204,
            json!({
                "access-control-allow-origin": "*",
                "access-control-allow-methods": "GET, HEAD",
                "access-control-max-age": "86400",
                "access-control-allow-headers": "mcp-protocol-version, content-type",
            })
        )
    );
    let (status, hs) = preflight("a b, c", &mcp_path);
    assert_eq!(status, 204);
    assert!(hs.get("access-control-allow-headers").is_none(), "{hs}");
    assert_eq!(preflight("", &format!("{wk}/other")).0, 404);
    for path in [
        format!("{wk}/other"),
        format!("{wk}/mcp/"),
        format!("{wk}/"),
    ] {
        let (status, _, body) = answer_of(&engine, "GET", "mcp.example.com", &path).unwrap();
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert!(answer_of(
        &engine,
        "GET",
        "h",
        "/.well-known/oauth-protected-resourcex"
    )
    .is_none());
    assert!(answer_of(&engine, "GET", "h", "/mcp").is_none());

    // Two resources on /mcp: the host decides; the root form serves the one without a path.
    let text = format!(
        "{MCP_CONFIG}\n[[resource]]\nuri = \"https://b.example.com/mcp\"\nissuers = [\"corp\"]\n\
         [[resource]]\nuri = \"https://b.example.com\"\nissuers = [\"corp\"]\n"
    );
    let engine = jwtd_gate::Engine::from_config(&mcp_config(&text).unwrap()).unwrap();
    let resource = |host: &str, path: &str| {
        answer_of(&engine, "GET", host, path)
            .filter(|a| a.0 == 200)
            .map(|a| serde_json::from_str::<Value>(&a.2).unwrap()["resource"].clone())
    };
    let mcp = format!("{wk}/mcp");
    assert_eq!(
        resource("mcp.example.com", &mcp),
        Some(json!("https://mcp.example.com/mcp"))
    );
    assert_eq!(
        resource("B.example.com:443", &mcp),
        Some(json!("https://b.example.com/mcp"))
    );
    assert_eq!(
        resource("c.example.com", &mcp),
        None,
        "ambiguous without the host"
    );
    assert_eq!(
        resource("c.example.com", wk),
        Some(json!("https://b.example.com"))
    );
}

fn challenge_of(d: &jwtd_gate::Decision<'_>) -> (u16, String) {
    let denial = d.outcome.as_ref().expect_err("refused");
    let a = jwtd_gate::refusal::http_denial(denial);
    let www = a
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (a.status.as_u16(), www)
}

/// Every 401/403 of a rule under a resource names its metadata and every scope the rule
/// requires; its tokens must carry the resource URI in `aud` (the issuer's audiences do not
/// apply), unless the rule names its own; per-tool scopes match on `Mcp-Method`/`Mcp-Name`.
#[tokio::test]
async fn challenges_under_a_resource_carry_metadata_and_every_scope() {
    let engine = jwtd_gate::Engine::from_config(&mcp_config(MCP_CONFIG).unwrap()).unwrap();
    let md =
        "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"";
    let ask = |path: &'static str, extra: Vec<(&'static str, String)>| {
        let mut h = HeaderMap::new();
        for (n, v) in extra {
            h.append(n, HeaderValue::from_str(&v).unwrap());
        }
        (path, h)
    };
    let decide = |path: &'static str, h: HeaderMap| {
        let engine = &engine;
        async move {
            let req = jwtd_gate::Request {
                method: "POST",
                scheme: "https",
                host: "mcp.example.com",
                path_and_query: path,
                headers: &h,
                client_cert: Default::default(),
            };
            let d = engine.decide(&req, jwtd_core::unix_now()).await;
            let rule = d.rule.map(|r| r.id().to_owned());
            let reason = d.outcome.as_ref().err().map(|e| e.error.reason().as_str());
            let ch = d.outcome.is_err().then(|| challenge_of(&d));
            (rule, reason, ch)
        }
    };
    let bearer = |claims: Value| ("authorization", format!("Bearer {}", mcp_token(claims)));

    // No token: 401 with the metadata and both scopes, no error code (RFC 6750 3.1).
    let (p, h) = ask("/mcp", vec![]);
    let (_, reason, ch) = decide(p, h).await;
    assert_eq!(reason, Some("missing_token"));
    assert_eq!(
        ch.unwrap(),
        (
            401,
            format!("Bearer realm=\"jwtd\", {md}, scope=\"mcp:read mcp:tools\"")
        )
    );
    // A token for another audience (the issuer's own!) is refused: 401 wrong_audience.
    let (p, h) = ask(
        "/mcp",
        vec![bearer(
            json!({"aud": "other-api", "scope": "mcp:read mcp:tools"}),
        )],
    );
    let (_, reason, ch) = decide(p, h).await;
    assert_eq!(reason, Some("wrong_audience"));
    let (status, www) = ch.unwrap();
    assert_eq!(status, 401);
    assert!(
        www.contains("error=\"invalid_token\"") && www.contains(md),
        "{www}"
    );
    assert!(www.ends_with("scope=\"mcp:read mcp:tools\""), "{www}");
    // For the resource, one scope short: 403 naming every scope, not only the missing one.
    let (p, h) = ask(
        "/mcp",
        vec![bearer(
            json!({"aud": "https://mcp.example.com/mcp", "scope": "mcp:read"}),
        )],
    );
    let (_, reason, ch) = decide(p, h).await;
    assert_eq!(reason, Some("missing_scope"));
    let (status, www) = ch.unwrap();
    assert_eq!(status, 403);
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains(md),
        "{www}"
    );
    assert!(www.ends_with("scope=\"mcp:read mcp:tools\""), "{www}");
    // Allowed with aud = the resource (a string or in an array).
    for aud in [
        json!("https://mcp.example.com/mcp"),
        json!(["x", "https://mcp.example.com/mcp"]),
    ] {
        let (p, h) = ask(
            "/mcp",
            vec![bearer(json!({"aud": aud, "scope": "mcp:read mcp:tools"}))],
        );
        assert_eq!(decide(p, h).await, (Some("mcp".into()), None, None));
    }
    // Per tool: tools/call of "deploy" needs mcp:deploy, through the MCP headers.
    let tok = json!({"aud": "https://mcp.example.com/mcp", "scope": "mcp:read mcp:tools"});
    let (p, h) = ask(
        "/mcp",
        vec![
            bearer(tok.clone()),
            ("mcp-method", "tools/call".into()),
            ("mcp-name", "deploy".into()),
        ],
    );
    let (rule, reason, ch) = decide(p, h).await;
    assert_eq!(
        (rule.as_deref(), reason),
        (Some("mcp-deploy"), Some("missing_scope"))
    );
    assert!(ch.unwrap().1.ends_with("scope=\"mcp:read mcp:deploy\""));
    let (p, h) = ask(
        "/mcp",
        vec![
            bearer(tok.clone()),
            ("mcp-method", "tools/call".into()),
            ("mcp-name", "search".into()),
        ],
    );
    assert_eq!(
        decide(p, h).await,
        (Some("mcp".into()), None, None),
        "another tool"
    );
    let deployer = json!({"aud": "https://mcp.example.com/mcp", "scope": "mcp:read mcp:deploy"});
    let (p, h) = ask(
        "/mcp",
        vec![
            bearer(deployer),
            ("mcp-method", "tools/call".into()),
            ("mcp-name", "deploy".into()),
        ],
    );
    assert_eq!(decide(p, h).await, (Some("mcp-deploy".into()), None, None));
    // The rule's own audiences replace the resource's; the challenge still names it (no
    // scopes on that rule: no scope parameter).
    let (p, h) = ask(
        "/mcp/admin",
        vec![bearer(json!({"aud": "https://mcp.example.com/mcp"}))],
    );
    let (_, reason, ch) = decide(p, h).await;
    assert_eq!(reason, Some("wrong_audience"));
    assert!(ch.unwrap().1.ends_with(md));
    let (p, h) = ask("/mcp/admin", vec![bearer(json!({"aud": "mcp-admin"}))]);
    assert_eq!(decide(p, h).await, (Some("mcp-admin".into()), None, None));
    // A rule under no resource: the issuer's audience, no resource_metadata.
    let (p, h) = ask("/other", vec![]);
    let (_, _, ch) = decide(p, h).await;
    assert_eq!(ch.unwrap(), (401, "Bearer realm=\"jwtd\"".into()));
    let (p, h) = ask("/other", vec![bearer(json!({"aud": "other-api"}))]);
    assert_eq!(decide(p, h).await, (Some("other".into()), None, None));
    // 400s are not challenges: two tokens under the resource.
    let (p, h) = ask(
        "/mcp",
        vec![
            bearer(tok.clone()),
            ("cookie", format!("session={}", mcp_token(tok.clone()))),
        ],
    );
    let (_, reason, ch) = decide(p, h).await;
    assert_eq!(reason, Some("multiple_tokens"));
    assert!(!ch.unwrap().1.contains("resource_metadata"));
}

/// What a rule under a resource costs per decision, next to the same rule without `resource`
/// (and with the resource URI as its `audiences`, so the same token passes both): an allowed
/// request (a verified-token cache hit) and a refusal (no token). Prints nanoseconds per
/// decision; run in release:
/// `cargo test --release -p jwtd-gate --test rules -- --ignored resource_cost --nocapture`.
/// Measured (callgrind, the difference between 20,000 and 0 decisions of one case, release):
/// allowed 15,834 Ir plain vs 15,819 under a resource (no difference); refused without a token
/// 1,800 vs 2,172 Ir (+372: the metadata URL's `Arc` and the joined scopes).
#[tokio::test]
#[ignore]
async fn resource_cost() {
    let under = MCP_CONFIG.to_owned();
    let plain = MCP_CONFIG.replace(
        "resource = \"https://mcp.example.com/mcp\"\nscopes = { all = [\"mcp:read\", \"mcp:tools\"] }",
        "audiences = [\"https://mcp.example.com/mcp\"]\nscopes = { all = [\"mcp:read\", \"mcp:tools\"] }",
    );
    assert_ne!(under, plain);
    let token = format!(
        "Bearer {}",
        mcp_token(json!({"aud": "https://mcp.example.com/mcp", "scope": "mcp:read mcp:tools"}))
    );
    let with_token = headers(&[("authorization", &token)]);
    let without = HeaderMap::new();
    // RESOURCE_COST_N decisions (default 200,000) of the cases whose name contains
    // RESOURCE_COST_CASE ("plain allowed", "resource refused", ...; default all): under
    // callgrind, one case at a time gives its instruction count.
    let n: u32 = std::env::var("RESOURCE_COST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let only = std::env::var("RESOURCE_COST_CASE").unwrap_or_default();
    for (name, text) in [("plain", &plain), ("under a resource", &under)] {
        let engine = jwtd_gate::Engine::from_config(&mcp_config(text).unwrap()).unwrap();
        for (what, h, allowed) in [("allowed", &with_token, true), ("refused", &without, false)] {
            if !format!("{name} {what}").contains(&only) {
                continue;
            }
            let req = jwtd_gate::Request {
                method: "POST",
                scheme: "https",
                host: "mcp.example.com",
                path_and_query: "/mcp",
                headers: h,
                client_cert: Default::default(),
            };
            let now = jwtd_core::unix_now();
            for _ in 0..1000 {
                let d = engine.decide(&req, now).await;
                assert_eq!(d.outcome.is_ok(), allowed, "{name} {what}");
            }
            let start = std::time::Instant::now();
            for _ in 0..n {
                let d = engine.decide(&req, now).await;
                std::hint::black_box(&d);
            }
            let ns = start.elapsed().as_nanos() / u128::from(n.max(1));
            println!("{name:>16} {what}: {ns} ns per decision");
        }
    }
}

/// A rule that names a resource is audience-bound to it however the engine was built: an
/// engine made with `Engine::with_rules` alone (no `with_resources`, so no resource table)
/// must not fall back to the issuer's audiences and take a token for another audience.
#[tokio::test]
async fn a_rule_under_a_resource_is_audience_bound_without_the_resource_table() {
    let config = mcp_config(MCP_CONFIG).unwrap();
    let issuers = jwtd_gate::issuers::Issuers::build_with_env(
        &config.issuers,
        &config.cache,
        None,
        None,
        &config.env,
    )
    .unwrap();
    let engine =
        jwtd_gate::Engine::with_rules(issuers, &config.rules, &config.rule, config.tokens.clone())
            .unwrap();
    assert!(engine.resources.is_empty());
    let decide = |aud: &'static str| {
        let engine = &engine;
        async move {
            let mut h = HeaderMap::new();
            let tok = mcp_token(json!({"aud": aud, "scope": "mcp:read mcp:tools"}));
            h.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {tok}")).unwrap(),
            );
            let req = jwtd_gate::Request {
                method: "POST",
                scheme: "https",
                host: "mcp.example.com",
                path_and_query: "/mcp",
                headers: &h,
                client_cert: Default::default(),
            };
            let d = engine.decide(&req, jwtd_core::unix_now()).await;
            d.outcome.err().map(|e| e.error.reason().as_str())
        }
    };
    // The issuer's own audience: not the resource, refused.
    assert_eq!(decide("other-api").await, Some("wrong_audience"));
    assert_eq!(decide("https://mcp.example.com/mcp").await, None);
}

/// A resource URI (or documentation URL) with a character a challenge's quoted string or a
/// plain URI cannot carry (`"`, `\`, `{`, `|`, non-ASCII: `http::Uri` takes them in a path) is
/// refused at load: it used to load, and every challenge then silently lacked
/// `resource_metadata`.
#[test]
fn resource_uris_outside_rfc_3986_are_refused_at_load() {
    let base = "[[issuer]]\nname = \"corp\"\nissuer = \"https://auth.example.com\"\n\
                secret_env = \"MCP_SECRET\"\nalgorithms = [\"HS256\"]\n";
    for uri in [
        r#"https://mcp.example.com/m\"cp"#,
        r"https://mcp.example.com/m\\cp",
        "https://mcp.example.com/m{cp}",
        "https://mcp.example.com/m|cp",
        "https://mcp.example.com/m^cp",
        "https://mcp.example.com/mcé",
    ] {
        let text = format!("{base}[[resource]]\nuri = \"{uri}\"\nissuers = [\"corp\"]\n");
        let e = mcp_config(&text).expect_err(&text).to_string();
        assert!(e.contains("RFC 3986"), "{uri}: {e}");
        let text = format!(
            "{base}[[resource]]\nuri = \"https://mcp.example.com/mcp\"\nissuers = [\"corp\"]\n\
             resource_documentation = \"{uri}\"\n"
        );
        let e = mcp_config(&text).expect_err(&text).to_string();
        assert!(e.contains("RFC 3986"), "doc {uri}: {e}");
    }
    // Percent-encoding, sub-delims, ':' and '@' in a path are fine.
    let text = format!(
        "{base}[[resource]]\nuri = \"https://mcp.example.com/a%20b/c;d=e/f:g@h~i\"\nissuers = [\"corp\"]\n"
    );
    mcp_config(&text).unwrap();
}

/// The challenge of a rule under a resource names every scope the rule requires, whole: the
/// `scope` parameter used to be cut at 200 characters, in the middle of a scope token, so a
/// client asked for a scope that does not exist.
#[tokio::test]
async fn challenge_scope_is_never_cut_inside_a_scope() {
    let scopes: Vec<String> = (0..12).map(|i| format!("mcp:tool-number-{i:02}")).collect();
    let text = format!(
        "[[issuer]]\nname = \"corp\"\nissuer = \"https://auth.example.com\"\n\
         secret_env = \"MCP_SECRET\"\nalgorithms = [\"HS256\"]\n\
         [[resource]]\nuri = \"https://mcp.example.com/mcp\"\nissuers = [\"corp\"]\n\
         [[rule]]\nid = \"mcp\"\npath = \"/mcp\"\nauth = \"corp\"\n\
         resource = \"https://mcp.example.com/mcp\"\nscopes = {{ all = {scopes:?} }}\n"
    );
    let engine = jwtd_gate::Engine::from_config(&mcp_config(&text).unwrap()).unwrap();
    let h = HeaderMap::new();
    let req = jwtd_gate::Request {
        method: "POST",
        scheme: "https",
        host: "mcp.example.com",
        path_and_query: "/mcp",
        headers: &h,
        client_cert: Default::default(),
    };
    let d = engine.decide(&req, jwtd_core::unix_now()).await;
    let (status, www) = challenge_of(&d);
    assert_eq!(status, 401);
    let want = format!("scope=\"{}\"", scopes.join(" "));
    assert!(want.len() > 200);
    assert!(www.ends_with(&want), "{www}");
    // Bounded, still at a token boundary.
    use jwtd_gate::refusal::{scope_parameter, MAX_SCOPE_PARAMETER};
    let many = vec!["s".repeat(100); 30].join(" ");
    let p = scope_parameter(&many);
    assert!(p.len() <= MAX_SCOPE_PARAMETER && p.len() > MAX_SCOPE_PARAMETER - 101);
    assert!(p.split(' ').all(|t| t.len() == 100), "{p}");
}

#[path = "rules/mtls.rs"]
mod mtls;
