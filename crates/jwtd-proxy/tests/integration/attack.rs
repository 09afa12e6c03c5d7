//! An attacker's requests: each would let a request reach the upstream that `/auth` refuses,
//! or let a client forge what the upstream trusts, were the proxy to forward it as sent.

/// `X_Auth_Subject` is `HTTP_X_AUTH_SUBJECT` to a CGI-style upstream (WSGI, PHP, Rack), the
/// variable jwtd's `X-Auth-Subject` fills: a client's look-alike of an identity or forwarding
/// header never arrives.
#[tokio::test]
async fn underscore_look_alikes_of_owned_headers_never_arrive() {
    use crate::wire::{authed, exchange, request};
    use crate::{start, token, upstream};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let spoofed = [
        "X_Auth_Subject: admin",
        "x_auth_issuer: https://evil.test",
        "X-Auth_Payload: e30",
        "X_AUTH_EMAIL: admin@corp.test",
        "X_Forwarded_For: 203.0.113.9",
        "X_Forwarded_Host: evil.test",
        "X_Forwarded_Proto: https",
        "X_Other: kept",
    ];
    let t = token("alice");
    for (what, req) in [
        (
            "allowed with a token",
            authed("GET", "/x", &t, &spoofed, b""),
        ),
        ("public", request("GET", "/public/x", &spoofed, b"")),
    ] {
        let a = exchange(proxy, &req).await;
        assert_eq!(a.status, 200, "{what}");
        let e = a.echo();
        let lookalikes: Vec<&(String, String)> = e
            .headers
            .iter()
            .filter(|(n, _)| n.contains('_') && n != "x_other")
            .collect();
        assert!(lookalikes.is_empty(), "{what}: {lookalikes:?} arrived");
        assert_eq!(e.all("x_other"), ["kept"], "{what}: other names stay");
        assert_eq!(e.all("x-forwarded-for"), ["127.0.0.1"], "{what}");
    }
}

/// `Upgrade: h2c` on a public path: were it forwarded and the upstream switched, every request
/// after it on the connection would reach the upstream through the tunnel, undecided. It goes
/// as a plain request instead, and the next request is decided (and refused) by jwtd.
#[tokio::test]
async fn an_h2c_upgrade_is_not_forwarded() {
    use crate::wire::BOUND;
    use crate::{start, upstream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    for upgrade in ["h2c", "H2C", "websocket, h2c", "HTTP/2.0"] {
        let raw = format!(
            "GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
             GET /secret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        );
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
            .await
            .expect("closed within 30 s")
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{upgrade}: a plain answer: {text}"
        );
        let first = crate::wire::parse(&buf, false);
        let e = first.echo();
        assert!(e.all("upgrade").is_empty(), "{upgrade}: {:?}", e.headers);
        assert!(e.all("http2-settings").is_empty(), "{upgrade}");
        assert!(
            !text.contains("\"path\": \"/secret\""),
            "{upgrade}: /secret reached the upstream undecided: {text}"
        );
        assert!(
            text.contains("HTTP/1.1 401"),
            "{upgrade}: /secret refused by jwtd: {text}"
        );
    }
}

/// The engine resolves dot segments before matching; the upstream is sent the path it
/// matched, so an upstream that routes before resolving them (or never does) cannot be
/// reached at a protected path through a public one.
#[tokio::test]
async fn dot_segments_are_forwarded_resolved() {
    use crate::wire::{exchange, request};
    use crate::{start, upstream};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    for (sent, forwarded) in [
        ("/admin/../public/x", "/public/x"),
        ("/admin/%2e%2e/public/x?q=1", "/public/x?q=1"),
        ("/admin/.%2E/public/x/", "/public/x/"),
        ("/public/./x/y/..", "/public/x/"),
        ("/../public/x", "/public/x"),
    ] {
        let a = exchange(proxy, &request("GET", sent, &[], b"")).await;
        assert_eq!(a.status, 200, "{sent}");
        assert_eq!(a.echo().path, forwarded, "{sent}");
    }
    // A path without dot segments goes byte for byte (its escapes too).
    let a = exchange(
        proxy,
        &request("GET", "/public/a%41.b/..c?x=/../", &[], b""),
    )
    .await;
    assert_eq!(a.echo().path, "/public/a%41.b/..c?x=/../");
    // Still decided on the resolved path: a protected one needs its token.
    let a = exchange(proxy, &request("GET", "/public/%2e%2e/admin", &[], b"")).await;
    assert_eq!(a.status, 401);
}

