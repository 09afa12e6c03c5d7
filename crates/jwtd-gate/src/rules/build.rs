//! Checking and compiling `[[rule]]` tables.

use super::claims::{
    is_scope_token, Allowed, ClaimOp, ClaimPredicate, Compare, ScopeCheck, ScopeMode, Template,
    MAX_CLAIM_PREDICATES, MAX_SCOPES, MAX_VALUES,
};
use super::conditions::{HostPattern, MethodSet, MAX_HOSTS};
use super::config::{
    ClaimConfig, CorsPreflight, DoubleEncoding, RuleConfig, RuleOptions, Semicolons,
};
use super::path::{PathPattern, Segment};
use super::requirement::Requirement;
use super::{
    headers_compatible, line_of, shape_key, Node, Rule, RuleError, RuleSet, MAX_HEADERS_PER_RULE,
    MAX_ID_LEN, MAX_RULES,
};
use http::HeaderName;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

struct Ctx<'a> {
    source: Option<&'a str>,
    errors: Vec<RuleError>,
}

impl Ctx<'_> {
    fn line(&self, span: &Range<usize>) -> Option<usize> {
        self.source.map(|s| line_of(s, span.start))
    }

    fn push(&mut self, rule: Option<&str>, span: Option<Range<usize>>, message: String) {
        let line = span.as_ref().and_then(|s| self.line(s));
        self.errors.push(RuleError {
            line,
            span,
            rule: rule.map(str::to_owned),
            message,
        });
    }

    /// "rule "x" (line 3)" or "rule "x"".
    fn named(&self, rule: &Rule) -> String {
        match rule.line {
            Some(l) => format!("rule {:?} (line {l})", rule.id),
            None => format!("rule {:?}", rule.id),
        }
    }
}

/// Ids no rule may take: what metrics and logs call the decisions no rule made.
const RESERVED_IDS: [&str; 2] = ["default", "-"];

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

pub(super) fn build(
    options: RuleOptions,
    cfgs: &[RuleConfig],
    issuers: &[&str],
    reserved: &[HeaderName],
    source: Option<&str>,
) -> Result<RuleSet, Vec<RuleError>> {
    let mut cx = Ctx {
        source,
        errors: Vec::new(),
    };
    if options.scope_claim.is_empty() {
        cx.push(None, None, "[rules] scope_claim is empty".into());
    }
    if cfgs.len() > MAX_RULES {
        cx.push(
            None,
            None,
            format!("{} rules: at most {MAX_RULES} are allowed", cfgs.len()),
        );
        return Err(cx.errors);
    }
    let mut rules: Vec<Rule> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut first_line: HashMap<&str, Option<usize>> = HashMap::new();
    for (index, cfg) in cfgs.iter().enumerate() {
        let id = cfg.id.get_ref().as_str();
        if let Some(prev) = first_line.get(id) {
            let at = prev.map(|l| format!(" (line {l})")).unwrap_or_default();
            cx.push(
                Some(id),
                Some(cfg.id.span()),
                format!("duplicate id: an earlier rule{at} has the same id"),
            );
            continue;
        }
        first_line.insert(id, cx.line(&cfg.id.span()));
        if let Some(rule) = compile(&mut cx, index, cfg, &options, issuers, reserved) {
            by_id.insert(rule.id.clone(), rules.len());
            rules.push(rule);
        }
    }
    check_ambiguity(&mut cx, &rules);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let nodes = trie(&rules);
    Ok(RuleSet {
        options,
        rules,
        by_id,
        nodes,
    })
}

