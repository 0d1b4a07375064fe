//! The inspection that gates publication: tables without forced row-level security, views that
//! read as their owner, and tool roles that can bypass row-level security block a tool, unless
//! the relation is marked tenant-neutral reference data. Also the backend test and the schema's
//! install/upgrade guard.

use std::collections::BTreeSet;

use gatehouse_hosted_sql::define::{self, ToolSpec};
use gatehouse_hosted_sql::install;
use gatehouse_hosted_sql::statement::Access;
use serde_json::Map;
use sqlx::{AssertSqlSafe, Executor};

use crate::harness::{Backend, Owner, caller};

async fn blocking(backend: &Backend, sql: &str, neutral: &[&str]) -> Vec<String> {
    let cfg = backend.direct();
    let descriptions = Map::new();
    let def = define::define(
        &cfg,
        &ToolSpec {
            name: "t",
            description: "",
            sql,
            access: Access::Read,
            destructive: false,
            param_descriptions: &descriptions,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let neutral: BTreeSet<String> = neutral.iter().map(|s| (*s).to_owned()).collect();
    def.inspection.blocking(&neutral)
}

#[tokio::test]
async fn unprotected_relations_and_bypassing_roles_block_publication() {
    let backend = Backend::new().await;
    let mut admin = backend.admin().await;
    let role = backend.tool_role.clone();
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE TABLE enabled_only (id int, org_id uuid);
             ALTER TABLE enabled_only ENABLE ROW LEVEL SECURITY;
             CREATE POLICY p ON enabled_only USING (org_id = (SELECT gatehouse.org()));
             CREATE TABLE forced_no_policy (id int);
             ALTER TABLE forced_no_policy ENABLE ROW LEVEL SECURITY; ALTER TABLE forced_no_policy FORCE ROW LEVEL SECURITY;
             CREATE VIEW orders_owner_view AS SELECT id, payload FROM orders;
             CREATE VIEW orders_invoker_view WITH (security_invoker = true) AS SELECT id, payload FROM orders;
             CREATE TABLE owned_by_tools (id int, org_id uuid);
             ALTER TABLE owned_by_tools ENABLE ROW LEVEL SECURITY; ALTER TABLE owned_by_tools FORCE ROW LEVEL SECURITY;
             CREATE POLICY p ON owned_by_tools USING (org_id = (SELECT gatehouse.org()));
             ALTER TABLE owned_by_tools OWNER TO {role};
             GRANT SELECT ON enabled_only, forced_no_policy, orders_owner_view, orders_invoker_view TO {role};"
        )))
        .await
        .unwrap();

    assert_eq!(
        blocking(&backend, "SELECT id, payload FROM orders", &[]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        blocking(
            &backend,
            "SELECT o.id, i.sku FROM orders o JOIN order_items i ON i.order_id = o.id",
            &[]
        )
        .await,
        Vec::<String>::new()
    );
    let b = blocking(&backend, "SELECT id, secret FROM secrets_unprotected", &[]).await;
    assert_eq!(b.len(), 1);
    assert!(
        b[0].contains("public.secrets_unprotected")
            && b[0].contains("not enabled")
            && b[0].contains("no policy"),
        "{b:?}"
    );
    let b = blocking(&backend, "SELECT id FROM enabled_only", &[]).await;
    assert!(b[0].contains("not forced"), "{b:?}");
    let b = blocking(&backend, "SELECT id FROM forced_no_policy", &[]).await;
    assert!(b[0].contains("no policy"), "{b:?}");
    let b = blocking(&backend, "SELECT id FROM owned_by_tools", &[]).await;
    assert!(b[0].contains("owns it"), "{b:?}");
    let b = blocking(&backend, "SELECT id, payload FROM orders_owner_view", &[]).await;
    assert!(b.iter().any(|p| p.contains("security_invoker")), "{b:?}");
    assert_eq!(
        blocking(&backend, "SELECT id, payload FROM orders_invoker_view", &[]).await,
        Vec::<String>::new()
    );
    // A relation hidden in a subquery, a CTE or a join is found too.
    let b = blocking(
        &backend,
        "WITH s AS (SELECT id FROM secrets_unprotected) SELECT o.id FROM orders o WHERE o.id IN (SELECT id FROM s)",
        &[],
    )
    .await;
    assert_eq!(b.len(), 1, "{b:?}");
    // Reference data the admin marked tenant-neutral does not block.
    assert_eq!(
        blocking(
            &backend,
            "SELECT p.title FROM orders o JOIN products p ON true",
            &["public.products"]
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        blocking(
            &backend,
            "SELECT p.title FROM orders o JOIN products p ON true",
            &[]
        )
        .await
        .len(),
        1
    );

    // A role that can bypass row-level security blocks everything, directly or through a role.
    let helper = format!("{role}_bypass");
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE ROLE {helper} NOLOGIN BYPASSRLS; GRANT {helper} TO {role};"
        )))
        .await
        .unwrap();
    let b = blocking(&backend, "SELECT id, payload FROM orders", &[]).await;
    assert!(
        b.iter().any(|p| p.contains("can bypass") && p.contains(&helper)),
        "{b:?}"
    );
    // The runtime refuses to run tools with such a role, whatever was published.
    let cfg = backend.direct();
    let tool = backend.raw_tool("t", "SELECT payload FROM orders", Access::Read, vec![]);
    let runtime = gatehouse_hosted_sql::HostedSql::new(Default::default());
    let a = Owner {
        org: backend.org_id,
        customer: "c".into(),
    };
    let err = runtime
        .run(&cfg, &tool, &caller(&a, "s"), &Map::new(), &Default::default())
        .await
        .expect_err("refused");
    assert!(
        err.message.contains("bypass row-level security"),
        "{}",
        err.message
    );
    admin
        .execute(AssertSqlSafe(format!(
            "REVOKE {helper} FROM {role}; DROP ROLE {helper};"
        )))
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!("ALTER ROLE {role} BYPASSRLS")))
        .await
        .unwrap();
    let b = blocking(&backend, "SELECT id, payload FROM orders", &[]).await;
    assert!(b.iter().any(|p| p.contains("BYPASSRLS")), "{b:?}");
    admin
        .execute(AssertSqlSafe(format!("ALTER ROLE {role} NOBYPASSRLS")))
        .await
        .unwrap();
    drop(admin);
    backend.drop().await;
}

