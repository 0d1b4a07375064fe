//! Endpoint configuration made through the REST API reaches the dataplane within a second, and
//! is withdrawn as fast.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Admin, metadata_url, platform_reaching_loopback, wait_for_status};

#[tokio::test]
async fn endpoint_configuration_reaches_the_dataplane_within_a_second() {
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions::default())
        .await
        .unwrap();
    let (admin, _org_id) = Admin::create(&platform, "admin@example.com", "acme").await;
    let server_id = admin
        .provision(
            "acme",
            json!({"slug": "fixture", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
            &[("support:read", &["test_simple_text"])],
        )
        .await;
    let prm_url = metadata_url(&platform, "acme", "support");
    assert_eq!(
        platform.http.get(&prm_url).send().await.unwrap().status(),
        404,
        "no endpoint yet"
    );

    admin
        .create_endpoint("acme", "support", "Support", &server_id)
        .await;
    let took = wait_for_status(&platform, &prm_url, 200, Duration::from_secs(1)).await;
    eprintln!("endpoint served by the dataplane {took:?} after it was created");
    let prm: Value = platform
        .http
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resource = format!("{}/acme/support/mcp", platform.dataplane);
    assert_eq!(prm["resource"], json!(resource));
    assert_eq!(prm["authorization_servers"], json!([platform.cfg.issuer()]));
    assert_eq!(prm["scopes_supported"], json!(["support:read"]));

    // The endpoint challenges unauthenticated callers, pointing at that metadata.
    let response = platform
        .http
        .post(&resource)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"support:read\""), "{challenge}");

    // Deleting the endpoint withdraws it just as fast.
    let endpoints = admin
        .send(reqwest::Method::GET, "/api/v1/orgs/acme/endpoints", None)
        .await;
    let list = endpoints
        .as_array()
        .or_else(|| endpoints["items"].as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(id) = list
        .iter()
        .find(|e| e["slug"] == "support")
        .and_then(|e| e["id"].as_str())
    {
        // (`send` asserts the deletion succeeded.)
        admin
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/orgs/acme/endpoints/{id}"),
                None,
            )
            .await;
        wait_for_status(&platform, &prm_url, 404, Duration::from_secs(1)).await;
    }
}