fn compile(
    cx: &mut Ctx<'_>,
    index: usize,
    cfg: &RuleConfig,
    options: &RuleOptions,
    issuers: &[&str],
    reserved: &[HeaderName],
) -> Option<Rule> {
    let id = cfg.id.get_ref().as_str();
    let at = Some(cfg.id.span());
    let before = cx.errors.len();
    let err = |cx: &mut Ctx<'_>, span: Option<Range<usize>>, m: String| {
        cx.push(Some(id), span.or_else(|| at.clone()), m)
    };
    if !id_ok(id) {
        err(
            cx,
            None,
            format!("the id must be 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -"),
        );
    } else if RESERVED_IDS.contains(&id) {
        err(
            cx,
            None,
            format!("the id {id:?} is reserved: metrics and logs name the default decision (no rule matched) \"default\", and decisions without rules \"-\""),
        );
    }

    // Hosts.
    let mut hosts: Vec<HostPattern> = Vec::new();
    if let Some(list) = &cfg.hosts {
        if list.is_empty() {
            err(cx, None, "hosts is empty: leave it out for any host".into());
        }
        if list.len() > MAX_HOSTS {
            err(cx, None, format!("more than {MAX_HOSTS} hosts"));
        }
        for h in list.iter().take(MAX_HOSTS) {
            match HostPattern::parse(h) {
                Ok(p) if !hosts.contains(&p) => hosts.push(p),
                Ok(_) => {}
                Err(m) => err(cx, None, m),
            }
        }
    }

    // Path.
    let source = cfg.path.get_ref();
    let semicolon = source.contains(';') || source.to_ascii_lowercase().contains("%3b");
    let path = match PathPattern::parse(source, options.encoded_slashes, options.trailing_slash) {
        Ok(_) if semicolon && options.semicolons == Semicolons::Reject => {
            err(
                cx,
                Some(cfg.path.span()),
                format!(
                    "path {source:?}: has a ; (or %3B), and requests with one are refused \
                     (`[rules] semicolons = \"reject\"`), so it can never match; set \
                     semicolons = \"allow\" to match ; as text"
                ),
            );
            None
        }
        Ok(_)
            if options.double_encoding == DoubleEncoding::Reject
                && super::path::double_encoded(source) =>
        {
            err(
                cx,
                Some(cfg.path.span()),
                format!(
                    "path {source:?}: has a double-encoded escape (%25 followed by an escape), \
                     and requests with one are refused (`[rules] double_encoding = \"reject\"`), \
                     so it can never match; set double_encoding = \"allow\" to match it as text"
                ),
            );
            None
        }
        Ok(p) => Some(p),
        Err(m) => {
            err(
                cx,
                Some(cfg.path.span()),
                format!("path {:?}: {m}", cfg.path.get_ref()),
            );
            None
        }
    };
    let params: Vec<String> = path
        .as_ref()
        .map(|p| p.param_names().map(str::to_owned).collect())
        .unwrap_or_default();
    let check_params = |cx: &mut Ctx<'_>, t: &Template, what: &str| {
        for p in t.params() {
            if !params.iter().any(|q| q == p) {
                cx.push(
                    Some(id),
                    at.clone(),
                    format!(
                        "{what}: {{path.{p}}} names a parameter the path {:?} does not define",
                        cfg.path.get_ref()
                    ),
                );
            }
        }
    };

    // Methods.
    let methods = match MethodSet::parse(cfg.methods.as_deref()) {
        Ok(m) => m,
        Err(m) => {
            err(cx, None, m);
            MethodSet::All
        }
    };

    // Header conditions.
    let mut when_headers: Vec<(HeaderName, Template)> = Vec::new();
    if cfg.when_headers.len() > MAX_HEADERS_PER_RULE {
        err(
            cx,
            None,
            format!("more than {MAX_HEADERS_PER_RULE} when_headers"),
        );
    }
    let binding = Allowed {
        claim: false,
        param: true,
        header: true,
    };
    for (name, value) in &cfg.when_headers {
        let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
            err(
                cx,
                None,
                format!("when_headers: {name:?} is not a header name"),
            );
            continue;
        };
        if when_headers.iter().any(|(n, _)| *n == h) {
            err(
                cx,
                None,
                format!("when_headers: {name:?} is listed twice (header names ignore case)"),
            );
            continue;
        }
        match Template::parse(value, binding) {
            Ok(t) => {
                check_params(cx, &t, &format!("when_headers {name:?}"));
                when_headers.push((h, t));
            }
            Err(m) => err(cx, None, format!("when_headers {name:?}: {m}")),
        }
    }

    // Requirement.
    let requirement = match Requirement::compile(cfg.auth.get_ref(), issuers) {
        Ok(r) => Some(r),
        Err(ms) => {
            for m in ms {
                err(cx, Some(cfg.auth.span()), m);
            }
            None
        }
    };
    let public = matches!(requirement, Some(Requirement::Public));
    let public_err = |what: &str| {
        format!("{what} on a public rule: a public rule looks at no token, so this would never be checked; name an issuer in auth, or drop it")
    };

    // Audiences.
    if let Some(a) = &cfg.audiences {
        if a.is_empty() {
            err(
                cx,
                None,
                "audiences is empty: leave it out to use the issuer's".into(),
            );
        }
        if a.iter().any(String::is_empty) {
            err(cx, None, "audiences holds an empty string".into());
        }
        if public {
            err(cx, None, public_err("audiences"));
        }
    }

    // Scopes.
    let scope_claim = cfg
        .scope_claim
        .clone()
        .unwrap_or_else(|| options.scope_claim.clone());
    if scope_claim.is_empty() {
        err(cx, None, "scope_claim is empty".into());
    }
    let scopes = match &cfg.scopes {
        None => None,
        Some(s) => {
            let (mode, list) = match (&s.all, &s.any) {
                (Some(l), None) => (ScopeMode::All, l.clone()),
                (None, Some(l)) => (ScopeMode::Any, l.clone()),
                _ => {
                    err(
                        cx,
                        None,
                        "scopes takes exactly one of `all = [..]` or `any = [..]`".into(),
                    );
                    (ScopeMode::All, Vec::new())
                }
            };
            if list.is_empty() && (s.all.is_some() != s.any.is_some()) {
                err(cx, None, "scopes: the list is empty".into());
            }
            if list.len() > MAX_SCOPES {
                err(cx, None, format!("more than {MAX_SCOPES} scopes"));
            }
            for sc in &list {
                if !is_scope_token(sc) {
                    err(
                        cx,
                        None,
                        format!(
                            "scope {sc:?} is not a scope token (visible ASCII, no space, \" or \\)"
                        ),
                    );
                }
            }
            if public {
                err(cx, None, public_err("scopes"));
            }
            Some(ScopeCheck {
                claim: scope_claim.clone(),
                mode,
                scopes: list,
            })
        }
    };
    if cfg.scope_claim.is_some() && cfg.scopes.is_none() {
        err(cx, None, "scope_claim without scopes".into());
    }

    // Claim predicates.
    if cfg.claims.len() > MAX_CLAIM_PREDICATES {
        err(
            cx,
            None,
            format!("more than {MAX_CLAIM_PREDICATES} claim predicates"),
        );
    }
    if public && !cfg.claims.is_empty() {
        err(cx, None, public_err("claims"));
    }
    let mut claims = Vec::new();
    for (i, c) in cfg.claims.iter().enumerate() {
        match predicate(c) {
            Ok(p) => {
                if let ClaimOp::EqualsBinding(t) = &p.op {
                    check_params(cx, t, &format!("claims[{i}] equals"));
                }
                claims.push(p);
            }
            Err(m) => err(cx, None, format!("claims[{i}] (path {:?}): {m}", c.path)),
        }
    }

    // CORS preflight.
    let cors_preflight_bypass = cfg.cors_preflight == CorsPreflight::Bypass;
    if cors_preflight_bypass && !methods.matches("OPTIONS") {
        err(
            cx,
            None,
            format!("cors_preflight = \"bypass\" but methods ({methods}) exclude OPTIONS, so no preflight can match this rule; add \"OPTIONS\""),
        );
    }

    // Output headers.
    if cfg.set_headers.len() > MAX_HEADERS_PER_RULE {
        err(
            cx,
            None,
            format!("more than {MAX_HEADERS_PER_RULE} set_headers"),
        );
    }
    let output = Allowed {
        claim: true,
        param: true,
        header: false,
    };
    let mut set_headers: Vec<(HeaderName, Template)> = Vec::new();
    for (name, value) in &cfg.set_headers {
        let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
            err(
                cx,
                None,
                format!("set_headers: {name:?} is not a header name"),
            );
            continue;
        };
        if reserved.contains(&h) {
            err(
                cx,
                None,
                format!("set_headers: {name:?} is reserved (jwtd's identity headers and headers carrying credentials or framing)"),
            );
            continue;
        }
        if set_headers.iter().any(|(n, _)| *n == h) {
            err(
                cx,
                None,
                format!("set_headers: {name:?} is listed twice (header names ignore case)"),
            );
            continue;
        }
        match Template::parse(value, output) {
            Ok(t) => {
                check_params(cx, &t, &format!("set_headers {name:?}"));
                if public && t.reads_claims() {
                    err(
                        cx,
                        None,
                        format!("set_headers {name:?} reads claims on a public rule, which has no token"),
                    );
                }
                set_headers.push((h, t));
            }
            Err(m) => err(cx, None, format!("set_headers {name:?}: {m}")),
        }
    }

    if cx.errors.len() > before {
        return None;
    }
    let mut rule = Rule {
        id: id.to_owned(),
        index,
        line: cx.line(&cfg.id.span()),
        span: cfg.id.span(),
        bound: (0, 0, 0, std::cmp::Reverse(index)),
        hosts,
        path: path?,
        methods,
        when_headers,
        requirement: requirement?,
        takes: Vec::new(),
        audiences: cfg.audiences.clone(),
        scopes,
        claims,
        cors_preflight_bypass,
        set_headers,
        resource: cfg
            .resource
            .as_ref()
            .map(|r| (r.get_ref().clone(), r.span())),
        mtls: cfg.mtls,
        dpop: cfg.dpop,
    };
    rule.bound = rule.compute_bound();
    rule.takes = rule
        .requirement
        .issuers()
        .into_iter()
        .map(str::to_owned)
        .collect();
    Some(rule)
}

