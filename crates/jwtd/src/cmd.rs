//! The commands.

use crate::args::{
    Cli, Command, ConfigCommand, DecodeArgs, DpopCommand, JwksArgs, KeySource, KeygenArgs,
    KeysCommand, RemoteArgs, RulesCommand, ServeArgs, SignArgs, StoreArgs, TokenCommand,
    VerifyArgs,
};
use crate::io;
use jwtd_core::Reason;
use jwtd_core::{
    Algorithm, AudienceMode, ClaimCheck, Family, Jwk, Jwks, KeySet, SigningKey, Validation,
    Verifier, VerifyingKey,
};
use jwtd_remote::{CacheConfig, HttpConfig, RemoteKeys, Source};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;

/// How a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The token was rejected: exit 1.
    Rejected(jwtd_core::Error),
    /// `jwtd rules test` denied the request (the decision is printed already): exit 1.
    Denied,
    /// Usage or configuration error: exit 2.
    Usage(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Usage(s)
    }
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Decode(a) => decode(a),
        Command::Verify(a) => verify(*a),
        Command::Sign(a) => sign(a),
        Command::Keygen(a) => keygen(a),
        Command::Jwks(a) => jwks(a),
        Command::Serve(a) => serve(a),
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
        Command::Rules(RulesCommand::Test(a)) => crate::rules::test(a),
        Command::Rules(RulesCommand::Explain { config, json }) => {
            crate::rules::explain(&config, json)
        }
        Command::Dpop(DpopCommand::Proof(a)) => crate::dpop::proof(a),
        Command::Dpop(DpopCommand::Verify(a)) => crate::dpop::verify(a),
        Command::Keys(k) => keys(k),
        Command::Token(TokenCommand::Mint {
            store,
            iss,
            sub,
            aud,
            ttl,
            max_ttl,
            claims,
            claims_json,
        }) => token_mint(
            &store,
            iss.as_deref(),
            &sub,
            &aud,
            (ttl, max_ttl),
            &claims,
            &claims_json,
        ),
    }
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}

/// The issuer the `keys` and `token` commands act on: the `[signing]` section of the
/// configuration `jwtd serve` runs with (`--config`), or the built-in defaults.
struct Issuer {
    data_dir: std::path::PathBuf,
    store: Option<String>,
    store_schema: Option<String>,
    /// The ring policy (`jwtd_service::ring_config`, or the defaults).
    ring: jwtd_store::RingConfig,
    /// From the configuration: its file, `iss` and default ttl.
    config: Option<(std::path::PathBuf, String, u64)>,
}

impl Issuer {
    fn from_args(s: &StoreArgs) -> Result<Issuer> {
        let Some(path) = &s.config else {
            return Ok(Issuer {
                data_dir: s
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| jwtd_service::defaults::DATA_DIR.into()),
                store: s.store.clone(),
                store_schema: s.store_schema.clone(),
                ring: jwtd_store::RingConfig::default(),
                config: None,
            });
        };
        // Only [signing] matters here: the secrets and key files of the issuers are not read.
        let c =
            jwtd_service::Config::load_settings(path).map_err(|e| Failure::Usage(e.to_string()))?;
        let sc = c.signing.as_ref().ok_or_else(|| {
            Failure::Usage(format!(
                "{}: no [signing] section: jwtd is not an issuer in this configuration",
                path.display()
            ))
        })?;
        Ok(Issuer {
            data_dir: sc.data_dir.clone().into(),
            store: sc.store.clone(),
            store_schema: sc.store_schema.clone(),
            ring: jwtd_service::ring_config(sc),
            config: Some((
                path.clone(),
                jwtd_service::own_issuer(sc, &c.listen),
                jwtd_service::default_ttl(sc),
            )),
        })
    }

    /// Where a setting comes from, for messages.
    fn origin(&self, member: &str) -> String {
        match &self.config {
            Some((p, ..)) => format!("[signing] {member} in {}", p.display()),
            None => format!("the default {member}; pass --config to use the service's"),
        }
    }

    /// Opens the ring. Without a configuration, new keys take the algorithm of the signing key
    /// (or the newest published key): the one the issuer signs with.
    async fn open_ring(&self) -> Result<jwtd_store::KeyRing<jwtd_store::AnyStore>> {
        use jwtd_store::KeyStore;
        let usage = |e: jwtd_store::StoreError| Failure::Usage(e.to_string());
        let kek_file = self.data_dir.join("kek.key");
        let store = match &self.store {
            Some(url) => {
                // Never generate a KEK for a shared store: it must be the instances' own.
                if std::env::var_os(jwtd_store::KEK_ENV).is_none() && !kek_file.exists() {
                    return Err(Failure::Usage(format!(
                        "set {} to the instances' key encryption key (or put it in {})",
                        jwtd_store::KEK_ENV,
                        kek_file.display()
                    )));
                }
                jwtd_store::AnyStore::Postgres(
                    jwtd_store::PgStore::open(url, self.store_schema.as_deref())
                        .await
                        .map_err(usage)?,
                )
            }
            None => {
                let db = self.data_dir.join("keys.db");
                if !db.exists() {
                    return Err(Failure::Usage(format!(
                        "{} does not exist: start `jwtd serve` once, or point --data-dir (or --config) at the store",
                        db.display()
                    )));
                }
                jwtd_store::AnyStore::Sqlite(
                    jwtd_store::SqliteStore::open(&db).await.map_err(usage)?,
                )
            }
        };
        let mut cfg = self.ring.clone();
        if self.config.is_none() {
            let keys = store.list().await.map_err(usage)?;
            let current = keys
                .iter()
                .find(|k| k.state == jwtd_store::KeyState::Active)
                .or_else(|| {
                    keys.iter()
                        .filter(|k| k.state.published())
                        .max_by_key(|k| k.created_at)
                });
            if let Some(alg) = current.and_then(|k| k.alg.parse().ok()) {
                cfg.alg = alg;
            }
        }
        let (kek, _) = jwtd_store::Kek::load_or_create(&kek_file).map_err(usage)?;
        jwtd_store::KeyRing::open(store, kek, cfg)
            .await
            .map_err(usage)
    }
}

/// Unix seconds as an RFC 3339 UTC date (`2026-12-01T22:19:24Z`).
fn utc_date(secs: i64) -> String {
    let when = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(when).to_string()
}

/// "expired 3 minutes ago (DATE)" or "expires in 9 minutes (DATE)": `exp` against `now`.
fn expiry_note(exp: i64, now: i64) -> String {
    format!("{} ({})", expiry_rel(exp, now), utc_date(exp))
}

/// "expired 3 minutes ago" or "expires in 9 minutes".
fn expiry_rel(exp: i64, now: i64) -> String {
    if now >= exp {
        format!("expired {} ago", human_span(now - exp))
    } else {
        format!("expires in {}", human_span(exp - now))
    }
}

