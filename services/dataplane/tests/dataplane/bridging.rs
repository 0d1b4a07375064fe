//! Bridging revisions through the dataplane: stateless (2026-07-28) clients of a session
//! (2025-only) upstream, in upstream sessions the dataplane holds per caller, and session clients
//! of a stateless (2026-07-28-only) upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mcp_fixture::{FixtureOptions, ProtocolMode};

use crate::harness::*;

const STATELESS: &str = "2026-07-28";
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";

fn fixture(protocol: ProtocolMode, record_headers: bool) -> FixtureOptions {
    FixtureOptions {
        protocol,
        record_headers,
        ..Default::default()
    }
}

/// The upstream sessions the fixture was sent requests in on a caller's behalf (those carrying a
/// caller assertion), in the order it first saw them, each with the subjects it was used for.
fn sessions_by_subject(world: &World) -> Vec<(String, Vec<String>)> {
    use base64::Engine;
    let mut seen: Vec<(String, Vec<String>)> = Vec::new();
    for request in world.fixture.headers_snapshot() {
        let header = |wanted: &str| {
            request
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.clone())
        };
        let (Some(session), Some(assertion)) = (
            header("mcp-session-id"),
            header(gatehouse_dataplane::assertion::HEADER),
        ) else {
            continue;
        };
        let claims = assertion.split('.').nth(1).unwrap_or_default();
        let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|c| serde_json::from_slice(&c).ok())
            .expect("the caller assertion's claims");
        let subject = claims["sub"].as_str().unwrap().to_owned();
        match seen.iter_mut().find(|(s, _)| *s == session) {
            Some((_, subjects)) if subjects.contains(&subject) => {}
            Some((_, subjects)) => subjects.push(subject),
            None => seen.push((session, vec![subject])),
        }
    }
    seen
}

fn assert_simple_text(answer: &Answer, id: i64) {
    let response = answer.response(id);
    assert_eq!(
        response["result"]["content"][0]["text"], SIMPLE_TEXT,
        "the tool's own answer: {response}"
    );
}

#[tokio::test]
async fn a_stateless_client_reaches_a_session_upstream_in_the_revision_it_speaks() {
    let world = World::granting_all(fixture(ProtocolMode::Only2025, false)).await;
    let client = world.client("alice", "fx:all", STATELESS);

    let discovered = client.call(1, "server/discover", json!({})).await;
    let result = &discovered.response(1)["result"];
    assert!(
        result["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!(STATELESS))),
        "the endpoint answers discovery itself, in its own revisions: {result}"
    );
    assert_eq!(result["resultType"], "complete");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");

    let called = client.call_tool(2, "test_simple_text", json!({})).await;
    assert_simple_text(&called, 2);
    assert_eq!(called.response(2)["result"]["resultType"], "complete");

    let read = client
        .call(3, "resources/read", json!({"uri": "test://static-text"}))
        .await;
    let result = &read.response(3)["result"];
    assert_eq!(result["resultType"], "complete", "{result}");
    assert!(
        result["ttlMs"].is_u64() && result["cacheScope"].is_string(),
        "{result}"
    );
}

#[tokio::test]
async fn two_subjects_never_share_an_upstream_session() {
    let mut world = World::granting_all(fixture(ProtocolMode::Only2025, true)).await;
    // Every request sent on a caller's behalf names the caller to the upstream.
    world.org.servers[0].send_caller_assertion = true;
    world.republish();

    let alice = world.client("alice", "fx:all", STATELESS);
    let bob = world.client("bob", "fx:all", STATELESS);
    assert_simple_text(&alice.call_tool(1, "test_simple_text", json!({})).await, 1);
    assert_simple_text(&alice.call_tool(2, "test_simple_text", json!({})).await, 2);
    let alices = sessions_by_subject(&world);
    assert_eq!(
        alices.len(),
        1,
        "alice's calls share one upstream session: {alices:?}"
    );

    assert_simple_text(&bob.call_tool(3, "test_simple_text", json!({})).await, 3);
    assert_simple_text(&alice.call_tool(4, "test_simple_text", json!({})).await, 4);
    let all = sessions_by_subject(&world);
    assert_eq!(
        all.len(),
        2,
        "bob got a session of his own, alice kept hers: {all:?}"
    );
    for (session, subjects) in &all {
        assert_eq!(subjects.len(), 1, "session {session} served {subjects:?}");
    }
    assert_eq!(all[0], alices[0]);
    assert_eq!(world.dataplane.upstreams.held_sessions(), 2);
}

/// Stateless clients may reuse request ids (each request stands alone), but the upstream
/// session the dataplane holds for a caller is one session: the same id twice in flight there
/// would have the upstream answer (or cancel) the wrong call. Each request gets an id of its own
/// in the held session, and the client gets its answer under the id it sent.
#[tokio::test]
async fn a_callers_concurrent_requests_with_one_id_each_get_their_own_answer() {
    let world = World::granting_all(fixture(ProtocolMode::Only2025, false)).await;
    let client = world.client("alice", "fx:all", STATELESS);
    // Opens the held session, so that both calls below go in it.
    assert_simple_text(&client.call_tool(7, "test_simple_text", json!({})).await, 7);

    let slow = client.call_tool(7, "slow_compute", json!({"seconds": 2, "label": "slow"}));
    let quick = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        client.call_tool(7, "test_simple_text", json!({})).await
    };
    let both = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures::future::join(slow, quick),
    );
    let (slow, quick) = both.await.expect("both calls are answered");
    assert_simple_text(&quick, 7);
    assert_eq!(
        slow.response(7)["result"]["content"][0]["text"],
        "slow_compute 'slow' finished after 2s",
        "the slow call's own answer: {}",
        slow.response(7)
    );
}

