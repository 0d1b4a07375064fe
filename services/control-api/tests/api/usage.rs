//! Usage and invoice routes: who may read them, cross-tenant isolation, grouping, validation.

use gatehouse_core::ids::{EndpointId, EventId, InvoiceId, OrgId};
use gatehouse_core::role::Role;
use gatehouse_db::repos::invoices::{self, InvoiceLine};
use gatehouse_db::repos::usage::{self, NewUsageEvent};
use gatehouse_db::{OrgScope, TenantTx};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::date;

use crate::helpers::TestApp;

async fn record_usage(app: &TestApp, org: OrgId, endpoint: EndpointId, tools: &[(&str, &'static str, i64)]) {
    let events: Vec<NewUsageEvent> = tools
        .iter()
        .map(|(tool, outcome, units)| NewUsageEvent {
            id: EventId::new(),
            source: "dp-test".into(),
            occurred_at: OffsetDateTime::now_utc(),
            endpoint_id: Some(endpoint),
            server_id: None,
            tool: Some((*tool).into()),
            subject: Some("user-1".into()),
            client_id: None,
            outcome,
            latency_ms: 10,
            bytes_in: 100,
            bytes_out: 1000,
            units: *units,
            args_hash: None,
        })
        .collect();
    let mut tx = TenantTx::begin(&app.db.db, &OrgScope::authorized(org))
        .await
        .unwrap();
    assert_eq!(
        usage::record(&mut tx, &events).await.unwrap(),
        events.len() as u64
    );
    tx.commit().await.unwrap();
}

async fn invoice(app: &TestApp, org: OrgId) -> InvoiceId {
    let mut tx = TenantTx::begin(&app.db.db, &OrgScope::authorized(org))
        .await
        .unwrap();
    let lines = vec![
        InvoiceLine {
            line_no: 1,
            description: "Team plan, October 2026".into(),
            quantity: 1,
            unit_price_millicents: 4_900_000,
            amount_cents: 4900,
        },
        InvoiceLine {
            line_no: 2,
            description: "Calls included in the plan (up to 1000000)".into(),
            quantity: 12,
            unit_price_millicents: 0,
            amount_cents: 0,
        },
    ];
    let id = invoices::create_final(
        &mut tx,
        date!(2026 - 10 - 01),
        date!(2026 - 11 - 01),
        "team",
        &lines,
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn usage_is_for_members_and_invoices_for_admins() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@usage.test").await;
    let (slug, org) = app.org(&owner, "usage-roles").await;
    let invoice_id = invoice(&app, org).await;
    let (viewer, developer, admin, stranger) = (
        app.user("viewer@usage.test").await,
        app.user("dev@usage.test").await,
        app.user("admin@usage.test").await,
        app.user("stranger@usage.test").await,
    );
    app.add_member(org, &viewer, Role::Viewer).await;
    app.add_member(org, &developer, Role::Developer).await;
    app.add_member(org, &admin, Role::Admin).await;

    let usage = format!("/api/v1/orgs/{slug}/usage");
    let current = format!("/api/v1/orgs/{slug}/usage/current");
    let list = format!("/api/v1/orgs/{slug}/invoices");
    let one = format!("/api/v1/orgs/{slug}/invoices/{invoice_id}");
    for user in [&viewer, &developer, &admin, &owner] {
        assert_eq!(
            user.get(&usage).send().await.unwrap().status(),
            200,
            "{} reads usage",
            user.email
        );
        assert_eq!(user.get(&current).send().await.unwrap().status(), 200);
    }
    for user in [&viewer, &developer] {
        for path in [&list, &one] {
            let res = user.get(path).send().await.unwrap();
            assert_eq!(res.status(), 403, "{} reads {path}", user.email);
            assert_eq!(res.headers()["content-type"], "application/problem+json");
        }
    }
    for user in [&admin, &owner] {
        let listed: Value = user.get(&list).send().await.unwrap().json().await.unwrap();
        assert_eq!(listed["invoices"][0]["id"], invoice_id.to_string());
        let detail: Value = user.get(&one).send().await.unwrap().json().await.unwrap();
        assert_eq!(detail["total_cents"], 4900);
        assert_eq!(detail["period_start"], "2026-10-01");
        assert_eq!(detail["lines"][0]["amount_cents"], 4900);
        assert_eq!(detail["lines"].as_array().unwrap().len(), 2);
    }
    // Not a member: the org does not exist for them. Not signed in: 401.
    for path in [&usage, &current, &list, &one] {
        assert_eq!(stranger.get(path).send().await.unwrap().status(), 404, "{path}");
        assert_eq!(app.http.get(app.url(path)).send().await.unwrap().status(), 401);
    }
}

#[tokio::test]
async fn another_orgs_invoice_is_not_found() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@usage.test").await;
    let bob = app.user("bob@usage.test").await;
    let (alice_slug, _alice_org) = app.org(&alice, "alice-co").await;
    let (bob_slug, bob_org) = app.org(&bob, "bob-co").await;
    let bobs_invoice = invoice(&app, bob_org).await;

    // Through Alice's own org path: no such invoice there.
    let res = alice
        .get(&format!("/api/v1/orgs/{alice_slug}/invoices/{bobs_invoice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
    // Through Bob's org path: not a member.
    for path in [
        format!("/api/v1/orgs/{bob_slug}/invoices/{bobs_invoice}"),
        format!("/api/v1/orgs/{bob_slug}/invoices"),
        format!("/api/v1/orgs/{bob_slug}/usage"),
    ] {
        assert_eq!(alice.get(&path).send().await.unwrap().status(), 404, "{path}");
    }
    let listed: Value = alice
        .get(&format!("/api/v1/orgs/{alice_slug}/invoices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["invoices"], serde_json::json!([]));
    // A malformed id is invalid input, not a server error.
    let res = alice
        .get(&format!("/api/v1/orgs/{alice_slug}/invoices/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn usage_is_grouped_by_day_endpoint_and_tool() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@grouping.test").await;
    let (slug, org) = app.org(&owner, "grouping").await;
    let (other_owner, (_, other_org)) = {
        let u = app.user("owner@other.test").await;
        let o = app.org(&u, "grouping-other").await;
        (u, o)
    };
    let _ = other_owner;
    let (a, b) = (EndpointId::new(), EndpointId::new());
    record_usage(
        &app,
        org,
        a,
        &[
            ("orders__get", "success", 1),
            ("orders__get", "error", 1),
            ("orders__list", "denied", 0),
        ],
    )
    .await;
    record_usage(
        &app,
        org,
        b,
        &[("orders__get", "success", 1), ("orders__get", "rate_limited", 0)],
    )
    .await;
    // Another org's usage never shows.
    record_usage(&app, other_org, a, &[("orders__get", "success", 1); 7]).await;

    let by_tool: Value = owner
        .get(&format!("/api/v1/orgs/{slug}/usage?group_by=tool"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_tool["group_by"], serde_json::json!(["tool"]));
    let rows = by_tool["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let get = rows.iter().find(|r| r["tool"] == "orders__get").unwrap();
    assert_eq!(
        (get["requests"].as_i64(), get["calls"].as_i64()),
        (Some(4), Some(3))
    );
    assert_eq!(
        (get["errors"].as_i64(), get["rate_limited"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(get.get("day").is_none() && get.get("endpoint_id").is_none());
    assert_eq!(by_tool["totals"]["requests"], 5);
    assert_eq!(by_tool["totals"]["calls"], 3);
    assert_eq!(by_tool["totals"]["denied"], 1);
    assert_eq!(by_tool["totals"]["avg_latency_ms"], 10.0);

    let all: Value = owner
        .get(&format!("/api/v1/orgs/{slug}/usage?group_by=day,endpoint,tool"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = all["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{all}");
    let today = OffsetDateTime::now_utc().date();
    assert!(rows.iter().all(|r| r["day"] == format!("{today}")), "{all}");
    assert_eq!(
        rows.iter().filter(|r| r["endpoint_id"] == a.to_string()).count(),
        2
    );

    let whole: Value = owner
        .get(&format!("/api/v1/orgs/{slug}/usage?group_by="))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["rows"].as_array().unwrap().len(), 1);
    assert_eq!(whole["rows"][0]["requests"], 5);

    // A range that excludes today has nothing.
    let past: Value = owner
        .get(&format!(
            "/api/v1/orgs/{slug}/usage?from=2020-01-01&to=2020-02-01"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(past["rows"], serde_json::json!([]));
    assert_eq!(past["from"], "2020-01-01T00:00:00Z");

    let current: Value = owner
        .get(&format!("/api/v1/orgs/{slug}/usage/current"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["calls"], 3);
    assert_eq!(current["plan"]["id"], "free");
    assert_eq!(current["over_quota"], false);
}

#[tokio::test]
async fn invalid_usage_queries_name_the_field() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@invalid.test").await;
    let (slug, _) = app.org(&owner, "invalid-usage").await;
    for (query, field) in [
        ("group_by=day,week", "group_by"),
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2020-01-01&to=2026-01-01", "from"),
        ("colour=blue", "colour"),
    ] {
        let res = owner
            .get(&format!("/api/v1/orgs/{slug}/usage?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
}
