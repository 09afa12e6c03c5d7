//! The configuration's documentation against the code: every default docs/configuration.md
//! states (its annotated sample, the `[server]` and `[ext_authz]` tables, the key commands'
//! prose) is the value `jwtd_gate::config::defaults` and `jwtd_service::defaults` define.

use jwtd_gate::config::defaults as gate;
use jwtd_service::defaults as service;
use std::collections::BTreeMap;
use std::time::Duration;

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    std::fs::read_to_string(path).unwrap()
}

/// The annotated sample: the first ```toml block, the one with `[server]`.
fn sample(md: &str) -> toml::Table {
    let start = md.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = md[start..].find("```").expect("the block ends");
    let block = &md[start..start + len];
    assert!(block.contains("[server]"), "the first block is the sample");
    toml::from_str(block).unwrap()
}

/// A documented duration: whole seconds or a duration string.
fn duration(v: &toml::Value) -> Duration {
    match v {
        toml::Value::Integer(n) => Duration::from_secs(u64::try_from(*n).unwrap()),
        toml::Value::String(s) => humantime::parse_duration(s).unwrap(),
        other => panic!("{other:?} is not a duration"),
    }
}

/// The `| key | default | ... |` rows of the first table under `## {heading}`.
fn table(md: &str, heading: &str) -> BTreeMap<String, String> {
    let at = md
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rows = md[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2); // the header and its rule
    rows.map(|row| {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        (
            cells[1].trim_matches('`').to_owned(),
            cells[2].trim_matches('`').to_owned(),
        )
    })
    .collect()
}

