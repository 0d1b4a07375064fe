//! Calls that succeed: typed parameters in, structured rows and a text table out, each caller
//! seeing its own rows; bad arguments refused before the backend sees them.

use gatehouse_core::ids::OrgId;
use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::{CallOptions, ErrorKind, HostedSql, Outcome, RuntimeConfig, ToolResult};
use serde_json::{Map, Value, json};

use crate::harness::{Backend, Owner, PgBouncer, caller, seed};

pub fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

pub fn done(outcome: Result<Outcome, gatehouse_hosted_sql::ToolError>) -> ToolResult {
    match outcome {
        Ok(Outcome::Done(done)) => done.result,
        other => panic!("expected rows, got {other:?}"),
    }
}

#[tokio::test]
async fn a_point_lookup_returns_typed_rows_of_the_callers_own_only() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c-a".into(),
    };
    let b = Owner {
        org: OrgId::new(),
        customer: "c-a".into(),
    };
    seed(&backend, &[a.clone(), b.clone()], 5).await;
    let cfg = backend.direct();
    let get = backend
        .tool(
            &cfg,
            "get_order",
            "SELECT id, status, total, payload FROM orders WHERE id = :id",
            Access::Read,
            false,
        )
        .await;
    let list = backend
        .tool(
            &cfg,
            "list_orders",
            "SELECT id, payload FROM orders ORDER BY id",
            Access::Read,
            false,
        )
        .await;
    let runtime = HostedSql::new(RuntimeConfig::default());
    let as_a = caller(&a, "user-a");
    // Order 1 is a's, order 2 is b's (seeding interleaves owners).
    let mine = done(
        runtime
            .run(
                &cfg,
                &get,
                &as_a,
                &args(json!({"id": 1})),
                &CallOptions::default(),
            )
            .await,
    );
    assert_eq!(mine.row_count, 1);
    assert_eq!(mine.rows[0]["total"], "10.00");
    assert_eq!(mine.rows[0]["payload"], a.tag());
    assert_eq!(mine.columns[2].ty, "numeric");
    let text = mine.text();
    assert!(text.starts_with("id | status  | total | payload"), "{text}");
    let theirs = done(
        runtime
            .run(
                &cfg,
                &get,
                &as_a,
                &args(json!({"id": 2})),
                &CallOptions::default(),
            )
            .await,
    );
    assert_eq!(
        theirs.row_count, 0,
        "another org's order with the same customer id is invisible"
    );
    let all = done(
        runtime
            .run(&cfg, &list, &as_a, &Map::new(), &CallOptions::default())
            .await,
    );
    assert_eq!(all.row_count, 5);
    assert!(all.rows.iter().all(|r| r["payload"] == a.tag()));

    // Arguments are checked against the types learned from the backend.
    for (bad, why) in [
        (json!({"id": "1"}), "integer"),
        (json!({"id": 1.5}), "integer"),
        (json!({"id": 9_999_999_999i64}), "integer"),
        (json!({"id": null}), "required"),
        (json!({}), "required"),
        (json!({"id": 1, "extra": 2}), "unknown argument"),
        (json!({"id": [1]}), "integer"),
    ] {
        let err = runtime
            .run(&cfg, &get, &as_a, &args(bad.clone()), &CallOptions::default())
            .await
            .expect_err("refused");
        assert_eq!(err.kind, ErrorKind::InvalidArguments, "{bad}");
        assert!(err.message.contains(why), "{bad}: {}", err.message);
    }
    backend.drop().await;
}

#[tokio::test]
async fn the_same_calls_work_through_pgbouncer_in_transaction_mode() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c-a".into(),
    };
    let b = Owner {
        org: backend.org_id,
        customer: "c-b".into(),
    };
    seed(&backend, &[a.clone(), b.clone()], 3).await;
    let bouncer = PgBouncer::start(&backend, 2, None).await;
    let cfg = backend.config_at(&bouncer.host_port(), 2_000, 100);
    let list = backend
        .tool(&cfg, "list_orders", "SELECT id, payload, gatehouse.subject() AS subject FROM orders WHERE status = :status ORDER BY id", Access::Read, false)
        .await;
    let runtime = HostedSql::new(RuntimeConfig::default());
    for round in 0..20 {
        let (owner, sub) = if round % 2 == 0 { (&a, "sa") } else { (&b, "sb") };
        let rows = done(
            runtime
                .run(
                    &cfg,
                    &list,
                    &caller(owner, sub),
                    &args(json!({"status": "open"})),
                    &CallOptions::default(),
                )
                .await,
        );
        assert_eq!(rows.row_count, 2);
        assert!(
            rows.rows
                .iter()
                .all(|r| r["payload"] == owner.tag() && r["subject"] == sub)
        );
    }
    drop(bouncer);
    backend.drop().await;
}
