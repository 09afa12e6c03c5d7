//! Token requirements: which issuers' tokens a rule takes, and whether it takes none.

use super::config::AuthConfig;
use std::collections::BTreeSet;
use std::fmt;

/// The deepest nesting of `any` / `all` / `optional`.
pub const MAX_REQUIREMENT_DEPTH: usize = 8;
/// The most entries in one `any` or `all` list.
pub const MAX_REQUIREMENT_ITEMS: usize = 32;

/// A rule's token requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// No token is looked at (`auth = "public"`). Allowed only alone, never inside a tree.
    Public,
    /// A token verified by this issuer.
    Issuer(String),
    /// At least one of these.
    Any(Vec<Requirement>),
    /// Each of these (for one token: so at most one issuer among its leaves).
    All(Vec<Requirement>),
    /// No token is fine; a token must satisfy the inner requirement.
    Optional(Box<Requirement>),
}

/// The token as the requirement sees it. An invalid token, or one whose `iss` no configured
/// issuer takes, never gets here: the engine refuses it before (an unknown issuer is never
/// "missing", Envoy's bug in envoyproxy/envoy#15194).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState<'a> {
    /// The request carries no token.
    Absent,
    /// A token verified by this issuer (by name).
    Verified {
        /// The issuer's name.
        issuer: &'a str,
    },
}

/// Why a requirement is not met (both answer 401 `invalid_token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmet {
    /// A token is needed and there is none.
    MissingToken,
    /// The token's issuer is not one this rule takes.
    WrongIssuer,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unmet::MissingToken => "this route needs a token",
            Unmet::WrongIssuer => "this route does not take tokens from this issuer",
        })
    }
}

impl Requirement {
    /// Judges the token.
    pub fn evaluate(&self, token: TokenState<'_>) -> Result<(), Unmet> {
        match (self, token) {
            (Requirement::Public, _) => Ok(()),
            (Requirement::Optional(_), TokenState::Absent) => Ok(()),
            (Requirement::Optional(r), t) => r.evaluate(t),
            (Requirement::Issuer(_), TokenState::Absent) => Err(Unmet::MissingToken),
            (Requirement::Issuer(n), TokenState::Verified { issuer }) => {
                if n == issuer {
                    Ok(())
                } else {
                    Err(Unmet::WrongIssuer)
                }
            }
            (Requirement::Any(rs), t) => {
                let mut err = None;
                for r in rs {
                    match r.evaluate(t) {
                        Ok(()) => return Ok(()),
                        Err(e) => err = err.or(Some(e)),
                    }
                }
                Err(match t {
                    TokenState::Absent => Unmet::MissingToken,
                    TokenState::Verified { .. } => err.unwrap_or(Unmet::WrongIssuer),
                })
            }
            (Requirement::All(rs), t) => rs.iter().try_for_each(|r| r.evaluate(t)),
        }
    }

    /// The issuers whose tokens can satisfy this requirement, sorted and without duplicates.
    /// The engine verifies a token only with the issuer its `iss` routes to, and refuses it
    /// as [`Unmet::WrongIssuer`] before any key fetch when that issuer is not in this set.
    /// Empty for [`Requirement::Public`] (which looks at no token).
    pub fn issuers(&self) -> Vec<&str> {
        self.accepted().into_iter().collect()
    }

    /// Can a token of issuer `name` satisfy this requirement? ([`Requirement::issuers`]
    /// contains it; without building the set, for the request path.)
    pub fn takes_issuer(&self, name: &str) -> bool {
        match self {
            Requirement::Public => false,
            Requirement::Issuer(n) => n == name,
            Requirement::Optional(r) => r.takes_issuer(name),
            Requirement::Any(rs) => rs.iter().any(|r| r.takes_issuer(name)),
            Requirement::All(rs) => !rs.is_empty() && rs.iter().all(|r| r.takes_issuer(name)),
        }
    }

