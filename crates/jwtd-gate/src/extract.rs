//! Token extraction: the one token a request carries, from the configured sources, or a
//! refusal when it carries more than one.

use crate::config::TokenSources;
pub use crate::dpop::Presented;
use http::{header, HeaderMap};
use jwtd_core::{Error, Reason};

/// The token from the configured sources: `Authorization: Bearer` (scheme case-insensitive,
/// RFC 6750 2.1), the cookie, the query parameter. `Ok(None)` when there is none; an error
/// (reason `multiple_tokens`, answered 400 `invalid_request`, RFC 6750 3.1) when the request
/// carries more than one `Authorization` header, or more than one token in all (two sources,
/// or the cookie or the parameter twice): an upstream that reads the token again must not be
/// able to pick another one than jwtd verified.
pub fn extract(
    headers: &HeaderMap,
    query: Option<&str>,
    sources: &TokenSources,
) -> Result<Option<String>, Error> {
    extract_ref(headers, query, sources).map(|t| t.map(str::to_owned))
}

fn several(what: &'static str) -> Error {
    Error::new(
        Reason::MultipleTokens,
        format!("the request carries {what}: send exactly one token, one way"),
    )
}

/// [`extract`] without a copy: the token borrowed from the request (`query`: the request
/// target's query, without `?`).
pub fn extract_ref<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    sources: &TokenSources,
) -> Result<Option<&'a str>, Error> {
    extract_presented(headers, query, sources, false).map(|t| t.map(|(t, _)| t))
}

/// [`extract_ref`], telling how the token was presented; with `dpop`, `Authorization: DPoP
/// <token>` (scheme case-insensitive, RFC 9449 section 7.1) is read too, from the same one
/// `Authorization` header (so only when `sources.bearer`): a token source like `Bearer`,
/// counted with the others for `multiple_tokens`. The cookie and the query parameter never
/// carry DPoP tokens.
pub fn extract_presented<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    sources: &TokenSources,
    dpop: bool,
) -> Result<Option<(&'a str, Presented)>, Error> {
    let mut found = None;
    let mut take = |t: &'a str, how: Presented| match found {
        None => {
            found = Some((t, how));
            Ok(())
        }
        Some(_) => Err(several("more than one token")),
    };
    if sources.bearer {
        let mut all = headers.get_all(header::AUTHORIZATION).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(several("more than one Authorization header"));
        }
        // What `to_str` accepts (a header value holds no control characters but tab), checked
        // a word at a time: this header is read on every request.
        if first.is_some_and(|v| !v.as_bytes().is_ascii()) {
            // Unreadable here, perhaps read differently upstream: never ignored.
            return Err(several("an Authorization header that is not ASCII"));
        }
        if let Some(v) = first.and_then(|v| std::str::from_utf8(v.as_bytes()).ok()) {
            // Any whitespace after the scheme (a tab too), as lenient parsers upstream take it.
            if let Some((scheme, rest)) = v.split_once([' ', '\t']) {
                let t = rest.trim();
                if scheme.eq_ignore_ascii_case("bearer") && !t.is_empty() {
                    take(t, Presented::Bearer)?;
                } else if dpop && scheme.eq_ignore_ascii_case("dpop") && !t.is_empty() {
                    take(t, Presented::Dpop)?;
                }
            }
        }
    }
    if let Some(name) = &sources.cookie {
        for h in headers.get_all(header::COOKIE) {
            // A header with bytes that are not UTF-8 is still searched (other parsers skip only
            // the bad pair), so a second token cannot hide behind one.
            let Ok(s) = std::str::from_utf8(h.as_bytes()) else {
                if h.as_bytes()
                    .split(|b| *b == b';')
                    .filter_map(|p| p.splitn(2, |b| *b == b'=').next())
                    .any(|k| k.trim_ascii() == name.as_bytes())
                {
                    return Err(several("a token cookie in a header that is not UTF-8"));
                }
                continue;
            };
            for pair in s.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    // Names compared trimmed, as most cookie parsers do. Empty once unquoted is
                    // no token: `name=""` or a lone `"` used to yield an empty token, verified
                    // as malformed, and counted against a real token sent another way (found by
                    // the request fuzz target).
                    let v = v.trim().trim_matches('"');
                    if k.trim() == name && !v.is_empty() {
                        take(v, Presented::Cookie)?;
                    }
                }
            }
        }
    }
    if let (Some(name), Some(q)) = (&sources.query, query) {
        for pair in q.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                // Names compared percent-decoded (`access%5Ftoken` is `access_token` to every
                // framework upstream).
                if name_is(k, name) && !v.is_empty() {
                    take(v, Presented::Query)?;
                }
            }
        }
    }
    Ok(found)
}

