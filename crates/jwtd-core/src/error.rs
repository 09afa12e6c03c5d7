//! One error type with stable reason codes.
//!
//! Every rejection jwtd makes carries a [`Reason`]: a stable, machine-readable code (its
//! [`Reason::as_str`] name never changes) plus a human message. Messages name the claim and the
//! expected vs. found value where that is safe; they never echo a secret or a whole token.

use std::borrow::Cow;
use std::fmt;

/// Why a token (or a key) was rejected. The names returned by [`Reason::as_str`] are a stable
/// interface: services, logs and metrics key on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// The token is not a well-formed compact JWS: bad base64url, bad JSON, duplicate members,
    /// unsupported `crit`, JWE, nesting too deep, malformed numeric dates.
    Malformed,
    /// The `alg` is not one jwtd implements (including `none`, which is never implemented).
    UnsupportedAlgorithm,
    /// The `alg` is implemented but not allowed by the policy, or not the algorithm the selected
    /// key is pinned to.
    AlgorithmNotAllowed,
    /// No configured key matches the token's `kid` (or, without `kid`, none fits its `alg`).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (after leeway).
    Expired,
    /// `nbf` is in the future (after leeway).
    NotYetValid,
    /// `iat` is in the future (after leeway).
    IssuedInFuture,
    /// `iss` is not one of the accepted issuers.
    WrongIssuer,
    /// `aud` does not name an accepted audience.
    WrongAudience,
    /// The header `typ` is not the expected one.
    WrongType,
    /// A required claim is absent.
    MissingClaim,
    /// A claim check (equals, one-of, contains) failed.
    ClaimMismatch,
    /// The token (from `iat`) or the authentication (from `auth_time`) is older than allowed.
    TooOld,
    /// The token is longer than the configured limit; nothing was decoded.
    TokenTooLarge,
    /// A key is too weak to be used (short RSA modulus, short HMAC secret).
    WeakKey,
    /// The issuer's keys could not be fetched (remote key sources: never fetched yet, or the
    /// last good set is older than the stale-if-error limit).
    KeyFetchFailed,
    /// The request carried no token at all (services only).
    MissingToken,
    /// The token was revoked: by its `jti`, by its subject (every token issued before a
    /// time), or by the key that signed it.
    Revoked,
    /// The revocation list could not be kept fresh (shared store unreachable for longer than
    /// the configured staleness limit) and the service is configured to refuse rather than
    /// risk accepting a revoked token.
    RevocationUnavailable,
    /// With revocation on, the token's lifetime (`exp` − `iat`) is longer than the longest one
    /// revocation entries are kept for (`max_token_lifetime`), or it has no `iat` or `exp` to
    /// bound it: a revocation could expire before the token does.
    LifetimeTooLong,
    /// The token verified, but its subject or a claim mapped to a forward-auth identity header
    /// cannot be sent as a header value under the documented encoding (services only): it is
    /// refused rather than forwarded as an empty or altered identity.
    UnrepresentableClaim,
    /// The request carried more than one token: several `Authorization` headers, or a token in
    /// more than one place (header, cookie, query parameter, body), or the same cookie or
    /// parameter twice (services only; RFC 6750 section 3.1 `invalid_request`).
    MultipleTokens,
    /// The token verified, but it lacks a scope the matched rule requires (services only;
    /// answered with the RFC 6750 `scope` challenge parameter).
    MissingScope,
    /// Rules are configured and none matches the request, and the default is to deny
    /// (services only).
    NoMatchingRule,
    /// The request path cannot be matched safely: an encoded slash in a segment (by default),
    /// an empty segment, bad percent-encoding, NUL or invalid UTF-8 once decoded, too long
    /// (services only).
    BadPath,
    /// The request's headers cannot be decided on as they are: more of them, or more bytes,
    /// than the front accepts, or a name or value that is not valid HTTP (Envoy ext_authz:
    /// the `CheckRequest` header map; services only).
    BadHeaders,
    /// Proxy mode: the request was allowed but the upstream could not be reached (connection
    /// refused or reset, TLS failure, the connection closed before a response head); answered
    /// 502 without any internal detail (services only).
    UpstreamUnavailable,
    /// Proxy mode: the request was allowed but the upstream took longer than the configured
    /// timeout to connect, to send its response head, or between two body chunks; answered 504
    /// (services only).
    UpstreamTimeout,
    /// The token is bound to a client certificate (RFC 8705 `cnf["x5t#S256"]`), or the rule or
    /// issuer requires mTLS-bound tokens, and the request came without one (services only).
    MtlsCertificateMissing,
    /// The token's `cnf["x5t#S256"]` is not the SHA-256 thumbprint of the request's client
    /// certificate, or is not a base64url SHA-256 digest (services only).
    MtlsCertificateMismatch,
    /// mTLS-bound tokens are required (`[issuer.mtls] mode = "require"`, or the rule's `mtls`)
    /// and the token has no `cnf["x5t#S256"]` (services only).
    MtlsTokenNotBound,
    /// A trusted proxy forwarded a client certificate that cannot be read (bad encoding, not
    /// one certificate, over the size limit), or ext_authz's `source.certificate` is one
    /// (services only).
    MtlsBadForwardedCertificate,
    /// A DPoP refusal (RFC 9449; services only): the request's proof, or the binding of its
    /// token to the proof's key, or the way the token was presented. Its code is the
    /// [`crate::DpopReason`]'s (`dpop_htm_mismatch`, ...); answered 401 with a
    /// `WWW-Authenticate: DPoP` challenge (503 for `dpop_replay_unavailable`).
    Dpop(crate::DpopReason),
}

