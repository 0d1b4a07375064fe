//! `ProtocolMode`: a fixture that speaks only 2026-07-28, or only the session revisions, answers
//! the other era's traffic as such servers do.

use mcp_fixture::{FixtureOptions, ProtocolMode, spawn_fixture};
use serde_json::{Value, json};

const ACCEPT: &str = "application/json, text/event-stream";

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "fixture-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "fixture-test", "version": "1"}
    }})
}

/// The status, the session id, and the JSON-RPC message answering request `id` (from a JSON body
/// or an SSE stream).
async fn answer(response: reqwest::Response, id: i64) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    let message = serde_json::from_str(&body).unwrap_or_else(|_| {
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id} in {body}"))
    });
    (status, session, message)
}

/// `tools/call test_simple_text` carrying 2026-07-28 `_meta`.
fn simple_call(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "test_simple_text", "arguments": {}, "_meta": modern_meta()
    }})
}

/// Asserts that `response` answers [`simple_call`] `id` with the tool's text.
async fn assert_simple_text(response: reqwest::Response, id: i64) {
    let (status, _, called) = answer(response, id).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(
        called["result"]["content"][0]["text"],
        "This is a simple text response for testing."
    );
}

#[tokio::test]
async fn a_2026_only_fixture_refuses_the_session_revisions() {
    let fixture = spawn_fixture(FixtureOptions {
        protocol: ProtocolMode::Only2026,
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let post = || http.post(fixture.url()).header("accept", ACCEPT);

    // `initialize` is refused, naming the one supported revision.
    let (status, session, refused) =
        answer(post().json(&initialize("2025-11-25")).send().await.unwrap(), 1).await;
    assert_eq!((status, session), (400, None), "{refused}");
    assert_eq!(refused["error"]["code"], -32022, "{refused}");
    assert_eq!(
        refused["error"]["data"]["supported"],
        json!(["2026-07-28"]),
        "{refused}"
    );

    // A 2025 request (no per-request metadata) is refused.
    let legacy = post()
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", "made-up")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 400);

    // GET and DELETE are not part of 2026-07-28.
    let get = http
        .get(fixture.url())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(http.delete(fixture.url()).send().await.unwrap().status(), 405);

    // 2026-07-28 itself is served.
    let call = post()
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "test_simple_text")
        .json(&simple_call(3))
        .send()
        .await
        .unwrap();
    assert_simple_text(call, 3).await;
}

#[tokio::test]
async fn a_2025_only_fixture_answers_2026_requests_as_a_2025_server() {
    let fixture = spawn_fixture(FixtureOptions {
        protocol: ProtocolMode::Only2025,
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let post = || http.post(fixture.url()).header("accept", ACCEPT);

    // A 2026-07-28 request has no session: the TypeScript SDK example server's answer.
    let discover = post()
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": modern_meta()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(discover.status(), 400);
    let refused: Value = discover.json().await.unwrap();
    assert_eq!(
        refused,
        json!({"jsonrpc": "2.0", "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}, "id": null})
    );

    // `initialize` asking for 2026-07-28 gets the newest session revision.
    let (status, session, opened) =
        answer(post().json(&initialize("2026-07-28")).send().await.unwrap(), 1).await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["result"]["protocolVersion"], "2025-11-25", "{opened}");
    let session = session.expect("a session id");
    let initialized = post()
        .header("mcp-session-id", &session)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(initialized.status(), 202);
    let in_session = |version: &str| {
        post()
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", version)
    };

    // In the session: an unknown revision is refused, 2026-07-28 methods are unknown.
    let modern_header = in_session("2026-07-28")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(modern_header.status(), 400);
    let refused: Value = modern_header.json().await.unwrap();
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Bad Request: Unsupported protocol version: 2026-07-28"),
        "{refused}"
    );
    let discover = in_session("2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "server/discover"}))
        .send()
        .await
        .unwrap();
    let (_, _, unknown) = answer(discover, 3).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");

    // 2026-07-28 `_meta` on a session request is ignored: the session serves it.
    let call = in_session("2025-11-25")
        .json(&simple_call(4))
        .send()
        .await
        .unwrap();
    assert_simple_text(call, 4).await;

    // GET without a session.
    let get = http
        .get(fixture.url())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 400);
}
