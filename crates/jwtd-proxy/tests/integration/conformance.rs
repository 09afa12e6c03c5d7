//! The shared conformance table (crates/jwtd-gate/conformance/) through the proxy: the same
//! decision as the engine, `/auth`, the tower layer and ext_authz for every row; an allowed
//! row's identity headers are read from what the upstream received (a header the decision has
//! no value for is absent there, which the table writes as empty).

use crate::wire::{exchange, request};
use crate::{engine_of, start_with, upstream};
use jwtd_gate::conformance::{check, Observed, Suite};
use jwtd_proxy::{Limits, Options};
use std::collections::BTreeMap;

#[tokio::test]
async fn conformance_table_through_the_proxy() {
    let suite = Suite::new(&jwtd_test_support::temp_dir("proxy-conformance"));
    let up = upstream();
    let proxy = start_with(
        engine_of(&suite.config),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        Limits::default(),
    )
    .await;
    let mut failures = Vec::new();
    for case in &suite.cases {
        let auth = case
            .token
            .as_ref()
            .map(|label| format!("Authorization: Bearer {}", suite.token(label)));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        let a = exchange(proxy, &request(&case.method, &case.path, &headers, b"")).await;
        let got = if a.status == 200 {
            let e = a.echo();
            let mut seen = BTreeMap::new();
            for name in case.headers.keys() {
                let v = e.one(name).unwrap_or("").to_owned();
                seen.insert(name.clone(), v);
            }
            assert_eq!(
                e.path,
                resolved(&case.path),
                "{}: forwarded as sent, its dot segments resolved",
                case.name
            );
            Observed {
                status: 200,
                reason: None,
                rule: None,
                headers: Some(seen),
            }
        } else {
            assert!(
                a.header("x-echo").is_none(),
                "{}: refused by jwtd",
                case.name
            );
            Observed {
                status: a.status,
                reason: a.json()["reason"].as_str().map(str::to_owned),
                rule: None,
                headers: None,
            }
        };
        if let Err(e) = check(case, &got) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `path` with its (plain) dot segments resolved, as the proxy forwards it.
fn resolved(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.trim_start_matches('/').split('/') {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}
