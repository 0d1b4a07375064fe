//! Writes: idempotent retries (the first result, nothing changed again, also under concurrency),
//! destructive tools only after a confirmation bound to the exact call and spent once, and the
//! row cap on writes.

use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::{CallOptions, ErrorKind, HostedSql, Outcome, RuntimeConfig};
use serde_json::json;

use crate::harness::{Backend, Owner, caller, seed};
use crate::runs::{args, done};

async fn notes(backend: &Backend, id: i32) -> Option<String> {
    let mut admin = backend.admin().await;
    sqlx::query_scalar("SELECT note FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_write_with_the_same_key_returns_the_first_result_and_changes_nothing() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c-a".into(),
    };
    let b = Owner {
        org: backend.org_id,
        customer: "c-b".into(),
    };
    seed(&backend, &[a.clone(), b.clone()], 2).await;
    let cfg = backend.direct();
    let append = backend
        .tool(
            &cfg,
            "append_note",
            "UPDATE orders SET note = coalesce(note, '') || :text WHERE id = :id RETURNING id, note",
            Access::Write,
            false,
        )
        .await;
    let runtime = HostedSql::new(RuntimeConfig::default());
    let as_a = caller(&a, "a");
    let key = CallOptions {
        idempotency_key: Some("retry-1".into()),
        confirmation: None,
    };
    let first = done(
        runtime
            .run(&cfg, &append, &as_a, &args(json!({"id": 1, "text": "x"})), &key)
            .await,
    );
    assert_eq!(first.rows_affected, Some(1));
    assert!(!first.replayed);
    let again = done(
        runtime
            .run(&cfg, &append, &as_a, &args(json!({"id": 1, "text": "x"})), &key)
            .await,
    );
    assert!(again.replayed);
    assert_eq!(again.rows, first.rows);
    assert_eq!(
        notes(&backend, 1).await.as_deref(),
        Some("x"),
        "the retry changed nothing"
    );
    // The same key with other arguments is refused; another caller's same key is theirs.
    let err = runtime
        .run(&cfg, &append, &as_a, &args(json!({"id": 1, "text": "y"})), &key)
        .await
        .expect_err("conflict");
    assert_eq!(err.kind, ErrorKind::IdempotencyConflict);
    let other = done(
        runtime
            .run(
                &cfg,
                &append,
                &caller(&a, "a2"),
                &args(json!({"id": 1, "text": "x"})),
                &key,
            )
            .await,
    );
    assert!(!other.replayed);
    assert_eq!(notes(&backend, 1).await.as_deref(), Some("xx"));
    // Without a key, every call writes.
    for _ in 0..2 {
        done(
            runtime
                .run(
                    &cfg,
                    &append,
                    &as_a,
                    &args(json!({"id": 1, "text": "z"})),
                    &CallOptions::default(),
                )
                .await,
        );
    }
    assert_eq!(notes(&backend, 1).await.as_deref(), Some("xxzz"));

    // Eight concurrent calls with one key: exactly one writes, all return its result.
    let key = CallOptions {
        idempotency_key: Some("burst".into()),
        confirmation: None,
    };
    let calls = (0..8).map(|_| {
        let (runtime, cfg, append, as_a, key) = (
            runtime.clone(),
            cfg.clone(),
            append.clone(),
            as_a.clone(),
            key.clone(),
        );
        tokio::spawn(async move {
            runtime
                .run(&cfg, &append, &as_a, &args(json!({"id": 3, "text": "q"})), &key)
                .await
        })
    });
    let results: Vec<_> = futures::future::join_all(calls).await;
    let replayed = results
        .into_iter()
        .map(|r| done(r.unwrap()))
        .filter(|r| r.replayed)
        .count();
    assert_eq!(replayed, 7);
    assert_eq!(notes(&backend, 3).await.as_deref(), Some("q"));
    backend.drop().await;
}

