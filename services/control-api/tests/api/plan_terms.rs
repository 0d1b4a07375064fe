//! A plan's terms apply to the orgs on it: `seats` caps members (checked when inviting, and on
//! every way a member is added), and `rate_limit_defaults` are the limits of endpoints created
//! without limits of their own.

use reqwest::Method;
use serde_json::{Value, json};

use gatehouse_core::secrets::{random_token, token_hash};

use crate::account_support::*;
use crate::helpers::TestApp;
use crate::operator::Operator;

async fn member_count(app: &TestApp, org: gatehouse_core::ids::OrgId) -> i64 {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar("SELECT count(*) FROM memberships WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

async fn config_version(app: &TestApp, org: gatehouse_core::ids::OrgId) -> i64 {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar("SELECT config_version FROM org_settings WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn seats_cap_invitations_and_every_join_and_plan_rate_limits_reach_new_endpoints() {
    let token = random_token(32);
    let hash = hex::encode(token_hash(&token));
    let (app, mail) = spawn_with_mail(&[("operator.token_sha256", &hash)]).await;
    let op = Operator {
        app: &app,
        token: &token,
    };
    let owner = app.user("owner@seats.test").await;
    let (slug, org_id) = app.org(&owner, "seats").await;
    let defaults =
        json!({"per_org": {"per_minute": 600, "burst": 60}, "per_subject": {"per_minute": 60, "burst": 10}});
    op.ok(Method::POST, "/api/operator/plans", Some(json!({"id": "duo", "name": "Duo", "included_calls": 1000, "seats": 2, "rate_limit_defaults": defaults}))).await;
    op.ok(
        Method::PUT,
        &format!("/api/operator/orgs/{slug}/plan"),
        Some(json!({"plan_id": "duo"})),
    )
    .await;

    // An endpoint created without limits starts with the plan's; explicit limits (even none) win.
    let created: Value = owner
        .post(&format!("/api/v1/orgs/{slug}/endpoints"))
        .json(&json!({"slug": "defaulted", "name": "Defaulted"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["rate_limits"], defaults, "{created}");
    let explicit: Value = owner
        .post(&format!("/api/v1/orgs/{slug}/endpoints"))
        .json(&json!({"slug": "explicit", "name": "Explicit", "rate_limits": {"per_org": {"per_minute": 5}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        explicit["rate_limits"],
        json!({"per_org": {"per_minute": 5, "burst": 0}}),
        "{explicit}"
    );

    // Two seats: the owner, and one invitation. A second invitation would promise a third seat.
    let bob = "bob@seats.test";
    let resp = owner
        .post(&format!("/api/v1/orgs/{slug}/invitations"))
        .json(&json!({"email": bob, "role": "developer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = owner
        .post(&format!("/api/v1/orgs/{slug}/invitations"))
        .json(&json!({"email": "carol@seats.test", "role": "developer"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 409, Some("seats_exhausted")).await;
    assert!(problem["detail"].as_str().unwrap().contains("seat"), "{problem}");

    // Someone takes the last seat another way; the invitation can no longer be accepted.
    let dave = app.user("dave@seats.test").await;
    app.add_member(org_id, &dave, gatehouse_core::role::Role::Viewer)
        .await;
    let invite_token = link_token(&mail.wait_for_nth(bob, 1).await, "/invitations/accept");
    sign_up_and_verify(&app, &mail, bob).await;
    let bob_user = log_in(&app, bob, PASSWORD).await;
    let resp = bob_user
        .post("/api/v1/invitations/accept")
        .json(&json!({"token": invite_token}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, Some("seats_exhausted")).await;
    assert_eq!(member_count(&app, org_id).await, 2);

    // More seats: the same invitation now goes through.
    op.ok(
        Method::PATCH,
        "/api/operator/plans/duo",
        Some(json!({"seats": 3})),
    )
    .await;
    let version_before = config_version(&app, org_id).await;
    let resp = bob_user
        .post("/api/v1/invitations/accept")
        .json(&json!({"token": invite_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(member_count(&app, org_id).await, 3);
    // The new member is a new caller for the dataplane (their email in hosted SQL contexts).
    assert!(config_version(&app, org_id).await > version_before);
}
