//! 2025-03-26 batches: bounded in messages (before parsing), in answer bytes and in time; every
//! message counted against the limits and the quota as if it had come alone. Billable requests
//! of an org over quota are refused at admission; notification streams are capped per caller.

use std::time::Duration;

use serde_json::{Value, json};

use gatehouse_core::ids::{BackendId, ToolId};
use gatehouse_core::snapshot::{EndpointTool, Limit, SqlToolTarget, ToolTarget};
use gatehouse_events::{BusMessage, CallOutcome};
use mcp_fixture::FixtureOptions;

use crate::harness::*;

/// The answers of a batch, by id.
fn answers_by_id(answer: &Answer) -> Vec<(i64, Value)> {
    let answers = answer.messages[0]
        .as_array()
        .unwrap_or_else(|| panic!("a batch answer, got {:?} ({})", answer.messages, answer.status));
    answers
        .iter()
        .map(|a| (a["id"].as_i64().expect("an id"), a.clone()))
        .collect()
}

async fn legacy_2025_03_26(world: &World, sub: &str) -> RawClient {
    let mut client = world.client(sub, "fx:all", "2025-03-26");
    client.handshake().await;
    client
}

/// Resolves once the process's RSS has grown by more than `limit` bytes over `base`.
async fn rss_grows_beyond(base: u64, limit: u64) -> u64 {
    loop {
        let now = rss_bytes();
        if now > base + limit {
            return now - base;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_before_anything_is_dispatched() {
    let world = World::granting_all(FixtureOptions::default()).await;
    let client = legacy_2025_03_26(&world, "alice").await;
    let batch: Vec<Value> = (1..=33)
        .map(|i| client.tool_call(i, "test_simple_text", json!({})))
        .collect();
    let answer = client.send(&Value::Array(batch)).await;
    assert_eq!(answer.status, 400, "{:?}", answer.messages);
    let error = &answer.messages[0]["error"];
    assert_eq!(error["code"], -32600, "{error}");
    assert_eq!(
        error["message"],
        "Invalid Request: a batch may hold at most 32 messages"
    );
    let calls = world
        .dataplane
        .drain_events()
        .await
        .into_iter()
        .filter(|e| matches!(e, BusMessage::Call(c) if c.method == "tools/call"))
        .count();
    assert_eq!(calls, 0, "no call was dispatched (each would be recorded)");
    // The limit itself is a batch of 32.
    let batch: Vec<Value> = (1..=32).map(|i| client.request(i, "ping", json!({}))).collect();
    let answer = client.send(&Value::Array(batch)).await;
    assert_eq!(answers_by_id(&answer).len(), 32);
}

/// The issue's reproduction, larger: 100,000 messages in one body (under a body limit raised so
/// that the batch limit is what refuses it) get one clear error, and the dataplane's memory
/// hardly moves (it was 87 MB → 1.3 GB for 20,000).
#[tokio::test]
async fn a_100000_message_batch_gets_a_clear_error_and_grows_rss_by_less_than_50_mb() {
    let world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.max_body_bytes", "16777216")],
    )
    .await;
    let client = legacy_2025_03_26(&world, "alice").await;
    let mut body = String::from("[");
    for i in 0..100_000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/list"}}"#));
    }
    body.push(']');
    let body = bytes::Bytes::from(body);
    assert!(body.len() > 4 << 20);
    let request = client
        .http
        .post(&client.url)
        .bearer_auth(client.token.as_ref().unwrap())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", client.session.as_ref().unwrap())
        .header("mcp-protocol-version", "2025-03-26")
        .body(body)
        .send();
    let base = rss_bytes();
    let limit = 50 << 20;
    let response = tokio::select! {
        response = request => response.unwrap(),
        grown = rss_grows_beyond(base, limit) => panic!("RSS grew by {} MB", grown >> 20),
    };
    let answer = tokio::select! {
        answer = Answer::read(response) => answer,
        grown = rss_grows_beyond(base, limit) => panic!("RSS grew by {} MB", grown >> 20),
    };
    let grown = rss_bytes().saturating_sub(base);
    assert!(grown < limit, "RSS grew by {} MB", grown >> 20);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.messages.len(), 1, "one error, not 100,000 answers");
    let error = &answer.messages[0]["error"];
    assert_eq!(error["code"], -32600, "{error}");
    assert_eq!(
        error["message"],
        "Invalid Request: a batch may hold at most 32 messages"
    );
}

