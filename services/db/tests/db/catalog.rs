//! The catalog lint: every tenant table is protected by forced row-level security with a proper
//! tenant policy, unique indexes cannot leak across tenants, and the services' role has no way
//! around any of it. Fails the build when a migration breaks a rule.

use gatehouse_test_support::TestDb;
use gatehouse_test_support::testdb::TEST_SERVICE_ROLE;
use sqlx::Row;

/// Tables in `public` that carry an `org_id` column.
pub async fn tenant_tables(admin: &mut sqlx::PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
          ORDER BY 1",
    )
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_with_a_tenant_policy() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    let tables = tenant_tables(&mut admin).await;
    assert!(
        tables.len() >= 25,
        "expected the whole platform schema, found {tables:?}"
    );
    let violations = rls_violations(&mut admin, &tables).await;
    assert!(
        violations.is_empty(),
        "row-level security violations:\n{}",
        violations.join("\n")
    );
}

/// The lint itself must be able to fail: tables that break each rule are reported.
#[tokio::test]
async fn the_lint_catches_broken_tables() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    for sql in [
        "CREATE TABLE lint_no_rls (org_id uuid NOT NULL, x int)",
        "CREATE TABLE lint_not_forced (org_id uuid NOT NULL, x int)",
        "ALTER TABLE lint_not_forced ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY p ON lint_not_forced USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid) WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)",
        "CREATE TABLE lint_open (org_id uuid NOT NULL, x int UNIQUE)",
        "ALTER TABLE lint_open ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE lint_open FORCE ROW LEVEL SECURITY",
        "CREATE POLICY p ON lint_open USING (true)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let tables = vec![
        "lint_no_rls".to_owned(),
        "lint_not_forced".to_owned(),
        "lint_open".to_owned(),
    ];
    let violations = rls_violations(&mut admin, &tables).await.join("\n");
    assert!(
        violations.contains("lint_no_rls: row-level security not enabled"),
        "{violations}"
    );
    assert!(
        violations.contains("lint_not_forced: row-level security not forced"),
        "{violations}"
    );
    assert!(
        violations.contains("lint_open: no policy for ALL with both USING and WITH CHECK"),
        "{violations}"
    );
    assert!(
        violations.contains("lint_open: policy p is permissive with `true`"),
        "{violations}"
    );
    let unique = unique_index_offenders(&mut admin).await;
    assert!(unique.iter().any(|(t, _)| t == "lint_open"), "{unique:?}");
}

/// Rule violations of row-level security on `tables`.
async fn rls_violations(admin: &mut sqlx::PgConnection, tables: &[String]) -> Vec<String> {
    let mut violations = Vec::new();
    for table in tables {
        let row = sqlx::query(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class
              WHERE relname = $1 AND relnamespace = 'public'::regnamespace",
        )
        .bind(table)
        .fetch_one(&mut *admin)
        .await
        .unwrap();
        if !row.get::<bool, _>(0) {
            violations.push(format!("{table}: row-level security not enabled"));
        }
        if !row.get::<bool, _>(1) {
            violations.push(format!("{table}: row-level security not forced"));
        }
        let policies: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT policyname::text, qual, with_check, cmd FROM pg_policies
              WHERE schemaname = 'public' AND tablename = $1",
        )
        .bind(table)
        .fetch_all(&mut *admin)
        .await
        .unwrap();
        let tenant_expr = |e: &Option<String>| {
            e.as_deref().is_some_and(|e| {
                e.contains("NULLIF(current_setting('app.org_id'::text, true), ''::text)")
                    && e.contains("org_id")
            })
        };
        if !policies
            .iter()
            .any(|(_, qual, check, cmd)| cmd == "ALL" && tenant_expr(qual) && tenant_expr(check))
        {
            violations.push(format!(
                "{table}: no policy for ALL with both USING and WITH CHECK on NULLIF(current_setting('app.org_id', true), '')"
            ));
        }
        for (name, qual, check, _) in &policies {
            for expr in [qual, check].into_iter().flatten() {
                let lowered = expr.to_lowercase();
                if lowered.trim() == "true" {
                    violations.push(format!("{table}: policy {name} is permissive with `true`"));
                }
                if lowered.contains("is null") {
                    violations.push(format!(
                        "{table}: policy {name} has an IS NULL escape hatch: {expr}"
                    ));
                }
            }
        }
    }
    violations
}

#[tokio::test]
async fn unique_indexes_on_tenant_tables_lead_with_org_id() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    let offenders = unique_index_offenders(&mut admin).await;
    assert!(
        offenders.is_empty(),
        "unique indexes on tenant tables must start with org_id (else they leak existence across tenants): {offenders:?}"
    );
}

async fn unique_index_offenders(admin: &mut sqlx::PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT t.relname::text, i.relname::text
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
          WHERE t.relnamespace = 'public'::regnamespace
            AND x.indisunique
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
            AND (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = x.indkey[0]) IS DISTINCT FROM 'org_id'
          ORDER BY 1, 2",
    )
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn foreign_keys_between_tenant_tables_include_org_id() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    // A foreign key from one tenant table to another must carry org_id, so that a row can never
    // point into another org.
    let offenders: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.conname::text
           FROM pg_constraint c
          WHERE c.contype = 'f'
            AND c.connamespace = 'public'::regnamespace
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attname = 'org_id')
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attname = 'org_id')
            AND NOT EXISTS (
                SELECT 1 FROM unnest(c.conkey) k(attnum)
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                 WHERE a.attname = 'org_id')
          ORDER BY 1, 2",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        offenders.is_empty(),
        "tenant-to-tenant foreign keys without org_id: {offenders:?}"
    );
}

