//! The Redis bus: spooling through an outage, replay, consumer-group recovery, blocking reads.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gatehouse_core::ids::{EventId, OrgId};
use gatehouse_events::Bus;
use gatehouse_test_support::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

use crate::helpers::{call, config, drain, eventually, redis_conn, segments, temp_dir, unique};

async fn pending_count(url: &str, stream: &str, group: &str) -> i64 {
    let mut conn = redis_conn(url).await;
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut conn)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

async fn stream_len(url: &str, stream: &str) -> i64 {
    let mut conn = redis_conn(url).await;
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_spools_to_disk_and_replays_everything_when_redis_returns() {
    // Every acknowledged XADD must survive the kill (see RedisServer::start_with_appendfsync).
    let mut server = RedisServer::start_with_appendfsync("always");
    let url = server.url();
    let ns = unique("outage");
    let (dp_spool, worker_spool) = (temp_dir("dp-spool"), temp_dir("worker-spool"));
    let dp_cfg = config(Some(&url), &dp_spool, &ns, &[]);
    let worker_cfg = config(
        Some(&url),
        &worker_spool,
        &ns,
        &[("usage_worker.consumer_name", "worker-1")],
    );
    let shutdown = CancellationToken::new();
    let dataplane = Bus::from_config(&dp_cfg, shutdown.clone()).await.unwrap();
    let mut worker = Bus::from_config(&worker_cfg, shutdown.clone()).await.unwrap();
    let org = OrgId::new();
    let mut ids = HashSet::<EventId>::new();
    let mut emit = |n| {
        let m = call(org, n);
        ids.insert(m.id());
        dataplane.publisher.emit(m);
    };

    for n in 0..100 {
        emit(n);
    }
    eventually(Duration::from_secs(5), "published to Redis", || async {
        stream_len(&url, &dp_cfg.redis.events_stream).await == 100 && !dataplane.publisher.is_spooling()
    })
    .await;

    server.kill();
    let attempts_before = dataplane.handle.redis_connect_attempts();
    let outage_started = Instant::now();
    for n in 100..300 {
        emit(n);
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eventually(
        Duration::from_secs(5),
        "events spooled while Redis is down",
        || async { dataplane.publisher.is_spooling() && segments(&dp_spool) > 0 },
    )
    .await;
    dataplane.publisher.check().expect("spooling is healthy");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = dataplane.handle.redis_connect_attempts() - attempts_before;
    let outage = outage_started.elapsed().as_secs_f64();
    assert!(
        (attempts as f64) <= 10.0 * outage + 1.0,
        "{attempts} reconnect attempts in {outage:.1} s exceed 10/s"
    );

    server.restart();
    let received = drain(&mut worker.consumer, &ids, Duration::from_secs(30)).await;
    assert_eq!(
        received.iter().copied().collect::<HashSet<_>>(),
        ids,
        "every event delivered"
    );
    eventually(Duration::from_secs(10), "spool drained and deleted", || async {
        segments(&dp_spool) == 0 && !dataplane.publisher.is_spooling()
    })
    .await;
    assert_eq!(
        pending_count(&url, &dp_cfg.redis.events_stream, &dp_cfg.redis.events_group).await,
        0
    );
    assert_eq!(
        stream_len(&url, &dp_cfg.redis.events_stream).await,
        0,
        "acknowledged entries are deleted"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn pending_entries_are_reread_after_restart_and_claimed_from_dead_consumers() {
    let url = gatehouse_test_support::redis_url();
    let ns = unique("claim");
    let spool = temp_dir("claim-spool");
    let producer_cfg = config(Some(&url), &spool, &ns, &[]);
    let consumer_cfg = |name: &str| {
        config(
            Some(&url),
            &spool.join(name),
            &ns,
            &[
                ("usage_worker.consumer_name", name),
                ("usage_worker.claim_idle_ms", "1000"),
            ],
        )
    };
    let shutdown = CancellationToken::new();
    let producer = Bus::from_config(&producer_cfg, shutdown.clone()).await.unwrap();
    let org = OrgId::new();
    let sent: Vec<_> = (0..10).map(|n| call(org, n)).collect();
    for m in &sent {
        producer.publisher.emit(m.clone());
    }
    let ids: HashSet<EventId> = sent.iter().map(|m| m.id()).collect();
    let batch_ids = |b: &gatehouse_events::Batch| b.messages.iter().map(|m| m.id()).collect::<HashSet<_>>();

    // Worker "a" reads everything and dies before acknowledging.
    {
        let mut a = Bus::from_config(&consumer_cfg("a"), shutdown.clone())
            .await
            .unwrap();
        let mut got = HashSet::new();
        while got.len() < ids.len() {
            let batch = a.consumer.next_batch(100, Duration::from_secs(2)).await.unwrap();
            got.extend(batch_ids(&batch));
        }
        assert_eq!(got, ids);
    }
    // Restarted under the same name, it first re-reads its own pending entries.
    {
        let mut a = Bus::from_config(&consumer_cfg("a"), shutdown.clone())
            .await
            .unwrap();
        let batch = a.consumer.next_batch(100, Duration::from_secs(2)).await.unwrap();
        assert_eq!(batch_ids(&batch), ids, "own pending entries come back first");
    }
    // "a" is gone for good: after the idle time, worker "b" claims them.
    let mut b = Bus::from_config(&consumer_cfg("b"), shutdown.clone())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut claimed = HashSet::new();
    while claimed.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "claimed only {} of {}",
            claimed.len(),
            ids.len()
        );
        let batch = b
            .consumer
            .next_batch(100, Duration::from_millis(500))
            .await
            .unwrap();
        claimed.extend(batch_ids(&batch));
        b.consumer.ack(batch).await.unwrap();
    }
    assert_eq!(claimed, ids);
    assert_eq!(
        pending_count(
            &url,
            &producer_cfg.redis.events_stream,
            &producer_cfg.redis.events_group
        )
        .await,
        0
    );
    shutdown.cancel();
    let mut conn = redis_conn(&url).await;
    let _: () = redis::cmd("DEL")
        .arg(&producer_cfg.redis.events_stream)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn blocking_reads_outlast_the_default_response_timeout() {
    let url = gatehouse_test_support::redis_url();
    let ns = unique("block");
    let spool = temp_dir("block-spool");
    let cfg = config(Some(&url), &spool, &ns, &[]);
    let shutdown = CancellationToken::new();
    let mut bus = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();
    // Nothing to read: the read blocks for the whole wait and ends empty, not in a timeout
    // error (redis-rs cuts commands on a shared connection after 500 ms).
    let started = Instant::now();
    let batch = bus
        .consumer
        .next_batch(10, Duration::from_secs(2))
        .await
        .expect("no timeout error");
    assert!(batch.messages.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "blocked {:?}",
        started.elapsed()
    );

    // An event emitted during a blocking read is delivered by it.
    let publisher = bus.publisher.clone();
    let event = call(OrgId::new(), 1);
    let sent = event.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        publisher.emit(sent);
    });
    let batch = bus.consumer.next_batch(10, Duration::from_secs(4)).await.unwrap();
    assert_eq!(batch.messages, vec![event]);
    bus.consumer.ack(batch).await.unwrap();
    shutdown.cancel();
    let mut conn = redis_conn(&url).await;
    let _: () = redis::cmd("DEL")
        .arg(&cfg.redis.events_stream)
        .query_async(&mut conn)
        .await
        .unwrap();
}
