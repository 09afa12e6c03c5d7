//! Per-route rules: matching a request to the most specific rule, and what that rule requires.
//!
//! This module is pure: no I/O, no async, no HTTP framework (only [`http::HeaderMap`] and
//! [`http::HeaderName`]). It compiles the `[rules]` and `[[rule]]` tables of `jwtd.toml` into a
//! [`RuleSet`], finds the rule for a request ([`RuleSet::find`]), and provides the pieces the
//! decision calls: [`Requirement::evaluate`], [`ScopeCheck::check`], [`ClaimPredicate::check`],
//! [`Template::render`].
//!
//! # The rule language
//!
//! ```toml
//! [rules]                       # all optional
//! default = "deny"              # no rule matches: "deny" (default) | "public" | "authenticated"
//! encoded_slashes = "reject"    # %2F in a segment: "reject" (default) | "decode" | "keep"
//! trailing_slash = "strict"     # "strict" (default: /a/ is not /a) | "ignore"
//! semicolons = "reject"         # ; or %3B in the path: "reject" (default) | "allow"
//! double_encoding = "reject"    # %252e, %253B (an escape encoded twice): "reject" (default) | "allow"
//! scope_claim = "scope"         # where scopes are read (a space-delimited string or an array)
//!
//! [[rule]]
//! id = "health"
//! path = "/healthz"
//! auth = "public"
//!
//! [[rule]]
//! id = "orders-read"
//! hosts = ["api.example.com"]
//! path = "/v1/orders/:id"
//! methods = ["GET", "HEAD"]
//! auth = { any = ["corp", "partner"] }
//! scopes = { all = ["orders:read"] }
//! [rule.set_headers]
//! x-order-id = "{path.id}"
//! x-user = "{claim.sub}"
//!
//! [[rule]]
//! id = "admin"
//! path = "/admin/**"
//! methods = ["POST"]
//! auth = "corp"
//! claims = [{ path = "amr", contains = "mfa" }]
//! ```
//!
//! A rule has:
//!
//! - `id` (required, unique, `[A-Za-z0-9._-]{1,64}`, not `default` or `-`: metrics and logs
//!   name the decisions of no rule so).
//! - `hosts` (optional): `api.example.com` (exact) or `*.example.com` (one or more labels before
//!   `.example.com`, not `example.com` itself); case-insensitive; the request's port and one
//!   trailing dot are ignored. Without `hosts`, any host.
//! - `path` (required), segments separated by `/`:
//!   - a literal (`orders`), compared with the decoded request segment; a literal may be
//!     percent-encoded (`a%20b`, `%3Aid` for a literal `:id`);
//!   - `:name`: exactly one segment, bound as parameter `name`;
//!   - `*name` or `**`: the rest of the path, zero or more segments, only as the last segment;
//!     `*name` binds the rest (decoded segments joined by `/`, with a trailing `/` kept in
//!     strict mode); `/a/**` matches `/a`, `/a/` and `/a/b/c`;
//!   - a pattern ending in `/` (`/a/`) matches only a path ending in `/` (strict mode).
//! - `methods` (optional, default all): tokens (case-insensitive, uppercased); `["ALL"]`; or
//!   exclusions `["!TRACE", "!CONNECT"]` (all but these). Request methods are uppercased too, so
//!   `get` is matched as `GET` (a backend that treats methods case-insensitively cannot be
//!   reached around a rule).
//! - `when_headers` (optional): `{ "x-tenant" = "acme" }`: the header is present **exactly
//!   once** with exactly this value (byte-for-byte; a repeated header never matches). The value
//!   may be a template over `{path.NAME}` and `{header.NAME}`.
//! - `auth` (required): `"public"` (no token looked at; only alone), an issuer name, or
//!   `{ any = [..] }`, `{ all = [..] }`, `{ optional = .. }`, nestable (see [`Requirement`]).
//! - `audiences` (optional): accepted audiences for this rule, overriding the issuer's (any-of).
//! - `scopes` (optional): `{ all = [..] }` or `{ any = [..] }`; `scope_claim` per rule.
//! - `claims` (optional): predicates, all of which must hold (see [`ClaimOp`]): `equals`,
//!   `one_of`, `contains`, `contains_any`, `exists`, `gt`/`ge`/`lt`/`le`; one operator per table.
//!   An `equals` string holding `{` is a binding template (`"{header.x-tenant}"`,
//!   `"{path.org}"`), compared as text with the claim.
//! - `cors_preflight = "bypass"` (optional): an `OPTIONS` request with `Origin` and
//!   `Access-Control-Request-Method` ([`is_cors_preflight`]) matching this rule passes without a
//!   token. The rule's methods must take `OPTIONS` (a load error otherwise: the bypass could
//!   never apply).
//! - `resource` (optional): the `uri` of a `[[resource]]` (RFC 9728 protected-resource
//!   metadata, see [`crate::resource`]): refusals carry `resource_metadata` and the rule's
//!   scopes, and tokens must name the resource in `aud` unless `audiences` is set.
//! - `[rule.set_headers]` (optional): header name → [`Template`] over `{claim.PATH}` and
//!   `{path.NAME}` (text between placeholders allowed; `{{`/`}}` for braces).
//!
//! Checked at load ([`RuleSet::build`], every error reported, each with the rule and, given
//! the text, a line): id syntax and uniqueness, host and method syntax, path syntax (`**` last,
//! no duplicate parameter, no empty or dot segment, no `%2F` under `reject`), unknown issuers,
//! empty `any`/`all`, `public` inside a tree, `all` nodes no single token can satisfy, empty
//! lists, scope tokens, one operator per claim predicate, header names, `set_headers` names
//! that are reserved, templates naming parameters the path does not bind, token-dependent
//! checks on a public rule, and **ambiguity** (below). Limits are constants of this module
//! ([`MAX_RULES`], [`MAX_PATH_LEN`], [`MAX_SEGMENTS`], [`MAX_HOSTS`], ...).
//!
//! # Request normalisation
//!
//! [`RuleSet::find`] reads the raw path as received (percent-encoded, maybe with `?query`):
//!
//! 1. `?` and what follows are ignored. The rest must start with `/` (absolute-form and `*`
//!    are for the caller to normalise), be at most [`MAX_PATH_LEN`] bytes, and hold no raw
//!    control character, space or `#`. A `;` (raw, or `%3B` once decoded) is refused
//!    ([`PathError::Semicolon`]) unless `semicolons = "allow"`: Tomcat, Jetty and Spring strip
//!    `;` path parameters before routing, so `/admin;x/secret` is `/admin/secret` to them but
//!    the literal segment `admin;x` here (missing `/admin/**`, maybe taken by a public
//!    fallback), and `/public/..;/admin` is `/admin` to them but under `/public/**` here. With
//!    `allow`, `;` is an ordinary character of its segment.
//! 2. It is split on `/`. An **empty segment** (`//`) anywhere but at the end is refused
//!    ([`PathError::EmptySegment`]). Collapsing `//` to `/` is what some backends do (nginx
//!    `merge_slashes`) and others do not; treating `//` as an empty segment makes `//admin` miss
//!    `/admin/**` and fall to a broader, maybe public, rule while the backend serves `/admin`.
//!    Either choice disagrees with some backend about which route a request is for
//!    (CWE-436); refusing it disagrees with none.
//! 3. Each segment is percent-decoded **once**: `%252F` becomes the text `%2F`, never `/`;
//!    but by default a `%25` whose decoded text is itself an escape (`%252e`, `%253B`,
//!    `%25%32%65`) is refused ([`PathError::DoubleEncoded`], `double_encoding = "allow"` keeps
//!    it as text): an upstream that decodes twice would read another path.
//!    A `%` without two hex digits, a NUL, or invalid UTF-8 after decoding is refused. `%2F`
//!    follows `encoded_slashes`: `reject` refuses the request; `decode` decodes it inside the
//!    segment (still one segment); `keep` keeps the text `%2F` and also keeps `%25` as `%25`
//!    (so `%2F` in a segment always means an encoded slash).
//! 4. Dot segments (`.`, `..`, also encoded: `%2e%2E`) are removed as RFC 3986
//!    `remove_dot_segments` does, after splitting and decoding, never above the root:
//!    `/a/./b/../c` is `/a/c`; `/../../x` is `/x`; `/a/b/..` is `/a/`.
//! 5. A trailing `/` is kept (strict) or dropped (`trailing_slash = "ignore"`, which drops it
//!    from patterns too). More than [`MAX_SEGMENTS`] segments is refused.
//!
//! Every [`PathError`] is a malformed request: the engine answers 400 `invalid_request`.
//! With no rule at all, [`RuleSet::find`] returns `Ok(None)` without reading the path, so
//! configurations without rules behave as before.
//!
//! # Specificity: which rule wins
//!
//! Of the rules whose conditions all hold for a request, the **most specific** wins. Rules are
//! compared by, in this order:
//!
//! 1. **Path**, segment by segment from the left, over the request's segments: a literal beats
//!    a `:param`, which beats a rest (`*name`/`**`); a pattern that ends exactly where the
//!    path ends beats a rest matching zero segments there. (`/v1/orders/mine` >
//!    `/v1/orders/:id` > `/v1/**`; `/a` > `/a/**` for the request `/a`.)
//! 2. **Host**: an exact host beats any wildcard; a wildcard with more labels beats one with
//!    fewer (`*.eu.example.com` > `*.example.com`); any wildcard beats no `hosts`. A rule
//!    listing several hosts ranks by the one the request matched best.
//! 3. **Methods**: explicit methods beat exclusions (`!TRACE`), which beat all methods.
//! 4. **Header conditions**: more conditions beat fewer.
//! 5. Equal on all of these: the first rule in the file. This can only decide between rules
//!    that never match the same request, since overlapping ones are a load error (below).
//!
//! If the most specific rule for the path fails its host, method or header conditions, the
//! next most specific is tried (backtracking), down to the least specific; if none holds, the
//! request takes `[rules] default`.
//!
//! # Ambiguity is a load error
//!
//! Two rules are ambiguous when some request could match both with equal specificity; that is
//! refused at load, naming both rules (never a runtime "found multiple rules"). The test is:
//! the same path shape (literals equal, `:a`/`:b` the same, `*x`/`**` the same, same trailing
//! slash), a common host pattern (or neither has `hosts`), methods of the same rank that share
//! a method (exclusion lists always share one), and the same number of header conditions that
//! do not contradict each other (they contradict only when one header has two different
//! literal values; a template could equal anything, so it never contradicts). This is exact
//! for hosts and methods and conservative for headers.
//!
//! # Matching cost
//!
//! Rules live in a segment trie (literal children in a hash map, one parameter child, rest
//! and end lists per node). A lookup visits only nodes whose prefix matches the request, so its
//! cost follows the path's length and the rules sharing its prefixes, not the number of rules.
//! Rules with the same path shape sit in one list per exact host (an exact host outranks every
//! other host condition, so only the request's host is looked up) plus one list for the rest,
//! each sorted by its rules' best possible rank; the scan stops when no later rule could rank
//! higher. What stays linear: rules that share one path shape and one host and differ only by
//! header conditions (or by wildcard hosts) are scanned one by one, a header lookup each.
//! [`RuleSet::find_with_stats`] counts the work for tests and benchmarks. The ambiguity check
//! at load compares pairs within such groups, so it is quadratic in the size of the largest
//! group (10,000 rules on one path and host, differing by a header value: about 4 s in a
//! debug build); ordinary sets of 10,000 rules load in well under a second.
//!
//! # Limits
//!
//! Every limit is a constant: [`MAX_RULES`] rules (10,000); per rule [`MAX_HOSTS`] hosts,
//! [`MAX_METHODS`] methods, [`MAX_HEADERS_PER_RULE`] header conditions and as many output
//! headers, [`MAX_SCOPES`] scopes, [`MAX_CLAIM_PREDICATES`] claim predicates of at most
//! [`MAX_VALUES`] values, requirement trees [`MAX_REQUIREMENT_DEPTH`] deep with
//! [`MAX_REQUIREMENT_ITEMS`] entries per list; patterns of [`MAX_PATTERN_LEN`] bytes and
//! [`MAX_SEGMENTS`] segments; templates of [`MAX_TEMPLATE_LEN`] bytes with
//! [`MAX_PLACEHOLDERS`] placeholders; request paths of [`MAX_PATH_LEN`] bytes and
//! [`MAX_SEGMENTS`] segments after normalisation (so the matcher's recursion is at most that
//! deep). The TOML parser bounds nesting on its own.
//!
//! # Lines in errors
//!
//! Read the file with `toml::from_str` so the [`toml::Spanned`] fields carry byte offsets,
//! then call [`RuleSet::build_with_source`] with the same text (after `${VAR}` expansion):
//! errors then carry lines. With [`RuleSet::build`], errors carry [`RuleError::span`]; turn
//! it into a line with [`line_of`].
//!
//! # Evaluation: what the decision does with a match
//!
//! The pieces are pure; the decision (outside this module) calls them in this order:
//!
//! 1. [`RuleSet::find`] (or [`RuleSet::find_named`] when the front names the rule). A
//!    [`PathError`] is 400 `invalid_request`. No match: `[rules] default`.
//! 2. [`Rule::cors_preflight_bypass`] and [`is_cors_preflight`]: a preflight passes.
//! 3. [`Requirement::issuers`] before any key fetch: a token whose `iss` routes to an issuer
//!    outside this set is [`Unmet::WrongIssuer`]; then [`Requirement::evaluate`] with
//!    [`TokenState::Absent`] or the verifying issuer ([`Unmet`] is 401 `invalid_token`).
//!    [`Rule::audiences`] replaces the issuer's audiences for the verification.
//! 4. With a token only: [`ScopeCheck::check`] and [`Rule::failing_claim`] (403
//!    `insufficient_scope`, the missing scopes in the `scope` parameter). A request that
//!    passes an `optional` requirement without a token skips them (the lint says so).
//! 5. [`Rule::render_headers`]: each output header, or `None` when its template does not
//!    render (sent empty, so the client's own value never passes through).
//!
//! # Templates
//!
//! `{claim.PATH}` renders a string claim as itself and a number or boolean as JSON text; an
//! absent claim, `null`, an array or an object renders as nothing, and so does the whole
//! template (`None`): a header is never half-filled. Arrays are not joined: a list in a header
//! needs a separator the backend agrees on, and a value with that separator inside would split.
//! `{path.NAME}` is the decoded parameter; `{header.NAME}` (bindings only) is a header present
//! exactly once. A rendered value that is not a valid header value (a decoded `%0A`) is `None`.