/// A per-subject limit of 5 a minute admits exactly 5 calls of a 500-call batch: every message is
/// counted as if it had come alone, and the others are answered with the rate limit's error.
#[tokio::test]
async fn a_per_subject_limit_of_5_admits_5_calls_of_a_500_call_batch() {
    let mut world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.max_batch_messages", "500")],
    )
    .await;
    let client = legacy_2025_03_26(&world, "alice").await;
    world.org.endpoints[0].rate_limits.per_subject = Some(Limit {
        per_minute: 5,
        burst: 4,
    });
    world.republish();
    let batch: Vec<Value> = (1..=500)
        .map(|i| client.tool_call(i, "test_simple_text", json!({})))
        .collect();
    let answer = client.send(&Value::Array(batch)).await;
    assert_eq!(answer.status, 200);
    let answers = answers_by_id(&answer);
    assert_eq!(answers.len(), 500, "every request is answered");
    let served: Vec<i64> = answers
        .iter()
        .filter(|(_, a)| a["result"].is_object())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(served, [1, 2, 3, 4, 5], "the first five, and only they");
    for (id, a) in answers.iter().filter(|(id, _)| *id > 5) {
        assert_eq!(a["error"]["code"], -32000, "{id}: {a}");
        assert!(
            a["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Rate limit exceeded"),
            "{a}"
        );
        assert!(a["error"]["data"]["retryAfterSeconds"].as_u64().unwrap() >= 1);
    }
    let calls: Vec<_> = world
        .dataplane
        .drain_events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            BusMessage::Call(c) if c.method == "tools/call" => Some(c.outcome),
            _ => None,
        })
        .collect();
    assert_eq!(calls.iter().filter(|o| **o == CallOutcome::Success).count(), 5);
    assert_eq!(
        calls.iter().filter(|o| **o == CallOutcome::RateLimited).count(),
        495
    );
    // A batch every message of which is refused is refused as a whole, as each would be.
    let batch: Vec<Value> = (1..=3)
        .map(|i| client.request(i, "tools/list", json!({})))
        .collect();
    let refused = client.send(&Value::Array(batch)).await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers.get("retry-after").is_some());
}

/// The org's limit and a tool's own limit count every message of a batch too, all or nothing
/// per message: a call the tool's limit refuses uses none of the org's budget.
#[tokio::test]
async fn batched_messages_count_against_the_org_and_tool_limits_as_if_sent_alone() {
    let mut world = World::granting_all(FixtureOptions::default()).await;
    let client = legacy_2025_03_26(&world, "alice").await;
    world.org.endpoints[0].rate_limits.per_org = Some(Limit {
        per_minute: 1,
        burst: 6,
    });
    world.org.endpoints[0].rate_limits.per_tool.insert(
        "test_error_handling".into(),
        Limit {
            per_minute: 1,
            burst: 1,
        },
    );
    world.republish();
    let mut batch: Vec<Value> = (1..=4)
        .map(|i| client.tool_call(i, "test_error_handling", json!({})))
        .collect();
    batch.extend((5..=10).map(|i| client.request(i, "tools/list", json!({}))));
    let answer = client.send(&Value::Array(batch)).await;
    assert_eq!(answer.status, 200);
    let limited: Vec<i64> = answers_by_id(&answer)
        .into_iter()
        .filter(|(_, a)| {
            a["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Rate limit exceeded"))
        })
        .map(|(id, _)| id)
        .collect();
    // The org admits 7: two calls (then the tool refuses two, sparing the org's budget) and
    // five lists.
    assert_eq!(limited, [3, 4, 10]);
}

/// The answers to one batch are capped in total size: past `dataplane.max_batch_answer_bytes`
/// (16 MiB by default) the answers are JSON-RPC errors, and nothing more is buffered.
#[tokio::test]
async fn the_answers_to_a_batch_are_capped_in_total_size() {
    let world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.max_body_bytes", "33554432")],
    )
    .await;
    let client = legacy_2025_03_26(&world, "alice").await;
    let name = "a".repeat(1 << 20);
    let batch: Vec<Value> = (1..=20)
        .map(|i| client.tool_call(i, "greet", json!({"name": name})))
        .collect();
    let answer = client.send(&Value::Array(batch)).await;
    assert_eq!(answer.status, 200);
    let size = answer.messages[0].to_string().len();
    assert!(size <= 16 << 20, "the answer holds {size} bytes");
    let answers = answers_by_id(&answer);
    assert_eq!(answers.len(), 20, "every request is answered");
    let served = answers.iter().filter(|(_, a)| a["result"].is_object()).count();
    assert!((10..20).contains(&served), "{served} answers fit");
    for (id, a) in answers.iter().skip(served) {
        assert_eq!(a["error"]["code"], -32000, "{id}");
        assert_eq!(
            a["error"]["message"],
            "Batch answers too large: the answers to one batch may total 16777216 bytes; send this request on its own"
        );
        assert_eq!(a["error"]["data"]["maxBatchAnswerBytes"], 16777216);
    }
}