    fn accepted(&self) -> BTreeSet<&str> {
        match self {
            Requirement::Public => BTreeSet::new(),
            Requirement::Issuer(n) => BTreeSet::from([n.as_str()]),
            Requirement::Optional(r) => r.accepted(),
            Requirement::Any(rs) => rs.iter().flat_map(|r| r.accepted()).collect(),
            Requirement::All(rs) => {
                let mut it = rs.iter().map(|r| r.accepted());
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, s| acc.intersection(&s).copied().collect())
            }
        }
    }

    fn accepts_absent(&self) -> bool {
        match self {
            Requirement::Public | Requirement::Optional(_) => true,
            Requirement::Issuer(_) => false,
            Requirement::Any(rs) => rs.iter().any(Requirement::accepts_absent),
            Requirement::All(rs) => rs.iter().all(Requirement::accepts_absent),
        }
    }

    /// Does a request without a token fail this requirement?
    pub fn needs_token(&self) -> bool {
        !self.accepts_absent()
    }

    /// Is this `auth = "public"`?
    pub fn is_public(&self) -> bool {
        matches!(self, Requirement::Public)
    }

    /// Compiles the configured tree: checks issuer names, empty lists, `public` inside a tree,
    /// depth, and `all` nodes no single token can satisfy.
    pub(crate) fn compile(cfg: &AuthConfig, issuers: &[&str]) -> Result<Requirement, Vec<String>> {
        let mut errors = Vec::new();
        let r = Self::compile_at(cfg, issuers, 0, &mut errors);
        if let (Some(r), true) = (r, errors.is_empty()) {
            Ok(r)
        } else {
            Err(errors)
        }
    }

    fn compile_at(
        cfg: &AuthConfig,
        issuers: &[&str],
        depth: usize,
        errors: &mut Vec<String>,
    ) -> Option<Requirement> {
        if depth > MAX_REQUIREMENT_DEPTH {
            errors.push(format!(
                "auth nests deeper than {MAX_REQUIREMENT_DEPTH} levels"
            ));
            return None;
        }
        let list = |items: &[AuthConfig], kind: &str, errors: &mut Vec<String>| {
            if items.is_empty() {
                errors.push(format!("auth: `{kind}` is empty"));
                return None;
            }
            if items.len() > MAX_REQUIREMENT_ITEMS {
                errors.push(format!(
                    "auth: `{kind}` lists more than {MAX_REQUIREMENT_ITEMS} entries"
                ));
                return None;
            }
            let out: Vec<Option<Requirement>> = items
                .iter()
                .map(|c| Self::compile_at(c, issuers, depth + 1, errors))
                .collect();
            out.into_iter().collect::<Option<Vec<_>>>()
        };
        match cfg {
            AuthConfig::Name(n) if n == "public" => {
                if depth > 0 {
                    errors.push(
                        "auth: \"public\" stands alone (auth = \"public\"); inside a tree it would make the whole tree pass, write { optional = .. } for \"a token is optional\"".into(),
                    );
                    None
                } else {
                    Some(Requirement::Public)
                }
            }
            AuthConfig::Name(n) => {
                if issuers.contains(&n.as_str()) {
                    Some(Requirement::Issuer(n.clone()))
                } else {
                    let known = if issuers.is_empty() {
                        "no issuer is configured".to_owned()
                    } else {
                        format!("configured issuers: {}", issuers.join(", "))
                    };
                    errors.push(format!("auth: unknown issuer {n:?} ({known})"));
                    None
                }
            }
            AuthConfig::Any(items) => list(items, "any", errors).map(Requirement::Any),
            AuthConfig::All(items) => {
                let rs = list(items, "all", errors)?;
                let r = Requirement::All(rs);
                if r.accepted().is_empty() {
                    let names: BTreeSet<&str> = match &r {
                        Requirement::All(rs) => rs.iter().flat_map(|r| r.accepted()).collect(),
                        _ => BTreeSet::new(),
                    };
                    errors.push(format!(
                        "auth: `all` needs one token verified by each of [{}] at once, but a request carries one token and each token belongs to one issuer: no request can pass; did you mean `any`?",
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                    return None;
                }
                Some(r)
            }
            AuthConfig::Optional(inner) => {
                let r = Self::compile_at(inner, issuers, depth + 1, errors)?;
                Some(Requirement::Optional(Box::new(r)))
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, rs: &[Requirement], sep: &str| {
            f.write_str("(")?;
            for (i, r) in rs.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{r}")?;
            }
            f.write_str(")")
        };
        match self {
            Requirement::Public => f.write_str("public"),
            Requirement::Issuer(n) => f.write_str(n),
            Requirement::Any(rs) => join(f, rs, " or "),
            Requirement::All(rs) => join(f, rs, " and "),
            Requirement::Optional(r) => write!(f, "optional {r}"),
        }
    }
}
