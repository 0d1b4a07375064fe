//! The main proof: a backend shared by four owners (customers of two orgs, and a customer id
//! reused across orgs), randomized tool calls from 64 concurrent callers with different
//! identities through PgBouncer in transaction mode (pool of 4 server connections), with calls
//! aborted mid-way and backend connections killed. Every returned row is the caller's own, every
//! write lands on the caller's own rows only, and no caller context is ever seen outside its
//! call.
//!
//! `HOSTED_SQL_CALLS` sets the number of calls (10,000 by default; the full run is
//! `HOSTED_SQL_CALLS=100000 cargo test -p gatehouse-hosted-sql --test hosted_sql isolation`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_core::ids::OrgId;
use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::{CallOptions, HostedSql, Outcome, RuntimeConfig, SqlTool};
use rand::RngExt;
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Mutex;

use crate::harness::{Backend, Owner, PgBouncer, caller, seed};
use crate::runs::args;

const CALLERS: usize = 64;
const PER_OWNER: usize = 60;

fn calls() -> u64 {
    std::env::var("HOSTED_SQL_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

struct Tools {
    get: SqlTool,
    range: SqlTool,
    all: SqlTool,
    join: SqlTool,
    foreign_count: SqlTool,
    cte: SqlTool,
    update: SqlTool,
    insert: SqlTool,
    delete: SqlTool,
    upsert: SqlTool,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    unavailable: AtomicU64,
    aborted: AtomicU64,
    killed: AtomicU64,
    rows_checked: AtomicU64,
    probes: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolation_randomized_calls_from_64_callers_through_pgbouncer_leak_nothing() {
    let backend = Backend::new().await;
    let org_a = backend.org_id;
    let org_b = OrgId::new();
    let owners = vec![
        Owner {
            org: org_a,
            customer: "c-1".into(),
        },
        Owner {
            org: org_a,
            customer: "c-2".into(),
        },
        Owner {
            org: org_b,
            customer: "c-1".into(),
        },
        Owner {
            org: org_b,
            customer: "c-3".into(),
        },
    ];
    seed(&backend, &owners, PER_OWNER).await;
    let seeded = (owners.len() * PER_OWNER) as i32;
    let bouncer = PgBouncer::start(&backend, 4, None).await;
    let cfg = backend.config_at(&bouncer.host_port(), 3_000, 1_000);
    let row = "id, org_id::text AS org, customer_id, payload";
    let tools = Arc::new(Tools {
        get: backend
            .tool(&cfg, "get", &format!("SELECT {row}, (SELECT gatehouse.subject()) AS subject FROM orders WHERE id = :id"), Access::Read, false)
            .await,
        range: backend
            .tool(&cfg, "range", &format!("SELECT {row} FROM orders WHERE id BETWEEN :lo AND :hi ORDER BY id"), Access::Read, false)
            .await,
        all: backend.tool(&cfg, "all", &format!("SELECT {row} FROM orders"), Access::Read, false).await,
        join: backend
            .tool(
                &cfg,
                "join",
                "SELECT o.id, o.org_id::text AS org, o.customer_id, o.payload, i.customer_id AS item_customer, i.org_id::text AS item_org
                   FROM orders o JOIN order_items i ON i.order_id = o.id",
                Access::Read,
                false,
            )
            .await,
        foreign_count: backend
            .tool(&cfg, "foreign_count", "SELECT count(*) AS n FROM orders WHERE payload <> :tag", Access::Read, false)
            .await,
        cte: backend
            .tool(&cfg, "cte", &format!("WITH mine AS (SELECT * FROM orders) SELECT {row} FROM mine WHERE id % 7 = :m"), Access::Read, false)
            .await,
        update: backend
            .tool(&cfg, "update", &format!("UPDATE orders SET note = :note WHERE id = :id RETURNING {row}"), Access::Write, false)
            .await,
        insert: backend
            .tool(
                &cfg,
                "insert",
                &format!("INSERT INTO orders (id, org_id, customer_id, payload, note) VALUES (:id, :org, :customer, :payload, :note) RETURNING {row}"),
                Access::Write,
                false,
            )
            .await,
        delete: backend
            .tool(&cfg, "delete", &format!("DELETE FROM orders WHERE id = :id RETURNING {row}"), Access::Write, false)
            .await,
        upsert: backend
            .tool(
                &cfg,
                "upsert",
                &format!(
                    "INSERT INTO orders (id, org_id, customer_id, payload) VALUES (:id, :org, :customer, :payload)
                     ON CONFLICT (id) DO UPDATE SET note = :note RETURNING {row}"
                ),
                Access::Write,
                false,
            )
            .await,
    });
    let runtime = HostedSql::new(RuntimeConfig {
        pool_size: 16,
        ..RuntimeConfig::default()
    });
    let total = calls();
    let issued = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    // Ids whose deletion a caller saw (the row check proves the deleted row was the caller's).
    let deleted: Arc<Mutex<HashSet<i32>>> = Arc::new(Mutex::new(HashSet::new()));
    let violations: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));

    // Probes: a connection through the same pooler, outside any call, never sees a context.
    let probe = {
        let (done, tally, violations, url) = (
            done.clone(),
            tally.clone(),
            violations.clone(),
            backend.dsn_at(&bouncer.host_port()),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    for _ in 0..20 {
                        let seen: Result<(Option<String>, Option<String>), _> = async {
                            let mut tx = conn.begin().await?;
                            let r = sqlx::query_as(
                                "SELECT current_setting('gatehouse.context', true), gatehouse.subject()",
                            )
                            .persistent(false)
                            .fetch_one(&mut *tx)
                            .await;
                            tx.rollback().await?;
                            r
                        }
                        .await;
                        if let Ok((ctx, subject)) = seen {
                            tally.probes.fetch_add(1, Ordering::Relaxed);
                            if ctx.as_deref().is_some_and(|c| !c.is_empty()) || subject.is_some() {
                                violations
                                    .lock()
                                    .await
                                    .push(format!("stale context seen by a probe: {ctx:?} {subject:?}"));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    conn.close().await.ok();
                }
            }
        })
    };
    // Killer: about one in a thousand calls, a server connection of the tool role dies.
    let killer = {
        let (done, tally, issued, db, role) = (
            done.clone(),
            tally.clone(),
            issued.clone(),
            backend.db.clone(),
            backend.tool_role.clone(),
        );
        tokio::spawn(async move {
            let mut admin = crate::harness::superuser(&db).await;
            let mut last = 0;
            while !done.load(Ordering::Relaxed) {
                let now = issued.load(Ordering::Relaxed);
                if now >= last + 1000 {
                    last = now;
                    let killed: Vec<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                          WHERE usename = '{role}' AND datname = '{db}' ORDER BY random() LIMIT 1"
                    )))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
                    tally.killed.fetch_add(killed.len() as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut workers = Vec::new();
    for i in 0..CALLERS {
        let owner = owners[i % owners.len()].clone();
        let others: Vec<Owner> = owners.iter().filter(|o| **o != owner).cloned().collect();
        let (runtime, cfg, tools, issued, tally, deleted, violations) = (
            runtime.clone(),
            cfg.clone(),
            tools.clone(),
            issued.clone(),
            tally.clone(),
            deleted.clone(),
            violations.clone(),
        );
        workers.push(tokio::spawn(async move {
            let subject = format!("caller-{i}");
            let me = caller(&owner, &subject);
            let tag = owner.tag();
            loop {
                if issued.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
                let (tool, arguments, abort_after) = {
                    let mut rng = rand::rng();
                    let id = rng.random_range(1..=seeded + 50);
                    let target = if rng.random_bool(0.7) { others[rng.random_range(0..others.len())].clone() } else { owner.clone() };
                    let (tool, arguments): (&SqlTool, Value) = match rng.random_range(0..10) {
                        0 => (&tools.get, json!({"id": id})),
                        1 => (&tools.range, json!({"lo": id, "hi": id + 12})),
                        2 => (&tools.all, json!({})),
                        3 => (&tools.join, json!({})),
                        4 => (&tools.foreign_count, json!({"tag": tag})),
                        5 => (&tools.cte, json!({"m": rng.random_range(0..7)})),
                        6 => (&tools.update, json!({"id": id, "note": format!("updated-by:{tag}")})),
                        7 => (
                            &tools.insert,
                            json!({"id": rng.random_range(100_000..10_000_000), "org": target.org.to_string(),
                                   "customer": target.customer, "payload": target.tag(), "note": format!("inserted-by:{tag}")}),
                        ),
                        8 => (&tools.delete, json!({"id": id})),
                        _ => (
                            &tools.upsert,
                            json!({"id": id, "org": target.org.to_string(), "customer": target.customer,
                                   "payload": target.tag(), "note": format!("updated-by:{tag}")}),
                        ),
                    };
                    let abort_after = rng.random_bool(0.01).then(|| Duration::from_micros(rng.random_range(0..3000)));
                    (tool, arguments, abort_after)
                };
                let arguments = args(arguments);
                let options = CallOptions::default();
                let call = runtime.run(&cfg, tool, &me, &arguments, &options);
                let outcome = match abort_after {
                    Some(after) => match tokio::time::timeout(after, call).await {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            tally.aborted.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    },
                    None => call.await,
                };
                match outcome {
                    Ok(Outcome::Done(done)) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        for row in &done.result.rows {
                            tally.rows_checked.fetch_add(1, Ordering::Relaxed);
                            let own = |k: &str, want: &str| row.get(k).and_then(Value::as_str).is_none_or(|v| v == want);
                            let org = owner.org.to_string();
                            if !(own("org", &org)
                                && own("customer_id", &owner.customer)
                                && own("payload", &tag)
                                && own("item_org", &org)
                                && own("item_customer", &owner.customer)
                                && own("subject", &subject))
                                || row.get("n").is_some_and(|n| n != 0)
                            {
                                violations.lock().await.push(format!("{} for {tag}: {row:?}", tool.name));
                            }
                            if tool.name == "delete"
                                && let Some(id) = row.get("id").and_then(Value::as_i64)
                            {
                                deleted.lock().await.insert(id as i32);
                            }
                        }
                    }
                    Ok(Outcome::ConfirmationRequired(_)) => violations.lock().await.push("unexpected confirmation".into()),
                    Err(e) if e.kind == gatehouse_hosted_sql::ErrorKind::Unavailable => {
                        tally.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    probe.await.unwrap();
    killer.await.unwrap();

    // The backend's own view, as a superuser: every write is on its writer's own rows.
    let mut admin = backend.admin().await;
    let bad_notes: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT id, payload, note FROM orders
          WHERE note IS NOT NULL AND note <> 'updated-by:' || payload AND note <> 'inserted-by:' || payload",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let bad_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE payload <> org_id::text || '/' || customer_id")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    let present: HashSet<i32> = sqlx::query_scalar::<_, i32>("SELECT id FROM orders WHERE id <= $1")
        .bind(seeded)
        .fetch_all(&mut admin)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let gone_unreported: Vec<i32> = {
        let deleted = deleted.lock().await;
        (1..=seeded)
            .filter(|id| !present.contains(id) && !deleted.contains(id))
            .collect()
    };
    let violations = violations.lock().await.clone();
    let t = &tally;
    eprintln!(
        "hosted SQL isolation: {total} calls, ok {}, refused {}, unavailable {}, aborted {}, backends killed {}, rows checked {}, probes {}",
        t.ok.load(Ordering::Relaxed),
        t.refused.load(Ordering::Relaxed),
        t.unavailable.load(Ordering::Relaxed),
        t.aborted.load(Ordering::Relaxed),
        t.killed.load(Ordering::Relaxed),
        t.rows_checked.load(Ordering::Relaxed),
        t.probes.load(Ordering::Relaxed),
    );
    assert!(
        violations.is_empty(),
        "{} foreign rows or stale contexts: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(
        bad_notes.is_empty(),
        "writes to another owner's rows: {bad_notes:?}"
    );
    assert_eq!(bad_rows, 0, "rows inserted for another owner");
    assert!(
        gone_unreported.is_empty(),
        "rows deleted without a caller of their owner seeing it: {gone_unreported:?}"
    );
    assert!(
        t.ok.load(Ordering::Relaxed) > total / 2,
        "too few calls succeeded to prove anything"
    );
    assert!(
        t.rows_checked.load(Ordering::Relaxed) > total,
        "too few rows returned to prove anything"
    );
    assert!(t.probes.load(Ordering::Relaxed) > 0);
    assert!(
        t.aborted.load(Ordering::Relaxed) > 0 && t.killed.load(Ordering::Relaxed) > 0,
        "the faults did not happen"
    );
    drop(admin);
    drop(bouncer);
    let _: Map<String, Value> = Map::new();
    backend.drop().await;
}
