//! End to end with a real nginx (Debian package) using `auth_request` to `jwtd serve` in front of
//! a small upstream, all on 127.0.0.1. nginx missing is a failure, not a skip: `scripts/test`
//! installs it.

mod common;

use common::{free_port, http_get, wait_for, Guard};
use jwtd_core::{Algorithm, Jwks, SigningKey};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx is not installed: run scripts/ensure-deps (apt-get install nginx)");
}

/// An upstream that answers every request with the request headers it received, as JSON.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            std::thread::spawn(move || serve_echo(stream));
        }
    });
    port
}

fn serve_echo(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = serde_json::Map::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.insert(k.to_ascii_lowercase(), json!(v.trim()));
        }
    }
    let body = serde_json::Value::Object(headers).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn nginx_auth_request_in_front_of_an_upstream() {
    let nginx = nginx_binary();
    let dir = std::env::temp_dir().join(format!("jwtd-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let key = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_default_kid();
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::to_string(&Jwks::from_keys(key.public_jwk())).unwrap(),
    )
    .unwrap();
    let (jwtd_port, nginx_port, up_port) = (free_port(), free_port(), upstream());
    std::fs::write(
        dir.join("jwtd.toml"),
        format!(
            r#"listen = "127.0.0.1:{jwtd_port}"
[[issuer]]
name = "idp"
issuer = "https://idp.example/"
jwks_file = "{}"
algorithms = ["ES256"]
audiences = ["shop"]
[issuer.contains]
scope = ["orders:read"]
[issuer.headers]
X-User-Email = "email"
"#,
            dir.join("jwks.json").display()
        ),
    )
    .unwrap();
    let jwtd = Command::new(env!("CARGO_BIN_EXE_jwtd"))
        .args(["serve", "--config"])
        .arg(dir.join("jwtd.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(vec![jwtd]);
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            r#"worker_processes 1;
error_log {d}/logs/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{nginx_port};
    location / {{
      auth_request /_jwtd;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_email $upstream_http_x_user_email;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-User-Email $auth_email;
      proxy_pass http://127.0.0.1:{up_port};
    }}
    location = /_jwtd {{
      internal;
      proxy_pass http://127.0.0.1:{jwtd_port}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let nginx_child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    guard.0.push(nginx_child);
    wait_for(jwtd_port);
    wait_for(nginx_port);

    let now = jwtd_core::unix_now();
    let token = |extra: serde_json::Value| {
        let mut c = json!({"iss": "https://idp.example/", "aud": "shop", "sub": "alice", "email": "alice@example.com",
            "scope": "openid orders:read", "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        jwtd_core::sign(&key, c.as_object().unwrap(), None).unwrap()
    };

    // Valid: reaches the upstream with identity headers; spoofed ones are replaced.
    let auth = format!("Bearer {}", token(json!({})));
    let (status, _, body) = http_get(
        nginx_port,
        "/orders",
        &[
            ("authorization", &auth),
            ("x-auth-subject", "mallory"),
            ("x-user-email", "mallory@evil.example"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["x-auth-subject"], "alice");
    assert_eq!(seen["x-user-email"], "alice@example.com");

    // Spoofed identity headers without a token never reach the upstream.
    let (status, _, _) = http_get(nginx_port, "/orders", &[("x-auth-subject", "mallory")]);
    assert_eq!(status, 401);

    // Expired: 401 with WWW-Authenticate.
    let auth = format!("Bearer {}", token(json!({"exp": now - 3600})));
    let (status, headers, _) = http_get(nginx_port, "/orders", &[("authorization", &auth)]);
    assert_eq!(status, 401);
    let www = headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(www.contains("error=\"invalid_token\""), "{www}");

    // Failed scope: 403.
    let auth = format!("Bearer {}", token(json!({"scope": "openid"})));
    let (status, _, _) = http_get(nginx_port, "/orders", &[("authorization", &auth)]);
    assert_eq!(status, 403);

    // A token without the email claim: the spoofed header is blanked, not passed through.
    let auth = format!("Bearer {}", token(json!({"email": null})));
    let (status, _, body) = http_get(
        nginx_port,
        "/orders",
        &[
            ("authorization", &auth),
            ("x-user-email", "mallory@evil.example"),
        ],
    );
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(seen.get("x-user-email").is_none_or(|v| v == ""), "{seen}");
}
