//! Request smuggling and head limits, over raw TCP: hyper's HTTP/1 server refuses what two
//! parsers could read differently (400, connection closed) before the engine or the upstream
//! sees it; heads past the limits are 431.

use crate::wire::{exchange, request};
use crate::{engine, start, start_with, token, upstream};
use jwtd_proxy::{Limits, Options};

/// What the proxy answers to `raw` (a whole request, perhaps malformed).
async fn answer_to(proxy: std::net::SocketAddr, raw: &str) -> u16 {
    exchange(proxy, raw.as_bytes()).await.status
}

#[tokio::test]
async fn conflicting_framing_and_obs_fold_are_refused_400() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    let auth = format!("Authorization: Bearer {t}\r\n");
    let cases = [
        (
            "two different Content-Lengths",
            format!("POST /echo HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ),
        (
            "a Content-Length list",
            format!("POST /echo HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 4, 5\r\n\r\nabcde"),
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!("POST /echo HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ),
        (
            "an obs-folded header",
            format!("GET /echo HTTP/1.1\r\nHost: a\r\n{auth}X-Folded: a\r\n b\r\n\r\n"),
        ),
        (
            "a space before the colon",
            format!("GET /echo HTTP/1.1\r\nHost: a\r\n{auth}Content-Length : 0\r\n\r\n"),
        ),
        (
            "a bare LF in the chunk size line",
            format!("POST /echo HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding: chunked\r\n\r\n4\nabcd\r\n0\r\n\r\n"),
        ),
    ];
    for (what, raw) in cases {
        let status = answer_to(proxy, &raw).await;
        assert_eq!(status, 400, "{what}");
    }
    // A well-formed request on the same proxy still goes through.
    let ok = format!("POST /echo HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\nContent-Length: 4\r\n\r\nabcd");
    let a = exchange(proxy, ok.as_bytes()).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abcd"[..]));
}

/// `Content-Length` and `Transfer-Encoding: chunked` together: hyper reads the body as
/// chunked, drops the `Content-Length`, and closes the connection after the answer, so the
/// bytes after the chunked body (a request smuggled past a parser that took the length) are
/// never read as a request.
#[tokio::test]
async fn content_length_with_chunked_is_read_as_chunked_and_the_connection_closed() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    for (first, second) in [
        ("Content-Length: 40", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 40"),
    ] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n{first}\r\n\
             {second}\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(crate::wire::BOUND, s.read_to_end(&mut buf))
            .await
            .expect("the proxy closes the connection")
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "one answer only: {text}"
        );
        let a = crate::wire::parse(&buf, false);
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"abc", "the chunked body, not 40 bytes");
        let e = a.echo();
        assert!(e.all("content-length").len() + e.all("transfer-encoding").len() == 1);
        assert!(!e.all("content-length").contains(&"40"));
    }
}

/// A pipelined second request hidden in a body the proxy reads as chunked never reaches the
/// upstream as a request of its own: the upstream sees one request with that body.
#[tokio::test]
async fn a_chunked_body_is_reframed_for_the_upstream() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    let hidden = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n";
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
        hidden.len()
    );
    let a = exchange(proxy, raw.as_bytes()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        hidden.as_bytes(),
        "the upstream got it as body bytes"
    );
    let e = a.echo();
    assert!(e.all("content-length").len() + e.all("transfer-encoding").len() == 1);
}

#[tokio::test]
async fn oversized_heads_are_refused_431() {
    let up = upstream();
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 20,
        ..Limits::default()
    };
    let proxy = start_with(
        engine(),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        limits,
    )
    .await;
    let big = format!("X-Big: {}", "a".repeat(20 * 1024));
    let a = exchange(proxy, &request("GET", "/public/x", &[&big], b"")).await;
    assert_eq!(a.status, 431, "a head over max_header_bytes");
    let many: Vec<String> = (0..25).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let a = exchange(proxy, &request("GET", "/public/x", &many, b"")).await;
    assert_eq!(a.status, 431, "more than max_headers");
    let few: Vec<&str> = many[..10].to_vec();
    let a = exchange(proxy, &request("GET", "/public/x", &few, b"")).await;
    assert_eq!(a.status, 200);
}

/// A client that never finishes its head, or keeps a connection idle, is dropped at
/// header_read_timeout.
#[tokio::test]
async fn a_slow_head_is_dropped_at_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream();
    let limits = Limits {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..Limits::default()
    };
    let proxy = start_with(
        engine(),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        limits,
    )
    .await;
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("closed within 10 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // A kept-alive connection waiting for its next request is closed at the same timeout.
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("closed within 10 s")
        .unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 200"), "answered first");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A kept-alive connection whose requests each come within header_read_timeout stays open
/// however long it lives in all, and is closed at (not before) the timeout once it idles.
#[tokio::test]
async fn a_connection_in_use_stays_open_and_idle_closes_at_header_read_timeout() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream();
    let timeout = Duration::from_millis(300);
    let limits = Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    };
    let proxy = start_with(
        engine(),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        limits,
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    // One answer: its head, then its Content-Length body.
    async fn answer(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).await.unwrap();
            assert_eq!(
                n,
                1,
                "closed before an answer: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("a Content-Length");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        head
    }
    let started = Instant::now();
    for _ in 0..5 {
        s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let head = tokio::time::timeout(Duration::from_secs(10), answer(&mut s))
            .await
            .expect("answered within 10 s");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        tokio::time::sleep(timeout * 2 / 3).await;
    }
    assert!(
        started.elapsed() > timeout * 3,
        "lived past several timeouts"
    );
    // Idle now (for 2/3 of the timeout already): closed at the timeout, not before.
    let idle = Instant::now() - timeout * 2 / 3;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("closed within 10 s")
        .unwrap();
    assert!(rest.is_empty());
    let waited = idle.elapsed();
    assert!(
        waited >= timeout - Duration::from_millis(20),
        "closed early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed late: {waited:?}");
}
