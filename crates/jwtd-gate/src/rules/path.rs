//! Request paths and path patterns: percent-decoding once, dot segments, empty segments,
//! encoded slashes, trailing slashes.

use super::config::{DoubleEncoding, EncodedSlashes, Semicolons, TrailingSlash};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;

/// The longest request path (before `?`) the matcher reads, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;
/// The most segments a request path may have after normalisation, and a pattern may have.
pub const MAX_SEGMENTS: usize = 64;
/// The longest path pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The longest parameter name, in bytes.
pub const MAX_PARAM_NAME: usize = 64;

/// Why a request path cannot be matched. Every variant is a malformed or dangerous request:
/// the engine refuses it as `400 invalid_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (absolute-form or `*` must be normalised by the caller).
    NotOriginForm,
    /// Longer than [`MAX_PATH_LEN`].
    TooLong,
    /// More than [`MAX_SEGMENTS`] segments after normalisation.
    TooManySegments,
    /// An empty segment (`//`) other than a trailing slash.
    EmptySegment,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` inside a segment while `encoded_slashes = "reject"`.
    EncodedSlash,
    /// A NUL byte after decoding.
    Nul,
    /// A segment that is not UTF-8 after decoding.
    InvalidUtf8,
    /// A raw control character, space or `#` in the path.
    InvalidChar,
    /// A `;` in the path (raw, or `%3B` once decoded) while `semicolons = "reject"`: a path
    /// parameter, which servlet containers and frameworks strip before routing.
    Semicolon,
    /// A `%25` whose decoded text is itself an escape (`%252e`, `%253B`, `%25%32%65`) while
    /// `double_encoding = "reject"`: an upstream that decodes twice reads another path.
    DoubleEncoded,
}

impl PathError {
    /// A short stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "path_not_origin_form",
            PathError::TooLong => "path_too_long",
            PathError::TooManySegments => "path_too_many_segments",
            PathError::EmptySegment => "path_empty_segment",
            PathError::BadEscape => "path_bad_escape",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::Nul => "path_nul",
            PathError::InvalidUtf8 => "path_invalid_utf8",
            PathError::InvalidChar => "path_invalid_char",
            PathError::Semicolon => "path_semicolon",
            PathError::DoubleEncoded => "path_double_encoded",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the path does not start with /",
            PathError::TooLong => "the path is too long",
            PathError::TooManySegments => "the path has too many segments",
            PathError::EmptySegment => "the path has an empty segment (//)",
            PathError::BadEscape => "the path has a % not followed by two hex digits",
            PathError::EncodedSlash => "the path has an encoded slash (%2F) in a segment",
            PathError::Nul => "the path has a NUL byte",
            PathError::InvalidUtf8 => "the path is not UTF-8 after percent-decoding",
            PathError::InvalidChar => "the path has a control character, space or #",
            PathError::Semicolon => {
                "the path has a ; (a path parameter, which some servers strip before routing)"
            }
            PathError::DoubleEncoded => {
                "the path has a double-encoded escape (%25 followed by an escape, e.g. %252e)"
            }
        })
    }
}

impl std::error::Error for PathError {}

/// A normalised request path: decoded segments and whether it ended with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormPath<'a> {
    /// Decoded segments, dot segments removed. Empty for `/`. Borrowed from the request's
    /// path where nothing was decoded; up to 8 held inline (no allocation per request).
    pub segments: SmallVec<[Cow<'a, str>; 8]>,
    /// The path ended with `/` after a segment (never set for `/` itself, nor with
    /// `trailing_slash = "ignore"`).
    pub trailing: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte at `i` of a raw path once decoded (an escape or a plain byte) and where the next
/// one starts.
fn decoded_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
    match *b.get(i)? {
        b'%' => Some((hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?, i + 3)),
        c => Some((c, i + 1)),
    }
}

/// Whether the `%` a `%25` at `i` of `b` decodes to starts an escape once decoded: the two
/// bytes after it, each plain or itself an escape, are hex digits (`%252e`, `%25%32%65`).
fn escape_follows(b: &[u8], i: usize) -> bool {
    let Some((h, j)) = decoded_at(b, i + 3) else {
        return false;
    };
    hex(h).is_some() && decoded_at(b, j).is_some_and(|(l, _)| hex(l).is_some())
}

/// Whether a raw path (or pattern) holds a double-encoded escape (see
/// [`DoubleEncoding`]): a `%25` whose decoded `%` starts an escape.
pub(crate) fn double_encoded(raw: &str) -> bool {
    let b = raw.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'%'
            && b.get(i + 1) == Some(&b'2')
            && b.get(i + 2) == Some(&b'5')
            && escape_follows(b, i)
    })
}

