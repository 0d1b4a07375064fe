//! Hosted SQL tools through the real dataplane: a backend registered and set up through the REST
//! API, its tools approved and exposed at an endpoint, then called by two callers whose rows the
//! backend's own row-level security keeps apart; a destructive tool runs only with the
//! confirmation it handed out, once.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::tokens::{mcp, request};
use gatehouse_test_support::console::ConsoleClient;

use super::{Admin, platform_reaching_loopback, wait_for};
use crate::platform::Platform;

const MODERN: &str = "2026-07-28";

fn superuser_url(db: &str) -> String {
    let mut url = url::Url::parse(&gatehouse_test_support::testdb::server_url()).unwrap();
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// A `tools/call` of `name` as `token` (a 2026-07-28 stateless request); `meta` is added to the
/// request's `_meta`. Returns the JSON-RPC response.
async fn call(
    platform: &Platform,
    url: &str,
    token: &str,
    name: &str,
    arguments: Value,
    meta: Value,
) -> Value {
    let mut body = request(
        MODERN,
        1,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    );
    if let Value::Object(extra) = meta {
        for (k, v) in extra {
            body["params"]["_meta"][k] = v;
        }
    }
    let (status, answer, _) = mcp(platform, url, token, MODERN, None, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Waits until the dataplane knows `token` and serves `tool` (called without arguments, it
/// answers with a tool result, an error one if the tool needs arguments).
async fn served(platform: &Platform, url: &str, token: &str, tool: &str) {
    wait_for(Duration::from_secs(5), || async {
        let body = request(MODERN, 1, "tools/call", json!({"name": tool, "arguments": {}}));
        let (status, answer, _) = mcp(platform, url, token, MODERN, None, body).await;
        status == 200 && answer["result"]["content"].is_array()
    })
    .await;
}

fn ids(answer: &Value) -> Vec<i64> {
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    answer["result"]["structuredContent"]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("rows in {answer}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// A throwaway database on the test PostgreSQL with a least-privilege tool role, registered as
/// backend `slug` of the org through the REST API, with the `gatehouse` schema the API serves
/// installed and `tables` (run as superuser; `{role}` names the tool role) created.
struct TestBackend {
    pg: PgConnection,
    conn: PgConnection,
    db: String,
    role: String,
    owner_role: String,
    id: String,
    dsn: String,
}

impl TestBackend {
    async fn create(
        platform: &Platform,
        admin: &ConsoleClient,
        base: &str,
        slug: &str,
        tables: &str,
    ) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let (db, role, owner_role, password) = (
            format!("hsdp_{tag}"),
            format!("hsdp_tools_{tag}"),
            format!("hsdp_owner_{tag}"),
            format!("pw-{tag}"),
        );
        let mut pg = PgConnection::connect(&superuser_url("postgres")).await.unwrap();
        pg.execute(AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
            .await
            .unwrap();
        pg.execute(AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOBYPASSRLS NOINHERIT"
        )))
        .await
        .unwrap();
        let server = url::Url::parse(&gatehouse_test_support::testdb::server_url()).unwrap();
        let dsn = format!(
            "postgres://{role}:{password}@{}:{}/{db}",
            server.host_str().unwrap(),
            server.port().unwrap_or(5432)
        );
        let backend = admin
            .send(
                reqwest::Method::POST,
                &format!("{base}/backends"),
                Some(json!({"slug": slug, "name": slug, "dsn": dsn, "tls_mode": "disable", "owner_role": owner_role})),
            )
            .await;
        let id = backend["id"].as_str().unwrap().to_owned();
        let setup = platform
            .http
            .get(format!("{}{base}/backends/{id}/setup-sql", platform.control_api))
            .header("cookie", &admin.cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut conn = PgConnection::connect(&superuser_url(&db)).await.unwrap();
        conn.execute(AssertSqlSafe(setup)).await.unwrap();
        conn.execute(AssertSqlSafe(tables.replace("{role}", &role)))
            .await
            .unwrap();
        let ready = admin
            .send(reqwest::Method::POST, &format!("{base}/backends/{id}/test"), None)
            .await;
        assert_eq!(ready["ready"], true, "{ready}");
        Self {
            pg,
            conn,
            db,
            role,
            owner_role,
            id,
            dsn,
        }
    }

    /// The connection string of the tool role (what Gatehouse connects as).
    fn tool_role_url(&self) -> String {
        self.dsn.clone()
    }

    /// Defines and approves `tools` (name, SQL, access, destructive), grants them all through the
    /// scope `scope`, and exposes the backend at a new endpoint `endpoint`; returns its id.
    async fn publish(
        &self,
        admin: &ConsoleClient,
        base: &str,
        tools: &[(&str, &str, &str, bool)],
        scope: &str,
        endpoint: &str,
    ) -> String {
        let mut tool_ids = Vec::new();
        for (name, sql, access, destructive) in tools {
            let tool = admin
                .send(
                    reqwest::Method::POST,
                    &format!("{base}/backends/{}/tools", self.id),
                    Some(json!({"name": name, "description": name, "sql": sql, "access": access, "destructive": destructive})),
                )
                .await;
            admin
                .send(
                    reqwest::Method::POST,
                    &format!("{base}/tools/{}/approve", tool["id"].as_str().unwrap()),
                    Some(json!({"definition_hash": tool["definition_hash"]})),
                )
                .await;
            tool_ids.push(tool["id"].clone());
        }
        admin
            .send(
                reqwest::Method::POST,
                &format!("{base}/scopes"),
                Some(json!({"name": scope, "tool_ids": tool_ids})),
            )
            .await;
        let endpoint = admin
            .send(
                reqwest::Method::POST,
                &format!("{base}/endpoints"),
                Some(json!({"slug": endpoint, "name": endpoint})),
            )
            .await;
        let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
        admin
            .send(
                reqwest::Method::PUT,
                &format!("{base}/endpoints/{endpoint_id}/backends"),
                Some(json!({"backends": [{"backend_id": self.id}]})),
            )
            .await;
        endpoint_id
    }

    async fn drop_all(self) {
        let Self {
            mut pg,
            conn,
            db,
            role,
            owner_role,
            ..
        } = self;
        drop(conn);
        pg.execute(AssertSqlSafe(format!("DROP DATABASE \"{db}\" WITH (FORCE)")))
            .await
            .unwrap();
        for r in [&role, &owner_role] {
            pg.execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}")))
                .await
                .unwrap();
        }
    }
}

/// A service token of `endpoint_id` granted `scope`: its secret and its subject
/// (`service_token:<id>`).
async fn service_token(
    admin: &ConsoleClient,
    base: &str,
    endpoint_id: &str,
    scope: &str,
    name: &str,
) -> (String, String) {
    let created = admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/service-tokens"),
            Some(json!({"name": name, "endpoint_id": endpoint_id, "scopes": [scope]})),
        )
        .await;
    (
        created["secret"].as_str().unwrap().to_owned(),
        format!("service_token:{}", created["id"].as_str().unwrap()),
    )
}

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

/// The orders example of docs/hosted-sql.md: one table shared by several customers, a policy on
/// `gatehouse.claim('customer_id')`, and each customer's service token carrying its `customer_id`
/// attribute, set through the REST API and signed into every call by the dataplane.
#[tokio::test]
async fn policies_read_the_callers_attributes_set_through_the_api() {
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@shop.test", "shop").await;
    let base = "/api/v1/orgs/shop";
    let backend = TestBackend::create(
        &platform,
        &admin,
        base,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id text NOT NULL, total numeric(10,2) NOT NULL);
         ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY;
         CREATE POLICY orders_by_customer ON orders FOR ALL TO PUBLIC
             USING (customer_id = (SELECT gatehouse.claim('customer_id')))
             WITH CHECK (customer_id = (SELECT gatehouse.claim('customer_id')));
         GRANT SELECT ON orders TO {role};
         INSERT INTO orders VALUES (1, 'acme', 10), (2, 'globex', 20), (3, 'acme', 30);",
    )
    .await;
    let endpoint_id = backend
        .publish(
            &admin,
            base,
            &[
                ("my_orders", "SELECT id, total FROM orders ORDER BY id", "read", false),
                (
                    "whoami",
                    "SELECT gatehouse.claim('customer_id') AS customer, gatehouse.email() AS email, gatehouse.subject() AS subject",
                    "read",
                    false,
                ),
            ],
            "orders",
            "orders",
        )
        .await;

    // The org defines the attribute; values for undefined names are refused.
    admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/attributes"),
            Some(json!({"name": "customer_id", "description": "The customer this caller acts for"})),
        )
        .await;
    let mut tokens = Vec::new();
    for name in ["acme", "globex", "unassigned"] {
        tokens.push(service_token(&admin, base, &endpoint_id, "orders", name).await);
    }
    let token_id = |t: &(String, String)| t.1.trim_start_matches("service_token:").to_owned();
    let refused = admin
        .try_send(
            reqwest::Method::PUT,
            &format!("{base}/service-tokens/{}/attributes", token_id(&tokens[0])),
            Some(json!({"attributes": {"tenant": "acme"}})),
        )
        .await
        .unwrap_err();
    assert!(refused.contains("400") && refused.contains("tenant"), "{refused}");
    for (token, customer) in [(&tokens[0], "acme"), (&tokens[1], "globex")] {
        admin
            .send(
                reqwest::Method::PUT,
                &format!("{base}/service-tokens/{}/attributes", token_id(token)),
                Some(json!({"attributes": {"customer_id": customer}})),
            )
            .await;
    }
    let stored = admin
        .send(
            reqwest::Method::GET,
            &format!("{base}/service-tokens/{}/attributes", token_id(&tokens[0])),
            None,
        )
        .await;
    assert_eq!(stored, json!({"attributes": {"customer_id": "acme"}}));

    let url = format!("{}/shop/orders/mcp", platform.dataplane);
    let read = "shop__my_orders";
    let (acme, globex, unassigned) = (&tokens[0], &tokens[1], &tokens[2]);
    served(&platform, &url, &acme.0, read).await;
    // Each PUT is its own configuration change: wait until the dataplane has the last of them.
    wait_for(Duration::from_secs(10), || async {
        let acme_rows = call(&platform, &url, &acme.0, read, json!({}), json!({})).await;
        let globex_rows = call(&platform, &url, &globex.0, read, json!({}), json!({})).await;
        acme_rows["result"]["structuredContent"]["row_count"] == 2
            && globex_rows["result"]["structuredContent"]["row_count"] == 1
    })
    .await;

    // Each customer's token sees its customer's orders; a token without the attribute sees none.
    assert_eq!(
        ids(&call(&platform, &url, &acme.0, read, json!({}), json!({})).await),
        [1, 3]
    );
    assert_eq!(
        ids(&call(&platform, &url, &globex.0, read, json!({}), json!({})).await),
        [2]
    );
    assert_eq!(
        ids(&call(&platform, &url, &unassigned.0, read, json!({}), json!({})).await),
        Vec::<i64>::new()
    );
    let who = call(&platform, &url, &acme.0, "shop__whoami", json!({}), json!({})).await;
    assert_eq!(
        who["result"]["structuredContent"]["rows"],
        json!([{"customer": "acme", "email": null, "subject": acme.1}]),
        "{who}"
    );

    // Changing a token's attribute is published: its calls follow within seconds.
    admin
        .send(
            reqwest::Method::PUT,
            &format!("{base}/service-tokens/{}/attributes", token_id(acme)),
            Some(json!({"attributes": {"customer_id": "globex"}})),
        )
        .await;
    wait_for(Duration::from_secs(5), || async {
        let answer = call(&platform, &url, &acme.0, read, json!({}), json!({})).await;
        answer["result"]["structuredContent"]["rows"] == json!([{"id": 2, "total": "20.00"}])
    })
    .await;

    // Removing the attribute removes every value: no customer's rows are visible any more.
    admin
        .send(
            reqwest::Method::DELETE,
            &format!("{base}/attributes/customer_id"),
            None,
        )
        .await;
    wait_for(Duration::from_secs(5), || async {
        let answer = call(&platform, &url, &globex.0, read, json!({}), json!({})).await;
        answer["result"]["structuredContent"]["row_count"] == 0
    })
    .await;
    backend.drop_all().await;
}

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

/// Benchmark, run by hand (docs/benchmarks.md, "Hosted SQL"): a point-lookup tool through the
/// real dataplane (2026-07-28 `tools/call` over HTTP, a service token) against the same query run
/// directly on a connection of the tool role, and the same tool over a table with row-level
/// security forced (a policy on `gatehouse.claim('customer_id')`) against one without, all in one
/// run, interleaved in rounds. Prints the mean and median latency of each and the ratios.
/// `HOSTED_SQL_BENCH_CALLS` sets the calls per kind and round (500 by default).
#[tokio::test]
#[ignore = "a benchmark, run by hand"]
async fn hosted_sql_point_lookup_benchmark() {
    let per_round: usize = std::env::var("HOSTED_SQL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@bench.test", "bench").await;
    let base = "/api/v1/orgs/bench";
    let rows = 100_000;
    let backend = TestBackend::create(
        &platform,
        &admin,
        base,
        "bench",
        &format!(
            "CREATE TABLE guarded (id int PRIMARY KEY, customer_id text NOT NULL, title text NOT NULL);
             CREATE TABLE open_rows (id int PRIMARY KEY, customer_id text NOT NULL, title text NOT NULL);
             INSERT INTO guarded SELECT g, 'c' || (g % 8), 'row ' || g FROM generate_series(1, {rows}) g;
             INSERT INTO open_rows SELECT * FROM guarded;
             ALTER TABLE guarded ENABLE ROW LEVEL SECURITY; ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
             CREATE POLICY by_customer ON guarded USING (customer_id = (SELECT gatehouse.claim('customer_id')));
             GRANT SELECT ON guarded, open_rows TO {{role}};
             ANALYZE guarded; ANALYZE open_rows;"
        ),
    )
    .await;
    admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/backends/{}/reference-tables", backend.id),
            Some(json!({"schema": "public", "table": "open_rows"})),
        )
        .await;
    let endpoint_id = backend
        .publish(
            &admin,
            base,
            &[
                (
                    "get_guarded",
                    "SELECT id, title FROM guarded WHERE id = :id",
                    "read",
                    false,
                ),
                (
                    "get_open",
                    "SELECT id, title FROM open_rows WHERE id = :id",
                    "read",
                    false,
                ),
            ],
            "bench",
            "bench",
        )
        .await;
    admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/attributes"),
            Some(json!({"name": "customer_id"})),
        )
        .await;
    let caller = service_token(&admin, base, &endpoint_id, "bench", "bench").await;
    admin
        .send(
            reqwest::Method::PUT,
            &format!(
                "{base}/service-tokens/{}/attributes",
                caller.1.trim_start_matches("service_token:")
            ),
            Some(json!({"attributes": {"customer_id": "c3"}})),
        )
        .await;
    let url = format!("{}/bench/bench/mcp", platform.dataplane);
    served(&platform, &url, &caller.0, "bench__get_guarded").await;
    wait_for(Duration::from_secs(5), || async {
        let answer = call(
            &platform,
            &url,
            &caller.0,
            "bench__get_guarded",
            json!({"id": 3}),
            json!({}),
        )
        .await;
        answer["result"]["structuredContent"]["row_count"] == 1
    })
    .await;
    let mut direct = PgConnection::connect(&backend.tool_role_url()).await.unwrap();

    // Ids of customer c3 (the caller's), so every lookup finds its row in both tables.
    let id_of = |i: usize| (i * 8 % rows + 3) as i64;
    let mut samples: [Vec<f64>; 3] = Default::default();
    for round in 0..4 {
        for (kind, tool) in [(1, "bench__get_guarded"), (2, "bench__get_open")] {
            for i in 0..per_round {
                let id = id_of(round * per_round + i);
                let started = std::time::Instant::now();
                let answer = call(&platform, &url, &caller.0, tool, json!({"id": id}), json!({})).await;
                samples[kind].push(started.elapsed().as_secs_f64() * 1e6);
                assert_eq!(answer["result"]["structuredContent"]["row_count"], 1, "{answer}");
            }
        }
        for i in 0..per_round {
            let id = id_of(round * per_round + i) as i32;
            let started = std::time::Instant::now();
            let row: (i32, String) = sqlx::query_as("SELECT id, title FROM open_rows WHERE id = $1")
                .bind(id)
                .fetch_one(&mut direct)
                .await
                .unwrap();
            samples[0].push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(row.0, id);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (
            v.iter().sum::<f64>() / v.len() as f64,
            v[v.len() / 2],
            v[v.len() * 99 / 100],
        )
    };
    let [mut d, mut on, mut off] = samples;
    let (d, on, off) = (stats(&mut d), stats(&mut on), stats(&mut off));
    println!("calls per kind: {}", per_round * 4);
    println!(
        "direct query (tool role, sqlx)          mean {:>8.1} µs  p50 {:>8.1}  p99 {:>8.1}",
        d.0, d.1, d.2
    );
    println!(
        "dataplane, RLS off (reference table)    mean {:>8.1} µs  p50 {:>8.1}  p99 {:>8.1}",
        off.0, off.1, off.2
    );
    println!(
        "dataplane, RLS on (forced, claim policy) mean {:>8.1} µs  p50 {:>8.1}  p99 {:>8.1}",
        on.0, on.1, on.2
    );
    println!("dataplane / direct (RLS off), p50: {:.2}x", off.1 / d.1);
    println!(
        "RLS on / RLS off through the dataplane, p50: {:.3}x (mean {:.3}x)",
        on.1 / off.1,
        on.0 / off.0
    );
    drop(direct);
    backend.drop_all().await;
}
