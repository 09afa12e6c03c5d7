//! Claims, scopes, claim predicates and templates.

use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};
use std::fmt;

/// The longest template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 1024;
/// The most placeholders in one template.
pub const MAX_PLACEHOLDERS: usize = 16;
/// The most scopes one rule may list.
pub const MAX_SCOPES: usize = 64;
/// The most claim predicates one rule may list.
pub const MAX_CLAIM_PREDICATES: usize = 32;
/// The most values in a `one_of` or `contains_any` list.
pub const MAX_VALUES: usize = 64;

/// Read access to a token's claims by path: a whole claim name, a dotted path into nested
/// objects, or a JSON pointer (the paths of [`jwtd_core::ClaimCheck`]).
pub trait ClaimSource {
    /// The claim at `path`, if present.
    fn claim(&self, path: &str) -> Option<Value>;
}

impl ClaimSource for Map<String, Value> {
    fn claim(&self, path: &str) -> Option<Value> {
        jwtd_core::lookup(self, path).cloned()
    }
}

impl ClaimSource for jwtd_core::Verified {
    fn claim(&self, path: &str) -> Option<Value> {
        jwtd_core::Verified::claim(self, path)
    }
}

/// No claims at all (no token): every claim is absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClaims;

impl ClaimSource for NoClaims {
    fn claim(&self, _path: &str) -> Option<Value> {
        None
    }
}

impl<T: ClaimSource + ?Sized> ClaimSource for &T {
    fn claim(&self, path: &str) -> Option<Value> {
        (**self).claim(path)
    }
}

/// The request attributes a binding or template may read: the matched rule's path parameters
/// and the request headers.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// Path parameters, decoded (as in [`super::Matched::params`]).
    pub params: &'a [(&'a str, std::borrow::Cow<'a, str>)],
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl Binding<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// A header's value when it is present exactly once and is visible ASCII; a header sent
    /// twice binds to nothing (which value would count is exactly what an attacker chooses).
    fn header(&self, name: &HeaderName) -> Option<&str> {
        let mut all = self.headers.get_all(name).iter();
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        first.to_str().ok()
    }
}

/// Text as a claim value renders: a string as itself, a number or boolean as JSON text;
/// anything else (null, arrays, objects) renders as nothing.
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// `{claim.PATH}`.
    Claim(String),
    /// `{path.NAME}`.
    Param(String),
    /// `{header.NAME}`.
    Header(HeaderName),
}

/// Which placeholders a template may hold where it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Allowed {
    pub claim: bool,
    pub param: bool,
    pub header: bool,
}

/// A text template: literal text with `{claim.PATH}`, `{path.NAME}` and `{header.NAME}`
/// placeholders; `{{` and `}}` stand for `{` and `}`.
///
/// Where each kind is allowed: `set_headers` takes `{claim.*}` and `{path.*}` (not
/// `{header.*}`: copying a client-controlled header into an identity header would let the
/// client forge it); `when_headers` and `equals` bindings take `{path.*}` and `{header.*}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; the error is a configuration-error message.
    pub(crate) fn parse(s: &str, allowed: Allowed) -> Result<Template, String> {
        if s.len() > MAX_TEMPLATE_LEN {
            return Err(format!("template longer than {MAX_TEMPLATE_LEN} bytes"));
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(format!("template {s:?}: a lone `}}` (write `}}}}`)")),
                '{' => {
                    let body_start = i + 1;
                    let Some(len) = s[body_start..].find('}') else {
                        return Err(format!("template {s:?}: `{{` without `}}`"));
                    };
                    let body = &s[body_start..body_start + len];
                    // Skip the body's characters.
                    while let Some(&(j, _)) = chars.peek() {
                        if j > body_start + len {
                            break;
                        }
                        chars.next();
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Self::placeholder(s, body, allowed)?);
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let n = pieces
            .iter()
            .filter(|p| !matches!(p, Piece::Text(_)))
            .count();
        if n > MAX_PLACEHOLDERS {
            return Err(format!(
                "template {s:?}: more than {MAX_PLACEHOLDERS} placeholders"
            ));
        }
        Ok(Template {
            source: s.to_owned(),
            pieces,
        })
    }

    fn placeholder(s: &str, body: &str, allowed: Allowed) -> Result<Piece, String> {
        let (kind, name) = body.split_once('.').unwrap_or((body, ""));
        if name.is_empty() || body.contains('{') {
            return Err(format!(
                "template {s:?}: placeholder {{{body}}} is not {{claim.PATH}}, {{path.NAME}} or {{header.NAME}}"
            ));
        }
        let not_here = |what: &str| {
            Err(format!(
                "template {s:?}: {{{body}}}: {what} placeholders are not allowed here"
            ))
        };
        match kind {
            "claim" if allowed.claim => Ok(Piece::Claim(name.to_owned())),
            "claim" => not_here("claim"),
            "path" if allowed.param => Ok(Piece::Param(name.to_owned())),
            "path" => not_here("path"),
            "header" if allowed.header => HeaderName::from_bytes(name.as_bytes())
                .map(Piece::Header)
                .map_err(|_| format!("template {s:?}: {name:?} is not a header name")),
            "header" => not_here("header (a client-controlled value)"),
            _ => Err(format!(
                "template {s:?}: placeholder {{{body}}} is not {{claim.PATH}}, {{path.NAME}} or {{header.NAME}}"
            )),
        }
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The pieces.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Is it plain text (no placeholder)?
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The path parameters it names.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// Does it read claims?
    pub fn reads_claims(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Claim(_)))
    }

    /// Renders it. `None` when a referenced value is absent: a missing claim, a claim that is
    /// not a string, number or boolean (see [`claim_text`]), a parameter the match did not
    /// bind, or a header absent, repeated or not visible ASCII.
    pub fn render(&self, claims: &impl ClaimSource, binding: &Binding<'_>) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Claim(path) => out.push_str(&claim_text(&claims.claim(path)?)?),
                Piece::Param(n) => out.push_str(binding.param(n)?),
                Piece::Header(h) => out.push_str(binding.header(h)?),
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Any-of or all-of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeMode {
    /// Every listed scope.
    All,
    /// At least one listed scope.
    Any,
}

/// A rule's scope requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeCheck {
    /// The claim scopes are read from (`scope`, `scp`, ...).
    pub claim: String,
    /// Any-of or all-of.
    pub mode: ScopeMode,
    /// The scopes.
    pub scopes: Vec<String>,
}

/// Is this an RFC 6749 `scope-token` (visible ASCII but space, `"` and `\`)?
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

impl ScopeCheck {
    /// The token's scopes: a space-delimited string, or the strings of an array (other items
    /// ignored); anything else holds no scope.
    pub fn granted(&self, claims: &impl ClaimSource) -> Vec<String> {
        match claims.claim(&self.claim) {
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the token's scopes. The error lists the scopes to ask for (for the RFC 6750
    /// `scope` parameter): with all-of, the missing ones; with any-of, every listed scope.
    pub fn check(&self, claims: &impl ClaimSource) -> Result<(), Vec<String>> {
        let granted = self.granted(claims);
        let has = |s: &String| granted.iter().any(|g| g == s);
        match self.mode {
            ScopeMode::All => {
                let missing: Vec<String> =
                    self.scopes.iter().filter(|s| !has(s)).cloned().collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing)
                }
            }
            ScopeMode::Any => {
                if self.scopes.iter().any(has) {
                    Ok(())
                } else {
                    Err(self.scopes.clone())
                }
            }
        }
    }
}

impl fmt::Display for ScopeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            ScopeMode::All => "all of",
            ScopeMode::Any => "any of",
        };
        write!(f, "{} holds {mode} [{}]", self.claim, self.scopes.join(" "))
    }
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// What a claim predicate asks of its claim.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOp {
    /// Equal to this JSON value (numbers compare by value: `3` equals `3.0`).
    Equals(Value),
    /// The claim, as text ([`claim_text`]), equals the rendered binding.
    EqualsBinding(Template),
    /// Equal to one of these.
    OneOf(Vec<Value>),
    /// An array containing this value, or a space-separated string (such as `scope`) one of
    /// whose words is this string, or equal to it: the same test as `[issuer.contains]`.
    Contains(Value),
    /// [`ClaimOp::Contains`] for one of these values.
    ContainsAny(Vec<Value>),
    /// Present (`true`) or absent (`false`).
    Exists(bool),
    /// A JSON number compared with this one.
    Compare(Compare, f64),
}

