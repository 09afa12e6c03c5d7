//! The upstream over HTTPS (the system's roots plus `ca_file`), a connection that never
//! completes (504 at `connect_timeout`), and the drain on shutdown.

use crate::wire::{authed, exchange};
use crate::{engine, start_with, tls_upstream, token, upstream};
use jwtd_proxy::{Limits, Options, Proxy};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_https_upstream_is_verified_against_ca_file() {
    let (up, ca) = tls_upstream();
    let url = format!("https://localhost:{}", up.port);
    let mut options = Options::new(&url);
    options.ca_file = Some(ca);
    let proxy = start_with(engine(), options, Limits::default()).await;
    let t = token("alice");
    for _ in 0..3 {
        let a = exchange(proxy, &authed("POST", "/echo", &t, &[], b"over tls")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"over tls");
        assert_eq!(a.echo().all("x-auth-subject"), ["alice"]);
    }
    // Without the CA the upstream's certificate is not trusted: 502, nothing forwarded.
    let proxy = start_with(engine(), Options::new(&url), Limits::default()).await;
    let a = exchange(proxy, &authed("GET", "/echo", &t, &[], b"")).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["reason"], "upstream_unavailable");
}

#[test]
fn a_bad_upstream_or_ca_file_is_refused_at_construction() {
    let dir = jwtd_test_support::temp_dir("proxy-bad-ca");
    let not_pem = dir.join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let mut options = Options::new("https://localhost:1");
    options.ca_file = Some(not_pem);
    let e = Proxy::new(engine(), options.clone()).unwrap_err();
    assert!(e.contains("ca_file"), "{e}");
    assert_eq!(jwtd_proxy::check(&options).unwrap_err(), e);
    options.ca_file = Some(dir.join("missing.pem"));
    assert!(Proxy::new(engine(), options)
        .unwrap_err()
        .contains("ca_file"));
    for bad in [
        "ftp://a",
        "http://",
        "http://u:p@a:1",
        "http://a:1/?q",
        "/relative",
    ] {
        let e = Proxy::new(engine(), Options::new(bad)).unwrap_err();
        assert!(e.contains("upstream url"), "{bad}: {e}");
    }
}

/// An upstream whose accept queue is full drops new SYNs: the connection never completes, and
/// the proxy answers 504 at `connect_timeout`.
#[tokio::test]
async fn a_connection_that_never_completes_is_a_504_at_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue (never accepted).
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            held.push(s);
        }
    }
    let mut options = Options::new(format!("http://{addr}"));
    options.connect_timeout = Duration::from_millis(300);
    let proxy = start_with(engine(), options, Limits::default()).await;
    let started = Instant::now();
    let a = exchange(proxy, &authed("GET", "/x", &token("alice"), &[], b"")).await;
    assert_eq!(a.status, 504, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["reason"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

/// On shutdown the listener closes at once and a request in progress finishes.
#[tokio::test]
async fn shutdown_lets_requests_in_progress_finish() {
    let up = upstream();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let proxy = Proxy::new(
        engine(),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        jwtd_proxy::serve(proxy, l, &Limits::default(), async {
            let _ = stopped.await;
        })
        .await
    });
    let t = token("alice");
    let slow =
        tokio::spawn(
            async move { exchange(addr, &authed("GET", "/slow?ms=700", &t, &[], b"")).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connection once shutting down"
    );
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "the request in progress finished");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve returns once the connection closed")
        .unwrap()
        .unwrap();
}

/// At `max_connections`, a new connection waits in the backlog until one closes.
#[tokio::test]
async fn at_max_connections_a_new_connection_waits_for_one_to_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream();
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let proxy = start_with(
        engine(),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        limits,
    )
    .await;
    let first = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let _second = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(proxy).await.unwrap();
    third
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut buf)).await;
    assert!(early.is_err(), "not served while two connections are open");
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut buf))
        .await
        .expect("served once one closed")
        .unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 200"));
}
