//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use jwtd_core::Algorithm;
use std::path::PathBuf;

/// The default help layout with `lines` after it as examples, one command a line. clap wraps
/// `after_help` text to the terminal's width, but never a template's own text: an example is
/// never cut in the middle and can be pasted as it is.
fn examples(lines: &[&str]) -> String {
    let mut t = String::from(
        "{before-help}{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}{after-help}\n\nExamples:\n",
    );
    for l in lines {
        t.push_str("  ");
        t.push_str(l);
        t.push('\n');
    }
    t
}

/// jwtd: verify and issue JSON Web Tokens, strictly and fast.
#[derive(Parser, Debug)]
#[command(
    name = "jwtd",
    version,
    about,
    after_help = "Exit codes: 0 ok, 1 token rejected or remote keys unreachable (JSON error on stderr), \
or a request `jwtd rules test` denies, or a proof `jwtd dpop verify` refuses; 2 usage, configuration or key error.",
        help_template = examples(&[
            "jwtd keygen --alg ES256 --out signing.pem --public-out jwks.json",
            "TOKEN=$(jwtd sign --key signing.pem --iss https://id.example --aud api --sub alice --ttl 10m)",
            "jwtd verify \"$TOKEN\" --jwks jwks.json --alg ES256 --iss https://id.example --aud api",
            "jwtd decode \"$TOKEN\"",
        ])
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
        after_help = "Prints {\"header\", \"claims\", \"dates_utc\", \"expired\"} as JSON on stdout; \
on stderr, that nothing was verified and when the token expires (\"expires in 9 minutes\", \
\"expired 3 minutes ago\").",
        help_template = examples(&[
            "jwtd decode eyJhbGciOi...",
            "echo \"$TOKEN\" | jwtd decode -",
        ])
    )]
    Decode(DecodeArgs),
    /// Verify a token's signature and claims; print the claims as JSON.
    #[command(after_help = "Exit 0 with the verified claims on stdout; exit 1 with \
{\"error\":\"invalid_token\",\"reason\":\"<code>\",\"message\":...} on stderr when the token is rejected, \
and with reason key_fetch_failed when --jwks-url/--discovery could not be reached within --fetch-timeout \
(timeouts, network errors, error statuses are retried until then); an unknown_key message names \
the kids of a local --jwks/--key (at most 10); exit 2 at once for usage or key errors, \
including a key source that answers with something unusable (discovery issuer mismatch, no usable key, \
a refused URL or redirect, a malformed or oversized document).",
        help_template = examples(&[
            "jwtd verify \"$TOKEN\" --jwks jwks.json --alg RS256 --iss https://id.example/ --aud https://api.example",
            "jwtd verify \"$TOKEN\" --secret-env APP_SECRET --alg HS256 --claim client_id=12345 --any-aud",
            "jwtd verify \"$TOKEN\" --secret-file secret.jwk --alg HS256 --claim-json admin=true --any-aud",
            "jwtd verify \"$TOKEN\" --key public.pem --alg ES256 --aud example.com --max-auth-age 300",
            "jwtd verify \"$TOKEN\" --discovery https://tenant.example/ --alg RS256 --iss https://tenant.example/ --aud https://api.example",
            "jwtd verify \"$TOKEN\" --jwks wallet.json --alg RS256 --aud partner-42 --claim-contains scope=payments",
            "jwtd verify \"$TOKEN\" --config jwtd.toml",
            "jwtd verify \"$TOKEN\" --jwks jwks.json --alg ES256 --aud api --explain",
        ])
    )]
    Verify(Box<VerifyArgs>),
    /// Sign a new token with a private key or secret; print it.
    #[command(
        help_template = examples(&[
            "jwtd sign --key signing.pem --iss https://id.example --sub alice --aud api --ttl 10m",
            "jwtd sign --secret-env APP_SECRET --alg HS256 --claim client_id=12345 --claim-json admin=true",
            "jwtd sign --secret-file secret.jwk --sub alice",
            "jwtd sign --key rsa.pem --alg RS256 --claims-json claims.json --ttl 1h",
        ])
    )]
    Sign(SignArgs),
    /// Generate a key pair (or an HMAC secret); the private file is created with mode 0600.
    #[command(
        help_template = examples(&[
            "jwtd keygen --alg ES256 --out signing.pem --public-out jwks.json",
            "jwtd keygen --alg RS256 --bits 3072 --kid 2026-11 --out rsa.pem",
            "jwtd keygen --alg HS256 --out secret.jwk",
        ])
    )]
    Keygen(KeygenArgs),
    /// Run the verification service (HTTP): verify API, forward-auth, introspection, metrics.
    #[command(
        after_help = "Endpoints: GET|POST /v1/verify, GET /v1/tokens/{token}, /auth (forward-auth), \
POST /introspect, /healthz, /readyz, /metrics, POST /admin/reload; with [signing]: /.well-known/jwks.json, \
/.well-known/openid-configuration, POST /v1/tokens; with [revocation]: POST|GET /v1/revocations; \
with [dpop_replay]: DPoP proofs' jtis shared by every instance through PostgreSQL (issuers with \
replay_store = \"shared\"). Without --config: the embedded issuer (signing and revocation) in ./jwtd-data. The address is \
bound before anything is created: a taken port exits 2 and leaves no trace. Logs (and the \
start-up banner) go to stderr: RUST_LOG filters them (default info), log_format = \"json\" writes \
one JSON object per line, text is coloured only on a terminal. At start jwtd logs each issuer, \
its key source and readiness, then the address. SIGHUP reloads the configuration (the file, \
${VAR} values, secret and key files; listen and [server] need a restart); SIGTERM or Ctrl-C \
drains requests in progress for at most [server] shutdown_timeout (10 s) and exits. Connections and requests are bounded by [server] \
(header, idle and request timeouts, max_connections, body limits); keep LimitNOFILE above \
max_connections + 256.",
        help_template = examples(&[
            "jwtd serve --config jwtd.toml",
            "jwtd serve --listen 127.0.0.1:8080 --issuer https://tenant.example/ --audience https://api.example",
            "jwtd serve --issuer https://auth.example --audience example.com --alg ES256",
        ])
    )]
    Serve(ServeArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Per-route rules: what `jwtd serve` decides for a request, and the order rules match in.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Manage the issuer's key ring in the data directory, or in the shared PostgreSQL store
    /// with --store (works while `jwtd serve` runs; instances pick changes up within a minute,
    /// at once on PostgreSQL).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tokens from the issuer's key ring.
    #[command(subcommand)]
    Token(TokenCommand),
    /// DPoP (RFC 9449) proofs: make one for testing, or check one as a resource server does.
    #[command(subcommand)]
    Dpop(DpopCommand),
    /// Turn public (or private) key PEM files into a JWKS of public keys on stdout.
    #[command(
        help_template = examples(&[
            "jwtd jwks signing.pem old-signing.pem > jwks.json",
            "jwtd jwks --alg PS256 rsa-public.pem",
        ])
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
    /// Check a configuration file as `jwtd serve` does before it starts; print every error with
    /// its line.
    #[command(
        after_help = "The text (syntax, ${VAR} values, types, unknown keys, every rule) and the \
secrets and key files it names (admin key, introspection secret, HMAC secrets, PEM, JWKS and CA \
files; remote key sources are not fetched). A syntax error ends the check; otherwise every error \
is printed, one a line as FILE:LINE: message, in the file's order, and the exit code is 2. \
`jwtd serve`, a reload (SIGHUP, POST /admin/reload) and `jwtd verify --config` refuse a file with \
the same messages. A file that loads is reported ok on stdout; warnings about its rules (rules that \
load but probably do not do what was meant: a token-protected rule whose other methods or hosts \
fall back to a public one, default = \"public\", scopes under an optional requirement) follow on \
stderr, one a line as FILE: warning: message, naming each rule with its line; they do not change \
the exit code (0). `jwtd serve` logs the same warnings at start and after a reload.",
        help_template = examples(&[
            "jwtd config check jwtd.toml",
        ])
    )]
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// `jwtd rules ...`.
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Decide about one request as `jwtd serve` would (its /auth endpoint): allow or deny,
    /// the rule, the reason, the status, the challenge or the headers it would set.
    #[command(
        after_help = "The engine is built from --config as `jwtd serve` builds it (issuers, \
rules, token sources, jwtd's own [signing] issuer, revocation), binding nothing and creating or \
changing nothing: the key ring and the revocation store are opened read-only and must exist (a \
configuration whose store was never created exits 2 and says so); the key ring is read as \
stored, so a rotation step that falls due now (a pending key taking over, a retired key \
dropped) is not applied here, as `jwtd serve` applies it at its next tick. Remote keys (jwks_url, \
discovery) are fetched as `jwtd serve` fetches them, waiting at most --fetch-timeout for the \
token's issuer. The token is sent the way the configuration reads tokens (Authorization: Bearer, \
else the [tokens] cookie, else its query parameter) and is never printed: the output names it by \
a fingerprint (the first 12 hex digits of its SHA-256, as the service's logs do). Output: \
decision, rule (with its line; `default` when no rule matched and [rules] default decided), \
reason, status, issuer, and on deny the WWW-Authenticate challenge (and Retry-After), on allow \
every identity header /auth would answer with (empty ones included). --json prints one object: \
{\"decision\": \"allow\"|\"deny\", \"rule\": id|null, \"rule_line\": n|null, \"matched\": \
\"rule\"|\"default\"|\"no_rules\"|\"bad_path\", \"default\": \"deny\"|\"public\"|\"authenticated\"|null, \
\"status\": n, \"reason\", \"error\", \"message\": string|null, \"issuer\": name|null, \
\"www_authenticate\": string|null, \"retry_after\": n|null, \"headers\": {name: value}, \
\"token\": fingerprint|null}. Exit 0 allowed, 1 denied, 2 usage or configuration error.",
        help_template = examples(&[
            "jwtd rules test --config jwtd.toml --request 'GET https://api.example/healthz' --no-token",
            "jwtd rules test --config jwtd.toml --request 'POST https://api.example/v1/orders/7' --token \"$TOKEN\"",
            "jwtd rules test --config jwtd.toml --request 'GET https://api.example/v1/orders/7' --token-file token.txt --json",
            "jwtd rules test --config jwtd.toml --request 'GET https://api.example/v1/orders/7' --token \"$TOKEN\" --header 'X-Tenant: acme'",
        ])
    )]
    Test(RulesTestArgs),
    /// List the rules in the order they match (most specific first), the default action,
    /// then the warnings `jwtd config check` prints.
    #[command(
        after_help = "Each rule with its id and line, hosts, methods, path, header conditions, \
requirement, audiences, scopes, claim predicates, CORS preflight bypass, set_headers and \
specificity in words. The file is checked as `jwtd config check` checks its text (the secrets and \
key files it names are not read; nothing is fetched). --json prints {\"rules\": [{\"id\", \"line\", \
\"hosts\", \"methods\", \"path\", \"when_headers\", \"requirement\", \"audiences\", \"scopes\", \
\"claims\", \"cors_preflight_bypass\", \"set_headers\", \"specificity\"}], \"default\": \
\"deny\"|\"public\"|\"authenticated\", \"warnings\": [...]}. Exit 0, or 2 for an invalid file.",
        help_template = examples(&[
            "jwtd rules explain --config jwtd.toml",
            "jwtd rules explain --config jwtd.toml --json",
        ])
    )]
    Explain {
        /// The configuration `jwtd serve` runs with.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `jwtd rules test`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("token_source").required(true).args(["token", "token_file", "no_token"]))]
pub struct RulesTestArgs {
    /// The configuration `jwtd serve` runs with.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The request: `METHOD URL`, with an absolute http(s) URL (its host and its path and
    /// query are matched), e.g. `GET https://api.example/v1/orders/7?expand=items`.
    #[arg(long, value_name = "METHOD URL")]
    pub request: String,
    /// The request's token (`-`: read it from stdin; a pasted `Bearer ` prefix is removed).
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: Option<String>,
    /// A file holding the request's token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The request carries no token.
    #[arg(long)]
    pub no_token: bool,
    /// A request header, 'Name: value' (repeatable; a repeated name sends it several times).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the remote keys of the token's issuer (seconds or a duration).
    #[arg(long, value_name = "S", default_value = "10", value_parser = parse_seconds)]
    pub fetch_timeout: u64,
}

/// `jwtd dpop ...`.
#[derive(Subcommand, Debug)]
pub enum DpopCommand {
    /// Make a DPoP proof (the `DPoP` request header) for a request, signed with a private key;
    /// print it. For testing resource servers and jwtd itself.
    #[command(
        after_help = "The header is {\"typ\": \"dpop+jwt\", \"alg\", \"jwk\"} with the key's \
public members only; the claims are jti (random, 128 bits, unless --jti), htm (--method, as given), \
htu (--url without its query and fragment), iat (now, or --now), ath with --token or \
--token-file (the base64url SHA-256 of the token) and nonce with --nonce. The proof's jkt is the \
key's RFC 7638 thumbprint (the kid `jwtd keygen` names a key by). The key is a private PEM (PKCS#8, PKCS#1, \
SEC1) or a private JWK of an asymmetric algorithm (RSA keys need --alg unless the JWK names it); \
HMAC secrets cannot sign proofs. Exit 0 with the proof on stdout, 2 for a usage or key error.",
        help_template = examples(&[
            "jwtd dpop proof --key client.pem --method GET --url https://api.example/v1/orders/7 --token \"$TOKEN\"",
            "jwtd dpop proof --key client.jwk --method POST --url https://as.example/token --nonce \"$NONCE\"",
            "curl -H \"Authorization: DPoP $TOKEN\" -H \"DPoP: $(jwtd dpop proof --key client.pem --method GET --url \"$URL\" --token \"$TOKEN\")\" \"$URL\"",
        ])
    )]
    Proof(DpopProofArgs),
    /// Check a DPoP proof against a request as a resource server does (RFC 9449 section 4.3);
    /// print the key's thumbprint (jkt), jti, iat and nonce, or the reason it is refused.
    #[command(
        after_help = "Checks: a compact JWS of typ dpop+jwt under an allowed asymmetric alg \
(--alg; none and HS* never), signed by the public jwk of its header (a jwk with a private member \
is refused), with jti, htm equal to --method (case-sensitive), htu equal to --url without query \
and fragment (both normalised: scheme and host case, default port, percent-encoding, dot \
segments; an htu with a query or fragment is refused), iat within --max-age plus --leeway, and, \
with --token or --token-file, ath equal to the token's base64url SHA-256. The jti replay cache, \
server nonces and the token's cnf.jkt are for the caller (compare the printed jkt). Output: \
proof (valid or refused), then jkt, jti, iat, alg and nonce, or reason (a dpop_* code, \
docs/security.md), error (the RFC 9449 error, invalid_dpop_proof) and message. --json prints \
{\"valid\": bool, \"jkt\", \"jti\", \"iat\", \"alg\", \"nonce\", \"reason\", \"error\", \"message\"} \
(null where not applicable). Exit 0 valid, 1 refused, 2 usage error.",
        help_template = examples(&[
            "jwtd dpop verify --proof \"$PROOF\" --method GET --url https://api.example/v1/orders/7 --token \"$TOKEN\"",
            "jwtd dpop verify --proof - --method POST --url https://as.example/token --json < proof.txt",
        ])
    )]
    Verify(DpopVerifyArgs),
}