/// A predicate over one claim.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimPredicate {
    /// The claim path.
    pub path: String,
    /// The operator.
    pub op: ClaimOp,
}

/// JSON equality with numbers compared by value.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn contains(found: &Value, item: &Value) -> bool {
    match found {
        Value::Array(items) => items.iter().any(|v| json_eq(v, item)),
        Value::String(s) => item
            .as_str()
            .is_some_and(|i| s == i || s.split_ascii_whitespace().any(|w| w == i)),
        _ => false,
    }
}

impl ClaimPredicate {
    /// Does the predicate hold? A missing claim fails every operator but `exists = false`;
    /// nothing here is an error.
    pub fn check(&self, claims: &impl ClaimSource, binding: &Binding<'_>) -> bool {
        let found = claims.claim(&self.path);
        match (&self.op, found) {
            (ClaimOp::Exists(want), found) => found.is_some() == *want,
            (_, None) => false,
            (ClaimOp::Equals(v), Some(f)) => json_eq(&f, v),
            (ClaimOp::EqualsBinding(t), Some(f)) => {
                match (claim_text(&f), t.render(&crate::rules::NoClaims, binding)) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                }
            }
            (ClaimOp::OneOf(vs), Some(f)) => vs.iter().any(|v| json_eq(&f, v)),
            (ClaimOp::Contains(v), Some(f)) => contains(&f, v),
            (ClaimOp::ContainsAny(vs), Some(f)) => vs.iter().any(|v| contains(&f, v)),
            (ClaimOp::Compare(op, n), Some(Value::Number(f))) => {
                let Some(x) = f.as_f64() else { return false };
                match op {
                    Compare::Gt => x > *n,
                    Compare::Ge => x >= *n,
                    Compare::Lt => x < *n,
                    Compare::Le => x <= *n,
                }
            }
            (ClaimOp::Compare(..), Some(_)) => false,
        }
    }
}

fn list(vs: &[Value]) -> String {
    vs.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ClaimPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.path;
        match &self.op {
            ClaimOp::Equals(v) => write!(f, "{p} equals {v}"),
            ClaimOp::EqualsBinding(t) => {
                write!(f, "{p} equals {:?} (from the request)", t.source())
            }
            ClaimOp::OneOf(vs) => write!(f, "{p} is one of [{}]", list(vs)),
            ClaimOp::Contains(v) => write!(f, "{p} contains {v}"),
            ClaimOp::ContainsAny(vs) => write!(f, "{p} contains one of [{}]", list(vs)),
            ClaimOp::Exists(true) => write!(f, "{p} is present"),
            ClaimOp::Exists(false) => write!(f, "{p} is absent"),
            ClaimOp::Compare(op, n) => {
                let op = match op {
                    Compare::Gt => ">",
                    Compare::Ge => ">=",
                    Compare::Lt => "<",
                    Compare::Le => "<=",
                };
                write!(f, "{p} {op} {n}")
            }
        }
    }
}
