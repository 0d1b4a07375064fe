//! Scopes and endpoints: every change is validated, audited and published, and shapes the
//! snapshot the dataplane serves (granted tools, rate limits, exposed names, prompts, resources).

use serde_json::{Value, json};

use gatehouse_core::snapshot::ToolTarget;

use super::{
    approve, call_upstream_once, get_json, internal_snapshot, next_change, register, server_tools, sync,
};
use crate::generated::{app_reaching_loopback, fixture};
use crate::world::problem;

#[tokio::test]
async fn scopes_and_endpoints_publish_changes_and_shape_the_snapshot() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let owner = app.user("owner@example.com").await;
    let (org, org_id) = app.org(&owner, "acme").await;
    let mut rx = app.notifier.subscribe();
    let w = crate::world::world(&app, &owner, &[], upstream.url()).await;
    let _ = org;
    let org = w.slug.clone();
    let org_id_w = w.org_id;
    let _ = org_id;

    // A scope granting the tool.
    let scope: Value = owner
        .post(&format!("/api/v1/orgs/{org}/scopes"))
        .json(&json!({"name": "orders:admin", "min_role": "admin", "tool_ids": [w.tool_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v1 = next_change(&mut rx, org_id_w).await;
    let snap = internal_snapshot(&app, org_id_w).await;
    assert_eq!(snap.version, v1.version);
    let ep = &snap.endpoints[0];
    let granted = ep.scopes.iter().find(|s| s.name == "orders:admin").unwrap();
    assert_eq!(granted.tool_ids, vec![w.tool_id]);
    assert_eq!(ep.tools[0].exposed_name, "orders__get_order");

    // Rate limits are validated and published.
    let bad = owner
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/orgs/{org}/endpoints/{}", w.endpoint_id),
        )
        .json(&json!({"rate_limits": {"per_org": {"per_minute": 0}}}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(bad).await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "rate_limits.per_org.per_minute");
    let ok = owner
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/orgs/{org}/endpoints/{}", w.endpoint_id),
        )
        .json(&json!({"rate_limits": {"per_subject": {"per_minute": 60, "burst": 10}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let v2 = next_change(&mut rx, org_id_w).await;
    assert!(v2.version > v1.version);
    let snap = internal_snapshot(&app, org_id_w).await;
    assert_eq!(snap.endpoints[0].rate_limits.per_subject.unwrap().per_minute, 60);

    // A subset selection without the tool exposes nothing.
    let other_tool = {
        let scope = gatehouse_db::OrgScope::authorized(org_id_w);
        let mut tx = gatehouse_db::TenantTx::begin(&app.db.db, &scope).await.unwrap();
        let def = json!({"name": "list_orders", "inputSchema": {"type": "object"}});
        let hash = hex::decode(gatehouse_core::canonical::tool_definition_hash(&def)).unwrap();
        let (row, _) = gatehouse_db::repos::tools::observe(
            &mut tx,
            w.server_id,
            &gatehouse_db::repos::tools::Observed {
                name: "list_orders",
                definition: &def,
                hash: &hash,
                flags: &json!([]),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        row.id
    };
    let subset: Value = owner
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/orgs/{org}/endpoints/{}/servers", w.endpoint_id),
        )
        .json(&json!({"servers": [{"server_id": w.server_id, "tool_ids": [other_tool]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        subset["tools"],
        json!([]),
        "an unapproved tool is never exposed: {subset}"
    );
    let _ = next_change(&mut rx, org_id_w).await;

    // Client configuration.
    let config: Value = get_json(
        &owner,
        &format!("/api/v1/orgs/{org}/endpoints/{}/client-config", w.endpoint_id),
    )
    .await;
    let url = format!(
        "{}/{org}/support/mcp",
        app.cfg.dataplane.public_url.as_str().trim_end_matches('/')
    );
    assert_eq!(config["url"], url);
    assert_eq!(
        config["claude_code"],
        format!("claude mcp add --transport http {org}-support {url}")
    );
    assert_eq!(config["vscode"]["servers"][format!("{org}-support")]["url"], url);
    assert_eq!(
        config["vscode"]["servers"][format!("{org}-support")]["type"],
        "http"
    );
    assert_eq!(
        config["cursor"]["mcpServers"][format!("{org}-support")]["url"],
        url
    );

    // Deleting the scope publishes and removes it from the snapshot.
    let deleted = owner
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/orgs/{org}/scopes/{}", scope["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let _ = next_change(&mut rx, org_id_w).await;
    let snap = internal_snapshot(&app, org_id_w).await;
    assert!(!snap.endpoints[0].scopes.iter().any(|s| s.name == "orders:admin"));

    // Every change is in the audit trail, with the actor, and the export is JSON Lines.
    let export = owner
        .get(&format!("/api/v1/orgs/{org}/audit/export?action=scope."))
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["scope.create", "scope.delete"]
    );
    assert!(lines.iter().all(|l| l["actor_id"] == owner.id.to_string()));
    assert!(lines[1]["details"]["before"]["name"] == "orders:admin");
    // Pagination by sequence number.
    let page: Value = get_json(&owner, &format!("/api/v1/orgs/{org}/audit?limit=1")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let next = page["next_after_seq"].as_i64().unwrap();
    let page2: Value = get_json(
        &owner,
        &format!("/api/v1/orgs/{org}/audit?limit=1&after_seq={next}"),
    )
    .await;
    assert!(page2["events"][0]["seq"].as_i64().unwrap() > next);
}

#[tokio::test]
async fn endpoint_exposure_shapes_tool_names_prompts_and_resources() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let owner = app.user("owner@example.com").await;
    let w = crate::world::world(&app, &owner, &[], upstream.url()).await;
    let org = w.slug.clone();
    let endpoint = format!("/api/v1/orgs/{org}/endpoints/{}", w.endpoint_id);
    let patch = |body: Value| {
        owner
            .request(reqwest::Method::PATCH, &endpoint)
            .json(&body)
            .send()
    };

    // A single-server endpoint may expose tools under their own names.
    let response = patch(json!({"namespace_tools": false})).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["namespace_tools"], false);
    assert_eq!(body["tools"][0]["exposed_name"], "get_order");
    let snap = internal_snapshot(&app, w.org_id).await;
    assert_eq!(snap.endpoints[0].tools[0].exposed_name, "get_order");

    // ... but then it cannot combine a second server, whose names could shadow the first's.
    let second = {
        let scope = gatehouse_db::OrgScope::authorized(w.org_id);
        let mut tx = gatehouse_db::TenantTx::begin(&app.db.db, &scope).await.unwrap();
        let id = gatehouse_core::ids::ServerId::new();
        gatehouse_db::repos::servers::create(
            &mut tx,
            &gatehouse_db::repos::servers::NewServer {
                id,
                slug: "billing",
                name: "Billing",
                url: upstream.url(),
                transport: gatehouse_core::upstream::UpstreamTransport::StreamableHttp,
                auth: gatehouse_db::repos::servers::StoredAuth::none(),
                send_caller_assertion: false,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id
    };
    let both = json!({"servers": [{"server_id": w.server_id}, {"server_id": second}]});
    let (status, problem_body) = problem(
        owner
            .request(reqwest::Method::PUT, &format!("{endpoint}/servers"))
            .json(&both)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, problem_body["field"].as_str()), (400, Some("servers")));

    // Namespaced again, both servers fit; turning namespacing off is then refused.
    assert_eq!(
        patch(json!({"namespace_tools": true})).await.unwrap().status(),
        200
    );
    let combined = owner
        .request(reqwest::Method::PUT, &format!("{endpoint}/servers"))
        .json(&both)
        .send()
        .await
        .unwrap();
    assert_eq!(combined.status(), 200);
    let (status, problem_body) = problem(patch(json!({"namespace_tools": false})).await.unwrap()).await;
    assert_eq!(
        (status, problem_body["field"].as_str()),
        (400, Some("namespace_tools"))
    );
    let snap = internal_snapshot(&app, w.org_id).await;
    assert_eq!(snap.endpoints[0].tools[0].exposed_name, "orders__get_order");

    // Prompts and resources: off by default, on for a named scope or for any caller.
    assert_eq!(snap.endpoints[0].prompts, None);
    assert_eq!(snap.endpoints[0].resources, None);
    let (status, problem_body) = problem(
        patch(json!({"prompts": {"enabled": true, "scope": "no-such-scope"}}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, problem_body["field"].as_str()),
        (400, Some("prompts.scope"))
    );
    let scope_name: String = {
        let scopes: Value = get_json(&owner, &format!("/api/v1/orgs/{org}/scopes")).await;
        scopes[0]["name"].as_str().unwrap().to_owned()
    };
    let response = patch(json!({
        "prompts": {"enabled": true, "scope": scope_name},
        "resources": {"enabled": true}
    }))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let snap = internal_snapshot(&app, w.org_id).await;
    assert_eq!(
        snap.endpoints[0].prompts,
        Some(gatehouse_core::snapshot::CapabilityGrant {
            scope: Some(scope_name)
        })
    );
    assert_eq!(
        snap.endpoints[0].resources,
        Some(gatehouse_core::snapshot::CapabilityGrant { scope: None })
    );
}

/// Extra (vendor) methods and scope publishing: validated (never a method of MCP's own
/// namespaces), stored, and carried by the snapshot with every scope's minimum role.
#[tokio::test]
async fn endpoint_extra_methods_and_scope_publishing_reach_the_snapshot() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let owner = app.user("owner@example.com").await;
    let w = crate::world::world(&app, &owner, &[], upstream.url()).await;
    let org = w.slug.clone();
    let endpoint = format!("/api/v1/orgs/{org}/endpoints/{}", w.endpoint_id);
    let patch = |body: Value| {
        owner
            .request(reqwest::Method::PATCH, &endpoint)
            .json(&body)
            .send()
    };
    let snap = internal_snapshot(&app, w.org_id).await;
    assert!(snap.endpoints[0].extra_methods.is_empty());
    assert!(!snap.endpoints[0].publish_scopes);
    for (bad, field) in [
        (json!(["tasks/*"]), "extra_methods[0]"),
        (json!(["acme/x", "tools/secret"]), "extra_methods[1]"),
        (json!(["*"]), "extra_methods[0]"),
        (json!(["acme x"]), "extra_methods[0]"),
        (
            json!((0..33).map(|i| format!("acme/m{i}")).collect::<Vec<_>>()),
            "extra_methods",
        ),
    ] {
        let (status, body) = problem(patch(json!({"extra_methods": bad})).await.unwrap()).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{bad}: {body}"
        );
    }
    let response =
        patch(json!({"extra_methods": ["vendor.ping", "acme/*", "acme/*"], "publish_scopes": true}))
            .await
            .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["extra_methods"], json!(["acme/*", "vendor.ping"]));
    assert_eq!(body["publish_scopes"], true);
    // Other changes keep them.
    let body: Value = patch(json!({"name": "Renamed"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["extra_methods"], json!(["acme/*", "vendor.ping"]));
    let snap = internal_snapshot(&app, w.org_id).await;
    assert_eq!(snap.endpoints[0].extra_methods, ["acme/*", "vendor.ping"]);
    assert!(snap.endpoints[0].publish_scopes);
    for scope in &snap.endpoints[0].scopes {
        assert!(scope.min_role.is_some(), "{scope:?}");
    }
}

/// An endpoint lists its tools in the order its server lists them (clients often take the first
/// tool for the server's main one), and follows the server when it reorders them: the new order
/// is published like any other change, and a sync that finds the same order publishes nothing.
#[tokio::test]
async fn an_endpoint_lists_tools_in_the_order_its_server_does() {
    let app = app_reaching_loopback().await;
    let upstream = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        reverse_tools_after_calls: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let owner = app.user("owner@example.com").await;
    let (org, org_id) = app.org(&owner, "acme").await;
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "fixture", "name": "Fixture", "url": upstream.url()}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let server_id = created["server"]["id"].as_str().unwrap().to_owned();
    let upstream_order = upstream_tool_names(upstream.url()).await;
    let mut by_name = upstream_order.clone();
    by_name.sort();
    assert_ne!(
        upstream_order, by_name,
        "the fixture does not list its tools by name"
    );

    // Approve every tool, in name order (approval order must not matter either).
    let listed: Vec<Value> = server_tools(&owner, &org, &server_id).await;
    assert_eq!(listed.len(), upstream_order.len());
    for tool in &listed {
        let id = tool["id"].as_str().unwrap();
        assert_eq!(
            approve(&owner, &org, id, &tool["definition_hash"]).await.status(),
            200
        );
    }
    let endpoint: Value = owner
        .post(&format!("/api/v1/orgs/{org}/endpoints"))
        .json(&json!({"slug": "all", "name": "All", "servers": [{"server_id": server_id}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint_path = format!(
        "/api/v1/orgs/{org}/endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );

    let served = |snap: &gatehouse_core::snapshot::OrgSnapshot| -> Vec<String> {
        snap.endpoints[0]
            .tools
            .iter()
            .map(|t| match &t.target {
                ToolTarget::Upstream { upstream_name, .. } => upstream_name.clone(),
                other => panic!("not an upstream tool: {other:?}"),
            })
            .collect()
    };
    let rest_order = |endpoint: &Value| -> Vec<String> {
        endpoint["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["exposed_name"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("fixture__")
                    .to_owned()
            })
            .collect()
    };
    let snap = internal_snapshot(&app, org_id).await;
    assert_eq!(served(&snap), upstream_order);
    assert_eq!(
        rest_order(&get_json(&owner, &endpoint_path).await),
        upstream_order
    );

    // The same order again: nothing to publish.
    assert_eq!(sync(&owner, &org, &server_id).await.status(), 200);
    assert_eq!(internal_snapshot(&app, org_id).await.version, snap.version);

    // The server reverses its list: the endpoint follows, as a new configuration version.
    call_upstream_once(upstream.url(), "test_simple_text").await;
    let reversed = upstream_tool_names(upstream.url()).await;
    assert_eq!(reversed, upstream_order.iter().rev().cloned().collect::<Vec<_>>());
    let mut changes = app.notifier.subscribe();
    assert_eq!(sync(&owner, &org, &server_id).await.status(), 200);
    let change = next_change(&mut changes, org_id).await;
    assert!(change.version > snap.version);
    let snap = internal_snapshot(&app, org_id).await;
    assert_eq!(served(&snap), reversed);
    assert_eq!(rest_order(&get_json(&owner, &endpoint_path).await), reversed);
}

/// The names of the tools `url` lists, in its order.
async fn upstream_tool_names(url: &str) -> Vec<String> {
    let client = rmcp::ServiceExt::serve(
        (),
        rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned()),
    )
    .await
    .unwrap();
    let tools = client.peer().list_all_tools().await.unwrap();
    let _ = client.cancel().await;
    tools.into_iter().map(|t| t.name.into_owned()).collect()
}
