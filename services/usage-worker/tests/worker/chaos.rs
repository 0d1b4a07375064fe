//! Kill the event bus mid-load: Redis is killed and restarted (AOF), once stopped for several
//! seconds (the dataplane spools to disk), and the worker is killed mid-stream twice (one
//! restarted under a new name, so a live worker claims the dead one's pending entries; one
//! under the same name, so it re-reads its own). Afterwards every event is recorded exactly once.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse_core::ids::{EventId, OrgId};
use gatehouse_events::{Bus, CallOutcome};
use gatehouse_test_support::TestDb;
use gatehouse_test_support::redis_server::RedisServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    assert_exactly_once, call, config, org, pipeline, spawn_pipeline, temp_dir, unique, wait_for_usage,
};

const EVENTS: usize = 3000;

struct Worker {
    task: JoinHandle<()>,
    bus_shutdown: CancellationToken,
}

async fn start_worker(db: &TestDb, url: &str, ns: &str, name: &str) -> Worker {
    let cfg = config(
        db,
        Some(url),
        &temp_dir("worker-spool"),
        ns,
        &[("usage_worker.consumer_name", name)],
    );
    let bus_shutdown = CancellationToken::new();
    let bus = Bus::from_config(&cfg, bus_shutdown.clone()).await.unwrap();
    let (task, _stop) = spawn_pipeline(
        pipeline(db, bus.notifier.clone(), bus.quota.clone()),
        bus.consumer,
    );
    Worker { task, bus_shutdown }
}

impl Worker {
    /// Like `kill -9`: the task is dropped wherever it is (mid-transaction, mid-acknowledgement).
    fn kill(self) {
        self.task.abort();
        self.bus_shutdown.cancel();
    }
}

async fn pending(url: &str, stream: &str, group: &str) -> Option<i64> {
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut conn)
        .await
        .ok()?;
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_recorded_exactly_once_through_redis_and_worker_crashes() {
    let db = TestDb::new().await;
    let orgs: Vec<OrgId> = vec![
        org(&db, "chaos-a").await,
        org(&db, "chaos-b").await,
        org(&db, "chaos-c").await,
    ];
    // Every acknowledged XADD must survive the kills (see RedisServer::start_with_appendfsync).
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start_with_appendfsync(
        "always",
    )));
    let url = server.lock().unwrap().url();
    let ns = unique("chaos");
    let dp_spool = temp_dir("dp-spool");
    let dp_cfg = config(&db, Some(&url), &dp_spool, &ns, &[]);
    let dp_shutdown = CancellationToken::new();
    let dataplane = Bus::from_config(&dp_cfg, dp_shutdown.clone()).await.unwrap();

    let mut worker = start_worker(&db, &url, &ns, "worker-a").await;

    // The producer: EVENTS events at a steady ~400/s across three orgs.
    let publisher = dataplane.publisher.clone();
    let producer_orgs = orgs.clone();
    let producer = tokio::spawn(async move {
        let mut sent = HashSet::<EventId>::new();
        for n in 0..EVENTS {
            let outcome = if n % 10 == 9 {
                CallOutcome::Denied
            } else {
                CallOutcome::Success
            };
            let m = call(producer_orgs[n % 3], n, outcome);
            sent.insert(m.id());
            publisher.emit(m);
            if n % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        sent
    });

    let redis_op = |op: fn(&mut RedisServer)| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || op(&mut server.lock().unwrap()))
    };
    // t≈1 s: kill -9 Redis and restart it at once (AOF replay).
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis_op(RedisServer::restart).await.unwrap();
    // t≈2.5 s: kill the worker; a new one under another name claims what it left pending.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    worker.kill();
    worker = start_worker(&db, &url, &ns, "worker-b").await;
    // t≈3.5 s: Redis down for 3 s: the dataplane spools to disk, the worker waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis_op(RedisServer::kill).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        dataplane.publisher.is_spooling(),
        "the dataplane spools while Redis is down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis_op(RedisServer::restart).await.unwrap();
    // t≈7.5 s: kill the worker mid-stream again; it comes back under the same name and first
    // re-reads its own pending entries.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    worker.kill();
    worker = start_worker(&db, &url, &ns, "worker-b").await;

    let sent = producer.await.unwrap();
    assert_eq!(sent.len(), EVENTS);
    wait_for_usage(&db, EVENTS as i64, Duration::from_secs(90)).await;

    // Acknowledgements follow commits; give the last ones a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let p = pending(&url, &dp_cfg.redis.events_stream, &dp_cfg.redis.events_group).await;
        if p == Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "XPENDING still {p:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_exactly_once(&db, &orgs, &sent).await;
    let spooled = std::fs::read_dir(&dp_spool)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .count();
    assert_eq!(spooled, 0, "spool empty");
    assert!(!dataplane.publisher.is_spooling());

    // A worker restarted now has nothing left to do and changes nothing.
    worker.kill();
    let again = start_worker(&db, &url, &ns, "worker-c").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&db, &orgs, &sent).await;
    again.kill();
    dp_shutdown.cancel();
}