mod claims;
mod conditions;
mod config;
mod path;
mod requirement;

pub use claims::{
    claim_text, is_scope_token, json_eq, Binding, ClaimOp, ClaimPredicate, ClaimSource, Compare,
    NoClaims, Piece, ScopeCheck, ScopeMode, Template, MAX_CLAIM_PREDICATES, MAX_PLACEHOLDERS,
    MAX_SCOPES, MAX_TEMPLATE_LEN, MAX_VALUES,
};
pub use conditions::{
    is_method_token, normalise_host, HostPattern, MethodSet, MAX_HOSTS, MAX_HOST_LEN, MAX_METHODS,
};
pub use config::{
    AuthConfig, ClaimConfig, CorsPreflight, DefaultAction, DoubleEncoding, EncodedSlashes,
    RuleConfig, RuleOptions, ScopesConfig, Semicolons, TrailingSlash,
};
pub use path::{
    normalise, normalise_with, NormPath, Params, PathError, PathPattern, Segment, MAX_PARAM_NAME,
    MAX_PATH_LEN, MAX_PATTERN_LEN, MAX_SEGMENTS,
};
pub use requirement::{
    Requirement, TokenState, Unmet, MAX_REQUIREMENT_DEPTH, MAX_REQUIREMENT_ITEMS,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use path::ShapeSeg;
use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;

/// The matcher's maps, looked up once or twice per request segment: foldhash, seeded per
/// process (their keys come from the configuration; a request only looks up, so it cannot
/// lengthen a chain).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::fmt;
use std::ops::Range;

mod build;
mod lint;

/// The most rules one rule set may hold.
pub const MAX_RULES: usize = 10_000;
/// The most `when_headers` conditions or `set_headers` outputs on one rule.
pub const MAX_HEADERS_PER_RULE: usize = 32;
/// The longest rule id.
pub const MAX_ID_LEN: usize = 64;

/// A configuration error in the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The 1-based line, when the configuration text was given
    /// ([`RuleSet::build_with_source`]) and the place is known.
    pub line: Option<usize>,
    /// The byte range in the text (from [`toml::Spanned`]); turn it into a line with
    /// [`line_of`].
    pub span: Option<Range<usize>>,
    /// The rule's id, when the error is about one rule.
    pub rule: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, "rule {rule:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}

/// The 1-based line of a byte offset in `text` (offsets past the end give the last line).
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A request as the matcher sees it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The method (any case; uppercased for matching).
    pub method: &'a str,
    /// The host, maybe with `:port`, any case.
    pub host: &'a str,
    /// The raw path as received: percent-encoded, maybe with `?query` (ignored).
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// The rule a request matched, with the path parameters it bound (decoded).
#[derive(Clone, Debug)]
pub struct Matched<'r, 'p> {
    /// The rule.
    pub rule: &'r Rule,
    /// `(name, value)` for each `:name` and `*name` of the rule's path, in path order; the
    /// values borrowed from the request (`'p`) where nothing was decoded.
    pub params: Params<'r, 'p>,
}

impl Matched<'_, '_> {
    /// The binding for templates and `equals` bindings.
    pub fn binding<'a>(&'a self, headers: &'a HeaderMap) -> Binding<'a> {
        Binding {
            params: &self.params,
            headers,
        }
    }
}

/// How much work one lookup did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FindStats {
    /// Trie nodes entered.
    pub nodes: usize,
    /// Rules whose conditions were looked at.
    pub candidates: usize,
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    id: String,
    index: usize,
    line: Option<usize>,
    span: Range<usize>,
    bound: Rank,
    hosts: Vec<HostPattern>,
    path: PathPattern,
    methods: MethodSet,
    when_headers: Vec<(HeaderName, Template)>,
    requirement: Requirement,
    /// [`Requirement::issuers`], flattened at load for the request path.
    takes: Vec<String>,
    audiences: Option<Vec<String>>,
    scopes: Option<ScopeCheck>,
    claims: Vec<ClaimPredicate>,
    cors_preflight_bypass: bool,
    set_headers: Vec<(HeaderName, Template)>,
    /// The `[[resource]]` URI it guards, and the span of that value.
    resource: Option<(String, Range<usize>)>,
    /// `mtls`: the certificate-binding policy instead of the issuer's.
    mtls: Option<crate::mtls::Mode>,
    /// `dpop`: the DPoP mode overriding its issuers'.
    dpop: Option<crate::config::DpopMode>,
}

