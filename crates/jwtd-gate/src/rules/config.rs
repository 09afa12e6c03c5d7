//! The `[rules]` and `[[rule]]` tables as they are written in `jwtd.toml`, before checking.
//!
//! These types only describe the file; [`super::RuleSet::build`] checks them and compiles them
//! into a [`super::RuleSet`]. They must be read with `toml::from_str` (directly or as part of a
//! larger struct) for the [`toml::Spanned`] fields to carry byte offsets into the text; see
//! [`super::RuleError`] for turning an offset into a line.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// What happens to a request no rule matches, when at least one rule exists.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Refuse it (the default).
    #[default]
    Deny,
    /// Let it through without looking at any token.
    Public,
    /// Require a valid token from any configured issuer (today's behaviour without rules).
    Authenticated,
}

/// What a `%2F` (an encoded `/`) inside a path segment means.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlashes {
    /// The request is refused ([`super::PathError::EncodedSlash`]); the default, because
    /// proxies and applications disagree on what `%2F` means (CWE-436).
    #[default]
    Reject,
    /// Decoded to `/` inside the segment (the segment is still one segment).
    Decode,
    /// Kept as the text `%2F` inside the segment; `%25` is kept as `%25` too, so the text
    /// `%2F` in a decoded segment always stands for an encoded slash, never for `%252F`.
    Keep,
}

/// Whether `/a/` and `/a` are the same path.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrailingSlash {
    /// `/a/` and `/a` are different paths (the default); a pattern ending in `/` matches only a
    /// path ending in `/`.
    #[default]
    Strict,
    /// A trailing `/` is ignored, on requests and on patterns.
    Ignore,
}

/// What a `;` in a request path (a path parameter, `/admin;x/secret`, also encoded as `%3B`)
/// means.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Semicolons {
    /// The request is refused ([`super::PathError::Semicolon`]); the default, because servlet
    /// containers and frameworks (Tomcat, Jetty, Spring) strip path parameters before routing:
    /// `/admin;x/secret` would be matched here as the literal segment `admin;x` (missing
    /// `/admin/**`, perhaps taken by a public fallback) while the application serves
    /// `/admin/secret` (CWE-436), and `/public/..;/admin` would be decided under `/public/**`.
    #[default]
    Reject,
    /// Matched as text: `;` is an ordinary character of its segment (`admin;x` is not `admin`).
    /// Safe only when no application behind jwtd strips path parameters.
    Allow,
}

/// What a double-encoded escape in a request path (`%252e`, `%253B`, `%252F`: a `%25` whose
/// decoded text is itself an escape) means.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DoubleEncoding {
    /// The request is refused ([`super::PathError::DoubleEncoded`]); the default. jwtd decodes
    /// a path once, but an upstream (or a framework, or a second proxy) that decodes twice reads
    /// `/public/%252e%252e/admin` as `/public/../admin` = `/admin` and `/admin%253Bx` as
    /// `/admin;x`, a path other than the one decided (CWE-174, CWE-436); IIS refuses such
    /// paths by default for the same reason.
    #[default]
    Reject,
    /// Decoded once, the rest kept as text (`%252e` is the segment text `%2e`). Safe only when
    /// nothing behind jwtd decodes a path twice.
    Allow,
}

/// The `[rules]` table: options for the whole rule set. Every field is optional.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleOptions {
    /// When rules exist and none matches (default [`DefaultAction::Deny`]).
    pub default: DefaultAction,
    /// `%2F` inside a segment (default [`EncodedSlashes::Reject`]).
    pub encoded_slashes: EncodedSlashes,
    /// Trailing-slash policy (default [`TrailingSlash::Strict`]).
    pub trailing_slash: TrailingSlash,
    /// `;` (or `%3B`) in a path (default [`Semicolons::Reject`]).
    pub semicolons: Semicolons,
    /// A `%25` whose decoded text is an escape (`%252e`) in a path (default
    /// [`DoubleEncoding::Reject`]).
    pub double_encoding: DoubleEncoding,
    /// The claim scopes are read from unless a rule names another (default `scope`): a
    /// space-delimited string, or an array of strings (e.g. `scp`).
    pub scope_claim: String,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            default: DefaultAction::Deny,
            encoded_slashes: EncodedSlashes::Reject,
            trailing_slash: TrailingSlash::Strict,
            semicolons: Semicolons::Reject,
            double_encoding: DoubleEncoding::Reject,
            scope_claim: "scope".to_owned(),
        }
    }
}

/// The token requirement of a rule, as written: `"public"`, an issuer name, or a table with
/// exactly one of `any = [..]`, `all = [..]`, `optional = <requirement>` (nestable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// `"public"` or an issuer name.
    Name(String),
    /// `{ any = [..] }`: one of these.
    Any(Vec<AuthConfig>),
    /// `{ all = [..] }`: each of these.
    All(Vec<AuthConfig>),
    /// `{ optional = .. }`: no token is fine; a token must satisfy the inner requirement.
    Optional(Box<AuthConfig>),
}

