//! Tenant isolation under concurrency: 32 pooled connections interleave reads and writes of 3
//! orgs on every tenant table for 12,000 operations, some transactions aborted mid-way. Every row
//! read belongs to the caller's org; every write aimed at another org affects 0 rows or is
//! refused; a connection checked out after any operation carries no tenant; with no tenant set,
//! every tenant table is empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse_core::config::DatabaseConfig;
use gatehouse_core::ids::OrgId;
use gatehouse_db::{Db, GlobalTx, OrgScope, TenantTx};
use gatehouse_test_support::TestDb;
use gatehouse_test_support::testdb::database_config;
use rand::RngExt;
use sqlx::{AssertSqlSafe, Row};

use crate::catalog::tenant_tables;
use crate::seed::{SEEDED_TABLES, seed_org};

const ORGS: usize = 3;
const WORKERS: usize = 32;
const OPS_PER_WORKER: usize = 375; // 12,000 operations in all

#[derive(Default)]
struct Tally {
    reads: AtomicUsize,
    rows_read: AtomicUsize,
    foreign_writes_refused: AtomicUsize,
    foreign_writes_zero_rows: AtomicUsize,
    aborted: AtomicUsize,
    context_probes: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_cross_tenant_reads_or_writes_under_concurrency() {
    gatehouse_test_support::init();
    let test_db = TestDb::new().await;
    let mut admin = test_db.admin().await;

    // Every tenant table of the schema is covered by the seeder (so by this test).
    let catalog = tenant_tables(&mut admin).await;
    let missing: Vec<_> = catalog
        .iter()
        .filter(|t| !SEEDED_TABLES.contains(&t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "tenant tables not covered by the isolation seeder: {missing:?} (add them to tests/db/seed.rs)"
    );

    let mut orgs = Vec::new();
    for i in 0..ORGS {
        orgs.push(
            seed_org(
                &test_db.db,
                &format!("iso-{i}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
            )
            .await
            .id,
        );
    }
    // A larger pool than the default, as the services would have under load.
    let mut cfg: DatabaseConfig = database_config(&test_db.service_url);
    cfg.max_connections = WORKERS as u32;
    let db = Db::connect(&cfg).await.unwrap();

    let expected = counts_by_org(&mut admin, &catalog).await;
    for org in &orgs {
        for table in &catalog {
            assert!(
                expected.get(&(*org, table.clone())).copied().unwrap_or(0) >= 1,
                "seeder left {table} empty for {org}"
            );
        }
    }

    let tally = Arc::new(Tally::default());
    let catalog = Arc::new(catalog);
    let expected = Arc::new(expected);
    let orgs = Arc::new(orgs);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (db, tally, catalog, expected, orgs) = (
            db.clone(),
            tally.clone(),
            catalog.clone(),
            expected.clone(),
            orgs.clone(),
        );
        workers.push(tokio::spawn(async move {
            for _ in 0..OPS_PER_WORKER {
                one_operation(&db, &tally, &catalog, &expected, &orgs).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker panicked: an isolation assertion failed");
    }

    // Nothing any worker did changed any org's rows.
    let after = counts_by_org(&mut admin, &catalog).await;
    assert_eq!(&after, expected.as_ref(), "row counts per org and table changed");

    let total = tally.reads.load(Ordering::Relaxed)
        + tally.foreign_writes_refused.load(Ordering::Relaxed)
        + tally.foreign_writes_zero_rows.load(Ordering::Relaxed)
        + tally.aborted.load(Ordering::Relaxed)
        + tally.context_probes.load(Ordering::Relaxed);
    assert!(total >= 10_000, "only {total} operations ran");
    assert!(tally.rows_read.load(Ordering::Relaxed) > 0);
    assert!(tally.foreign_writes_refused.load(Ordering::Relaxed) > 0);
    assert!(tally.aborted.load(Ordering::Relaxed) > 0);
}

async fn counts_by_org(admin: &mut sqlx::PgConnection, tables: &[String]) -> BTreeMap<(OrgId, String), i64> {
    let mut counts = BTreeMap::new();
    for table in tables {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT org_id, count(*) FROM {table} GROUP BY org_id"
        )))
        .fetch_all(&mut *admin)
        .await
        .unwrap();
        for row in rows {
            counts.insert(
                (OrgId::from_uuid(row.get(0)), table.clone()),
                row.get::<i64, _>(1),
            );
        }
    }
    counts
}

async fn one_operation(
    db: &Db,
    tally: &Tally,
    tables: &[String],
    expected: &BTreeMap<(OrgId, String), i64>,
    orgs: &[OrgId],
) {
    let (me, other, table, op) = {
        let mut rng = rand::rng();
        let me = orgs[rng.random_range(0..orgs.len())];
        let other = loop {
            let o = orgs[rng.random_range(0..orgs.len())];
            if o != me {
                break o;
            }
        };
        (
            me,
            other,
            tables[rng.random_range(0..tables.len())].clone(),
            rng.random_range(0..100u32),
        )
    };
    match op {
        // No tenant context: the pooled connection carries none, and tenant tables are empty.
        0..=9 => {
            let mut tx = GlobalTx::begin(db).await.unwrap();
            let leaked: Option<String> = sqlx::query_scalar("SELECT current_setting('app.org_id', true)")
                .fetch_one(tx.conn())
                .await
                .unwrap();
            assert!(
                leaked.as_deref().unwrap_or("").is_empty(),
                "a pooled connection carried tenant {leaked:?}"
            );
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(tx.conn())
                .await
                .unwrap();
            assert_eq!(n, 0, "{table} returned rows with no tenant set");
            tx.commit().await.unwrap();
            tally.context_probes.fetch_add(1, Ordering::Relaxed);
        }
        // Read everything visible: only my rows, all of them.
        10..=49 => {
            let mut tx = TenantTx::begin(db, &OrgScope::authorized(me)).await.unwrap();
            let ids: Vec<uuid::Uuid> =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT org_id FROM {table}")))
                    .fetch_all(tx.conn())
                    .await
                    .unwrap();
            assert!(
                ids.iter().all(|id| *id == me.into_uuid()),
                "{table}: read another org's row"
            );
            assert_eq!(
                ids.len() as i64,
                expected[&(me, table.clone())],
                "{table}: wrong number of rows for my org"
            );
            tx.commit().await.unwrap();
            tally.reads.fetch_add(1, Ordering::Relaxed);
            tally.rows_read.fetch_add(ids.len(), Ordering::Relaxed);
        }
        // Update or delete another org's rows by their org id: nothing matches.
        50..=64 => {
            let mut tx = TenantTx::begin(db, &OrgScope::authorized(me)).await.unwrap();
            let sql = if op % 2 == 0 {
                format!("UPDATE {table} SET org_id = org_id WHERE org_id = $1")
            } else {
                format!("DELETE FROM {table} WHERE org_id = $1")
            };
            match sqlx::query(AssertSqlSafe(sql))
                .bind(other)
                .execute(tx.conn())
                .await
            {
                Ok(done) => {
                    assert_eq!(
                        done.rows_affected(),
                        0,
                        "{table}: a write reached another org's rows"
                    );
                    tally.foreign_writes_zero_rows.fetch_add(1, Ordering::Relaxed);
                }
                // audit_events refuses UPDATE/DELETE outright (privileges).
                Err(_) => {
                    tally.foreign_writes_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            tx.rollback().await.unwrap();
        }
        // Insert a copy of one of my rows re-labelled as another org's, or move my row there:
        // refused (WITH CHECK, privileges or foreign keys).
        65..=84 => {
            let mut tx = TenantTx::begin(db, &OrgScope::authorized(me)).await.unwrap();
            let sql = if op % 2 == 0 {
                format!(
                    "INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, to_jsonb(x) || jsonb_build_object('org_id', $1::uuid))).* FROM {table} x LIMIT 1"
                )
            } else {
                format!("UPDATE {table} SET org_id = $1")
            };
            let result = sqlx::query(AssertSqlSafe(sql))
                .bind(other)
                .execute(tx.conn())
                .await;
            assert!(
                result.is_err(),
                "{table}: a row was written into another org: {result:?}"
            );
            tx.rollback().await.unwrap();
            tally.foreign_writes_refused.fetch_add(1, Ordering::Relaxed);
        }
        // Aborted mid-way: a tenant transaction dropped without commit or rollback after a
        // read, or failed by an error inside it. The next user of the connection must not see it.
        _ => {
            let mut tx = TenantTx::begin(db, &OrgScope::authorized(me)).await.unwrap();
            let _: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(tx.conn())
                .await
                .unwrap();
            if op % 2 == 0 {
                let _ = sqlx::query("SELECT 1/0").execute(tx.conn()).await;
            }
            drop(tx);
            tally.aborted.fetch_add(1, Ordering::Relaxed);
        }
    }
}