#[tokio::test]
async fn an_upstream_restart_is_invisible_to_stateless_clients() {
    let mut world = World::granting_all(fixture(ProtocolMode::Only2025, false)).await;
    let client = world.client("alice", "fx:all", STATELESS);
    assert_simple_text(&client.call_tool(1, "test_simple_text", json!({})).await, 1);
    assert_eq!(world.dataplane.upstreams.held_sessions(), 1);

    // The upstream restarts on the same port and has forgotten every session.
    let port = world.fixture.addr().port();
    let stand_in = mcp_fixture::spawn_fixture(FixtureOptions::default())
        .await
        .unwrap();
    let old = std::mem::replace(&mut world.fixture, stand_in);
    old.shutdown().await;
    let restarted = mcp_fixture::spawn_fixture(FixtureOptions {
        port,
        ..fixture(ProtocolMode::Only2025, false)
    })
    .await
    .unwrap();
    std::mem::replace(&mut world.fixture, restarted).shutdown().await;

    for id in 2..=3 {
        let answer = client.call_tool(id, "test_simple_text", json!({})).await;
        assert_simple_text(&answer, id);
    }
    assert_eq!(world.dataplane.upstreams.held_sessions(), 1);
}

/// A small 2025-era server with sessions (one connection per request): `initialize` opens a
/// session, `tools/list` and `tools/call` serve `test_simple_text` in one, DELETE ends it, an
/// unknown session is 404 and a request without one 400. Returns its URL and its open sessions
/// (id → the name the client gave at `initialize`).
async fn session_server() -> (String, Arc<Mutex<HashMap<String, String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let open = Arc::new(Mutex::new(HashMap::new()));
    let sessions = open.clone();
    tokio::spawn(async move {
        let next = Arc::new(AtomicU64::new(1));
        while let Ok((stream, _)) = listener.accept().await {
            let (sessions, next) = (sessions.clone(), next.clone());
            tokio::spawn(async move {
                let _ = serve_one(stream, &sessions, &next).await;
            });
        }
    });
    (url, open)
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    sessions: &Mutex<HashMap<String, String>>,
    next: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Keep-alive: requests one after the other on the connection.
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_owned()))
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
        buf.drain(..head_end + length);
        let response = answer(&head, header("mcp-session-id"), &body, sessions, next);
        stream.write_all(response.as_bytes()).await?;
    }
}

