//! The client against a real (if tiny) HTTP upstream: pools and breakers.

use super::*;

/// An HTTP/1.1 upstream that answers every POST with one JSON-RPC result on a kept-alive
/// connection, and counts the connections it accepted.
async fn counting_upstream() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: its head, then `content-length` bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + length);
                    let body = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err()
                        || socket.write_all(body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

pub(super) fn server_at(url: String) -> ServerState {
    use gatehouse_core::snapshot::{ServerSnapshot, UpstreamAuth};
    ServerState {
        org_id: OrgId::new(),
        url: url::Url::parse(&url).ok(),
        snapshot: ServerSnapshot {
            id: ServerId::new(),
            slug: "echo".into(),
            url,
            transport: UpstreamTransport::StreamableHttp,
            auth: UpstreamAuth::None,
            send_caller_assertion: false,
        },
        credential: Ok(UpstreamCredential::None),
    }
}

fn outbound(server: &ServerState) -> Outbound<'_> {
    Outbound {
        server,
        body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
        protocol_version: None,
        session_id: None,
        mcp_headers: Vec::new(),
        caller: None,
        client_capabilities: None,
    }
}

#[tokio::test]
async fn a_worker_pool_keeps_its_own_connections_and_shares_the_breakers() {
    use std::sync::atomic::Ordering;
    let egress = Egress::from_config(&gatehouse_core::config::EgressConfig {
        allow_http: true,
        allow_private_networks: true,
        allow_hosts: Vec::new(),
        request_timeout_ms: 5_000,
        max_redirects: 0,
        max_document_bytes: 1 << 20,
    })
    .unwrap();
    let first = Upstreams::new(
        egress,
        Duration::from_secs(5),
        1 << 20,
        AssertionSigner::new([7; 32], "https://gatehouse.test".into()).unwrap(),
        &[9; 32],
        SessionLimits {
            max_sessions: 16,
            idle: Duration::from_secs(60),
        },
    )
    .unwrap();
    let second = first.with_own_pool().unwrap();
    let (addr, accepted) = counting_upstream().await;
    let echo = server_at(format!("http://{addr}/mcp"));

    // Between calls, a moment for the pool to take the connection back (hyper returns it
    // from a task of its own), so that every call after the first could reuse it.
    let settle = || tokio::time::sleep(Duration::from_millis(50));
    for _ in 0..3 {
        assert!(matches!(
            first.post(outbound(&echo)).await,
            Ok(Reply::Json { .. })
        ));
        settle().await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one pool reuses its connection"
    );
    for _ in 0..3 {
        assert!(matches!(
            second.post(outbound(&echo)).await,
            Ok(Reply::Json { .. })
        ));
        settle().await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the other pool opens its own");

    // An upstream that refuses connections opens the breaker through one handle; the other
    // then fails fast too (breakers belong to the upstream, not to a pool).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = server_at(format!("http://{}/mcp", closed.local_addr().unwrap()));
    drop(closed);
    for _ in 0..breaker::SETTINGS.threshold {
        assert!(matches!(
            first.post(outbound(&dead)).await,
            Err(UpstreamError::Unavailable(_))
        ));
    }
    match second.post(outbound(&dead)).await {
        Err(UpstreamError::Unavailable(why)) => assert_eq!(why, "circuit breaker open"),
        _ => panic!("the other pool's handle must see the open breaker"),
    }
}