/// Static rank of a rule's conditions (the best the rule can rank on any request).
type Rank = (u32, u8, usize, Reverse<usize>);

impl Rule {
    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its `mtls` policy, when it overrides the issuer's.
    pub fn mtls(&self) -> Option<crate::mtls::Mode> {
        self.mtls
    }

    /// Position in the file (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The line of its `id`, when the text was given.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The host patterns (empty: any host).
    pub fn hosts(&self) -> &[HostPattern] {
        &self.hosts
    }

    /// The path pattern.
    pub fn path(&self) -> &PathPattern {
        &self.path
    }

    /// The methods.
    pub fn methods(&self) -> &MethodSet {
        &self.methods
    }

    /// The header conditions.
    pub fn when_headers(&self) -> &[(HeaderName, Template)] {
        &self.when_headers
    }

    /// The token requirement.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    /// Can a token of the issuer `name` satisfy this rule's requirement
    /// ([`Requirement::takes_issuer`], from a list made at load)?
    pub fn takes_issuer(&self, name: &str) -> bool {
        self.takes.iter().any(|n| n == name)
    }

    /// Audiences overriding the issuer's for this rule (any-of), if set.
    pub fn audiences(&self) -> Option<&[String]> {
        self.audiences.as_deref()
    }

    /// The scope requirement, if any.
    pub fn scopes(&self) -> Option<&ScopeCheck> {
        self.scopes.as_ref()
    }

