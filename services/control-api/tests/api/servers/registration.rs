//! Registering a server syncs its tools at once, whatever the upstream needs: its own credential
//! (OAuth client credentials exchanged for a token) or the deprecated HTTP+SSE transport.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{register, server_tools, sync};
use crate::generated::app_reaching_loopback;

#[tokio::test]
async fn oauth_client_credentials_are_exchanged_for_a_token_sent_upstream() {
    let app = app_reaching_loopback().await;
    let upstream = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        session_mode: mcp_fixture::SessionMode::Stateless,
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // A client-credentials token endpoint (RFC 6749 §4.4) that checks HTTP Basic client auth.
    let token_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_port = token_listener.local_addr().unwrap().port();
    let seen_requests = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = seen_requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = token_listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.lock().unwrap().push(request.clone());
            // Basic base64("svc-client:svc-secret")
            let good = request
                .to_ascii_lowercase()
                .contains("authorization: basic c3zjlwnsawvuddpzdmmtc2vjcmv0");
            let reply = if good && request.contains("grant_type=client_credentials") {
                let body = r#"{"access_token":"issued-access-token","token_type":"Bearer","expires_in":300}"#;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = r#"{"error":"invalid_client"}"#;
                format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    let owner = app.user("owner@example.com").await;
    let (org, _) = app.org(&owner, "acme").await;
    let token_url = format!("http://127.0.0.1:{token_port}/oauth/token");
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "cc", "name": "CC", "url": upstream.url(),
               "auth": {"kind": "oauth_client_credentials", "token_url": token_url,
                        "client_id": "svc-client", "client_secret": "svc-secret", "scope": "mcp"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sync"]["error"], Value::Null, "{created}");
    assert!(created["sync"]["tools_listed"].as_u64().unwrap() > 0);
    assert!(
        seen_requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("scope=mcp"))
    );
    let bearer_upstream = upstream
        .headers_snapshot()
        .iter()
        .flatten()
        .any(|(k, v)| k == "authorization" && v == "Bearer issued-access-token");
    assert!(bearer_upstream, "the issued token did not reach the upstream");
    assert!(!created.to_string().contains("svc-secret"));

    // A wrong secret: the sync fails with the token endpoint's status, nothing more.
    let id = created["server"]["id"].as_str().unwrap();
    let patched: Value = owner
        .request(reqwest::Method::PATCH, &format!("/api/v1/orgs/{org}/servers/{id}"))
        .json(&json!({"auth": {"kind": "oauth_client_credentials", "token_url": format!("http://127.0.0.1:{token_port}/oauth/token"),
                               "client_id": "svc-client", "client_secret": "wrong"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let error = patched["sync"]["error"].as_str().unwrap();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(
        !error.contains("invalid_client"),
        "upstream text reflected: {error}"
    );
}

/// An old server on the deprecated HTTP+SSE transport (the official TypeScript SDK's
/// `SSEServerTransport`) is synced like any other: its tools are listed and wait for approval.
#[tokio::test]
async fn an_http_sse_server_is_synced() {
    let legacy = gatehouse_test_support::node_tools::LegacySseServer::start().await;
    let app = app_reaching_loopback().await;
    let owner = app.user("owner@example.com").await;
    let (org, _) = app.org(&owner, "legacy").await;
    let (status, created) = register(
        &owner,
        &org,
        json!({
            "slug": "old",
            "name": "Old server",
            "url": legacy.url(),
            "transport": "http_sse",
            "auth": {"kind": "bearer", "token": "legacy-token"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sync"]["error"], Value::Null, "{created}");
    assert_eq!(created["sync"]["new"], json!(["legacy_echo"]), "{created}");
    let server_id = created["server"]["id"].as_str().unwrap();
    let tools: Vec<Value> = server_tools(&owner, &org, server_id).await;
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["status"], "pending");
    assert_eq!(tools[0]["definition"]["description"], "Echoes its text");

    // Syncing again finds nothing new.
    let again: Value = sync(&owner, &org, server_id).await.json().await.unwrap();
    assert_eq!(again["sync"]["tools_listed"], 1, "{again}");
    assert_eq!(again["sync"]["new"], json!([]), "{again}");
}

/// A sync learns the revision the server speaks and records it on the server.
#[tokio::test]
async fn a_sync_records_the_protocol_revision_the_server_speaks() {
    use mcp_fixture::{FixtureOptions, ProtocolMode, spawn_fixture};
    let app = app_reaching_loopback().await;
    let owner = app.user("owner@example.com").await;
    let (org, _) = app.org(&owner, "acme").await;
    for (slug, protocol, revision) in [
        ("stateless", ProtocolMode::Only2026, "2026-07-28"),
        ("sessions", ProtocolMode::Only2025, "2025-11-25"),
    ] {
        let upstream = spawn_fixture(FixtureOptions {
            protocol,
            ..Default::default()
        })
        .await
        .unwrap();
        let (status, created) = register(
            &owner,
            &org,
            json!({"slug": slug, "name": slug, "url": upstream.url()}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["sync"]["error"], Value::Null, "{created}");
        assert!(created["sync"]["tools_listed"].as_u64().unwrap() > 0, "{created}");
        assert_eq!(created["server"]["protocol_revision"], revision, "{created}");
    }
}
