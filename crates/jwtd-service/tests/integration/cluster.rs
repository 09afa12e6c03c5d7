//! Three jwtd instances on different loopback ports sharing one PostgreSQL (127.0.0.1:5432,
//! database `test`; override with JWTD_TEST_POSTGRES_URL) through a TCP proxy the test can cut.
//! A missing PostgreSQL fails this test.
//!
//! Under a verify load on all three: a revocation reaches the other two within 1 s; a key
//! rotation too; a revocation made while the database is cut is applied where it was made and
//! reaches the others once the database is back; past `max_staleness` the fail-closed
//! instances refuse with `revocation_unavailable` and the fail-open one keeps accepting; every
//! answer is one of those expected.

use crate::common::{self, verify};
use jwtd_service::{AppState, Config, Env, Runtime};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const ADMIN: &str = "cluster-admin-key-0123456789";

/// A TCP proxy to PostgreSQL that can drop every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (u, c) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = l.accept().await else {
                    return;
                };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cut = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

struct Instance {
    name: &'static str,
    base: String,
    state: Arc<AppState>,
}

async fn instance(
    name: &'static str,
    url: &str,
    schema: &str,
    on_stale: &str,
    env: &Env,
) -> Instance {
    let dir = std::env::temp_dir().join(format!("{schema}-{name}"));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let text = format!(
        "listen = \"{addr}\"\n[admin]\napi_key_env = \"JWTD_CLUSTER_ADMIN\"\n\
         [signing]\nissuer = \"https://cluster.test\"\nstore = \"{url}\"\nstore_schema = \"{schema}\"\n\
         data_dir = \"{}\"\n\
         [revocation]\nstore = \"{url}\"\nstore_schema = \"{schema}\"\n\
         max_staleness = \"4s\"\non_stale = \"{on_stale}\"\nresync_interval = \"1s\"\n",
        dir.display()
    );
    let runtime = Runtime::build(Config::parse_with_env(&text, "test", env).unwrap(), None)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required: {e}"));
    let state = AppState::new(runtime, None);
    tokio::spawn(jwtd_service::serve(state.clone(), l));
    Instance {
        name,
        base: format!("http://{addr}"),
        state,
    }
}

/// One answer of the load: which instance, which token, when, status, reason.
#[derive(Clone, Debug)]
struct Answer {
    at: Instant,
    instance: &'static str,
    token: &'static str,
    status: u16,
    reason: String,
}

