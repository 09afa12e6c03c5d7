//! WebSocket through the proxy: the handshake decided like any request, then frames echoed by
//! the upstream both ways over the joined connections.

use crate::wire::{authed, parse, request, BOUND};
use crate::{start, token, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE: [&str; 4] = [
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// A masked client frame.
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one unmasked server frame: (opcode, payload).
pub(crate) async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    let n = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; n];
    s.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

/// Writes the handshake (without `Connection: close`) and reads the answer head.
pub(crate) async fn handshake(
    addr: std::net::SocketAddr,
    token: Option<&str>,
) -> (TcpStream, crate::wire::Answer) {
    let mut req = match token {
        Some(t) => authed("GET", "/ws", t, &HANDSHAKE, b""),
        None => request("GET", "/ws", &HANDSHAKE, b""),
    };
    // `request` says Connection: close; a WebSocket handshake says Upgrade instead.
    let text = String::from_utf8(req.clone())
        .unwrap()
        .replace("Connection: close\r\n", "");
    req = text.into_bytes();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let answer = parse(&head, true);
    (s, answer)
}

#[tokio::test]
async fn a_websocket_echoes_through_the_proxy() {
    tokio::time::timeout(BOUND, async {
        let up = upstream();
        let proxy = start(&up, |_| {}).await;
        let t = token("alice");
        let (mut s, a) = handshake(proxy, Some(&t)).await;
        assert_eq!(a.status, 101, "{a:?}");
        assert_eq!(
            a.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "the upstream's handshake answer, passed on"
        );
        assert!(a
            .header("upgrade")
            .unwrap()
            .eq_ignore_ascii_case("websocket"));
        // The upstream saw the upgrade request with jwtd's identity.
        let e = a.echo();
        assert_eq!(e.all("x-auth-subject"), ["alice"]);
        assert!(e.one("upgrade").unwrap().eq_ignore_ascii_case("websocket"));
        for msg in [&b"hello"[..], &[7u8; 300][..], &vec![42u8; 70_000][..]] {
            s.write_all(&frame(2, msg)).await.unwrap();
            let (op, payload) = read_frame(&mut s).await;
            assert_eq!(op, 2);
            assert!(payload == msg, "{} bytes echoed", msg.len());
        }
        s.write_all(&frame(1, "text ✓".as_bytes())).await.unwrap();
        assert_eq!(read_frame(&mut s).await, (1, "text ✓".as_bytes().to_vec()));
        s.write_all(&frame(8, b"")).await.unwrap();
        assert_eq!(read_frame(&mut s).await.0, 8, "the close frame comes back");
    })
    .await
    .expect("within 30 s");
}

#[tokio::test]
async fn a_websocket_without_a_token_is_refused_before_the_upstream() {
    let up = upstream();
    let proxy = start(&up, |_| {}).await;
    let (_s, a) = tokio::time::timeout(BOUND, handshake(proxy, None))
        .await
        .unwrap();
    assert_eq!(a.status, 401);
    assert!(a.header("x-echo").is_none());
}
