//! The retention sweep applies each org's plan: orgs on a plan with `retention_days` lose what
//! is older, others lose nothing, and both chains still verify.

use gatehouse_db::repos::audit;
use gatehouse_db::{Actor, NewAuditEvent, OrgScope, TenantTx};
use gatehouse_test_support::TestDb;
use gatehouse_usage_worker::retention;

use crate::helpers::{org, set_plan};

#[tokio::test]
async fn the_sweep_prunes_only_orgs_whose_plan_sets_a_retention() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let short = org(&db, "short").await;
    let forever = org(&db, "forever").await;
    let mut admin = db.admin().await;
    sqlx::query(
        "INSERT INTO plans (id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls, retention_days)
         VALUES ('week', 'Week', 0, 0, 0, 7)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    set_plan(&db, short, "week").await;
    for o in [short, forever] {
        let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(o)).await.unwrap();
        let events: Vec<_> = (0..(retention::ENTRIES_PER_PASS as usize + 3))
            .map(|_| NewAuditEvent::control(Actor::system("test"), "thing.changed"))
            .collect();
        audit::append(&mut tx, &events).await.unwrap();
        tx.commit().await.unwrap();
    }
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET recorded_at = now() - interval '8 days'")
        .execute(&mut admin)
        .await
        .unwrap();

    // More than one pass's worth: the sweep goes on until nothing more is due.
    let sweep = retention::sweep_once(&db.db).await.unwrap();
    let created = retention::ENTRIES_PER_PASS as i64 + 3;
    assert_eq!((sweep.orgs, sweep.audit_entries), (1, created), "{sweep:?}");
    for (o, pruned) in [(short, created), (forever, 0)] {
        let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(o)).await.unwrap();
        let v = audit::verify_chain(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((v.first_broken_seq, v.head_mismatch), (None, false), "{v:?}");
        assert_eq!(v.pruned_through_seq, pruned);
    }
    assert_eq!(retention::sweep_once(&db.db).await.unwrap().audit_entries, 0);
}
