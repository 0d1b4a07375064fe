//! Backends and hosted SQL tools through the API, end to end: register a backend, install its
//! setup SQL as an admin would, test it, define tools (refused when the parser or the backend
//! refuses them), the publication gate on approval (an unprotected table blocks until marked
//! reference data), the snapshot the dataplane gets, and that snapshot run by the runtime.

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use gatehouse_core::snapshot::ToolTarget;
use gatehouse_hosted_sql::{BackendConfig, CallOptions, CallerContext, HostedSql, Outcome, SqlTool};

use super::internal_snapshot;
use crate::generated::app_reaching_loopback;

fn superuser_url(db: &str) -> String {
    let mut url = url::Url::parse(&gatehouse_test_support::testdb::server_url()).unwrap();
    url.set_path(&format!("/{db}"));
    url.to_string()
}

#[tokio::test]
async fn a_backend_and_its_tools_from_registration_to_a_call() {
    let app = app_reaching_loopback().await;
    let owner = app
        .user(&format!(
            "hs-{}@example.com",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
        .await;
    let (org, org_id) = app
        .org(
            &owner,
            &format!("hs{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        )
        .await;

    // A backend database with a dedicated tool role, as a customer would prepare it.
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (db, role, owner_role, password) = (
        format!("hsapi_{tag}"),
        format!("hsapi_tools_{tag}"),
        format!("hsapi_owner_{tag}"),
        format!("pw-{tag}"),
    );
    let mut admin = PgConnection::connect(&superuser_url("postgres")).await.unwrap();
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOBYPASSRLS NOINHERIT"
        )))
        .await
        .unwrap();
    let mut backend_db = PgConnection::connect(&superuser_url(&db)).await.unwrap();
    let server = url::Url::parse(&gatehouse_test_support::testdb::server_url()).unwrap();
    let dsn = format!(
        "postgres://{role}:{password}@{}:{}/{db}",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432)
    );

    let base = format!("/api/v1/orgs/{org}");
    let created = owner
        .post(&format!("{base}/backends"))
        .json(&json!({"slug": "shop", "name": "Shop", "dsn": dsn, "tls_mode": "disable", "owner_role": owner_role}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(
        !text.contains(&password),
        "the connection string is write-only: {text}"
    );
    let backend: Value = serde_json::from_str(&text).unwrap();
    let backend_id = backend["id"].as_str().unwrap().to_owned();
    assert!(backend["target"].as_str().unwrap().ends_with(&format!("/{db}")));

    // Before setup the backend is not ready; the setup SQL makes it so.
    let test =
        |owner: &crate::helpers::TestUser| owner.post(&format!("{base}/backends/{backend_id}/test")).send();
    let before: Value = test(&owner).await.unwrap().json().await.unwrap();
    assert_eq!(before["ready"], false);
    assert_eq!(before["status"]["schema_version"], 0);
    let setup = owner
        .get(&format!("{base}/backends/{backend_id}/setup-sql"))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.headers()["cache-control"], "no-store");
    backend_db
        .execute(AssertSqlSafe(setup.text().await.unwrap()))
        .await
        .unwrap();
    backend_db
        .execute(AssertSqlSafe(format!(
            "CREATE TABLE orders (id int PRIMARY KEY, customer_id text NOT NULL, sku text NOT NULL, total numeric(10,2) NOT NULL);
             ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY;
             CREATE POLICY mine ON orders USING (customer_id = (SELECT gatehouse.claim('customer_id')));
             CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL);
             INSERT INTO orders VALUES (1, 'c-1', 'a', 10.50), (2, 'c-2', 'a', 20.00), (3, 'c-1', 'b', 5.25);
             INSERT INTO products VALUES ('a', 'Apples'), ('b', 'Bread');
             GRANT SELECT ON orders, products TO {role};"
        )))
        .await
        .unwrap();
    let after: Value = test(&owner).await.unwrap().json().await.unwrap();
    assert_eq!(after["ready"], true, "{after}");

    // Refused when defined: by the parser, and by the backend.
    for (sql, why) in [
        ("SELECT set_config('gatehouse.context', 'x', true)", "not allowed"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("DELETE FROM orders", "read tool"),
    ] {
        let refused = owner
            .post(&format!("{base}/backends/{backend_id}/tools"))
            .json(&json!({"name": "bad", "description": "", "sql": sql, "access": "read"}))
            .send()
            .await
            .unwrap();
        let (status, problem) = crate::world::problem(refused).await;
        assert_eq!(status, 400, "{sql}");
        assert_eq!(problem["field"], "sql", "{problem}");
        assert!(problem.to_string().contains(why), "{sql}: {problem}");
    }

    let created = owner
        .post(&format!("{base}/backends/{backend_id}/tools"))
        .json(&json!({
            "name": "my_orders",
            "description": "The caller's orders with their product titles.",
            "sql": "SELECT o.id, o.total, p.title FROM orders o JOIN products p ON p.sku = o.sku WHERE o.total >= :min_total ORDER BY o.id",
            "access": "read",
            "parameter_descriptions": {"min_total": "Smallest total to include"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let tool: Value = created.json().await.unwrap();
    assert_eq!(tool["status"], "pending");
    assert_eq!(tool["exposed_name"], "shop__my_orders");
    let min_total = &tool["definition"]["inputSchema"]["properties"]["min_total"];
    assert_eq!(min_total["description"], "Smallest total to include");
    assert!(min_total["type"].to_string().contains("number"), "{min_total}");
    let tool_id = tool["id"].as_str().unwrap().to_owned();

    // The gate: products has no row-level security.
    let approve = || {
        owner
            .post(&format!("{base}/tools/{tool_id}/approve"))
            .json(&json!({"definition_hash": tool["definition_hash"]}))
            .send()
    };
    let (status, problem) = crate::world::problem(approve().await.unwrap()).await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "unprotected_tables");
    assert!(
        problem["detail"].as_str().unwrap().contains("public.products"),
        "{problem}"
    );
    let marked = owner
        .post(&format!("{base}/backends/{backend_id}/reference-tables"))
        .json(&json!({"schema": "public", "table": "products"}))
        .send()
        .await
        .unwrap();
    assert_eq!(marked.status(), 204);
    let approved = approve().await.unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.text().await.unwrap());

    // Exposed at an endpoint, in the snapshot with what the runtime needs.
    let endpoint: Value = owner
        .post(&format!("{base}/endpoints"))
        .json(&json!({"slug": "shop", "name": "Shop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let set = owner
        .request(
            reqwest::Method::PUT,
            &format!("{base}/endpoints/{}/backends", endpoint["id"].as_str().unwrap()),
        )
        .json(&json!({"backends": [{"backend_id": backend_id}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let snapshot = internal_snapshot(&app, org_id).await;
    assert!(!format!("{snapshot:?}").contains(&password));
    let ep = snapshot.endpoints.iter().find(|e| e.slug == "shop").unwrap();
    let exposed = ep
        .tools
        .iter()
        .find(|t| t.exposed_name == "shop__my_orders")
        .expect("namespaced by the backend slug");
    let ToolTarget::Sql(target) = &exposed.target else {
        panic!("a SQL target")
    };
    assert_eq!(target.access, "read");
    assert!(target.sql.contains("o.total >= $1"));

    // The runtime runs the snapshot as the dataplane will: with the snapshot key of the dataplane
    // secret, not with the keys at rest.
    let backend_snapshot = snapshot.backends.iter().find(|b| b.slug == "shop").unwrap();
    assert!(BackendConfig::from_snapshot(org_id, backend_snapshot, &app.keyring()).is_err());
    let snapshot_keys = app.cfg.dataplane_keys().unwrap().snapshot;
    let config = BackendConfig::from_snapshot(org_id, backend_snapshot, &snapshot_keys).unwrap();
    let sql_tool = SqlTool::from_snapshot(
        exposed.tool_id,
        &exposed.approved_hash,
        target,
        &config.allowed_functions,
    )
    .unwrap();
    let runtime = HostedSql::new(Default::default());
    let caller = CallerContext {
        org_id,
        endpoint_id: ep.id,
        subject: "service_token:1".into(),
        subject_kind: "service_token".into(),
        email: None,
        scopes: vec![],
        attributes: [("customer_id".to_owned(), "c-1".to_owned())].into(),
    };
    let arguments = json!({"min_total": "5"}).as_object().cloned().unwrap();
    let Outcome::Done(done) = runtime
        .run(&config, &sql_tool, &caller, &arguments, &CallOptions::default())
        .await
        .unwrap()
    else {
        panic!("rows")
    };
    let ids: Vec<i64> = done
        .result
        .rows
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3], "c-1's orders only");
    assert_eq!(done.result.rows[0]["title"], "Apples");

    // Unmarking the reference table withholds the tool at once.
    let unmarked = owner
        .request(
            reqwest::Method::DELETE,
            &format!("{base}/backends/{backend_id}/reference-tables/public/products"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unmarked.status(), 204);
    let tool_now: Value = owner
        .get(&format!("{base}/backends/{backend_id}/tools/{tool_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tool_now["status"], "changed");
    let snapshot = internal_snapshot(&app, org_id).await;
    assert!(
        snapshot
            .endpoints
            .iter()
            .all(|e| e.tools.iter().all(|t| t.tool_id.to_string() != tool_id))
    );

    // Every step is on the audit trail, without the connection string.
    let mut platform = app.db.admin().await;
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE org_id = $1 ORDER BY seq")
            .bind(org_id)
            .fetch_all(&mut platform)
            .await
            .unwrap();
    for action in [
        "backend.create",
        "backend.test",
        "backend.setup_sql_viewed",
        "sql_tool.create",
        "backend.reference_table_marked",
        "tool.approve",
        "endpoint.backends",
        "backend.reference_table_unmarked",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    let trail: String =
        sqlx::query_scalar("SELECT string_agg(details::text, ' ') FROM audit_events WHERE org_id = $1")
            .bind(org_id)
            .fetch_one(&mut platform)
            .await
            .unwrap();
    assert!(!trail.contains(&password));

    drop(backend_db);
    admin
        .execute(AssertSqlSafe(format!("DROP DATABASE \"{db}\" WITH (FORCE)")))
        .await
        .unwrap();
    for r in [&role, &owner_role] {
        admin
            .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}")))
            .await
            .unwrap();
    }
}