/// `jwtd dpop proof`.
#[derive(Args, Debug)]
pub struct DpopProofArgs {
    /// The private key: a PEM (PKCS#8, PKCS#1, SEC1) or a private JWK JSON file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The key's algorithm (needed for RSA keys; EC and Ed25519 keys imply theirs).
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Algorithm>,
    /// The request method (`htm`), as it is sent.
    #[arg(long, value_name = "METHOD")]
    pub method: String,
    /// The request URL (`htu`: its query and fragment are left out).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The access token sent with the proof (sets `ath`; `-` reads it from stdin).
    #[arg(
        long,
        value_name = "TOKEN",
        allow_hyphen_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the access token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A nonce the server sent (`DPoP-Nonce`).
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
    /// The `jti` (default: 128 random bits, base64url).
    #[arg(long, value_name = "ID")]
    pub jti: Option<String>,
    /// Make the proof as if the time were UNIX (its `iat`).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
}

/// `jwtd dpop verify`.
#[derive(Args, Debug)]
pub struct DpopVerifyArgs {
    /// The proof (the `DPoP` header's value; `-` reads it from stdin).
    #[arg(long, value_name = "PROOF", allow_hyphen_values = true)]
    pub proof: String,
    /// The request method.
    #[arg(long, value_name = "METHOD")]
    pub method: String,
    /// The request's absolute URL (its query and fragment are ignored).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The access token presented with the proof (`ath` is checked; `-` reads it from stdin).
    #[arg(
        long,
        value_name = "TOKEN",
        allow_hyphen_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the access token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allowed algorithm(s), asymmetric only [default: ES256, ES384, RS256, PS256, EdDSA].
    #[arg(long = "alg", value_name = "ALG", value_delimiter = ',')]
    pub algs: Vec<Algorithm>,
    /// How old a proof may be (seconds or a duration).
    #[arg(long, value_name = "S", default_value = "60", value_parser = parse_seconds)]
    pub max_age: u64,
    /// Clock leeway for `iat`, both ways (seconds or a duration).
    #[arg(long, value_name = "S", default_value = "5", value_parser = parse_seconds)]
    pub leeway: u64,
    /// Check as if the time were UNIX (seconds since the epoch).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the issuer's store is, and its policy.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The configuration `jwtd serve` runs with: the store, data directory, algorithm and
    /// rotation policy (publish lead, max ttl, grace, default ttl) come from its `[signing]`
    /// section, with the service's defaults. Without it: the store in --data-dir, the signing
    /// key's algorithm (ES256 for an empty ring), publish lead 1h, max ttl 1h, grace 10m.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data_dir", "store"])]
    pub config: Option<PathBuf>,
    /// Data directory of the key store (the KEK comes from JWTD_KEK or DIR/kek.key)
    /// [default: ./jwtd-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The shared PostgreSQL key store (`postgres://...`) instead of the SQLite file in the
    /// data directory; the KEK must be the instances' (JWTD_KEK, or DIR/kek.key if present).
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
    /// List keys with their state and schedule (dates in UTC, RFC 3339).
    #[command(
        after_help = "Columns: kid, algorithm, state (pending: published, not signing yet; \
active: signs; retiring: published until its tokens expired; retired), created, when it signs \
(activate_at) and when it is unpublished (retire_after); `-` when not scheduled. --json prints \
an array of objects with the same members, each date as RFC 3339 and as Unix seconds \
(`created_at_unix`, ...).",
        help_template = examples(&[
            "jwtd keys list",
            "jwtd keys list --data-dir /var/lib/jwtd",
            "jwtd keys list --config jwtd.toml --json",
        ])
    )]
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a rotation: a new key of the issuer's algorithm, published now, signing after the
    /// publish lead (when it also retires the current signing key).
    #[command(
        after_help = "The algorithm is the issuer's: `[signing] algorithm` with --config, \
else the signing key's (ES256 for an empty ring); --alg only confirms it. To change the algorithm, \
change `[signing] algorithm` and rotate with --config (jwtd warns: verifiers pinned to the old \
algorithm refuse the new key's tokens). The publish lead is `[signing] publish_lead` (default 1h); \
a shorter --publish-lead than the JWKS Cache-Control max-age (half the configured lead, at most a \
day) is refused, so verifiers' caches learn the key before it signs.",
        help_template = examples(&[
            "jwtd keys rotate --config /etc/jwtd/jwtd.toml",
            "jwtd keys rotate",
            "jwtd keys rotate --config jwtd.toml --alg RS256 --publish-lead 2d",
        ])
    )]
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Expected algorithm of the new key: refused when it is not the issuer's.
        #[arg(long)]
        alg: Option<Algorithm>,
        /// How long the new key is published before it signs (default: the configured publish
        /// lead; at least the JWKS max-age).
        #[arg(long, value_parser = parse_seconds)]
        publish_lead: Option<u64>,
    },
    /// Stop a key from signing; it stays published until its tokens expired (max ttl + grace).
    #[command(
        after_help = "The ring always keeps a signing key. Retiring the signing key needs \
a successor: without one (run `jwtd keys rotate` first) it is refused; while the successor's \
publish lead runs it is refused too, unless --promote makes the successor sign now (verifiers \
that cached the JWKS before it was published may refuse its tokens until they refetch). Max ttl \
and grace are `[signing] max_ttl` and `grace` with --config.",
        help_template = examples(&[
            "jwtd keys retire --config jwtd.toml KID",
            "jwtd keys retire --config jwtd.toml --promote KID",
        ])
    )]
    Retire {
        #[command(flatten)]
        store: StoreArgs,
        /// The key id (kids are base64url and may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// When KID is the signing key: its pending successor signs now, before its publish
        /// lead ended.
        #[arg(long)]
        promote: bool,
        /// Longest token lifetime the issuer mints [default: 1h] (with --config: `[signing]
        /// max_ttl`).
        #[arg(long, value_parser = parse_seconds, conflicts_with = "config")]
        max_ttl: Option<u64>,
        /// Extra publication time [default: 10m] (with --config: `[signing] grace`).
        #[arg(long, value_parser = parse_seconds, conflicts_with = "config")]
        grace: Option<u64>,
    },
    /// Emergency removal of a compromised key: unpublished at once; when it was the signing
    /// key, the newest pending key signs at once, else a new key of the issuer's algorithm.
    #[command(
        after_help = "The ring is never left without a signing key, and there is no \
option to: a successor that was not published long enough (or a new key, never published) may \
be refused by verifiers until they refetch the JWKS, which they do on an unknown kid.",
        help_template = examples(&[
            "jwtd keys remove --config jwtd.toml KID",
        ])
    )]
    Remove {
        #[command(flatten)]
        store: StoreArgs,
        /// The key id (kids are base64url and may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Print the published public keys as a JWKS.
    #[command(
        help_template = examples(&[
            "jwtd keys export-public > jwks.json",
        ])
    )]
    ExportPublic(StoreArgs),
}

