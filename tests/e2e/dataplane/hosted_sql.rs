//! Hosted SQL tools through the real dataplane: a backend registered and set up through the REST
//! API, its tools approved and exposed at an endpoint, then called by two callers whose rows the
//! backend's own row-level security keeps apart; a destructive tool runs only with the
//! confirmation it handed out, once.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::tokens::{mcp, request};
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

fn ids(answer: &Value) -> Vec<i64> {
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    answer["result"]["structuredContent"]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("rows in {answer}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn hosted_sql_tools_run_per_caller_under_the_backends_row_level_security() {
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@notes.test", "notes").await;

    // The customer's database: notes owned by callers, protected by a policy on the verified
    // subject Gatehouse signs into each transaction.
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
    let base = "/api/v1/orgs/notes";
    let backend = admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/backends"),
            Some(json!({"slug": "notes", "name": "Notes", "dsn": dsn, "tls_mode": "disable", "owner_role": owner_role})),
        )
        .await;
    let backend_id = backend["id"].as_str().unwrap().to_owned();
    let setup = platform
        .http
        .get(format!(
            "{}{base}/backends/{backend_id}/setup-sql",
            platform.control_api
        ))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut backend_db = PgConnection::connect(&superuser_url(&db)).await.unwrap();
    backend_db.execute(AssertSqlSafe(setup)).await.unwrap();
    backend_db
        .execute(AssertSqlSafe(format!(
            "CREATE TABLE notes (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
             CREATE POLICY mine ON notes USING (owner = (SELECT gatehouse.subject()));
             GRANT SELECT, DELETE ON notes TO {role};"
        )))
        .await
        .unwrap();
    let ready = admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/backends/{backend_id}/test"),
            None,
        )
        .await;
    assert_eq!(ready["ready"], true, "{ready}");

    // Two tools: a read, and a destructive write.
    let mut tool_ids = Vec::new();
    for (name, sql, access, destructive) in [
        (
            "my_notes",
            "SELECT id, body FROM notes ORDER BY id",
            "read",
            false,
        ),
        ("delete_note", "DELETE FROM notes WHERE id = :id", "write", true),
    ] {
        let tool = admin
            .send(
                reqwest::Method::POST,
                &format!("{base}/backends/{backend_id}/tools"),
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
            Some(json!({"name": "notes", "tool_ids": tool_ids})),
        )
        .await;
    let endpoint = admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/endpoints"),
            Some(json!({"slug": "notes", "name": "Notes"})),
        )
        .await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    admin
        .send(
            reqwest::Method::PUT,
            &format!("{base}/endpoints/{endpoint_id}/backends"),
            Some(json!({"backends": [{"backend_id": backend_id}]})),
        )
        .await;

    // Two callers, each with rows of their own.
    let mut callers = Vec::new();
    for name in ["alice", "bob"] {
        let created = admin
            .send(
                reqwest::Method::POST,
                &format!("{base}/service-tokens"),
                Some(json!({"name": name, "endpoint_id": endpoint_id, "scopes": ["notes"]})),
            )
            .await;
        callers.push((
            created["secret"].as_str().unwrap().to_owned(),
            format!("service_token:{}", created["id"].as_str().unwrap()),
        ));
    }
    let (alice, bob) = (&callers[0], &callers[1]);
    backend_db
        .execute(AssertSqlSafe(format!(
            "INSERT INTO notes VALUES (1, '{a}', 'alice 1'), (2, '{b}', 'bob 2'), (3, '{a}', 'alice 3'), (4, 'nobody', 'orphan')",
            a = alice.1,
            b = bob.1
        )))
        .await
        .unwrap();

    let url = format!("{}/notes/notes/mcp", platform.dataplane);
    let read = "notes__my_notes";
    wait_for(Duration::from_secs(5), || async {
        call(&platform, &url, &alice.0, read, json!({}), json!({})).await["result"]["isError"] == false
    })
    .await;

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

    // The calls reach the audit trail like any tool's; those awaiting confirmation as denied.
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
        if counts == [("tool.call".to_owned(), 5), ("tool.denied".to_owned(), 2)] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audit trail: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    drop(backend_db);
    pg.execute(AssertSqlSafe(format!("DROP DATABASE \"{db}\" WITH (FORCE)")))
        .await
        .unwrap();
    for r in [&role, &owner_role] {
        pg.execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}")))
            .await
            .unwrap();
    }
}
