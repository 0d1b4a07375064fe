//! Monthly invoices: created once per closed period, reproducible from the raw events,
//! unchanged by replays and late events (which go to the next invoice as a correction).

use std::time::Duration;

use gatehouse_core::ids::EventId;
use gatehouse_db::repos::invoices;
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_events::CallOutcome;
use gatehouse_test_support::TestDb;
use gatehouse_usage_worker::billing::{self, Period};
use gatehouse_usage_worker::ingest::write_batch;
use time::OffsetDateTime;

use crate::helpers::{call, org, put_on_plan};

const LATENESS: Duration = Duration::from_secs(86_400);
const SETTLED: Duration = Duration::from_secs(11 * 60);

/// Inserts `n` billable calls of `period` as if recorded at `recorded_at` (a late delivery).
async fn late_calls(
    db: &TestDb,
    org: gatehouse_core::ids::OrgId,
    period: Period,
    recorded_at: OffsetDateTime,
    n: usize,
) {
    let mut admin = db.admin().await;
    for _ in 0..n {
        sqlx::query(
            "INSERT INTO usage_events (org_id, id, source, occurred_at, recorded_at, outcome, units)
             VALUES ($1, $2, 'dp-late', $3, $4, 'success', 1)",
        )
        .bind(org)
        .bind(EventId::new())
        .bind(period.start_at() + Duration::from_secs(3600))
        .bind(recorded_at)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn closed_periods_are_invoiced_once_and_reproducibly() {
    let db = TestDb::new().await;
    let org = org(&db, "billing").await;
    // 10 € a month, 10 calls included, 5 € per 1,000 calls beyond (half a cent each).
    let plan = put_on_plan(&db, org, 1000, 10, 500, None).await;
    let now = OffsetDateTime::now_utc();
    let period = Period::containing(now);

    let events: Vec<_> = (0..30)
        .map(|n| {
            call(
                org,
                n,
                if n < 25 {
                    CallOutcome::Success
                } else {
                    CallOutcome::Denied
                },
            )
        })
        .collect();
    write_batch(&db.db, &events).await.unwrap();

    // Not closed yet: nothing to invoice.
    assert_eq!(billing::run_once(&db.db, LATENESS, now).await.unwrap().created, 0);
    let after_cutoff = period.cutoff(LATENESS) + SETTLED;
    let run = billing::run_once(&db.db, LATENESS, after_cutoff).await.unwrap();
    assert_eq!(run.created, 1);
    assert_eq!(
        billing::run_once(&db.db, LATENESS, after_cutoff)
            .await
            .unwrap()
            .created,
        0,
        "idempotent"
    );

    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let invoice = invoices::find_by_period(&mut tx, period.start)
        .await
        .unwrap()
        .expect("invoice");
    let lines = invoices::lines(&mut tx, invoice.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (invoice.plan_id.as_str(), invoice.status.as_str()),
        (plan.as_str(), "final")
    );
    assert_eq!(
        lines.iter().map(|l| l.quantity).collect::<Vec<_>>(),
        vec![1, 10, 15]
    );
    assert_eq!(
        lines.iter().map(|l| l.amount_cents).collect::<Vec<_>>(),
        vec![1000, 0, 8],
        "15 × 0.5 ¢ = 7.5 ¢ → 8 ¢"
    );
    assert_eq!(invoice.total_cents, 1008);

    // Replaying every event and recording late ones leaves the closed period's lines as they are.
    write_batch(&db.db, &events).await.unwrap();
    late_calls(
        &db,
        org,
        period,
        period.cutoff(LATENESS) + Duration::from_secs(60),
        4,
    )
    .await;
    let (stored, recomputed) = billing::recompute(&db.db, org, period, LATENESS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, lines);
    assert_eq!(
        recomputed, stored,
        "recomputing a closed period gives identical lines"
    );

    // The late calls appear on the next invoice as a correction: with the 25 counted, 29 calls
    // make 19 beyond the included 10 (9.5 ¢ → 10 ¢) instead of 15 (8 ¢).
    let next = period.next();
    assert_eq!(
        billing::run_once(&db.db, LATENESS, next.cutoff(LATENESS) + SETTLED)
            .await
            .unwrap()
            .created,
        1
    );
    let (next_lines, next_recomputed) = billing::recompute(&db.db, org, next, LATENESS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next_lines, next_recomputed);
    let correction = next_lines.last().unwrap();
    assert!(correction.description.starts_with("Correction"), "{correction:?}");
    assert_eq!((correction.quantity, correction.amount_cents), (4, 2));
    assert_eq!(next_lines[1].quantity, 0, "no calls in the next period itself");
}