/// Polls until `f` is true; returns how long it took, or panics after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_revocations_and_keys_through_outages() {
    // The instances' one key encryption key, as in production.
    let env = Env::from_vars([
        ("JWTD_KEK", jwtd_core::b64::encode([21u8; 32])),
        ("JWTD_CLUSTER_ADMIN", ADMIN.into()),
    ]);
    let pg = jwtd_test_support::pg_url();
    let target = {
        let rest = pg
            .split_once('@')
            .map(|(_, r)| r)
            .unwrap_or("127.0.0.1:5432/test");
        rest.split('/').next().unwrap().to_owned()
    };
    let proxy = Proxy::start(target.clone()).await;
    let url = pg.replacen(&target, &format!("127.0.0.1:{}", proxy.port), 1);
    let schema = jwtd_test_support::schema("cluster");
    let a = instance("a", &url, &schema, "reject", &env).await;
    let b = instance("b", &url, &schema, "reject", &env).await;
    let c = instance("c", &url, &schema, "accept", &env).await;
    let all = [&a, &b, &c];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut tokens = std::collections::BTreeMap::new();
    for sub in ["alice", "bob", "carol", "dave"] {
        tokens.insert(sub, common::mint(&http, &a.base, ADMIN, sub).await);
    }
    for i in all {
        for t in tokens.values() {
            assert_eq!(verify(&http, &i.base, t).await.0, 200, "{}", i.name);
        }
    }

    // The load: every instance, every token, continuously, until told to stop.
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for i in all {
        let (base, name) = (i.base.clone(), i.name);
        let (answers, stop, http) = (answers.clone(), stop.clone(), http.clone());
        let tokens: Vec<(&'static str, String)> =
            tokens.iter().map(|(k, v)| (*k, v.clone())).collect();
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (sub, t) in &tokens {
                    let (status, reason) = verify(&http, &base, t).await;
                    answers.lock().unwrap().push(Answer {
                        at: Instant::now(),
                        instance: name,
                        token: sub,
                        status,
                        reason,
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // 1. A revocation on A reaches B and C within 1 s.
    let alice_revoked = Instant::now();
    let (status, body) =
        common::revoke(&http, &a.base, ADMIN, json!({"token": tokens["alice"]})).await;
    assert_eq!(status, 201, "{body}");
    for i in [&b, &c] {
        let took = within(Duration::from_secs(1), "revocation propagation", || async {
            verify(&http, &i.base, &tokens["alice"]).await == (401, "revoked".into())
        })
        .await;
        eprintln!("alice revoked on {} after {took:?}", i.name);
    }
    let alice_everywhere = Instant::now();

    // 2. A rotation on A reaches B's JWKS within 1 s (NOTIFY, not the minute tick).
    let ring = a.state.runtime().signing.clone().unwrap().ring.clone();
    ring.rotate(jwtd_core::unix_now() as i64).await.unwrap();
    let took = within(Duration::from_secs(1), "key propagation", || async {
        let j = common::get_json(&http, &format!("{}/.well-known/jwks.json", b.base)).await;
        j["keys"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    eprintln!("rotation visible on b after {took:?}");

    // 3. The database is cut for 2 s (under max_staleness): a revocation on B is applied on
    //    B at once and waits in its outbox; A and C learn of it once the database is back.
    proxy.cut();
    let cut_at = Instant::now();
    let (status, body) = common::revoke(&http, &b.base, ADMIN, json!({"sub": "dave"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(
        verify(&http, &b.base, &tokens["dave"]).await,
        (401, "revoked".into())
    );
    let left = Duration::from_secs(2).saturating_sub(cut_at.elapsed());
    tokio::time::sleep(left).await;
    proxy.restore();
    let restored_at = Instant::now();
    for i in [&a, &c] {
        let took = within(Duration::from_secs(8), "outbox delivery", || async {
            verify(&http, &i.base, &tokens["dave"]).await == (401, "revoked".into())
        })
        .await;
        eprintln!(
            "dave revoked on {} {took:?} after the database came back",
            i.name
        );
    }
    let dave_everywhere = Instant::now();
    assert_eq!(b.state.runtime().revocations.as_ref().unwrap().pending(), 0);

    // 4. A long cut (past max_staleness = 4 s): A and B fail closed, C keeps accepting from
    //    memory (and still refuses what it knows is revoked).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let long_cut_at = Instant::now();
    for i in [&a, &b] {
        within(Duration::from_secs(8), "fail closed when stale", || async {
            verify(&http, &i.base, &tokens["carol"]).await == (503, "revocation_unavailable".into())
        })
        .await;
    }
    assert!(
        long_cut_at.elapsed() >= Duration::from_secs(2),
        "not before the data is stale"
    );
    assert_eq!(
        verify(&http, &c.base, &tokens["carol"]).await,
        (200, String::new())
    );
    assert_eq!(
        verify(&http, &c.base, &tokens["alice"]).await,
        (401, "revoked".into())
    );
    proxy.restore();
    let long_restored_at = Instant::now();
    for i in all {
        within(Duration::from_secs(10), "fresh again", || async {
            verify(&http, &i.base, &tokens["carol"]).await.0 == 200
        })
        .await;
    }
    let fresh_again = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }

    // Every answer of the load was an expected one.
    let answers = answers.lock().unwrap().clone();
    assert!(answers.len() > 300, "load too thin: {}", answers.len());
    let mut counts = std::collections::BTreeMap::new();
    for x in &answers {
        *counts.entry((x.status, x.reason.clone())).or_insert(0u32) += 1;
        let stale_window = x.instance != "c"
            && x.at >= long_cut_at + Duration::from_secs(2)
            && x.at <= fresh_again;
        let ok = match (x.status, x.reason.as_str()) {
            (200, _) => match x.token {
                // Never accepted once every instance knew.
                "alice" => x.at < alice_everywhere,
                "dave" => x.at < dave_everywhere,
                _ => true,
            },
            (401, "revoked") => match x.token {
                "alice" => x.at >= alice_revoked,
                "dave" => x.at >= cut_at,
                _ => false,
            },
            (503, "revocation_unavailable") => stale_window,
            _ => false,
        };
        assert!(ok, "unexpected answer {x:?} (cut at {cut_at:?}, restored {restored_at:?}, long cut {long_cut_at:?}, back {long_restored_at:?})");
    }
    eprintln!("load answers: {counts:?}");
}