/// A span of seconds in the largest whole unit: "45 seconds", "1 minute", "3 hours", "2 days".
fn human_span(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let (n, unit) = match secs {
        0..=119 => (secs, "second"),
        120..=7199 => (secs / 60, "minute"),
        7200..=172_799 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn print_events(
    events: Vec<jwtd_store::RingEvent>,
    ring: &jwtd_store::KeyRing<jwtd_store::AnyStore>,
) {
    use jwtd_store::{KeyState, RingEvent};
    let keys = ring.keys();
    let alg_of = |kid: &str| {
        keys.iter()
            .find(|k| k.kid == kid)
            .map(|k| k.alg.clone())
            .unwrap_or_default()
    };
    for e in events {
        match &e {
            RingEvent::Created(kid, KeyState::Pending) => {
                let at = keys
                    .iter()
                    .find(|k| k.kid == *kid)
                    .and_then(|k| k.activate_at)
                    .map_or("-".into(), utc_date);
                eprintln!(
                    "jwtd: created {} key {kid}: published now, signs from {at} (after the publish lead)",
                    alg_of(kid)
                );
            }
            RingEvent::Created(kid, _) => {
                eprintln!(
                    "jwtd: created {} key {kid}: signs now (never published before: verifiers \
                     learn it when they refetch the JWKS, which they do on an unknown kid)",
                    alg_of(kid)
                );
            }
            RingEvent::Activated(kid) => eprintln!("jwtd: key {kid} signs now"),
            RingEvent::ActivatedEarly(kid, left) => eprintln!(
                "jwtd: WARNING: key {kid} signs now, {left}s before its publish lead ended: \
                 verifiers that cached the JWKS before it was published may refuse its tokens \
                 until they fetch the keys again"
            ),
            RingEvent::Retiring(kid, until) => eprintln!(
                "jwtd: key {kid} no longer signs; published until {} (max ttl + grace)",
                utc_date(*until)
            ),
            RingEvent::Retired(kid) => eprintln!("jwtd: key {kid} is retired (unpublished)"),
            RingEvent::Removed(kid) => eprintln!("jwtd: key {kid} removed and unpublished"),
            RingEvent::AlgorithmChanged(from, to) => eprintln!(
                "jwtd: WARNING: the algorithm changes from {from} to {to}: verifiers pinned to \
                 {from} will refuse the tokens the new key signs"
            ),
        }
    }
}

fn keys(k: KeysCommand) -> Result<()> {
    let now = jwtd_core::unix_now() as i64;
    let usage = |e: jwtd_store::StoreError| Failure::Usage(e.to_string());
    block_on(async {
        match k {
            KeysCommand::List { store, json } => {
                let ring = Issuer::from_args(&store)?.open_ring().await?;
                let keys = ring.keys();
                if json {
                    let rows: Vec<Value> = keys
                        .iter()
                        .map(|k| {
                            let mut m = Map::new();
                            m.insert("kid".into(), Value::from(k.kid.as_str()));
                            m.insert("alg".into(), Value::from(k.alg.as_str()));
                            m.insert("state".into(), Value::from(k.state.as_str()));
                            for (name, t) in [
                                ("created_at", Some(k.created_at)),
                                ("activate_at", k.activate_at),
                                ("retire_after", k.retire_after),
                            ] {
                                m.insert(name.into(), Value::from(t.map(utc_date)));
                                m.insert(format!("{name}_unix"), Value::from(t));
                            }
                            Value::Object(m)
                        })
                        .collect();
                    print_json(&Value::Array(rows));
                } else {
                    println!(
                        "{:<45} {:<6} {:<9} {:<20} {:<20} {:<20}",
                        "kid", "alg", "state", "created", "activate_at", "retire_after"
                    );
                    let t = |v: Option<i64>| v.map_or_else(|| "-".into(), utc_date);
                    for key in keys {
                        println!(
                            "{:<45} {:<6} {:<9} {:<20} {:<20} {:<20}",
                            key.kid,
                            key.alg,
                            key.state.as_str(),
                            utc_date(key.created_at),
                            t(key.activate_at),
                            t(key.retire_after)
                        );
                    }
                }
            }
            KeysCommand::Rotate {
                store,
                alg,
                publish_lead,
            } => {
                let mut issuer = Issuer::from_args(&store)?;
                let max_age = jwtd_service::jwks_max_age(&issuer.ring);
                if let Some(lead) = publish_lead {
                    if lead < max_age {
                        return Err(Failure::Usage(format!(
                            "--publish-lead {lead}s is shorter than the JWKS Cache-Control max-age \
                             ({max_age}s, half of {}): verifiers' caches would not know the key \
                             when it starts signing",
                            issuer.origin("publish_lead")
                        )));
                    }
                    issuer.ring.publish_lead = Duration::from_secs(lead);
                }
                let ring = issuer.open_ring().await?;
                let signs = ring.config().alg;
                if let Some(alg) = alg.filter(|a| *a != signs) {
                    let whence = if issuer.config.is_some() {
                        issuer.origin("algorithm")
                    } else {
                        "its signing key; to change the algorithm, set [signing] algorithm and \
                         rotate with --config"
                            .into()
                    };
                    return Err(Failure::Usage(format!(
                        "--alg {alg}: the issuer signs with {signs} ({whence}); a {alg} key would \
                         sign tokens that verifiers pinned to {signs} refuse"
                    )));
                }
                let events = ring.rotate(now).await.map_err(usage)?;
                print_events(events, &ring);
            }
            KeysCommand::Retire {
                store,
                kid,
                promote,
                max_ttl,
                grace,
            } => {
                let mut issuer = Issuer::from_args(&store)?;
                if let Some(t) = max_ttl {
                    issuer.ring.max_token_ttl = Duration::from_secs(t);
                }
                if let Some(g) = grace {
                    issuer.ring.grace = Duration::from_secs(g);
                }
                let ring = issuer.open_ring().await?;
                let events = ring.retire(&kid, now, promote).await.map_err(usage)?;
                print_events(events, &ring);
            }
            KeysCommand::Remove { store, kid } => {
                let ring = Issuer::from_args(&store)?.open_ring().await?;
                let events = ring.remove(&kid, now).await.map_err(usage)?;
                print_events(events, &ring);
            }
            KeysCommand::ExportPublic(s) => {
                let ring = Issuer::from_args(&s)?.open_ring().await?;
                let v: Value = serde_json::from_str(&ring.jwks_json()).expect("JWKS is JSON");
                print_json(&v);
            }
        }
        Ok(())
    })
}

fn token_mint(
    s: &StoreArgs,
    iss: Option<&str>,
    sub: &str,
    aud: &[String],
    (ttl, max_ttl): (Option<u64>, Option<u64>),
    strings: &[String],
    json: &[String],
) -> Result<()> {
    let issuer = Issuer::from_args(s)?;
    let max_ttl = max_ttl.unwrap_or(issuer.ring.max_token_ttl.as_secs());
    let default_ttl = issuer.config.as_ref().map_or(600, |c| c.2);
    let ttl = ttl.unwrap_or(default_ttl.min(max_ttl));
    if ttl == 0 || ttl > max_ttl {
        let cap = match &issuer.config {
            Some(_) => issuer.origin("max_ttl"),
            None => "--max-ttl, like [signing] max_ttl for POST /v1/tokens".into(),
        };
        return Err(Failure::Usage(format!(
            "--ttl {ttl}s is outside 1..={max_ttl}s ({cap})"
        )));
    }
    let iss = match (iss, &issuer.config) {
        (Some(i), _) => i.to_owned(),
        (None, Some(c)) => c.1.clone(),
        (None, None) => return Err(Failure::Usage("--iss is required without --config".into())),
    };
    let mut claims = Map::new();
    for c in strings {
        let (name, value) = claim_string(c)?;
        claims.insert(name, value);
    }
    for c in json {
        let (name, value) = claim_json(c)?;
        claims.insert(name, value);
    }
    for reserved in ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"] {
        if claims.contains_key(reserved) {
            return Err(Failure::Usage(format!(
                "claim {reserved:?} is set by jwtd; use its flag"
            )));
        }
    }
    block_on(async {
        let ring = issuer.open_ring().await?;
        let signer = ring
            .signer()
            .ok_or_else(|| Failure::Usage("the ring has no signing key".into()))?;
        let now = jwtd_core::unix_now();
        claims.insert("iss".into(), Value::from(iss));
        claims.insert("sub".into(), Value::from(sub));
        match aud {
            [] => {}
            [one] => {
                claims.insert("aud".into(), Value::from(one.as_str()));
            }
            many => {
                claims.insert("aud".into(), Value::from(many.to_vec()));
            }
        }
        let mut jti = [0u8; 16];
        jwtd_core::fill_random(&mut jti).map_err(|e| Failure::Usage(e.to_string()))?;
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(now + ttl));
        claims.insert("jti".into(), Value::from(jwtd_core::b64::encode(jti)));
        let token =
            jwtd_core::sign(&signer, &claims, None).map_err(|e| Failure::Usage(e.to_string()))?;
        println!("{token}");
        Ok(())
    })
}

