//! The response stream of a call: server→client requests are relayed on it and their answers,
//! sent on another connection, routed back upstream; closing it cancels the call upstream.

use std::time::Duration;

use serde_json::json;

use mcp_fixture::FixtureOptions;

use crate::harness::*;

#[tokio::test]
async fn server_requests_are_relayed_and_answers_routed_back() {
    let world = World::granting_all(FixtureOptions::default()).await;
    let mut client = world.client("alice", "fx:all", "2025-11-25");
    client.initialize().await;
    // The sampling tool asks the client for a completion on the call's stream.
    let body = client.tool_call(7, "test_sampling", json!({"prompt": "hi"}));
    let response = client.builder(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = MessageStream::new(response);
    let mut answered = false;
    let mut result = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Some(message) = stream.next(deadline).await {
        if message["method"] == "sampling/createMessage" && !answered {
            let id = message["id"].clone();
            assert!(
                id.as_str().is_some_and(|s| s.starts_with("gh.")),
                "rewritten id: {id}"
            );
            let reply = json!({"jsonrpc": "2.0", "id": id, "result": {
                "role": "assistant", "content": {"type": "text", "text": "sampled!"}, "model": "test", "stopReason": "endTurn"}});
            // Answer through a second connection (any replica would do).
            let r = client.builder(&reply).send().await.unwrap();
            assert_eq!(r.status(), 202);
            answered = true;
        }
        if message["id"] == 7 {
            result = Some(message);
            break;
        }
    }
    assert!(
        answered,
        "the upstream's sampling request reached the client: {}",
        stream.received
    );
    let result = result.expect("the call finished");
    assert!(result["result"].to_string().contains("sampled!"), "{result}");
}

/// 2026-07-28: closing the response stream is cancellation. A client that goes away mid-call
/// leaves nothing running upstream; a client that stays keeps its call alive.
#[tokio::test]
async fn closing_the_response_stream_cancels_the_call_upstream() {
    let world = World::granting_all(FixtureOptions {
        slow_tool: true,
        ..Default::default()
    })
    .await;
    let client = world.client("alice", "fx:all", "2026-07-28");
    let body = client.tool_call(1, "test_slow_cancellable", json!({}));
    let call = {
        let request = client.builder(&body);
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            // Hold the response (and its connection) open until the task is aborted.
            let _ = response.bytes().await;
        })
    };
    let started = std::time::Instant::now();
    while world.fixture.slow_calls_started() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the client is connected, the call goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        world.fixture.slow_calls_abandoned(),
        0,
        "the call was cut while the client waited"
    );

    // The client goes away: the upstream call is abandoned promptly.
    call.abort();
    let gone = std::time::Instant::now();
    while world.fixture.slow_calls_abandoned() == 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the upstream call kept running after the client closed its stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(world.fixture.slow_calls_started(), 1);

    // A call that is slow but finishes gets its answer, carried on the stream the slow path opened.
    let answer = client
        .call_tool(2, "test_slow_cancellable", json!({"seconds": 1.2}))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert_eq!(
        answer.response(2)["result"]["content"][0]["text"],
        "finished after 1.2 seconds"
    );
    assert_eq!(
        world.fixture.slow_calls_abandoned(),
        1,
        "the finished call was not abandoned"
    );
}
