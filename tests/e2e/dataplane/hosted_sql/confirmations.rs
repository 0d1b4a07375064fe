//! Destructive confirmations and idempotency: a destructive tool runs only once confirmed through
//! elicitation (raw 2025 sessions and the Python SDK client in both revisions), and idempotent
//! writes are replayed.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Executor};

use super::support::{MODERN, TestBackend, call, ids, served, service_token};
use crate::dataplane::tokens::mcp;
use crate::dataplane::{Admin, platform_reaching_loopback};
use crate::platform::Platform;

const SESSION_REVISION: &str = "2025-11-25";

/// Opens a 2025-11-25 session as `token`, declaring elicitation; returns the session id.
async fn open_session(platform: &Platform, url: &str, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": SESSION_REVISION, "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let (status, answer, session) = mcp(platform, url, token, SESSION_REVISION, None, init).await;
    assert_eq!(status, 200, "{answer}");
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = mcp(
        platform,
        url,
        token,
        SESSION_REVISION,
        Some(&session),
        initialized,
    )
    .await;
    assert_eq!(status, 202);
    session
}

/// Posts `body` on the session and returns the open response.
async fn post_on_session(
    platform: &Platform,
    url: &str,
    token: &str,
    session: &str,
    body: &Value,
) -> reqwest::Response {
    platform
        .http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", SESSION_REVISION)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The next JSON-RPC message on an SSE response (`buffer` keeps what was read past it).
async fn next_message(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            if let Ok(message) = serde_json::from_str::<Value>(&data.join("\n")) {
                return message;
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the stream goes on")
            .unwrap()
            .expect("the stream is not over");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A destructive tool confirmed through `elicitation/create` in a 2025 session (raw HTTP: the
/// question on the call's stream, the answer posted on the session, only by the caller asked) and
/// through the official Python SDK client in both revisions (a session's elicitation, and the
/// 2026-07-28 `input_required` retry); declining runs nothing; each confirmation is audited.
/// Idempotent writes are replayed in both revisions.
#[tokio::test]
async fn destructive_tools_are_confirmed_by_asking_the_client_in_both_revisions() {
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@items.test", "items").await;
    let base = "/api/v1/orgs/items";
    let mut backend = TestBackend::create(
        &platform,
        &admin,
        base,
        "items",
        "CREATE TABLE items (id int PRIMARY KEY, owner text NOT NULL);
         ALTER TABLE items ENABLE ROW LEVEL SECURITY; ALTER TABLE items FORCE ROW LEVEL SECURITY;
         CREATE POLICY mine ON items USING (owner = (SELECT gatehouse.subject()));
         GRANT SELECT, INSERT, DELETE ON items TO {role};",
    )
    .await;
    let endpoint_id = backend
        .publish(
            &admin,
            base,
            &[
                ("my_items", "SELECT id FROM items ORDER BY id", "read", false),
                ("delete_item", "DELETE FROM items WHERE id = :id", "write", true),
                (
                    "add_item",
                    "INSERT INTO items (id, owner) VALUES (:id, gatehouse.subject()) RETURNING id",
                    "write",
                    false,
                ),
            ],
            "items",
            "items",
        )
        .await;
    let alice = service_token(&admin, base, &endpoint_id, "items", "alice").await;
    let bob = service_token(&admin, base, &endpoint_id, "items", "bob").await;
    backend
        .conn
        .execute(AssertSqlSafe(format!(
            "INSERT INTO items SELECT g, '{}' FROM generate_series(1, 6) g",
            alice.1
        )))
        .await
        .unwrap();
    let url = format!("{}/items/items/mcp", platform.dataplane);
    let (read, delete) = ("items__my_items", "items__delete_item");
    let mine = || async { ids(&call(&platform, &url, &alice.0, read, json!({}), json!({})).await) };
    served(&platform, &url, &alice.0, read).await;

    // Raw 2025 session: the question arrives on the call's stream; bob cannot answer it; alice's
    // acceptance runs the call and its result follows on the same stream.
    let session = open_session(&platform, &url, &alice.0).await;
    let bob_session = open_session(&platform, &url, &bob.0).await;
    let delete_call = |id: i64, n: i64| json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": delete, "arguments": {"id": id}}});
    let mut stream = post_on_session(&platform, &url, &alice.0, &session, &delete_call(1, 7)).await;
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();
    let question = next_message(&mut stream, &mut buffer).await;
    assert_eq!(question["method"], "elicitation/create", "{question}");
    assert_eq!(
        question["params"]["requestedSchema"]["required"],
        json!(["confirm"]),
        "{question}"
    );
    let answer = |result: Value| json!({"jsonrpc": "2.0", "id": question["id"], "result": result});
    let accept = answer(json!({"action": "accept", "content": {"confirm": true}}));
    let hijack = post_on_session(&platform, &url, &bob.0, &bob_session, &accept).await;
    assert_eq!(hijack.status(), 400);
    let answered = post_on_session(&platform, &url, &alice.0, &session, &accept).await;
    assert_eq!(answered.status(), 202);
    let result = next_message(&mut stream, &mut buffer).await;
    assert_eq!(result["id"], 7, "{result}");
    assert_eq!(
        result["result"]["structuredContent"]["rows_affected"], 1,
        "{result}"
    );
    assert_eq!(mine().await, [2, 3, 4, 5, 6]);

    // Declined: nothing runs.
    let mut stream = post_on_session(&platform, &url, &alice.0, &session, &delete_call(2, 8)).await;
    let mut buffer = String::new();
    let question = next_message(&mut stream, &mut buffer).await;
    let decline = json!({"jsonrpc": "2.0", "id": question["id"], "result": {"action": "decline"}});
    let answered = post_on_session(&platform, &url, &alice.0, &session, &decline).await;
    assert_eq!(answered.status(), 202);
    let result = next_message(&mut stream, &mut buffer).await;
    assert_eq!(result["result"]["isError"], true, "{result}");
    assert_eq!(mine().await, [2, 3, 4, 5, 6]);

    // The official Python SDK client, in a session and in 2026-07-28.
    let python = gatehouse_test_support::sdk_servers::python();
    let sdk = |era: &'static str, id: i64, choice: &'static str| {
        let (python, url, token) = (python.clone(), url.clone(), alice.0.clone());
        async move {
            let output = tokio::process::Command::new(&python)
                .current_dir(gatehouse_test_support::node_tools::clients_dir())
                .args(["hosted_sql_confirm.py", &url, &token, era, delete])
                .arg(json!({"id": id}).to_string())
                .arg(choice)
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(60), output)
                .await
                .expect("the client finishes")
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            serde_json::from_str::<Value>(stdout.lines().last().unwrap_or("null"))
                .unwrap_or_else(|_| panic!("{stdout} {}", String::from_utf8_lossy(&output.stderr)))
        }
    };
    let legacy = sdk("legacy", 3, "accept").await;
    assert_eq!(
        legacy["elicitations"].as_array().map(Vec::len),
        Some(1),
        "{legacy}"
    );
    assert_eq!(
        legacy["result"]["structuredContent"]["rows_affected"], 1,
        "{legacy}"
    );
    let modern = sdk("modern", 4, "decline").await;
    assert_eq!(modern["protocolVersion"], MODERN, "{modern}");
    assert_eq!(modern["result"]["isError"], true, "{modern}");
    let modern = sdk("modern", 4, "accept").await;
    assert_eq!(
        modern["elicitations"].as_array().map(Vec::len),
        Some(1),
        "{modern}"
    );
    assert_eq!(
        modern["result"]["structuredContent"]["rows_affected"], 1,
        "{modern}"
    );
    assert_eq!(mine().await, [2, 5, 6]);

    // Idempotent writes in both revisions: a retry with the same key returns the first result and
    // changes nothing; the same key with other arguments is refused.
    let add = "items__add_item";
    let key = |k: &str| json!({"io.gatehouse/idempotency-key": k});
    let first = call(&platform, &url, &alice.0, add, json!({"id": 10}), key("k-modern")).await;
    assert_eq!(
        first["result"]["structuredContent"]["rows_affected"], 1,
        "{first}"
    );
    let again = call(&platform, &url, &alice.0, add, json!({"id": 10}), key("k-modern")).await;
    assert_eq!(again["result"]["structuredContent"]["replayed"], true, "{again}");
    assert_eq!(
        again["result"]["structuredContent"]["rows"],
        first["result"]["structuredContent"]["rows"]
    );
    let other = call(&platform, &url, &alice.0, add, json!({"id": 12}), key("k-modern")).await;
    assert_eq!(other["result"]["isError"], true, "{other}");
    let in_session = |n: i64| {
        json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
            "name": add, "arguments": {"id": 11}, "_meta": {"io.gatehouse/idempotency-key": "k-session"}}})
    };
    let mut replies = Vec::new();
    for n in [20, 21] {
        let (status, reply, _) = mcp(
            &platform,
            &url,
            &alice.0,
            SESSION_REVISION,
            Some(&session),
            in_session(n),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        replies.push(reply);
    }
    assert_eq!(
        replies[0]["result"]["structuredContent"]["rows_affected"], 1,
        "{}",
        replies[0]
    );
    assert_eq!(
        replies[1]["result"]["structuredContent"]["replayed"], true,
        "{}",
        replies[1]
    );
    assert_eq!(mine().await, [2, 5, 6, 10, 11]);

    // Each confirmation is audited with how it was given.
    let mut platform_db = platform.db.admin().await;
    let expected: Vec<(String, String, String)> = [
        ("tool.call", "elicitation", "accepted"),
        ("tool.denied", "elicitation", "declined"),
        ("tool.call", "elicitation", "accepted"),
        ("tool.denied", "input_required", "declined"),
        ("tool.call", "input_required", "accepted"),
    ]
    .iter()
    .map(|(a, m, d)| (a.to_string(), m.to_string(), d.to_string()))
    .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT action, details->'confirmation'->>'method', details->'confirmation'->>'decision'
               FROM audit_events WHERE details->>'tool' = $1 AND details ? 'confirmation'
              ORDER BY occurred_at, id",
        )
        .bind(delete)
        .fetch_all(&mut platform_db)
        .await
        .unwrap();
        if seen == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audit trail: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.drop_all().await;
}