/// Percent-decodes one segment once. `%2F` follows `slashes`; with `Keep`, `%2F` and `%25` stay
/// encoded (as uppercase `%2F` / `%25`).
pub(crate) fn decode_segment(
    raw: &str,
    slashes: EncodedSlashes,
    double: DoubleEncoding,
) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        // Nothing to decode: the text as it is (a `&str`, so UTF-8 already).
        return Ok(Cow::Borrowed(raw));
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = h * 16 + l;
            match (v, slashes) {
                (b'%', _) if double == DoubleEncoding::Reject && escape_follows(b, i) => {
                    return Err(PathError::DoubleEncoded)
                }
                (b'/', EncodedSlashes::Reject) => return Err(PathError::EncodedSlash),
                (b'/', EncodedSlashes::Keep) => out.extend_from_slice(b"%2F"),
                (b'%', EncodedSlashes::Keep) => out.extend_from_slice(b"%25"),
                (0, _) => return Err(PathError::Nul),
                _ => out.push(v),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::InvalidUtf8)
}

const PLAIN: u8 = 0;
const QUERY: u8 = 1;
const ESCAPE: u8 = 2;
const REFUSED: u8 = 3;
const SEMICOLON: u8 = 4;

/// What each byte of a raw path is to [`normalise`]: `?` ends the path, `%` starts an escape,
/// controls, space, DEL and `#` are refused, `;` is noted (refused or not per
/// [`Semicolons`]), anything else is plain.
static PATH_BYTE: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c <= b' ' as usize {
        t[c] = REFUSED;
        c += 1;
    }
    t[0x7f] = REFUSED;
    t[b'#' as usize] = REFUSED;
    t[b'?' as usize] = QUERY;
    t[b'%' as usize] = ESCAPE;
    t[b';' as usize] = SEMICOLON;
    t
};

/// [`normalise_with`] with the defaults `semicolons = "reject"` and
/// `double_encoding = "reject"`.
pub fn normalise(
    raw: &str,
    slashes: EncodedSlashes,
    trailing: TrailingSlash,
) -> Result<NormPath<'_>, PathError> {
    normalise_with(
        raw,
        slashes,
        trailing,
        Semicolons::Reject,
        DoubleEncoding::Reject,
    )
}

/// Normalises a raw request path: drops `?query`, refuses what cannot be matched safely
/// (a `;`, raw or `%3B`, per `semicolons`; a double-encoded escape, per `double`), decodes
/// each segment once, removes dot segments
/// (never above the root).
pub fn normalise_with(
    raw: &str,
    slashes: EncodedSlashes,
    trailing: TrailingSlash,
    semicolons: Semicolons,
    double: DoubleEncoding,
) -> Result<NormPath<'_>, PathError> {
    // One pass: where the query starts, refused bytes, and whether anything needs decoding.
    let bytes = raw.as_bytes();
    let mut end = bytes.len();
    let mut escaped = false;
    let mut refused = false;
    let mut semicolon = false;
    for (i, &c) in bytes.iter().enumerate() {
        // One table load per byte; most bytes are plain.
        match PATH_BYTE[usize::from(c)] {
            PLAIN => {}
            QUERY => {
                end = i;
                break;
            }
            ESCAPE => escaped = true,
            SEMICOLON => semicolon = true,
            _ => refused = true,
        }
    }
    let path = &raw[..end];
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotOriginForm);
    };
    if refused {
        return Err(PathError::InvalidChar);
    }
    let reject_semicolons = semicolons == Semicolons::Reject;
    if semicolon && reject_semicolons {
        return Err(PathError::Semicolon);
    }
    let mut segments: SmallVec<[Cow<'_, str>; 8]> = SmallVec::new();
    let mut ends_with_slash = false;
    // The segments between slashes, found with a plain byte loop (segments are short: cheaper
    // than `split`'s searcher on this hot path).
    let rb = rest.as_bytes();
    let mut start = 0;
    loop {
        let stop = rb[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(rb.len(), |p| start + p);
        let part = &rest[start..stop];
        let is_last = stop == rb.len();
        start = stop + 1;
        if part.is_empty() {
            if is_last {
                ends_with_slash = true;
                break;
            }
            return Err(PathError::EmptySegment);
        }
        let seg = if escaped {
            let seg = decode_segment(part, slashes, double)?;
            // `%3B`: the same `;` once decoded (a server may decode before stripping).
            if reject_semicolons && matches!(seg, Cow::Owned(_)) && seg.contains(';') {
                return Err(PathError::Semicolon);
            }
            seg
        } else {
            Cow::Borrowed(part)
        };
        match seg.as_ref() {
            "." => ends_with_slash = is_last,
            ".." => {
                segments.pop();
                ends_with_slash = is_last;
            }
            _ => {
                if segments.len() == MAX_SEGMENTS {
                    return Err(PathError::TooManySegments);
                }
                segments.push(seg);
            }
        }
        if is_last {
            break;
        }
    }
    let trailing = ends_with_slash && !segments.is_empty() && trailing == TrailingSlash::Strict;
    Ok(NormPath { segments, trailing })
}

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this decoded text.
    Literal(String),
    /// `:name`: matches any one segment.
    Param(String),
    /// `*name` or `**`: the rest of the path, zero or more segments.
    Rest(Option<String>),
}

/// A compiled path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    /// As written in the file.
    pub source: String,
    /// The segments.
    pub segments: Vec<Segment>,
    /// Ends with `/` (strict mode only; a pattern ending in a rest segment never has it).
    pub trailing: bool,
}

