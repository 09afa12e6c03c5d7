//! Any text as a jwtd configuration file (`Config::parse`: `${VAR}` interpolation, TOML, the
//! cross-field checks). Must never panic; a refusal names at least one problem.
#![no_main]

use jwtd_service::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
