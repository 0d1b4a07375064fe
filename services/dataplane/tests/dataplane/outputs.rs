//! What upstreams send back: credentials of well-known shapes are redacted before the client
//! (and its model) sees them, on JSON answers and on streams alike.

use serde_json::json;

use mcp_fixture::FixtureOptions;

use crate::harness::*;

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// The greeting's text and the answer's content type (JSON or an SSE stream).
async fn greeting(world: &World, version: &str) -> (String, String) {
    let mut client = world.client("alice", "fx:all", version);
    client.handshake().await;
    let answer = client.call_tool(1, "greet", json!({"name": AWS_KEY})).await;
    assert_eq!(answer.status, 200, "{version}: {:?}", answer.messages);
    let text = answer.response(1)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{version}: {:?}", answer.messages))
        .to_owned();
    let content_type = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (text, content_type)
}

#[tokio::test]
async fn secrets_in_tool_results_are_redacted() {
    // Streamed answers (both eras), then a plain JSON answer (stateless requests only).
    let streaming = World::granting_all(FixtureOptions::default()).await;
    let json_answers = World::granting_all(FixtureOptions {
        response_format: mcp_fixture::ResponseFormat::Json,
        ..Default::default()
    })
    .await;
    let mut content_types = std::collections::BTreeSet::new();
    for (world, version) in [
        (&streaming, "2026-07-28"),
        (&streaming, "2025-11-25"),
        (&json_answers, "2026-07-28"),
    ] {
        let (text, content_type) = greeting(world, version).await;
        assert_eq!(text, "Hello, [REDACTED:aws-access-key-id]!", "{version}");
        content_types.insert(content_type.split(';').next().unwrap_or_default().to_owned());
    }
    assert_eq!(
        content_types.into_iter().collect::<Vec<_>>(),
        ["application/json", "text/event-stream"],
        "both kinds of answer were redacted"
    );
    let world = &streaming;
    let events = world.dataplane.drain_events().await;
    assert!(
        !format!("{events:?}").contains(AWS_KEY),
        "the key is not in any event either (arguments are hashed)"
    );
}

#[tokio::test]
async fn redaction_can_be_turned_off() {
    let world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.redact_secrets", "false")],
    )
    .await;
    assert_eq!(
        greeting(&world, "2026-07-28").await.0,
        format!("Hello, {AWS_KEY}!")
    );
}
