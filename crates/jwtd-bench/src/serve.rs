//! Helpers for the HTTP load benchmark (`scripts/bench-serve.sh`).

use jwtd_core::{Algorithm, Family, Jwks, SigningKey};
use std::io::Write;

/// `mint ALG N ISS AUD TOKENS_OUT JWKS_OUT [PEM_OUT]` (PEM_OUT: the public key as a PEM
/// file, for verifiers that take no JWKS, e.g. HAProxy's `jwt_verify`).
pub fn mint(args: &[String]) {
    let (alg, n, iss, aud, tokens_out, jwks_out, pem_out) = match args {
        [a, n, i, au, t, j] => (a, n, i, au, t, j, None),
        [a, n, i, au, t, j, p] => (a, n, i, au, t, j, Some(p)),
        _ => panic!("mint ALG N ISS AUD TOKENS_OUT JWKS_OUT [PEM_OUT]"),
    };
    let alg: Algorithm = alg.parse().expect("algorithm");
    let n: usize = n.parse().expect("count");
    let key = if alg.family() == Family::Hmac {
        let secret = std::env::var("JWTD_BENCH_SECRET").expect("JWTD_BENCH_SECRET for HMAC");
        SigningKey::hmac(secret.as_bytes(), alg, None).expect("secret")
    } else {
        SigningKey::generate(alg)
            .expect("keygen")
            .with_default_kid()
    };
    let now = jwtd_core::unix_now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(tokens_out).expect("tokens file"));
    for i in 0..n {
        let c = serde_json::json!({"iss": iss, "aud": aud, "sub": format!("user-{i}"), "iat": now, "exp": now + 7200, "scope": "read:bench"});
        writeln!(
            out,
            "{}",
            jwtd_core::sign(&key, c.as_object().expect("object"), None).expect("sign")
        )
        .expect("write");
    }
    if let Some(p) = pem_out {
        let pem = jwtd_core::public_key_pem(&key.verifying_key()).expect("public key PEM");
        std::fs::write(p, pem).expect("pem file");
    }
    let jwks = Jwks::from_keys(key.public_jwk());
    std::fs::write(jwks_out, serde_json::to_string(&jwks).expect("json")).expect("jwks file");
}

/// `http-ceiling ADDR`: answers every request with an empty 200.
pub fn ceiling(args: &[String]) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::new()),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}