/// The `error` a [`Reason`] is reported with: an RFC 6750 section 3.1 code for the three
/// answers that are about the request's token, and `temporarily_unavailable` (the RFC 6749
/// section 4.1.2.1 name; RFC 6750 has no code for a server-side failure) when the server
/// cannot decide now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BearerError {
    /// `invalid_token`: answer 401.
    InvalidToken,
    /// `insufficient_scope`: answer 403.
    InsufficientScope,
    /// `invalid_request`: answer 400 (the request itself is malformed, e.g. several tokens).
    InvalidRequest,
    /// `temporarily_unavailable`: answer 503. Nothing is known to be wrong with the token, so
    /// the `WWW-Authenticate` challenge carries no `error` (see [`Reason::challenge_error`]);
    /// the JSON body names it.
    TemporarilyUnavailable,
}

impl BearerError {
    /// The name: the RFC 6750 code, or `temporarily_unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
            BearerError::InvalidRequest => "invalid_request",
            BearerError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// The gRPC status code a [`Reason`] is answered with (the numbers of `grpc/status.proto`,
/// without depending on a gRPC library).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3): the request is malformed (several tokens).
    InvalidArgument = 3,
    /// `PERMISSION_DENIED` (7): the token is good but not for this call.
    PermissionDenied = 7,
    /// `UNAVAILABLE` (14): the server cannot decide now; retry later.
    Unavailable = 14,
    /// `UNAUTHENTICATED` (16): no token, or one that cannot be trusted.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The numeric code, as sent in `grpc-status`.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The canonical name, e.g. `UNAUTHENTICATED`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// Seconds a client is told to wait (`Retry-After`) before retrying a request refused because
/// the server cannot decide now ([`Reason::retry_after`]).
pub const RETRY_AFTER_SECS: u32 = 5;

impl Reason {
    /// Every reason, in declaration order, but the DPoP ones ([`Reason::Dpop`] of each of
    /// [`crate::DpopReason::ALL`], listed apart in docs/security.md).
    pub const ALL: [Reason; 33] = [
        Reason::Malformed,
        Reason::UnsupportedAlgorithm,
        Reason::AlgorithmNotAllowed,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::WrongType,
        Reason::MissingClaim,
        Reason::ClaimMismatch,
        Reason::TooOld,
        Reason::TokenTooLarge,
        Reason::WeakKey,
        Reason::KeyFetchFailed,
        Reason::MissingToken,
        Reason::Revoked,
        Reason::RevocationUnavailable,
        Reason::LifetimeTooLong,
        Reason::UnrepresentableClaim,
        Reason::MultipleTokens,
        Reason::MissingScope,
        Reason::NoMatchingRule,
        Reason::BadPath,
        Reason::BadHeaders,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::MtlsCertificateMissing,
        Reason::MtlsCertificateMismatch,
        Reason::MtlsTokenNotBound,
        Reason::MtlsBadForwardedCertificate,
    ];

