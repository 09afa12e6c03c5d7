//! Certificate-bound access tokens (RFC 8705 section 3): a token whose `cnf` names a client
//! certificate (`cnf["x5t#S256"]`, the base64url SHA-256 of the certificate's DER) is taken
//! only on a request that came with that certificate.
//!
//! The engine is told the client certificate by the front ([`ClientCert`] in
//! [`crate::Request`]) and reads it here, and nowhere else:
//!
//! - [`ClientCert::Der`]: the DER of the TLS peer's end-entity certificate, when jwtd
//!   terminated TLS itself and the client sent one (rustls verified it against the configured
//!   client CA).
//! - [`ClientCert::Trusted`]: the peer is a trusted proxy (`trusted_proxies`): the certificate
//!   it forwards in the configured header ([`Forwarded`], `[forwarded] client_cert`) is read
//!   when `[forwarded] client_cert` is set: no header, an empty value or RFC 9440's empty `::`
//!   is "the client had no certificate", never the TLS peer's (the proxy's own). Without
//!   `[forwarded] client_cert`, the TLS peer's certificate (if any) counts. The two sources
//!   are never mixed in one request.
//! - [`ClientCert::Pem`]: Envoy ext_authz's `attributes.source.certificate` (URL-encoded PEM),
//!   authoritative.
//! - [`ClientCert::None`]: no certificate (cleartext, no client certificate, or a client the
//!   front does not trust to forward one: its headers are ignored).
//!
//! The policy ([`Mode`]) is per issuer (`[issuer.mtls] mode`), overridable per rule (`mtls =
//! ...`): `enforce-cnf` (the default) checks what the token's `cnf` demands, `require` also
//! refuses tokens without `cnf["x5t#S256"]`, `off` reads neither the token's binding nor the
//! certificate. The comparison is in constant time (aws-lc-rs).
//!
//! Forwarded formats ([`ForwardedFormat`]), each at most [`MAX_FORWARDED_CERT_BYTES`] bytes:
//! RFC 9440 `Client-Cert` (an RFC 8941 byte sequence, `:<base64 DER>:`), Envoy's
//! `x-forwarded-client-cert` (exactly one element; its `Cert` (URL-encoded PEM) or, without
//! one, its `Hash` (hex SHA-256 of the DER)), and a URL-encoded PEM such as nginx's
//! `$ssl_client_escaped_cert`. A header that cannot be read refuses the request
//! (`mtls_bad_forwarded_certificate`): it comes from a proxy jwtd trusts, so it is a fault,
//! never a request without a certificate.

use http::{HeaderMap, HeaderName, HeaderValue};
use jwtd_core::{Error, Reason, Verified};
use serde::Deserialize;
use serde_json::Value;

/// The largest forwarded certificate header value (and ext_authz `source.certificate`) read,
/// in bytes: 16 KiB. Larger is `mtls_bad_forwarded_certificate`.
pub const MAX_FORWARDED_CERT_BYTES: usize = 16 * 1024;

/// The identity header naming the client certificate's thumbprint (base64url SHA-256 of its
/// DER, as `cnf["x5t#S256"]` spells it) on an allowed request that came with one.
pub const THUMBPRINT_HEADER: HeaderName = HeaderName::from_static("x-auth-cert-thumbprint");

/// The SHA-256 of a certificate's DER.
pub type Thumbprint = [u8; 32];

/// What an issuer (or a rule) demands of certificate-bound tokens.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A token with `cnf["x5t#S256"]` must come with that client certificate; a token without
    /// it is taken as any other (the default).
    #[default]
    EnforceCnf,
    /// Every token must carry `cnf["x5t#S256"]` and come with that certificate.
    Require,
    /// Neither the token's binding nor the certificate is read.
    Off,
}

impl Mode {
    /// The configuration spelling (`enforce-cnf`, `require`, `off`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::EnforceCnf => "enforce-cnf",
            Mode::Require => "require",
            Mode::Off => "off",
        }
    }
}

