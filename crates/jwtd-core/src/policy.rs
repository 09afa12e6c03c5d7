//! What a verified token must also satisfy: issuer, audience, times, type and claim checks.
//!
//! [`Validation`] has no "accept anything" default: the allowed algorithms must be named, `exp`
//! is required, and a token carrying `aud` is refused unless an audience is configured (RFC 7519
//! section 4.1.3) or the caller explicitly opts out with [`Validation::any_audience`].

use crate::alg::Algorithm;
use crate::error::{Error, Reason};
use crate::json::{self, Members};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Default clock-skew allowance, in seconds.
pub const DEFAULT_LEEWAY: u64 = 30;
/// Default maximum token length, in bytes, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
/// Default maximum JSON nesting in header and claims.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 16;
/// Largest numeric date accepted (9999-12-31T23:59:59Z).
pub const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// How configured audiences are matched against the token's `aud`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AudienceMode {
    /// The token must name at least one configured audience (the usual rule).
    #[default]
    Any,
    /// The token must name every configured audience.
    All,
}

/// A check on one claim value. The claim is named by a path: a whole claim name first (so
/// namespaced names such as `https://example.com/claims/user/is_verified` work as they are),
/// else a dotted path into nested objects (`realm_access.roles`), or an RFC 6901 JSON pointer when
/// it starts with `/`.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimCheck {
    /// The claim equals this JSON value exactly (e.g. `client_id` equals the API key).
    Equals {
        /// Claim path.
        claim: String,
        /// Expected value.
        value: Value,
    },
    /// The claim equals one of these values.
    OneOf {
        /// Claim path.
        claim: String,
        /// Accepted values.
        values: Vec<Value>,
    },
    /// The claim, an array of strings or a space-separated string (`scope`), contains this item.
    Contains {
        /// Claim path.
        claim: String,
        /// Required item.
        item: String,
    },
}

impl ClaimCheck {
    /// The claim path this check reads.
    pub fn claim(&self) -> &str {
        match self {
            ClaimCheck::Equals { claim, .. }
            | ClaimCheck::OneOf { claim, .. }
            | ClaimCheck::Contains { claim, .. } => claim,
        }
    }

    fn check(&self, found: Option<&Value>) -> Result<(), Error> {
        let name = self.claim();
        let ok = match (self, found) {
            (_, None) => false,
            (ClaimCheck::Equals { value, .. }, Some(v)) => v == value,
            (ClaimCheck::OneOf { values, .. }, Some(v)) => values.contains(v),
            (ClaimCheck::Contains { item, .. }, Some(Value::Array(items))) => {
                items.iter().any(|v| v.as_str() == Some(item.as_str()))
            }
            (ClaimCheck::Contains { item, .. }, Some(Value::String(s))) => {
                s.split_ascii_whitespace().any(|w| w == item)
            }
            (ClaimCheck::Contains { .. }, Some(_)) => false,
        };
        if ok {
            return Ok(());
        }
        let expected = match self {
            ClaimCheck::Equals { value, .. } => typed(value),
            ClaimCheck::OneOf { values, .. } => format!(
                "one of [{}]",
                values.iter().map(typed).collect::<Vec<_>>().join(", ")
            ),
            ClaimCheck::Contains { item, .. } => format!("a list containing {item:?}"),
        };
        let found = found.map_or_else(|| "nothing (claim absent)".to_owned(), typed);
        Err(Error::new(
            Reason::ClaimMismatch,
            format!("claim {name:?}: expected {expected}, found {found}"),
        ))
    }
}

/// A value with its JSON type, as a claim mismatch shows it: `string "12345"`, `number 12345`
/// (so a number compared with a string is obvious).
fn typed(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {}", shown(v))
}

/// A value as shown in an error message: JSON, cut short.
pub(crate) fn shown(v: &Value) -> String {
    shown_raw(&v.to_string())
}

/// Raw JSON text as shown in an error message, cut short.
pub(crate) fn shown_raw(raw: &str) -> String {
    let mut s = raw.to_owned();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Finds a claim by path (see [`ClaimCheck`] for the path rules).
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(pointer) = path.strip_prefix('/') {
        let mut cur: Option<&Value> = None;
        for (i, raw) in pointer.split('/').enumerate() {
            let part = raw.replace("~1", "/").replace("~0", "~");
            cur = match (i, cur) {
                (0, _) => claims.get(&part),
                (_, Some(Value::Object(m))) => m.get(&part),
                (_, Some(Value::Array(a))) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            cur?;
        }
        return cur;
    }
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(Value::Object(inner)) = claims.get(&path[..i]) {
            if let Some(v) = lookup(inner, &path[i + 1..]) {
                return Some(v);
            }
        }
    }
    None
}

