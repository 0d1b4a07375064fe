//! The attacker corpus: through tool definitions (refused when defined) and, for the same SQL
//! run anyway as if the control plane had let it through, contained by the backend; and through
//! arguments. Zero foreign rows in every case.

use gatehouse_core::ids::OrgId;
use gatehouse_hosted_sql::define::{self, ToolSpec};
use gatehouse_hosted_sql::pgtypes::{ScalarType, SqlType};
use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::tool::Typed;
use gatehouse_hosted_sql::{CallOptions, ErrorKind, HostedSql, Outcome, RuntimeConfig};
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, Executor};

use crate::harness::{Backend, Owner, caller, seed};
use crate::runs::{args, done};

fn text(name: &str) -> Typed {
    Typed {
        name: name.into(),
        ty: SqlType {
            scalar: ScalarType::Text,
            array: false,
        },
    }
}

#[tokio::test]
async fn attacker_sql_is_refused_when_defined_and_contained_when_run() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c-a".into(),
    };
    let b = Owner {
        org: OrgId::new(),
        customer: "c-b".into(),
    };
    seed(&backend, &[a.clone(), b.clone()], 4).await;
    {
        // dblink, and a function the tool role defined to read the key (in a schema a careless
        // admin let it create in).
        let mut admin = backend.admin().await;
        admin
            .execute(AssertSqlSafe(format!(
                "CREATE EXTENSION IF NOT EXISTS dblink;
                 CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO {role};
                 SET ROLE {role};
                 CREATE FUNCTION scratch.steal_key() RETURNS text LANGUAGE sql SECURITY DEFINER
                     AS $$ SELECT encode(k_ipad, 'hex') FROM gatehouse.context_keys LIMIT 1 $$;
                 RESET ROLE;",
                role = backend.tool_role
            )))
            .await
            .unwrap();
    }
    let cfg = backend.config_at(&backend.direct_host_port(), 1_000, 1_000);
    let runtime = HostedSql::new(RuntimeConfig::default());
    let as_a = caller(&a, "attacker");

    // A context of b, captured from one of b's own transactions.
    let capture = backend.raw_tool(
        "capture",
        "SELECT current_setting('gatehouse.context') AS c",
        Access::Read,
        vec![text("c")],
    );
    let captured = done(
        runtime
            .run(
                &cfg,
                &capture,
                &caller(&b, "victim"),
                &Map::new(),
                &CallOptions::default(),
            )
            .await,
    );
    let b_context = captured.rows[0]["c"].as_str().unwrap().to_owned();
    assert!(b_context.starts_with("v1:"));
    let forged = {
        // Same claims as b's, re-signed with a key the backend does not have.
        let other = gatehouse_hosted_sql::ContextKey::generate();
        let body = b_context.splitn(4, ':').nth(3).unwrap();
        let mac = gatehouse_core::secrets::hmac_sha256(
            other.bytes(),
            format!("v1:{}:{body}", backend.key.kid()).as_bytes(),
        );
        format!("v1:{}:{}:{body}", backend.key.kid(), hex::encode(mac))
    };

    let orders_cols = || vec![text("payload")];
    let cases: Vec<(&str, String, Access)> = vec![
        (
            "set_config in a materialized CTE (captured)",
            format!(
                "WITH x AS MATERIALIZED (SELECT set_config('gatehouse.context', '{b_context}', true)) \
             SELECT o.payload FROM x CROSS JOIN LATERAL (SELECT payload FROM orders) o"
            ),
            Access::Read,
        ),
        (
            "set_config in a LATERAL (forged)",
            format!(
                "SELECT o.payload FROM (SELECT set_config('gatehouse.context', '{forged}', true)) s \
             CROSS JOIN LATERAL (SELECT payload FROM orders) o"
            ),
            Access::Read,
        ),
        (
            "set_config in a WHERE",
            format!(
                "SELECT payload FROM orders WHERE set_config('gatehouse.context', '{b_context}', true) IS NOT NULL"
            ),
            Access::Read,
        ),
        (
            "SET of the context",
            format!("SET gatehouse.context = '{b_context}'"),
            Access::Read,
        ),
        ("SET ROLE", "SET ROLE postgres".into(), Access::Read),
        ("RESET ROLE", "RESET ROLE".into(), Access::Read),
        (
            "SET SESSION AUTHORIZATION",
            "SET SESSION AUTHORIZATION postgres".into(),
            Access::Read,
        ),
        ("RESET ALL", "RESET ALL".into(), Access::Read),
        (
            "the key table",
            "SELECT encode(k_ipad, 'hex') AS payload FROM gatehouse.context_keys".into(),
            Access::Read,
        ),
        (
            "a function defined to read the key",
            "SELECT scratch.steal_key() AS payload".into(),
            Access::Read,
        ),
        (
            "COPY to the client",
            "COPY (SELECT payload FROM orders) TO STDOUT".into(),
            Access::Read,
        ),
        (
            "COPY to a file",
            "COPY orders TO '/tmp/gatehouse-stolen'".into(),
            Access::Write,
        ),
        (
            "pg_read_file",
            "SELECT pg_read_file('/etc/passwd') AS payload".into(),
            Access::Read,
        ),
        (
            "lo_import",
            "SELECT lo_import('/etc/passwd')::text AS payload".into(),
            Access::Write,
        ),
        (
            "pg_sleep",
            "SELECT pg_sleep(30)::text AS payload".into(),
            Access::Read,
        ),
        (
            "dblink as superuser",
            format!(
                "SELECT payload FROM dblink('dbname={} user=postgres', 'SELECT payload FROM orders') AS t(payload text)",
                backend.db
            ),
            Access::Read,
        ),
        (
            "multiple statements",
            "SELECT payload FROM orders; SELECT payload FROM orders".into(),
            Access::Read,
        ),
        ("transaction control", "COMMIT".into(), Access::Read),
        (
            "a write in a read tool",
            "DELETE FROM orders RETURNING payload".into(),
            Access::Read,
        ),
        (
            "the gatehouse internals",
            "SELECT gatehouse._verified()::text AS payload".into(),
            Access::Read,
        ),
        (
            "disabling RLS",
            "ALTER TABLE orders DISABLE ROW LEVEL SECURITY".into(),
            Access::Write,
        ),
        (
            "a foreign write",
            format!(
                "UPDATE orders SET note = 'pwned' WHERE customer_id = '{}' RETURNING payload",
                b.customer
            ),
            Access::Write,
        ),
        (
            "a foreign insert",
            format!(
                "INSERT INTO orders (id, org_id, customer_id, payload) VALUES (99999, '{}', '{}', 'x') RETURNING payload",
                b.org, b.customer
            ),
            Access::Write,
        ),
    ];
    let descriptions = Map::new();
    for (what, sql, access) in &cases {
        // 1. Refused when defined.
        let refused = define::define(
            &cfg,
            &ToolSpec {
                name: "attack",
                description: "",
                sql,
                access: *access,
                destructive: false,
                param_descriptions: &descriptions,
            },
        )
        .await;
        let definition_refused = match &refused {
            Err(e) => e.field == "sql",
            // A foreign write is a valid statement: the backend's policies contain it below.
            Ok(_) => false,
        };
        assert!(
            definition_refused || what.starts_with("a foreign"),
            "{what}: defined as {:?}",
            refused.map(|d| d.definition)
        );

        // 2. Contained when run anyway.
        let tool = backend.raw_tool("attack", sql, *access, orders_cols());
        let outcome = runtime
            .run(&cfg, &tool, &as_a, &Map::new(), &CallOptions::default())
            .await;
        if let Ok(Outcome::Done(done)) = &outcome {
            for row in &done.result.rows {
                assert_eq!(
                    row.get("payload").and_then(Value::as_str),
                    Some(a.tag().as_str()),
                    "{what}: leaked {row:?}"
                );
            }
        }
        if *what == "pg_sleep" {
            assert_eq!(outcome.as_ref().unwrap_err().kind, ErrorKind::Timeout, "{what}");
        }
        if what.starts_with("set_config")
            && let Err(err) = &outcome
        {
            // Either the policy read the caller's context before the statement replaced it (and
            // only a's rows came back), or it read the replacement and refused it.
            assert!(err.message.contains("caller context"), "{what}: {}", err.message);
        }
    }

    // Nothing was written to b's rows, and no foreign row was inserted.
    let mut admin = backend.admin().await;
    let (pwned, foreign): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders WHERE note = 'pwned'), (SELECT count(*) FROM orders WHERE id = 99999)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!((pwned, foreign), (0, 0));
    let rls: bool = sqlx::query_scalar("SELECT relrowsecurity FROM pg_class WHERE relname = 'orders'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(rls);

    // A session-level SET left behind by a tool does not reach the next call, whoever makes it.
    let list = backend
        .tool(&cfg, "list", "SELECT payload FROM orders", Access::Read, false)
        .await;
    for _ in 0..8 {
        let set = backend.raw_tool(
            "set",
            &format!("SET gatehouse.context = '{b_context}'"),
            Access::Read,
            vec![],
        );
        let _ = runtime
            .run(&cfg, &set, &as_a, &Map::new(), &CallOptions::default())
            .await;
        let rows = done(
            runtime
                .run(&cfg, &list, &as_a, &Map::new(), &CallOptions::default())
                .await,
        );
        assert_eq!(rows.row_count, 4);
        assert!(rows.rows.iter().all(|r| r["payload"] == a.tag()));
    }
    drop(admin);
    backend.drop().await;
}