/// `config check`: what `jwtd serve` checks before it starts ([`jwtd_service::Config::load`]),
/// every error with its line.
fn config_check(file: &Path) -> Result<()> {
    let c = jwtd_service::Config::load(file).map_err(|e| Failure::Usage(e.to_string()))?;
    println!(
        "{}: ok ({} issuer(s), listen {})",
        file.display(),
        c.issuers.len(),
        c.listen
    );
    // After the verdict: warnings do not make a file invalid.
    for w in c.rule_warnings() {
        eprintln!("{}: warning: {w}", file.display());
    }
    Ok(())
}

/// The configuration `jwtd serve` runs with: the file, or one issuer from flags, or the
/// embedded default (true). Nothing is created on disk here: a start that fails (a taken port,
/// an invalid file) leaves no trace.
fn serve_config(a: &ServeArgs) -> Result<(jwtd_service::Config, bool)> {
    let mut embedded = false;
    let mut config = match (&a.config, &a.issuer) {
        (Some(path), _) => {
            jwtd_service::Config::load(path).map_err(|e| Failure::Usage(e.to_string()))?
        }
        (None, Some(issuer)) => {
            let algs = if a.algs.is_empty() {
                vec!["RS256".to_owned()]
            } else {
                a.algs.iter().map(|x| x.as_str().to_owned()).collect()
            };
            let text = format!(
                "[[issuer]]\nname = \"default\"\nissuer = {iss}\ndiscovery = {iss}\nalgorithms = {algs}\naudiences = {auds}\n",
                iss = Value::from(issuer.as_str()),
                algs = Value::from(algs),
                auds = Value::from(a.audience.clone()),
            );
            jwtd_service::Config::parse(&text, "--issuer")
                .map_err(|e| Failure::Usage(e.to_string()))?
        }
        (None, None) => {
            embedded = true;
            embedded_default(
                a.listen
                    .as_deref()
                    .unwrap_or(jwtd_service::defaults::LISTEN),
            )?
        }
    };
    if let Some(l) = &a.listen {
        if !jwtd_service::config::listen_address_ok(l) {
            return Err(Failure::Usage(format!(
                "--listen {l:?} is not an address:port (an IP address or localhost)"
            )));
        }
        config.listen = l.clone();
    }
    Ok((config, embedded))
}

/// The data directory of the embedded default.
const EMBEDDED_DATA: &str = jwtd_service::defaults::DATA_DIR;

/// The embedded default: jwtd as its own issuer, data in `./jwtd-data`, an admin API key there
/// to authorise minting (both created by [`embedded_prepare`], once the port is bound).
fn embedded_default(listen: &str) -> Result<jwtd_service::Config> {
    let text = format!(
        "listen = {listen}\n[signing]\ndata_dir = \"{EMBEDDED_DATA}\"\naudiences = [\"my-api\"]\n[revocation]\n[admin]\napi_key_file = \"{EMBEDDED_DATA}/admin.key\"\n",
        listen = Value::from(listen)
    );
    jwtd_service::Config::parse(&text, "(embedded default)")
        .map_err(|e| Failure::Usage(e.to_string()))
}

/// Creates `./jwtd-data` (mode 0700) and its admin API key (0600) when missing.
fn embedded_prepare() -> Result<()> {
    let data = Path::new(EMBEDDED_DATA);
    jwtd_service::create_private_dir(data).map_err(Failure::Usage)?;
    let admin = data.join("admin.key");
    if !admin.exists() {
        let mut raw = [0u8; 32];
        jwtd_core::fill_random(&mut raw).map_err(|e| Failure::Usage(e.to_string()))?;
        io::write_new(
            &admin,
            format!("{}\n", jwtd_core::b64::encode(raw)).as_bytes(),
            0o600,
            false,
        )?;
    }
    Ok(())
}

/// What the embedded default serves and how to try it, on stderr, once it is about to serve.
fn embedded_banner(listen: &str) {
    eprintln!(
        "jwtd: no configuration given: running the embedded issuer (keys and secrets in ./jwtd-data)\n\
         \x20 JWKS:       http://{listen}/.well-known/jwks.json\n\
         \x20 discovery:  http://{listen}/.well-known/openid-configuration\n\
         \x20 accepted audience: my-api (tokens for any other aud are refused; configure [signing] audiences)\n\
         \x20 mint a token:\n\
         \x20   TOKEN=$(curl -s -H \"Authorization: Bearer $(cat jwtd-data/admin.key)\" -d '{{\"sub\":\"alice\",\"aud\":\"my-api\",\"ttl\":\"10m\"}}' http://{listen}/v1/tokens | sed -E 's/.*\"token\":\"([^\"]+)\".*/\\1/')\n\
         \x20 verify it:\n\
         \x20   curl -H \"Authorization: Bearer $TOKEN\" http://{listen}/v1/verify\n\
         \x20 revoke everything alice holds now:\n\
         \x20   curl -H \"Authorization: Bearer $(cat jwtd-data/admin.key)\" -d '{{\"sub\":\"alice\"}}' http://{listen}/v1/revocations"
    );
}

/// SIGTERM or Ctrl-C (as `jwtd_service::serve` stops on).
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Why the listen address cannot be bound, in words a user can act on.
fn bind_error(listen: &str, e: &std::io::Error) -> Failure {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "the port is taken: another process (perhaps another jwtd) listens on {listen}; \
             stop it or choose another address with --listen or `listen`"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is not one of this host's (check the IP in --listen or `listen`)".into()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        _ => e.to_string(),
    };
    Failure::Usage(format!("cannot listen on {listen}: {why}"))
}