/// `[issuer.mtls]`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerMtls {
    /// The policy (default `enforce-cnf`).
    #[serde(default)]
    pub mode: Mode,
}

/// How a trusted proxy forwards the client certificate (`[forwarded] client_cert`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedFormat {
    /// RFC 9440 `Client-Cert`: `:<base64 of the DER>:` (default header `Client-Cert`).
    Rfc9440,
    /// Envoy's `x-forwarded-client-cert` (default header of that name): one element, its
    /// `Cert` (URL-encoded PEM) or else its `Hash` (hex SHA-256 of the DER).
    Xfcc,
    /// A URL-encoded PEM certificate, as nginx's `$ssl_client_escaped_cert` (the header must
    /// be named: `client_cert_header`).
    Pem,
}

/// `[forwarded]`: what jwtd reads from a trusted proxy besides `X-Forwarded-*`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardedConfig {
    /// The format of the forwarded client certificate (none: no certificate is read from
    /// headers).
    #[serde(default)]
    pub client_cert: Option<ForwardedFormat>,
    /// The header carrying it (default: `Client-Cert` for `rfc9440`,
    /// `x-forwarded-client-cert` for `xfcc`; required for `pem`).
    #[serde(default)]
    pub client_cert_header: Option<String>,
}

/// [`ForwardedConfig`], checked: the format and the header it is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The format.
    pub format: ForwardedFormat,
    /// The header.
    pub header: HeaderName,
}

impl ForwardedConfig {
    /// The checked form (`None` without `client_cert`); an error for a header that is not a
    /// header name, `pem` without a header, or a header jwtd owns.
    pub fn compile(&self) -> Result<Option<Forwarded>, String> {
        let Some(format) = self.client_cert else {
            if self.client_cert_header.is_some() {
                return Err("[forwarded] client_cert_header needs client_cert".into());
            }
            return Ok(None);
        };
        let name = match (&self.client_cert_header, format) {
            (Some(h), _) => h.as_str(),
            (None, ForwardedFormat::Rfc9440) => "client-cert",
            (None, ForwardedFormat::Xfcc) => "x-forwarded-client-cert",
            (None, ForwardedFormat::Pem) => {
                return Err(
                    "[forwarded] client_cert = \"pem\" needs client_cert_header (e.g. \"X-SSL-Client-Cert\")"
                        .into(),
                )
            }
        };
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("[forwarded] client_cert_header {name:?} is not a header name"))?;
        if crate::config::RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(format!(
                "[forwarded] client_cert_header {name:?} is one of jwtd's reserved headers"
            ));
        }
        Ok(Some(Forwarded { format, header }))
    }
}

/// The client certificate of a request, as the front knows it (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub enum ClientCert<'a> {
    /// None known.
    #[default]
    None,
    /// The TLS peer's end-entity certificate, DER.
    Der(&'a [u8]),
    /// The peer is a trusted proxy: the forwarded header when present, else `tls`.
    Trusted {
        /// The TLS peer's certificate (the proxy's own, on a TLS connection with one).
        tls: Option<&'a [u8]>,
    },
    /// A URL-encoded PEM certificate the front has authoritatively (ext_authz
    /// `source.certificate`); empty: none.
    Pem(&'a str),
}

/// A certificate an embedding application (the tower layer) puts in the request's
/// extensions: the DER of the TLS peer's certificate, from its TLS acceptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate(pub std::sync::Arc<[u8]>);

fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::MtlsBadForwardedCertificate, message)
}