fn param_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_PARAM_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl PathPattern {
    /// Parses a pattern; the error is a message for a configuration error.
    pub fn parse(
        source: &str,
        slashes: EncodedSlashes,
        trailing: TrailingSlash,
    ) -> Result<PathPattern, String> {
        if source.len() > MAX_PATTERN_LEN {
            return Err(format!("longer than {MAX_PATTERN_LEN} bytes"));
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err("must start with /".into());
        };
        if source.contains(['?', '#']) {
            return Err("must not hold ? or # (the query is not matched)".into());
        }
        if source.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err("must not hold spaces or control characters (write %20)".into());
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::new();
        let mut ends_with_slash = false;
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                if i == last {
                    ends_with_slash = i > 0;
                    break;
                }
                return Err(
                    "empty segment (//): requests with one are refused, so it can never match"
                        .into(),
                );
            }
            if let Some(Segment::Rest(_)) = segments.last() {
                return Err("`**` or `*name` must be the last segment".into());
            }
            let seg = if let Some(name) = part.strip_prefix(':') {
                if !param_name_ok(name) {
                    return Err(format!(
                        "parameter name {name:?}: 1 to {MAX_PARAM_NAME} of A-Z a-z 0-9 _ -"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("two parameters named {name:?}"));
                }
                names.push(name);
                Segment::Param(name.to_owned())
            } else if *part == "**" {
                Segment::Rest(None)
            } else if let Some(name) = part.strip_prefix('*') {
                if !param_name_ok(name) {
                    return Err(format!(
                        "rest name {name:?}: write `**` or `*name` with 1 to {MAX_PARAM_NAME} of A-Z a-z 0-9 _ -"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("two parameters named {name:?}"));
                }
                names.push(name);
                Segment::Rest(Some(name.to_owned()))
            } else {
                let text = decode_segment(part, slashes, DoubleEncoding::Allow).map_err(|e| match e {
                    PathError::EncodedSlash => format!(
                        "segment {part:?} holds %2F, which encoded_slashes = \"reject\" refuses in every request, so it can never match"
                    ),
                    e => format!("segment {part:?}: {e}"),
                })?;
                if text == "." || text == ".." {
                    return Err(format!(
                        "segment {part:?} is a dot segment, removed from every request before matching, so it can never match"
                    ));
                }
                Segment::Literal(text.into_owned())
            };
            segments.push(seg);
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        if ends_with_slash && matches!(segments.last(), Some(Segment::Rest(_))) {
            return Err("nothing may follow `**` or `*name`, not even /".into());
        }
        Ok(PathPattern {
            source: source.to_owned(),
            segments,
            trailing: ends_with_slash && trailing == TrailingSlash::Strict,
        })
    }

    /// The parameter names this pattern defines (`:name` and `*name`).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Rest(Some(n)) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The shape with parameter names dropped: two patterns with the same shape match the
    /// same requests.
    pub(crate) fn shape(&self) -> (Vec<ShapeSeg<'_>>, bool) {
        (
            self.segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(t) => ShapeSeg::Literal(t),
                    Segment::Param(_) => ShapeSeg::Param,
                    Segment::Rest(_) => ShapeSeg::Rest,
                })
                .collect(),
            self.trailing,
        )
    }

    /// Does this pattern match the (normalised) path?
    pub fn matches(&self, path: &NormPath) -> bool {
        for (i, s) in self.segments.iter().enumerate() {
            match (s, path.segments.get(i)) {
                (Segment::Rest(_), _) => return true,
                (_, None) => return false,
                (Segment::Literal(t), Some(seg)) if t.as_str() != seg.as_ref() => return false,
                _ => {}
            }
        }
        path.segments.len() == self.segments.len() && path.trailing == self.trailing
    }

    /// The parameters of a request this pattern matched.
    pub(crate) fn params<'r, 'p>(&'r self, path: &NormPath<'p>) -> Params<'r, 'p> {
        let mut out = Params::new();
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Param(n) => {
                    if let Some(v) = path.segments.get(i) {
                        let v = match v {
                            Cow::Borrowed(b) => Cow::Borrowed(*b),
                            Cow::Owned(o) => Cow::Owned(o.clone()),
                        };
                        out.push((n.as_str(), v));
                    }
                }
                Segment::Rest(Some(n)) => {
                    let rest = path.segments.get(i..).unwrap_or_default();
                    let mut v = rest
                        .iter()
                        .map(|s| s.as_ref())
                        .collect::<Vec<&str>>()
                        .join("/");
                    if path.trailing && !rest.is_empty() {
                        v.push('/');
                    }
                    out.push((n.as_str(), Cow::Owned(v)));
                }
                _ => {}
            }
        }
        out
    }
}

/// A rule's path parameters for one request: `(name, decoded value)` in path order, the value
/// borrowed from the request where nothing was decoded; up to 4 held inline.
pub type Params<'r, 'p> = SmallVec<[(&'r str, Cow<'p, str>); 4]>;

/// A segment of a pattern's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ShapeSeg<'a> {
    Literal(&'a str),
    Param,
    Rest,
}
