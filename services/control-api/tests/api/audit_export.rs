//! The audit export streams: a trail far larger than any buffer is exported complete and in
//! order, and its first lines reach the client while the export's read is still going on (the
//! rows are not collected before the answer starts).

use std::time::{Duration, Instant};

use gatehouse_test_support::testdb::TEST_SERVICE_ROLE;
use serde_json::Value;

use crate::helpers::TestApp;

/// Rows in the trail: about 40 MB of JSON Lines, more than socket buffers hold.
const ROWS: i64 = 60_000;

/// Whether the export's transaction (the service role's, last statement on `audit_events`) is
/// still open in the test database.
async fn export_transaction_open(app: &TestApp) -> bool {
    let mut admin = app.db.admin().await;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = $1 AND usename = $2 AND xact_start IS NOT NULL
            AND query LIKE '%FROM audit_events%'",
    )
    .bind(&app.db.name)
    .bind(TEST_SERVICE_ROLE)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    open > 0
}

#[tokio::test]
async fn audit_export_streams_a_large_trail_in_order() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@export.test").await;
    let (org, org_id) = app.org(&owner, "export").await;
    let mut admin = app.db.admin().await;
    sqlx::query(
        "INSERT INTO audit_events (org_id, seq, id, occurred_at, source, actor_type, action,
                                   outcome, details, prev_hash, entry_hash)
         SELECT $1, base.seq + g, gen_random_uuid(), now() + g * interval '1 ms', 'control',
                'system', 'test.export', 'success',
                jsonb_build_object('n', g, 'padding', repeat('x', 500)), '\\x00', '\\x00'
           FROM generate_series(1, $2::bigint) g,
                (SELECT coalesce(max(seq), 0) AS seq FROM audit_events WHERE org_id = $1) base",
    )
    .bind(org_id)
    .bind(ROWS)
    .execute(&mut admin)
    .await
    .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&mut admin)
        .await
        .unwrap();

    let mut response = owner
        .get(&format!("/api/v1/orgs/{org}/audit/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.chunk().await.unwrap().expect("a first chunk").to_vec();
    // The client holds off reading: the export is still reading the trail, its transaction open.
    // A buffered export would have read everything, and ended its transaction, before answering.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut open = export_transaction_open(&app).await;
    while !open && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = export_transaction_open(&app).await;
    }
    assert!(
        open,
        "the first bytes arrived only after the whole trail had been read"
    );
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).unwrap();
    let seqs: Vec<i64> = text
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("every line is an event");
            event["seq"].as_i64().expect("seq")
        })
        .collect();
    assert_eq!(seqs.len() as i64, total, "every event is exported once");
    assert!(
        seqs.iter().zip(1..).all(|(seq, expected)| *seq == expected),
        "oldest first, none missing"
    );
    assert!(text.contains("\"padding\""));
    assert!(
        !export_transaction_open(&app).await,
        "the export's transaction ends with it"
    );
}
