//! Any text as a jwtd configuration file (`Config::parse`: `${VAR}` interpolation, TOML, the
//! cross-field checks). Must never panic; a refusal names at least one problem.
#![no_main]

use jwtd_service::Config;
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

/// What the recipe seeds interpolate (the names `config_fuzz_seeds` sets), so that they get
/// past `${...}` into the TOML and the checks; `PARTNER_ID` holds a quote, a line break, a
/// backslash and a control character, for the escaping. `HOME` and `PATH` come from the
/// environment.
const VARS: [(&str, &str); 10] = [
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
];

fuzz_target!(|data: &[u8]| {
    static ENV: Once = Once::new();
    ENV.call_once(|| {
        for (k, v) in VARS {
            std::env::set_var(k, v);
        }
    });
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, "fuzz") {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            assert!(!e.errors.is_empty());
            let _ = e.to_string();
        }
    }
});
