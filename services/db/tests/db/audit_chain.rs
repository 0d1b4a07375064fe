//! The audit hash chain: appends chain, redeliveries do not fork it, and tampering is detected.

use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::audit::{self, AuditQuery};
use gatehouse_db::{Actor, NewAuditEvent, OrgScope, TenantTx};
use gatehouse_test_support::TestDb;
use serde_json::json;

use crate::seed::seed_org;

fn event(i: usize) -> NewAuditEvent {
    NewAuditEvent::control(Actor::system("test"), "thing.changed")
        .target("thing", i)
        .details(json!({"i": i, "nested": {"b": 2, "a": [1, 2.5, "x"]}}))
}

#[tokio::test]
async fn chain_verifies_and_replays_do_not_fork_it() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let org = seed_org(&db.db, "chain-a").await.id;
    let scope = OrgScope::authorized(org);
    let events: Vec<_> = (0..50).map(event).collect();

    let mut tx = TenantTx::begin(&db.db, &scope).await.unwrap();
    assert_eq!(audit::append(&mut tx, &events[..30]).await.unwrap(), 30);
    tx.commit().await.unwrap();
    // Redelivery of the first 30 plus 20 new ones: only the new ones are appended.
    let mut tx = TenantTx::begin(&db.db, &scope).await.unwrap();
    assert_eq!(audit::append(&mut tx, &events).await.unwrap(), 20);
    assert_eq!(audit::append(&mut tx, &events).await.unwrap(), 0);
    let check = audit::verify_chain(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(check.entries, 51, "50 events + the seed's one");
    assert_eq!(check.first_broken_seq, None);
    assert!(!check.head_mismatch);

    // Another org's chain is separate and invisible.
    let other = seed_org(&db.db, "chain-b").await.id;
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(other))
        .await
        .unwrap();
    let rows = audit::list(
        &mut tx,
        &AuditQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    tx.commit().await.unwrap();
}

/// Appends 20 events to a fresh org, applies `tamper` as the schema owner (with the append-only
/// triggers disabled, as only an attacker with owner rights could), and verifies as the services.
async fn verify_after(db: &TestDb, slug: &str, tamper: &str) -> audit::ChainVerification {
    let org: OrgId = seed_org(&db.db, slug).await.id;
    let scope = OrgScope::authorized(org);
    let mut tx = TenantTx::begin(&db.db, &scope).await.unwrap();
    audit::append(&mut tx, &(0..20).map(event).collect::<Vec<_>>())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut admin = db.admin().await;
    sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER USER")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(tamper.to_owned()))
        .bind(org)
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_events ENABLE TRIGGER USER")
        .execute(&mut admin)
        .await
        .unwrap();
    let mut tx = TenantTx::begin(&db.db, &scope).await.unwrap();
    let check = audit::verify_chain(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    check
}

#[tokio::test]
async fn tampering_is_detected() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    // seq 1 is the seed's event; the 20 appended are seq 2..=21.
    let changed = verify_after(
        &db,
        "t-detail",
        "UPDATE audit_events SET details = '{\"i\": 999}' WHERE org_id = $1 AND seq = 7",
    )
    .await;
    assert_eq!(changed.first_broken_seq, Some(7));
    let relabelled = verify_after(
        &db,
        "t-action",
        "UPDATE audit_events SET action = 'nothing.happened' WHERE org_id = $1 AND seq = 3",
    )
    .await;
    assert_eq!(relabelled.first_broken_seq, Some(3));
    let deleted = verify_after(
        &db,
        "t-delete",
        "DELETE FROM audit_events WHERE org_id = $1 AND seq = 12",
    )
    .await;
    assert_eq!(deleted.first_broken_seq, Some(13));
    let swapped = verify_after(
        &db,
        "t-swap",
        "UPDATE audit_events a SET details = b.details FROM audit_events b
          WHERE a.org_id = $1 AND b.org_id = $1 AND ((a.seq = 5 AND b.seq = 6) OR (a.seq = 6 AND b.seq = 5))",
    )
    .await;
    assert_eq!(swapped.first_broken_seq, Some(5));
    let truncated = verify_after(
        &db,
        "t-tail",
        "DELETE FROM audit_events WHERE org_id = $1 AND seq > 18",
    )
    .await;
    assert_eq!(truncated.first_broken_seq, None, "what is left still chains");
    assert!(truncated.head_mismatch, "the chain head exposes the missing tail");
    let untouched = verify_after(&db, "t-none", "SELECT $1::uuid").await;
    assert_eq!(untouched.first_broken_seq, None);
    assert!(!untouched.head_mismatch);
}
