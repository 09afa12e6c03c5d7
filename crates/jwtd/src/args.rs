//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use jwtd_core::Algorithm;
use std::path::PathBuf;

/// jwtd: verify and issue JSON Web Tokens, strictly and fast.
#[derive(Parser, Debug)]
#[command(
    name = "jwtd",
    version,
    about,
    after_help = "Exit codes: 0 ok, 1 token rejected or remote keys unreachable (JSON error on stderr), \
2 usage, configuration or key error.\n\n\
Examples:\n  jwtd keygen --alg ES256 --out signing.pem --public-out jwks.json\n  \
TOKEN=$(jwtd sign --key signing.pem --iss https://id.example --aud api --sub alice --ttl 10m)\n  \
jwtd verify \"$TOKEN\" --jwks jwks.json --alg ES256 --iss https://id.example --aud api\n  \
jwtd decode \"$TOKEN\""
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a token's header and claims WITHOUT verifying anything.
    #[command(
        after_help = "Examples:\n  jwtd decode eyJhbGciOi...\n  echo \"$TOKEN\" | jwtd decode -"
    )]
    Decode(DecodeArgs),
    /// Verify a token's signature and claims; print the claims as JSON.
    #[command(after_help = "Exit 0 with the verified claims on stdout; exit 1 with \
{\"error\":\"invalid_token\",\"reason\":\"<code>\",\"message\":...} on stderr when the token is rejected, \
and with reason key_fetch_failed when --jwks-url/--discovery could not be reached within --fetch-timeout \
(timeouts, network errors, error statuses are retried until then); exit 2 at once for usage or key errors, \
including a key source that answers with something unusable (discovery issuer mismatch, no usable key, \
a refused URL or redirect, a malformed or oversized document).\n\n\
Examples:\n  jwtd verify \"$TOKEN\" --jwks jwks.json --alg RS256 --iss https://id.example/ --aud https://api.example\n  \
jwtd verify \"$TOKEN\" --secret-env APP_SECRET --alg HS256 --claim client_id=my-api-key --any-aud\n  \
jwtd verify \"$TOKEN\" --key public.pem --alg ES256 --aud example.com --max-auth-age 300\n  \
jwtd verify \"$TOKEN\" --discovery https://tenant.example/ --alg RS256 --iss https://tenant.example/ --aud https://api.example\n  \
jwtd verify \"$TOKEN\" --jwks wallet.json --alg RS256 --aud partner-42 --claim-contains scope=payments")]
    Verify(Box<VerifyArgs>),
    /// Sign a new token with a private key or secret; print it.
    #[command(
        after_help = "Examples:\n  jwtd sign --key signing.pem --iss https://id.example --sub alice --aud api --ttl 10m\n  \
jwtd sign --secret-env APP_SECRET --alg HS256 --claim client_id=my-api-key --claim admin=true\n  \
jwtd sign --key rsa.pem --alg RS256 --claims-json claims.json --ttl 1h"
    )]
    Sign(SignArgs),
    /// Generate a key pair (or an HMAC secret); the private file is created with mode 0600.
    #[command(
        after_help = "Examples:\n  jwtd keygen --alg ES256 --out signing.pem --public-out jwks.json\n  \
jwtd keygen --alg RS256 --bits 3072 --kid 2026-11 --out rsa.pem\n  \
jwtd keygen --alg HS256 --out secret.jwk"
    )]
    Keygen(KeygenArgs),
    /// Run the verification service (HTTP): verify API, forward-auth, introspection, metrics.
    #[command(
        after_help = "Endpoints: GET|POST /v1/verify, GET /v1/tokens/{token}, /auth (forward-auth), \
POST /introspect, /healthz, /readyz, /metrics, POST /admin/reload; with [signing]: /.well-known/jwks.json, \
/.well-known/openid-configuration, POST /v1/tokens; with [revocation]: POST|GET /v1/revocations. \
Without --config: the embedded issuer (signing and revocation) in ./jwtd-data. SIGHUP reloads the configuration; SIGTERM or Ctrl-C drains requests in progress for at most \
[server] shutdown_timeout (10 s) and exits. Connections and requests are bounded by [server] \
(header, idle and request timeouts, max_connections, body limits); keep LimitNOFILE above \
max_connections + 256.\n\n\
Examples:\n  jwtd serve --config jwtd.toml\n  \
jwtd serve --listen 127.0.0.1:8080 --issuer https://tenant.example/ --audience https://api.example\n  \
jwtd serve --issuer https://auth.example --audience example.com --alg ES256"
    )]
    Serve(ServeArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the issuer's key ring in the data directory, or in the shared PostgreSQL store
    /// with --store (works while `jwtd serve` runs; instances pick changes up within a minute,
    /// at once on PostgreSQL).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tokens from the issuer's key ring.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Turn public (or private) key PEM files into a JWKS of public keys on stdout.
    #[command(
        after_help = "Examples:\n  jwtd jwks signing.pem old-signing.pem > jwks.json\n  \
jwtd jwks --alg PS256 rsa-public.pem"
    )]
    Jwks(JwksArgs),
}