    /// The claim predicates (all must hold).
    pub fn claims(&self) -> &[ClaimPredicate] {
        &self.claims
    }

    /// Does a CORS preflight matching this rule pass without a token?
    pub fn cors_preflight_bypass(&self) -> bool {
        self.cors_preflight_bypass
    }

    /// The headers to set on an allowed request.
    pub fn set_headers(&self) -> &[(HeaderName, Template)] {
        &self.set_headers
    }

    /// The protected resource (`[[resource]] uri`) this rule guards, if it names one.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_ref().map(|(u, _)| u.as_str())
    }

    /// The audience a token must name under this rule's resource: the resource URI, as a
    /// one-entry list ([`Rule::audiences`] takes precedence). Read from the rule itself, so
    /// the binding holds even for an engine built without the resource table.
    pub fn resource_audience(&self) -> Option<&[String]> {
        self.resource.as_ref().map(|(u, _)| std::slice::from_ref(u))
    }

    /// The DPoP mode this rule sets (`dpop = ...`), overriding its issuers' `[issuer.dpop]
    /// mode; `None`: the issuer's.
    pub fn dpop(&self) -> Option<crate::config::DpopMode> {
        self.dpop
    }

    /// The byte range of its `resource` value in the configuration text.
    pub fn resource_span(&self) -> Option<Range<usize>> {
        self.resource.as_ref().map(|(_, s)| s.clone())
    }

    /// The first claim predicate that fails, if any (for the reason and `explain`).
    pub fn failing_claim(
        &self,
        claims: &impl ClaimSource,
        binding: &Binding<'_>,
    ) -> Option<&ClaimPredicate> {
        self.claims.iter().find(|p| !p.check(claims, binding))
    }

    /// The output headers rendered: `None` as the value when a template does not render or
    /// does not make a valid header value (the header is then sent empty, so a client cannot
    /// supply its own).
    pub fn render_headers(
        &self,
        claims: &impl ClaimSource,
        binding: &Binding<'_>,
    ) -> Vec<(HeaderName, Option<HeaderValue>)> {
        self.set_headers
            .iter()
            .map(|(n, t)| {
                let v = t
                    .render(claims, binding)
                    .and_then(|s| HeaderValue::from_str(&s).ok());
                (n.clone(), v)
            })
            .collect()
    }

    fn host_rank(&self, host: Option<&str>) -> Option<u32> {
        if self.hosts.is_empty() {
            return Some(0);
        }
        let host = host?;
        self.hosts
            .iter()
            .filter(|p| p.matches(host))
            .map(HostPattern::rank)
            .max()
    }

    /// The byte range of its `id` value in the configuration text.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    fn bound(&self) -> Rank {
        self.bound
    }

    fn compute_bound(&self) -> Rank {
        (
            self.hosts.iter().map(HostPattern::rank).max().unwrap_or(0),
            self.methods.rank(),
            self.when_headers.len(),
            Reverse(self.index),
        )
    }

    fn headers_hold(&self, headers: &HeaderMap, params: &[(&str, Cow<'_, str>)]) -> bool {
        let b = Binding { params, headers };
        self.when_headers.iter().all(|(name, t)| {
            let mut all = headers.get_all(name).iter();
            let (Some(v), None) = (all.next(), all.next()) else {
                return false;
            };
            match t.render(&NoClaims, &b) {
                Some(want) => v.as_bytes() == want.as_bytes(),
                None => false,
            }
        })
    }

    /// The specificity of this rule, in words (for `jwtd rules explain`).
    pub fn specificity(&self) -> String {
        let segs: Vec<String> = self
            .path
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(t) => format!("literal {t:?}"),
                Segment::Param(n) => format!("param :{n}"),
                Segment::Rest(Some(n)) => format!("rest *{n}"),
                Segment::Rest(None) => "rest **".to_owned(),
            })
            .collect();
        let path = if segs.is_empty() {
            "root".to_owned()
        } else {
            segs.join(", ")
        };
        let slash = if self.path.trailing {
            ", trailing /"
        } else {
            ""
        };
        let hosts = if self.hosts.is_empty() {
            "any host".to_owned()
        } else {
            let best = self.hosts.iter().max_by_key(|h| h.rank());
            let kind = match best {
                Some(HostPattern::Exact(_)) => "exact".to_owned(),
                Some(HostPattern::Wildcard(s)) => {
                    format!("wildcard of {} labels", s.split('.').count())
                }
                None => String::new(),
            };
            format!(
                "hosts {} (best: {kind})",
                self.hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        let methods = match &self.methods {
            MethodSet::All => "all methods".to_owned(),
            m => format!("methods {m}"),
        };
        let headers = match self.when_headers.len() {
            0 => "no header condition".to_owned(),
            1 => "1 header condition".to_owned(),
            n => format!("{n} header conditions"),
        };
        format!("path [{path}{slash}]; {hosts}; {methods}; {headers}")
    }

    /// Key for the global match order (`rules_in_match_order`).
    fn order_key(&self) -> (Vec<(u8, &str)>, Reverse<Rank>) {
        let mut k: Vec<(u8, &str)> = self
            .path
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(t) => (4, t.as_str()),
                Segment::Param(_) => (3, ""),
                Segment::Rest(_) => (1, ""),
            })
            .collect();
        if !matches!(self.path.segments.last(), Some(Segment::Rest(_))) {
            k.push((2, if self.path.trailing { "/" } else { "" }));
        }
        (k, Reverse(self.bound()))
    }
}

