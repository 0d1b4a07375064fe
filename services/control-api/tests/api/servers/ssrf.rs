//! The SSRF guard: upstream and token URLs that reach internal addresses are refused with generic
//! errors, before and during a sync (redirects), and nothing ever connects to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{register, sync};
use crate::helpers::TestApp;
use crate::world::problem;

/// A listener that counts every connection: it must see none.
async fn canary() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (port, hits)
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_upstreams_with_generic_errors() {
    // Default egress policy: https only, public addresses only.
    let app = TestApp::spawn().await;
    let (port, hits) = canary().await;
    let owner = app.user("owner@example.com").await;
    let (org, org_id) = app.org(&owner, "acme").await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM domain_servers")
        .fetch_one(&mut app.db.admin().await)
        .await
        .unwrap();
    let hosts = [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "localhost",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "10.0.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "[fc00::1]",
        "[fe80::1]",
    ];
    for scheme in ["https", "http"] {
        for host in hosts {
            let url = format!("{scheme}://{host}:{port}/mcp");
            let response = owner
                .post(&format!("/api/v1/orgs/{org}/servers"))
                .json(&json!({"slug": "evil", "name": "Evil", "url": url}))
                .send()
                .await
                .unwrap();
            let (status, body) = problem(response).await;
            assert_eq!(status, 400, "{url}: {body}");
            assert_eq!(body["field"], "url", "{url}: {body}");
            let detail = body["detail"].as_str().unwrap();
            assert!(
                !detail.contains(&port.to_string()) && !detail.contains("127.0.0.1"),
                "{detail}"
            );
        }
    }
    // The OAuth token URL goes through the same guard.
    let response = owner
        .post(&format!("/api/v1/orgs/{org}/servers"))
        .json(&json!({
            "slug": "evil", "name": "Evil", "url": "https://mcp.example.com/mcp",
            "auth": {"kind": "oauth_client_credentials", "token_url": format!("http://127.0.0.1:{port}/token"),
                     "client_id": "c", "client_secret": "s"}
        }))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "auth.token_url");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the canary was reached");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM domain_servers")
        .fetch_one(&mut app.db.admin().await)
        .await
        .unwrap();
    assert_eq!(before, after, "a refused server was stored");
    let _ = org_id;
}

#[tokio::test]
async fn a_redirect_to_loopback_during_sync_is_refused() {
    // The upstream is reached by name (allowed host); it redirects to 127.0.0.1, which is not.
    let app = TestApp::spawn_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_hosts", "[\"localhost\"]"),
    ])
    .await;
    let (canary_port, hits) = canary().await;
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_port = redirector.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = redirector.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{canary_port}/mcp\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    let owner = app.user("owner@example.com").await;
    let (org, _) = app.org(&owner, "acme").await;
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "redirecting", "name": "Redirecting", "url": format!("http://localhost:{redirect_port}/mcp")}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let error = created["sync"]["error"].as_str().expect("the sync failed");
    assert!(!error.contains(&canary_port.to_string()), "{error}");
    assert_eq!(created["server"]["last_sync_error"], error);
    let id = created["server"]["id"].as_str().unwrap();
    let again = sync(&owner, &org, id).await;
    let (status, body) = problem(again).await;
    assert_eq!(status, 502, "{body}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect reached the canary");
}
