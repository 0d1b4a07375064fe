//! Bridging revisions through the dataplane: stateless (2026-07-28) clients of a session
//! (2025-only) upstream, in upstream sessions the dataplane holds per caller, and session clients
//! of a stateless (2026-07-28-only) upstream.

use futures::StreamExt;
use serde_json::{Value, json};

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

/// The upstream session ids the fixture was sent, in the order it first saw them.
fn session_ids(world: &World) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for request in world.fixture.headers_snapshot() {
        for (name, value) in request {
            if name == "mcp-session-id" && !seen.contains(&value) {
                seen.push(value);
            }
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
    assert!(result["ttlMs"].is_u64() && result["cacheScope"].is_string(), "{result}");
}

#[tokio::test]
async fn two_subjects_never_share_an_upstream_session() {
    let world = World::granting_all(fixture(ProtocolMode::Only2025, true)).await;
    // Learning the upstream's wire opens (and closes) a session of its own.
    let warm = world.client("warm-up", "fx:all", STATELESS);
    warm.call(1, "server/discover", json!({})).await.response(1);
    let before = session_ids(&world).len();

    let alice = world.client("alice", "fx:all", STATELESS);
    let bob = world.client("bob", "fx:all", STATELESS);
    assert_simple_text(&alice.call_tool(2, "test_simple_text", json!({})).await, 2);
    assert_simple_text(&alice.call_tool(3, "test_simple_text", json!({})).await, 3);
    let alices = session_ids(&world)[before..].to_vec();
    assert_eq!(alices.len(), 1, "alice's calls share one upstream session: {alices:?}");

    assert_simple_text(&bob.call_tool(4, "test_simple_text", json!({})).await, 4);
    assert_simple_text(&alice.call_tool(5, "test_simple_text", json!({})).await, 5);
    let all = session_ids(&world)[before..].to_vec();
    assert_eq!(all.len(), 2, "bob got a session of his own, alice kept hers: {all:?}");
    assert_eq!(all[0], alices[0]);
    assert_eq!(world.dataplane.upstreams.held_sessions(), 2);
}

#[tokio::test]
async fn an_upstream_restart_is_invisible_to_stateless_clients() {
    let mut world = World::granting_all(fixture(ProtocolMode::Only2025, false)).await;
    let client = world.client("alice", "fx:all", STATELESS);
    assert_simple_text(&client.call_tool(1, "test_simple_text", json!({})).await, 1);
    assert_eq!(world.dataplane.upstreams.held_sessions(), 1);

    // The upstream restarts on the same port and has forgotten every session.
    let port = world.fixture.addr().port();
    let stand_in = mcp_fixture::spawn_fixture(FixtureOptions::default()).await.unwrap();
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

#[tokio::test]
async fn held_upstream_sessions_stay_under_the_cap_with_ten_thousand_callers() {
    const CAP: usize = 50;
    const CALLERS: i64 = 10_000;
    let world = World::start(
        fixture(ProtocolMode::Only2025, false),
        &[("fx:all", &["*"])],
        &[("dataplane.max_upstream_sessions", &CAP.to_string())],
    )
    .await;
    let world = &world;
    let mut most = 0;
    let mut calls = futures::stream::iter(1..=CALLERS)
        .map(|i| async move {
            let client = world.client(&format!("caller-{i}"), "fx:all", STATELESS);
            let answer = client.call_tool(i, "test_simple_text", json!({})).await;
            answer.response(i)["result"]["content"][0]["text"].clone()
        })
        .buffer_unordered(16);
    let mut answered = 0;
    while let Some(text) = calls.next().await {
        assert_eq!(text, Value::from(SIMPLE_TEXT));
        answered += 1;
        let held = world.dataplane.upstreams.held_sessions();
        most = most.max(held);
        assert!(held <= CAP, "{held} upstream sessions held, over the cap of {CAP}");
    }
    assert_eq!(answered, CALLERS);
    assert_eq!(most, CAP, "the pool filled up to its cap and no further");
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