/// Read access to a claims set, one top-level member at a time, as raw JSON text. Implemented
/// for a parsed [`Map`] and for the verify path's zero-copy member list.
pub(crate) trait ClaimSet {
    /// The raw JSON of member `name`.
    fn raw(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl ClaimSet for Map<String, Value> {
    fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Owned(v.to_string()))
    }
}

impl ClaimSet for Members<'_> {
    fn raw(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|r| Cow::Borrowed(r.get()))
    }
}

/// [`lookup`] over a [`ClaimSet`]: parses only the top-level member the path starts in.
pub(crate) fn lookup_set(set: &dyn ClaimSet, path: &str) -> Option<Value> {
    let within = |name: &str| -> Option<Value> {
        let raw = set.raw(name)?;
        let mut one = Map::new();
        one.insert(name.to_owned(), json::value(&raw));
        lookup(&one, path).cloned()
    };
    if let Some(pointer) = path.strip_prefix('/') {
        let first = pointer.split('/').next().unwrap_or_default();
        return within(&first.replace("~1", "/").replace("~0", "~"));
    }
    if let Some(raw) = set.raw(path) {
        return Some(json::value(&raw));
    }
    path.match_indices('.')
        .find_map(|(i, _)| within(&path[..i]))
}

/// A token's time claims (seconds since the epoch), kept to re-check them at a later time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Times {
    /// `exp`.
    pub exp: Option<f64>,
    /// `nbf`.
    pub nbf: Option<f64>,
    /// `iat`.
    pub iat: Option<f64>,
    /// `auth_time`.
    pub auth_time: Option<f64>,
}

/// The validation policy applied after the signature verifies.
#[derive(Clone, Debug)]
pub struct Validation {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) audience_mode: AudienceMode,
    pub(crate) any_audience: bool,
    pub(crate) require_exp: bool,
    pub(crate) leeway: u64,
    pub(crate) max_age: Option<u64>,
    pub(crate) max_auth_age: Option<u64>,
    pub(crate) typ: Option<String>,
    pub(crate) required: Vec<String>,
    pub(crate) checks: Vec<ClaimCheck>,
    pub(crate) max_token_len: usize,
    pub(crate) max_json_depth: usize,
}

