//! Tokens from the real authorization server and service tokens from the REST API, through the
//! real dataplane, in both eras.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Admin, client_credentials_token, metadata_url, platform_reaching_loopback, wait_for, wait_for_status,
};
use crate::platform::Platform;

/// Posts one MCP request to the dataplane and returns (status, response message or body).
pub(super) async fn mcp(
    platform: &Platform,
    url: &str,
    token: &str,
    version: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Value, Option<String>) {
    let mut req = platform
        .http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if version >= "2026-07-28" {
        req = req
            .header("mcp-protocol-version", version)
            .header("mcp-method", body["method"].as_str().unwrap());
        if let Some(name) = body["params"]["name"].as_str() {
            req = req.header("mcp-name", name);
        }
    } else if let Some(s) = session {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", version);
    }
    let response = req.json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let value = if sse {
        text.split("\n\n")
            .filter_map(|f| {
                let data: Vec<&str> = f.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                serde_json::from_str::<Value>(&data.join("\n")).ok()
            })
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, value, session)
}

pub(super) fn request(version: &str, id: i64, method: &str, mut params: Value) -> Value {
    if version >= "2026-07-28" {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Tokens issued by the real authorization server (client credentials) and service tokens from the
/// REST API, through the real dataplane: scopes decide what is listed and callable, tokens are
/// bound to their endpoint, revocation takes effect within a second, and no token reaches the
/// upstream.
#[tokio::test]
async fn tokens_from_the_authorization_server_through_the_dataplane() {
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (admin, _) = Admin::create(&platform, "owner@example.com", "acme").await;
    let server_id = admin
        .provision(
            "acme",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "bearer", "token": "upstream-own-credential"}}),
            &[
                ("support:text", &["test_simple_text"]),
                ("support:media", &["test_image_content"]),
            ],
        )
        .await;
    let mut endpoint_ids = Vec::new();
    for slug in ["support", "other"] {
        let e = admin.create_endpoint("acme", slug, slug, &server_id).await;
        endpoint_ids.push(e["id"].as_str().unwrap().to_owned());
    }
    let client = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/service-clients",
            Some(json!({"name": "ci", "endpoint_id": endpoint_ids[0], "scopes": ["support:text"]})),
        )
        .await;
    let service_token = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/service-tokens",
            Some(json!({"name": "nightly", "endpoint_id": endpoint_ids[0], "scopes": ["support:media"]})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let resource = format!("{}/acme/support/mcp", platform.dataplane);
    let other = format!("{}/acme/other/mcp", platform.dataplane);
    let jwt = client_credentials_token(&platform, &client, &resource, Some("support:text")).await;
    // The endpoint is served once its snapshot arrived.
    wait_for_status(
        &platform,
        &metadata_url(&platform, "acme", "support"),
        200,
        Duration::from_secs(2),
    )
    .await;

    for version in ["2025-11-25", "2026-07-28"] {
        for (token, granted, refused) in [
            (&jwt, "test_simple_text", "test_image_content"),
            (&service_token, "test_image_content", "test_simple_text"),
        ] {
            let mut session = None;
            if version < "2026-07-28" {
                let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
                let (status, body, s) = mcp(&platform, &resource, token, version, None, init).await;
                assert_eq!(status, 200, "{version} initialize: {body}");
                session = s;
                mcp(
                    &platform,
                    &resource,
                    token,
                    version,
                    session.as_deref(),
                    json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
                )
                .await;
            }
            let (status, listed, _) = mcp(
                &platform,
                &resource,
                token,
                version,
                session.as_deref(),
                request(version, 1, "tools/list", json!({})),
            )
            .await;
            assert_eq!(status, 200, "{version}: {listed}");
            let names: Vec<&str> = listed["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                vec![format!("fx__{granted}")],
                "{version}: only the granted tool"
            );
            let (_, called, _) = mcp(
                &platform,
                &resource,
                token,
                version,
                session.as_deref(),
                request(
                    version,
                    2,
                    "tools/call",
                    json!({"name": format!("fx__{granted}"), "arguments": {}}),
                ),
            )
            .await;
            assert!(called["result"]["content"].is_array(), "{version}: {called}");
            let (_, denied, _) = mcp(
                &platform,
                &resource,
                token,
                version,
                session.as_deref(),
                request(
                    version,
                    3,
                    "tools/call",
                    json!({"name": format!("fx__{refused}"), "arguments": {}}),
                ),
            )
            .await;
            assert_eq!(denied["error"]["code"], -32602, "{version}: {denied}");
        }
    }
    // A token for one endpoint does not open another, even of the same org.
    for token in [&jwt, &service_token] {
        let (status, _, _) = mcp(
            &platform,
            &other,
            token,
            "2026-07-28",
            None,
            request("2026-07-28", 1, "tools/list", json!({})),
        )
        .await;
        assert_eq!(status, 401);
    }

    // Revoking the service client stops its tokens within a second.
    let revoked_at = Instant::now();
    // (`send` asserts the deletion succeeded.)
    admin
        .send(
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/orgs/acme/service-clients/{}",
                client["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    wait_for(Duration::from_secs(1), || async {
        mcp(
            &platform,
            &resource,
            &jwt,
            "2026-07-28",
            None,
            request("2026-07-28", 9, "tools/list", json!({})),
        )
        .await
        .0 == 401
    })
    .await;
    eprintln!(
        "revocation honoured {:?} after the REST call",
        revoked_at.elapsed()
    );

    // The upstream saw its own credential and never a client token.
    let seen = fixture.headers_snapshot();
    assert!(
        seen.iter()
            .flatten()
            .any(|(k, v)| k == "authorization" && v == "Bearer upstream-own-credential")
    );
    for (name, value) in seen.iter().flatten() {
        assert!(
            !value.contains(&jwt) && !value.contains(&service_token),
            "a client token reached the upstream in {name}"
        );
    }
}

