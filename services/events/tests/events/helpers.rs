#![allow(dead_code)] // shared by test modules; not every test uses every helper
//! Configuration for one test's bus, events to send, and draining a consumer.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::{EndpointId, EventId, OrgId};
use gatehouse_events::{BusMessage, CallEvent, CallOutcome, EventConsumer, SubjectKind};

pub use gatehouse_test_support::{temp_dir, unique};

/// A configuration for one process of a test: Redis at `redis` (single-node mode if `None`),
/// spool in `spool`, unique stream and key prefix given by `namespace`.
pub fn config(
    redis: Option<&str>,
    spool: &std::path::Path,
    namespace: &str,
    extra: &[(&str, &str)],
) -> Config {
    gatehouse_test_support::init();
    let mut overrides: Vec<(String, String)> = vec![
        ("redis.url".into(), redis.unwrap_or("").into()),
        ("redis.events_stream".into(), format!("{namespace}events")),
        ("redis.key_prefix".into(), namespace.into()),
        ("dataplane.spool_dir".into(), spool.display().to_string()),
    ];
    for (k, v) in extra {
        overrides.push(((*k).into(), (*v).into()));
    }
    Config::load(&Sources {
        files: vec![],
        overrides,
    })
    .expect("test configuration is valid")
}

pub fn call(org: OrgId, n: usize) -> BusMessage {
    BusMessage::Call(CallEvent {
        id: EventId::new(),
        org_id: org,
        occurred_at: time::OffsetDateTime::now_utc(),
        source: "test-dataplane".into(),
        endpoint_id: Some(EndpointId::new()),
        server_id: None,
        method: "tools/call".into(),
        tool: Some(format!("orders__tool_{}", n % 7)),
        subject: "user-1".into(),
        subject_kind: SubjectKind::User,
        client_id: None,
        outcome: CallOutcome::Success,
        error_code: None,
        latency_ms: 3,
        bytes_in: 100,
        bytes_out: 200,
        args_hash: None,
        arguments: None,
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        user_agent: None,
        confirmation: None,
    })
}

/// Reads and acknowledges until `expected` distinct ids arrived (or panics after `timeout`),
/// returning every id received in order (duplicates included).
pub async fn drain(
    consumer: &mut EventConsumer,
    expected: &HashSet<EventId>,
    timeout: Duration,
) -> Vec<EventId> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut received = Vec::new();
    let mut distinct = HashSet::new();
    while !expected.is_subset(&distinct) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} events arrived within {timeout:?}",
            expected.intersection(&distinct).count(),
            expected.len()
        );
        match consumer.next_batch(200, Duration::from_millis(500)).await {
            Ok(batch) => {
                for m in &batch.messages {
                    received.push(m.id());
                    distinct.insert(m.id());
                }
                consumer.ack(batch).await.expect("ack");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    received
}

/// Spool segment files left in `dir` (the lock file does not count).
pub fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .count()
        })
        .unwrap_or(0)
}

pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis (is redis-server installed and running?)")
}

/// Polls `f` until it returns true, for at most `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