/// Is this a CORS preflight: `OPTIONS` with `Origin` and a non-empty
/// `Access-Control-Request-Method`?
pub fn is_cors_preflight(method: &str, headers: &HeaderMap) -> bool {
    method.eq_ignore_ascii_case("OPTIONS")
        && headers.contains_key(http::header::ORIGIN)
        && headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|v| !v.is_empty())
}

#[derive(Clone, Debug, Default)]
struct Node {
    literals: FastMap<String, usize>,
    param: Option<usize>,
    /// Rules whose path ends here.
    end: Candidates,
    /// Rules whose path ends here with a trailing `/` (strict mode).
    end_slash: Candidates,
    /// Rules whose path has a rest segment here.
    rest: Candidates,
}

/// The rules of one path shape, each list sorted by bound (best first).
#[derive(Clone, Debug, Default)]
struct Candidates {
    /// Rules by each exact host they list: an exact host outranks every other host
    /// condition, so these are tried first and only for the request's host.
    by_host: FastMap<String, Vec<usize>>,
    /// Rules without hosts, or with a wildcard host.
    other: Vec<usize>,
}

impl Candidates {
    fn add(&mut self, i: usize, rule: &Rule) {
        let mut other = rule.hosts.is_empty();
        for h in &rule.hosts {
            match h {
                HostPattern::Exact(e) => self.by_host.entry(e.clone()).or_default().push(i),
                HostPattern::Wildcard(_) => other = true,
            }
        }
        if other {
            self.other.push(i);
        }
    }