/// Targets two parsers read differently, or that name no path: refused 400 `bad_path` by
/// jwtd, never forwarded.
#[tokio::test]
async fn ambiguous_targets_are_refused_400() {
    use crate::wire::{authed, exchange, request};
    use crate::{start, token, upstream};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    for (what, raw) in [
        ("a backslash", request("GET", "/public/..\\admin", &[], b"")),
        (
            "an encoded backslash",
            request("GET", "/public/..%5Cadmin", &[], b""),
        ),
        (
            "a dot segment behind an encoded slash",
            request("GET", "/public/..%2fadmin", &[], b""),
        ),
        ("OPTIONS *", authed("OPTIONS", "*", &t, &[], b"")),
        ("CONNECT", authed("CONNECT", "127.0.0.1:1", &t, &[], b"")),
    ] {
        let a = exchange(proxy, &raw).await;
        assert_eq!(a.status, 400, "{what}: {a:?}");
        assert!(a.header("x-echo").is_none(), "{what}: forwarded");
        assert_eq!(a.json()["reason"], "bad_path", "{what}");
    }
}

/// `;` path parameters, which Tomcat, Jetty and Spring strip before routing: `/public/..;/x`
/// is `/x` to them, and used to be decided here under `/public/**` (no token) and forwarded.
/// The engine's normalisation refuses `;` (and `%3B`) by default: 400 `bad_path`, with or
/// without a token, never forwarded; a `;` in the query is the query's.
#[tokio::test]
async fn semicolon_path_parameters_are_refused_400() {
    use crate::wire::{authed, exchange, request};
    use crate::{start, token, upstream};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    for raw in [
        request("GET", "/public/..;/admin", &[], b""),
        request("GET", "/public;x/y", &[], b""),
        request("GET", "/public/%2e%2e%3b/admin", &[], b""),
        authed("GET", "/admin;jsessionid=1/x", &t, &[], b""),
    ] {
        let a = exchange(proxy, &raw).await;
        let what = String::from_utf8_lossy(&raw[..raw.len().min(40)]).into_owned();
        assert_eq!(a.status, 400, "{what}: {a:?}");
        assert!(a.header("x-echo").is_none(), "{what}: forwarded");
        assert_eq!(a.json()["reason"], "bad_path", "{what}");
    }
    let a = exchange(proxy, &request("GET", "/public/x?a=1;b=2", &[], b"")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.echo().path, "/public/x?a=1;b=2");
}

/// Escapes encoded twice (review L11): decided here on one decoding, `/public/%252e%252e/admin`
/// is `/public/%2e%2e/admin` (public), but `/admin` to an upstream that decodes twice. Refused
/// 400 `bad_path` by default, never forwarded.
#[tokio::test]
async fn double_encoded_paths_are_refused_400() {
    use crate::wire::{exchange, request};
    use crate::{start, upstream};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    for path in [
        "/public/%252e%252e/admin",
        "/public/%252E%252E/admin",
        "/public/..%252fadmin",
        "/public/%253B/x",
        "/public/%25%32%65%25%32%65/admin",
    ] {
        let a = exchange(proxy, &request("GET", path, &[], b"")).await;
        assert_eq!(a.status, 400, "{path}: {a:?}");
        assert!(a.header("x-echo").is_none(), "{path}: forwarded");
        assert_eq!(a.json()["reason"], "bad_path", "{path}");
    }
    // A percent sign of its own is forwarded as it came.
    let a = exchange(proxy, &request("GET", "/public/100%25", &[], b"")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.echo().path, "/public/100%25");
}