/// `jwtd serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address (overrides the file; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Accept tokens from this OIDC issuer (keys by discovery), without a configuration file.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub issuer: Option<String>,
    /// Accepted audience for --issuer (repeatable).
    #[arg(long, value_name = "AUD", requires = "issuer")]
    pub audience: Vec<String>,
    /// Algorithms for --issuer (default RS256).
    #[arg(
        long = "alg",
        value_name = "ALG",
        value_delimiter = ',',
        requires = "issuer"
    )]
    pub algs: Vec<Algorithm>,
}

/// `jwtd config ...`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a configuration file; print every error with its line.
    #[command(after_help = "Examples:\n  jwtd config check jwtd.toml")]
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Where the issuer's store is.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the key store (the KEK comes from JWTD_KEK or <dir>/kek.key).
    #[arg(long, value_name = "DIR", default_value = "./jwtd-data")]
    pub data_dir: PathBuf,
    /// The shared PostgreSQL key store (`postgres://...`) instead of the SQLite file in the
    /// data directory; the KEK must be the instances' (JWTD_KEK, or <dir>/kek.key if present).
    /// Running instances pick changes up at once (NOTIFY).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Schema of the shared store (as in the service's `store_schema`).
    #[arg(long, value_name = "NAME", requires = "store")]
    pub store_schema: Option<String>,
}

/// `jwtd keys ...`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List keys with their state and schedule.
    #[command(
        after_help = "Examples:\n  jwtd keys list\n  jwtd keys list --data-dir /var/lib/jwtd"
    )]
    List(StoreArgs),
    /// Start a rotation: a new key, published now, signing after the publish lead.
    #[command(
        after_help = "Examples:\n  jwtd keys rotate\n  jwtd keys rotate --alg RS256 --publish-lead 2h"
    )]
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Algorithm of the new key.
        #[arg(long, default_value = "ES256")]
        alg: Algorithm,
        /// How long the new key is published before it signs.
        #[arg(long, default_value = "1h", value_parser = parse_seconds)]
        publish_lead: u64,
    },
    /// Stop a key from signing; it stays published until its tokens expired (max ttl + grace).
    #[command(after_help = "Examples:\n  jwtd keys retire KID")]
    Retire {
        #[command(flatten)]
        store: StoreArgs,
        /// The key id (kids are base64url and may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Longest token lifetime the issuer mints.
        #[arg(long, default_value = "1h", value_parser = parse_seconds)]
        max_ttl: u64,
        /// Extra publication time.
        #[arg(long, default_value = "10m", value_parser = parse_seconds)]
        grace: u64,
    },
    /// Emergency removal of a compromised key: unpublished at once; a new key signs if it was
    /// the signing key.
    #[command(after_help = "Examples:\n  jwtd keys remove KID")]
    Remove {
        #[command(flatten)]
        store: StoreArgs,
        /// The key id (kids are base64url and may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Print the published public keys as a JWKS.
    #[command(after_help = "Examples:\n  jwtd keys export-public > jwks.json")]
    ExportPublic(StoreArgs),
}