    fn sort(&mut self, rules: &[Rule]) {
        let by_bound = |a: &usize, b: &usize| rules[*b].bound().cmp(&rules[*a].bound());
        self.other.sort_by(by_bound);
        for list in self.by_host.values_mut() {
            list.sort_by(by_bound);
        }
    }
}

/// A compiled, checked set of rules.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    options: RuleOptions,
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
    nodes: Vec<Node>,
}

impl RuleSet {
    /// Checks and compiles rules. `issuer_names` are the configured issuers' names (for
    /// `auth`); `reserved_headers` are names `set_headers` must not use. Returns every error,
    /// not only the first; errors carry spans but no lines (see
    /// [`RuleSet::build_with_source`]).
    pub fn build(
        options: RuleOptions,
        rules: &[RuleConfig],
        issuer_names: &[&str],
        reserved_headers: &[HeaderName],
    ) -> Result<RuleSet, Vec<RuleError>> {
        build::build(options, rules, issuer_names, reserved_headers, None)
    }

    /// [`RuleSet::build`], with the configuration text the rules were read from (after any
    /// `${VAR}` expansion: the text the spans point into), so errors and rules carry lines.
    pub fn build_with_source(
        source: &str,
        options: RuleOptions,
        rules: &[RuleConfig],
        issuer_names: &[&str],
        reserved_headers: &[HeaderName],
    ) -> Result<RuleSet, Vec<RuleError>> {
        build::build(options, rules, issuer_names, reserved_headers, Some(source))
    }

