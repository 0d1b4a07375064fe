use super::*;

fn ok(sql: &str, access: Access) -> ParsedStatement {
    parse(sql, access, &FunctionAllowlist::default()).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn refused(sql: &str, access: Access) -> String {
    match parse(sql, access, &FunctionAllowlist::default()) {
        Ok(p) => panic!("{sql} was accepted as {p:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn named_parameters_become_positional() {
    let p = ok(
        "SELECT id, total::numeric FROM orders WHERE customer = :customer AND status = :status OR id = :customer",
        Access::Read,
    );
    assert_eq!(
        p.positional_sql,
        "SELECT id, total::numeric FROM orders WHERE customer = $1 AND status = $2 OR id = $1"
    );
    assert_eq!(p.params, ["customer", "status"]);
    assert_eq!(p.relations, BTreeSet::from(["orders".to_owned()]));
    // Inside strings, quoted identifiers, comments and dollar quotes `:x` is text.
    let p = ok(
        "SELECT ':a', \":b\", $$ :c $$, E':d' /* :e */ -- :f\n FROM t WHERE x = :g",
        Access::Read,
    );
    assert_eq!(p.params, ["g"]);
    assert!(p.positional_sql.ends_with("x = $1"));
    assert!(p.positional_sql.contains("':a'") && p.positional_sql.contains("/* :e */"));
    // Non-ASCII text before a parameter keeps offsets right.
    let p = ok("SELECT 'é☃' AS s FROM t WHERE a = :a", Access::Read);
    assert_eq!(p.positional_sql, "SELECT 'é☃' AS s FROM t WHERE a = $1");
}

#[test]
fn only_one_plain_statement() {
    assert!(refused("SELECT 1; SELECT 2", Access::Read).contains("exactly one"));
    assert!(refused("SELECT 1; DROP TABLE orders", Access::Read).contains("exactly one"));
    for sql in [
        "SET ROLE postgres",
        "RESET ROLE",
        "SET gatehouse.context = 'x'",
        "COMMIT",
        "BEGIN",
        "ROLLBACK",
        "COPY orders TO STDOUT",
        "COPY orders FROM '/etc/passwd'",
        "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
        "DROP TABLE orders",
        "ALTER TABLE orders DISABLE ROW LEVEL SECURITY",
        "TRUNCATE orders",
        "GRANT SELECT ON orders TO public",
        "DO $$ BEGIN PERFORM 1; END $$",
        "LOCK TABLE orders",
        "PREPARE p AS SELECT 1",
        "DISCARD ALL",
        "LISTEN x",
        "VACUUM orders",
    ] {
        let why = refused(sql, Access::Write);
        assert!(!why.is_empty(), "{sql}");
    }
}

#[test]
fn functions_outside_the_allowlist_are_refused_everywhere() {
    for sql in [
        "SELECT set_config('gatehouse.context', 'x', true)",
        "WITH x AS MATERIALIZED (SELECT set_config('gatehouse.context','v1',true)) SELECT * FROM x CROSS JOIN LATERAL (SELECT * FROM orders) o",
        "SELECT * FROM orders o CROSS JOIN LATERAL (SELECT set_config('role','postgres',false)) s",
        "SELECT * FROM orders WHERE id = (SELECT length(set_config('a','b',true)))",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_catalog.pg_read_file('/etc/passwd')",
        "SELECT pg_sleep(10)",
        "SELECT * FROM pg_sleep(10)",
        "SELECT * FROM dblink('dbname=x', 'select 1') AS t(a int)",
        "SELECT lo_import('/etc/passwd')",
        "SELECT current_setting('gatehouse.context')",
        "SELECT gatehouse._verified()",
        "SELECT public.steal_key()",
        "SELECT count(*) FROM orders WHERE lower(set_config('a', 'b', true)) = 'b'",
        "INSERT INTO orders (id) VALUES (pg_terminate_backend(1))",
    ] {
        let why = refused(sql, Access::Write);
        assert!(why.contains("not allowed"), "{sql}: {why}");
    }
    let p = ok(
        "SELECT count(*), gatehouse.subject(), lower(name), pg_catalog.upper(name) FROM orders WHERE gatehouse.has_scope('orders:read')",
        Access::Read,
    );
    assert!(p.functions.contains("gatehouse.subject"));
    let extra = FunctionAllowlist::new(["app.order_total"]);
    assert!(parse("SELECT app.order_total(id) FROM orders", Access::Read, &extra).is_ok());
    assert!(
        parse(
            "SELECT app.order_total(id) FROM orders",
            Access::Read,
            &FunctionAllowlist::default()
        )
        .is_err()
    );
}

#[test]
fn read_tools_do_not_write_or_lock() {
    assert!(refused("DELETE FROM orders", Access::Read).contains("SELECT"));
    assert!(
        refused(
            "WITH d AS (DELETE FROM orders RETURNING id) SELECT * FROM d",
            Access::Read
        )
        .contains("modify")
    );
    assert!(refused("SELECT * FROM orders FOR UPDATE", Access::Read).contains("lock"));
    assert!(refused("SELECT * INTO stolen FROM orders", Access::Write).contains("INTO"));
    let p = ok(
        "WITH d AS (DELETE FROM orders WHERE id = :id RETURNING id) SELECT * FROM d",
        Access::Write,
    );
    assert_eq!(p.kind, StatementKind::Select);
    assert_eq!(
        ok(
            "UPDATE orders SET status = :s WHERE id = :id RETURNING id",
            Access::Write
        )
        .kind,
        StatementKind::Update
    );
    assert_eq!(
        ok(
            "INSERT INTO orders (id, total) VALUES (:id, :total) ON CONFLICT DO NOTHING",
            Access::Write
        )
        .kind,
        StatementKind::Insert
    );
    assert_eq!(
        ok("DELETE FROM orders WHERE id = :id", Access::Write).kind,
        StatementKind::Delete
    );
}

#[test]
fn placeholders_are_only_named() {
    assert!(refused("SELECT * FROM orders WHERE id = $1", Access::Read).contains(":name"));
    // `?` is an operator in PostgreSQL (jsonb), never a placeholder.
    assert!(!refused("SELECT * FROM orders WHERE id = ?", Access::Read).is_empty());
    assert!(refused("SELECT * FROM t WHERE a = :A", Access::Read).contains("lower-case"));
    assert!(refused("SELECT 1\0", Access::Read).contains("NUL"));
    let allow = FunctionAllowlist::default();
    assert_eq!(
        parse_positional(
            "SELECT * FROM t WHERE a = $1 AND b = $2 OR c = $1",
            Access::Read,
            &allow
        ),
        Ok(2)
    );
    assert!(parse_positional("SELECT * FROM t WHERE a = $2", Access::Read, &allow).is_err());
    assert!(parse_positional("SELECT * FROM t WHERE a = :a", Access::Read, &allow).is_err());
    assert!(parse_positional("SELECT 1; SELECT 2", Access::Read, &allow).is_err());
}

#[test]
fn ctes_and_table_functions_are_not_relations() {
    let p = ok(
        "WITH mine AS (SELECT * FROM orders) SELECT * FROM mine, generate_series(1, 3) g JOIN \"Customers\" c ON true JOIN app.items i ON true",
        Access::Read,
    );
    assert_eq!(
        p.relations,
        BTreeSet::from([
            "orders".to_owned(),
            "Customers".to_owned(),
            "app.items".to_owned()
        ])
    );
}

#[test]
fn lexer_corner_cases_hide_nothing() {
    // With standard_conforming_strings (PostgreSQL's default) a backslash does not escape a
    // quote: the string ends, and the call after it is seen and refused.
    assert!(refused("SELECT 'a\\' , pg_sleep(5), 'b'", Access::Read).contains("not allowed"));
    // Nested comments are one comment in PostgreSQL.
    let p = ok(
        "SELECT 1 /* outer /* inner */ still comment pg_sleep(1) */ FROM t",
        Access::Read,
    );
    assert!(p.functions.is_empty());
    assert!(refused("SELECT 1 /* a /* b */ */ , pg_sleep(1)", Access::Read).contains("not allowed"));
    assert!(refused("SELECT $q$ x $q$, pg_sleep(1)", Access::Read).contains("not allowed"));
}
