//! Metering across services in single-node mode (as `gatehouse up` runs): events emitted on the
//! dataplane side reach the audit trail and usage through the worker, the control API shows
//! them, and an org crossing its hard limit is refused through the shared quota state.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use gatehouse_control_api::auth::session_cookie_name;
use gatehouse_core::ids::{EndpointId, EventId, OrgId};
use gatehouse_events::{BusMessage, CallEvent, CallOutcome, SubjectKind};
use serde_json::Value;

use gatehouse_test_support::console::signed_in_owner;

use crate::platform::Platform;

/// An org owned by a signed-in user; returns (slug, org id, session cookie).
async fn owner_and_org(platform: &Platform, slug: &str) -> (String, OrgId, String) {
    let owner = signed_in_owner(&platform.db.db, &format!("owner@{slug}.test"), slug).await;
    (
        slug.to_owned(),
        owner.org_id,
        format!("{}={}", session_cookie_name(true), owner.session_token),
    )
}

fn call(org: OrgId, endpoint: EndpointId, n: usize, outcome: CallOutcome) -> BusMessage {
    BusMessage::Call(CallEvent {
        id: EventId::new(),
        org_id: org,
        occurred_at: time::OffsetDateTime::now_utc(),
        source: "dataplane-e2e".into(),
        endpoint_id: Some(endpoint),
        server_id: None,
        method: "tools/call".into(),
        tool: Some(format!("orders__tool_{}", n % 2)),
        subject: "user-1".into(),
        subject_kind: SubjectKind::User,
        client_id: Some("claude-code".into()),
        outcome,
        error_code: None,
        latency_ms: 7,
        bytes_in: 50,
        bytes_out: 500,
        args_hash: Some("abcd".into()),
        arguments: None,
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        user_agent: Some("e2e".into()),
        confirmation: None,
    })
}

async fn get_json(platform: &Platform, cookie: &str, path: &str) -> Value {
    let res = platform
        .http
        .get(format!("{}{path}", platform.control_api))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn emitted_events_become_audit_and_usage_visible_in_the_api() {
    let platform = Platform::start().await;
    let (slug, org, cookie) = owner_and_org(&platform, "metered").await;
    let endpoint = EndpointId::new();
    for n in 0..30 {
        let outcome = if n % 10 == 0 {
            CallOutcome::Denied
        } else {
            CallOutcome::Success
        };
        platform.events.emit(call(org, endpoint, n, outcome));
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let usage = loop {
        let usage = get_json(
            &platform,
            &cookie,
            &format!("/api/v1/orgs/{slug}/usage?group_by=tool"),
        )
        .await;
        if usage["totals"]["requests"] == 30 {
            break usage;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached 30 requests: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(usage["totals"]["calls"], 27, "denied calls are not billed");
    assert_eq!(usage["rows"].as_array().unwrap().len(), 2);
    let current = get_json(&platform, &cookie, &format!("/api/v1/orgs/{slug}/usage/current")).await;
    assert_eq!(current["calls"], 27);

    let audit = get_json(
        &platform,
        &cookie,
        &format!("/api/v1/orgs/{slug}/audit?limit=100"),
    )
    .await;
    let data: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "data")
        .collect();
    assert_eq!(data.len(), 30);
    assert_eq!(data.iter().filter(|e| e["action"] == "tool.call").count(), 27);
    assert_eq!(data.iter().filter(|e| e["action"] == "tool.denied").count(), 3);
    let sample = data[0];
    assert_eq!(sample["actor_type"], "user");
    assert_eq!(sample["details"]["args_hash"], "abcd");
    assert!(sample["details"].get("arguments").is_none());
    let verified = get_json(&platform, &cookie, &format!("/api/v1/orgs/{slug}/audit/verify")).await;
    assert_eq!(verified["valid"], true, "{verified}");
}

#[tokio::test]
async fn an_org_at_its_hard_limit_is_over_quota_in_process() {
    let platform = Platform::start().await;
    let (_slug, org, _cookie) = owner_and_org(&platform, "capped-e2e").await;
    let plan = format!("tiny-{org}");
    let mut admin = platform.db.admin().await;
    sqlx::query("INSERT INTO plans (id, name, included_calls, hard_limit_calls) VALUES ($1, 'Tiny', 3, 3)")
        .bind(&plan)
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("UPDATE orgs SET plan_id = $2 WHERE id = $1")
        .bind(org)
        .bind(&plan)
        .execute(&mut admin)
        .await
        .unwrap();
    let endpoint = EndpointId::new();
    for n in 0..3 {
        platform.events.emit(call(org, endpoint, n, CallOutcome::Success));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !platform.quota.is_over(org) {
        assert!(Instant::now() < deadline, "the org never went over quota");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("UPDATE orgs SET plan_id = 'team' WHERE id = $1")
        .bind(org)
        .execute(&mut admin)
        .await
        .unwrap();
    gatehouse_usage_worker::quota::sweep_once(
        &platform.db.db,
        &platform.quota,
        time::OffsetDateTime::now_utc(),
        gatehouse_usage_worker::quota::HardLimits::Enforced,
    )
    .await
    .unwrap();
    assert!(
        !platform.quota.is_over(org),
        "a plan without a hard limit lifts the block"
    );
}

/// `gatehouse up`'s demo org (seeded as `up` seeds it, in single-node mode as `up` runs) takes
/// 50,000 billable calls without being refused: every call goes through the real pipeline (spool,
/// usage-worker, quota decision against the seeded plan) and the quota state the dataplane reads
/// never marks the org over. Its owner sees the plan and the usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_org_of_gatehouse_up_takes_50000_calls_without_a_quota_refusal() {
    const CALLS: usize = 50_000;
    let platform = Platform::start_with(&[("usage_worker.batch_size", "5000")]).await;
    let login = gatehouse_control_api::seed::seed_demo(&platform.db.db)
        .await
        .unwrap()
        .expect("a fresh database gets the demo org");
    let org = {
        let mut tx = gatehouse_db::GlobalTx::begin(&platform.db.db).await.unwrap();
        let org = gatehouse_db::repos::orgs::find_by_slug(&mut tx, &login.org_slug)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        org
    };
    let endpoint = EndpointId::new();
    for n in 0..CALLS {
        platform
            .events
            .emit(call(org.id, endpoint, n, CallOutcome::Success));
    }

    // The owner signs in with the seeded login, as a newcomer would.
    let res = platform
        .http
        .post(format!("{}/api/v1/session", platform.control_api))
        .json(&serde_json::json!({"email": login.email, "password": login.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(session_cookie_name(true)))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();

    let current_path = format!("/api/v1/orgs/{}/usage/current", login.org_slug);
    let deadline = Instant::now() + Duration::from_secs(240);
    let current = loop {
        assert!(
            !platform.quota.is_over(org.id),
            "the demo org was marked over quota"
        );
        let current = get_json(&platform, &cookie, &current_path).await;
        if current["calls"] == CALLS {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached {CALLS} calls: {current}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The worker decided on the org after the last batch: still not over.
    gatehouse_usage_worker::quota::enforce(
        &platform.db.db,
        &platform.quota,
        org.id,
        time::OffsetDateTime::now_utc(),
        gatehouse_usage_worker::quota::HardLimits::of(&platform.cfg.billing),
    )
    .await
    .unwrap();
    assert!(!platform.quota.is_over(org.id), "over quota after {CALLS} calls");
    assert_eq!(current["over_quota"], false, "{current}");
    assert_eq!(current["plan"]["id"], "self_hosted", "{current}");
    assert_eq!(current["plan"]["hard_limit_calls"], Value::Null, "{current}");
}
