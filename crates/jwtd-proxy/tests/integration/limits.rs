//! The review's leftovers: a request body that stalls (`body_timeout`), before and after the
//! upstream's answer head, and upgraded tunnels that idle or outlive `tunnel_max_lifetime`.

use crate::upgrade::{frame, handshake, read_frame};
use crate::wire::{authed, parse, BOUND};
use crate::{start, token, upstream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the connection ends (EOF or reset), within `within`; what was read.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the connection still open after {within:?}, read {:?}",
            String::from_utf8_lossy(&buf)
        )
    });
    buf
}

/// A client that sends 10 of the 100 bytes it announced and stops: answered 408 at
/// `body_timeout`, long before `response_timeout` (the earlier code waited for the upstream's
/// answer, 504 at `response_timeout`, with a connection and an upstream thread held).
#[tokio::test]
async fn a_request_body_stalled_before_the_answer_is_408_at_body_timeout() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.body_timeout = Duration::from_millis(300);
        o.response_timeout = Duration::from_secs(20);
    })
    .await;
    let t = token("alice");
    let mut req = authed("POST", "/echo", &t, &[], &[b'x'; 100]);
    req.truncate(req.len() - 90);
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let began = Instant::now();
    s.write_all(&req).await.unwrap();
    let buf = read_to_close(&mut s, Duration::from_secs(8)).await;
    let a = parse(&buf, false);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"));
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(began.elapsed() < Duration::from_secs(8));
}

/// A client that trickles its body a byte every 100 ms, well within `body_timeout` (300 ms):
/// answered 408 at `body_total_timeout` (1 s), before it is done (the earlier code took the
/// 100 bytes for 10 s, and a byte every 59 s for as long as the client liked).
#[tokio::test]
async fn a_request_body_trickled_past_body_total_timeout_is_408() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.body_timeout = Duration::from_millis(300);
        o.body_total_timeout = Duration::from_secs(1);
        o.response_timeout = Duration::from_secs(20);
    })
    .await;
    let t = token("alice");
    let mut req = authed("POST", "/echo", &t, &[], &[b'x'; 100]);
    let body = req.split_off(req.len() - 100);
    let s = TcpStream::connect(proxy).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let began = Instant::now();
    wr.write_all(&req).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in body {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), rd.read_to_end(&mut buf))
        .await
        .expect("answered before the trickle ends")
        .ok();
    let a = parse(&buf, false);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"));
    assert!(a
        .header("x-request-id")
        .is_some_and(|i| i.starts_with("jwtd-")));
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    trickle.abort();
}

/// A chunked upload whose answer is already streaming back (`/relay`) and that then stalls:
/// the connection is cut at `body_timeout` (the earlier code had no body timeout once the
/// answer head was in: only the upstream's `idle_timeout` on the answer, here 60 s).
#[tokio::test]
async fn a_request_body_stalled_after_the_answer_head_is_cut_at_body_timeout() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.body_timeout = Duration::from_millis(300);
        o.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let t = token("alice");
    let head = authed("POST", "/relay", &t, &["Transfer-Encoding: chunked"], b"");
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(b"5\r\nfirst\r\n").await.unwrap();
    // The answer's head and the first chunk come back while the body is still open.
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut chunk = [0u8; 1024];
        while !got.windows(5).any(|w| w == b"first") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Then the client stalls: cut, never finished with a last chunk.
    let began = Instant::now();
    let rest = read_to_close(&mut s, Duration::from_secs(8)).await;
    assert!(began.elapsed() >= Duration::from_millis(250));
    got.extend_from_slice(&rest);
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "the answer must not look complete: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// A WebSocket with nothing sent either way for `tunnel_idle_timeout` is closed; traffic keeps
/// it open. (The earlier code kept an idle tunnel forever.)
#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed_at_tunnel_idle_timeout() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.tunnel_idle_timeout = Duration::from_millis(600);
    })
    .await;
    let t = token("alice");
    let (mut s, a) = tokio::time::timeout(BOUND, handshake(proxy, Some(&t)))
        .await
        .unwrap();
    assert_eq!(a.status, 101, "{a:?}");
    // Busy for twice the idle timeout: still open.
    for i in 0..6u8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&frame(2, &[i; 10])).await.unwrap();
        let (op, payload) = tokio::time::timeout(BOUND, read_frame(&mut s))
            .await
            .unwrap();
        assert_eq!((op, payload), (2, vec![i; 10]));
    }
    // Then idle: closed.
    let began = Instant::now();
    let rest = read_to_close(&mut s, Duration::from_secs(8)).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(began.elapsed() >= Duration::from_millis(500));
}

/// A WebSocket is closed at `tunnel_max_lifetime` after its handshake even while busy: its
/// token was checked once, at the handshake. (The earlier code kept it as long as it was used.)
#[tokio::test]
async fn a_busy_websocket_tunnel_is_closed_at_tunnel_max_lifetime() {
    let up = upstream();
    let proxy = start(&up, |o| {
        o.tunnel_idle_timeout = Duration::from_secs(30);
        o.tunnel_max_lifetime = Duration::from_millis(1200);
    })
    .await;
    let t = token("alice");
    let (mut s, a) = tokio::time::timeout(BOUND, handshake(proxy, Some(&t)))
        .await
        .unwrap();
    assert_eq!(a.status, 101, "{a:?}");
    let began = Instant::now();
    let mut echoed = 0;
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(&frame(2, b"ping")).await.is_err() {
                return;
            }
            let mut head = [0u8; 2];
            match s.read_exact(&mut head).await {
                Ok(_) => {
                    let mut payload = [0u8; 4];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    assert_eq!(&payload, b"ping");
                    echoed += 1;
                }
                Err(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a busy tunnel still open after 8 s");
    let lived = began.elapsed();
    assert!(
        lived >= Duration::from_millis(1100),
        "closed after {lived:?}"
    );
    assert!(echoed >= 5, "only {echoed} echoes before the close");
}