/// The SHA-256 of `der`.
pub fn thumbprint_of(der: &[u8]) -> Thumbprint {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The thumbprint as `cnf["x5t#S256"]` and [`THUMBPRINT_HEADER`] spell it (base64url, no
/// padding).
pub fn encode_thumbprint(t: &Thumbprint) -> String {
    jwtd_core::b64::encode(t)
}

/// The request's client certificate thumbprint, if it has one (see [`ClientCert`]); an
/// error (`mtls_bad_forwarded_certificate`) for a forwarded one that cannot be read.
pub fn resolve(
    cert: ClientCert<'_>,
    headers: &HeaderMap,
    forwarded: Option<&Forwarded>,
) -> Result<Option<Thumbprint>, Error> {
    match cert {
        ClientCert::None => Ok(None),
        ClientCert::Der(der) => Ok(Some(thumbprint_of(der))),
        ClientCert::Pem("") => Ok(None),
        ClientCert::Pem(s) => {
            if s.len() > MAX_FORWARDED_CERT_BYTES {
                return Err(bad("source.certificate is over 16 KiB"));
            }
            escaped_pem(s.as_bytes()).map(|der| Some(thumbprint_of(&der)))
        }
        ClientCert::Trusted { tls } => {
            // One source per request. With `[forwarded] client_cert`, the proxy's header is
            // the only one: no header (nginx sends none for an empty `$ssl_client_escaped_cert`,
            // Envoy's SANITIZE_SET removes XFCC) or an empty one is "the client had no
            // certificate", never the TLS peer's, which is the proxy's own. Without it, the
            // TLS peer's certificate is the request's.
            let Some(f) = forwarded else {
                return Ok(tls.map(thumbprint_of));
            };
            Ok(match from_header(headers, f)? {
                Stated::Certificate(t) => Some(t),
                Stated::NoCertificate | Stated::Nothing => None,
            })
        }
    }
}

/// What a trusted proxy's certificate header says.
enum Stated {
    /// No header: the proxy forwarded none (the client had no certificate).
    Nothing,
    /// An empty value: the client had no certificate (never the TLS peer's instead).
    NoCertificate,
    /// A certificate, by its thumbprint.
    Certificate(Thumbprint),
}

/// The certificate a trusted proxy forwarded in `f.header` (see [`Stated`]).
fn from_header(headers: &HeaderMap, f: &Forwarded) -> Result<Stated, Error> {
    let mut all = headers.get_all(&f.header).iter();
    let value: &HeaderValue = match (all.next(), all.next()) {
        (None, _) => return Ok(Stated::Nothing),
        (Some(v), None) => v,
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "more than one {} header: the proxy must send exactly one",
                f.header
            )))
        }
    };
    let raw = value.as_bytes().trim_ascii();
    // An empty value (and an empty RFC 8941 byte sequence, `::`, what a front that fills
    // `:<base64>:` from an empty placeholder sends) is the proxy saying "no certificate".
    if raw.is_empty() || (f.format == ForwardedFormat::Rfc9440 && raw == b"::") {
        return Ok(Stated::NoCertificate);
    }
    if raw.len() > MAX_FORWARDED_CERT_BYTES {
        return Err(bad(format!("the {} header is over 16 KiB", f.header)));
    }
    match f.format {
        ForwardedFormat::Rfc9440 => {
            let inner = raw
                .strip_prefix(b":")
                .and_then(|r| r.strip_suffix(b":"))
                .ok_or_else(|| bad("Client-Cert is not an RFC 8941 byte sequence (:<base64>:)"))?;
            let der =
                base64_standard(inner).ok_or_else(|| bad("Client-Cert does not hold base64"))?;
            certificate_der(&der)?;
            Ok(Stated::Certificate(thumbprint_of(&der)))
        }
        ForwardedFormat::Pem => {
            escaped_pem(raw).map(|der| Stated::Certificate(thumbprint_of(&der)))
        }
        ForwardedFormat::Xfcc => xfcc(raw).map(Stated::Certificate),
    }
}

/// Standard base64 (with or without padding), as RFC 8941 byte sequences and PEM use it.
fn base64_standard(input: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const STANDARD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    STANDARD.decode(input).ok()
}