#[tokio::test]
async fn services_role_cannot_bypass_or_own() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(TEST_SERVICE_ROLE)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!superuser, "the services' role must not be a superuser");
    assert!(!bypass, "the services' role must not have BYPASSRLS");
    // Neither the login role nor any role it inherits from owns anything in the schema.
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
          WHERE c.relnamespace = 'public'::regnamespace
            AND pg_has_role($1, c.relowner, 'USAGE')
         UNION ALL
         SELECT p.proname::text FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace
            AND pg_has_role($1, p.proowner, 'USAGE')",
    )
    .bind(TEST_SERVICE_ROLE)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        owned.is_empty(),
        "the services' role owns (or inherits ownership of): {owned:?}"
    );
    // The app's own check agrees.
    db.db
        .verify_service_role()
        .await
        .expect("the service role is safe");

    // No SECURITY DEFINER function is executable by PUBLIC or lacks a pinned search_path.
    let definers: Vec<(String, bool, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.proname::text, has_function_privilege('public', p.oid, 'EXECUTE'), p.proconfig
           FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for (name, public_exec, config) in definers {
        assert!(
            !public_exec,
            "SECURITY DEFINER function {name} is executable by PUBLIC"
        );
        assert!(
            config
                .unwrap_or_default()
                .iter()
                .any(|c| c.starts_with("search_path=")),
            "SECURITY DEFINER function {name} does not pin search_path"
        );
    }
}

#[tokio::test]
async fn audit_trail_is_append_only_for_the_services() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    for privilege in ["UPDATE", "DELETE", "TRUNCATE"] {
        let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, 'audit_events', $2)")
            .bind(TEST_SERVICE_ROLE)
            .bind(privilege)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(!has, "the services' role has {privilege} on audit_events");
    }
    // Even the owner is stopped by the triggers.
    let err = sqlx::query("DELETE FROM audit_events").execute(&mut admin).await;
    assert!(err.is_ok(), "deleting zero rows fires no row trigger");
    let err = sqlx::query("TRUNCATE audit_events")
        .execute(&mut admin)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// The start-up check refuses a services' role that could get around row-level security through
/// a role it belongs to, a predefined role, or ownership (of a table through a group, of the
/// database itself); a plain member of `gatehouse_app` passes. Each case is a fresh login role
/// (unique name, dropped after).
#[tokio::test]
async fn services_role_check_refuses_memberships_that_bypass_rls() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let mut admin = db.admin().await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let login = |case: &str| format!("gh_rolecheck_{tag}_{case}");
    let helper = |case: &str| format!("gh_rolecheck_{tag}_{case}_group");
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("plain", "", None),
        (
            "read_all",
            "GRANT pg_read_all_data TO {login}",
            Some("pg_read_all_data"),
        ),
        (
            "write_all",
            "GRANT pg_write_all_data TO {login}",
            Some("pg_write_all_data"),
        ),
        (
            "bypass_group",
            "CREATE ROLE {helper} NOLOGIN BYPASSRLS; GRANT {helper} TO {login}",
            Some("BYPASSRLS"),
        ),
        (
            "super_group",
            "CREATE ROLE {helper} NOLOGIN SUPERUSER; GRANT {helper} TO {login}; ALTER ROLE {login} NOINHERIT",
            Some("superuser"),
        ),
        (
            "owner_group",
            "CREATE ROLE {helper} NOLOGIN; GRANT {helper} TO {login};
             CREATE TABLE public.{helper}_t (id int); ALTER TABLE public.{helper}_t OWNER TO {helper}",
            Some("owns 1 object"),
        ),
        (
            "db_owner",
            "ALTER DATABASE \"{db}\" OWNER TO {login}",
            Some("pg_database_owner"),
        ),
    ];
    let mut outcomes = Vec::new();
    for (case, grant, refused_for) in cases {
        let (login, helper) = (login(case), helper(case));
        let setup = format!(
            "CREATE ROLE {login} LOGIN PASSWORD 'pw' NOSUPERUSER NOBYPASSRLS; GRANT gatehouse_app TO {login};
             GRANT CONNECT ON DATABASE \"{db}\" TO {login}; {grant}",
            db = db.name
        )
        .replace("{login}", &login)
        .replace("{helper}", &helper)
        .replace("{db}", &db.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&db.service_url).unwrap();
        url.set_username(&login).unwrap();
        url.set_password(Some("pw")).unwrap();
        let as_role =
            gatehouse_db::Db::connect_lazy(&gatehouse_test_support::testdb::database_config(url.as_str()))
                .unwrap();
        let outcome = as_role.verify_service_role().await;
        as_role.close().await;
        let cleanup = format!(
            "ALTER DATABASE \"{db}\" OWNER TO CURRENT_USER; DROP TABLE IF EXISTS public.{helper}_t;
             DROP OWNED BY {login}; DROP ROLE {login}; DROP ROLE IF EXISTS {helper}",
            db = db.name
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(cleanup))
            .execute(&mut admin)
            .await
            .unwrap();
        outcomes.push((case, refused_for, outcome));
    }
    for (case, refused_for, outcome) in outcomes {
        match (refused_for, outcome) {
            (None, Ok(())) => {}
            (None, Err(e)) => panic!("{case}: a plain member of gatehouse_app is refused: {e}"),
            (Some(why), Ok(())) => panic!("{case}: accepted, though it could bypass RLS ({why})"),
            (Some(why), Err(e)) => assert!(e.0.contains(why), "{case}: {e} does not name {why}"),
        }
    }
}
