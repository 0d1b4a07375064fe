//! Row-level security per caller: two callers of one endpoint see only the rows the backend's
//! policy gives their verified subject.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Executor};

use super::support::{MODERN, TestBackend, call, ids, served, service_token};
use crate::dataplane::tokens::{mcp, request};
use crate::dataplane::{Admin, platform_reaching_loopback};

#[tokio::test]
async fn hosted_sql_tools_run_per_caller_under_the_backends_row_level_security() {
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@notes.test", "notes").await;

    // The customer's database: notes owned by callers, protected by a policy on the verified
    // subject Gatehouse signs into each transaction.
    let base = "/api/v1/orgs/notes";
    let mut backend = TestBackend::create(
        &platform,
        &admin,
        base,
        "notes",
        "CREATE TABLE notes (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
         CREATE POLICY mine ON notes USING (owner = (SELECT gatehouse.subject()));
         GRANT SELECT, DELETE ON notes TO {role};",
    )
    .await;

    // Two tools: a read, and a destructive write.
    let endpoint_id = backend
        .publish(
            &admin,
            base,
            &[
                (
                    "my_notes",
                    "SELECT id, body FROM notes ORDER BY id",
                    "read",
                    false,
                ),
                ("delete_note", "DELETE FROM notes WHERE id = :id", "write", true),
            ],
            "notes",
            "notes",
        )
        .await;

    // Two callers, each with rows of their own.
    let mut callers = Vec::new();
    for name in ["alice", "bob"] {
        callers.push(service_token(&admin, base, &endpoint_id, "notes", name).await);
    }
    let (alice, bob) = (&callers[0], &callers[1]);
    backend
        .conn
        .execute(AssertSqlSafe(format!(
            "INSERT INTO notes VALUES (1, '{a}', 'alice 1'), (2, '{b}', 'bob 2'), (3, '{a}', 'alice 3'), (4, 'nobody', 'orphan')",
            a = alice.1,
            b = bob.1
        )))
        .await
        .unwrap();

    let url = format!("{}/notes/notes/mcp", platform.dataplane);
    let read = "notes__my_notes";
    served(&platform, &url, &alice.0, read).await;

    // Each caller sees exactly its own rows: PostgreSQL decides, not the tool's SQL.
    assert_eq!(
        ids(&call(&platform, &url, &alice.0, read, json!({}), json!({})).await),
        [1, 3]
    );
    assert_eq!(
        ids(&call(&platform, &url, &bob.0, read, json!({}), json!({})).await),
        [2]
    );
    let answer = call(&platform, &url, &alice.0, read, json!({}), json!({})).await;
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("alice 1") && !text.contains("bob 2"), "{text}");

    // A destructive call runs nothing until confirmed.
    let delete = "notes__delete_note";
    let first = call(&platform, &url, &alice.0, delete, json!({"id": 1}), json!({})).await;
    assert_eq!(first["result"]["isError"], true, "{first}");
    let confirmation = &first["result"]["structuredContent"];
    assert_eq!(confirmation["confirmation_required"], true, "{first}");
    let token = confirmation["token"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(&call(&platform, &url, &alice.0, read, json!({}), json!({})).await),
        [1, 3]
    );

    // The token is bound to its caller and arguments: bob cannot spend it, nor alice on another row.
    let meta = json!({"io.gatehouse/confirmation": token});
    let stolen = call(&platform, &url, &bob.0, delete, json!({"id": 1}), meta.clone()).await;
    assert_eq!(stolen["result"]["isError"], true, "{stolen}");
    let other = call(&platform, &url, &alice.0, delete, json!({"id": 2}), meta.clone()).await;
    assert_eq!(other["result"]["isError"], true, "{other}");

    // Confirmed, it runs once; the same token again is refused.
    let done = call(&platform, &url, &alice.0, delete, json!({"id": 1}), meta.clone()).await;
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(done["result"]["structuredContent"]["rows_affected"], 1, "{done}");
    let again = call(&platform, &url, &alice.0, delete, json!({"id": 1}), meta).await;
    assert_eq!(again["result"]["isError"], true, "{again}");
    assert_eq!(
        ids(&call(&platform, &url, &alice.0, read, json!({}), json!({})).await),
        [3]
    );

    // Alice, confirmed, cannot delete bob's row: the policy hides it from her.
    let first = call(&platform, &url, &alice.0, delete, json!({"id": 2}), json!({})).await;
    let token = first["result"]["structuredContent"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let hidden = call(
        &platform,
        &url,
        &alice.0,
        delete,
        json!({"id": 2}),
        json!({"io.gatehouse/confirmation": token}),
    )
    .await;
    assert_eq!(
        hidden["result"]["structuredContent"]["rows_affected"], 0,
        "{hidden}"
    );
    assert_eq!(
        ids(&call(&platform, &url, &bob.0, read, json!({}), json!({})).await),
        [2]
    );

    // A 2026-07-28 client that declared elicitation is asked with an `input_required` result;
    // its retry carries the answer and the echoed `requestState`. Declined, nothing runs.
    let asking = |extra: Value| {
        let mut body = request(
            MODERN,
            1,
            "tools/call",
            json!({"name": delete, "arguments": {"id": 3}}),
        );
        body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {}});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                body["params"][k] = v;
            }
        }
        body
    };
    let (_, asked, _) = mcp(&platform, &url, &alice.0, MODERN, None, asking(json!({}))).await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let question = &asked["result"]["inputRequests"]["confirm"];
    assert_eq!(question["method"], "elicitation/create", "{asked}");
    assert_eq!(
        question["params"]["requestedSchema"]["required"],
        json!(["confirm"]),
        "{asked}"
    );
    let state = asked["result"]["requestState"].as_str().unwrap().to_owned();
    let (_, no, _) = mcp(
        &platform,
        &url,
        &alice.0,
        MODERN,
        None,
        asking(json!({"requestState": state, "inputResponses": {"confirm": {"action": "decline"}}})),
    )
    .await;
    assert_eq!(no["result"]["isError"], true, "{no}");
    assert_eq!(
        ids(&call(&platform, &url, &alice.0, read, json!({}), json!({})).await),
        [3]
    );
    let (_, yes, _) = mcp(
        &platform,
        &url,
        &alice.0,
        MODERN,
        None,
        asking(json!({"requestState": state,
            "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}})),
    )
    .await;
    assert_eq!(yes["result"]["resultType"], "complete", "{yes}");
    assert_eq!(yes["result"]["structuredContent"]["rows_affected"], 1, "{yes}");
    assert!(ids(&call(&platform, &url, &alice.0, read, json!({}), json!({})).await).is_empty());

    // The calls reach the audit trail like any tool's: those awaiting, declining or presenting an
    // invalid confirmation as denied, and each confirmation with how it was given and by whom.
    let mut platform_db = platform.db.admin().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT action, count(*) FROM audit_events WHERE details->>'tool' = $1 GROUP BY action ORDER BY action",
        )
        .bind(delete)
        .fetch_all(&mut platform_db)
        .await
        .unwrap();
        if counts == [("tool.call".to_owned(), 3), ("tool.denied".to_owned(), 7)] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audit trail: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let confirmations: Vec<(String, Value)> = sqlx::query_as(
        "SELECT action, details->'confirmation' FROM audit_events
          WHERE details->>'tool' = $1 AND details ? 'confirmation' ORDER BY occurred_at, id",
    )
    .bind(delete)
    .fetch_all(&mut platform_db)
    .await
    .unwrap();
    let summary: Vec<(String, String, String, String)> = confirmations
        .iter()
        .map(|(action, c)| {
            (
                action.clone(),
                c["method"].as_str().unwrap().to_owned(),
                c["decision"].as_str().unwrap().to_owned(),
                c["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |action: &str, method: &str, decision: &str, by: &str| {
        (
            action.to_owned(),
            method.to_owned(),
            decision.to_owned(),
            by.to_owned(),
        )
    };
    assert_eq!(
        summary,
        [
            row("tool.denied", "token", "refused", &bob.1),
            row("tool.denied", "token", "refused", &alice.1),
            row("tool.call", "token", "accepted", &alice.1),
            row("tool.denied", "token", "refused", &alice.1),
            row("tool.call", "token", "accepted", &alice.1),
            row("tool.denied", "input_required", "declined", &alice.1),
            row("tool.call", "input_required", "accepted", &alice.1),
        ]
    );
    assert!(
        confirmations
            .iter()
            .filter(|(_, c)| c["decision"] == "accepted")
            .all(|(_, c)| c["nonce"].as_str().is_some_and(|n| n.len() == 32)),
        "{confirmations:?}"
    );

    backend.drop_all().await;
}