    /// The stable reason code, e.g. `bad_signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongType => "wrong_type",
            Reason::MissingClaim => "missing_claim",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::TooOld => "too_old",
            Reason::TokenTooLarge => "token_too_large",
            Reason::WeakKey => "weak_key",
            Reason::KeyFetchFailed => "key_fetch_failed",
            Reason::MissingToken => "missing_token",
            Reason::Revoked => "revoked",
            Reason::RevocationUnavailable => "revocation_unavailable",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::UnrepresentableClaim => "unrepresentable_claim",
            Reason::MultipleTokens => "multiple_tokens",
            Reason::MissingScope => "missing_scope",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::BadPath => "bad_path",
            Reason::BadHeaders => "bad_headers",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::MtlsCertificateMissing => "mtls_certificate_missing",
            Reason::MtlsCertificateMismatch => "mtls_certificate_mismatch",
            Reason::MtlsTokenNotBound => "mtls_token_not_bound",
            Reason::MtlsBadForwardedCertificate => "mtls_bad_forwarded_certificate",
            Reason::Dpop(r) => r.as_str(),
        }
    }

    /// The `error` this reason is reported with. Only a failed claim check (a scope or a
    /// claim value the route demands) is `insufficient_scope`, only a request carrying several
    /// tokens, or a path or header set that cannot be taken safely, is `invalid_request`, and
    /// only the answers about the server rather than the token (`key_fetch_failed`,
    /// `revocation_unavailable`, and the proxy's `upstream_unavailable` and `upstream_timeout`)
    /// are `temporarily_unavailable`; everything else means the token
    /// itself cannot be trusted (or used): `invalid_token`.
    ///
    /// This, [`Reason::http_status`], [`Reason::grpc_code`] and [`Reason::retry_after`] are
    /// the one mapping the service, the tower layer and the command line answer with.
    pub fn bearer_error(self) -> BearerError {
        match self {
            Reason::ClaimMismatch | Reason::MissingScope | Reason::NoMatchingRule => {
                BearerError::InsufficientScope
            }
            Reason::MultipleTokens | Reason::BadPath | Reason::BadHeaders => {
                BearerError::InvalidRequest
            }
            Reason::KeyFetchFailed
            | Reason::RevocationUnavailable
            | Reason::UpstreamUnavailable
            | Reason::UpstreamTimeout
            | Reason::Dpop(crate::DpopReason::ReplayUnavailable)
            | Reason::Dpop(crate::DpopReason::ReplayKeyLimit) => {
                BearerError::TemporarilyUnavailable
            }
            _ => BearerError::InvalidToken,
        }
    }

    /// The `error` the `WWW-Authenticate` challenge names (with an `error_description`), if
    /// any. None for `missing_token` (RFC 6750 section 3.1: a request without authentication
    /// gets no error code) and for `temporarily_unavailable`, which is no RFC 6750 code: a
    /// client that read `invalid_token` there would throw away a good token, so a 503
    /// challenges with a bare `Bearer realm=...`, like a request without a token.
    pub fn challenge_error(self) -> Option<BearerError> {
        match (self, self.bearer_error()) {
            (Reason::MissingToken, _) | (_, BearerError::TemporarilyUnavailable) => None,
            (_, e) => Some(e),
        }
    }

    /// The HTTP status this reason is answered with: 401, 403 (`insufficient_scope`), 400
    /// (`invalid_request`) or 503 (`temporarily_unavailable`); the proxy's upstream failures
    /// are 502 (`upstream_unavailable`) and 504 (`upstream_timeout`).
    pub fn http_status(self) -> u16 {
        match self {
            Reason::UpstreamUnavailable => return 502,
            Reason::UpstreamTimeout => return 504,
            _ => {}
        }
        match self.bearer_error() {
            BearerError::InvalidToken => 401,
            BearerError::InsufficientScope => 403,
            BearerError::InvalidRequest => 400,
            BearerError::TemporarilyUnavailable => 503,
        }
    }

    /// The gRPC status this reason is answered with: `UNAUTHENTICATED`, `PERMISSION_DENIED`
    /// (`insufficient_scope`), `INVALID_ARGUMENT` (`invalid_request`) or `UNAVAILABLE`
    /// (`temporarily_unavailable`).
    pub fn grpc_code(self) -> GrpcCode {
        match self.bearer_error() {
            BearerError::InvalidToken => GrpcCode::Unauthenticated,
            BearerError::InsufficientScope => GrpcCode::PermissionDenied,
            BearerError::InvalidRequest => GrpcCode::InvalidArgument,
            BearerError::TemporarilyUnavailable => GrpcCode::Unavailable,
        }
    }

    /// The `Retry-After` (seconds) an HTTP answer carries: [`RETRY_AFTER_SECS`] for the
    /// reasons that are temporary (503), none otherwise (the proxy's 502 and 504 carry none:
    /// the upstream may have acted on a request that is not safe to repeat).
    pub fn retry_after(self) -> Option<u32> {
        (self.http_status() == 503).then_some(RETRY_AFTER_SECS)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: a stable [`Reason`] and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    reason: Reason,
    message: Cow<'static, str>,
}

impl Error {
    /// A new error. Callers must never put secrets or whole tokens in `message`.
    pub fn new(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            reason,
            message: message.into(),
        }
    }

    /// The stable reason code.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn malformed(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(Reason::Malformed, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::DpopError> for Error {
    fn from(e: crate::DpopError) -> Error {
        Error::new(Reason::Dpop(e.reason()), e.message().to_owned())
    }
}

/// Why a key could not be imported or used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    weak: bool,
    message: String,
}

impl KeyError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        KeyError {
            weak: false,
            message: message.into(),
        }
    }

    pub(crate) fn weak(message: impl Into<String>) -> Self {
        KeyError {
            weak: true,
            message: message.into(),
        }
    }

    /// True when the key was refused as too weak (reason `weak_key`).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            write!(f, "weak_key: {}", self.message)
        } else {
            write!(f, "invalid key: {}", self.message)
        }
    }
}

impl std::error::Error for KeyError {}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        let reason = if e.weak {
            Reason::WeakKey
        } else {
            Reason::Malformed
        };
        Error::new(reason, e.message)
    }
}
