//! Helpers shared by the service's HTTP tests.

use jwtd_service::Env;
use serde_json::{json, Value};

/// Serves the configuration `text`, read in the environment `env`, on `l` (whose address its
/// `listen` names); returns the base URL and the state.
pub async fn serve(
    l: tokio::net::TcpListener,
    text: &str,
    env: &Env,
) -> (String, std::sync::Arc<jwtd_service::AppState>) {
    let addr = l.local_addr().unwrap();
    let config = jwtd_service::Config::parse_with_env(text, "test", env).unwrap();
    let runtime = jwtd_service::Runtime::build(config, None).await.unwrap();
    let state = state(runtime, None);
    tokio::spawn(jwtd_service::serve(state.clone(), l));
    (format!("http://{addr}"), state)
}

/// Serves `runtime` on a fresh loopback port (its state without a metrics recorder; reloads
/// read `config_path`); returns the base URL and the state.
pub async fn serve_runtime(
    runtime: jwtd_service::Runtime,
    config_path: Option<std::path::PathBuf>,
) -> (String, std::sync::Arc<jwtd_service::AppState>) {
    let state = jwtd_service::AppState::new(runtime, config_path);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(jwtd_service::serve(state.clone(), l));
    (base, state)
}

/// The state `jwtd serve` makes for `runtime`: `/metrics` renders jwtd's Prometheus recorder
/// (installed once in the test process; every test's series go to it).
pub fn state(
    runtime: jwtd_service::Runtime,
    config_path: Option<std::path::PathBuf>,
) -> std::sync::Arc<jwtd_service::AppState> {
    let metrics = jwtd_service::install_metrics().expect("no other metrics recorder in the tests");
    jwtd_service::AppState::with_metrics(runtime, config_path, metrics)
}

/// Status and reason code of `GET /v1/verify` with `token`; status 0 for a transport error.
pub async fn verify(c: &reqwest::Client, base: &str, token: &str) -> (u16, String) {
    match c
        .get(format!("{base}/v1/verify"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["reason"].as_str().unwrap_or("").to_owned())
        }
        Err(e) => (0, format!("transport: {e}")),
    }
}

/// A token for `sub` from the instance's `POST /v1/tokens` (10 minutes).
pub async fn mint(c: &reqwest::Client, base: &str, admin: &str, sub: &str) -> String {
    let r: Value = post(
        c,
        &format!("{base}/v1/tokens"),
        admin,
        json!({"sub": sub, "ttl": 600}),
    )
    .await
    .1;
    r["token"].as_str().expect("a token").to_owned()
}

/// `POST /v1/revocations` with `body`: status and JSON answer.
pub async fn revoke(c: &reqwest::Client, base: &str, admin: &str, body: Value) -> (u16, Value) {
    post(c, &format!("{base}/v1/revocations"), admin, body).await
}

/// POSTs JSON with a bearer key: status and JSON answer (null when not JSON).
pub async fn post(c: &reqwest::Client, url: &str, key: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// GETs a JSON document.
pub async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}