#[test]
fn the_documented_sample_states_every_default_the_code_has() {
    let md = docs();
    let doc = sample(&md);
    let get = |path: &str| -> &toml::Value {
        let mut v = doc
            .get(path.split('.').next().unwrap())
            .unwrap_or_else(|| panic!("{path}"));
        for key in path.split('.').skip(1) {
            v = match v {
                toml::Value::Array(a) => &a[0][key],
                _ => v.get(key).unwrap_or_else(|| panic!("{path}")),
            };
        }
        v
    };
    let int = |path: &str| u64::try_from(get(path).as_integer().unwrap()).unwrap();
    let str = |path: &str| get(path).as_str().unwrap().to_owned();
    let secs = |path: &str| duration(get(path));
    let ring = jwtd_store::RingConfig::default();

    assert_eq!(str("listen"), service::LISTEN);
    assert_eq!(get("tokens.bearer").as_bool(), Some(gate::TOKENS_BEARER));
    assert_eq!(get("cache.enabled").as_bool(), Some(gate::CACHE_ENABLED));
    assert_eq!(int("cache.max_entries"), gate::CACHE_MAX_ENTRIES as u64);
    assert_eq!(int("cache.max_bytes"), gate::CACHE_MAX_BYTES);

    assert_eq!(
        int("server.max_connections"),
        service::MAX_CONNECTIONS as u64
    );
    assert_eq!(
        secs("server.header_read_timeout"),
        service::HEADER_READ_TIMEOUT
    );
    assert_eq!(secs("server.idle_timeout"), service::IDLE_TIMEOUT);
    assert_eq!(secs("server.request_timeout"), service::REQUEST_TIMEOUT);
    assert_eq!(secs("server.shutdown_timeout"), service::SHUTDOWN_TIMEOUT);
    assert_eq!(
        int("server.max_request_body"),
        service::MAX_REQUEST_BODY as u64
    );
    assert_eq!(
        int("server.max_header_bytes"),
        service::MAX_HEADER_BYTES as u64
    );

    assert_eq!(
        int("ext_authz.max_headers"),
        service::EXT_AUTHZ_MAX_HEADERS as u64
    );
    assert_eq!(
        int("ext_authz.max_header_bytes"),
        service::EXT_AUTHZ_MAX_HEADER_BYTES as u64
    );
    assert_eq!(
        secs("upstream.connect_timeout"),
        service::UPSTREAM_CONNECT_TIMEOUT
    );
    assert_eq!(
        secs("upstream.response_timeout"),
        service::UPSTREAM_RESPONSE_TIMEOUT
    );
    assert_eq!(
        secs("upstream.idle_timeout"),
        service::UPSTREAM_IDLE_TIMEOUT
    );
    assert_eq!(
        int("upstream.max_idle_per_host"),
        service::UPSTREAM_MAX_IDLE_PER_HOST as u64
    );
    assert_eq!(get("upstream.remove_authorization").as_bool(), Some(false));
    assert_eq!(secs("proxy.body_timeout"), service::PROXY_BODY_TIMEOUT);
    assert_eq!(
        secs("proxy.body_total_timeout"),
        service::PROXY_BODY_TOTAL_TIMEOUT
    );
    assert_eq!(
        secs("proxy.tunnel_idle_timeout"),
        service::PROXY_TUNNEL_IDLE_TIMEOUT
    );
    assert_eq!(
        secs("proxy.tunnel_max_lifetime"),
        service::PROXY_TUNNEL_MAX_LIFETIME
    );
    assert_eq!(secs("cors.max_age").as_secs(), service::CORS_MAX_AGE);

    assert_eq!(
        secs("revocation.max_staleness").as_secs(),
        service::MAX_STALENESS
    );
    assert_eq!(
        secs("revocation.resync_interval").as_secs(),
        service::RESYNC_INTERVAL
    );
    assert_eq!(
        secs("revocation.full_resync_interval").as_secs(),
        service::FULL_RESYNC_INTERVAL
    );
    assert_eq!(
        secs("revocation.max_token_lifetime").as_secs(),
        service::MAX_TOKEN_LIFETIME
    );

    assert_eq!(str("signing.data_dir"), service::DATA_DIR);
    assert_eq!(
        str("signing.algorithm"),
        service::signing_algorithm().to_string()
    );
    assert_eq!(int("signing.rsa_bits"), service::rsa_bits() as u64);
    assert_eq!(secs("signing.default_ttl").as_secs(), service::DEFAULT_TTL);
    assert_eq!(secs("signing.max_ttl"), ring.max_token_ttl);
    assert_eq!(secs("signing.publish_lead"), ring.publish_lead);
    assert_eq!(secs("signing.grace"), ring.grace);
    assert_eq!(Some(secs("signing.rotate_every")), ring.rotate_every);

    assert_eq!(secs("issuer.leeway").as_secs(), gate::LEEWAY);
    assert_eq!(secs("issuer.cooldown"), gate::cooldown());
    assert_eq!(secs("issuer.stale_if_error"), gate::stale_if_error());

    // The comments that name a default say the same.
    for (line_has, says) in [
        ("listen = ", format!("\"{}\"", service::LISTEN)),
        ("leeway = ", format!("default {} s", gate::LEEWAY)),
        ("trusted_proxies", format!("{:?}", service::TRUSTED_PROXIES)),
    ] {
        assert!(
            md.lines()
                .any(|l| l.contains(line_has) && l.contains(&says)),
            "no line with {line_has:?} says {says:?}"
        );
    }
    // The key commands' prose, its line breaks taken as spaces.
    let human = |d: Duration| match d.as_secs() {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    };
    let keys_prose = format!(
        "default `{}`; lead {}; max ttl {}; grace {}; ttl {}",
        service::DATA_DIR,
        human(ring.publish_lead),
        human(ring.max_token_ttl),
        human(ring.grace),
        human(Duration::from_secs(service::DEFAULT_TTL)),
    );
    let md = md.replace('\n', " ");
    assert!(
        md.contains(&keys_prose),
        "the key commands' defaults: {keys_prose:?}"
    );
}

