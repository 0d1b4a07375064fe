//! A service token's last-used time follows the calls the dataplane accepted it for: the latest
//! one wins, and redelivered or older events never move it back.

use gatehouse_core::ids::ServiceTokenId;
use gatehouse_db::repos::{endpoints, service_tokens};
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_events::{BusMessage, CallOutcome, SubjectKind};
use gatehouse_test_support::TestDb;
use gatehouse_usage_worker::ingest::write_batch;
use time::{Duration, OffsetDateTime};

use crate::helpers::{call, org};

fn token_call(org: gatehouse_core::ids::OrgId, token: ServiceTokenId, at: OffsetDateTime) -> BusMessage {
    let BusMessage::Call(mut event) = call(org, 0, CallOutcome::Success) else {
        unreachable!()
    };
    event.subject = format!("service_token:{token}");
    event.subject_kind = SubjectKind::ServiceToken;
    event.occurred_at = at;
    BusMessage::Call(event)
}

async fn last_used(db: &TestDb, org: gatehouse_core::ids::OrgId) -> Option<OffsetDateTime> {
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let tokens = service_tokens::list(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    tokens[0].last_used_at
}

#[tokio::test]
async fn service_token_last_used_time_follows_accepted_calls() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let org = org(&db, "tokens").await;
    let token = ServiceTokenId::new();
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    let endpoint = endpoints::create(&mut tx, "ci", "CI", "", &serde_json::json!({}))
        .await
        .unwrap();
    service_tokens::create(
        &mut tx,
        &service_tokens::NewServiceToken {
            id: token,
            endpoint_id: endpoint.id,
            name: "ci",
            token_prefix: "ghs_x",
            token_hash: &[1, 2, 3],
            scopes: &[],
            created_by: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(last_used(&db, org).await, None, "never used yet");

    // Microsecond precision, as PostgreSQL keeps it.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let later = token_call(org, token, now);
    let earlier = token_call(org, token, now - Duration::minutes(5));
    write_batch(&db.db, &[earlier.clone(), later.clone()])
        .await
        .unwrap();
    assert_eq!(last_used(&db, org).await, Some(now));

    // Redelivery and an older event change nothing; a newer one moves it forward.
    write_batch(
        &db.db,
        &[later, earlier, token_call(org, token, now - Duration::hours(1))],
    )
    .await
    .unwrap();
    assert_eq!(last_used(&db, org).await, Some(now));
    let newer = now + Duration::seconds(30);
    write_batch(&db.db, &[token_call(org, token, newer)])
        .await
        .unwrap();
    assert_eq!(last_used(&db, org).await, Some(newer));
}
