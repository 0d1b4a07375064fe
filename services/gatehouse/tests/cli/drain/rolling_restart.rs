//! A rolling restart of two dataplanes under a steady load of calls fails no call (refusals while
//! draining are retried at the other replica) and loses no usage event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gatehouse_test_support::free_port;

use super::harness::{LEGACY, Platform, exited, session, sigterm};
use crate::ServiceProcess;
use crate::dataplane_replicas::{client_for, remove_dir};

/// The client side of a load balancer over two replicas: round robin over the replicas in
/// rotation; a refusal while draining (503) or a refused connection is retried on the other.
struct Balancer {
    replicas: [(reqwest::Client, AtomicBool); 2],
    next: AtomicU64,
    ids: AtomicU64,
}

/// What became of the calls of the load.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    retried: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
}

impl Balancer {
    /// One `tools/call` of `tool`, retried until answered; `Err` for a failure the client cannot
    /// retry (it cannot know whether the call ran).
    async fn call(
        &self,
        url: &str,
        token: &str,
        session: &str,
        tool: &str,
        arguments: Value,
        tally: &Tally,
    ) -> Result<(), String> {
        // Ids are unique in the session, which every client shares.
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": arguments}});
        for _ in 0..100 {
            let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
            let (http, _) = [n % 2, (n + 1) % 2]
                .into_iter()
                .map(|i| &self.replicas[i])
                .find(|(_, in_rotation)| in_rotation.load(Ordering::SeqCst))
                .expect("a replica in rotation");
            let sent = http
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", LEGACY)
                .header("mcp-session-id", session)
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_connect() => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(format!("request failed: {e:?}")),
            };
            match response.status().as_u16() {
                200 => {
                    let text = response.text().await.map_err(|e| format!("answer broke: {e}"))?;
                    if !text.contains("\"content\"") || text.contains("\"isError\":true") {
                        return Err(format!("not a result: {text}"));
                    }
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                503 if response.headers().contains_key("retry-after") => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return Err(format!("{other}: {:?}", response.text().await)),
            }
        }
        Err("still refused after 100 tries".to_owned())
    }
}

/// Takes replica `i` out of rotation (as Kubernetes removes a terminating pod's endpoint while
/// `preStop` waits), drains it with SIGTERM, starts it again and puts it back once ready.
async fn restart(platform: &Platform, balancer: &Balancer, process: &mut ServiceProcess, i: usize) {
    balancer.replicas[i].1.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(process);
    let (status, _) = exited(process, Duration::from_secs(10)).await;
    assert!(status.success(), "{} exit status {status}", process.name);
    *process = platform.dataplane(process.name, i as u8 + 1).await;
    balancer.replicas[i].1.store(true, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_call_and_loses_no_event() {
    let platform = Arc::new(Platform::start("drain").await);
    let worker_port = free_port();
    let mut worker = platform.shared.spawn(
        "usage-worker",
        "usage-worker",
        &[(
            "GATEHOUSE_USAGE_WORKER__LISTEN",
            format!("127.0.0.1:{worker_port}"),
        )],
    );
    worker
        .wait_ready(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{worker_port}/readyz"),
        )
        .await;
    let mut a = platform.dataplane("dataplane-a", 1).await;
    let mut b = platform.dataplane("dataplane-b", 2).await;
    let balancer = Arc::new(Balancer {
        replicas: [
            (client_for(platform.addr(1)), AtomicBool::new(true)),
            (client_for(platform.addr(2)), AtomicBool::new(true)),
        ],
        next: AtomicU64::new(0),
        ids: AtomicU64::new(10),
    });
    let url = platform.url();
    let session = session(&balancer.replicas[0].0, &url, &platform.token).await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));

    // A fixed load: 4 clients calling one after another, every third call a slow one (0.5 s),
    // so that calls are in flight whenever a replica drains.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (platform, balancer, tally, stop, url, session) = (
                platform.clone(),
                balancer.clone(),
                tally.clone(),
                stop.clone(),
                url.clone(),
                session.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let (tool, arguments) = if (n + c).is_multiple_of(3) {
                        ("fx__test_slow_cancellable", json!({"seconds": 0.5}))
                    } else {
                        ("fx__test_simple_text", json!({}))
                    };
                    let outcome = balancer
                        .call(&url, &platform.token, &session, tool, arguments, &tally)
                        .await;
                    if let Err(failure) = outcome {
                        tally.failed.lock().unwrap().push(failure);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    restart(&platform, &balancer, &mut a, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    restart(&platform, &balancer, &mut b, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let failed = tally.failed.lock().unwrap().clone();
    eprintln!(
        "rolling restart: {} calls answered, {} refusals retried, {} failed",
        tally.answered.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        failed.len()
    );
    assert!(failed.is_empty(), "calls failed beyond retry: {failed:?}");
    let answered = tally.answered.load(Ordering::Relaxed);
    assert!(answered > 20, "the load ran ({answered} calls)");
    assert_eq!(
        platform.fixture.tool_calls(),
        answered,
        "each call reached the upstream once"
    );
    // Every call's event is stored (the usage worker reads them from Redis).
    let admin = sqlx::PgPool::connect(&platform.db.admin_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE org_id = $1 AND tool IS NOT NULL")
                .bind(platform.org_id.as_uuid())
                .fetch_one(&admin)
                .await
                .unwrap();
        if stored as u64 == answered {
            break;
        }
        assert!(
            stored as u64 <= answered,
            "more call events ({stored}) than calls ({answered})"
        );
        assert!(
            Instant::now() < deadline,
            "{stored} call events stored for {answered} calls"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin.close().await;
    drop((a, b, worker));
    remove_dir(&platform.shared.dir);
}