/// A batch has one deadline (`dataplane.batch_timeout_ms`): what is not answered by then gets a
/// JSON-RPC error, and the requests after it are not sent.
#[tokio::test]
async fn a_batch_has_one_deadline() {
    let world = World::start(
        FixtureOptions {
            slow_tool: true,
            ..Default::default()
        },
        &[("fx:all", &["*"])],
        &[("dataplane.batch_timeout_ms", "1000")],
    )
    .await;
    let client = legacy_2025_03_26(&world, "alice").await;
    let batch = json!([
        client.request(1, "ping", json!({})),
        client.tool_call(2, "test_slow_cancellable", json!({"seconds": 20})),
        client.tool_call(3, "test_simple_text", json!({})),
    ]);
    let answer = client.send(&batch).await;
    assert_eq!(answer.status, 200);
    let answers = answers_by_id(&answer);
    assert!(answers[0].1["result"].is_object(), "{:?}", answers[0]);
    for (id, a) in &answers[1..] {
        assert_eq!(a["error"]["code"], -32000, "{id}: {a}");
        assert_eq!(
            a["error"]["message"],
            "Batch deadline exceeded: a batch may take 1000 ms in all"
        );
    }
}

/// Quota is enforced on every billable method at admission, before dispatch, whatever the tool
/// is (an upstream's, a hosted SQL tool, one in a batch); what is not billable still works.
#[tokio::test]
async fn over_quota_refuses_every_billable_request_at_admission() {
    let mut world = World::granting_all(FixtureOptions::default()).await;
    let sql_tool = EndpointTool {
        tool_id: ToolId::new(),
        exposed_name: "orders_count".into(),
        target: ToolTarget::Sql(SqlToolTarget {
            backend_id: BackendId::new(),
            name: "orders_count".into(),
            sql: "SELECT count(*) FROM orders".into(),
            params: vec![],
            columns: vec![],
            access: "read".into(),
            destructive: false,
        }),
        approved_definition: json!({"name": "orders_count", "inputSchema": {"type": "object"}}),
        approved_hash: "0".repeat(64),
    };
    world.org.endpoints[0].scopes[0].tool_ids.push(sql_tool.tool_id);
    world.org.endpoints[0].tools.push(sql_tool);
    world.republish();
    world.dataplane.quota.set(world.org.org_id, true).await;
    let over = |answer: &Value| {
        assert_eq!(answer["error"]["code"], -32000, "{answer}");
        assert_eq!(answer["error"]["data"]["reason"], "quota_exceeded", "{answer}");
    };
    let modern = world.client("alice", "fx:all", "2026-07-28");
    for (id, tool) in [(1, "test_simple_text"), (2, "orders_count")] {
        let answer = modern.call_tool(id, tool, json!({})).await;
        assert_eq!(answer.status, 200);
        over(answer.response(id));
    }
    let legacy = legacy_2025_03_26(&world, "alice").await;
    let batch = json!([
        legacy.tool_call(3, "test_simple_text", json!({})),
        legacy.request(4, "tools/list", json!({})),
    ]);
    let answer = legacy.send(&batch).await;
    let answers = answers_by_id(&answer);
    over(&answers[0].1);
    assert!(answers[1].1["result"]["tools"].is_array(), "lists are not billed");
    let calls: Vec<_> = world
        .dataplane
        .drain_events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            BusMessage::Call(c) if c.method == "tools/call" => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls.iter().all(|c| c.outcome == CallOutcome::OverQuota),
        "refused, none billed: {calls:?}"
    );
}

/// A caller holds at most `dataplane.max_streams_per_subject` (10) notification streams at once
/// on a replica, GET streams and `subscriptions/listen` together; beyond it 429 with a JSON-RPC
/// error. Other callers are not affected, and a closed stream gives its slot back.
#[tokio::test]
async fn notification_streams_are_capped_per_caller() {
    let world = World::granting_all(FixtureOptions::default()).await;
    // A session of Alice's (each stream in a session of its own: the cap is the caller's).
    let session = |sub: &'static str| {
        let mut client = world.client(sub, "fx:all", "2025-11-25");
        async move {
            client.initialize().await;
            client
        }
    };
    let get = |client: &RawClient| {
        client
            .http
            .get(&client.url)
            .bearer_auth(client.token.as_ref().unwrap())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", client.session.as_ref().unwrap())
            .header("mcp-protocol-version", &client.version)
            .send()
    };
    let mut open = Vec::new();
    for _ in 0..10 {
        let stream = get(&session("alice").await).await.unwrap();
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    let alice = session("alice").await;
    let refused = get(&alice).await.unwrap();
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32000, "{error}");
    assert_eq!(error["error"]["data"]["maxStreams"], 10, "{error}");
    // subscriptions/listen is a notification stream too.
    let modern = world.client("alice", "fx:all", "2026-07-28");
    let listen = modern
        .call(
            7,
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        )
        .await;
    assert_eq!(listen.status, 429);
    assert_eq!(listen.response(7)["error"]["data"]["maxStreams"], 10);
    // Bob has his own.
    assert_eq!(get(&session("bob").await).await.unwrap().status(), 200);
    // A stream the client closes gives its slot back.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let again = get(&alice).await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's slot came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
