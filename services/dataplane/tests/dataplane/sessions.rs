//! Streamable HTTP sessions through the gateway in both eras: the 2025-11-25 session lifecycle,
//! the stateless 2026-07-28 revision, a session continued on another instance, and the official
//! TypeScript SDK client.

use serde_json::{Value, json};

use mcp_fixture::FixtureOptions;

use crate::harness::*;

#[tokio::test]
async fn legacy_session_lifecycle() {
    let world = World::recording().await;
    let mut client = world.client("alice", "fx:all", "2025-11-25");
    // Without a session id, requests other than initialize are refused.
    assert_eq!(client.call(1, "tools/list", json!({})).await.status, 400);
    let init = client.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let session = client.session.clone().unwrap();
    assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));

    let names = client.tool_names().await;
    assert!(names.contains(&"test_simple_text".to_owned()), "{names:?}");
    let answer = client.call_tool(2, "test_simple_text", json!({})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.response(2)["result"]["content"][0]["type"], "text");

    // Progress notifications come through on the call's stream.
    let answer = client
        .call(
            3,
            "tools/call",
            json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p-1"}}),
        )
        .await;
    let progress = answer
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert!(progress >= 1, "progress relayed: {:?}", answer.messages);
    assert!(answer.response(3)["result"].is_object());

    // Another subject with the same session id: unknown session.
    let mut mallory = world.client("mallory", "fx:all", "2025-11-25");
    mallory.session = Some(session.clone());
    assert_eq!(mallory.call(4, "tools/list", json!({})).await.status, 404);
    // A made-up session id: unknown.
    let mut guess = world.client("alice", "fx:all", "2025-11-25");
    guess.session = Some("ghs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    assert_eq!(guess.call(5, "tools/list", json!({})).await.status, 404);

    // The standalone GET stream opens, with a priming event.
    let get = client
        .http
        .get(&client.url)
        .bearer_auth(client.token.as_ref().unwrap())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/event-stream");
    assert_eq!(get.headers()["x-accel-buffering"], "no");
    drop(get);

    // DELETE ends the session upstream; afterwards it is gone.
    let delete = client
        .http
        .delete(&client.url)
        .bearer_auth(client.token.as_ref().unwrap())
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(delete.status().as_u16(), 200 | 204),
        "{}",
        delete.status()
    );
    assert_eq!(
        client.call_tool(6, "test_simple_text", json!({})).await.status,
        404
    );

    // The upstream never saw the client's token.
    world.assert_no_client_tokens(&[client.token.clone().unwrap(), mallory.token.clone().unwrap()]);
}

#[tokio::test]
async fn stateless_revision() {
    let world = World::recording().await;
    let client = world.client("alice", "fx:all", "2026-07-28");
    let answer = client.call(1, "server/discover", json!({})).await;
    assert_eq!(answer.status, 200, "{:?}", answer.messages);
    assert!(
        answer.response(1)["result"]["supportedVersions"].is_array(),
        "{:?}",
        answer.messages
    );
    assert!(answer.headers.get("mcp-session-id").is_none());

    let first = client.tool_names().await;
    assert_eq!(first, client.tool_names().await, "deterministic order");
    let answer = client.call(2, "tools/list", json!({})).await;
    let result = &answer.response(2)["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["cacheScope"], "private");

    let answer = client.call_tool(3, "test_simple_text", json!({})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.response(3)["result"]["content"][0]["type"], "text");

    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = client
            .http
            .request(method.clone(), &client.url)
            .bearer_auth(client.token.as_ref().unwrap())
            .header("mcp-protocol-version", "2026-07-28")
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
    }

    // Unsupported version: 400 with -32022 and the supported list.
    let mut old = client.clone();
    old.version = "2099-01-01".into();
    let answer = old.call(4, "tools/list", json!({})).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.messages[0]["error"]["code"], -32022);
    assert!(
        answer.messages[0]["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    world.assert_no_client_tokens(&[client.token.clone().unwrap()]);
}

#[tokio::test]
async fn a_session_continues_on_another_instance() {
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    // Two dataplanes with nothing in common but configuration (keys) and the public URL.
    let port_a = gatehouse_test_support::free_port();
    let a = TestDataplane::start_at(&issuer, &shared, port_a, &[]).await;
    let public_a = a.url.clone();
    let b = TestDataplane::start(&issuer, &shared, &[("dataplane.public_url", &public_a)]).await;
    let fixture = mcp_fixture::spawn_fixture(FixtureOptions::default())
        .await
        .unwrap();
    let server = ServerSpec::fixture("fx", fixture.url()).await;
    let mut org = OrgSpec::new("twins");
    org.add_server(&server, &shared.snapshot_keys);
    org.add_endpoint(&public_a, "main", &[&server], false, &[("fx:all", &["*"])]);
    a.load(&[org.snapshot()]);
    b.load(&[org.snapshot()]);
    let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "fx:all", json!({}));
    let mut on_a = RawClient::new(
        &a.endpoint_url("twins", "main"),
        Some(token.clone()),
        "2025-11-25",
    );
    on_a.initialize().await;
    let mut on_b = RawClient::new(&format!("{}/twins/main/mcp", b.url), Some(token), "2025-11-25");
    on_b.session = on_a.session.clone();
    // b's Host header is its own address; it serves the public URL of a, so talk to b with a's Host.
    let body = on_b.tool_call(1, "test_simple_text", json!({}));
    let request = on_b
        .builder(&body)
        .header("host", public_a.trim_start_matches("http://"));
    let Answer { status, messages, .. } = Answer::read(request.send().await.unwrap()).await;
    assert_eq!(status, 200, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m["id"] == 1 && m["result"]["content"].is_array()),
        "{messages:?}"
    );
}

/// The official TypeScript SDK client (2025-11-25, sessions) lists and calls through the gateway.
#[tokio::test]
async fn typescript_sdk_client_lists_and_calls() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/conformance");
    let node = dir.join("node_modules/.bin/node");
    assert!(
        node.exists(),
        "Node 22 and the SDK are not installed: run tests/clients/setup.sh"
    );
    let world = World::start(
        FixtureOptions {
            record_headers: true,
            ..Default::default()
        },
        &[("text", &["test_simple_text"])],
        &[],
    )
    .await;
    let token = world.token("sdk-user", "text");
    let output = tokio::process::Command::new(&node)
        .current_dir(&dir)
        .args(["sdk-list-call.mjs", &world.url(), &token, "test_simple_text"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    assert_eq!(
        seen["tools"],
        json!(["test_simple_text"]),
        "only the granted tool is listed"
    );
    assert_eq!(seen["result"]["content"][0]["type"], "text", "{seen}");
    assert!(
        seen["sessionId"].as_str().is_some_and(|s| s.starts_with("ghs1.")),
        "{seen}"
    );
    world.assert_no_client_tokens(&[token]);
}
