//! What upstreams send back: credentials of well-known shapes are redacted before the client
//! (and its model) sees them, on JSON answers and on streams alike; answers too large to hold are
//! refused.

use serde_json::{Value, json};

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

/// An upstream whose `tools/call` answers are 2 MiB: as one JSON body with a length, as a body
/// without one (chunked), or as one SSE event. Everything else gets a small answer.
async fn oversized_upstream() -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    async fn answer(body: web::Bytes) -> HttpResponse {
        let message: Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = message["id"].clone();
        let small =
            |result: Value| HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id, "result": result}));
        match message["method"].as_str() {
            Some("tools/list") => {
                small(json!({"tools": [big_tool("sized"), big_tool("chunked"), big_tool("streamed")]}))
            }
            Some("tools/call") => {
                let text = "x".repeat(2 << 20);
                let big = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}});
                let bytes = serde_json::to_vec(&big).unwrap();
                match message["params"]["name"].as_str() {
                    Some("chunked") => {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .streaming(futures::stream::iter(
                                bytes
                                    .chunks(64 << 10)
                                    .map(|c| Ok::<_, actix_web::Error>(web::Bytes::copy_from_slice(c)))
                                    .collect::<Vec<_>>(),
                            ))
                    }
                    Some("streamed") => HttpResponse::Ok()
                        .content_type("text/event-stream")
                        .body(format!("data: {}\n\n", String::from_utf8(bytes).unwrap())),
                    _ => HttpResponse::Ok().content_type("application/json").body(bytes),
                }
            }
            _ => small(json!({})),
        }
    }
    let port = gatehouse_test_support::free_port();
    let server = HttpServer::new(|| App::new().route("/mcp", web::post().to(answer)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", port))
        .unwrap()
        .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/mcp")
}

fn big_tool(name: &str) -> Value {
    json!({"name": name, "description": "Answers with 2 MiB", "inputSchema": {"type": "object"}})
}

/// An upstream answer (or stream event) beyond `dataplane.max_upstream_message_bytes` fails the
/// call with a JSON-RPC error instead of being buffered without bound.
#[tokio::test]
async fn oversized_upstream_answers_are_refused() {
    let url = oversized_upstream().await;
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let dp = TestDataplane::start(
        &issuer,
        &shared,
        &[("dataplane.max_upstream_message_bytes", "1048576")],
    )
    .await;
    let server = ServerSpec {
        id: gatehouse_core::ids::ServerId::new(),
        slug: "big".into(),
        url,
        tools: vec![big_tool("sized"), big_tool("chunked"), big_tool("streamed")],
        auth: gatehouse_core::snapshot::UpstreamAuth::None,
        send_caller_assertion: false,
    };
    let mut org = OrgSpec::new("big");
    org.add_server(&server, &shared.snapshot_keys);
    org.add_endpoint(&dp.url, "main", &[&server], false, &[("all", &["*"])]);
    dp.load(&[org.snapshot()]);
    let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
    let client = RawClient::new(&dp.endpoint_url("big", "main"), Some(token), "2026-07-28");
    for (id, tool) in [(1, "sized"), (2, "chunked"), (3, "streamed")] {
        let answer = client.call_tool(id, tool, json!({})).await;
        let total: usize = answer.messages.iter().map(|m| m.to_string().len()).sum();
        assert!(total < 1 << 20, "{tool}: nothing that large was relayed");
        let error = &answer.response(id)["error"];
        assert_eq!(error["code"], -32000, "{tool}: {:?}", answer.messages);
    }
}

/// Answers inside a 2025-03-26 batch are upstream messages toward the client too.
#[tokio::test]
async fn secrets_in_batched_answers_are_redacted() {
    let world = World::granting_all(FixtureOptions::default()).await;
    let mut client = world.client("alice", "fx:all", "2025-03-26");
    client.handshake().await;
    let batch = json!([
        client.tool_call(1, "greet", json!({"name": AWS_KEY})),
        client.tool_call(2, "greet", json!({"name": "Ada"})),
    ]);
    let answer = client.send(&batch).await;
    assert_eq!(answer.status, 200, "{:?}", answer.messages);
    // One JSON array answers the batch.
    let answers = answer.messages[0].as_array().expect("a batch answer");
    let text = |id: i64| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .and_then(|a| a["result"]["content"][0]["text"].as_str())
            .unwrap_or_else(|| panic!("{answers:?}"))
            .to_owned()
    };
    assert_eq!(text(1), "Hello, [REDACTED:aws-access-key-id]!");
    assert_eq!(text(2), "Hello, Ada!");
}