    /// The options.
    pub fn options(&self) -> &RuleOptions {
        &self.options
    }

    /// What a request no rule matches gets (meaningful only when rules exist).
    pub fn default_action(&self) -> DefaultAction {
        self.options.default
    }

    /// No rule at all (today's behaviour applies: every request needs a valid token).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rule with this id (Envoy `context_extensions` can name a rule directly).
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).and_then(|&i| self.rules.get(i))
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules from most to least specific (the order `find` prefers them in when several
    /// match), for `jwtd rules explain`; [`Rule::specificity`] describes each.
    pub fn rules_in_match_order(&self) -> Vec<&Rule> {
        let mut v: Vec<&Rule> = self.rules.iter().collect();
        v.sort_by(|a, b| cmp_order(a, b));
        v
    }

    /// The rule named `id` (e.g. by Envoy's `context_extensions`), if its path, host, method
    /// and header conditions all hold for this request; with its parameters. Matching skips
    /// the trie but normalises the path the same way.
    pub fn find_named<'r, 'p>(
        &'r self,
        id: &str,
        target: &Target<'p>,
    ) -> Result<Option<Matched<'r, 'p>>, PathError> {
        let Some(rule) = self.get(id) else {
            return Ok(None);
        };
        let path = normalise_with(
            target.path,
            self.options.encoded_slashes,
            self.options.trailing_slash,
            self.options.semicolons,
            self.options.double_encoding,
        )?;
        let method = upper(target.method);
        let host = normalise_host(target.host);
        if !rule.path.matches(&path)
            || rule.host_rank(host.as_deref()).is_none()
            || !rule.methods.matches(&method)
        {
            return Ok(None);
        }
        let params = rule.path.params(&path);
        if !rule.headers_hold(target.headers, &params) {
            return Ok(None);
        }
        Ok(Some(Matched { rule, params }))
    }

    /// The most specific rule whose conditions hold for this request; `Ok(None)` when none
    /// does (the default applies) or when there is no rule at all (the path is then not read).
    pub fn find<'r, 'p>(
        &'r self,
        target: &Target<'p>,
    ) -> Result<Option<Matched<'r, 'p>>, PathError> {
        self.find_with_stats(target).0
    }

    /// [`RuleSet::find`], counting the work done.
    #[inline]
    pub fn find_with_stats<'r, 'p>(
        &'r self,
        target: &Target<'p>,
    ) -> (Result<Option<Matched<'r, 'p>>, PathError>, FindStats) {
        let mut stats = FindStats::default();
        if self.rules.is_empty() {
            return (Ok(None), stats);
        }
        let path = match normalise_with(
            target.path,
            self.options.encoded_slashes,
            self.options.trailing_slash,
            self.options.semicolons,
            self.options.double_encoding,
        ) {
            Ok(p) => p,
            Err(e) => return (Err(e), stats),
        };
        let method = upper(target.method);
        let q = Query {
            path: &path,
            method: &method,
            raw_host: target.host,
            host: std::cell::OnceCell::new(),
            headers: target.headers,
        };
        let found = self.walk(0, 0, &q, &mut stats);
        let matched = found.and_then(|i| self.rules.get(i)).map(|rule| Matched {
            rule,
            params: rule.path.params(&path),
        });
        (Ok(matched), stats)
    }

    /// The best rule of one path shape whose conditions hold.
    fn pick_in(&self, c: &Candidates, q: &Query<'_, '_>, stats: &mut FindStats) -> Option<usize> {
        if c.by_host.is_empty() {
            return self.pick(&c.other, q, stats);
        }
        if let Some(list) = q.host().and_then(|h| c.by_host.get(h)) {
            if let Some(found) = self.pick(list, q, stats) {
                return Some(found);
            }
        }
        self.pick(&c.other, q, stats)
    }

    /// The best rule of a list (sorted by bound) whose conditions hold.
    fn pick(&self, list: &[usize], q: &Query<'_, '_>, stats: &mut FindStats) -> Option<usize> {
        let mut best: Option<(Rank, usize)> = None;
        for &i in list {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            if let Some((b, _)) = &best {
                if rule.bound() < *b {
                    break;
                }
            }
            stats.candidates += 1;
            let h = if rule.hosts.is_empty() {
                0
            } else {
                match rule.host_rank(q.host()) {
                    Some(h) => h,
                    None => continue,
                }
            };
            if !rule.methods.matches(q.method) {
                continue;
            }
            if !rule.when_headers.is_empty() {
                let params = rule.path.params(q.path);
                if !rule.headers_hold(q.headers, &params) {
                    continue;
                }
            }
            let rank = (
                h,
                rule.methods.rank(),
                rule.when_headers.len(),
                Reverse(rule.index),
            );
            if best.as_ref().map_or(true, |(b, _)| rank > *b) {
                best = Some((rank, i));
            }
        }
        best.map(|(_, i)| i)
    }

    fn walk(
        &self,
        node: usize,
        depth: usize,
        q: &Query<'_, '_>,
        stats: &mut FindStats,
    ) -> Option<usize> {
        let n = self.nodes.get(node)?;
        stats.nodes += 1;
        if let Some(seg) = q.path.segments.get(depth) {
            if let Some(&child) = n.literals.get(seg.as_ref()) {
                if let Some(found) = self.walk(child, depth + 1, q, stats) {
                    return Some(found);
                }
            }
            if let Some(child) = n.param {
                if let Some(found) = self.walk(child, depth + 1, q, stats) {
                    return Some(found);
                }
            }
        } else {
            let list = if q.path.trailing {
                &n.end_slash
            } else {
                &n.end
            };
            if let Some(found) = self.pick_in(list, q, stats) {
                return Some(found);
            }
        }
        self.pick_in(&n.rest, q, stats)
    }
}