/// `jwtd token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Mint a token with the ring's signing key.
    #[command(
        after_help = "With --config, `iss` defaults to the configured issuer, the ttl to \
`[signing] default_ttl` and the cap is `[signing] max_ttl`, as for POST /v1/tokens.",
        help_template = examples(&[
            "jwtd token mint --config jwtd.toml --sub alice --aud partner-42 --ttl 10m",
            "jwtd token mint --iss https://auth.example.com --sub alice --claim client_id=12345 --claim-json admin=true",
        ])
    )]
    Mint {
        #[command(flatten)]
        store: StoreArgs,
        /// `iss` claim (the issuer URL jwtd serves under; with --config: the configured one).
        #[arg(long, required_unless_present = "config")]
        iss: Option<String>,
        /// `sub` claim.
        #[arg(long)]
        sub: String,
        /// `aud` claim (repeat for an array).
        #[arg(long = "aud")]
        aud: Vec<String>,
        /// Lifetime, at most the max ttl [default: 10m; with --config `[signing] default_ttl`].
        #[arg(long, value_parser = parse_seconds)]
        ttl: Option<u64>,
        /// The longest lifetime allowed without --config [default: 1h] (with it, `[signing]
        /// max_ttl` is the cap, as for `POST /v1/tokens`): keys stay published max ttl + grace
        /// after they stop signing; a longer token would outlive its key's publication and any
        /// revocation of it.
        #[arg(long, value_parser = parse_seconds, conflicts_with = "config")]
        max_ttl: Option<u64>,
        /// Extra string claim NAME=VALUE (`client_id=12345` is the string "12345").
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// Extra claim NAME=JSON (`admin=true`, `tier=3`, `roles=["a","b"]`).
        #[arg(long = "claim-json", value_name = "NAME=JSON")]
        claims_json: Vec<String>,
    },
}

