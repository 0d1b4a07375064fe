//! The client against real (if tiny) HTTP upstreams: pools and breakers, the pager's limits, and
//! revision detection against the MCP fixture in each of its protocol modes.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;

/// An HTTP/1.1 upstream that answers every POST with `answer(request body)` as one JSON body on
/// a kept-alive connection, and counts the connections it accepted.
async fn scripted_upstream(
    answer: impl Fn(Value) -> Value + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = Arc::new(answer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
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
                    let request: Value =
                        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
                    buf.drain(..head_end + length);
                    let body = answer(request).to_string();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A stateless (2026-07-28) upstream whose `tools/list` pages are `page(cursor)`.
async fn stateless_upstream(
    page: impl Fn(Option<&Value>) -> Value + Send + Sync + 'static,
    pages_served: Arc<AtomicUsize>,
) -> Upstream {
    let (addr, _) = scripted_upstream(move |request| {
        let id = request["id"].clone();
        match request["method"].as_str() {
            Some("server/discover") => json!({"jsonrpc": "2.0", "id": id, "result": {
                "supportedVersions": [STATELESS_VERSION], "capabilities": {"tools": {}},
                "serverInfo": {"name": "scripted", "version": "1"}}}),
            Some("tools/list") => {
                pages_served.fetch_add(1, Ordering::SeqCst);
                json!({"jsonrpc": "2.0", "id": id, "result": page(request["params"].get("cursor"))})
            }
            _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
        }
    })
    .await;
    upstream_at(format!("http://{addr}/mcp"))
}

pub(super) fn upstream_at(url: String) -> Upstream {
    Upstream::new(
        ServerId::new(),
        url,
        UpstreamTransport::StreamableHttp,
        Ok(Credential::None),
        false,
    )
}

fn loopback_egress() -> Egress {
    Egress::from_config(&gatehouse_core::config::EgressConfig {
        allow_http: true,
        allow_private_networks: true,
        allow_hosts: Vec::new(),
        request_timeout_ms: 5_000,
        max_redirects: 0,
        max_document_bytes: 1 << 20,
    })
    .unwrap()
}

fn client() -> Client {
    Client::new(
        loopback_egress(),
        Settings {
            timeout: Duration::from_secs(5),
            max_message_bytes: 1 << 20,
            reply_key: [9; 32],
            sessions: SessionLimits {
                max_sessions: 16,
                idle: Duration::from_secs(60),
            },
            metrics_prefix: "gatehouse_test",
        },
        None,
    )
    .unwrap()
}

fn outbound(upstream: &Upstream) -> Outbound<'_> {
    Outbound {
        upstream,
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
    let first = client();
    let second = first.with_own_pool().unwrap();
    let (addr, accepted) = scripted_upstream(|_| json!({"jsonrpc": "2.0", "id": 1, "result": {}})).await;
    let echo = upstream_at(format!("http://{addr}/mcp"));

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
    let dead = upstream_at(format!("http://{}/mcp", closed.local_addr().unwrap()));
    drop(closed);
    for _ in 0..breaker::SETTINGS.threshold {
        assert!(matches!(
            first.post(outbound(&dead)).await,
            Err(UpstreamError::Unreachable(_))
        ));
    }
    match second.post(outbound(&dead)).await {
        Err(UpstreamError::Unavailable(why)) => assert_eq!(why, "circuit breaker open"),
        _ => panic!("the other pool's handle must see the open breaker"),
    }
}

#[tokio::test]
async fn the_pager_stops_at_its_page_limit() {
    let served = Arc::new(AtomicUsize::new(0));
    // Every page names a new cursor: a list that never ends.
    let endless = stateless_upstream(
        |cursor| {
            let next = cursor.and_then(Value::as_u64).unwrap_or(0) + 1;
            json!({"tools": [{"name": format!("t{next}"), "inputSchema": {"type": "object"}}], "nextCursor": next})
        },
        served.clone(),
    )
    .await;
    let (learned, listing) = client()
        .list_tools(&endless, ToolLimits::default())
        .await
        .unwrap();
    assert_eq!(learned.wire, Wire::Stateless);
    assert!(matches!(listing, Listing::TooManyPages), "{listing:?}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        MAX_PAGES,
        "no page past the limit is asked for"
    );

    // One page short of the limit, the list is read whole.
    let served = Arc::new(AtomicUsize::new(0));
    let long = stateless_upstream(
        |cursor| {
            let next = cursor.and_then(Value::as_u64).unwrap_or(0) + 1;
            let more = (next < MAX_PAGES as u64).then_some(next);
            json!({"tools": [{"name": format!("t{next}"), "inputSchema": {"type": "object"}}], "nextCursor": more})
        },
        served.clone(),
    )
    .await;
    match client().list_tools(&long, ToolLimits::default()).await.unwrap().1 {
        Listing::Tools(tools) => assert_eq!(tools.len(), MAX_PAGES),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_repeated_cursor_and_the_callers_bounds_stop_the_pager() {
    let tool = json!({"name": "t", "description": "x".repeat(1000), "inputSchema": {"type": "object"}});
    let page = move |_: Option<&Value>| json!({"tools": [tool.clone(), tool.clone()], "nextCursor": "same"});
    let served = Arc::new(AtomicUsize::new(0));
    let stuck = stateless_upstream(page, served.clone()).await;
    let client = client();
    let listing = client.list_tools(&stuck, ToolLimits::default()).await.unwrap().1;
    assert!(matches!(listing, Listing::RepeatedCursor), "{listing:?}");
    assert_eq!(served.load(Ordering::SeqCst), 2);

    let few = ToolLimits {
        max_tools: Some(1),
        max_bytes: None,
    };
    let listing = client.list_tools(&stuck, few).await.unwrap().1;
    assert!(matches!(listing, Listing::TooManyTools), "{listing:?}");
    let small = ToolLimits {
        max_tools: None,
        max_bytes: Some(1500),
    };
    let listing = client.list_tools(&stuck, small).await.unwrap().1;
    assert!(matches!(listing, Listing::TooLarge), "{listing:?}");
}

#[tokio::test]
async fn each_fixture_mode_is_learned_with_its_revision_and_listed_in_it() {
    use mcp_fixture::{FixtureOptions, ProtocolMode, SessionMode, spawn_fixture};
    let cases = [
        (
            ProtocolMode::Only2026,
            SessionMode::Stateful,
            Wire::Stateless,
            STATELESS_VERSION,
        ),
        (
            ProtocolMode::Both,
            SessionMode::Stateful,
            Wire::Stateless,
            STATELESS_VERSION,
        ),
        (
            ProtocolMode::Only2025,
            SessionMode::Stateful,
            Wire::Session,
            NEWEST_SESSION_VERSION,
        ),
        (
            ProtocolMode::Both,
            SessionMode::Stateless,
            Wire::Stateless,
            STATELESS_VERSION,
        ),
    ];
    let mut listed: Option<Vec<Value>> = None;
    for (protocol, session_mode, wire, version) in cases {
        let fixture = spawn_fixture(FixtureOptions {
            protocol,
            session_mode,
            ..Default::default()
        })
        .await
        .unwrap();
        let upstream = upstream_at(fixture.url().to_owned());
        let client = client();
        let learned = client.relearn(&upstream, None).await.unwrap();
        assert_eq!(
            (learned.wire, learned.version.as_str()),
            (wire, version),
            "{protocol:?}"
        );
        let (_, listing) = client.list_tools(&upstream, ToolLimits::default()).await.unwrap();
        let Listing::Tools(tools) = listing else {
            panic!("{protocol:?}: {listing:?}")
        };
        assert!(!tools.is_empty());
        // Every revision lists the same tools.
        match &listed {
            Some(first) => assert_eq!(first, &tools, "{protocol:?}"),
            None => listed = Some(tools),
        }
        fixture.shutdown().await;
    }
}

#[tokio::test]
async fn a_server_that_is_no_mcp_server_is_learned_as_nothing() {
    let (addr, _) = scripted_upstream(|_| json!({"hello": "world"})).await;
    let upstream = upstream_at(format!("http://{addr}/mcp"));
    assert!(client().relearn(&upstream, None).await.is_err());
}

/// Listing a session server's tools with its revision learned anew opens one session, the one
/// learning opened, not a second one to list in.
#[tokio::test]
async fn a_relearned_listing_opens_one_session() {
    use mcp_fixture::{FixtureOptions, ProtocolMode, spawn_fixture};
    let fixture = spawn_fixture(FixtureOptions {
        protocol: ProtocolMode::Only2025,
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let upstream = upstream_at(fixture.url().to_owned());
    let (learned, listing) = client()
        .list_tools_relearned(&upstream, ToolLimits::default())
        .await
        .unwrap();
    assert_eq!(learned.wire, Wire::Session);
    assert!(matches!(listing, Listing::Tools(tools) if !tools.is_empty()));
    // Requests outside a session: the `server/discover` probe and one `initialize`.
    let sessionless = fixture
        .headers_snapshot()
        .iter()
        .filter(|headers| !headers.iter().any(|(name, _)| name == "mcp-session-id"))
        .count();
    assert_eq!(sessionless, 2);
    fixture.shutdown().await;
}
