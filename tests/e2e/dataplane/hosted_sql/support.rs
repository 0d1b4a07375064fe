//! Shared setup of the hosted SQL tests: a throwaway backend database registered and published
//! through the REST API, service tokens of its endpoint, and stateless `tools/call` helpers.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::dataplane::tokens::{mcp, request};
use gatehouse_test_support::console::ConsoleClient;

use crate::dataplane::wait_for;
use crate::platform::Platform;

pub(super) const MODERN: &str = "2026-07-28";

fn superuser_url(db: &str) -> String {
    let mut url = url::Url::parse(&gatehouse_test_support::testdb::server_url()).unwrap();
    url.set_path(&format!("/{db}"));
    url.to_string()
}

/// A `tools/call` of `name` as `token` (a 2026-07-28 stateless request); `meta` is added to the
/// request's `_meta`. Returns the JSON-RPC response.
pub(super) async fn call(
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
pub(super) async fn served(platform: &Platform, url: &str, token: &str, tool: &str) {
    wait_for(Duration::from_secs(5), || async {
        let body = request(MODERN, 1, "tools/call", json!({"name": tool, "arguments": {}}));
        let (status, answer, _) = mcp(platform, url, token, MODERN, None, body).await;
        status == 200 && answer["result"]["content"].is_array()
    })
    .await;
}

pub(super) fn ids(answer: &Value) -> Vec<i64> {
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
pub(super) struct TestBackend {
    pg: PgConnection,
    pub(super) conn: PgConnection,
    db: String,
    role: String,
    owner_role: String,
    pub(super) id: String,
    dsn: String,
}

impl TestBackend {
    pub(super) async fn create(
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
    pub(super) fn tool_role_url(&self) -> String {
        self.dsn.clone()
    }

    /// Defines and approves `tools` (name, SQL, access, destructive), grants them all through the
    /// scope `scope`, and exposes the backend at a new endpoint `endpoint`; returns its id.
    pub(super) async fn publish(
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

    pub(super) async fn drop_all(self) {
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
pub(super) async fn service_token(
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
