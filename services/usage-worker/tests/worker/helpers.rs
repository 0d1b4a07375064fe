#![allow(dead_code)] // shared by test modules; not every test uses every helper
//! Orgs, events, configurations and the consistency oracle shared by the worker tests.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::{EndpointId, EventId, OrgId};
use gatehouse_db::repos::{audit, orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};
use gatehouse_events::{
    BusMessage, CallEvent, CallOutcome, ChangeNotifier, EventConsumer, QuotaState, SubjectKind,
};
use gatehouse_test_support::TestDb;
use gatehouse_usage_worker::pipeline::{Pipeline, PipelineHealth};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

pub use gatehouse_test_support::{temp_dir, unique};

/// A worker or dataplane configuration on `db`, with Redis at `redis` (single-node mode if
/// `None`), its spool in `spool` and unique Redis names from `namespace`.
pub fn config(
    db: &TestDb,
    redis: Option<&str>,
    spool: &Path,
    namespace: &str,
    extra: &[(&str, &str)],
) -> Config {
    gatehouse_test_support::init();
    let mut overrides: Vec<(String, String)> = vec![
        ("mode".into(), "local".into()),
        ("database.url".into(), db.service_url.clone()),
        ("redis.url".into(), redis.unwrap_or("").into()),
        ("redis.events_stream".into(), format!("{namespace}events")),
        ("redis.key_prefix".into(), namespace.into()),
        ("dataplane.spool_dir".into(), spool.display().to_string()),
        ("usage_worker.listen".into(), "127.0.0.1:0".into()),
        ("usage_worker.claim_idle_ms".into(), "1000".into()),
        ("usage_worker.batch_size".into(), "200".into()),
        (
            "secrets.encryption_keys".into(),
            format!("test-1={}", gatehouse_core::secrets::generate_key_b64()),
        ),
        (
            "secrets.signing_secret".into(),
            gatehouse_core::secrets::generate_signing_secret_b64(),
        ),
        ("shutdown.grace_period_secs".into(), "5".into()),
        // Local mode without SMTP writes mail to files: never into the source tree.
        (
            "mail.file_dir".into(),
            std::env::temp_dir()
                .join("gatehouse-test-mail-worker")
                .display()
                .to_string(),
        ),
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

/// An org with a verified owner, created like the control API does.
pub async fn org(db: &TestDb, slug: &str) -> OrgId {
    let mut tx = GlobalTx::begin(&db.db).await.unwrap();
    let owner = users::create(&mut tx, &format!("owner@{slug}.test"), None, "Owner", true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(OrgId::new()))
        .await
        .unwrap();
    let org = orgs::create_with_owner(&mut tx, slug, slug, owner.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    org.id
}

/// Puts `org` on a plan created for the test (plans are written only by operators).
pub async fn put_on_plan(
    db: &TestDb,
    org: OrgId,
    fee_cents: i64,
    included: i64,
    overage_per_1000: i64,
    hard: Option<i64>,
) -> String {
    let plan = format!("plan-{}", uuid::Uuid::new_v4().simple());
    let mut admin = db.admin().await;
    sqlx::query(
        "INSERT INTO plans (id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls, hard_limit_calls)
         VALUES ($1, 'Test', $2, $3, $4, $5)",
    )
    .bind(&plan)
    .bind(fee_cents)
    .bind(included)
    .bind(overage_per_1000)
    .bind(hard)
    .execute(&mut admin)
    .await
    .unwrap();
    set_plan(db, org, &plan).await;
    plan
}

pub async fn set_plan(db: &TestDb, org: OrgId, plan: &str) {
    let mut admin = db.admin().await;
    sqlx::query("UPDATE orgs SET plan_id = $2 WHERE id = $1")
        .bind(org)
        .bind(plan)
        .execute(&mut admin)
        .await
        .unwrap();
}

/// A tool call at one of three endpoints of the org, on one of five tools.
pub fn call(org: OrgId, n: usize, outcome: CallOutcome) -> BusMessage {
    let endpoints = endpoints_of(org);
    BusMessage::Call(CallEvent {
        id: EventId::new(),
        org_id: org,
        occurred_at: time::OffsetDateTime::now_utc(),
        source: "dp-test".into(),
        endpoint_id: Some(endpoints[n % 3]),
        server_id: None,
        method: "tools/call".into(),
        tool: Some(format!("orders__tool_{}", n % 5)),
        subject: format!("user-{}", n % 4),
        subject_kind: SubjectKind::User,
        client_id: Some("client-1".into()),
        outcome,
        error_code: None,
        latency_ms: (n % 50) as u32,
        bytes_in: 100 + n as u64,
        bytes_out: 200,
        args_hash: Some("00ff".into()),
        arguments: None,
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        user_agent: Some("test-agent".into()),
        confirmation: None,
    })
}

/// Three endpoint ids derived from the org id (stable within a test).
fn endpoints_of(org: OrgId) -> [EndpointId; 3] {
    let base = org.into_uuid().as_u128();
    [1u128, 2, 3].map(|k| EndpointId::from_uuid(uuid::Uuid::from_u128(base ^ k)))
}

/// Builds the worker's pipeline around a consumer (what `UsageWorker` runs), without HTTP.
pub fn pipeline(db: &TestDb, notifier: ChangeNotifier, quota: QuotaState) -> Pipeline {
    Pipeline {
        db: db.db.clone(),
        notifier,
        quota,
        hard_limits: gatehouse_usage_worker::quota::HardLimits::Enforced,
        batch_size: 200,
        grace: Duration::from_secs(5),
        health: Arc::new(PipelineHealth::default()),
        usage_grew: None,
    }
}

pub fn spawn_pipeline(
    p: Pipeline,
    consumer: EventConsumer,
) -> (tokio::task::JoinHandle<()>, CancellationToken) {
    let stop = CancellationToken::new();
    (tokio::spawn(p.run(consumer, stop.clone())), stop)
}

/// Rows of usage events in the whole database (all orgs), read as a superuser.
pub async fn usage_count(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM usage_events")
        .fetch_one(admin)
        .await
        .unwrap()
}

pub async fn wait_for_usage(db: &TestDb, expected: i64, timeout: Duration) {
    let mut admin = db.admin().await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = usage_count(&mut admin).await;
        if n >= expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {expected} usage events written within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Totals that must not change when events are redelivered.
#[derive(Debug, PartialEq, Eq)]
pub struct Totals {
    pub usage_rows: i64,
    pub usage_distinct: i64,
    pub audit_rows: i64,
    pub audit_distinct: i64,
    pub rollup_requests: i64,
    pub rollup_calls: i64,
    pub raw_calls: i64,
    pub rollup_bytes_in: i64,
    pub raw_bytes_in: i64,
    pub period_calls: i64,
    pub period_events: i64,
}

pub async fn totals(db: &TestDb) -> Totals {
    let mut admin = db.admin().await;
    let row: (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_events), (SELECT count(DISTINCT (org_id, id)) FROM usage_events),
                (SELECT count(*) FROM audit_events), (SELECT count(DISTINCT (org_id, id)) FROM audit_events),
                (SELECT COALESCE(sum(calls), 0)::bigint FROM usage_rollups),
                (SELECT COALESCE(sum(units), 0)::bigint FROM usage_rollups),
                (SELECT COALESCE(sum(units), 0)::bigint FROM usage_events),
                (SELECT COALESCE(sum(bytes_in), 0)::bigint FROM usage_rollups),
                (SELECT COALESCE(sum(bytes_in), 0)::bigint FROM usage_events),
                (SELECT COALESCE(sum(calls), 0)::bigint FROM usage_period_totals),
                (SELECT COALESCE(sum(events), 0)::bigint FROM usage_period_totals)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    Totals {
        usage_rows: row.0,
        usage_distinct: row.1,
        audit_rows: row.2,
        audit_distinct: row.3,
        rollup_requests: row.4,
        rollup_calls: row.5,
        raw_calls: row.6,
        rollup_bytes_in: row.7,
        raw_bytes_in: row.8,
        period_calls: row.9,
        period_events: row.10,
    }
}

/// The oracle: exactly the events sent are recorded, once each, in both the usage table and the
/// audit trail; rollups and period totals equal the sums of the distinct raw events; every org's
/// chain verifies from genesis.
pub async fn assert_exactly_once(db: &TestDb, orgs: &[OrgId], sent: &HashSet<EventId>) {
    let n = sent.len() as i64;
    let t = totals(db).await;
    assert_eq!(
        (t.usage_rows, t.usage_distinct),
        (n, n),
        "usage events: count(*), count(DISTINCT id)"
    );
    assert_eq!(
        (t.audit_rows, t.audit_distinct),
        (n, n),
        "audit events: count(*), count(DISTINCT id)"
    );
    assert_eq!(t.rollup_requests, n, "rollups count every distinct event");
    assert_eq!(t.rollup_calls, t.raw_calls, "rollup units == Σ raw units");
    assert_eq!(t.rollup_bytes_in, t.raw_bytes_in, "rollup bytes == Σ raw bytes");
    assert_eq!(
        (t.period_calls, t.period_events),
        (t.raw_calls, n),
        "period totals == Σ raw"
    );
    let mut admin = db.admin().await;
    let recorded: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM usage_events")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    let recorded: HashSet<EventId> = recorded.into_iter().map(EventId::from_uuid).collect();
    assert!(recorded == *sent, "the recorded ids are exactly the ids sent");
    for org in orgs {
        let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(*org))
            .await
            .unwrap();
        let v = audit::verify_chain(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(v.first_broken_seq, None, "org {org}: chain broken");
        assert!(!v.head_mismatch, "org {org}: chain head mismatch");
    }
}