#[test]
fn the_documented_tables_state_the_defaults_the_code_has() {
    let md = docs();
    let s = |d: Duration| format!("{} s", d.as_secs());
    let server = table(&md, "Connections and limits");
    let expected: BTreeMap<String, String> = [
        ("max_connections", service::MAX_CONNECTIONS.to_string()),
        ("header_read_timeout", s(service::HEADER_READ_TIMEOUT)),
        ("idle_timeout", s(service::IDLE_TIMEOUT)),
        ("request_timeout", s(service::REQUEST_TIMEOUT)),
        ("shutdown_timeout", s(service::SHUTDOWN_TIMEOUT)),
        ("max_request_body", service::MAX_REQUEST_BODY.to_string()),
        ("max_header_bytes", service::MAX_HEADER_BYTES.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(server, expected);
    let defaults = jwtd_service::config::ServerSettings::default();
    assert_eq!(defaults.max_connections, service::MAX_CONNECTIONS);
    assert_eq!(defaults.idle_timeout.0, service::IDLE_TIMEOUT);

    let ext_authz = table(&md, "Envoy ext_authz over gRPC");
    let expected: BTreeMap<String, String> = [
        ("listen", "(required)".to_owned()),
        ("remove_authorization", "false".to_owned()),
        ("max_headers", service::EXT_AUTHZ_MAX_HEADERS.to_string()),
        (
            "max_header_bytes",
            service::EXT_AUTHZ_MAX_HEADER_BYTES.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(ext_authz, expected);

    let proxy = table(&md, "Reverse proxy: `[proxy]` and `[upstream]`");
    let expected: BTreeMap<String, String> = [
        ("[proxy] listen", "(required)".to_owned()),
        (
            "[proxy] body_timeout",
            format!("\"{}s\"", service::PROXY_BODY_TIMEOUT.as_secs()),
        ),
        (
            "[proxy] body_total_timeout",
            format!("\"{}m\"", service::PROXY_BODY_TOTAL_TIMEOUT.as_secs() / 60),
        ),
        (
            "[proxy] tunnel_idle_timeout",
            format!("\"{}m\"", service::PROXY_TUNNEL_IDLE_TIMEOUT.as_secs() / 60),
        ),
        (
            "[proxy] tunnel_max_lifetime",
            format!(
                "\"{}h\"",
                service::PROXY_TUNNEL_MAX_LIFETIME.as_secs() / 3600
            ),
        ),
        ("[upstream] url", "(required with `[proxy]`)".to_owned()),
        (
            "connect_timeout",
            format!("\"{}s\"", service::UPSTREAM_CONNECT_TIMEOUT.as_secs()),
        ),
        (
            "response_timeout",
            format!("\"{}s\"", service::UPSTREAM_RESPONSE_TIMEOUT.as_secs()),
        ),
        (
            "idle_timeout",
            format!("\"{}s\"", service::UPSTREAM_IDLE_TIMEOUT.as_secs()),
        ),
        (
            "max_idle_per_host",
            service::UPSTREAM_MAX_IDLE_PER_HOST.to_string(),
        ),
        ("remove_authorization", "false".to_owned()),
        ("ca_file", "none".to_owned()),
        ("[proxy.tls]", "none".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(proxy, expected);

    // [tls], [proxy.tls] and [forwarded]: the defaults the code has.
    let tls = table(
        &md,
        "TLS and client certificates: `[tls]`, `[proxy.tls]`, `[forwarded]`",
    );
    assert_eq!(
        jwtd_service::config::ClientAuth::default(),
        jwtd_service::config::ClientAuth::Optional
    );
    let forwarded = jwtd_gate::mtls::ForwardedConfig::default();
    assert_eq!(forwarded.client_cert, None);
    let header = |format: &str| {
        let c: jwtd_gate::mtls::ForwardedConfig =
            toml::from_str(&format!("client_cert = \"{format}\"")).unwrap();
        c.compile().map(|f| f.map(|f| f.header.to_string()))
    };
    assert_eq!(header("rfc9440"), Ok(Some("client-cert".into())));
    assert_eq!(header("xfcc"), Ok(Some("x-forwarded-client-cert".into())));
    assert!(header("pem").is_err(), "pem needs a header");
    let expected: BTreeMap<String, String> = [
        ("cert_file", "(required)"),
        ("key_file", "(required)"),
        ("client_ca_file", "none"),
        ("client_auth", "\"optional\""),
        ("[forwarded] client_cert", "none"),
        (
            "[forwarded] client_cert_header",
            "Client-Cert` (`rfc9440`), `x-forwarded-client-cert` (`xfcc`)",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(tls, expected);
}

/// The `[[resource]]` table and limits of docs/configuration.md against the code: every key
/// of `ResourceConfig` documented (and only those), the limits and the `Cache-Control` age.
#[test]
fn the_documented_resource_table_states_the_code() {
    use jwtd_gate::resource::{
        MAX_AGE, MAX_LIST, MAX_NAME_LEN, MAX_RESOURCES, MAX_URI_LEN, PREFLIGHT_MAX_AGE,
    };
    use jwtd_service::Env;
    let md = docs();
    let rows = table(&md, "Protected resources: `[[resource]]`");
    let keys: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "issuers",
            "resource_documentation",
            "resource_name",
            "scopes_supported",
            "uri"
        ]
    );
    assert_eq!(rows["uri"], "(required)");
    assert_eq!(rows["issuers"], "(required)");
    // Every documented key is one the code reads (an unknown one is a load error).
    let env = Env::from_vars([("S", "resource-docs-secret-0123456789abcdef")]);
    let text = "[[issuer]]\nname = \"corp\"\nissuer = \"https://a.example\"\nsecret_env = \"S\"\n\
                algorithms = [\"HS256\"]\n[[resource]]\nuri = \"https://r.example/mcp\"\n\
                issuers = [\"corp\"]\nscopes_supported = [\"a\"]\nresource_name = \"R\"\n\
                resource_documentation = \"https://docs.example\"\n";
    jwtd_service::Config::parse_with_env(text, "t", &env).unwrap();
    let at = md.find("\n## Protected resources").unwrap();
    let section = &md[at..at + md[at + 1..].find("\n## ").unwrap()];
    for want in [
        format!("public, max-age={MAX_AGE}"),
        format!("Access-Control-Max-Age: {PREFLIGHT_MAX_AGE}"),
        format!("1 to {MAX_LIST} names"),
        format!("at most {MAX_LIST})"),
        format!("1 to {MAX_NAME_LEN} bytes"),
        format!("At most {MAX_RESOURCES} `[[resource]]` tables"),
        format!("{},{:03} bytes", MAX_URI_LEN / 1000, MAX_URI_LEN % 1000),
    ] {
        assert!(section.contains(&want), "{want:?} in the section");
    }
}

/// The tower layer reads the same file as `jwtd serve` (`GateConfig`): every top-level key of
/// the documented sample is one it knows (the engine's, or one it leaves to the service), so
/// a `jwtd.toml` with `[ext_authz]`, `[proxy]`, `[upstream]` or `trusted_proxies` is not
/// refused as unknown there.
#[test]
fn the_engine_reads_every_key_of_the_documented_sample() {
    let md = docs();
    let start = md.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = md[start..].find("```").expect("the block ends");
    let block = &md[start..start + len];
    let keys: Vec<String> = sample(&md).keys().cloned().collect();
    for key in ["ext_authz", "proxy", "upstream"] {
        assert!(keys.iter().any(|k| k == key), "the sample shows {key}");
    }
    // Not in the sample: a top-level key, so before the tables.
    let block = format!("trusted_proxies = [\"127.0.0.1/32\"]\n{block}");
    let env = jwtd_gate::Env::from_vars([("JWTD_HS_SECRET", "0123456789abcdef0123456789abcdef")]);
    if let Err(e) = jwtd_gate::config::GateConfig::parse_with_env(&block, "sample.toml", &env) {
        let text = e.to_string();
        assert!(!text.contains("unknown key"), "{text}");
    }
}