#[tokio::test]
async fn testing_a_backend_checks_role_schema_and_key() {
    let backend = Backend::new().await;
    let a = Owner {
        org: backend.org_id,
        customer: "c".into(),
    };
    let probe = caller(&a, "gatehouse-test");
    let status = define::test_backend(&backend.direct(), &probe).await.unwrap();
    assert!(status.ready(), "{status:?}");
    assert_eq!(status.schema_version, install::SCHEMA_VERSION);
    // Another key: the backend does not verify contexts Gatehouse signs with it.
    let mut other = backend.direct();
    other.context_key = gatehouse_hosted_sql::ContextKey::generate();
    let status = define::test_backend(&other, &probe).await.unwrap();
    assert!(!status.context_key_installed && !status.ready());
    // Wrong password: a clear error without the connection string.
    let url = backend
        .dsn_at(&backend.direct_host_port())
        .replace(&backend.password, "wrong");
    let wrong = gatehouse_hosted_sql::BackendConfig::new(
        backend.org_id,
        backend.id,
        secrecy::SecretString::from(url),
        gatehouse_hosted_sql::TlsMode::Disable,
        None,
        backend.key.clone(),
        vec!["public".into()],
        &[],
        std::time::Duration::from_secs(1),
        10,
    )
    .unwrap();
    // The shared server trusts local connections, so a wrong password still connects; a wrong
    // database does not.
    let _ = define::test_backend(&wrong, &probe).await;
    let missing = gatehouse_hosted_sql::BackendConfig::new(
        backend.org_id,
        backend.id,
        secrecy::SecretString::from(format!(
            "postgres://{}:{}@{}/no_such_db_x",
            backend.tool_role,
            backend.password,
            backend.direct_host_port()
        )),
        gatehouse_hosted_sql::TlsMode::Disable,
        None,
        backend.key.clone(),
        vec!["public".into()],
        &[],
        std::time::Duration::from_secs(1),
        10,
    )
    .unwrap();
    let err = define::test_backend(&missing, &probe).await.unwrap_err();
    assert_eq!(err.message, "the database does not exist");
    assert!(!err.message.contains(&backend.password));

    // The install script refuses to run twice; an up-to-date backend has no upgrade script.
    let mut admin = backend.admin().await;
    let again = admin
        .execute(AssertSqlSafe(
            install::upgrade_script(&backend.owner_role, 0).unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already installed"), "{again}");
    admin.execute("ROLLBACK").await.unwrap();
    assert!(install::upgrade_script(&backend.owner_role, install::SCHEMA_VERSION).is_none());
    // The key table is the owner role's alone; the accessors are callable by anyone.
    let (owner, public_key, public_subject): (String, bool, bool) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT pg_get_userbyid(relowner)::text,
                has_table_privilege('{tool}', 'gatehouse.context_keys', 'SELECT'),
                has_function_privilege('{tool}', 'gatehouse.subject()', 'EXECUTE')
           FROM pg_class WHERE oid = 'gatehouse.context_keys'::regclass",
        tool = backend.tool_role
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(owner, backend.owner_role);
    assert!(!public_key && public_subject);
    let (login, bypass): (bool, bool) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT rolcanlogin, rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = '{}'",
        backend.owner_role
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(!login && !bypass);
    drop(admin);
    backend.drop().await;
}