/// True when the query parameter name `raw` is `name` once percent-decoded (and `+` read as a
/// space, as form decoders do).
fn name_is(raw: &str, name: &str) -> bool {
    if !raw.contains(['%', '+']) {
        return raw == name;
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out == name.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    /// A fuzz/seeds/request input as the request fuzz target reads it: byte 0 picks the
    /// sources (bit 0 bearer, bit 1 cookie `at`, bit 2 query `at`), then the request target and
    /// `name: value` header lines.
    fn fuzz_request(data: &[u8]) -> (TokenSources, http::Uri, HeaderMap) {
        let flags = data.first().copied().unwrap_or(0);
        let sources = TokenSources {
            bearer: flags & 1 != 0,
            cookie: (flags & 2 != 0).then(|| "at".to_owned()),
            query: (flags & 4 != 0).then(|| "at".to_owned()),
        };
        let mut lines = data.get(1..).unwrap_or_default().split(|&b| b == b'\n');
        let uri = lines
            .next()
            .and_then(|l| http::Uri::try_from(l.strip_suffix(b"\r").unwrap_or(l)).ok())
            .unwrap_or_else(|| http::Uri::from_static("/"));
        let mut headers = HeaderMap::new();
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
            ) {
                headers.append(n, v);
            }
        }
        (sources, uri, headers)
    }

    /// The request fuzz target's seeds, replayed on every test run: each extracts what it was
    /// written for, and every refusal has its RFC 6750 challenge.
    #[test]
    fn request_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/request");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let (sources, uri, headers) = fuzz_request(&std::fs::read(&path).unwrap());
            let got = extract(&headers, uri.query(), &sources);
            match name.as_str() {
                "none" | "regress-empty-quoted-cookie" => {
                    assert!(matches!(got, Ok(None)), "{name}")
                }
                n if n.starts_with("two-") => {
                    let e = got.unwrap_err();
                    assert_eq!(e.reason(), Reason::MultipleTokens, "{name}");
                    assert!(crate::refusal::http(&e)
                        .headers
                        .iter()
                        .any(|(n, _)| n == header::WWW_AUTHENTICATE));
                }
                _ => assert!(
                    got.unwrap().is_some_and(|t| t.split('.').count() == 3),
                    "{name}"
                ),
            }
        }
    }

    /// Regression (request fuzz target, fuzz/seeds/request/regress-empty-quoted-cookie): a
    /// cookie whose value is only quotes carries no token; it neither yields an empty token
    /// nor makes a bearer token "more than one token".
    #[test]
    fn regress_quoted_empty_cookie_is_no_token() {
        let sources = TokenSources {
            bearer: true,
            cookie: Some("at".into()),
            query: None,
        };
        let uri = http::Uri::from_static("/");
        for value in ["at=\"", "at=\"\"", "at=\"\"\"", "x=1; at=\"\"; y=2"] {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
            assert!(
                matches!(extract(&h, uri.query(), &sources), Ok(None)),
                "{value}"
            );
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer a.b.c"),
            );
            assert_eq!(
                extract(&h, uri.query(), &sources).unwrap().as_deref(),
                Some("a.b.c"),
                "{value}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("at=\"a.b.c\""));
        assert_eq!(
            extract(&h, uri.query(), &sources).unwrap().as_deref(),
            Some("a.b.c")
        );
    }
}
