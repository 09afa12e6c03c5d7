//! What the proxy answers itself: refusals as `/auth` answers them, and the upstream's
//! failures (502 `upstream_unavailable`, 504 `upstream_timeout`) without internal detail.

use crate::wire::{authed, exchange, request};
use crate::{engine, start, start_with, token, upstream};
use jwtd_proxy::{Limits, Options};

#[tokio::test]
async fn refusals_are_the_auth_answers() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let a = exchange(proxy, &request("GET", "/x", &[], b"")).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("www-authenticate"), Some("Bearer realm=\"jwtd\""));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let body = a.json();
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["reason"], "missing_token");
    assert!(
        a.header("x-echo").is_none(),
        "answered by jwtd, not the upstream"
    );

    let mut bad = token("alice");
    bad.push('x');
    let a = exchange(proxy, &authed("GET", "/x", &bad, &[], b"")).await;
    assert_eq!(a.status, 401);
    assert!(a
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer realm=\"jwtd\", error=\"invalid_token\""));

    // Two tokens: 400 multiple_tokens.
    let t = token("alice");
    let a = exchange(
        proxy,
        &authed(
            "GET",
            "/x",
            &t,
            &[&format!("Authorization: Bearer {t}")],
            b"",
        ),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["reason"], "multiple_tokens");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502() {
    let port = jwtd_test_support::free_port();
    let proxy = start_with(
        engine(),
        Options::new(format!("http://127.0.0.1:{port}")),
        Limits::default(),
    )
    .await;
    let a = exchange(proxy, &authed("GET", "/x", &token("alice"), &[], b"")).await;
    assert_eq!(a.status, 502);
    let body = a.json();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["reason"], "upstream_unavailable");
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        !text.contains("127.0.0.1") && !text.contains(&port.to_string()),
        "no internal detail: {text}"
    );
    assert!(a.header("retry-after").is_none());
    // Refusals still come first: no token, no upstream call, 401.
    let a = exchange(proxy, &request("GET", "/x", &[], b"")).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.response_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let started = std::time::Instant::now();
    let a = exchange(
        proxy,
        &authed("GET", "/slow?ms=3000", &token("alice"), &[], b""),
    )
    .await;
    assert_eq!(a.status, 504);
    assert_eq!(a.json()["reason"], "upstream_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // A fast answer on the same proxy is fine.
    let a = exchange(
        proxy,
        &authed("GET", "/slow?ms=10", &token("alice"), &[], b""),
    )
    .await;
    assert_eq!(a.status, 200);
}

/// A response body that stalls past `idle_timeout` is cut: the head (already sent) stays, the
/// body ends early.
#[tokio::test]
async fn a_stalled_response_body_is_cut_at_idle_timeout() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.idle_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let started = std::time::Instant::now();
    let a = exchange(proxy, &authed("GET", "/stall", &token("alice"), &[], b"")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"first");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "cut after idle_timeout, not after the upstream's 30 s"
    );
}