/// What the REST API just created is served by the very next request: an endpoint (its MCP URL
/// and its resource metadata) and a service token answer at once, without waiting for the change
/// to reach the dataplane by announcement.
#[tokio::test]
async fn a_new_endpoint_and_service_token_answer_the_next_request() {
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(Default::default()).await.unwrap();
    let (admin, _) = Admin::create(&platform, "owner@example.com", "acme").await;
    let server_id = admin
        .provision(
            "acme",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url()}),
            &[("support:text", &["test_simple_text"])],
        )
        .await;
    let mut issued = String::new();
    for round in 0..3 {
        let slug = format!("desk{round}");
        let endpoint = admin.create_endpoint("acme", &slug, &slug, &server_id).await;
        for _ in 0..2 {
            let token = admin
                .send(
                    reqwest::Method::POST,
                    "/api/v1/orgs/acme/service-tokens",
                    Some(json!({"name": "fresh", "endpoint_id": endpoint["id"], "scopes": ["support:text"]})),
                )
                .await["secret"]
                .as_str()
                .unwrap()
                .to_owned();
            let url = format!("{}/acme/{slug}/mcp", platform.dataplane);
            let (status, listed, _) = mcp(
                &platform,
                &url,
                &token,
                "2026-07-28",
                None,
                request("2026-07-28", 1, "tools/list", json!({})),
            )
            .await;
            assert_eq!(status, 200, "round {round}: {listed}");
            assert_eq!(
                listed["result"]["tools"][0]["name"], "fx__test_simple_text",
                "{listed}"
            );
            issued = token;
        }
    }
    // Its protected resource metadata, which an MCP client reads first, is served at once too.
    admin.create_endpoint("acme", "late", "late", &server_id).await;
    let metadata = platform
        .http
        .get(metadata_url(&platform, "acme", "late"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    // A token nobody issued stays refused, however often it is tried.
    let (prefix, secret) = issued.rsplit_once('_').unwrap();
    let forged = format!("{prefix}_{}", "x".repeat(secret.len()));
    for _ in 0..5 {
        let (status, _, _) = mcp(
            &platform,
            &format!("{}/acme/desk0/mcp", platform.dataplane),
            &forged,
            "2026-07-28",
            None,
            request("2026-07-28", 1, "tools/list", json!({})),
        )
        .await;
        assert_eq!(status, 401);
    }
}