/// `jwtd decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The token, or `-` (the default) to read it from stdin. A pasted `Bearer ` prefix is
    /// removed (with a note on stderr).
    pub token: Option<String>,
}

/// Where verification keys come from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct KeySource {
    /// A JWKS file (`{"keys": [...]}`). A PEM or a single JWK given here is refused with a
    /// hint to use --key.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// A PEM public key (SPKI or PKCS#1; a private key PEM also works), or one JWK. A JWKS
    /// given here is refused with a hint to use --jwks.
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// A file holding an HMAC secret: raw bytes (one trailing newline is ignored), or a JWK
    /// of kty `oct` as `jwtd keygen --alg HS256` writes it.
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
    /// Verify against the `[[issuer]]` tables of a `jwtd serve` configuration file, as the
    /// service does: the token's `iss` picks the issuer, whose keys, algorithms, audiences and
    /// claim checks apply (jwtd's own `[signing]` issuer and revocation are not used). The
    /// policy flags (--alg, --iss, --aud, --claim, ...) do not go with it.
    #[arg(
        long,
        value_name = "TOML",
        conflicts_with_all = [
            "algs", "kid", "issuers", "audiences", "aud_all", "any_aud", "leeway", "max_age",
            "max_auth_age", "typ", "required", "claims", "claims_json", "contains", "one_of",
            "one_of_json", "allow_no_exp", "ca_file", "allow_insecure_http"
        ]
    )]
    pub config: Option<PathBuf>,
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
    /// The token, or `-` (the default) to read it from stdin. A pasted `Bearer ` prefix is
    /// removed (with a note on stderr).
    pub token: Option<String>,
    #[command(flatten)]
    pub keys: KeySource,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Allowed algorithm(s); required, repeat or comma-separate for several. `none` never works.
    #[arg(
        long = "alg",
        value_name = "ALG",
        required_unless_present = "config",
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
    /// A claim that must be the string VALUE (`client_id=12345` expects the string "12345",
    /// not the number). Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// A claim that must equal the JSON value (`admin=true`, `tier=3`, `aud_count=null`).
    /// Repeatable.
    #[arg(long = "claim-json", value_name = "NAME=JSON")]
    pub claims_json: Vec<String>,
    /// A claim (array, or space-separated string such as `scope`) that must contain ITEM.
    #[arg(long = "claim-contains", value_name = "NAME=ITEM")]
    pub contains: Vec<String>,
    /// A claim that must be one of the comma-separated strings.
    #[arg(long = "claim-one-of", value_name = "NAME=V1,V2")]
    pub one_of: Vec<String>,
    /// A claim that must equal one of the values of a JSON array (`tier=[1,2]`).
    #[arg(long = "claim-one-of-json", value_name = "NAME=[JSON,...]")]
    pub one_of_json: Vec<String>,
    /// Accept tokens without `exp` (they are refused by default).
    #[arg(long)]
    pub allow_no_exp: bool,
    /// Verify as if the time were UNIX (seconds since the epoch).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
    /// Also print every check in words on stderr: the issuer picked (with --config) and why,
    /// the algorithm and the key (kid) used, the times as dates ("expired 3 minutes ago"), the
    /// issuer and audience found against those expected, and each claim check.
    #[arg(long)]
    pub explain: bool,
}