fn predicate(c: &ClaimConfig) -> Result<ClaimPredicate, String> {
    if c.path.is_empty() {
        return Err("the claim path is empty".into());
    }
    let mut ops: Vec<ClaimOp> = Vec::new();
    let values = |vs: &[Value], what: &str| -> Result<Vec<Value>, String> {
        if vs.is_empty() {
            return Err(format!("{what} is empty"));
        }
        if vs.len() > MAX_VALUES {
            return Err(format!("{what} holds more than {MAX_VALUES} values"));
        }
        vs.iter().try_for_each(plain)?;
        Ok(vs.to_vec())
    };
    if let Some(v) = &c.equals {
        match v {
            Value::String(s) if s.contains('{') => {
                let t = Template::parse(
                    s,
                    Allowed {
                        claim: false,
                        param: true,
                        header: true,
                    },
                )?;
                ops.push(ClaimOp::EqualsBinding(t));
            }
            v => {
                plain(v)?;
                ops.push(ClaimOp::Equals(v.clone()));
            }
        }
    }
    if let Some(vs) = &c.one_of {
        ops.push(ClaimOp::OneOf(values(vs, "one_of")?));
    }
    if let Some(v) = &c.contains {
        plain(v)?;
        ops.push(ClaimOp::Contains(v.clone()));
    }
    if let Some(vs) = &c.contains_any {
        ops.push(ClaimOp::ContainsAny(values(vs, "contains_any")?));
    }
    if let Some(b) = c.exists {
        ops.push(ClaimOp::Exists(b));
    }
    for (v, op) in [
        (c.gt, Compare::Gt),
        (c.ge, Compare::Ge),
        (c.lt, Compare::Lt),
        (c.le, Compare::Le),
    ] {
        if let Some(n) = v {
            if !n.is_finite() {
                return Err("a numeric comparison needs a finite number".into());
            }
            ops.push(ClaimOp::Compare(op, n));
        }
    }
    match ops.len() {
        1 => Ok(ClaimPredicate {
            path: c.path.clone(),
            op: ops.remove(0),
        }),
        0 => Err("no operator: write one of equals, one_of, contains, contains_any, exists, gt, ge, lt, le".into()),
        _ => Err("more than one operator: write one predicate per operator (they all must hold)".into()),
    }
}

