//! Request ids and the `answered` hook: every answer (the upstream's, jwtd's refusal, an
//! upstream failure) carries `X-Request-Id`, the upstream is sent the same, a client's is
//! taken only from a source that trusts it, and the source hears of every request once with
//! how it ended.

use crate::wire::{authed, exchange, request};
use crate::{engine, start, start_with, token, upstream};
use jwtd_proxy::{Answer, EngineSource, Limits, Options, Outcome};
use std::sync::{Arc, Mutex};

fn rid(a: &crate::wire::Answer) -> String {
    a.header("x-request-id")
        .unwrap_or_else(|| panic!("an X-Request-Id: {a:?}"))
        .to_owned()
}

/// Untrusted (the default): every id is jwtd's, the client's replaced both ways, the same id
/// to the upstream and back, an upstream's own id replaced, refusals and 502s carry one.
#[tokio::test]
async fn every_answer_carries_jwtd_s_request_id_and_the_upstream_gets_the_same() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    let a = exchange(
        proxy,
        &authed(
            "GET",
            "/x",
            &t,
            &["X-Request-Id: mine", "X_Request_Id: spoofed"],
            b"",
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    let allowed = rid(&a);
    assert!(allowed.starts_with("jwtd-"), "{allowed}");
    // The `_` spelling too: a CGI-style app reads it as the same variable.
    assert_eq!(a.echo().all("x-request-id"), [allowed.as_str()]);
    assert!(a.echo().all("x_request_id").is_empty());
    // The upstream's own id in its answer: jwtd's is the one the client sees.
    let a = exchange(proxy, &authed("GET", "/rid", &t, &[], b"")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers
            .iter()
            .filter(|(n, _)| n == "x-request-id")
            .count(),
        1
    );
    assert_eq!(a.echo().all("x-request-id"), [rid(&a).as_str()]);
    assert!(rid(&a).starts_with("jwtd-"));
    // Refused by jwtd.
    let a = exchange(proxy, &request("GET", "/x", &["X-Request-Id: mine"], b"")).await;
    assert_eq!(a.status, 401);
    let refused = rid(&a);
    assert!(
        refused.starts_with("jwtd-") && refused != allowed,
        "{refused}"
    );
    // Refused before the engine.
    let a = exchange(proxy, &request("GET", "/a\\b", &[], b"")).await;
    assert_eq!(a.status, 400);
    assert!(rid(&a).starts_with("jwtd-"));
    // The upstream gone: 502, with an id.
    let dead = start_with(
        engine(),
        Options::new(format!(
            "http://127.0.0.1:{}",
            jwtd_test_support::free_port()
        )),
        Limits::default(),
    )
    .await;
    let a = exchange(dead, &authed("GET", "/x", &t, &[], b"")).await;
    assert_eq!(a.status, 502);
    assert!(rid(&a).starts_with("jwtd-"));
}

/// What a source heard: (request id, outcome, reason, issuer, a token was passed).
type Heard = Arc<Mutex<Vec<(String, &'static str, String, Option<String>, bool)>>>;

/// A source that trusts client ids and records every answer.
struct Recording {
    engine: Arc<jwtd_gate::Engine>,
    heard: Heard,
}

impl EngineSource for Recording {
    type Handle = Arc<jwtd_gate::Engine>;

    fn engine(&self) -> Self::Handle {
        self.engine.clone()
    }

    fn trusts_request_id(&self, _: &Self::Handle) -> bool {
        true
    }

    fn answered(&self, _: &Self::Handle, a: &Answer<'_>) {
        let (outcome, reason) = match a.outcome {
            Outcome::Allowed => ("allowed", String::new()),
            Outcome::Refused(e) => ("refused", e.reason().as_str().to_owned()),
            Outcome::Failed { reason } => ("failed", reason.to_owned()),
        };
        assert!(a.started.elapsed() < std::time::Duration::from_secs(30));
        self.heard.lock().unwrap().push((
            a.request_id.as_str().to_owned(),
            outcome,
            reason,
            a.issuer.map(|i| i.name().to_owned()),
            a.token.is_some(),
        ));
    }
}

/// A trusting source: a client's acceptable id is the request's both ways, an unacceptable
/// one (65 characters) is replaced; `answered` hears of each request once, with its outcome,
/// issuer and (for a refusal) token.
#[tokio::test]
async fn a_trusting_source_keeps_client_ids_and_hears_every_answer() {
    let up = upstream();
    let heard = Heard::default();
    let source = Recording {
        engine: engine(),
        heard: heard.clone(),
    };
    let proxy = start_with(
        source,
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        Limits::default(),
    )
    .await;
    let t = token("alice");
    let a = exchange(
        proxy,
        &authed("GET", "/x", &t, &["X-Request-Id: client-1"], b""),
    )
    .await;
    assert_eq!((a.status, rid(&a).as_str()), (200, "client-1"));
    assert_eq!(a.echo().all("x-request-id"), ["client-1"]);
    let long = format!("X-Request-Id: {}", "x".repeat(65));
    let a = exchange(proxy, &authed("GET", "/x", &t, &[&long], b"")).await;
    let generated = rid(&a);
    assert!(generated.starts_with("jwtd-"), "{generated}");
    assert_eq!(a.echo().all("x-request-id"), [generated.as_str()]);
    let bad = format!("{t}x");
    let a = exchange(
        proxy,
        &authed("GET", "/x", &bad, &["X-Request-Id: client-2"], b""),
    )
    .await;
    assert_eq!((a.status, rid(&a).as_str()), (401, "client-2"));
    let a = exchange(
        proxy,
        &request("GET", "/public/p", &["X-Request-Id: client-3"], b""),
    )
    .await;
    assert_eq!(a.status, 200);
    let heard = heard.lock().unwrap().clone();
    let corp = Some("corp".to_owned());
    assert_eq!(
        heard,
        [
            (
                "client-1".into(),
                "allowed",
                String::new(),
                corp.clone(),
                false
            ),
            (generated, "allowed", String::new(), corp.clone(), false),
            (
                "client-2".into(),
                "refused",
                "bad_signature".into(),
                corp,
                true
            ),
            ("client-3".into(), "allowed", String::new(), None, false),
        ]
    );
}
