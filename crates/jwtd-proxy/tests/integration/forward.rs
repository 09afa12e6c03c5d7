//! Allowed requests reach the upstream: methods, paths and bodies byte for byte (8 MiB both
//! ways, chunked), identity headers set by jwtd only, hop-by-hop headers stripped both ways,
//! `X-Forwarded-*` set, `Authorization` removed on demand, trusted proxies' values extended.

use crate::wire::{authed, chunked, exchange, request};
use crate::{engine, start, start_with, token, upstream};
use jwtd_proxy::{Limits, Options};

#[tokio::test]
async fn methods_paths_and_bodies_round_trip() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let body: &[u8] = if method == "GET" {
            b""
        } else {
            b"a\x00b\xffc\r\n{}"
        };
        let a = exchange(proxy, &authed(method, "/echo?q=1&r=%2F", &t, &[], body)).await;
        assert_eq!(a.status, 200, "{method}");
        assert_eq!(a.body, body, "{method}: the body, byte for byte");
        let echo = a.echo();
        assert_eq!(echo.method, method);
        assert_eq!(echo.path, "/echo?q=1&r=%2F", "the target as sent");
        assert_eq!(echo.one("host"), Some("app.test"), "the client's Host");
    }
    // HEAD: the head only.
    let a = exchange(proxy, &authed("HEAD", "/echo", &t, &[], b"")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.echo().method, "HEAD");
}

#[tokio::test]
async fn large_chunked_upload_and_download_stream_byte_for_byte() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    const N: usize = 8 * 1024 * 1024;
    let body: Vec<u8> = (0..N).map(|i| (i.wrapping_mul(7919) >> 3) as u8).collect();
    let mut req = authed("POST", "/echo", &t, &["Transfer-Encoding: chunked"], b"");
    req.extend_from_slice(&chunked(&body, 100_000));
    let a = exchange(proxy, &req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.echo().length, N);
    assert!(
        a.body == body,
        "8 MiB uploaded chunked come back byte for byte"
    );

    let a = exchange(
        proxy,
        &authed("GET", &format!("/download?n={N}"), &t, &[], b""),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    assert_eq!(a.body.len(), N);
    assert!(
        a.body
            .iter()
            .enumerate()
            .all(|(i, b)| *b as usize == i % 251),
        "8 MiB downloaded byte for byte"
    );
}

