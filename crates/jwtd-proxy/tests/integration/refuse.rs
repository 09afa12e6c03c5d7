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

/// Reads one answer from a kept-alive connection (its body by `Content-Length`).
async fn read_one(s: &mut tokio::net::TcpStream) -> crate::wire::Answer {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        buf.push(byte[0]);
    }
    let head = crate::wire::parse(&buf, true);
    let n: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).await.unwrap();
    buf.extend_from_slice(&body);
    crate::wire::parse(&buf, false)
}

/// `response_timeout` holds for every request of a kept-alive connection, which keeps one
/// timer for all of them (moved to each request's deadline): a slow answer after fast ones is
/// a 504 at its own deadline, and the requests after it are not cut by the timer that fired.
#[tokio::test]
async fn response_timeout_holds_for_each_request_of_a_kept_alive_connection() {
    use tokio::io::AsyncWriteExt;
    let up = upstream();
    let proxy = start(&up, |o| {
        o.response_timeout = std::time::Duration::from_millis(400)
    })
    .await;
    let t = token("alice");
    let req = |target: &str| {
        let r = authed("GET", target, &t, &[], b"");
        String::from_utf8(r)
            .unwrap()
            .replace("Connection: close\r\n", "")
            .into_bytes()
    };
    tokio::time::timeout(crate::wire::BOUND, async {
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        for _ in 0..3 {
            s.write_all(&req("/slow?ms=10")).await.unwrap();
            assert_eq!(read_one(&mut s).await.status, 200);
        }
        // Waited past one response_timeout since the first request: its timer must not cut
        // the next one early.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        s.write_all(&req("/slow?ms=200")).await.unwrap();
        assert_eq!(
            read_one(&mut s).await.status,
            200,
            "200 ms is within 400 ms"
        );
        let started = std::time::Instant::now();
        s.write_all(&req("/slow?ms=3000")).await.unwrap();
        let a = read_one(&mut s).await;
        assert_eq!(a.status, 504, "{a:?}");
        assert_eq!(a.json()["reason"], "upstream_timeout");
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(350)
                && took < std::time::Duration::from_secs(2),
            "{took:?}"
        );
        // After the timer fired: the next request has its own 400 ms.
        s.write_all(&req("/slow?ms=200")).await.unwrap();
        assert_eq!(read_one(&mut s).await.status, 200);
    })
    .await
    .expect("within 30 s");
}