/// `jwtd serve`: the configuration is read and the address bound before anything is created
/// or changed (data directory, KEK, keys, a due key activation); the banner and the start-up
/// summary are printed only once the server is about to run.
fn serve(a: ServeArgs) -> Result<()> {
    let (config, embedded) = serve_config(&a)?;
    jwtd_service::init_logging(config.log_format);
    // Before anything records a series: handles made before a recorder exists stay no-ops.
    let metrics = jwtd_service::install_metrics().map_err(Failure::Usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;
    let served = rt.block_on(async {
        let listen = config.listen.clone();
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| bind_error(&listen, &e))?;
        let bound = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(listen);
        // The gRPC authorizer's listener too, before anything is created or announced.
        let ext_authz = match &config.ext_authz {
            Some(e) => Some(
                tokio::net::TcpListener::bind(&e.listen)
                    .await
                    .map_err(|err| {
                        Failure::Usage(format!(
                            "cannot listen on {} ([ext_authz] listen): {err}",
                            e.listen
                        ))
                    })?,
            ),
            None => None,
        };
        // The proxy's listener too, its upstream checked (URL, ca_file).
        let proxy = match &config.proxy {
            Some(p) => {
                if let Some(u) = &config.upstream {
                    jwtd_service::check_upstream(u).map_err(Failure::Usage)?;
                }
                Some(
                    tokio::net::TcpListener::bind(&p.listen)
                        .await
                        .map_err(|err| {
                            Failure::Usage(format!(
                                "cannot listen on {} ([proxy] listen): {err}",
                                p.listen
                            ))
                        })?,
                )
            }
            None => None,
        };
        // The TLS certificates, keys and client CAs of both listeners, read before anything is
        // created or announced.
        let api_tls = jwtd_service::tls::api_config(&config).map_err(Failure::Usage)?;
        let proxy_tls = jwtd_service::tls::proxy_config(&config).map_err(Failure::Usage)?;
        if embedded {
            embedded_prepare()?;
        }
        let runtime = jwtd_service::Runtime::build(config, None)
            .await
            .map_err(Failure::Usage)?;
        if embedded {
            embedded_banner(&bound);
        }
        jwtd_service::log_startup(&runtime, &bound);
        let state = jwtd_service::AppState::with_metrics(runtime, a.config.clone(), metrics);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let drain = state.runtime().config.server.shutdown_timeout.0;
        // The authorizer drains on the same signal as the HTTP server (or when it stops).
        let authorizer = ext_authz.map(|l| {
            let shutdown = async {
                tokio::select! {
                    _ = stopped => {},
                    _ = termination() => {},
                }
            };
            tokio::spawn(jwtd_service::serve_ext_authz(state.clone(), l, shutdown))
        });
        // The proxy likewise.
        let (stop_proxy, proxy_stopped) = tokio::sync::oneshot::channel::<()>();
        let proxy = proxy.map(|l| {
            let shutdown = async {
                tokio::select! {
                    _ = proxy_stopped => {},
                    _ = termination() => {},
                }
            };
            tokio::spawn(jwtd_service::serve_proxy(
                state.clone(),
                l,
                proxy_tls,
                shutdown,
            ))
        });
        let served = jwtd_service::serve_tls(state, listener, api_tls)
            .await
            .map_err(|e| Failure::Usage(format!("server error: {e}")));
        let _ = stop.send(());
        let _ = stop_proxy.send(());
        // One deadline for both listeners' drains.
        let deadline = tokio::time::Instant::now() + drain;
        if let Some(task) = proxy {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "proxy server failed"),
                Ok(_) => {}
                Err(_) => tracing::warn!("proxy connections still open at the drain deadline"),
            }
        }
        if let Some(task) = authorizer {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "ext_authz server failed"),
                Ok(_) => {}
                Err(_) => tracing::warn!("ext_authz connections still open at the drain deadline"),
            }
        }
        served
    });
    // The drain deadline has passed or every connection closed: whatever background work
    // remains (key refreshes, store listeners) must not hold the exit up.
    rt.shutdown_timeout(Duration::from_secs(1));
    served
}

pub(crate) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

fn decode(a: DecodeArgs) -> Result<()> {
    let token = io::read_token(a.token.as_deref())?;
    let t = jwtd_core::decode_unverified(&token).map_err(Failure::Rejected)?;
    eprintln!("jwtd: WARNING: decoded only; the signature and claims were NOT verified");
    let mut out = Map::new();
    out.insert("header".into(), Value::Object(t.header.members()));
    match &t.claims {
        Ok(claims) => {
            out.insert("claims".into(), Value::Object(claims.clone()));
            let mut dates = Map::new();
            for name in ["iat", "nbf", "exp", "auth_time"] {
                if let Ok(Some(secs)) = jwtd_core::numeric_date(claims, name) {
                    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
                    dates.insert(
                        name.into(),
                        Value::String(humantime::format_rfc3339_seconds(when).to_string()),
                    );
                }
            }
            out.insert("dates_utc".into(), Value::Object(dates));
            let now = jwtd_core::unix_now() as i64;
            match jwtd_core::numeric_date(claims, "exp") {
                Ok(Some(exp)) => {
                    // Whole seconds: a fractional exp has passed once now reaches its ceiling.
                    let exp = exp.ceil() as i64;
                    let expired = now >= exp;
                    out.insert("expired".into(), Value::Bool(expired));
                    eprintln!("jwtd: {}", expiry_note(exp, now));
                }
                Ok(None) => eprintln!("jwtd: no exp claim: the token never expires"),
                Err(_) => {}
            }
            if let Ok(Some(nbf)) = jwtd_core::numeric_date(claims, "nbf") {
                let nbf = nbf.ceil() as i64;
                if nbf > now {
                    eprintln!(
                        "jwtd: not valid before {} (in {})",
                        utc_date(nbf),
                        human_span(nbf - now)
                    );
                }
            }
        }
        Err(e) => {
            out.insert(
                "payload_error".into(),
                Value::String(format!("payload is not a JSON object: {e}")),
            );
        }
    }
    print_json(&Value::Object(out));
    Ok(())
}

