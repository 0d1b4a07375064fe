//! The conformance suite through the whole platform: the fixture registered, its tools approved
//! and granted through the REST API, the endpoint's configuration reaching the dataplane through
//! the snapshot API, and an access token from the authorization server (client credentials). The
//! dataplane crate's own conformance tests install the same configuration directly and sign their
//! tokens themselves; this one proves the platform's real path.

use serde_json::json;

use gatehouse_test_support::conformance::run_suite;

use super::{Admin, platform_reaching_loopback, service_client_token};

#[tokio::test]
async fn conformance_suite_passes_with_an_authorization_server_token() {
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(Default::default()).await.unwrap();
    let (admin, _) = Admin::create(&platform, "conformance@example.com", "conforg").await;
    let server_id = admin
        .provision(
            "conforg",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
            &[("conformance", &["*"])],
        )
        .await;
    let endpoint = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/conforg/endpoints",
            Some(json!({
                "slug": "mcp",
                "name": "Conformance",
                "servers": [{"server_id": server_id}],
                // The suite calls tools, prompts and resources by their fixture names.
                "namespace_tools": false,
                "prompts": {"enabled": true},
                "resources": {"enabled": true},
            })),
        )
        .await;
    let (resource, token) =
        service_client_token(&platform, &admin, "conforg", &endpoint, &["conformance"]).await;
    run_suite(
        "@modelcontextprotocol/conformance",
        "platform-alpha12",
        &resource,
        platform.dataplane.trim_end_matches('/'),
        &token,
    )
    .await;
}