/// Percent-decoding (`%XX`; `+` is kept: certificates are URL-encoded with `%20`, and `+` is
/// a base64 character).
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let h = hex(*input.get(i + 1)?)?;
            let l = hex(*input.get(i + 2)?)?;
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A URL-encoded PEM holding exactly one certificate: its DER.
fn escaped_pem(raw: &[u8]) -> Result<Vec<u8>, Error> {
    let pem = percent_decode(raw).ok_or_else(|| bad("bad percent-encoding"))?;
    let pem = std::str::from_utf8(&pem).map_err(|_| bad("the PEM is not text"))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem
        .find(BEGIN)
        .ok_or_else(|| bad("no PEM certificate (BEGIN CERTIFICATE)"))?;
    let body = &pem[start + BEGIN.len()..];
    let end = body
        .find(END)
        .ok_or_else(|| bad("the PEM certificate has no END line"))?;
    if body[end + END.len()..].contains("-----BEGIN") {
        return Err(bad(
            "more than one PEM block: only the client's certificate is taken",
        ));
    }
    if !pem[..start].trim().is_empty() {
        return Err(bad("text before the PEM certificate"));
    }
    let b64: Vec<u8> = body[..end]
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64_standard(&b64).ok_or_else(|| bad("the PEM certificate is not base64"))?;
    certificate_der(&der)?;
    Ok(der)
}

/// A plausibility check of a certificate's DER: one DER SEQUENCE spanning the whole input
/// (the certificate itself is the proxy's to have verified).
fn certificate_der(der: &[u8]) -> Result<(), Error> {
    let fail = || bad("not a DER certificate");
    if der.first() != Some(&0x30) {
        return Err(fail());
    }
    let (len, header) = match *der.get(1).ok_or_else(fail)? {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(*der.get(2).ok_or_else(fail)?), 3),
        0x82 => (
            usize::from(*der.get(2).ok_or_else(fail)?) << 8
                | usize::from(*der.get(3).ok_or_else(fail)?),
            4,
        ),
        _ => return Err(fail()),
    };
    if header + len != der.len() {
        return Err(fail());
    }
    Ok(())
}

/// Envoy's `x-forwarded-client-cert`: exactly one element (`forward_client_cert_details:
/// SANITIZE_SET`), whose `Cert` (URL-encoded PEM) gives the thumbprint, or, without one, its
/// `Hash` (64 hex digits). When both are present they must agree.
fn xfcc(raw: &[u8]) -> Result<Thumbprint, Error> {
    let text = std::str::from_utf8(raw).map_err(|_| bad("x-forwarded-client-cert is not text"))?;
    let elements = split_quoted(text, ',');
    if elements.len() != 1 {
        return Err(bad(
            "x-forwarded-client-cert has more than one element (configure Envoy with SANITIZE_SET)",
        ));
    }
    let (mut hash, mut cert) = (None, None);
    for pair in split_quoted(elements[0], ';') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(bad("x-forwarded-client-cert: a pair without ="));
        };
        let v = unquote(v.trim()).ok_or_else(|| bad("x-forwarded-client-cert: bad quoting"))?;
        let slot = match k.trim().to_ascii_lowercase().as_str() {
            "hash" => &mut hash,
            "cert" => &mut cert,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(bad("x-forwarded-client-cert: a key twice"));
        }
    }
    let from_hash = match &hash {
        Some(h) => {
            let b = h.as_bytes();
            if b.len() != 64 {
                return Err(bad("x-forwarded-client-cert: Hash is not 64 hex digits"));
            }
            let mut t = [0u8; 32];
            for (i, pair) in b.chunks(2).enumerate() {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(pair[0]), hex(pair[1])) {
                    (Some(h), Some(l)) => t[i] = (h * 16 + l) as u8,
                    _ => return Err(bad("x-forwarded-client-cert: Hash is not hex")),
                }
            }
            Some(t)
        }
        None => None,
    };
    let from_cert = match &cert {
        Some(c) => Some(thumbprint_of(&escaped_pem(c.as_bytes())?)),
        None => None,
    };
    match (from_cert, from_hash) {
        (Some(c), Some(h)) if !constant_time_eq(&c, &h) => Err(bad(
            "x-forwarded-client-cert: Hash is not the SHA-256 of Cert",
        )),
        (Some(c), _) => Ok(c),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(bad("x-forwarded-client-cert has neither Cert nor Hash")),
    }
}

