//! A server's stored credential is write-only and stays with the destination it was supplied
//! for: moving the server to another origin needs the credential again. What a server answers is
//! read within bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::register;
use crate::generated::{app_reaching_loopback, fixture};

/// Counts connections on a loopback port: where a leaked credential would have gone.
async fn canary() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (port, hits)
}

#[tokio::test]
async fn a_url_on_another_origin_needs_the_credential_again() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let owner = app.user("owner@example.com").await;
    let (org, _) = app.org(&owner, "moves").await;
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "orders", "name": "Orders", "url": upstream.url(),
               "auth": {"kind": "bearer", "token": "stored-secret"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["server"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/orgs/{org}/servers/{id}");
    let patch = |body: Value| {
        let request = owner.request(reqwest::Method::PATCH, &path).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.json::<Value>().await.unwrap())
        }
    };

    // Another origin without the credential: refused, nothing sent there, nothing changed.
    let (port, hits) = canary().await;
    let elsewhere = format!("http://127.0.0.1:{port}/mcp");
    let (status, content_type, problem) = patch(json!({"url": elsewhere})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(problem["code"], "credential_required", "{problem}");
    assert_eq!(problem["field"], "auth", "{problem}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the credential travelled");
    let (_, _, unchanged) = patch(json!({"name": "Orders"})).await;
    assert_eq!(unchanged["server"]["url"], upstream.url(), "{unchanged}");
    // Another scheme or port is another origin too.
    let other_scheme = upstream.url().replacen("http://", "https://", 1);
    assert_eq!(patch(json!({"url": other_scheme})).await.0, 422);

    // The same origin (another path): allowed without the credential.
    let same_origin = format!("{}?v=2", upstream.url());
    let (status, _, moved) = patch(json!({"url": same_origin})).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["server"]["url"], same_origin);

    // Another origin with the credential supplied again: allowed.
    let (status, _, moved) = patch(json!({"url": elsewhere,
        "auth": {"kind": "bearer", "token": "the-new-origin's-secret"}}))
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["server"]["url"], elsewhere);

    // A server without a stored credential has nothing to protect.
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "open", "name": "Open", "url": upstream.url()}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let open = created["server"]["id"].as_str().unwrap();
    let moved = owner
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/orgs/{org}/servers/{open}"),
        )
        .json(&json!({"url": format!("http://127.0.0.1:{port}/other")}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status().as_u16(), 200);
}

/// An HTTP+SSE server whose first event never ends: the sync stops at the event limit instead of
/// buffering the stream until the deadline.
#[tokio::test]
async fn an_endless_sse_event_is_cut_at_the_limit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n\r\nevent: endpoint\r\ndata: ";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                // 64 MiB at most, then hold the connection open.
                for _ in 0..1024 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            });
        }
    });
    let app = app_reaching_loopback().await;
    let owner = app.user("owner@example.com").await;
    let (org, _) = app.org(&owner, "endless").await;
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "old", "name": "Old", "url": format!("http://127.0.0.1:{port}/sse"),
               "transport": "http_sse"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let error = created["sync"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("oversized event"), "{created}");
}
