//! Host and method conditions.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// The most hosts one rule may list.
pub const MAX_HOSTS: usize = 64;
/// The most method tokens one rule may list.
pub const MAX_METHODS: usize = 32;
/// The longest host pattern or method token, in bytes.
pub const MAX_HOST_LEN: usize = 253;

/// One host pattern, lowercased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// `*.suffix`: one or more labels, then `.suffix`. Holds the suffix without the dot.
    Wildcard(String),
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com`.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty() || name.len() > MAX_HOST_LEN {
            return Err(format!(
                "host {s:?}: empty or longer than {MAX_HOST_LEN} bytes"
            ));
        }
        if name.contains('*') {
            return Err(format!(
                "host {s:?}: a wildcard is only `*.` at the start (e.g. \"*.example.com\")"
            ));
        }
        if name.starts_with('[') {
            return if !wild && ipv6_ok(name) {
                Ok(HostPattern::Exact(name.to_owned()))
            } else {
                Err(format!("host {s:?}: not a valid IPv6 literal"))
            };
        }
        if name.contains(':') {
            return Err(format!(
                "host {s:?}: write the host without a port (the request's port is ignored)"
            ));
        }
        if !labels_ok(name) {
            return Err(format!(
                "host {s:?}: labels of letters, digits, - and _ separated by single dots"
            ));
        }
        Ok(if wild {
            HostPattern::Wildcard(name.to_owned())
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }

    /// The rank of this pattern in the specificity order: exact beats every wildcard; a
    /// wildcard with more labels beats one with fewer.
    pub fn rank(&self) -> u32 {
        match self {
            HostPattern::Exact(_) => 1_000,
            HostPattern::Wildcard(s) => 1 + s.split('.').count() as u32,
        }
    }

    /// Does the (normalised) host match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// An IPv6 literal: `[` hex digits, colons (and dots) `]`.
fn ipv6_ok(name: &str) -> bool {
    name.ends_with(']')
        && name.len() > 2
        && name[1..name.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// Labels of letters, digits, `-` and `_`, 1 to 63 bytes, separated by single dots (one pass
/// over the bytes: this runs for every request's host).
fn labels_ok(name: &str) -> bool {
    let mut label = 0usize;
    for &b in name.as_bytes() {
        if b == b'.' {
            if label == 0 {
                return false;
            }
            label = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label += 1;
            if label > 63 {
                return false;
            }
        } else {
            return false;
        }
    }
    label > 0
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

const INVALID: u8 = 0;
const LABEL: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 3;
const PORT: u8 = 4;

/// What each byte of a request's host is to [`normalise_host`] (one table load per byte).
static HOST_BYTE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            LABEL
        } else if b.is_ascii_uppercase() {
            UPPER
        } else if b == b'.' {
            DOT
        } else if b == b':' {
            PORT
        } else {
            INVALID
        };
        c += 1;
    }
    t
};

/// A request's host as matched: lowercased, without port or one trailing dot. `None` when it
/// is not a well-formed host (then only rules without `hosts` match).
pub fn normalise_host(raw: &str) -> Option<Cow<'_, str>> {
    let raw = raw.trim_ascii();
    if raw.starts_with('[') {
        let end = raw.find(']')?;
        let host = &raw[..=end];
        if host.len() > MAX_HOST_LEN || !ipv6_ok(host) {
            return None;
        }
        return Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        });
    }
    // One pass over the name (up to the port): what HostPattern::parse takes as an exact host
    // (labels of letters, digits, `-` and `_`, 1 to 63 bytes, single dots), and whether there
    // is anything to lowercase.
    let b = raw.as_bytes();
    let (mut label, mut upper, mut end) = (0usize, false, b.len());
    for (i, &c) in b.iter().enumerate() {
        match HOST_BYTE[usize::from(c)] {
            LABEL => label += 1,
            UPPER => {
                label += 1;
                upper = true;
            }
            DOT if label > 0 => label = 0,
            PORT => {
                end = i;
                break;
            }
            _ => return None,
        }
        if label > 63 {
            return None;
        }
    }
    let name = &raw[..end];
    // One trailing dot is the same host; a label must end the name otherwise.
    let host = match name.strip_suffix('.') {
        Some(h) if !h.is_empty() => h,
        Some(_) => return None,
        None if label == 0 => return None,
        None => name,
    };
    if host.len() > MAX_HOST_LEN {
        return None;
    }
    // Borrowed unless there is something to lowercase.
    Some(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Which methods a rule takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodSet {
    /// Every method (no `methods`, or `["ALL"]`).
    All,
    /// Every method but these (`["!TRACE", "!CONNECT"]`).
    AllBut(BTreeSet<String>),
    /// Only these.
    Only(BTreeSet<String>),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Is this an HTTP method token (RFC 9110 `token`)?
pub fn is_method_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_HOST_LEN && s.bytes().all(is_tchar)
}

impl MethodSet {
    /// Parses a `methods` list.
    pub fn parse(list: Option<&[String]>) -> Result<MethodSet, String> {
        let Some(list) = list else {
            return Ok(MethodSet::All);
        };
        if list.is_empty() {
            return Err("methods is empty: leave it out for all methods".into());
        }
        if list.len() > MAX_METHODS {
            return Err(format!("more than {MAX_METHODS} methods"));
        }
        let mut only = BTreeSet::new();
        let mut but = BTreeSet::new();
        let mut all = false;
        for m in list {
            let (neg, tok) = match m.strip_prefix('!') {
                Some(t) => (true, t),
                None => (false, m.as_str()),
            };
            if !is_method_token(tok) {
                return Err(format!("method {m:?} is not an HTTP method token"));
            }
            let up = tok.to_ascii_uppercase();
            if up == "ALL" {
                if neg {
                    return Err("\"!ALL\" matches nothing".into());
                }
                all = true;
            } else if neg {
                but.insert(up);
            } else {
                only.insert(up);
            }
        }
        match (all, only.is_empty(), but.is_empty()) {
            (true, true, true) => Ok(MethodSet::All),
            (true, _, _) => {
                Err("\"ALL\" stands alone; write \"!M\" entries to exclude methods".into())
            }
            (false, false, true) => Ok(MethodSet::Only(only)),
            (false, true, false) => Ok(MethodSet::AllBut(but)),
            _ => Err(
                "methods mixes \"M\" and \"!M\" entries: list the methods, or the exclusions"
                    .into(),
            ),
        }
    }

    /// Does the (uppercased) method match?
    pub fn matches(&self, method: &str) -> bool {
        match self {
            MethodSet::All => true,
            MethodSet::AllBut(s) => !s.contains(method),
            MethodSet::Only(s) => s.contains(method),
        }
    }

    /// Rank in the specificity order: explicit methods beat "all but" beats all.
    pub fn rank(&self) -> u8 {
        match self {
            MethodSet::All => 0,
            MethodSet::AllBut(_) => 1,
            MethodSet::Only(_) => 2,
        }
    }

    /// Could one method match both sets? (`AllBut` sets always overlap: there are infinitely
    /// many method tokens.)
    pub fn overlaps(&self, other: &MethodSet) -> bool {
        match (self, other) {
            (MethodSet::Only(a), MethodSet::Only(b)) => a.intersection(b).next().is_some(),
            (MethodSet::Only(a), MethodSet::AllBut(b))
            | (MethodSet::AllBut(b), MethodSet::Only(a)) => a.iter().any(|m| !b.contains(m)),
            _ => true,
        }
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodSet::All => f.write_str("all methods"),
            MethodSet::AllBut(s) => {
                f.write_str("all but ")?;
                f.write_str(&s.iter().cloned().collect::<Vec<_>>().join(" "))
            }
            MethodSet::Only(s) => f.write_str(&s.iter().cloned().collect::<Vec<_>>().join(" ")),
        }
    }
}