impl Validation {
    /// A policy allowing exactly `algorithms`, with strict defaults: `exp` required, 30 s leeway,
    /// 16 KiB token limit, JSON depth 16, no issuer or audience configured yet.
    pub fn new(algorithms: &[Algorithm]) -> Self {
        Validation {
            algorithms: algorithms.to_vec(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            audience_mode: AudienceMode::Any,
            any_audience: false,
            require_exp: true,
            leeway: DEFAULT_LEEWAY,
            max_age: None,
            max_auth_age: None,
            typ: None,
            required: Vec::new(),
            checks: Vec::new(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }

    /// Accepts tokens whose `iss` is `issuer` (call again to accept several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens addressed to `audience` (call again for several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Whether one configured audience suffices (default) or all are required.
    pub fn audience_mode(mut self, mode: AudienceMode) -> Self {
        self.audience_mode = mode;
        self
    }

    /// Skips the audience check entirely. Only for tools and tests: a service should always know
    /// who it is.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Whether `exp` must be present (default true).
    pub fn require_exp(mut self, required: bool) -> Self {
        self.require_exp = required;
        self
    }

    /// Clock-skew allowance in seconds, applied once to each time comparison.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Maximum token age from `iat`, in seconds (`iat` becomes required).
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.max_age = Some(seconds);
        self
    }

    /// Maximum age of the authentication from `auth_time` (OIDC), in seconds (`auth_time`
    /// becomes required).
    pub fn max_auth_age(mut self, seconds: u64) -> Self {
        self.max_auth_age = Some(seconds);
        self
    }

    /// Required header `typ`, compared case-insensitively with any `application/` prefix
    /// ignored (RFC 7515 section 4.1.9), e.g. `at+jwt` for RFC 9068 access tokens.
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// A claim (path) that must be present.
    pub fn require(mut self, claim: impl Into<String>) -> Self {
        self.required.push(claim.into());
        self
    }

    /// Adds a claim check.
    pub fn check(mut self, check: ClaimCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// Maximum token length in bytes, checked before any decoding.
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// Maximum JSON nesting depth for header and claims.
    pub fn max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth;
        self
    }

    /// The allowed algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The accepted issuers.
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// How the audiences are matched.
    pub fn audience_mode_in_force(&self) -> AudienceMode {
        self.audience_mode
    }

    /// True when any audience is accepted.
    pub fn accepts_any_audience(&self) -> bool {
        self.any_audience
    }

    /// True when `exp` is required.
    pub fn requires_exp(&self) -> bool {
        self.require_exp
    }

    /// The clock-skew allowance, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The maximum token age from `iat`, in seconds.
    pub fn max_age_secs(&self) -> Option<u64> {
        self.max_age
    }

    /// The maximum authentication age from `auth_time`, in seconds.
    pub fn max_auth_age_secs(&self) -> Option<u64> {
        self.max_auth_age
    }

    /// The required header `typ`.
    pub fn required_typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The claims that must be present.
    pub fn required_claims(&self) -> &[String] {
        &self.required
    }

    /// The claim value checks.
    pub fn claim_checks(&self) -> &[ClaimCheck] {
        &self.checks
    }

    /// Applies every claim rule to a verified claims set, at time `now` (seconds since the
    /// Unix epoch).
    pub fn validate_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), Error> {
        self.validate(claims, now).map(|_| ())
    }

    pub(crate) fn validate(&self, claims: &dyn ClaimSet, now: u64) -> Result<Times, Error> {
        let times = Times {
            exp: date(claims, "exp")?,
            nbf: date(claims, "nbf")?,
            iat: date(claims, "iat")?,
            auth_time: date(claims, "auth_time")?,
        };
        self.check_times(&times, now)?;
        if !self.issuers.is_empty() {
            let raw = claims
                .raw("iss")
                .ok_or_else(|| Error::new(Reason::MissingClaim, "claim \"iss\" is required"))?;
            let ok = json::as_str(&raw).is_some_and(|iss| self.issuers.iter().any(|i| *i == iss));
            if !ok {
                return Err(Error::new(
                    Reason::WrongIssuer,
                    format!(
                        "expected issuer {}, found {}",
                        list(&self.issuers),
                        shown_raw(&raw)
                    ),
                ));
            }
        }
        self.check_audience(claims)?;
        for name in &self.required {
            if lookup_set(claims, name).is_none() {
                return Err(Error::new(
                    Reason::MissingClaim,
                    format!("claim {name:?} is required"),
                ));
            }
        }
        for check in &self.checks {
            check.check(lookup_set(claims, check.claim()).as_ref())?;
        }
        Ok(times)
    }

    /// Applies every time rule (`exp`, `nbf`, `iat`, max age, max auth age) at `now`. Used on
    /// each verification and again on every hit of the verified-token cache.
    pub fn check_times(&self, times: &Times, now: u64) -> Result<(), Error> {
        let now = now as f64;
        let leeway = self.leeway as f64;
        let (exp, nbf, iat, auth_time) = (times.exp, times.nbf, times.iat, times.auth_time);
        match exp {
            Some(exp) if now >= exp + leeway => {
                return Err(Error::new(
                    Reason::Expired,
                    format!("token expired at {exp} (now {now}, leeway {leeway}s)"),
                ))
            }
            None if self.require_exp => {
                return Err(Error::new(
                    Reason::MissingClaim,
                    "claim \"exp\" is required",
                ))
            }
            _ => {}
        }
        if let Some(nbf) = nbf {
            if now + leeway < nbf {
                return Err(Error::new(
                    Reason::NotYetValid,
                    format!("token not valid before {nbf} (now {now}, leeway {leeway}s)"),
                ));
            }
        }
        if let Some(iat) = iat {
            if iat > now + leeway {
                return Err(Error::new(
                    Reason::IssuedInFuture,
                    format!("token issued at {iat}, in the future (now {now}, leeway {leeway}s)"),
                ));
            }
        }
        if let Some(max_age) = self.max_age {
            let iat = iat.ok_or_else(|| {
                Error::new(
                    Reason::MissingClaim,
                    "claim \"iat\" is required (max age is set)",
                )
            })?;
            if now - iat > max_age as f64 + leeway {
                return Err(Error::new(
                    Reason::TooOld,
                    format!("token issued at {iat} is older than {max_age}s"),
                ));
            }
        }
        if let Some(max_auth_age) = self.max_auth_age {
            let at = auth_time.ok_or_else(|| {
                Error::new(
                    Reason::MissingClaim,
                    "claim \"auth_time\" is required (max auth age is set)",
                )
            })?;
            if now - at > max_auth_age as f64 + leeway {
                return Err(Error::new(
                    Reason::TooOld,
                    format!(
                        "authentication at {at} is older than {max_auth_age}s; re-authenticate"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_audience(&self, claims: &dyn ClaimSet) -> Result<(), Error> {
        let raw = claims.raw("aud");
        let bad = || Error::malformed("claim \"aud\" must be a string or an array of strings");
        let found: Vec<Cow<'_, str>> = match raw.as_deref() {
            None => Vec::new(),
            Some(r) if r.starts_with('[') => json::as_str_list(r).ok_or_else(bad)?,
            Some(r) => vec![json::as_str(r).ok_or_else(bad)?],
        };
        if self.any_audience {
            return Ok(());
        }
        let shown_aud = || shown_raw(raw.as_deref().unwrap_or_default());
        if self.audiences.is_empty() {
            if raw.is_some() {
                return Err(Error::new(
                    Reason::WrongAudience,
                    format!(
                        "token is addressed to {}, but no audience is configured to accept it",
                        shown_aud()
                    ),
                ));
            }
            return Ok(());
        }
        if raw.is_none() {
            return Err(Error::new(
                Reason::MissingClaim,
                "claim \"aud\" is required",
            ));
        }
        let has = |a: &String| found.iter().any(|f| f == a);
        let ok = match self.audience_mode {
            AudienceMode::Any => self.audiences.iter().any(has),
            AudienceMode::All => self.audiences.iter().all(has),
        };
        if ok {
            return Ok(());
        }
        let want = match self.audience_mode {
            _ if self.audiences.len() == 1 => list(&self.audiences),
            AudienceMode::Any => format!("one of {}", list(&self.audiences)),
            AudienceMode::All => format!("all of {}", list(&self.audiences)),
        };
        Err(Error::new(
            Reason::WrongAudience,
            format!("expected audience {want}, found {}", shown_aud()),
        ))
    }

    /// Checks the header `typ` against the configured one.
    pub(crate) fn check_typ(&self, typ: Option<&str>) -> Result<(), Error> {
        let Some(want) = &self.typ else {
            return Ok(());
        };
        let norm = |s: &str| {
            let lower = s.to_ascii_lowercase();
            lower
                .strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(lower)
        };
        match typ {
            Some(t) if norm(t) == norm(want) => Ok(()),
            Some(t) => Err(Error::new(
                Reason::WrongType,
                format!("expected typ {want:?}, found {t:?}"),
            )),
            None => Err(Error::new(
                Reason::WrongType,
                format!("expected typ {want:?}, token has none"),
            )),
        }
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    if quoted.len() == 1 {
        quoted.into_iter().next().expect("one")
    } else {
        format!("[{}]", quoted.join(", "))
    }
}

/// Reads a NumericDate claim: absent, or a finite JSON number in `[0, 9999-12-31]`.
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Error> {
    date(claims, name)
}

pub(crate) fn date(claims: &dyn ClaimSet, name: &str) -> Result<Option<f64>, Error> {
    let Some(raw) = claims.raw(name) else {
        return Ok(None);
    };
    // Fast path: the usual plain integer of seconds.
    let plain = raw.len() <= 15 && !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    let value = if plain {
        raw.parse::<u64>().ok().map(|v| v as f64)
    } else if matches!(raw.as_bytes().first(), Some(b'-' | b'0'..=b'9')) {
        serde_json::from_str::<serde_json::Number>(&raw)
            .ok()
            .and_then(|n| n.as_f64())
    } else {
        None
    };
    match value {
        Some(v) if v.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&v) => Ok(Some(v)),
        Some(_) => Err(Error::malformed(format!(
            "claim {name:?} is not a date in range: {}",
            shown_raw(&raw)
        ))),
        None => Err(Error::malformed(format!(
            "claim {name:?} must be a number of seconds, found {}",
            shown_raw(&raw)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn lookup_paths() {
        let c = obj(json!({
            "https://example.com/claims/user/is_verified": true,
            "realm_access": {"roles": ["admin"]},
            "a.b": {"c": 1},
            "x": {"y/z": 2}
        }));
        assert_eq!(
            lookup(&c, "https://example.com/claims/user/is_verified"),
            Some(&json!(true))
        );
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["admin"])));
        assert_eq!(lookup(&c, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(&c, "/x/y~1z"), Some(&json!(2)));
        assert_eq!(lookup(&c, "/realm_access/roles/0"), Some(&json!("admin")));
        assert_eq!(lookup(&c, "realm_access.nope"), None);
    }

    #[test]
    fn leeway_applied_once() {
        let v = Validation::new(&[Algorithm::HS256]).leeway(10);
        let c = obj(json!({"exp": 100}));
        assert!(v.validate_claims(&c, 109).is_ok());
        assert_eq!(
            v.validate_claims(&c, 110).unwrap_err().reason(),
            Reason::Expired
        );
    }
}