/// The upstream reads the `Host` the engine decided on: two are refused 400 `bad_headers`
/// (RFC 9112 section 3.2), and `Connection: host` does not remove it (hyper's client would put
/// the upstream's own).
#[tokio::test]
async fn the_host_decided_on_is_the_host_forwarded() {
    use crate::wire::{authed, exchange};
    use crate::{start, token, upstream};
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let t = token("alice");
    let a = exchange(proxy, &authed("GET", "/x", &t, &["Host: admin.test"], b"")).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.header("x-echo").is_none(), "forwarded");
    assert_eq!(a.json()["reason"], "bad_headers");
    let a = exchange(proxy, &authed("GET", "/x", &t, &["Connection: host"], b"")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.echo().all("host"), ["app.test"]);
    // No Host: an HTTP/1.1 request, or an absolute-form target (whose authority the engine
    // would decide on while the upstream is sent its own address), is refused.
    let auth = format!("Authorization: Bearer {t}");
    for raw in [
        format!("GET /x HTTP/1.1\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET http://admin.test/x HTTP/1.1\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET http://admin.test/x HTTP/1.0\r\n{auth}\r\n\r\n"),
    ] {
        let a = exchange(proxy, raw.as_bytes()).await;
        assert_eq!(a.status, 400, "{raw}: {a:?}");
        assert!(a.header("x-echo").is_none(), "{raw}: forwarded");
        assert_eq!(a.json()["reason"], "bad_headers", "{raw}");
    }
    // An HTTP/1.0 request in origin form may omit Host: decided without one, forwarded.
    let raw = format!("GET /x HTTP/1.0\r\n{auth}\r\n\r\n");
    assert_eq!(exchange(proxy, raw.as_bytes()).await.status, 200);
}

/// An upgraded connection (a WebSocket tunnel, which lives as long as the client likes) still
/// counts under `max_connections`: tunnels cannot be opened without bound past the cap.
#[tokio::test]
async fn an_upgraded_connection_counts_until_its_tunnel_closes() {
    use crate::wire::{request, BOUND};
    use crate::{token, upstream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream();
    let limits = jwtd_proxy::Limits {
        max_connections: 1,
        ..jwtd_proxy::Limits::default()
    };
    let proxy = crate::start_with(
        crate::engine(),
        jwtd_proxy::Options::new(format!("http://127.0.0.1:{}", up.port)),
        limits,
    )
    .await;
    let t = token("alice");
    let (tunnel, a) = tokio::time::timeout(BOUND, crate::upgrade::handshake(proxy, Some(&t)))
        .await
        .unwrap();
    assert_eq!(a.status, 101);
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(&request("GET", "/public/x", &[], b""))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early =
        tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "answered while the tunnel held the only place"
    );
    drop(tunnel);
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .expect("answered once the tunnel closed")
        .unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// `remove_authorization` keeps the token from the upstream when it came in the token cookie
/// too (the other cookies stay).
#[tokio::test]
async fn remove_authorization_removes_the_token_cookie() {
    use crate::wire::{exchange, request};
    use crate::{config, engine_of, start_with, token, upstream};
    let up = upstream();
    let dir = jwtd_test_support::temp_dir("proxy-cookie");
    let text = format!("{}\n[tokens]\ncookie = \"jwt\"\n", config(&dir));
    let mut options = jwtd_proxy::Options::new(format!("http://127.0.0.1:{}", up.port));
    options.remove_authorization = true;
    let proxy = start_with(engine_of(&text), options, jwtd_proxy::Limits::default()).await;
    let t = token("alice");
    let cookie = format!("Cookie: a=1; jwt={t}; b=2");
    let a = exchange(proxy, &request("GET", "/x", &[&cookie], b"")).await;
    assert_eq!(a.status, 200, "{a:?}");
    let e = a.echo();
    assert_eq!(e.all("x-auth-subject"), ["alice"]);
    assert_eq!(e.all("cookie"), ["a=1; b=2"]);
    let only = format!("Cookie: jwt={t}");
    let a = exchange(proxy, &request("GET", "/x", &[&only], b"")).await;
    assert_eq!(a.status, 200);
    assert!(a.echo().all("cookie").is_empty());
}