/// The method uppercased, borrowed when it already is (the common case).
fn upper(method: &str) -> Cow<'_, str> {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(method.to_ascii_uppercase())
    } else {
        Cow::Borrowed(method)
    }
}

struct Query<'a, 'p> {
    path: &'a NormPath<'p>,
    method: &'a str,
    /// The request's host as received; normalised on first need (most candidates name no
    /// host, and then it is never read).
    raw_host: &'p str,
    host: std::cell::OnceCell<Option<Cow<'p, str>>>,
    headers: &'a HeaderMap,
}

impl Query<'_, '_> {
    /// The normalised host ([`normalise_host`]), computed once.
    fn host(&self) -> Option<&str> {
        self.host
            .get_or_init(|| normalise_host(self.raw_host))
            .as_deref()
    }
}

fn cmp_order(a: &Rule, b: &Rule) -> Ordering {
    let (ka, ra) = a.order_key();
    let (kb, rb) = b.order_key();
    // Higher segment ranks first; at equal ranks literals in text order.
    for (x, y) in ka.iter().zip(kb.iter()) {
        match y.0.cmp(&x.0).then_with(|| x.1.cmp(y.1)) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    kb.len().cmp(&ka.len()).then_with(|| ra.cmp(&rb))
}

/// Two header-condition lists that could both hold for one request.
fn headers_compatible(a: &[(HeaderName, Template)], b: &[(HeaderName, Template)]) -> bool {
    a.iter().all(|(n, t)| {
        b.iter().all(|(m, u)| {
            n != m
                || match (t.literal(), u.literal()) {
                    (Some(x), Some(y)) => x == y,
                    _ => true,
                }
        })
    })
}

/// The shape key for grouping rules by path shape.
fn shape_key(p: &PathPattern) -> (Vec<ShapeSeg<'_>>, bool) {
    p.shape()
}

/// Does every request path `b` matches also match `a`?
fn path_covers(a: &PathPattern, b: &PathPattern) -> bool {
    for (i, sa) in a.segments.iter().enumerate() {
        match (sa, b.segments.get(i)) {
            (Segment::Rest(_), _) => return true,
            (_, None) | (_, Some(Segment::Rest(_))) => return false,
            (Segment::Literal(x), Some(Segment::Literal(y))) => {
                if x != y {
                    return false;
                }
            }
            (Segment::Literal(_), Some(Segment::Param(_))) => return false,
            (Segment::Param(_), Some(_)) => {}
        }
    }
    b.segments.len() == a.segments.len() && a.trailing == b.trailing
}