#[tokio::test]
async fn destructive_tools_run_once_per_confirmation_of_the_exact_call() {
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
    let cfg = backend.direct();
    let delete = backend
        .tool(
            &cfg,
            "delete_order",
            "DELETE FROM orders WHERE id = :id RETURNING id",
            Access::Write,
            true,
        )
        .await;
    let runtime = HostedSql::new(RuntimeConfig::default());
    let as_a = caller(&a, "a");
    let ask = |id: i32| {
        let (runtime, cfg, delete, as_a) = (runtime.clone(), cfg.clone(), delete.clone(), as_a.clone());
        async move {
            match runtime
                .run(
                    &cfg,
                    &delete,
                    &as_a,
                    &args(json!({"id": id})),
                    &CallOptions::default(),
                )
                .await
            {
                Ok(Outcome::ConfirmationRequired(request)) => request,
                other => panic!("expected a confirmation request, got {other:?}"),
            }
        }
    };
    let request = ask(1).await;
    assert!(
        request.message.contains("delete_order") && request.message.contains("\"id\":1"),
        "{}",
        request.message
    );
    assert_eq!(
        notes_count(&backend).await,
        6,
        "nothing ran before the confirmation"
    );
    let with = |token: &str| CallOptions {
        idempotency_key: None,
        confirmation: Some(token.to_owned()),
    };
    // For other arguments, another caller, or a tampered token: refused.
    let err = runtime
        .run(
            &cfg,
            &delete,
            &as_a,
            &args(json!({"id": 4})),
            &with(&request.token),
        )
        .await
        .expect_err("other arguments");
    assert_eq!(err.kind, ErrorKind::Confirmation);
    let err = runtime
        .run(
            &cfg,
            &delete,
            &caller(&a, "someone-else"),
            &args(json!({"id": 1})),
            &with(&request.token),
        )
        .await
        .expect_err("other caller");
    assert_eq!(err.kind, ErrorKind::Confirmation);
    let mut tampered = request.token.clone();
    tampered.insert(5, 'x');
    let err = runtime
        .run(&cfg, &delete, &as_a, &args(json!({"id": 1})), &with(&tampered))
        .await
        .expect_err("tampered");
    assert_eq!(err.kind, ErrorKind::Confirmation);
    // The right call runs once.
    let outcome = runtime
        .run(
            &cfg,
            &delete,
            &as_a,
            &args(json!({"id": 1})),
            &with(&request.token),
        )
        .await
        .unwrap();
    let Outcome::Done(done_call) = outcome else {
        panic!("ran")
    };
    assert_eq!(done_call.result.rows_affected, Some(1));
    assert!(done_call.confirmed.is_some());
    let err = runtime
        .run(
            &cfg,
            &delete,
            &as_a,
            &args(json!({"id": 1})),
            &with(&request.token),
        )
        .await
        .expect_err("spent");
    assert_eq!(err.kind, ErrorKind::Confirmation);
    assert_eq!(notes_count(&backend).await, 5);
    // A confirmed delete of another owner's order deletes nothing.
    let request = ask(2).await;
    let result = done(
        runtime
            .run(
                &cfg,
                &delete,
                &as_a,
                &args(json!({"id": 2})),
                &with(&request.token),
            )
            .await,
    );
    assert_eq!(result.rows_affected, Some(0));
    assert_eq!(notes_count(&backend).await, 5);
    backend.drop().await;
}

async fn notes_count(backend: &Backend) -> i64 {
    let mut admin = backend.admin().await;
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_write_beyond_the_row_cap_changes_nothing() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c-a".into(),
    };
    seed(&backend, std::slice::from_ref(&a), 6).await;
    let cfg = backend.config_at(&backend.direct_host_port(), 2_000, 5);
    let close_all = backend
        .tool(
            &cfg,
            "close_all",
            "UPDATE orders SET status = 'closed'",
            Access::Write,
            false,
        )
        .await;
    let list = backend
        .tool(&cfg, "list", "SELECT id FROM orders", Access::Read, false)
        .await;
    let runtime = HostedSql::new(RuntimeConfig::default());
    let as_a = caller(&a, "a");
    let err = runtime
        .run(&cfg, &close_all, &as_a, &args(json!({})), &CallOptions::default())
        .await
        .expect_err("too many rows");
    assert!(err.message.contains("more than 5 rows"), "{}", err.message);
    let mut admin = backend.admin().await;
    let closed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'closed'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(closed, 0);
    // Reads are cut at the cap and say so.
    let rows = done(
        runtime
            .run(&cfg, &list, &as_a, &args(json!({})), &CallOptions::default())
            .await,
    );
    assert_eq!((rows.row_count, rows.truncated), (5, true));
    drop(admin);
    backend.drop().await;
}