/// Refuses TOML values that have no JSON meaning (dates, which arrive as a private table).
fn plain(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(m) if m.keys().any(|k| k.starts_with("$__toml")) => {
            Err("TOML dates are not claim values; write the date as a string or a number".into())
        }
        Value::Object(m) => m.values().try_for_each(plain),
        Value::Array(a) => a.iter().try_for_each(plain),
        _ => Ok(()),
    }
}

fn check_ambiguity(cx: &mut Ctx<'_>, rules: &[Rule]) {
    let mut groups: HashMap<_, Vec<usize>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        groups.entry(shape_key(&r.path)).or_default().push(i);
    }
    let mut reported: HashSet<(usize, usize)> = HashSet::new();
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    let mut keys: Vec<_> = groups.into_iter().collect();
    keys.sort_by_key(|(_, v)| v.first().copied());
    for (_, members) in keys {
        if members.len() < 2 {
            continue;
        }
        // Bucket by host pattern: rules of equal host rank that can take one host share one.
        let mut buckets: HashMap<Option<&HostPattern>, Vec<usize>> = HashMap::new();
        for &i in &members {
            let r = &rules[i];
            if r.hosts.is_empty() {
                buckets.entry(None).or_default().push(i);
            }
            for h in &r.hosts {
                buckets.entry(Some(h)).or_default().push(i);
            }
        }
        let mut bucket_list: Vec<_> = buckets.into_iter().collect();
        bucket_list.sort_by_key(|(_, v)| v.first().copied());
        for (host, list) in bucket_list {
            for (n, &a) in list.iter().enumerate() {
                for &b in &list[n + 1..] {
                    let (ra, rb) = (&rules[a], &rules[b]);
                    if ra.methods.rank() != rb.methods.rank()
                        || !ra.methods.overlaps(&rb.methods)
                        || ra.when_headers.len() != rb.when_headers.len()
                        || !headers_compatible(&ra.when_headers, &rb.when_headers)
                    {
                        continue;
                    }
                    if !reported.insert((a, b)) {
                        continue;
                    }
                    let host = match host {
                        None => "neither lists hosts".to_owned(),
                        Some(h) => format!("both list host {h}"),
                    };
                    let headers = if ra.when_headers.is_empty() {
                        "no header conditions".to_owned()
                    } else {
                        "header conditions that can hold together".to_owned()
                    };
                    let msg = format!(
                        "{} and {} can match the same request with equal specificity: the same path shape ({:?} and {:?}), {host}, methods {} and {} overlap, {headers}; make one more specific or make them disjoint",
                        cx.named(ra),
                        cx.named(rb),
                        ra.path.source,
                        rb.path.source,
                        ra.methods,
                        rb.methods,
                    );
                    found.push((a, b, msg));
                }
            }
        }
    }
    found.sort_by_key(|(a, b, _)| (*b, *a));
    for (_, b, msg) in found {
        let rb = &rules[b];
        cx.errors.push(RuleError {
            line: rb.line,
            span: Some(rb.span.clone()),
            rule: Some(rb.id.clone()),
            message: msg,
        });
    }
}

fn trie(rules: &[Rule]) -> Vec<Node> {
    let mut nodes = vec![Node::default()];
    for (i, r) in rules.iter().enumerate() {
        let mut cur = 0;
        for seg in &r.path.segments {
            match seg {
                Segment::Literal(t) => {
                    let next = nodes.len();
                    let child = *nodes[cur].literals.entry(t.clone()).or_insert(next);
                    if child == next {
                        nodes.push(Node::default());
                    }
                    cur = child;
                }
                Segment::Param(_) => {
                    cur = match nodes[cur].param {
                        Some(c) => c,
                        None => {
                            let next = nodes.len();
                            nodes[cur].param = Some(next);
                            nodes.push(Node::default());
                            next
                        }
                    };
                }
                Segment::Rest(_) => {
                    nodes[cur].rest.add(i, r);
                    cur = usize::MAX;
                    break;
                }
            }
        }
        if cur != usize::MAX {
            if r.path.trailing {
                nodes[cur].end_slash.add(i, r);
            } else {
                nodes[cur].end.add(i, r);
            }
        }
    }
    for n in &mut nodes {
        for c in [&mut n.end, &mut n.end_slash, &mut n.rest] {
            c.sort(rules);
        }
    }
    nodes
}
