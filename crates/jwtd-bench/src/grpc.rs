//! `grpc-load`: a gRPC load generator for jwtd's Envoy external authorizer
//! (`envoy.service.auth.v3.Authorization/Check`), the counterpart of wrk for `/auth`
//! (`scripts/bench-extauthz.sh`). No `ghz` in the package registries here; this client is built
//! from the same protos (`envoy-types`) as the authorizer.
//!
//! Each of CONNS connections (its own HTTP/2 connection) has one check in flight at a time, as
//! each of wrk's connections has one request, and walks the token list from its own evenly
//! spaced start. The request is what Envoy sends for `GET /v1/orders/42` with the token in
//! `Authorization`.

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What Envoy asks about `GET /v1/orders/42` with `token`.
fn check_request(token: &str) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":authority", "api.bench"),
        (":method", "GET"),
        (":path", "/v1/orders/42"),
        (":scheme", "http"),
        ("user-agent", "jwtd-bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("authorization".to_owned(), format!("Bearer {token}"))])
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "api.bench".into(),
                    path: "/v1/orders/42".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// How long, or how many checks in all.
#[derive(Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Count(usize),
}

/// `grpc-load ADDR TOKENS CONNS SECONDS|--count N`: prints one line
/// `RESULT rps=… p50_ms=… p99_ms=… non2xx_or_errors=…` (a check answered with anything but
/// OK counts as an error), the line `scripts/bench-lib.sh`'s wrk script prints.
pub fn load(args: &[String]) {
    let usage = "grpc-load ADDR TOKENS CONNS SECONDS|--count N";
    let (addr, tokens, conns, until) = match args {
        [a, t, c, flag, n] if flag == "--count" => {
            (a, t, c, Until::Count(n.parse().expect("count")))
        }
        [a, t, c, s] => (
            a,
            t,
            c,
            Until::Elapsed(Duration::from_secs_f64(s.parse().expect("seconds"))),
        ),
        _ => panic!("{usage}"),
    };
    let conns: usize = conns.parse().expect("connections");
    assert!(conns > 0, "{usage}");
    let tokens: Arc<Vec<CheckRequest>> = Arc::new(
        std::fs::read_to_string(tokens)
            .expect("tokens file")
            .lines()
            .filter(|l| !l.is_empty())
            .map(check_request)
            .collect(),
    );
    assert!(!tokens.is_empty(), "no tokens in the file");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("http://{addr}");
    rt.block_on(async move {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..conns {
            // A channel of its own: one HTTP/2 connection per client, as wrk's connections.
            let channel = tonic::transport::Endpoint::from_shared(url.clone())
                .expect("address")
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .expect("connect");
            let tokens = tokens.clone();
            let share = match until {
                Until::Count(n) => Until::Count(n / conns + usize::from(c < n % conns)),
                e => e,
            };
            tasks.push(tokio::spawn(async move {
                let mut client = AuthorizationClient::new(channel);
                let mut i = tokens.len() * c / conns;
                let (mut lat, mut bad) = (Vec::new(), 0usize);
                loop {
                    match share {
                        Until::Count(n) if lat.len() + bad >= n => break,
                        Until::Elapsed(d) if started.elapsed() >= d => break,
                        _ => {}
                    }
                    i = (i + 1) % tokens.len();
                    let t = Instant::now();
                    match client.check(tokens[i].clone()).await {
                        Ok(r) if r.get_ref().status.as_ref().map_or(0, |s| s.code) == 0 => {
                            lat.push(t.elapsed().as_micros() as u64);
                        }
                        _ => bad += 1,
                    }
                }
                (lat, bad)
            }));
        }
        let (mut lat, mut bad) = (Vec::new(), 0);
        for t in tasks {
            let (l, b) = t.await.expect("client task");
            lat.extend(l);
            bad += b;
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(0.0, |&us| us as f64 / 1000.0)
        };
        println!(
            "RESULT rps={:.0} p50_ms={:.2} p99_ms={:.2} non2xx_or_errors={bad}",
            (lat.len() + bad) as f64 / secs,
            pct(0.50),
            pct(0.99)
        );
    });
}