/// `jwtd token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Mint a token with the ring's signing key.
    #[command(
        after_help = "Examples:\n  jwtd token mint --iss https://auth.example.com --sub alice --aud partner-42 --ttl 10m"
    )]
    Mint {
        #[command(flatten)]
        store: StoreArgs,
        /// `iss` claim (the issuer URL jwtd serves under).
        #[arg(long)]
        iss: String,
        /// `sub` claim.
        #[arg(long)]
        sub: String,
        /// `aud` claim (repeat for an array).
        #[arg(long = "aud")]
        aud: Vec<String>,
        /// Lifetime (at most --max-ttl).
        #[arg(long, default_value = "10m", value_parser = parse_seconds)]
        ttl: u64,
        /// The longest lifetime allowed, as `[signing] max_ttl` caps `POST /v1/tokens` (keys
        /// stay published max ttl + grace after they stop signing; a longer token would outlive
        /// its key's publication and any revocation of it).
        #[arg(long, default_value = "1h", value_parser = parse_seconds)]
        max_ttl: u64,
        /// Extra claim NAME=VALUE (JSON if it parses as JSON, else a string).
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
    },
}

/// `jwtd decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The token, or `-` (the default) to read it from stdin.
    pub token: Option<String>,
}

/// Where verification keys come from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct KeySource {
    /// A JWKS file (`{"keys": [...]}`).
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// A PEM public key (SPKI or PKCS#1; a private key PEM also works).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// A file holding an HMAC secret (raw bytes; one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding an HMAC secret.
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Fetch the keys from this JWKS URL (HTTPS, or HTTP to loopback).
    #[arg(long, value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Fetch the keys through OIDC discovery of this issuer (its discovery document must name
    /// exactly this issuer).
    #[arg(long, value_name = "ISSUER_URL")]
    pub discovery: Option<String>,
}

/// Options for fetching remote keys.
#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// Extra CA certificates (PEM bundle) to trust for --jwks-url/--discovery.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Allow plain HTTP to non-loopback hosts for --jwks-url/--discovery.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// How long to wait for remote keys (seconds or a duration): fetches that time out, fail
    /// to connect or get an error status are retried until then (then exit 1,
    /// key_fetch_failed); an unusable answer exits 2 at once.
    #[arg(long, value_name = "S", default_value = "10", value_parser = parse_seconds)]
    pub fetch_timeout: u64,
}

/// `jwtd verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The token, or `-` (the default) to read it from stdin.
    pub token: Option<String>,
    #[command(flatten)]
    pub keys: KeySource,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Allowed algorithm(s); required, repeat or comma-separate for several. `none` never works.
    #[arg(
        long = "alg",
        value_name = "ALG",
        required = true,
        value_delimiter = ','
    )]
    pub algs: Vec<Algorithm>,
    /// Key id for a --key or --secret key (by default such a key matches any kid).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// Accepted issuer (repeatable).
    #[arg(long = "iss", value_name = "ISSUER")]
    pub issuers: Vec<String>,
    /// Accepted audience (repeatable; the token must name one of them).
    #[arg(long = "aud", value_name = "AUDIENCE")]
    pub audiences: Vec<String>,
    /// Require the token to name every --aud, not just one.
    #[arg(long, requires = "audiences")]
    pub aud_all: bool,
    /// Skip the audience check (tokens with `aud` are otherwise refused when no --aud is given).
    #[arg(long, conflicts_with = "audiences")]
    pub any_aud: bool,
    /// Clock-skew allowance (seconds, or a duration such as `1m`).
    #[arg(long, value_name = "S", default_value = "30", value_parser = parse_seconds)]
    pub leeway: u64,
    /// Maximum token age from `iat` (seconds or duration).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub max_age: Option<u64>,
    /// Maximum age of the authentication from `auth_time` (seconds or duration).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub max_auth_age: Option<u64>,
    /// Required header `typ` (e.g. `at+jwt`).
    #[arg(long, value_name = "T")]
    pub typ: Option<String>,
    /// A claim that must be present (repeatable; dotted paths and namespaced names work).
    #[arg(long = "require", value_name = "CLAIM")]
    pub required: Vec<String>,
    /// A claim that must equal VALUE (JSON if it parses as JSON, else a string). Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// A claim (array, or space-separated string such as `scope`) that must contain ITEM.
    #[arg(long = "claim-contains", value_name = "NAME=ITEM")]
    pub contains: Vec<String>,
    /// A claim that must equal one of comma-separated values.
    #[arg(long = "claim-one-of", value_name = "NAME=V1,V2")]
    pub one_of: Vec<String>,
    /// Accept tokens without `exp` (they are refused by default).
    #[arg(long)]
    pub allow_no_exp: bool,
    /// Verify as if the time were UNIX (seconds since the epoch).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
}

