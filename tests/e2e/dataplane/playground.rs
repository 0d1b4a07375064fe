//! The console's playground (`POST /orgs/{org}/endpoints/{id}/playground`): a call made as the
//! signed-in user through the real dataplane, with that user's own grants, audited and metered
//! like any other call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::role::Role;
use gatehouse_db::repos::memberships;
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_test_support::console::{ConsoleClient, signed_in_owner};

use super::{Admin, metadata_url, platform_reaching_loopback, wait_for_status};
use crate::platform::Platform;

/// A signed-in user who owns `own_org` (and is nothing anywhere else yet).
async fn user(
    platform: &Platform,
    email: &str,
    own_org: &str,
) -> (ConsoleClient, gatehouse_core::ids::UserId) {
    let owner = signed_in_owner(&platform.db.db, email, own_org).await;
    let client = ConsoleClient {
        http: platform.http.clone(),
        base: platform.control_api.clone(),
        cookie: format!("{}={}", session_cookie_name(true), owner.session_token),
        csrf: (
            CSRF_HEADER,
            csrf_token(&platform.cfg.derived_keys().unwrap().cookie, &owner.session_token),
        ),
    };
    (client, owner.user_id)
}

fn listed_names(answer: &Value) -> Vec<String> {
    answer["response"]["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_playground_calls_as_the_signed_in_user_with_their_own_grants() {
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions::default())
        .await
        .unwrap();
    let (owner, org_id) = Admin::create(&platform, "owner@example.com", "acme").await;
    let server_id = owner
        .provision(
            "acme",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url()}),
            &[
                ("support:text", &["test_simple_text"]),
                ("support:media", &["test_image_content"]),
            ],
        )
        .await;
    // Only admins and above may hold the media scope.
    let scopes = owner
        .send(reqwest::Method::GET, "/api/v1/orgs/acme/scopes", None)
        .await;
    let media = scopes
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "support:media")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/orgs/acme/scopes/{media}"),
            Some(json!({"min_role": "admin"})),
        )
        .await;
    let endpoint = owner
        .create_endpoint("acme", "support", "Support", &server_id)
        .await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    wait_for_status(
        &platform,
        &metadata_url(&platform, "acme", "support"),
        200,
        Duration::from_secs(2),
    )
    .await;
    let path = format!("/api/v1/orgs/acme/endpoints/{endpoint_id}/playground");

    // The owner may hold both scopes: both tools are listed, and a call goes through.
    let listed = owner
        .send(
            reqwest::Method::POST,
            &path,
            Some(json!({"method": "tools/list"})),
        )
        .await;
    assert_eq!(listed["http_status"], 200, "{listed}");
    assert_eq!(listed["request"]["method"], "tools/list");
    assert_eq!(
        listed_names(&listed),
        vec!["fx__test_simple_text", "fx__test_image_content"]
    );
    assert_eq!(listed["scopes"], json!(["support:media", "support:text"]));
    let called = owner
        .send(
            reqwest::Method::POST,
            &path,
            Some(
                json!({"method": "tools/call", "params": {"name": "fx__test_simple_text", "arguments": {}}}),
            ),
        )
        .await;
    assert!(called["response"]["result"]["content"].is_array(), "{called}");
    assert_eq!(called["request"]["params"]["name"], "fx__test_simple_text");

    // A viewer of the org gets the viewer's grants: the media tool is neither listed nor callable.
    let (viewer, viewer_id) = user(&platform, "viewer@example.com", "viewers-own").await;
    let mut tx = TenantTx::begin(&platform.db.db, &OrgScope::authorized(org_id))
        .await
        .unwrap();
    memberships::add(&mut tx, viewer_id, Role::Viewer).await.unwrap();
    tx.commit().await.unwrap();
    let listed = viewer
        .send(
            reqwest::Method::POST,
            &path,
            Some(json!({"method": "tools/list"})),
        )
        .await;
    assert_eq!(listed_names(&listed), vec!["fx__test_simple_text"]);
    assert_eq!(listed["scopes"], json!(["support:text"]));
    let refused = viewer
        .send(
            reqwest::Method::POST,
            &path,
            Some(json!({"method": "tools/call", "params": {"name": "fx__test_image_content", "arguments": {}}})),
        )
        .await;
    assert!(refused["response"]["error"].is_object(), "{refused}");
    assert!(refused["response"]["result"].is_null(), "{refused}");

    // A user of another org cannot reach the endpoint (the org is not even confirmed).
    let (stranger, _) = user(&platform, "stranger@example.com", "elsewhere").await;
    let denied = stranger
        .try_send(
            reqwest::Method::POST,
            &path,
            Some(json!({"method": "tools/list"})),
        )
        .await
        .unwrap_err();
    assert!(denied.contains("404"), "{denied}");

    // Invalid requests are refused at their field before anything is sent.
    let invalid = owner
        .try_send(
            reqwest::Method::POST,
            &path,
            Some(json!({"method": "tools/call", "params": {"arguments": {}}})),
        )
        .await
        .unwrap_err();
    assert!(invalid.contains("params.name"), "{invalid}");
    let unsupported = owner
        .try_send(
            reqwest::Method::POST,
            &path,
            Some(json!({"method": "resources/list"})),
        )
        .await
        .unwrap_err();
    assert!(
        unsupported.contains("400") || unsupported.contains("422"),
        "{unsupported}"
    );

    // The calls are in the org's audit trail as the users' own, through the dataplane.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let audit = owner
            .send(reqwest::Method::GET, "/api/v1/orgs/acme/audit?limit=1000", None)
            .await;
        let events = audit["events"].as_array().unwrap();
        let by_owner_through_dataplane = events
            .iter()
            .any(|e| e["source"] == "data" && e["action"] == "tool.call" && e["actor_type"] == "user");
        let playground = events
            .iter()
            .filter(|e| e["action"] == "endpoint.playground_call")
            .count();
        if by_owner_through_dataplane {
            assert_eq!(playground, 4, "{audit}");
            break;
        }
        assert!(Instant::now() < deadline, "no data-plane tool.call in {audit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