/// `jwtd sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// Private key: a PEM (PKCS#8, PKCS#1, SEC1) or a private JWK JSON file.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["secret_file", "secret_env"])]
    pub key: Option<PathBuf>,
    /// A file holding an HMAC secret: raw bytes (one trailing newline is ignored), or a JWK
    /// of kty `oct` as `jwtd keygen --alg HS256` writes it (its `alg` and `kid` are used).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "secret_env"])]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding an HMAC secret.
    #[arg(long, value_name = "VAR", conflicts_with = "key")]
    pub secret_env: Option<String>,
    /// Algorithm (needed for RSA keys and secrets; EC and Ed25519 keys imply theirs).
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Algorithm>,
    /// Key id for the header (default: the key's own kid: a JWK's `kid`, or the `kid:` line
    /// `jwtd keygen` writes above a PEM; else its RFC 7638 thumbprint).
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
    /// Extra string claim NAME=VALUE (`client_id=12345` is the string "12345"). Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// Extra claim NAME=JSON (`admin=true`, `tier=3`, `roles=["a","b"]`). Repeatable.
    #[arg(long = "claim-json", value_name = "NAME=JSON")]
    pub claim_json: Vec<String>,
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
    /// Key id (default: the RFC 7638 thumbprint of the public key). Written into the JWKS, the
    /// HMAC JWK, and as a `kid: KID` line above the PEM, where `jwtd sign --key` and `jwtd
    /// jwks` read it (PEM readers ignore text before `-----BEGIN`).
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
