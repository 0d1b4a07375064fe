//! Quotas: an org reaching its hard limit is refused by every dataplane within about a second;
//! a plan change or a new period brings it back.

use std::time::{Duration, Instant};

use gatehouse_events::{Bus, CallOutcome};
use gatehouse_test_support::TestDb;
use gatehouse_usage_worker::quota::{self, HardLimits};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    call, config, org, pipeline, put_on_plan, set_plan, spawn_pipeline, temp_dir, unique, wait_for_usage,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_limit_is_enforced_on_other_instances_and_lifted() {
    let db = TestDb::new().await;
    let (capped, other) = (org(&db, "capped").await, org(&db, "uncapped").await);
    let tiny = put_on_plan(&db, capped, 0, 5, 0, Some(5)).await;
    let url = gatehouse_test_support::redis_url();
    let ns = unique("worker-quota");
    let shutdown = CancellationToken::new();
    let worker_bus = Bus::from_config(
        &config(&db, Some(&url), &temp_dir("wq"), &ns, &[]),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let dataplane = Bus::from_config(
        &config(&db, Some(&url), &temp_dir("dq"), &ns, &[]),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let worker_quota = worker_bus.quota.clone();
    let (worker, stop) = spawn_pipeline(
        pipeline(&db, worker_bus.notifier.clone(), worker_bus.quota.clone()),
        worker_bus.consumer,
    );

    // Four billable calls and some refused ones (free): still under the limit of five.
    for n in 0..4 {
        dataplane.publisher.emit(call(capped, n, CallOutcome::Success));
        dataplane
            .publisher
            .emit(call(capped, n, CallOutcome::RateLimited));
        dataplane.publisher.emit(call(other, n, CallOutcome::Success));
    }
    wait_for_usage(&db, 12, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!dataplane.quota.is_over(capped));

    // The fifth reaches the limit.
    dataplane.publisher.emit(call(capped, 4, CallOutcome::Success));
    wait_for_usage(&db, 13, Duration::from_secs(20)).await;
    let committed = Instant::now();
    while !dataplane.quota.is_over(capped) {
        assert!(
            committed.elapsed() < Duration::from_secs(3),
            "the dataplane never saw the org over quota"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = committed.elapsed();
    assert!(
        took <= Duration::from_millis(1200),
        "over quota reached the other instance {took:?} after the commit"
    );
    assert!(!dataplane.quota.is_over(other), "other orgs are unaffected");

    // Plan change: no hard cap any more; the sweep lifts the block.
    set_plan(&db, capped, "team").await;
    quota::sweep_once(
        &db.db,
        &worker_quota,
        OffsetDateTime::now_utc(),
        HardLimits::Enforced,
    )
    .await
    .unwrap();
    let lifted = Instant::now();
    while dataplane.quota.is_over(capped) {
        assert!(
            lifted.elapsed() < Duration::from_secs(2),
            "still over quota after the plan change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Back on the capped plan: over again; in the next period it is under again.
    set_plan(&db, capped, &tiny).await;
    let status = quota::enforce(
        &db.db,
        &worker_quota,
        capped,
        OffsetDateTime::now_utc(),
        HardLimits::Enforced,
    )
    .await
    .unwrap();
    assert!(status.over && status.calls == 5);
    let next_month = OffsetDateTime::now_utc() + Duration::from_secs(32 * 86_400);
    assert_eq!(
        quota::sweep_once(&db.db, &worker_quota, next_month, HardLimits::Enforced)
            .await
            .unwrap(),
        1
    );
    let lifted = Instant::now();
    while dataplane.quota.is_over(capped) {
        assert!(
            lifted.elapsed() < Duration::from_secs(2),
            "still over quota in a new period"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    shutdown.cancel();
}

/// `billing.enforce_hard_limits = false`: an org at its plan's hard limit is not marked over
/// quota, and one marked over before is cleared by the sweep.
#[tokio::test]
async fn an_install_that_ignores_hard_limits_never_refuses_an_org() {
    let db = TestDb::new().await;
    let capped = org(&db, "capped-ignored").await;
    put_on_plan(&db, capped, 0, 3, 0, Some(3)).await;
    let shutdown = CancellationToken::new();
    let spool = temp_dir("ign");
    let bus = Bus::from_config(&config(&db, None, &spool, &unique("ign"), &[]), shutdown.clone())
        .await
        .unwrap();
    let state = bus.quota.clone();
    let mut ignoring = pipeline(&db, gatehouse_events::ChangeNotifier::local(), state.clone());
    ignoring.hard_limits = HardLimits::Ignored;
    let (worker, stop) = spawn_pipeline(ignoring, bus.consumer);
    for n in 0..5 {
        bus.publisher.emit(call(capped, n, CallOutcome::Success));
    }
    wait_for_usage(&db, 5, Duration::from_secs(20)).await;
    let status = quota::status(&db.db, capped, OffsetDateTime::now_utc(), HardLimits::Ignored)
        .await
        .unwrap();
    assert_eq!(
        (status.calls, status.hard_limit, status.over),
        (5, Some(3), false)
    );
    assert!(!state.is_over(capped), "the pipeline marked the org over quota");
    // The same usage is over the limit where limits are enforced.
    let enforced = quota::status(&db.db, capped, OffsetDateTime::now_utc(), HardLimits::Enforced)
        .await
        .unwrap();
    assert!(enforced.over);

    // Marked over while limits were enforced: the sweep of an install that ignores them clears it.
    state.set(capped, true).await;
    let cleared = quota::sweep_once(&db.db, &state, OffsetDateTime::now_utc(), HardLimits::Ignored)
        .await
        .unwrap();
    assert_eq!(cleared, 1);
    assert!(!state.is_over(capped));
    stop.cancel();
    worker.await.unwrap();
    shutdown.cancel();
}
