//! The audit hash chain: appends chain, redeliveries do not fork it, and tampering is detected.

use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::audit::{self, AuditQuery, SeqRange};
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
    let org = tampered_org(db, slug, tamper).await;
    verify_range(db, org, None, None).await
}

/// A fresh org with 21 entries (the seed's and 20 appended) after `tamper`, run as the schema
/// owner with the append-only triggers disabled, as only an attacker with owner rights could.
async fn tampered_org(db: &TestDb, slug: &str, tamper: &str) -> OrgId {
    let org: OrgId = seed_org(&db.db, slug).await.id;
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
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
    org
}

/// Verifies `from..=to` of the org's chain as the services.
async fn verify_range(
    db: &TestDb,
    org: OrgId,
    from_seq: Option<i64>,
    to_seq: Option<i64>,
) -> audit::ChainVerification {
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let check = if from_seq.is_none() && to_seq.is_none() {
        audit::verify_chain(&mut tx).await.unwrap()
    } else {
        audit::verify_chain_range(&mut tx, SeqRange { from_seq, to_seq })
            .await
            .unwrap()
    };
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

/// `(entries, first_broken_seq, head_mismatch, from_seq, to_seq)` of a verification.
fn summary(v: &audit::ChainVerification) -> (i64, Option<i64>, bool, i64, i64) {
    (
        v.entries,
        v.first_broken_seq,
        v.head_mismatch,
        v.from_seq,
        v.to_seq,
    )
}

#[tokio::test]
async fn a_range_verifies_from_the_stored_hash_before_it_and_finds_only_its_own_breaks() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    // Entries 1..=21; entry 7's content is changed (its stored hashes are not).
    let edited = tampered_org(
        &db,
        "r-edit",
        "UPDATE audit_events SET details = '{\"i\": 999}' WHERE org_id = $1 AND seq = 7",
    )
    .await;
    let v = |from, to| verify_range(&db, edited, from, to);
    assert_eq!(summary(&v(None, None).await), (21, Some(7), false, 1, 21));
    assert_eq!(
        summary(&v(Some(6), Some(10)).await),
        (5, Some(7), false, 6, 10),
        "inside the range"
    );
    assert_eq!(summary(&v(Some(7), Some(7)).await), (1, Some(7), false, 7, 7));
    assert_eq!(
        summary(&v(Some(2), Some(6)).await),
        (5, None, false, 2, 6),
        "after the range"
    );
    assert_eq!(
        summary(&v(Some(8), None).await),
        (14, None, false, 8, 21),
        "before the range: entry 8 links to the hash stored for entry 7"
    );
    assert_eq!(
        summary(&v(Some(15), Some(100)).await),
        (7, None, false, 15, 21),
        "the end stops at the head"
    );
    assert_eq!(
        summary(&v(Some(30), None).await),
        (0, None, false, 30, 21),
        "nothing to check"
    );

    // Entry 12 deleted: a range ending at it misses it, one starting after it cannot link.
    let deleted = tampered_org(
        &db,
        "r-delete",
        "DELETE FROM audit_events WHERE org_id = $1 AND seq = 12",
    )
    .await;
    let v = |from, to| verify_range(&db, deleted, from, to);
    assert_eq!(summary(&v(None, None).await), (20, Some(13), false, 1, 21));
    assert_eq!(
        summary(&v(Some(10), Some(12)).await),
        (2, Some(12), false, 10, 12)
    );
    assert_eq!(
        summary(&v(Some(13), Some(15)).await),
        (3, Some(13), false, 13, 15)
    );
    assert_eq!(summary(&v(Some(14), None).await), (8, None, false, 14, 21));
    assert_eq!(summary(&v(Some(2), Some(11)).await), (10, None, false, 2, 11));

    // The tail deleted: only a range reaching the head sees it.
    let cut = tampered_org(
        &db,
        "r-tail",
        "DELETE FROM audit_events WHERE org_id = $1 AND seq > 18",
    )
    .await;
    assert_eq!(
        summary(&verify_range(&db, cut, Some(10), None).await),
        (9, None, true, 10, 21)
    );
    assert_eq!(
        summary(&verify_range(&db, cut, Some(10), Some(18)).await),
        (9, None, false, 10, 18)
    );
    assert_eq!(
        summary(&verify_range(&db, cut, Some(10), Some(20)).await),
        (9, Some(19), false, 10, 20),
        "entries missing inside a range that stops before the head"
    );

    // Retention removed entries 1..=5 (as its function does: the head keeps entry 5's hash); a
    // range over them starts at the first kept entry, which links to that hash.
    let pruned = tampered_org(
        &db,
        "r-pruned",
        "WITH gone AS (DELETE FROM audit_events WHERE org_id = $1 AND seq <= 5 RETURNING seq, entry_hash)
         UPDATE audit_chain_heads SET pruned_through_seq = 5,
                pruned_through_hash = (SELECT entry_hash FROM gone WHERE seq = 5)
          WHERE org_id = $1",
    )
    .await;
    let v = |from, to| verify_range(&db, pruned, from, to);
    let all = v(None, None).await;
    assert_eq!(
        (summary(&all), all.pruned_through_seq),
        ((16, None, false, 6, 21), 5)
    );
    assert_eq!(summary(&v(Some(1), Some(8)).await), (3, None, false, 6, 8));
    assert_eq!(
        summary(&v(Some(2), Some(4)).await),
        (0, None, false, 6, 4),
        "only removed entries"
    );
}
