//! Retention: the pruning function removes only what the org's plan lets go, as a prefix of the
//! audit chain that stays verifiable, and only usage an invoice already counted. The services'
//! role still cannot delete audit entries itself.

use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::audit::{self, AuditQuery};
use gatehouse_db::{Actor, NewAuditEvent, OrgScope, TenantTx};
use gatehouse_test_support::TestDb;
use serde_json::json;

use crate::seed::seed_org;

async fn admin_exec(db: &TestDb, sql: &str, org: OrgId) {
    let mut admin = db.admin().await;
    // The append-only guard refuses even the owner; a test backdates entries around it.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(org)
        .execute(&mut admin)
        .await
        .unwrap();
}

async fn retention(db: &TestDb, org: OrgId, max: i32) -> audit::Pruned {
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let pruned = audit::apply_retention(&mut tx, max).await.unwrap();
    tx.commit().await.unwrap();
    pruned
}

async fn verify(db: &TestDb, org: OrgId) -> audit::ChainVerification {
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let v = audit::verify_chain(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    v
}

#[tokio::test]
async fn retention_prunes_a_verifiable_prefix_and_only_invoiced_usage() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let kept = seed_org(&db.db, "keep-all").await.id;
    let org = seed_org(&db.db, "ten-days").await.id;
    let mut admin = db.admin().await;
    sqlx::query(
        "INSERT INTO plans (id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls, retention_days)
         VALUES ('ten-days', 'Ten days', 0, 0, 0, 10)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("UPDATE orgs SET plan_id = 'ten-days' WHERE id = $1")
        .bind(org)
        .execute(&mut admin)
        .await
        .unwrap();
    for o in [kept, org] {
        let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(o)).await.unwrap();
        let events: Vec<_> = (0..12)
            .map(|i| NewAuditEvent::control(Actor::system("test"), "thing.changed").details(json!({"i": i})))
            .collect();
        audit::append(&mut tx, &events).await.unwrap();
        tx.commit().await.unwrap();
    }
    // seq 1 is the seed's entry, 2..=13 the twelve: the first 8 were recorded 30 days ago (and
    // seq 10, recorded before the cutoff but after a kept entry, must stay: only a prefix goes).
    for o in [kept, org] {
        admin_exec(
            &db,
            "UPDATE audit_events SET recorded_at = now() - interval '30 days'
              WHERE org_id = $1 AND (seq <= 8 OR seq = 10)",
            o,
        )
        .await;
    }

    // Bounded passes: 5 entries, then the rest of the prefix (seq 6..=8), then nothing.
    let first = retention(&db, org, 5).await;
    assert_eq!((first.audit_entries, first.through_seq), (5, 5));
    let second = retention(&db, org, 5).await;
    assert_eq!((second.audit_entries, second.through_seq), (3, 8));
    let third = retention(&db, org, 5).await;
    assert_eq!((third.audit_entries, third.through_seq), (0, 8));

    let check = verify(&db, org).await;
    assert_eq!(check.first_broken_seq, None, "{check:?}");
    assert!(!check.head_mismatch, "{check:?}");
    assert_eq!(check.pruned_through_seq, 8);
    // 13 - 8 kept, plus one `audit.pruned` entry per pass that removed something.
    assert_eq!(check.entries, 5 + 2);
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let rows = audit::list(
        &mut tx,
        &AuditQuery {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let pruned: Vec<_> = rows.iter().filter(|r| r.event.action == "audit.pruned").collect();
    assert_eq!(pruned.len(), 2);
    assert!(
        rows.iter().any(|r| r.seq == 10),
        "an old entry after a kept one stays"
    );

    // Tampering with a kept entry is still detected after pruning.
    admin_exec(
        &db,
        "UPDATE audit_events SET details = '{\"i\": 999}' WHERE org_id = $1 AND seq = 11",
        org,
    )
    .await;
    assert_eq!(verify(&db, org).await.first_broken_seq, Some(11));

    // An org whose plan keeps everything loses nothing.
    assert_eq!(retention(&db, kept, 5).await, audit::Pruned::default());
    assert_eq!(verify(&db, kept).await.entries, 13);

    // The services' role cannot delete entries, even with the pruning marker set.
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(kept))
        .await
        .unwrap();
    sqlx::query("SELECT set_config('gatehouse.pruning', 'on', true)")
        .execute(tx.conn())
        .await
        .unwrap();
    let refused = sqlx::query("DELETE FROM audit_events WHERE seq = 2")
        .execute(tx.conn())
        .await;
    assert!(refused.is_err(), "the app role deleted an audit entry");
    drop(tx);

    // Usage: only raw events an invoice counted (invoiced period, recorded before the invoice)
    // and older than the cutoff go; a late event of that period, and recent ones, stay.
    admin_exec(&db, "DELETE FROM invoice_lines WHERE org_id = $1", org).await;
    admin_exec(&db, "DELETE FROM invoices WHERE org_id = $1", org).await;
    admin_exec(
        &db,
        "INSERT INTO invoices (id, org_id, period_start, period_end, plan_id, status, created_at)
         VALUES (gen_random_uuid(), $1, (now() - interval '60 days')::date, (now() - interval '20 days')::date,
                 'ten-days', 'final', now() - interval '19 days')",
        org,
    )
    .await;
    for (occurred, recorded) in [
        ("40 days", "40 days"),
        ("39 days", "39 days"),
        ("38 days", "5 days"),
        ("2 days", "2 days"),
    ] {
        admin_exec(
            &db,
            &format!(
                "INSERT INTO usage_events (org_id, id, source, occurred_at, recorded_at, outcome)
                 VALUES ($1, gen_random_uuid(), 'data', now() - interval '{occurred}', now() - interval '{recorded}', 'success')"
            ),
            org,
        )
        .await;
    }
    let usage = retention(&db, org, 5).await;
    let mut admin = db.admin().await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT (now() - occurred_at)::text FROM usage_events WHERE org_id = $1 ORDER BY occurred_at",
    )
    .bind(org)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    // The late event (38 days), the recent one (2 days) and the seed's own (now) are left.
    assert_eq!(left.len(), 3, "{usage:?} {left:?}");
    assert!(left[0].starts_with("38 days"), "{left:?}");
    assert_eq!(usage.usage_rows, 2, "{usage:?}");
}