/// The session server's answer to one request (`head` lower-cased).
fn answer(
    head: &str,
    session: Option<String>,
    body: &Value,
    sessions: &Mutex<HashMap<String, String>>,
    next: &AtomicU64,
) -> String {
    let known = session
        .as_ref()
        .is_some_and(|s| sessions.lock().unwrap().contains_key(s));
    let error = |code: i64, message: &str| json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    let (status, new_session, reply) = if head.starts_with("delete") {
        let removed = session.is_some_and(|s| sessions.lock().unwrap().remove(&s).is_some());
        (if removed { 200 } else { 404 }, None, None)
    } else if body["method"] == "initialize" {
        let id = format!("s{}", next.fetch_add(1, Ordering::Relaxed));
        let client = body["params"]["clientInfo"]["name"].as_str().unwrap_or_default();
        sessions.lock().unwrap().insert(id.clone(), client.to_owned());
        let result = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "sessions", "version": "1"}});
        (
            200,
            Some(id),
            Some(json!({"jsonrpc": "2.0", "id": body["id"], "result": result})),
        )
    } else if session.is_none() {
        (
            400,
            None,
            Some(error(-32000, "Bad Request: No valid session ID provided")),
        )
    } else if !known {
        (404, None, Some(error(-32001, "Session not found")))
    } else if head.starts_with("get") {
        (405, None, None)
    } else if body.get("id").is_none() {
        (202, None, None)
    } else {
        let result = match body["method"].as_str() {
            Some("tools/list") => json!({"tools": [{"name": "test_simple_text",
                "description": "Answers with a simple text", "inputSchema": {"type": "object"}}]}),
            Some("tools/call") => json!({"content": [{"type": "text", "text": SIMPLE_TEXT}]}),
            _ => json!({}),
        };
        (
            200,
            None,
            Some(json!({"jsonrpc": "2.0", "id": body["id"], "result": result})),
        )
    };
    let body = reply.map(|r| r.to_string()).unwrap_or_default();
    let mut response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(id) = new_session {
        response.push_str(&format!("mcp-session-id: {id}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    response
}

/// 10,000 distinct callers (one token, so one subject, each) through the whole dataplane, each
/// opening its own upstream session: the pool holds at most the cap, evicted sessions are closed
/// upstream, and the memory once the pool is full does not grow with the callers that follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_upstream_sessions_stay_under_the_cap_with_ten_thousand_callers() {
    const CAP: usize = 50;
    const CALLERS: i64 = 10_000;
    /// Callers after which the pool is long full and the process at its working size.
    const WARM: i64 = 2_000;
    /// What the process may grow by over the 8,000 callers after `WARM`: far less than one
    /// upstream connection, client or stream kept per caller would take. About 15 MB is measured
    /// (2 kB per caller): state kept per caller outside the pool, such as the call events this
    /// test does not drain and the verified-token cache.
    const GROWTH_KB: u64 = 32 * 1024;
    let (url, open) = session_server().await;
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let cap = CAP.to_string();
    let dataplane = TestDataplane::start(
        &issuer,
        &shared,
        &[("dataplane.max_upstream_sessions", cap.as_str())],
    )
    .await;
    let server = ServerSpec::fixture("sessions", &url).await;
    let mut org = OrgSpec::new("cap");
    org.add_server(&server, &shared.snapshot_keys);
    org.add_endpoint(&dataplane.url, "main", &[&server], false, &[("all", &["*"])]);
    dataplane.load(&[org.snapshot()]);
    let (org, issuer) = (&org, &issuer);
    // One HTTP client for every caller: what differs between callers is the token.
    let client = &RawClient::new(&dataplane.endpoint_url(&org.slug, "main"), None, STATELESS);

    let mut most = 0;
    let mut calls = futures::stream::iter(1..=CALLERS)
        .map(|i| async move {
            let token = issuer.token(
                &org.endpoints[0],
                org.org_id,
                &format!("caller-{i}"),
                "all",
                json!({}),
            );
            let caller = RawClient {
                token: Some(token),
                ..client.clone()
            };
            let answer = caller.call_tool(i, "test_simple_text", json!({})).await;
            answer.response(i)["result"]["content"][0]["text"].clone()
        })
        .buffer_unordered(32);
    let mut answered = 0;
    let mut warm_rss = 0;
    while let Some(text) = calls.next().await {
        assert_eq!(text, Value::from(SIMPLE_TEXT));
        answered += 1;
        let held = dataplane.upstreams.held_sessions();
        most = most.max(held);
        assert!(
            held <= CAP,
            "{held} upstream sessions held, over the cap of {CAP}"
        );
        if answered == WARM {
            warm_rss = rss_bytes() / 1024;
        }
    }
    assert_eq!(answered, CALLERS);
    assert_eq!(most, CAP, "the pool filled up to its cap and no further");
    let growth = (rss_bytes() / 1024).saturating_sub(warm_rss);
    println!(
        "{CALLERS} callers: at most {most} sessions held; RSS {warm_rss} kB after {WARM}, +{growth} kB after"
    );
    assert!(
        growth < GROWTH_KB,
        "the process grew by {growth} kB over the last {} callers",
        CALLERS - WARM
    );
    // Evicted sessions were closed upstream (DELETE), not just forgotten.
    // (Sessions opened for callers: the client's name, not the pin watcher's.)
    let callers_open = || open.lock().unwrap().values().filter(|c| *c == "raw-test").count();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while callers_open() > CAP && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let still_open = callers_open();
    assert!(still_open <= CAP, "{still_open} sessions still open upstream");

    dataplane.upstreams.close_all().await;
    assert_eq!(dataplane.upstreams.held_sessions(), 0);
    assert_eq!(callers_open(), 0, "close_all ends every held session upstream");
}

#[tokio::test]
async fn a_session_client_reaches_a_stateless_upstream() {
    let world = World::granting_all(fixture(ProtocolMode::Only2026, false)).await;
    let mut client = world.client("alice", "fx:all", "2025-11-25");
    client.handshake().await;
    assert_simple_text(&client.call_tool(2, "test_simple_text", json!({})).await, 2);
    let read = client
        .call(3, "resources/read", json!({"uri": "test://static-text"}))
        .await;
    assert_eq!(
        read.response(3)["result"]["contents"][0]["uri"],
        "test://static-text"
    );
}
