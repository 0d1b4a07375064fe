//! `gatehouse usage-worker` as a real process, killed with SIGKILL twice in the middle of a
//! stream of events and restarted: every event is recorded exactly once, and a SIGTERM stops it
//! cleanly.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::{EndpointId, EventId, OrgId};
use gatehouse_db::repos::{audit, orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};
use gatehouse_events::{Bus, BusMessage, CallEvent, CallOutcome, SubjectKind};
use gatehouse_test_support::{TestDb, free_port};
use tokio_util::sync::CancellationToken;

use crate::{ServiceProcess, gatehouse, valid_env};

const EVENTS: usize = 4000;

struct WorkerProcess {
    process: ServiceProcess,
    ready: String,
}

fn spawn_worker(db: &TestDb, redis: &str, namespace: &str, dir: &Path, run: usize) -> WorkerProcess {
    let port = free_port();
    let log = dir.join(format!("worker-{run}.log"));
    let mut cmd = gatehouse();
    for (k, v) in valid_env() {
        cmd.env(k, v);
    }
    let child = cmd
        .env("GATEHOUSE_DATABASE__URL", &db.service_url)
        .env("GATEHOUSE_REDIS__URL", redis)
        .env("GATEHOUSE_REDIS__EVENTS_STREAM", format!("{namespace}events"))
        .env("GATEHOUSE_REDIS__KEY_PREFIX", namespace)
        .env("GATEHOUSE_DATAPLANE__SPOOL_DIR", dir.join("worker-spool"))
        .env("GATEHOUSE_USAGE_WORKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_USAGE_WORKER__CLAIM_IDLE_MS", "1000")
        .env("GATEHOUSE_USAGE_WORKER__BATCH_SIZE", "100")
        .env("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS", "5")
        .env("GATEHOUSE_TELEMETRY__LOG_FORMAT", "pretty")
        .arg("usage-worker")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("worker-{run}.err"))).unwrap())
        .spawn()
        .expect("start gatehouse usage-worker");
    WorkerProcess {
        process: ServiceProcess {
            name: "usage-worker",
            child,
            log,
        },
        ready: format!("http://127.0.0.1:{port}/readyz"),
    }
}

impl WorkerProcess {
    async fn wait_ready(&mut self, http: &reqwest::Client) {
        self.process.wait_ready(http, &self.ready).await;
    }
}

fn call(org: OrgId, n: usize) -> BusMessage {
    BusMessage::Call(CallEvent {
        id: EventId::new(),
        org_id: org,
        occurred_at: time::OffsetDateTime::now_utc(),
        source: "dp-test".into(),
        endpoint_id: Some(EndpointId::from_uuid(uuid::Uuid::from_u128(n as u128 % 3 + 1))),
        server_id: None,
        method: "tools/call".into(),
        tool: Some(format!("orders__tool_{}", n % 4)),
        subject: "user-1".into(),
        subject_kind: SubjectKind::User,
        client_id: None,
        outcome: CallOutcome::Success,
        error_code: None,
        latency_ms: 2,
        bytes_in: 10,
        bytes_out: 20,
        args_hash: None,
        arguments: None,
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        user_agent: None,
        confirmation: None,
    })
}

async fn usage_rows(db: &TestDb) -> (i64, i64, i64, i64, i64) {
    let mut admin = db.admin().await;
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_events), (SELECT count(DISTINCT id) FROM usage_events),
                (SELECT count(*) FROM audit_events), (SELECT count(DISTINCT id) FROM audit_events),
                (SELECT COALESCE(sum(calls), 0)::bigint FROM usage_rollups)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_stream_records_every_event_exactly_once() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("gatehouse-worker-kill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let redis = gatehouse_test_support::redis_url();
    let namespace = format!("test:worker-kill:{}:", uuid::Uuid::new_v4().simple());

    let mut tx = GlobalTx::begin(&db.db).await.unwrap();
    let owner = users::create(&mut tx, "owner@kill.test", None, "Owner", true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(OrgId::new()))
        .await
        .unwrap();
    let org = orgs::create_with_owner(&mut tx, "kill", "kill", owner.id)
        .await
        .unwrap()
        .id;
    tx.commit().await.unwrap();

    // The dataplane side, in this process.
    let cfg = Config::load(&Sources {
        files: vec![],
        overrides: vec![
            ("redis.url".into(), redis.clone()),
            ("redis.events_stream".into(), format!("{namespace}events")),
            ("redis.key_prefix".into(), namespace.clone()),
            (
                "dataplane.spool_dir".into(),
                dir.join("dp-spool").display().to_string(),
            ),
        ],
    })
    .unwrap();
    let shutdown = CancellationToken::new();
    let dataplane = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();

    let http = reqwest::Client::new();
    let mut worker = spawn_worker(&db, &redis, &namespace, &dir, 0);
    worker.wait_ready(&http).await;

    let publisher = dataplane.publisher.clone();
    let producer = tokio::spawn(async move {
        let mut sent = HashSet::new();
        for n in 0..EVENTS {
            let m = call(org, n);
            sent.insert(m.id());
            publisher.emit(m);
            if n % 25 == 24 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        sent
    });

    // Two SIGKILLs mid-stream, each followed by a restart (a new process, hence a new consumer
    // name: the live one claims what the dead one left pending).
    for run in 1..=2 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let written = usage_rows(&db).await.0;
        assert!(
            written > 0 && written < EVENTS as i64,
            "killing mid-stream (written: {written})"
        );
        worker.process.child.kill().unwrap();
        worker.process.child.wait().unwrap();
        worker = spawn_worker(&db, &redis, &namespace, &dir, run);
        worker.wait_ready(&http).await;
    }

    let sent: HashSet<EventId> = producer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while usage_rows(&db).await.0 < EVENTS as i64 {
        assert!(
            Instant::now() < deadline,
            "not every event was written: {:?}",
            usage_rows(&db).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = EVENTS as i64;
    assert_eq!(
        usage_rows(&db).await,
        (n, n, n, n, n),
        "usage rows, distinct, audit rows, distinct, rollups"
    );
    let mut admin = db.admin().await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM usage_events")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert!(ids.into_iter().map(EventId::from_uuid).collect::<HashSet<_>>() == sent);
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let chain = audit::verify_chain(&mut tx).await.unwrap();
    assert_eq!(
        (chain.entries, chain.first_broken_seq, chain.head_mismatch),
        (n, None, false)
    );
    tx.commit().await.unwrap();

    // Everything acknowledged: nothing pending in the group.
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(&cfg.redis.events_stream)
            .arg(&cfg.redis.events_group)
            .query_async(&mut conn)
            .await
            .unwrap();
        if matches!(&summary, redis::Value::Array(items) if items.first() == Some(&redis::Value::Int(0))) {
            break;
        }
        assert!(Instant::now() < deadline, "XPENDING not empty: {summary:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGTERM: a clean exit within the grace period.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.process.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = worker.process.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "usage-worker ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "usage-worker exited with {status}");
    let _: () = redis::cmd("DEL")
        .arg(&cfg.redis.events_stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).ok();
}
