//! Duplicate replay: re-sending 100% of the events (same ids) changes no total.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse_core::ids::EventId;
use gatehouse_events::{Bus, CallOutcome};
use gatehouse_test_support::TestDb;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    assert_exactly_once, call, config, org, pipeline, spawn_pipeline, temp_dir, totals, unique,
    wait_for_usage,
};

#[tokio::test]
async fn resending_every_event_changes_totals_by_zero() {
    let db = TestDb::new().await;
    let orgs = vec![org(&db, "replay-a").await, org(&db, "replay-b").await];
    // Single-node mode: the spool is the bus, as in `gatehouse up`.
    let spool = temp_dir("replay-spool");
    let cfg = config(&db, None, &spool, &unique("replay"), &[]);
    let shutdown = CancellationToken::new();
    let bus = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();
    let (worker, stop) = spawn_pipeline(
        pipeline(&db, bus.notifier.clone(), bus.quota.clone()),
        bus.consumer,
    );

    let outcomes = [
        CallOutcome::Success,
        CallOutcome::Error,
        CallOutcome::Denied,
        CallOutcome::RateLimited,
        CallOutcome::OverQuota,
    ];
    let events: Vec<_> = (0..1000)
        .map(|n| call(orgs[n % 2], n, outcomes[n % outcomes.len()]))
        .collect();
    let sent: HashSet<EventId> = events.iter().map(|m| m.id()).collect();
    for m in &events {
        bus.publisher.emit(m.clone());
    }
    wait_for_usage(&db, 1000, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = totals(&db).await;
    assert_exactly_once(&db, &orgs, &sent).await;
    assert_eq!(
        before.raw_calls, 400,
        "only forwarded tool calls (success, error) are billable"
    );

    // Everything again, in reverse order, plus a few duplicates within one batch.
    for m in events.iter().rev().chain(events.iter().take(50)) {
        bus.publisher.emit(m.clone());
    }
    // Wait until the replay has been consumed: the spool empties once it is acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bus.handle.spool_bytes() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "replay not consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(totals(&db).await, before, "a full replay changes nothing");
    assert_exactly_once(&db, &orgs, &sent).await;

    stop.cancel();
    worker.await.unwrap();
    shutdown.cancel();
}
