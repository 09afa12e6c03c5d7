//! `jwtd`: decode, verify, sign and manage keys for JSON Web Tokens.
//!
//! Exit codes: 0 success; 1 the token was rejected (a JSON error with a stable reason code on
//! stderr), or remote keys could not be fetched within `--fetch-timeout` (`key_fetch_failed`),
//! or `jwtd rules test` printed a denial, or `jwtd dpop verify` printed a refusal; 2 usage or configuration error (bad flag, unreadable or unusable key file, a remote key
//! source that answers with something unusable), at once.

mod args;
mod cmd;
mod dpop;
mod io;
mod rules;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cmd::Failure::Rejected(e)) => {
            // Member order as documented: error, reason, message.
            let s = |v: &str| serde_json::to_string(v).expect("strings serialize");
            eprintln!(
                "{{\"error\":{},\"reason\":{},\"message\":{}}}",
                s(e.reason().bearer_error().as_str()),
                s(e.reason().as_str()),
                s(e.message())
            );
            ExitCode::from(1)
        }
        Err(cmd::Failure::Denied) => ExitCode::from(1),
        Err(cmd::Failure::Usage(msg)) => {
            eprintln!("jwtd: {msg}");
            ExitCode::from(2)
        }
    }
}