#[tokio::test]
async fn spoofed_identity_and_hop_by_hop_headers_never_arrive() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    let a = exchange(
        proxy,
        &authed(
            "GET",
            "/hop",
            &t,
            &[
                "X-Auth-Subject: admin",
                "x-auth-subject: root",
                "X-Auth-Issuer: https://evil.test",
                "X-Auth-Payload: e30",
                "X-Auth-Email: admin@corp.test",
                // The same headers to CGI-style upstreams (PHP, WSGI, Rack: `_` and `-` both
                // become `_`): removed too.
                "X_Auth_Subject: admin",
                "x-auth_email: admin@corp.test",
                "X_AUTH_PAYLOAD: e30",
                "Connection: x-drop-me, keep-alive",
                "X-Drop-Me: 1",
                "Keep-Alive: timeout=5",
                "TE: trailers",
                "Trailer: x-t",
                "Proxy-Authorization: Basic Zm9vOmJhcg==",
                "Proxy-Connection: keep-alive",
                "Upgrade: h2c",
                "X-Forwarded-For: 203.0.113.9",
                "X-Forwarded-Host: evil.test",
                "X-Forwarded-Proto: https",
                "Forwarded: for=203.0.113.9",
                "Client-Cert: :AAAA:",
                "X-Forwarded-Client-Cert: Hash=00",
                "Client_Cert_Chain: :AAAA:",
                "X-Auth-Cert-Thumbprint: forged",
                "X-Kept: yes",
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    let e = a.echo();
    assert_eq!(e.all("x-auth-subject"), ["alice"]);
    assert_eq!(e.all("x-auth-issuer"), ["https://corp.test"]);
    assert_eq!(e.all("x-auth-email"), ["alice@corp.test"]);
    assert!(
        e.all("x-auth-payload").is_empty(),
        "no issuer forwards the payload"
    );
    for hop in [
        "x-drop-me",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "forwarded",
        // Forged certificate headers: jwtd is the TLS end for an untrusted peer.
        "client-cert",
        "x-forwarded-client-cert",
        "client_cert_chain",
        "x-auth-cert-thumbprint",
    ] {
        assert!(
            e.all(hop).is_empty(),
            "{hop} was forwarded: {:?}",
            e.all(hop)
        );
    }
    // hyper's client says keep-alive on its own (or nothing); never the client's list.
    assert!(e.all("connection").iter().all(|v| !v.contains("x-drop-me")));
    assert_eq!(
        e.all("x-forwarded-for"),
        ["127.0.0.1"],
        "replaced, not trusted"
    );
    assert_eq!(e.all("x-forwarded-host"), ["app.test"]);
    assert_eq!(e.all("x-forwarded-proto"), ["http"]);
    for spelled in ["x_auth_subject", "x-auth_email", "x_auth_payload"] {
        assert!(
            e.all(spelled).is_empty(),
            "{spelled} was forwarded: {:?}",
            e.all(spelled)
        );
    }
    assert_eq!(e.all("x-kept"), ["yes"]);
    assert!(
        e.one("authorization").is_some(),
        "kept unless remove_authorization"
    );
    // The upstream's hop-by-hop answer headers stop here.
    for hop in ["x-private", "keep-alive", "proxy-authenticate"] {
        assert!(a.header(hop).is_none(), "{hop} reached the client");
    }
}

/// Without a value for a header of the union, the header is absent upstream (a spoofed one
/// removed), not present and empty.
#[tokio::test]
async fn a_public_route_forwards_no_identity() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let a = exchange(
        proxy,
        &request(
            "GET",
            "/public/x",
            &["X-Auth-Subject: admin", "X-Auth-Email: admin@corp.test"],
            b"",
        ),
    )
    .await;
    assert_eq!(a.status, 200);
    let e = a.echo();
    assert!(e.all("x-auth-subject").is_empty());
    assert!(e.all("x-auth-email").is_empty());
}

/// `on_pass = "strip"` (the default) removes a `DPoP` header whether or not a proof was
/// checked: with an unbound bearer token, and on a public route, the client's `DPoP` (and a
/// forged `X-Auth-Jkt`) never reaches the upstream as if jwtd had checked it (review L3).
#[tokio::test]
async fn an_unchecked_dpop_proof_never_reaches_the_upstream() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let extra = ["DPoP: eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "X-Auth-Jkt: forged"];
    let a = exchange(proxy, &authed("GET", "/x", &token("alice"), &extra, b"")).await;
    assert_eq!(a.status, 200);
    let e = a.echo();
    assert!(e.all("dpop").is_empty(), "DPoP: {:?}", e.all("dpop"));
    assert!(e.all("x-auth-jkt").is_empty(), "{:?}", e.all("x-auth-jkt"));
    assert_eq!(e.all("x-auth-subject"), ["alice"]);
    let a = exchange(proxy, &request("GET", "/public/x", &extra, b"")).await;
    assert_eq!(a.status, 200);
    let e = a.echo();
    assert!(e.all("dpop").is_empty(), "DPoP: {:?}", e.all("dpop"));
    assert!(e.all("x-auth-jkt").is_empty());
}

#[tokio::test]
async fn remove_authorization_keeps_the_token_from_the_upstream() {
    let up = upstream();
    let proxy = start(&up, |o| o.remove_authorization = true).await;
    let a = exchange(proxy, &authed("GET", "/x", &token("alice"), &[], b"")).await;
    assert_eq!(a.status, 200);
    let e = a.echo();
    assert!(e.all("authorization").is_empty());
    assert_eq!(e.all("x-auth-subject"), ["alice"]);
}

/// The upstream URL's path goes before the request's.
#[tokio::test]
async fn the_upstream_path_prefixes_the_request_path() {
    let up = upstream();
    let proxy = start_with(
        engine(),
        Options::new(format!("http://127.0.0.1:{}/base/", up.port)),
        Limits::default(),
    )
    .await;
    let a = exchange(proxy, &authed("GET", "/x/y?z", &token("alice"), &[], b"")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.echo().path, "/base/x/y?z");
}

/// A source that trusts loopback peers: their forwarded values are kept and extended.
struct Trusting(std::sync::Arc<jwtd_gate::Engine>);

impl jwtd_proxy::EngineSource for Trusting {
    type Handle = std::sync::Arc<jwtd_gate::Engine>;

    fn engine(&self) -> Self::Handle {
        self.0.clone()
    }

    fn trusts_forwarded(&self, _: &Self::Handle, peer: std::net::IpAddr) -> bool {
        peer.is_loopback()
    }
}

#[tokio::test]
async fn a_trusted_peer_s_forwarded_headers_are_extended() {
    let up = upstream();
    let proxy = start_with(
        Trusting(engine()),
        Options::new(format!("http://127.0.0.1:{}", up.port)),
        Limits::default(),
    )
    .await;
    let a = exchange(
        proxy,
        &authed(
            "GET",
            "/x",
            &token("alice"),
            &[
                "X-Forwarded-For: 203.0.113.9",
                "X-Forwarded-Host: shop.test",
                "X-Forwarded-Proto: https",
            ],
            b"",
        ),
    )
    .await;
    let e = a.echo();
    assert_eq!(e.all("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(e.all("x-forwarded-host"), ["shop.test"]);
    assert_eq!(e.all("x-forwarded-proto"), ["https"]);
}

/// The request body is streamed: the upstream answers after its first chunk, while the client
/// has not sent the rest.
#[tokio::test]
async fn a_request_body_is_streamed_not_buffered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let head = format!(
        "POST /first HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes; the answer does.
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    tokio::time::timeout(crate::wire::BOUND, async {
        while !got.ends_with(b"first") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before the answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered before the body ended");
    assert!(got.starts_with(b"HTTP/1.1 200"));
}

/// Upstream connections are kept alive and reused (`max_idle_per_host`), or not (0).
#[tokio::test]
async fn upstream_connections_are_pooled() {
    let up = upstream();
    let t = token("alice");
    let proxy = start(&up, |_| {}).await;
    let mut ports = Vec::new();
    for _ in 0..3 {
        let a = exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await;
        ports.push(a.echo().peer_port);
    }
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "one pooled connection: {ports:?}"
    );
    let proxy = start(&up, |o| o.max_idle_per_host = 0).await;
    let mut ports = Vec::new();
    for _ in 0..3 {
        let a = exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await;
        ports.push(a.echo().peer_port);
    }
    assert!(ports.windows(2).all(|w| w[0] != w[1]), "no pool: {ports:?}");
}

/// A pooled connection is not used past `idle_timeout`; one the upstream closes (saying
/// `Connection: close`, or silently after its answer) is not used again: the next request
/// goes on a new connection and is answered, not refused 502.
#[tokio::test]
async fn pooled_connections_end_at_idle_timeout_and_when_the_upstream_closes() {
    let up = upstream();
    let t = token("alice");
    let proxy = start(&up, |o| {
        o.idle_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let port = |a: &crate::wire::Answer| {
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        a.echo().peer_port
    };
    let first = port(&exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await);
    let again = port(&exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await);
    assert_eq!(first, again, "pooled");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let later = port(&exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await);
    assert_ne!(later, first, "not used past idle_timeout");
    for path in ["/close", "/bye"] {
        let closed = port(&exchange(proxy, &authed("GET", path, &t, &[], b"")).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let next = port(&exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await);
        assert_ne!(
            next, closed,
            "{path}: a closed connection is not used again"
        );
        let pooled = port(&exchange(proxy, &authed("GET", "/x", &t, &[], b"")).await);
        assert_eq!(pooled, next, "{path}: the new connection is pooled");
    }
}

/// At most `max_idle_per_host` idle connections are kept: with 1, of three connections opened
/// for three requests at once, one is used again by the next two requests at once.
#[tokio::test]
async fn at_most_max_idle_per_host_connections_are_kept() {
    let up = upstream();
    let t = token("alice");
    let proxy = start(&up, |o| o.max_idle_per_host = 1).await;
    let at_once = |n: usize| {
        let t = t.clone();
        async move {
            let all = (0..n).map(|_| {
                let t = t.clone();
                tokio::spawn(async move {
                    let a = exchange(proxy, &authed("GET", "/slow?ms=300", &t, &[], b"")).await;
                    assert_eq!(a.status, 200);
                    a.echo().peer_port
                })
            });
            let mut ports = Vec::new();
            for p in all.collect::<Vec<_>>() {
                ports.push(p.await.unwrap());
            }
            ports
        }
    };
    let first = at_once(3).await;
    let mut distinct = first.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "three connections: {first:?}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second = at_once(2).await;
    let reused = second.iter().filter(|p| first.contains(p)).count();
    assert_eq!(reused, 1, "one kept of {first:?}, then {second:?}");
}