impl<'de> Deserialize<'de> for AuthConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AuthConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"public\", an issuer name, or a table with one of `any`, `all`, `optional`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AuthConfig, E> {
                Ok(AuthConfig::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AuthConfig, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "an empty table: write one of `any = [..]`, `all = [..]`, `optional = ..`",
                    ));
                };
                let out = match key.as_str() {
                    "any" => AuthConfig::Any(map.next_value()?),
                    "all" => AuthConfig::All(map.next_value()?),
                    "optional" => AuthConfig::Optional(Box::new(map.next_value()?)),
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown key `{other}`: write one of `any`, `all`, `optional`"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a requirement table holds exactly one of `any`, `all`, `optional`; nest tables to combine them",
                    ));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// `scopes = { all = [..] }` or `scopes = { any = [..] }`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScopesConfig {
    /// Every one of these scopes.
    #[serde(default)]
    pub all: Option<Vec<String>>,
    /// At least one of these scopes.
    #[serde(default)]
    pub any: Option<Vec<String>>,
}

/// One claim predicate: a claim `path` and exactly one operator.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimConfig {
    /// The claim: a whole name, a dotted path, or a JSON pointer (as in jwtd-core).
    pub path: String,
    /// Equals this JSON value; a string holding `{path.NAME}` or `{header.NAME}` is a binding
    /// template, compared as text.
    #[serde(default)]
    pub equals: Option<Value>,
    /// Equals one of these values.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// An array claim contains this value, or a space-separated string claim holds it as a word.
    #[serde(default)]
    pub contains: Option<Value>,
    /// [`ClaimConfig::contains`] for one of these values.
    #[serde(default)]
    pub contains_any: Option<Vec<Value>>,
    /// The claim is present (`true`) or absent (`false`).
    #[serde(default)]
    pub exists: Option<bool>,
    /// A numeric claim greater than this.
    #[serde(default)]
    pub gt: Option<f64>,
    /// A numeric claim greater than or equal to this.
    #[serde(default)]
    pub ge: Option<f64>,
    /// A numeric claim less than this.
    #[serde(default)]
    pub lt: Option<f64>,
    /// A numeric claim less than or equal to this.
    #[serde(default)]
    pub le: Option<f64>,
}

/// `cors_preflight` on a rule.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CorsPreflight {
    /// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is judged like
    /// any other request (the default).
    #[default]
    Authenticate,
    /// A preflight matching this rule passes without a token.
    Bypass,
}

/// One `[[rule]]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id, `[A-Za-z0-9._-]{1,64}`: in logs, metrics, `jwtd rules explain`, and for
    /// Envoy's `context_extensions` to name the rule.
    pub id: Spanned<String>,
    /// Hosts: exact (`api.example.com`) or a wildcard (`*.example.com`, one or more labels);
    /// case-insensitive; the request's port is ignored. Absent: any host.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// The path pattern (see the module docs).
    pub path: Spanned<String>,
    /// Methods (default all): tokens, `"ALL"`, or `"!TRACE"`-style exclusions.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Header conditions: each header present once with exactly this value (a template over
    /// `{path.NAME}` and `{header.NAME}` is allowed).
    #[serde(default)]
    pub when_headers: BTreeMap<String, String>,
    /// The token requirement (required).
    pub auth: Spanned<AuthConfig>,
    /// Accepted audiences for this rule, overriding the issuer's (any-of).
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// Required scopes.
    #[serde(default)]
    pub scopes: Option<ScopesConfig>,
    /// The claim scopes are read from, overriding `[rules] scope_claim`.
    #[serde(default)]
    pub scope_claim: Option<String>,
    /// Claim predicates, all of which must hold.
    #[serde(default)]
    pub claims: Vec<ClaimConfig>,
    /// CORS preflight handling.
    #[serde(default)]
    pub cors_preflight: CorsPreflight,
    /// Headers to set on an allowed request: name → template (`{claim.PATH}`, `{path.NAME}`).
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    /// The protected resource this rule guards: the `uri` of a `[[resource]]` table. Its
    /// refusals then carry the resource's `resource_metadata` URL and the rule's scopes, and
    /// its tokens must name the resource URI in `aud` unless the rule sets `audiences`.
    #[serde(default)]
    pub resource: Option<Spanned<String>>,
    /// Certificate-bound tokens (RFC 8705) on this route, instead of the issuer's
    /// `[issuer.mtls] mode`: `enforce-cnf`, `require` or `off`.
    #[serde(default)]
    pub mtls: Option<crate::mtls::Mode>,
    /// DPoP for this rule, overriding its issuers' `[issuer.dpop] mode`: `"require"`,
    /// `"enforce-cnf"` or `"off"` (absent: the issuer's).
    #[serde(default)]
    pub dpop: Option<crate::config::DpopMode>,
}
