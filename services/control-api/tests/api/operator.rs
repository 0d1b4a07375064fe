//! The operator API: only the operator token opens it (no tenant credential does, on any of its
//! routes), and every plan and org action is audited in the platform trail and in each affected
//! org's own trail. A suspended org's members can still sign in and export its audit trail.

use reqwest::Method;
use serde_json::{Value, json};

use gatehouse_core::secrets::{random_token, token_hash};

use crate::helpers::{TestApp, TestUser};
use crate::route_table::document;
use crate::world::problem;

/// An app whose operator token is `token`.
async fn app_with_operator() -> (TestApp, String) {
    let token = random_token(32);
    let hash = hex::encode(token_hash(&token));
    let app = TestApp::spawn_with(&[("operator.token_sha256", &hash)]).await;
    (app, token)
}

/// Every operator route in the OpenAPI document: (method, path template, operation id).
fn operator_routes() -> Vec<(Method, String, String)> {
    let doc = document();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/operator/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            routes.push((
                method,
                path.clone(),
                op["operationId"].as_str().unwrap().to_owned(),
            ));
        }
    }
    routes
}

/// A valid body for each operator operation that takes one.
fn example_body(operation: &str) -> Option<Value> {
    match operation {
        "operator.plans.create" => Some(
            json!({"id": format!("p-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), "name": "P", "included_calls": 10}),
        ),
        "operator.plans.update" => Some(json!({"included_calls": 20})),
        "operator.orgs.set_plan" => Some(json!({"plan_id": "self_hosted"})),
        "operator.orgs.suspend" => Some(json!({"reason": "test"})),
        _ => None,
    }
}

/// The operator API as an operator calls it (bearer token and the `x-gatehouse-operator` label).
pub(crate) struct Operator<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) token: &'a str,
}

impl Operator<'_> {
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self
            .app
            .http
            .request(method, self.app.url(path))
            .bearer_auth(self.token)
            .header("x-gatehouse-operator", "ops@example.com");
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    pub(crate) async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let response = self.send(method.clone(), path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(status == 200 || status == 201, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn fill(template: &str, org: &str) -> String {
    template.replace("{plan}", "team").replace("{org}", org)
}

/// The state an operator route could change: plans and the org row.
async fn platform_state(app: &TestApp) -> String {
    let mut admin = app.db.admin().await;
    let plans: Vec<(String, String, i64, Option<i64>, bool)> = sqlx::query_as(
        "SELECT id, name, included_calls, hard_limit_calls, retired_at IS NOT NULL FROM plans ORDER BY id",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let orgs: Vec<(String, String, bool)> =
        sqlx::query_as("SELECT slug, plan_id, suspended_at IS NOT NULL FROM orgs ORDER BY slug")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let trail: i64 = sqlx::query_scalar("SELECT count(*) FROM platform_audit_events")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    format!("{plans:?} {orgs:?} {trail}")
}

#[tokio::test]
async fn tenant_credentials_are_refused_by_every_operator_route() {
    let (app, token) = app_with_operator().await;
    let owner = app.user("owner@tenant.example").await;
    let (slug, _org) = app.org(&owner, "tenant").await;
    let session_token = owner.cookie.split_once('=').unwrap().1.to_owned();
    let routes = operator_routes();
    assert!(
        routes.len() >= 11,
        "expected every operator route, found {routes:?}"
    );

    let before = platform_state(&app).await;
    let mut failures = Vec::new();
    for (method, template, operation) in &routes {
        let path = fill(template, &slug);
        let body = example_body(operation);
        let attempts = [
            // The owner's console session, with its CSRF token on writes.
            ("owner session cookie", owner.request(method.clone(), &path)),
            (
                "owner session token as bearer",
                app.http
                    .request(method.clone(), app.url(&path))
                    .bearer_auth(&session_token),
            ),
            (
                "owner session cookie and a wrong bearer",
                owner
                    .request(method.clone(), &path)
                    .bearer_auth(format!("{token}x")),
            ),
            ("no credentials", app.http.request(method.clone(), app.url(&path))),
        ];
        for (what, req) in attempts {
            let req = match &body {
                Some(b) => req.json(b),
                None => req,
            };
            let (status, problem_body) = problem(req.send().await.unwrap()).await;
            if status != 401 || problem_body["code"] != "unauthenticated" {
                failures.push(format!("{operation} ({what}): {status} {problem_body}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "operator routes accepted tenant credentials:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        platform_state(&app).await,
        before,
        "a refused request changed something"
    );

    // The same routes answer the operator token (so the refusals above are about credentials).
    let operator = Operator {
        app: &app,
        token: &token,
    };
    for (method, template, operation) in &routes {
        let response = operator
            .send(method.clone(), &fill(template, &slug), example_body(operation))
            .await;
        assert!(
            response.status().is_success(),
            "{operation} with the operator token: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn without_a_configured_hash_the_operator_api_is_closed() {
    let app = TestApp::spawn().await;
    // Even the hash of the empty token, or any token, is refused.
    for token in ["", "anything", &random_token(32)] {
        let (status, body) = problem(
            app.http
                .get(app.url("/api/operator/plans"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    }
}

/// The org's own trail, read by its owner through the tenant API.
async fn org_trail(owner: &TestUser, slug: &str) -> Vec<Value> {
    let page: Value = owner
        .get(&format!("/api/v1/orgs/{slug}/audit?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().clone()
}

fn actions_by_operator(trail: &[Value]) -> Vec<String> {
    trail
        .iter()
        .filter(|e| e["actor_type"] == "operator")
        .map(|e| {
            assert_eq!(e["actor_label"], "ops@example.com", "{e}");
            e["action"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn plans_are_created_changed_and_retired_and_each_action_is_audited() {
    let (app, token) = app_with_operator().await;
    let op = Operator {
        app: &app,
        token: &token,
    };
    let owner = app.user("owner@planned.example").await;
    let (slug, org_id) = app.org(&owner, "planned").await;

    let created = op
        .ok(
            Method::POST,
            "/api/operator/plans",
            Some(json!({
                "id": "startup",
                "name": "Startup",
                "monthly_fee_cents": 1900,
                "included_calls": 100000,
                "overage_cents_per_1000_calls": 40,
                "hard_limit_calls": 200000,
                "rate_limit_defaults": {"per_org": {"per_minute": 600, "burst": 60}},
                "retention_days": 90,
                "seats": 5
            })),
        )
        .await;
    assert_eq!(created["hard_limit_calls"], 200000);
    assert_eq!(created["rate_limit_defaults"]["per_org"]["per_minute"], 600);
    assert_eq!(
        (created["seats"].clone(), created["retired"].clone()),
        (json!(5), json!(false))
    );

    let (status, body) = problem(
        op.send(
            Method::POST,
            "/api/operator/plans",
            Some(json!({"id": "startup", "name": "Again", "included_calls": 1})),
        )
        .await,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("plan_exists")));
    for (bad, field) in [
        (json!({"id": "Bad Id", "name": "x", "included_calls": 1}), "id"),
        (
            json!({"id": "ok", "name": "x", "included_calls": -1}),
            "included_calls",
        ),
        (
            json!({"id": "ok", "name": "x", "included_calls": 1, "seats": 0}),
            "seats",
        ),
        (
            json!({"id": "ok", "name": "x", "included_calls": 1, "rate_limit_defaults": {"per_tool": {"t": {"per_minute": 1}}}}),
            "rate_limit_defaults.per_tool",
        ),
        (
            json!({"id": "ok", "name": "x", "included_calls": 1, "rate_limit_defaults": {"per_org": {"per_minute": 0}}}),
            "rate_limit_defaults.per_org.per_minute",
        ),
    ] {
        let (status, body) = problem(
            op.send(Method::POST, "/api/operator/plans", Some(bad.clone()))
                .await,
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{bad}: {body}"
        );
    }

    // The org moves onto it; then the plan changes: the org's trail shows both.
    op.ok(
        Method::PUT,
        &format!("/api/operator/orgs/{slug}/plan"),
        Some(json!({"plan_id": "startup"})),
    )
    .await;
    let changed = op
        .ok(
            Method::PATCH,
            "/api/operator/plans/startup",
            Some(json!({"hard_limit_calls": null, "seats": 10, "name": "Startup 2"})),
        )
        .await;
    assert_eq!(changed["hard_limit_calls"], Value::Null);
    assert_eq!(changed["seats"], 10);
    assert_eq!(changed["retention_days"], 90, "absent fields are kept");
    let retired = op
        .ok(Method::POST, "/api/operator/plans/startup/retire", None)
        .await;
    assert_eq!(retired["retired"], true);
    let listed = op.ok(Method::GET, "/api/operator/plans", None).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "self_hosted" && p["hard_limit_calls"].is_null())
    );

    // No org can be moved onto a retired plan; the org already on it keeps it.
    let other_owner = app.user("owner@other.example").await;
    let (other, _) = app.org(&other_owner, "other").await;
    let (status, body) = problem(
        op.send(
            Method::PUT,
            &format!("/api/operator/orgs/{other}/plan"),
            Some(json!({"plan_id": "startup"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("plan_retired")));
    let org = op
        .ok(Method::GET, &format!("/api/operator/orgs/{slug}"), None)
        .await;
    assert_eq!(org["plan_id"], "startup");

    assert_eq!(
        actions_by_operator(&org_trail(&owner, &slug).await),
        ["org.plan.change", "plan.update", "plan.retire"]
    );
    assert!(actions_by_operator(&org_trail(&other_owner, &other).await).is_empty());
    let platform = op.ok(Method::GET, "/api/operator/audit", None).await;
    let actions: Vec<(&str, Value)> = platform["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["org_id"].clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("plan.create", Value::Null),
            ("org.plan.change", json!(org_id)),
            ("plan.update", Value::Null),
            ("plan.retire", Value::Null),
        ]
    );
    assert_eq!(platform["first_broken_seq"], Value::Null);
}

#[tokio::test]
async fn orgs_are_inspected_suspended_and_resumed_and_members_keep_their_trail() {
    let (app, token) = app_with_operator().await;
    let op = Operator {
        app: &app,
        token: &token,
    };
    let owner = app.user("owner@suspended.example").await;
    let (slug, org_id) = app.org(&owner, "suspended").await;
    let mut changes = app.notifier.subscribe();

    let listed = op.ok(Method::GET, "/api/operator/orgs", None).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["slug"] == slug && o["suspended"] == false)
    );
    let org = op
        .ok(Method::GET, &format!("/api/operator/orgs/{slug}"), None)
        .await;
    assert_eq!(org["plan_id"], "free");
    assert_eq!(org["usage"]["calls"], 0);
    assert_eq!(org["usage"]["members"], 1);
    assert_eq!(org["usage"]["hard_limit_calls"], 10000);

    let (status, body) = problem(
        op.send(
            Method::POST,
            &format!("/api/operator/orgs/{slug}/suspend"),
            Some(json!({"reason": ""})),
        )
        .await,
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("reason")));
    let suspended = op
        .ok(
            Method::POST,
            &format!("/api/operator/orgs/{slug}/suspend"),
            Some(json!({"reason": "unpaid invoices"})),
        )
        .await;
    assert_eq!(
        (
            suspended["suspended"].clone(),
            suspended["suspended_reason"].clone()
        ),
        (json!(true), json!("unpaid invoices"))
    );
    // Dataplanes are told.
    let change = tokio::time::timeout(std::time::Duration::from_secs(2), changes.recv())
        .await
        .expect("a change notification")
        .unwrap();
    assert_eq!(change.org_id, org_id);

    // A member still signs in and exports the trail, which shows the suspension.
    let login = app
        .http
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": owner.email, "password": "test-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "a suspended org's member signs in");
    let export = owner
        .get(&format!("/api/v1/orgs/{slug}/audit/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let lines = export.text().await.unwrap();
    assert!(lines.contains("\"org.suspend\""), "{lines}");

    let resumed = op
        .ok(Method::POST, &format!("/api/operator/orgs/{slug}/resume"), None)
        .await;
    assert_eq!(
        (resumed["suspended"].clone(), resumed["suspended_reason"].clone()),
        (json!(false), Value::Null)
    );

    assert_eq!(
        actions_by_operator(&org_trail(&owner, &slug).await),
        ["org.suspend", "org.resume"]
    );
    let verified: Value = owner
        .get(&format!("/api/v1/orgs/{slug}/audit/verify"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["valid"], true, "{verified}");
    let platform = op
        .ok(Method::GET, &format!("/api/operator/audit?org={slug}"), None)
        .await;
    let actions: Vec<&str> = platform["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["org.suspend", "org.resume"]);
    assert_eq!(
        platform["events"][0]["details"]["after"]["suspended_reason"],
        "unpaid invoices"
    );
}
