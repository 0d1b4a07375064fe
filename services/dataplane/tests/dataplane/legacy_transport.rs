//! Old upstreams on the deprecated HTTP+SSE transport (the official TypeScript SDK's
//! `SSEServerTransport`, protocol 2024-11-05), reached from both eras.

use std::time::Duration;

use serde_json::json;

use gatehouse_test_support::node_tools::LegacySseServer;

use crate::harness::*;

/// A dataplane with one endpoint in front of an HTTP+SSE server, its tools approved as the SDK
/// defines them, and a token granting them all.
struct LegacyEndpoint {
    _issuer: Issuer,
    _shared: Shared,
    dp: TestDataplane,
    token: String,
}

impl LegacyEndpoint {
    async fn start(legacy: &LegacySseServer, tools: &[&str]) -> LegacyEndpoint {
        let issuer = Issuer::start().await;
        let shared = Shared::new();
        let dp = TestDataplane::start(&issuer, &shared, &[]).await;
        let server = ServerSpec {
            id: gatehouse_core::ids::ServerId::new(),
            slug: "old".into(),
            url: legacy.url(),
            tools: tools
                .iter()
                .map(|name| json!({"name": name, "inputSchema": {"type": "object"}}))
                .collect(),
            auth: gatehouse_core::snapshot::UpstreamAuth::None,
            send_caller_assertion: false,
        };
        let mut org = OrgSpec::new("legacy");
        org.add_server(&server, &shared.snapshot_keys);
        org.servers[0].transport = gatehouse_core::upstream::UpstreamTransport::HttpSse;
        org.add_endpoint(&dp.url, "main", &[&server], false, &[("all", &["*"])]);
        dp.load(&[org.snapshot()]);
        let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
        // The SDK's exact definitions are what its tools/list says: listing checks the pins, and
        // each mismatch with our guess reports the observed definition; approve those.
        let probe = RawClient::new(
            &dp.endpoint_url("legacy", "main"),
            Some(token.clone()),
            "2026-07-28",
        );
        probe.tool_names().await;
        for event in dp.drain_events().await {
            if let gatehouse_events::BusMessage::ToolDrift(drift) = event
                && let Some(tool) = org.endpoints[0]
                    .tools
                    .iter_mut()
                    .find(|t| t.exposed_name == drift.tool_name)
            {
                tool.approved_hash =
                    gatehouse_core::canonical::tool_definition_hash(&drift.observed_definition);
                tool.approved_definition = drift.observed_definition;
            }
        }
        org.version += 1;
        dp.store.install(org.snapshot());
        let mut served = probe.tool_names().await;
        served.sort();
        assert_eq!(served, tools, "the pin check reached the HTTP+SSE upstream");
        LegacyEndpoint {
            _issuer: issuer,
            _shared: shared,
            dp,
            token,
        }
    }

    fn client(&self, version: &str) -> RawClient {
        RawClient::new(
            &self.dp.endpoint_url("legacy", "main"),
            Some(self.token.clone()),
            version,
        )
    }
}

#[tokio::test]
async fn http_sse_upstreams_are_served() {
    let legacy = LegacySseServer::start().await;
    let endpoint = LegacyEndpoint::start(&legacy, &["legacy_echo"]).await;
    for version in ["2025-11-25", "2026-07-28"] {
        let mut client = endpoint.client(version);
        client.handshake().await;
        let answer = client.call_tool(1, "legacy_echo", json!({"text": "hi"})).await;
        assert_eq!(answer.status, 200, "{version}: {:?}", answer.messages);
        assert_eq!(
            answer.response(1)["result"]["content"][0]["text"],
            "legacy:hi",
            "{version}"
        );
    }
}

/// A sampling request the HTTP+SSE upstream sends while a call runs reaches the client with an
/// opaque id; the client's answer, sent on another connection, reaches the upstream on the
/// connection that asked, and the call completes with what the client said. An answer whose id
/// the dataplane did not issue goes nowhere, and one that comes after the call ended (the
/// connection that asked has closed) is answered 404.
#[tokio::test]
async fn http_sse_upstreams_server_requests_are_relayed() {
    let legacy = LegacySseServer::with_sampling().await;
    let endpoint = LegacyEndpoint::start(&legacy, &["legacy_echo", "legacy_sample"]).await;
    let mut client = endpoint.client("2025-11-25");
    client.capabilities = Some(json!({"sampling": {}}));
    client.initialize().await;

    let forged = json!({"jsonrpc": "2.0", "id": "gh.0.ImdoLWZvcmdlZCI", "result": {
        "role": "assistant", "content": {"type": "text", "text": "forged"}, "model": "x"}});
    let refused = client.builder(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 400, "an answer to a request nobody made");

    let body = client.tool_call(7, "legacy_sample", json!({"prompt": "hi"}));
    let response = client.builder(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = MessageStream::new(response);
    let mut asked = None;
    let mut reply = None;
    let mut result = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(message) = stream.next(deadline).await {
        if message["method"] == "sampling/createMessage" && asked.is_none() {
            let id = message["id"].clone();
            assert!(
                id.as_str()
                    .is_some_and(|s| s.starts_with("gh.") && !s.contains("sessionId")),
                "an opaque id: {id}"
            );
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
                "role": "assistant", "content": {"type": "text", "text": "from the client"},
                "model": "test", "stopReason": "endTurn"}});
            let r = client.builder(&answer).send().await.unwrap();
            assert_eq!(r.status(), 202, "the answer was delivered upstream");
            asked = Some(message.clone());
            reply = Some(answer);
        }
        if message["id"] == 7 {
            result = Some(message);
            break;
        }
    }
    assert!(
        asked.is_some(),
        "the upstream's sampling request reached the client: {}",
        stream.received
    );
    let result = result.unwrap_or_else(|| panic!("the call finished: {}", stream.received));
    assert_eq!(
        result["result"]["content"][0]["text"], "sampled:from the client",
        "{result}"
    );

    // The call is over and its connection closes: the same answer again has nowhere to go.
    let reply = reply.expect("answered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let late = client.builder(&reply).send().await.unwrap();
        if late.status() == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a late answer is {}, not 404",
            late.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