/// The one algorithm from `allowed` in `family`, for a key that does not name its own.
fn one_of_family(allowed: &[Algorithm], family: Family, what: &str) -> Result<Algorithm> {
    let fits: Vec<Algorithm> = allowed
        .iter()
        .copied()
        .filter(|a| a.family() == family)
        .collect();
    match fits.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::Usage(format!(
            "{what} fits none of the --alg algorithms"
        ))),
        many => Err(Failure::Usage(format!(
            "{what} is pinned to one algorithm, but --alg allows {}; name one",
            many.iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A verifying key from a PEM or JWK file, bound to the one allowed algorithm it fits.
fn verifying_key_from_file(
    path: &Path,
    allowed: &[Algorithm],
    kid: Option<String>,
) -> Result<VerifyingKey> {
    let bytes = io::read_file(path)?;
    let bad = |e: jwtd_core::KeyError| Failure::Usage(format!("{}: {e}", path.display()));
    if bytes.trim_ascii_start().starts_with(b"{") {
        let jwk = Jwk::from_json(&bytes).map_err(|e| match key_file_kind(&bytes) {
            KeyFileKind::Jwks => format!(
                "{}: this looks like a JWKS ({{\"keys\": [...]}}): use --jwks {}",
                path.display(),
                path.display()
            ),
            _ => format!("{}: {e}", path.display()),
        })?;
        let family = match jwk.kty.as_str() {
            "RSA" => Some(Family::Rsa),
            "oct" => Some(Family::Hmac),
            _ => None,
        };
        let fallback = match (jwk.alg.is_none(), family) {
            (true, Some(f)) => Some(one_of_family(allowed, f, "the key")?),
            _ => None,
        };
        let key = VerifyingKey::from_jwk(&jwk, fallback).map_err(bad)?;
        return Ok(match kid {
            Some(k) => key.with_kid(Some(k)),
            None => key,
        });
    }
    // Try the key as each allowed algorithm; exactly one must fit.
    let mut fits = Vec::new();
    let mut first_err = None;
    for alg in allowed {
        match VerifyingKey::from_pem(&bytes, Some(*alg), kid.clone()) {
            Ok(k) => fits.push(k),
            Err(e) if e.is_weak() => return Err(bad(e)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match fits.len() {
        1 => Ok(fits.pop().expect("one")),
        0 => Err(bad(first_err.expect("at least one algorithm"))),
        _ => Err(Failure::Usage(format!(
            "{}: the key fits {} of the --alg algorithms; a key is pinned to one, name only that one",
            path.display(),
            fits.len()
        ))),
    }
}

/// What a key file that failed to parse as the flag's kind looks like, for a hint.
enum KeyFileKind {
    Pem,
    Jwks,
    Jwk,
    Other,
}

fn key_file_kind(bytes: &[u8]) -> KeyFileKind {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return KeyFileKind::Pem;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) if m.contains_key("keys") => KeyFileKind::Jwks,
        Ok(Value::Object(m)) if m.contains_key("kty") => KeyFileKind::Jwk,
        _ => KeyFileKind::Other,
    }
}

fn key_set(src: &KeySource, allowed: &[Algorithm], kid: Option<String>) -> Result<KeySet> {
    if let Some(path) = &src.jwks {
        let bytes = io::read_file(path)?;
        let jwks = Jwks::from_json(&bytes).map_err(|e| match key_file_kind(&bytes) {
            KeyFileKind::Pem => format!(
                "{}: this looks like a PEM file, not a JWKS: use --key {}",
                path.display(),
                path.display()
            ),
            KeyFileKind::Jwk => format!(
                "{}: this looks like one JWK, not a JWKS ({{\"keys\": [...]}}): use --key {}",
                path.display(),
                path.display()
            ),
            _ => format!("{}: {e}", path.display()),
        })?;
        let (set, skipped) = KeySet::from_jwks(&jwks, allowed);
        for s in &skipped {
            eprintln!(
                "jwtd: skipped key #{}{} in {}: {}",
                s.index,
                s.kid
                    .as_deref()
                    .map(|k| format!(" ({k:?})"))
                    .unwrap_or_default(),
                path.display(),
                s.why
            );
        }
        if set.is_empty() {
            return Err(Failure::Usage(format!(
                "{}: no usable key for {}",
                path.display(),
                allowed
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Ok(set);
    }
    if let Some(path) = &src.key {
        return Ok(KeySet::new().with(verifying_key_from_file(path, allowed, kid)?));
    }
    let secret = io::read_secret(src.secret_file.as_deref(), src.secret_env.as_deref())?;
    let alg = one_of_family(allowed, Family::Hmac, "an HMAC secret")?;
    if let Some((path, jwk)) = secret_jwk(src.secret_file.as_deref(), &secret)? {
        // Like a raw secret, it matches any kid unless --kid names one.
        let key = VerifyingKey::from_jwk(&jwk, Some(alg))
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        if key.algorithm() != alg {
            return Err(Failure::Usage(format!(
                "{}: the JWK is for {}, not {alg}",
                path.display(),
                key.algorithm()
            )));
        }
        return Ok(KeySet::new().with(key.with_kid(kid)));
    }
    let key = VerifyingKey::hmac(&secret, alg, kid).map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(KeySet::new().with(key))
}

/// The JWK an HMAC secret file holds, when it is one (see [`Jwk::from_secret_file`]).
fn secret_jwk<'a>(file: Option<&'a Path>, secret: &[u8]) -> Result<Option<(&'a Path, Jwk)>> {
    let Some(path) = file else { return Ok(None) };
    match Jwk::from_secret_file(secret) {
        Ok(jwk) => Ok(jwk.map(|j| (path, j))),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

/// The `kid: KID` line `jwtd keygen` writes above a PEM (text before `-----BEGIN` is ignored
/// by PEM readers).
fn pem_kid(pem: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(pem).ok()?;
    let head = &text[..text.find("-----BEGIN ")?];
    head.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("kid: "))
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// A kid `jwtd keygen` can write on one `kid:` line and read back unchanged.
fn check_kid(kid: &str) -> Result<()> {
    if kid.is_empty() || kid.trim() != kid || kid.chars().any(char::is_control) {
        return Err(Failure::Usage(format!(
            "--kid {kid:?}: a key id must be non-empty, without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

/// Splits `NAME=VALUE` (the name is everything up to the first `=`).
fn name_value<'a>(s: &'a str, shape: &str) -> Result<(&'a str, &'a str)> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| Failure::Usage(format!("{s:?} is not {shape}")))?;
    if name.is_empty() {
        return Err(Failure::Usage(format!("{s:?} has an empty claim name")));
    }
    Ok((name, value))
}

/// `--claim NAME=VALUE`: VALUE is always a string (`client_id=12345` is "12345").
fn claim_string(s: &str) -> Result<(String, Value)> {
    let (name, value) = name_value(s, "NAME=VALUE")?;
    Ok((name.to_owned(), Value::String(value.to_owned())))
}

/// `--claim-json NAME=JSON`: VALUE must be JSON (`true`, `3`, `"text"`, `["a"]`).
fn claim_json(s: &str) -> Result<(String, Value)> {
    let (name, value) = name_value(s, "NAME=JSON")?;
    let value = serde_json::from_str(value).map_err(|e| {
        Failure::Usage(format!(
            "--claim-json {s:?}: {value:?} is not JSON ({e}); a string is --claim {name}=... or              --claim-json '{name}=\"...\"'"
        ))
    })?;
    Ok((name.to_owned(), value))
}

fn verify(a: VerifyArgs) -> Result<()> {
    let token = io::read_token(a.token.as_deref())?;
    if let Some(path) = &a.keys.config {
        let now = a.now.unwrap_or_else(jwtd_core::unix_now);
        return verify_config(path, &token, now, a.remote.fetch_timeout, a.explain);
    }
    let mut v = Validation::new(&a.algs)
        .leeway(a.leeway)
        .require_exp(!a.allow_no_exp);
    for i in a.issuers {
        v = v.issuer(i);
    }
    for aud in a.audiences {
        v = v.audience(aud);
    }
    if a.aud_all {
        v = v.audience_mode(AudienceMode::All);
    }
    if a.any_aud {
        v = v.any_audience();
    }
    if let Some(s) = a.max_age {
        v = v.max_age(s);
    }
    if let Some(s) = a.max_auth_age {
        v = v.max_auth_age(s);
    }
    if let Some(t) = a.typ {
        v = v.typ(t);
    }
    for r in a.required {
        v = v.require(r);
    }
    for c in &a.claims {
        let (claim, value) = claim_string(c)?;
        v = v.check(ClaimCheck::Equals { claim, value });
    }
    for c in &a.claims_json {
        let (claim, value) = claim_json(c)?;
        v = v.check(ClaimCheck::Equals { claim, value });
    }
    for c in &a.contains {
        let (claim, item) = c
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("{c:?} is not NAME=ITEM")))?;
        v = v.check(ClaimCheck::Contains {
            claim: claim.into(),
            item: item.into(),
        });
    }
    for c in &a.one_of {
        let (claim, values) = c
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("{c:?} is not NAME=V1,V2")))?;
        let values = values
            .split(',')
            .map(|s| Value::String(s.to_owned()))
            .collect();
        v = v.check(ClaimCheck::OneOf {
            claim: claim.into(),
            values,
        });
    }
    for c in &a.one_of_json {
        let (claim, values) = claim_json(c)?;
        let Value::Array(values) = values else {
            return Err(Failure::Usage(format!(
                "--claim-one-of-json {c:?}: the value must be a JSON array"
            )));
        };
        v = v.check(ClaimCheck::OneOf { claim, values });
    }
    let now = a.now.unwrap_or_else(jwtd_core::unix_now);
    let remote = match (&a.keys.jwks_url, &a.keys.discovery) {
        (Some(url), _) => Some(Source::JwksUrl(url.clone())),
        (_, Some(issuer)) => Some(Source::Discovery(issuer.clone())),
        _ => None,
    };
    let verified = match remote {
        Some(source) => verify_remote(source, &a.remote, &a.algs, &v, &token, now),
        None => {
            let keys = key_set(&a.keys, &a.algs, a.kid.clone())?;
            let known = known_kids(&keys);
            let verifier =
                Verifier::new(keys, v.clone()).map_err(|e| Failure::Usage(e.to_string()))?;
            verifier.verify(&token, now).map_err(|e| {
                if e.reason() == Reason::UnknownKey {
                    let message = format!("{}; {known}", e.message());
                    Failure::Rejected(jwtd_core::Error::new(Reason::UnknownKey, message))
                } else {
                    Failure::Rejected(e)
                }
            })
        }
    };
    if a.explain {
        match &verified {
            Ok(ok) => print_explanation(&explanation(&token, Some(&v), now, Ok(ok))),
            Err(Failure::Rejected(e)) => {
                print_explanation(&explanation(&token, Some(&v), now, Err(e)))
            }
            Err(Failure::Usage(_) | Failure::Denied) => {}
        }
    }
    let verified = verified?;
    print_json(&Value::Object(verified.claims()));
    Ok(())
}

/// `verify --config`: the configuration's issuers, built as `jwtd serve` builds them; the
/// token's `iss` picks one (remote keys are awaited for at most `fetch_timeout` seconds).
fn verify_config(
    path: &Path,
    token: &str,
    now: u64,
    fetch_timeout: u64,
    explain: bool,
) -> Result<()> {
    let config = jwtd_service::Config::load(path).map_err(|e| Failure::Usage(e.to_string()))?;
    if config.issuers.is_empty() {
        return Err(Failure::Usage(format!(
            "{}: no [[issuer]] to verify against (jwtd's own [signing] issuer is not used by verify --config)",
            path.display()
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let issuers =
            jwtd_service::issuers::Issuers::build(&config.issuers, &config.cache, None, None)
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        // The issuer the token routes to: its remote keys are awaited (the others are not
        // needed). A token that routes nowhere is refused by `Issuers::verify` below.
        let routed = match issuers.list.as_slice() {
            [only] if only.iss.is_some() => Some(only.clone()),
            _ => jwtd_core::peek_issuer(token)
                .ok()
                .and_then(|iss| issuers.route(iss.as_deref()).ok().cloned()),
        };
        if let Some(issuer) = &routed {
            if let Some(why) = await_keys(issuer, fetch_timeout).await? {
                return Err(Failure::Rejected(jwtd_core::Error::new(
                    Reason::KeyFetchFailed,
                    format!(
                        "could not fetch the keys of issuer {:?}: {why}",
                        issuer.name
                    ),
                )));
            }
        }
        let outcome = issuers.verify(token, now).await;
        if explain {
            let picked = match (&routed, issuers.list.as_slice()) {
                (Some(i), [_]) => format!("{:?} (the only configured issuer)", i.name),
                (Some(i), _) => format!(
                    "{:?} (the token's iss {} selects it)",
                    i.name,
                    i.iss
                        .as_deref()
                        .map(|s| format!("{s:?}"))
                        .unwrap_or_else(|| "(absent)".into())
                ),
                (None, _) => "none: the token's iss selects no configured issuer".into(),
            };
            let mut lines = vec![format!("issuer: {picked}")];
            let v = routed.as_ref().map(|i| &i.validation);
            let result = match &outcome {
                Ok((_, verified)) => Ok(&**verified),
                Err((_, e)) => Err(e),
            };
            lines.extend(explanation(token, v, now, result));
            print_explanation(&lines);
        }
        match outcome {
            Ok((issuer, verified)) => {
                eprintln!("jwtd: verified by issuer {:?}", issuer.name);
                print_json(&Value::Object(verified.claims()));
                Ok(())
            }
            Err((_, e)) => Err(Failure::Rejected(e)),
        }
    })
}

/// Waits at most `timeout` seconds for the remote keys of `issuer` (static keys and jwtd's
/// own key ring are there already): `Ok(None)` once they are, `Ok(Some(why))` when they could
/// not be fetched in time, a usage error (exit 2) when the source answers with something
/// unusable.
pub(crate) async fn await_keys(
    issuer: &jwtd_service::issuers::Issuer,
    timeout: u64,
) -> Result<Option<String>> {
    let jwtd_service::issuers::Keys::Remote(r) = &issuer.keys else {
        return Ok(None);
    };
    match r
        .wait_ready_or_permanent_error(Duration::from_secs(timeout))
        .await
    {
        Ok(true) => Ok(None),
        Ok(false) => Ok(Some(
            r.last_error()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "timed out".into()),
        )),
        Err(e) => Err(Failure::Usage(format!(
            "the keys of issuer {:?} cannot be used: {e}",
            issuer.name
        ))),
    }
}

/// Prints `verify --explain`'s lines on stderr.
fn print_explanation(lines: &[String]) {
    eprintln!("jwtd: explain:");
    for l in lines {
        eprintln!("  {l}");
    }
}

/// Quotes a JSON value for an explanation line (long values cut).
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// "ok" or the reason and message of `r`.
fn verdict(r: std::result::Result<(), jwtd_core::Error>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("FAILS ({}: {})", e.reason().as_str(), e.message()),
    }
}

/// Every check of `v` on the token in words, each judged on its own by the core's rules
/// (a one-rule policy per check), then the result. Without `v` (no issuer picked), only what
/// the token says.
fn explanation(
    token: &str,
    v: Option<&Validation>,
    now: u64,
    result: std::result::Result<&jwtd_core::Verified, &jwtd_core::Error>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let t = match jwtd_core::decode_unverified(token) {
        Ok(t) => t,
        Err(e) => {
            lines.push(format!(
                "token: cannot be read ({}: {})",
                e.reason().as_str(),
                e.message()
            ));
            return lines;
        }
    };
    let h = &t.header;
    let allowed = v
        .map(|v| {
            v.algorithms()
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let alg_ok = v.map(|v| v.algorithms().contains(&h.alg));
    lines.push(format!(
        "algorithm: {} ({})",
        h.alg,
        match alg_ok {
            Some(true) => format!("allowed: {allowed}"),
            Some(false) => format!("NOT allowed: only {allowed}"),
            None => "no policy".into(),
        }
    ));
    lines.push(match &result {
        Ok(verified) => {
            let k = verified.key();
            format!(
                "signature: verified with the key {} ({})",
                k.kid()
                    .map(|k| format!("kid {k:?}"))
                    .unwrap_or_else(|| "without kid".into()),
                k.algorithm()
            )
        }
        Err(_) => format!(
            "signature: see the result (the token names {})",
            h.kid
                .as_deref()
                .map(|k| format!("kid {k:?}"))
                .unwrap_or_else(|| "no kid".into())
        ),
    });
    let Ok(claims) = &t.claims else {
        lines.push("claims: the payload is not a JSON object".into());
        return lines;
    };
    let now_i = now as i64;
    for name in ["iat", "nbf", "exp", "auth_time"] {
        let line = match jwtd_core::numeric_date(claims, name) {
            Ok(Some(secs)) => {
                let secs = secs.ceil() as i64;
                let rel = match name {
                    "exp" => expiry_rel(secs, now_i),
                    "nbf" if secs > now_i => {
                        format!("not valid for another {}", human_span(secs - now_i))
                    }
                    _ if secs > now_i => format!("{} in the future", human_span(secs - now_i)),
                    _ => format!("{} ago", human_span(now_i - secs)),
                };
                format!("{name}: {} ({rel})", utc_date(secs))
            }
            Ok(None) => format!("{name}: absent"),
            Err(e) => format!("{name}: {}", e.message()),
        };
        lines.push(line);
    }
    let Some(v) = v else {
        return lines;
    };
    // The checks other than times are judged on the claims without their times, so that each
    // line says what that one check finds (the times have their own line).
    let mut untimed = claims.clone();
    for name in ["iat", "nbf", "exp", "auth_time"] {
        untimed.remove(name);
    }
    let claims_all = claims;
    let claims = &untimed;
    let algs = v.algorithms();
    let base = || {
        Validation::new(algs)
            .require_exp(false)
            .any_audience()
            .leeway(v.leeway_secs())
    };
    let mut times = Validation::new(algs)
        .any_audience()
        .require_exp(v.requires_exp())
        .leeway(v.leeway_secs());
    if let Some(s) = v.max_age_secs() {
        times = times.max_age(s);
    }
    if let Some(s) = v.max_auth_age_secs() {
        times = times.max_auth_age(s);
    }
    let mut limits = vec![format!("leeway {} s", v.leeway_secs())];
    if v.requires_exp() {
        limits.push("exp required".into());
    }
    if let Some(s) = v.max_age_secs() {
        limits.push(format!("max age {}", human_span(s as i64)));
    }
    if let Some(s) = v.max_auth_age_secs() {
        limits.push(format!("max auth age {}", human_span(s as i64)));
    }
    lines.push(format!(
        "times ({}): {}",
        limits.join(", "),
        verdict(times.validate_claims(claims_all, now))
    ));
    let found = |name: &str| {
        claims
            .get(name)
            .map(shown)
            .unwrap_or_else(|| "absent".into())
    };
    if v.issuers().is_empty() {
        lines.push(format!(
            "iss: {} (not checked: no issuer configured)",
            found("iss")
        ));
    } else {
        let mut only = base();
        for i in v.issuers() {
            only = only.issuer(i.clone());
        }
        lines.push(format!(
            "iss: {}, expected {}: {}",
            found("iss"),
            v.issuers()
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(" or "),
            verdict(only.validate_claims(claims, now))
        ));
    }
    let mut aud = Validation::new(algs)
        .require_exp(false)
        .leeway(v.leeway_secs())
        .audience_mode(v.audience_mode_in_force());
    for a in v.audiences() {
        aud = aud.audience(a.clone());
    }
    let expected = if v.accepts_any_audience() {
        aud = aud.any_audience();
        "any audience".to_owned()
    } else if v.audiences().is_empty() {
        "none configured (a token with aud is refused)".to_owned()
    } else {
        let joiner = match v.audience_mode_in_force() {
            AudienceMode::All => " and ",
            AudienceMode::Any => " or ",
        };
        v.audiences()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(joiner)
    };
    lines.push(format!(
        "aud: {}, expected {expected}: {}",
        found("aud"),
        verdict(aud.validate_claims(claims, now))
    ));
    if let Some(typ) = v.required_typ() {
        lines.push(format!(
            "typ: {}, expected {typ:?}",
            h.typ
                .as_deref()
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| "absent".into())
        ));
    }
    for r in v.required_claims() {
        lines.push(format!(
            "required claim {r:?}: {}",
            verdict(base().require(r.clone()).validate_claims(claims, now))
        ));
    }
    for c in v.claim_checks() {
        let what = match c {
            ClaimCheck::Equals { claim, value } => format!("{claim:?} equals {}", shown(value)),
            ClaimCheck::OneOf { claim, values } => {
                format!(
                    "{claim:?} is one of {}",
                    shown(&Value::from(values.clone()))
                )
            }
            ClaimCheck::Contains { claim, item } => format!("{claim:?} contains {item:?}"),
        };
        lines.push(format!(
            "claim {what}: {}",
            verdict(base().check(c.clone()).validate_claims(claims, now))
        ));
    }
    lines.push(match result {
        Ok(_) => "result: verified".into(),
        Err(e) => format!(
            "result: rejected ({}: {})",
            e.reason().as_str(),
            e.message()
        ),
    });
    lines
}

/// Most kids [`known_kids`] names; each is cut to [`KID_SHOWN`] characters.
const KIDS_SHOWN: usize = 10;
const KID_SHOWN: usize = 40;

/// The kids (with algorithms) of the keys in `keys`, for an `unknown_key` message:
/// `known kids: "a" (ES256), "b" (RS256)`, at most [`KIDS_SHOWN`] of them.
fn known_kids(keys: &KeySet) -> String {
    let mut named = Vec::new();
    let mut anonymous = 0usize;
    for k in keys.keys() {
        match k.kid() {
            Some(kid) => {
                let mut shown: String = kid.chars().take(KID_SHOWN).collect();
                if shown.len() < kid.len() {
                    shown.push_str("...");
                }
                named.push(format!("{shown:?} ({})", k.algorithm()));
            }
            None => anonymous += 1,
        }
    }
    let mut out = if named.is_empty() {
        "the keys have no kid".to_owned()
    } else {
        let more = named.len().saturating_sub(KIDS_SHOWN);
        named.truncate(KIDS_SHOWN);
        let mut s = format!("known kids: {}", named.join(", "));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    };
    if anonymous > 0 && !named.is_empty() {
        out.push_str(&format!(
            "; {anonymous} key{} without a kid",
            if anonymous == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Fetches the keys once (discovery and JWKS, with jwtd-remote's HTTP rules) and verifies.
fn verify_remote(
    source: Source,
    r: &RemoteArgs,
    algs: &[Algorithm],
    v: &Validation,
    token: &str,
    now: u64,
) -> Result<jwtd_core::Verified> {
    let ca_bundle_pem = match &r.ca_file {
        Some(p) => Some(io::read_file(p)?.to_vec()),
        None => None,
    };
    let http = HttpConfig {
        allow_insecure_http: r.allow_insecure_http,
        ca_bundle_pem,
        ..HttpConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let keys = RemoteKeys::start(source, algs.to_vec(), http, CacheConfig::default())
            .map_err(|e| Failure::Usage(e.to_string()))?;
        // A source that answered with something unusable (a discovery issuer mismatch, no
        // usable key, a refused URL) is a key error: exit 2 at once. Only failures an outage
        // explains (timeouts, network errors, error statuses) are retried for the whole
        // --fetch-timeout, then reported as key_fetch_failed (exit 1).
        match keys
            .wait_ready_or_permanent_error(Duration::from_secs(r.fetch_timeout))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let why = keys
                    .last_error()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "timed out".into());
                return Err(Failure::Rejected(jwtd_core::Error::new(
                    Reason::KeyFetchFailed,
                    format!("could not fetch the issuer's keys: {why}"),
                )));
            }
            Err(e) => {
                return Err(Failure::Usage(format!(
                    "the issuer's keys cannot be used: {e}"
                )))
            }
        }
        keys.verify_at(v, token, now)
            .await
            .map_err(Failure::Rejected)
    })
}

fn signing_key(a: &SignArgs) -> Result<SigningKey> {
    if let Some(path) = &a.key {
        let bytes = io::read_file(path)?;
        let bad = |e: jwtd_core::KeyError| Failure::Usage(format!("{}: {e}", path.display()));
        let key = if bytes.trim_ascii_start().starts_with(b"{") {
            let jwk = Jwk::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            SigningKey::from_jwk(&jwk, a.alg).map_err(bad)?
        } else {
            SigningKey::from_pem(&bytes, a.alg, pem_kid(&bytes)).map_err(bad)?
        };
        if let Some(alg) = a.alg {
            if alg != key.algorithm() {
                return Err(Failure::Usage(format!(
                    "{}: the key is for {}, not {alg}",
                    path.display(),
                    key.algorithm()
                )));
            }
        }
        return Ok(match &a.kid {
            Some(k) => key.with_kid(Some(k.clone())),
            None => key.with_default_kid(),
        });
    }
    let secret = io::read_secret(a.secret_file.as_deref(), a.secret_env.as_deref())?;
    if let Some((path, jwk)) = secret_jwk(a.secret_file.as_deref(), &secret)? {
        let key = SigningKey::from_jwk(&jwk, a.alg)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        if let Some(alg) = a.alg.filter(|alg| *alg != key.algorithm()) {
            return Err(Failure::Usage(format!(
                "{}: the JWK is for {}, not {alg}",
                path.display(),
                key.algorithm()
            )));
        }
        return Ok(match &a.kid {
            Some(k) => key.with_kid(Some(k.clone())),
            None => key,
        });
    }
    let alg = a
        .alg
        .ok_or_else(|| Failure::Usage("an HMAC secret needs --alg HS256, HS384 or HS512".into()))?;
    SigningKey::hmac(&secret, alg, a.kid.clone()).map_err(|e| Failure::Usage(e.to_string()))
}

fn sign(a: SignArgs) -> Result<()> {
    let key = signing_key(&a)?;
    let mut claims = match &a.claims_json {
        Some(path) => {
            let bytes = io::read_file(path)?;
            jwtd_core::parse_json_object(&bytes, jwtd_core::DEFAULT_MAX_JSON_DEPTH)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Map::new(),
    };
    for c in &a.claims {
        let (name, value) = claim_string(c)?;
        claims.insert(name, value);
    }
    for c in &a.claim_json {
        let (name, value) = claim_json(c)?;
        claims.insert(name, value);
    }
    let now = a.now.unwrap_or_else(jwtd_core::unix_now);
    let mut set = |name: &str, value: Value| -> Result<()> {
        if claims.contains_key(name) {
            return Err(Failure::Usage(format!(
                "claim {name:?} is given twice (by a flag and by --claim/--claims-json)"
            )));
        }
        claims.insert(name.into(), value);
        Ok(())
    };
    if let Some(iss) = &a.iss {
        set("iss", Value::String(iss.clone()))?;
    }
    if let Some(sub) = &a.sub {
        set("sub", Value::String(sub.clone()))?;
    }
    match a.aud.as_slice() {
        [] => {}
        [one] => set("aud", Value::String(one.clone()))?,
        many => set("aud", Value::from(many.to_vec()))?,
    }
    set("iat", Value::from(now))?;
    set("exp", Value::from(now + a.ttl))?;
    if !claims.contains_key("jti") {
        let mut id = [0u8; 16];
        jwtd_core::fill_random(&mut id).map_err(|e| Failure::Usage(e.to_string()))?;
        claims.insert("jti".into(), Value::String(jwtd_core::b64::encode(id)));
    }
    let token = jwtd_core::sign(&key, &claims, a.typ.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("{token}");
    Ok(())
}

fn keygen(a: KeygenArgs) -> Result<()> {
    let fail = |e: jwtd_core::KeyError| Failure::Usage(e.to_string());
    let key = if a.alg.family() == Family::Rsa {
        SigningKey::generate_rsa(a.alg, a.bits).map_err(fail)?
    } else {
        SigningKey::generate(a.alg).map_err(fail)?
    };
    if let Some(k) = &a.kid {
        check_kid(k)?;
    }
    let key = match a.kid {
        Some(k) => key.with_kid(Some(k)),
        None => key.with_default_kid(),
    };
    if a.alg.family() == Family::Hmac {
        if a.public_out.is_some() {
            return Err(Failure::Usage(
                "an HMAC secret has no public part; --public-out does not apply".into(),
            ));
        }
        let jwk = key.to_private_jwk().map_err(fail)?;
        let text = zeroize::Zeroizing::new(
            serde_json::to_string_pretty(&jwk).expect("JWK serializes") + "\n",
        );
        io::write_new(&a.out, text.as_bytes(), 0o600, a.force)?;
    } else {
        // The kid travels with the key: `sign --key` and `jwks` read this line back.
        let pem = key.to_pkcs8_pem().map_err(fail)?;
        let text = zeroize::Zeroizing::new(match key.kid() {
            Some(kid) => format!("kid: {kid}\n{}", pem.as_str()),
            None => pem.to_string(),
        });
        io::write_new(&a.out, text.as_bytes(), 0o600, a.force)?;
    }
    if let Some(path) = &a.public_out {
        let jwks = Jwks::from_keys(key.public_jwk());
        let text = serde_json::to_string_pretty(&jwks).expect("JWKS serializes") + "\n";
        io::write_new(path, text.as_bytes(), 0o644, a.force)?;
    }
    eprintln!(
        "jwtd: wrote {} key{} to {} (mode 0600)",
        key.algorithm(),
        key.kid().map(|k| format!(" kid={k}")).unwrap_or_default(),
        a.out.display()
    );
    Ok(())
}

fn jwks(a: JwksArgs) -> Result<()> {
    let mut keys = Vec::new();
    for path in &a.pems {
        let bytes = io::read_file(path)?;
        let key = VerifyingKey::from_pem(&bytes, None, None)
            .or_else(|e| match a.alg {
                Some(alg) => VerifyingKey::from_pem(&bytes, Some(alg), None),
                None => Err(e),
            })
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        let kid = pem_kid(&bytes).or_else(|| key.thumbprint());
        let jwk = key
            .with_kid(kid)
            .to_public_jwk()
            .ok_or_else(|| Failure::Usage(format!("{}: not a public key", path.display())))?;
        keys.push(jwk);
    }
    print_json(&serde_json::to_value(Jwks::from_keys(keys)).expect("JWKS serializes"));
    Ok(())
}