/// `jwtd sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// Private key: a PEM (PKCS#8, PKCS#1, SEC1) or a private JWK JSON file.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["secret_file", "secret_env"])]
    pub key: Option<PathBuf>,
    /// A file holding an HMAC secret (one trailing newline is ignored).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "secret_env"])]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding an HMAC secret.
    #[arg(long, value_name = "VAR", conflicts_with = "key")]
    pub secret_env: Option<String>,
    /// Algorithm (needed for RSA keys and secrets; EC and Ed25519 keys imply theirs).
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Algorithm>,
    /// Key id for the header (default: the key's own kid, else its RFC 7638 thumbprint).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// `iss` claim.
    #[arg(long)]
    pub iss: Option<String>,
    /// `sub` claim.
    #[arg(long)]
    pub sub: Option<String>,
    /// `aud` claim (repeat for an array).
    #[arg(long = "aud")]
    pub aud: Vec<String>,
    /// Lifetime: `exp` = now + TTL (seconds or a duration such as `10m`, `24h`).
    #[arg(long, value_name = "TTL", default_value = "1h", value_parser = parse_seconds)]
    pub ttl: u64,
    /// Extra claim NAME=VALUE (VALUE is JSON if it parses as JSON, else a string). Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// A JSON object file of claims to start from.
    #[arg(long, value_name = "FILE")]
    pub claims_json: Option<PathBuf>,
    /// Header `typ` (default `JWT`).
    #[arg(long, value_name = "T")]
    pub typ: Option<String>,
    /// Sign as if the time were UNIX (sets `iat`, and `exp` from it).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
}

/// `jwtd keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Algorithm the key is for.
    #[arg(long, value_name = "ALG")]
    pub alg: Algorithm,
    /// RSA modulus size (2048, 3072 or 4096).
    #[arg(long, default_value_t = 2048)]
    pub bits: usize,
    /// Key id (default: the RFC 7638 thumbprint of the public key).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// Private key output (PKCS#8 PEM; a JWK for HMAC secrets), created with mode 0600.
    #[arg(long, value_name = "PRIVATE")]
    pub out: PathBuf,
    /// Also write the public key as a JWKS here.
    #[arg(long, value_name = "JWKS")]
    pub public_out: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `jwtd jwks`.
#[derive(Args, Debug)]
pub struct JwksArgs {
    /// PEM files (public or private keys; only public parts are written).
    #[arg(required = true, value_name = "PEM")]
    pub pems: Vec<PathBuf>,
    /// Algorithm for RSA keys (EC and Ed25519 keys imply theirs).
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Algorithm>,
}

/// Parses `30`, `30s`, `10m`, `24h` into seconds.
pub fn parse_seconds(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{s:?} is not seconds or a duration like 90s, 10m, 24h: {e}"))
}
