//! Over-quota state shared through Redis: propagation, cold start, outages.

use std::time::{Duration, Instant};

use gatehouse_core::ids::OrgId;
use gatehouse_events::{Bus, QuotaState};
use gatehouse_test_support::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

use crate::helpers::{config, eventually, temp_dir, unique};

async fn instance(url: &str, ns: &str, shutdown: &CancellationToken) -> QuotaState {
    let cfg = config(Some(url), &temp_dir("quota-spool"), ns, &[]);
    Bus::from_config(&cfg, shutdown.clone()).await.unwrap().quota
}

async fn time_until(quota: &QuotaState, org: OrgId, over: bool) -> Duration {
    let started = Instant::now();
    while quota.is_over(org) != over {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "quota state never became {over}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn over_quota_reaches_other_instances_within_a_second_and_clears() {
    let url = gatehouse_test_support::redis_url();
    let ns = unique("quota");
    let shutdown = CancellationToken::new();
    let worker = instance(&url, &ns, &shutdown).await;
    let dataplane = instance(&url, &ns, &shutdown).await;
    let (org, other) = (OrgId::new(), OrgId::new());

    worker.set(org, true).await;
    assert!(worker.is_over(org));
    let took = time_until(&dataplane, org, true).await;
    assert!(
        took <= Duration::from_secs(1),
        "over quota reached the dataplane after {took:?}"
    );
    assert!(!dataplane.is_over(other), "other orgs are not affected");

    // A dataplane started now loads the set before serving.
    let cold = instance(&url, &ns, &shutdown).await;
    assert!(cold.is_over(org), "cold start loads the set");

    worker.set(org, false).await;
    let took = time_until(&dataplane, org, false).await;
    assert!(
        took <= Duration::from_secs(1),
        "back under quota reached the dataplane after {took:?}"
    );
    time_until(&cold, org, false).await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_redis_is_down_is_published_when_it_returns() {
    let mut server = RedisServer::start();
    let url = server.url();
    let ns = unique("quota-outage");
    let shutdown = CancellationToken::new();
    let worker = instance(&url, &ns, &shutdown).await;
    let dataplane = instance(&url, &ns, &shutdown).await;
    let org = OrgId::new();

    server.kill();
    worker.set(org, true).await;
    assert!(worker.is_over(org), "the deciding process applies it at once");
    server.restart();
    eventually(
        Duration::from_secs(15),
        "change published after the outage",
        || async { dataplane.is_over(org) },
    )
    .await;
    // The set in Redis holds it too (it survives a worker restart).
    let fresh = instance(&url, &ns, &shutdown).await;
    assert!(fresh.is_over(org));
    shutdown.cancel();
}
