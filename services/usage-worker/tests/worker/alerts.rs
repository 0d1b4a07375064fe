//! Usage alert emails at 80% and 100% of the allowance, received by a real SMTP server: owners
//! and admins with a verified address get each threshold once per period.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_db::GlobalTx;
use gatehouse_db::repos::users;
use gatehouse_events::{Bus, CallOutcome};
use gatehouse_test_support::TestDb;
use gatehouse_test_support::node_tools::MailServer;
use gatehouse_usage_worker::{Dependencies, UsageWorker};
use tokio_util::sync::CancellationToken;

use crate::helpers::{call, config, org, put_on_plan, temp_dir, unique, wait_for_usage};

async fn member(db: &TestDb, org: OrgId, email: &str, role: Role, verified: bool) {
    let mut tx = GlobalTx::begin(&db.db).await.unwrap();
    let user = users::create(&mut tx, email, None, "Member", verified)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut admin = db.admin().await;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(user.id)
        .bind(role.as_str())
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_are_mailed_once_per_period_to_owners_and_admins() {
    let smtp = MailServer::start().await;
    let db = TestDb::new().await;
    let org = org(&db, "alerted").await;
    member(&db, org, "admin@alerted.test", Role::Admin, true).await;
    member(&db, org, "unverified-admin@alerted.test", Role::Admin, false).await;
    member(&db, org, "viewer@alerted.test", Role::Viewer, true).await;
    // 10 calls included, no hard limit: alerts at 8 and 10 calls.
    put_on_plan(&db, org, 0, 10, 100, None).await;

    let spool = temp_dir("alerts-spool");
    let smtp_url = smtp.smtp_url();
    let cfg = Arc::new(config(
        &db,
        None,
        &spool,
        &unique("alerts"),
        &[
            ("mail.smtp_url", smtp_url.as_str()),
            ("control_api.public_url", "https://console.example.com"),
        ],
    ));
    let shutdown = CancellationToken::new();
    let bus = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();
    let worker = UsageWorker::build(Dependencies {
        cfg: cfg.clone(),
        db: db.db.clone(),
        notifier: bus.notifier.clone(),
        consumer: bus.consumer,
        quota: bus.quota.clone(),
    })
    .unwrap();
    let task = tokio::spawn(worker.run_until_stopped(shutdown.clone()));

    let mut sent = 0usize;
    let mut emit = |n: usize, outcome| {
        for _ in 0..n {
            bus.publisher.emit(call(org, sent, outcome));
            sent += 1;
        }
    };
    // 7 billable calls and refusals (free): 70%, no mail.
    emit(7, CallOutcome::Success);
    emit(5, CallOutcome::RateLimited);
    wait_for_usage(&db, 12, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        smtp.mails_to("owner@alerted.test").is_empty(),
        "no alert below 80%"
    );

    // The 8th: 80%.
    emit(1, CallOutcome::Success);
    let owner_mail = smtp.wait_for_nth("owner@alerted.test", 1).await;
    let admin_mail = smtp.wait_for_nth("admin@alerted.test", 1).await;
    for mail in [&owner_mail, &admin_mail] {
        assert!(
            mail.subject().contains("alerted has used 80%"),
            "{}",
            mail.subject()
        );
        assert!(mail.text.contains("8 of the 10 tool calls"), "{}", mail.text);
        assert_eq!(
            mail.link_containing("/usage").as_deref(),
            Some("https://console.example.com/orgs/alerted/usage")
        );
    }

    // 10 of 10: 100%, a second mail; more calls in the period send nothing more.
    emit(2, CallOutcome::Success);
    let owner_full = smtp.wait_for_nth("owner@alerted.test", 2).await;
    assert!(owner_full.subject().contains("100%"), "{}", owner_full.subject());
    smtp.wait_for_nth("admin@alerted.test", 2).await;
    emit(5, CallOutcome::Success);
    wait_for_usage(&db, 20, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        smtp.mails_to("owner@alerted.test").len(),
        2,
        "each threshold once per period"
    );
    assert_eq!(smtp.mails_to("admin@alerted.test").len(), 2);
    assert!(
        smtp.mails_to("viewer@alerted.test").is_empty(),
        "viewers are not mailed"
    );
    assert!(
        smtp.mails_to("unverified-admin@alerted.test").is_empty(),
        "unverified addresses are not mailed"
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
