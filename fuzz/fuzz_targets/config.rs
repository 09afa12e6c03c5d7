//! Any text as a jwtd configuration file (`Config::parse_with_env`: `${VAR}` interpolation,
//! TOML, the cross-field checks). Must never panic; a refusal names at least one problem.
#![no_main]

use jwtd_service::{Config, Env};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The environment every input is parsed in: what the recipe seeds interpolate (the names
/// `config_fuzz_seeds` passes), so that they get past `${...}` into the TOML and the checks;
/// `PARTNER_ID` holds a quote, a line break, a backslash and a control character, for the
/// escaping. `HOME` and `PATH` (the interpolation seed's) too.
const VARS: [(&str, &str); 12] = [
    ("PUBLIC_URL", "https://auth.example"),
    ("OIDC_ISSUER", "https://tenant.example/"),
    ("API_AUDIENCE", "https://api.example"),
    ("SITE_DOMAIN", "https://site.example"),
    ("PROVIDER_JWKS", "https://provider.example/jwks.json"),
    ("WALLET_ISSUER", "https://wallet.example"),
    ("WALLET_JWKS", "https://wallet.example/jwks.json"),
    ("PARTNER_ID", "partner\"\n\\ \u{1}"),
    ("REQUIRED_SCOPE", "orders:read"),
    ("XAPP_API_KEY", "key"),
    ("HOME", "/home/jwtd"),
    ("PATH", "/usr/bin:/bin"),
];

fuzz_target!(|data: &[u8]| {
    static ENV: OnceLock<Env> = OnceLock::new();
    let env = ENV.get_or_init(|| Env::from_vars(VARS));
    let text = String::from_utf8_lossy(data);
    match Config::parse_with_env(&text, "fuzz", env) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            assert!(!e.errors.is_empty());
            let _ = e.to_string();
        }
    }
});
