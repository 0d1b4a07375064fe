//! Deleting an org: only its owner, only with the slug typed as confirmation, not while the
//! operator has it suspended. Everything the org owns goes (its audit trail included), its
//! members lose access, dataplanes are told, the platform trail records it, and no other org
//! changes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::ConfigChange;

use crate::account_support::{assert_problem, org_state};
use crate::helpers::{TestApp, TestUser};
use crate::world::dump_org;

/// Rows of every table with an `org_id` column that belong to `org` (table name → count).
async fn rows_of(app: &TestApp, org: OrgId) -> Value {
    let mut out = serde_json::Map::new();
    for (table, rows) in dump_org(app, org).await {
        out.insert(table, json!(rows.lines().count()));
    }
    let mut admin = app.db.admin().await;
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs WHERE id = $1")
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    out.insert("orgs".into(), json!(orgs));
    Value::Object(out)
}

fn delete(user: &TestUser, slug: &str, confirm: &str) -> reqwest::RequestBuilder {
    user.request(Method::DELETE, &format!("/api/v1/orgs/{slug}"))
        .json(&json!({"confirm": confirm}))
}

/// An org with an owner, an admin, an invitation and a changed setting (through the API).
async fn populated(app: &TestApp, owner: &TestUser, admin: &TestUser, slug: &str) -> OrgId {
    let (_, org) = app.org(owner, slug).await;
    app.add_member(org, admin, Role::Admin).await;
    let invited = owner
        .post(&format!("/api/v1/orgs/{slug}/invitations"))
        .json(&json!({"email": format!("invitee@{slug}.test"), "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), 201);
    let renamed = owner
        .request(Method::PATCH, &format!("/api/v1/orgs/{slug}/settings"))
        .json(&json!({"log_tool_arguments": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    org
}

#[tokio::test]
async fn the_owner_deletes_the_org_with_everything_it_owns_and_nothing_else() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@doomed.test").await;
    let admin = app.user("admin@doomed.test").await;
    let doomed = populated(&app, &owner, &admin, "doomed").await;
    // The admin also belongs to another org, which must not change.
    let other_owner = app.user("owner@kept.test").await;
    let kept = populated(&app, &other_owner, &admin, "kept").await;
    // What billing still needs of it: the open period's calls and a final invoice.
    let mut db = app.db.admin().await;
    sqlx::query(
        "INSERT INTO usage_period_totals (org_id, period_start, calls, events)
         VALUES ($1, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 42, 50)",
    )
    .bind(doomed)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO invoices (id, org_id, period_start, period_end, plan_id, status, total_cents, finalized_at)
         VALUES (gen_random_uuid(), $1, '2026-10-01', '2026-11-01', (SELECT plan_id FROM orgs WHERE id = $1),
                 'final', 1234, now())",
    )
    .bind(doomed)
    .execute(&mut db)
    .await
    .unwrap();
    let kept_before = (org_state(&app, kept).await, rows_of(&app, kept).await);
    let before = rows_of(&app, doomed).await;
    assert!(before["audit_events"].as_i64().unwrap() > 0, "{before}");
    let version_before: i64 = owner
        .get("/api/v1/orgs/doomed/settings")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["config_version"]
        .as_i64()
        .unwrap();
    let mut changes = app.notifier.subscribe();

    let deleted = delete(&owner, "doomed", "doomed").send().await.unwrap();
    assert_eq!(deleted.status(), 204, "{}", deleted.text().await.unwrap());

    // Every row of the org is gone, audit trail and chain head included.
    let after = rows_of(&app, doomed).await;
    for (table, n) in after.as_object().unwrap() {
        assert_eq!(n, 0, "{table} still holds rows of the deleted org: {after}");
    }
    // Dataplanes are told with a newer version, and the org's snapshot is gone.
    let change: ConfigChange = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.org_id == doomed {
                return change;
            }
        }
    })
    .await
    .expect("a change is published");
    assert!(change.version > version_before);
    let internal = app.cfg.dataplane_keys().unwrap().internal_token;
    let snapshot = app
        .http
        .get(app.internal_url(&format!("/internal/v1/orgs/{doomed}/snapshot")))
        .bearer_auth(&internal)
        .send()
        .await
        .unwrap();
    assert_eq!(snapshot.status(), 404);
    // Members lose access; their other orgs stay.
    for user in [&owner, &admin] {
        let got = user.get("/api/v1/orgs/doomed").send().await.unwrap();
        assert_eq!(got.status(), 404);
        let mine: Vec<Value> = user
            .get("/api/v1/orgs")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(mine.iter().all(|o| o["slug"] != "doomed"), "{mine:?}");
    }
    let mine: Vec<Value> = admin
        .get("/api/v1/orgs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (org_state(&app, kept).await, rows_of(&app, kept).await),
        kept_before
    );
    // The platform trail records who deleted which org, and where its chain ended.
    let mut db = app.db.admin().await;
    let (actor_type, actor_id, details): (String, String, Value) = sqlx::query_as(
        "SELECT actor_type, actor_id, details FROM platform_audit_events
          WHERE affected_org_id = $1 AND action = 'org.deleted'",
    )
    .bind(doomed)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((actor_type.as_str(), actor_id), ("user", owner.id.to_string()));
    assert_eq!(details["org"]["slug"], "doomed");
    assert_eq!(details["org"]["members"], 2);
    assert_eq!(details["audit"]["entries_deleted"], before["audit_events"]);
    // Billing keeps what it needs to settle the org's account.
    assert_eq!(details["billing"]["period_calls"], 42, "{details}");
    let invoices = details["billing"]["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 1, "{details}");
    assert_eq!(invoices[0]["period_start"], "2026-10-01");
    assert_eq!(invoices[0]["total_cents"], 1234);
    assert_eq!(invoices[0]["status"], "final");
    assert_eq!(details["audit"]["head_seq"], before["audit_events"]);
    assert_eq!(details["audit"]["head_hash"].as_str().unwrap().len(), 64);
    // The slug is free again.
    let again = owner
        .post("/api/v1/orgs")
        .json(&json!({"slug": "doomed", "name": "Doomed again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
}

#[tokio::test]
async fn deletion_is_refused_to_non_owners_without_the_slug_and_while_suspended() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@firm.test").await;
    let admin = app.user("admin@firm.test").await;
    let org = populated(&app, &owner, &admin, "firm").await;
    let outsider = app.user("outsider@else.test").await;
    app.org(&outsider, "elsewhere").await;
    let before = rows_of(&app, org).await;

    let by_admin = delete(&admin, "firm", "firm").send().await.unwrap();
    assert_problem(by_admin, 403, None).await;
    let by_outsider = delete(&outsider, "firm", "firm").send().await.unwrap();
    assert_problem(by_outsider, 404, None).await;
    for wrong in ["", "Firm", "firm ", "elsewhere"] {
        let refused = delete(&owner, "firm", wrong).send().await.unwrap();
        let body = assert_problem(refused, 400, None).await;
        assert_eq!(body["field"], "confirm", "{body}");
        assert!(body["detail"].as_str().unwrap().contains("firm"), "{body}");
    }
    let unconfirmed = owner
        .request(Method::DELETE, "/api/v1/orgs/firm")
        .send()
        .await
        .unwrap();
    assert_eq!(unconfirmed.status(), 415, "no JSON body, no confirmation");

    let mut db = app.db.admin().await;
    sqlx::query("UPDATE orgs SET suspended_at = now(), suspended_reason = 'abuse report' WHERE id = $1")
        .bind(org)
        .execute(&mut db)
        .await
        .unwrap();
    let suspended = delete(&owner, "firm", "firm").send().await.unwrap();
    let body = assert_problem(suspended, 409, Some("org_suspended")).await;
    assert!(body["detail"].as_str().unwrap().contains("suspended"), "{body}");
    assert_eq!(
        rows_of(&app, org).await,
        before,
        "a refused deletion changes nothing"
    );
}
