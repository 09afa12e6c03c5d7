//! Raw HTTP/1.1 over TCP: requests written byte for byte, answers parsed (status, headers,
//! a body by `Content-Length`, chunked or until close), every exchange within 30 s.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one exchange may take.
pub const BOUND: Duration = Duration::from_secs(30);

/// A parsed answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Answer {
    /// The one value of `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The upstream's `X-Echo`: what it received.
    pub fn echo(&self) -> Echo {
        let v: serde_json::Value =
            serde_json::from_str(self.header("x-echo").expect("an X-Echo header")).unwrap();
        Echo {
            method: v["method"].as_str().unwrap().to_owned(),
            path: v["path"].as_str().unwrap().to_owned(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_ascii_lowercase(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            length: v["length"].as_u64().unwrap() as usize,
            peer_port: v["peer_port"].as_u64().unwrap() as u16,
        }
    }
}

/// What the upstream received.
#[derive(Debug)]
pub struct Echo {
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Bytes of body.
    pub length: usize,
    /// The client port of the upstream's connection (the proxy's side).
    pub peer_port: u16,
}

impl Echo {
    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of `name` (panics on several).
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} arrived {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

/// Sends `request` (whole) and reads the answer to the end of the connection (the request
/// should say `Connection: close`). `head` answers have no body.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let head = request.starts_with(b"HEAD ");
    tokio::time::timeout(BOUND, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        // A reset after the answer (the server closing on a refused request) still leaves
        // what was read.
        let _ = s.read_to_end(&mut buf).await;
        parse(&buf, head)
    })
    .await
    .expect("the exchange ends within 30 s")
}

/// A request: `method target`, `headers` (each `Name: value`), `Host`, `Connection: close`
/// and a `Content-Length` body when `body` is not empty.
pub fn request(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty() {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(body);
    out
}

/// [`request`] with a bearer token.
pub fn authed(method: &str, target: &str, token: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let auth = format!("Authorization: Bearer {token}");
    let mut all = vec![auth.as_str()];
    all.extend_from_slice(headers);
    request(method, target, &all, body)
}

/// `body` as chunks of `size` bytes.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / size * 12 + 8);
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Parses one answer from `buf`.
pub fn parse(buf: &[u8], head_only: bool) -> Answer {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head in {:?}", String::from_utf8_lossy(buf)));
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if head_only || status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A chunked body, decoded as far as it goes.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            out.extend_from_slice(&rest[..size.min(rest.len())]);
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
}