#[tokio::test]
async fn attacker_arguments_are_data_or_refused() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c-a".into(),
    };
    let b = Owner {
        org: backend.org_id,
        customer: "c-b".into(),
    };
    seed(&backend, &[a.clone(), b.clone()], 4).await;
    let cfg = backend.direct();
    let runtime = HostedSql::new(RuntimeConfig::default());
    let by_status = backend
        .tool(
            &cfg,
            "by_status",
            "SELECT id, payload FROM orders WHERE status = :status",
            Access::Read,
            false,
        )
        .await;
    let by_ids = backend
        .tool(
            &cfg,
            "by_ids",
            "SELECT id, payload FROM orders WHERE id = ANY(:ids)",
            Access::Read,
            false,
        )
        .await;
    let as_a = caller(&a, "a");
    let run = |tool, v: Value| {
        let runtime = runtime.clone();
        let cfg = cfg.clone();
        let as_a = as_a.clone();
        async move {
            runtime
                .run(&cfg, tool, &as_a, &args(v), &CallOptions::default())
                .await
        }
    };
    for fragment in [
        "open' OR '1'='1",
        "open'; DROP TABLE orders; --",
        "' UNION SELECT id, payload FROM orders --",
        "$$ OR true $$",
        "open\\' OR 1=1 --",
        "); SELECT set_config('gatehouse.context', 'x', true); --",
    ] {
        let rows = done(run(&by_status, json!({"status": fragment})).await);
        assert_eq!(rows.row_count, 0, "{fragment}");
    }
    let rows = done(run(&by_ids, json!({"ids": (1..=8).collect::<Vec<i32>>()})).await);
    assert_eq!(rows.row_count, 4, "only a's four of the eight ids");
    assert!(rows.rows.iter().all(|r| r["payload"] == a.tag()));
    for (bad, why) in [
        (json!({"status": 1}), "string"),
        (json!({"status": true}), "string"),
        (json!({"status": ["open"]}), "string"),
        (json!({"status": {"$ne": 1}}), "string"),
        (json!({"status": "open\u{0}"}), "NUL"),
        (json!({"status": "x".repeat(70_000)}), "at most"),
    ] {
        let err = run(&by_status, bad.clone()).await.expect_err("refused");
        assert_eq!(err.kind, ErrorKind::InvalidArguments, "{bad}");
        assert!(err.message.contains(why), "{}", err.message);
    }
    let err = run(&by_ids, json!({"ids": vec![1; 10_001]}))
        .await
        .expect_err("too many");
    assert!(err.message.contains("at most"));
    let err = run(&by_ids, json!({"ids": [1, "2"]})).await.expect_err("mixed");
    assert!(err.message.contains("item 1"));
    // A string longer than any row, but within limits, is just data.
    let rows = done(run(&by_status, json!({"status": "é".repeat(20_000)})).await);
    assert_eq!(rows.row_count, 0);
    backend.drop().await;
}