/// `s` split on `sep` outside double-quoted strings (a `\` escapes the next character).
fn split_quoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A value, its quotes removed and escapes resolved; `None` for an unterminated quote.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains('"')).then(|| v.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The binding check of a verified token under `mode`, given the request's certificate
/// thumbprint (`cert`, from [`resolve`]): `Ok` when the token may be used on this request.
/// See the module docs; every refusal is 401 `invalid_token`.
pub fn check(mode: Mode, token: &Verified, cert: Option<&Thumbprint>) -> Result<(), Error> {
    if mode == Mode::Off {
        return Ok(());
    }
    // Most tokens are not bound: without `cnf` in the claims text (and no `\u` escape that
    // could spell it), there is no `cnf` member, and no parse is needed.
    let bound = if !token.may_have_cnf() {
        None
    } else {
        cnf_thumbprint(token)?
    };
    let Some(bound) = bound else {
        return match mode {
            Mode::Require => Err(Error::new(
                Reason::MtlsTokenNotBound,
                "this route takes only certificate-bound tokens (cnf[\"x5t#S256\"])",
            )),
            _ => Ok(()),
        };
    };
    let Some(cert) = cert else {
        return Err(Error::new(
            Reason::MtlsCertificateMissing,
            "the token is bound to a client certificate and the request came without one",
        ));
    };
    let mut want = [0u8; 32];
    if jwtd_core::b64::decode_slice(bound.as_bytes(), &mut want) != Some(32) {
        return Err(Error::new(
            Reason::MtlsCertificateMismatch,
            "cnf[\"x5t#S256\"] is not a base64url SHA-256 thumbprint",
        ));
    }
    if !constant_time_eq(&want, cert) {
        return Err(Error::new(
            Reason::MtlsCertificateMismatch,
            "the token is bound to another client certificate",
        ));
    }
    Ok(())
}

/// The refusal of a token whose `cnf` claim is not a JSON object (`null` included): RFC 7800
/// section 3.1 makes it one, so such a token is malformed (`malformed`), never read as
/// unbound. The DPoP check ([`crate::dpop::check`]) and this module's refuse it alike.
pub fn malformed_cnf() -> Error {
    Error::new(
        Reason::Malformed,
        "the token's cnf claim is not a JSON object (RFC 7800)",
    )
}

/// `Err(`[`malformed_cnf`]`)` when the verified token has a `cnf` claim that is not an
/// object; `Ok` for one without `cnf` or with an object (read without parsing the claims
/// when the token cannot have one, [`Verified::may_have_cnf`]).
pub fn cnf_shape(token: &Verified) -> Result<(), Error> {
    if token.may_have_cnf() && matches!(token.claim("cnf"), Some(v) if !v.is_object()) {
        return Err(malformed_cnf());
    }
    Ok(())
}

/// The token's `cnf["x5t#S256"]`, if it has one; a `cnf` that is not an object is
/// [`malformed_cnf`], a thumbprint that is not a string `mtls_certificate_mismatch`.
fn cnf_thumbprint(token: &Verified) -> Result<Option<String>, Error> {
    Ok(match token.claim("cnf") {
        None => None,
        Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(Error::new(
                    Reason::MtlsCertificateMismatch,
                    "cnf[\"x5t#S256\"] is not a string",
                ))
            }
        },
        Some(_) => return Err(malformed_cnf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_elements_and_quotes() {
        assert_eq!(
            split_quoted(r#"a="x,y";b=1,c=2"#, ','),
            vec![r#"a="x,y";b=1"#, "c=2"]
        );
        assert_eq!(unquote(r#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(unquote(r#""a"#), None);
    }

    #[test]
    fn der_plausibility() {
        assert!(certificate_der(&[0x30, 0x01, 0x00]).is_ok());
        assert!(certificate_der(&[0x30, 0x02, 0x00]).is_err());
        assert!(certificate_der(&[0x31, 0x01, 0x00]).is_err());
        assert!(certificate_der(&[]).is_err());
    }
}
