//! The worker as a service: readiness names its dependencies, and a graceful shutdown loses
//! nothing (what was not written is still in the spool for the next start).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::ids::EventId;
use gatehouse_events::{Bus, CallOutcome};
use gatehouse_test_support::TestDb;
use gatehouse_usage_worker::{Dependencies, UsageWorker};
use tokio_util::sync::CancellationToken;

use crate::helpers::{assert_exactly_once, call, config, org, temp_dir, unique, wait_for_usage};

async fn start(
    cfg: &Arc<gatehouse_core::Config>,
    db: &TestDb,
) -> (
    Bus,
    String,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    CancellationToken,
) {
    let shutdown = CancellationToken::new();
    let mut bus = Bus::from_config(cfg, shutdown.clone()).await.unwrap();
    let consumer = std::mem::replace(&mut bus.consumer, Bus::in_memory().consumer);
    let worker = UsageWorker::build(Dependencies {
        cfg: cfg.clone(),
        db: db.db.clone(),
        notifier: bus.notifier.clone(),
        consumer,
        quota: bus.quota.clone(),
    })
    .unwrap();
    let base = format!("http://{}", worker.local_addr());
    let task = tokio::spawn(worker.run_until_stopped(shutdown.clone()));
    (bus, base, task, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_with_named_checks_and_a_graceful_shutdown_loses_nothing() {
    let db = TestDb::new().await;
    let org = org(&db, "service").await;
    let spool = temp_dir("service-spool");
    let cfg = Arc::new(config(&db, None, &spool, &unique("service"), &[]));

    let (bus, base, task, shutdown) = start(&cfg, &db).await;
    let ready: serde_json::Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    for check in ["database", "bus", "pipeline"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }

    let mut sent = HashSet::<EventId>::new();
    for n in 0..2000 {
        let m = call(org, n, CallOutcome::Success);
        sent.insert(m.id());
        bus.publisher.emit(m);
    }
    wait_for_usage(&db, 1, Duration::from_secs(20)).await;
    // Stop while the backlog is being written; the batch in flight is finished, the rest stays
    // in the spool.
    shutdown.cancel();
    task.await.unwrap().unwrap();
    bus.handle.close().await;

    let (bus, _base, task, shutdown) = start(&cfg, &db).await;
    wait_for_usage(&db, 2000, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&db, &[org], &sent).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    bus.handle.close().await;
    assert_eq!(
        std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .count(),
        0,
        "spool empty"
    );
}
