//! Validating a tool against its backend when it is defined, and inspecting what it touches.
//!
//! After the parser ([`crate::statement`]), the backend itself prepares the statement in a
//! read-only transaction that is rolled back, as the tool role: that learns the parameter and
//! result types (from which the tool's JSON Schemas are made) and proves the role may run it.
//! In the same transaction the statement's generic plan (`EXPLAIN EXECUTE` under
//! `plan_cache_mode = force_generic_plan`) names every relation it reads or writes, views
//! expanded and row-level-security policies applied, and the catalog says for each whether
//! row-level security is enabled and forced with policies, and whether the role can bypass it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Column, Connection, Either, Executor, Statement};

use crate::backend::BackendConfig;
use crate::context::CallerContext;
use crate::install::SCHEMA_VERSION;
use crate::pgtypes::SqlType;
use crate::statement::{self, Access, ParsedStatement, StatementKind};
use crate::tool::{self, Typed};

/// How long the control plane waits for a backend when defining or testing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFINE_STATEMENT_TIMEOUT_MS: u32 = 10_000;

/// What an admin defines.
#[derive(Clone, Debug)]
pub struct ToolSpec<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub sql: &'a str,
    pub access: Access,
    pub destructive: bool,
    /// Descriptions of parameters, by name (shown in the input schema).
    pub param_descriptions: &'a Map<String, Value>,
}

/// Why a tool could not be defined; `field` says which input is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DefineError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> DefineError {
    DefineError {
        field,
        message: message.into(),
    }
}

/// A relation a tool touches, as the backend's catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableReport {
    pub schema: String,
    pub name: String,
    /// `table`, `partitioned_table`, `view`, `materialized_view`, `foreign_table`, …
    pub kind: String,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub policies: i64,
    /// The tool role owns the table or belongs to its owner (owners can switch RLS off).
    pub role_is_owner: bool,
    /// Views only: `security_invoker` (otherwise the view reads as its owner).
    pub security_invoker: bool,
    /// Row-level security protects this relation from the tool role.
    pub protected: bool,
    /// What is missing, for the admin.
    pub problems: Vec<String>,
}

/// The tool role and what could let it around row-level security.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleReport {
    pub name: String,
    pub superuser: bool,
    pub bypassrls: bool,
    /// Roles it belongs to that are superusers or have BYPASSRLS.
    pub bypass_via: Vec<String>,
}

impl RoleReport {
    pub fn can_bypass(&self) -> bool {
        self.superuser || self.bypassrls || !self.bypass_via.is_empty()
    }
}

/// The inspection of one tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inspection {
    pub role: RoleReport,
    pub tables: Vec<TableReport>,
}

impl Inspection {
    /// What blocks publishing the tool, given the relations the admin marked as tenant-neutral
    /// reference data (`schema.name`). Empty: it may be published.
    pub fn blocking(&self, neutral: &BTreeSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        if self.role.can_bypass() {
            out.push(format!(
                "the tool role `{}` can bypass row-level security ({})",
                self.role.name,
                if self.role.superuser {
                    "superuser".to_owned()
                } else if self.role.bypassrls {
                    "BYPASSRLS".to_owned()
                } else {
                    format!("member of {}", self.role.bypass_via.join(", "))
                }
            ));
        }
        for t in &self.tables {
            if !t.protected && !neutral.contains(&format!("{}.{}", t.schema, t.name)) {
                out.push(format!("{}.{}: {}", t.schema, t.name, t.problems.join("; ")));
            }
        }
        out
    }
}

/// A tool validated by the parser and the backend.
#[derive(Clone, Debug)]
pub struct Definition {
    pub parsed: ParsedStatement,
    pub params: Vec<Typed>,
    pub columns: Vec<Typed>,
    /// The MCP tool definition (name, description, inputSchema, outputSchema, annotations).
    pub definition: Value,
    pub inspection: Inspection,
}

/// Opens one connection to the backend for the control plane.
pub async fn connect(backend: &BackendConfig) -> Result<PgConnection, DefineError> {
    let options = backend.connect_options().map_err(|e| err("dsn", e.0))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_) => Err(err("dsn", "the backend did not answer within 10 seconds")),
        Ok(Err(e)) => Err(err("dsn", connect_error(&e))),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// Why a connection failed, without the connection string.
fn connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => "the backend refused the credentials".into(),
            Some("3D000") => "the database does not exist".into(),
            Some(code) => format!("the backend refused the connection (SQLSTATE {code})"),
            None => "the backend refused the connection".into(),
        },
        sqlx::Error::Tls(_) => "the TLS handshake failed (check the TLS mode and the CA certificate)".into(),
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            "the TLS handshake failed: the backend's certificate was not accepted (check the TLS mode and the CA certificate)".into()
        }
        sqlx::Error::Io(_) => "the backend could not be reached".into(),
        _ => "the connection to the backend failed".into(),
    }
}

fn db_error(field: &'static str, e: sqlx::Error) -> DefineError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // The admin's own statement against their own schema: the message helps and names
            // nothing of another tenant.
            let shown: String = db.message().chars().take(300).collect();
            err(
                field,
                format!("the backend refused it (SQLSTATE {code}): {shown}"),
            )
        }
        _ => err("dsn", connect_error(&e)),
    }
}

async fn begin_read_only(conn: &mut PgConnection, backend: &BackendConfig) -> Result<(), DefineError> {
    // Describing prepares a named statement; behind a transaction-mode pooler the server
    // connection may hold one of an earlier definition: start clean (and end clean, below).
    let setup = format!(
        "BEGIN READ ONLY; DEALLOCATE ALL; SET LOCAL statement_timeout = {DEFINE_STATEMENT_TIMEOUT_MS}; \
         SET LOCAL search_path = {}",
        backend.search_path_sql()
    );
    sqlx::raw_sql(AssertSqlSafe(setup))
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error("dsn", e))?;
    Ok(())
}

/// Validates `spec` with the parser and on the backend, and inspects what it touches.
pub async fn define(backend: &BackendConfig, spec: &ToolSpec<'_>) -> Result<Definition, DefineError> {
    if !statement::valid_parameter_name(spec.name) {
        return Err(err(
            "name",
            "must be a lower-case identifier (letters, digits, _), at most 63 characters",
        ));
    }
    let parsed =
        statement::parse(spec.sql, spec.access, &backend.allowed_functions).map_err(|e| err("sql", e.0))?;
    if spec.destructive && spec.access == Access::Read {
        return Err(err("destructive", "only write tools can be destructive"));
    }
    for name in spec.param_descriptions.keys() {
        if !parsed.params.contains(name) {
            return Err(err(
                "parameter_descriptions",
                format!("`{name}` is not a parameter of the statement"),
            ));
        }
    }
    let mut conn = connect(backend).await?;
    let outcome = describe_and_inspect(&mut conn, backend, &parsed).await;
    sqlx::raw_sql("ROLLBACK; DEALLOCATE ALL")
        .execute(&mut conn)
        .await
        .ok();
    conn.close().await.ok();
    let (params, columns, inspection) = outcome?;
    let params: Vec<Typed> = parsed
        .params
        .iter()
        .zip(params)
        .map(|(name, ty)| Typed {
            name: name.clone(),
            ty,
        })
        .collect();
    let definition = json!({
        "name": spec.name,
        "description": spec.description,
        "inputSchema": tool::input_schema(&params, spec.param_descriptions),
        "outputSchema": tool::output_schema(&columns),
        "annotations": {
            "readOnlyHint": spec.access == Access::Read,
            "destructiveHint": spec.destructive,
            "idempotentHint": spec.access == Access::Read,
            "openWorldHint": false,
        },
    });
    Ok(Definition {
        parsed,
        params,
        columns,
        definition,
        inspection,
    })
}

async fn describe_and_inspect(
    conn: &mut PgConnection,
    backend: &BackendConfig,
    parsed: &ParsedStatement,
) -> Result<(Vec<SqlType>, Vec<Typed>, Inspection), DefineError> {
    begin_read_only(conn, backend).await?;
    let stmt = (&mut *conn)
        .prepare(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(
            parsed.positional_sql.clone(),
        )))
        .await
        .map_err(|e| db_error("sql", e))?;
    let param_types: Vec<SqlType> = match stmt.parameters() {
        Some(Either::Left(types)) => types
            .iter()
            .zip(&parsed.params)
            .map(|(t, name)| {
                SqlType::from_type_info(t).map_err(|e| err("sql", format!("parameter `{name}`: {}", e.0)))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(err("sql", "the backend did not describe the parameters")),
    };
    if param_types.len() != parsed.params.len() {
        return Err(err(
            "sql",
            "the backend sees a different number of parameters than the statement names",
        ));
    }
    let mut columns = Vec::new();
    let mut seen = BTreeSet::new();
    for c in stmt.columns() {
        let name = c.name().to_owned();
        if name == "?column?" || name.is_empty() {
            return Err(err(
                "sql",
                "every result column needs a name: add `AS name` to computed columns",
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(err(
                "sql",
                format!("two result columns are named `{name}`: alias one"),
            ));
        }
        let ty = SqlType::from_type_info(c.type_info())
            .map_err(|e| err("sql", format!("column `{name}`: {}", e.0)))?;
        columns.push(Typed { name, ty });
    }
    if parsed.kind != StatementKind::Select && columns.is_empty() {
        // A write without RETURNING: its result is the number of rows changed.
    }
    let inspection = inspect(conn, parsed, param_types.len()).await?;
    Ok((param_types, columns, inspection))
}

/// The relations the statement's generic plan touches.
async fn planned_relations(
    conn: &mut PgConnection,
    parsed: &ParsedStatement,
    n_params: usize,
) -> Result<Vec<u32>, DefineError> {
    sqlx::raw_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error("sql", e))?;
    // Parsed by the server as one statement (extended protocol): nothing can ride along.
    sqlx::query(AssertSqlSafe(format!(
        "PREPARE gatehouse_inspect AS {}",
        parsed.positional_sql
    )))
    .persistent(false)
    .execute(&mut *conn)
    .await
    .map_err(|e| db_error("sql", e))?;
    let nulls = vec!["NULL"; n_params].join(", ");
    let execute = if n_params == 0 {
        "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE gatehouse_inspect".to_owned()
    } else {
        format!("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE gatehouse_inspect({nulls})")
    };
    let plan: sqlx::types::Json<Value> = sqlx::query_scalar(AssertSqlSafe(execute))
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error("sql", e))?;
    sqlx::raw_sql("DEALLOCATE gatehouse_inspect")
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error("sql", e))?;
    let mut names = BTreeSet::new();
    collect_relations(&plan.0, &mut names);
    let mut oids = Vec::new();
    for (schema, name) in names {
        let oid: Option<i64> = sqlx::query_scalar(
            "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(&schema)
        .bind(&name)
        .persistent(false)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error("sql", e))?;
        if let Some(oid) = oid {
            oids.push(u32::try_from(oid).unwrap_or_default());
        }
    }
    Ok(oids)
}

fn collect_relations(plan: &Value, out: &mut BTreeSet<(String, String)>) {
    match plan {
        Value::Object(map) => {
            if let (Some(Value::String(name)), Some(Value::String(schema))) =
                (map.get("Relation Name"), map.get("Schema"))
            {
                out.insert((schema.clone(), name.clone()));
            }
            for v in map.values() {
                collect_relations(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_relations(v, out)),
        _ => {}
    }
}

/// Schema, name, relkind, RLS enabled, forced, policies, role is owner, security_invoker.
type CatalogRow = (String, String, String, bool, bool, i64, bool, bool);

async fn inspect(
    conn: &mut PgConnection,
    parsed: &ParsedStatement,
    n_params: usize,
) -> Result<Inspection, DefineError> {
    let mut oids = planned_relations(conn, parsed, n_params).await?;
    // Names in the statement resolve to views (which the plan expands) and the like.
    for name in &parsed.relations {
        let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
            .bind(quote_relation(name))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error("sql", e))?;
        if let Some(oid) = oid {
            oids.push(u32::try_from(oid).unwrap_or_default());
        }
    }
    oids.sort_unstable();
    oids.dedup();
    let role = role_report(conn).await?;
    let rows: Vec<CatalogRow> = sqlx::query_as(
        "SELECT n.nspname, c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
                pg_has_role(current_user, c.relowner, 'MEMBER'),
                coalesce('security_invoker=true' = ANY (c.reloptions) OR 'security_invoker=on' = ANY (c.reloptions), false)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = ANY($1::bigint[]::oid[])
          ORDER BY n.nspname, c.relname",
    )
    .bind(oids.iter().map(|o| i64::from(*o)).collect::<Vec<_>>())
    .persistent(false)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_error("sql", e))?;
    let tables =
        rows.into_iter()
            .map(
                |(schema, name, relkind, enabled, forced, policies, owner, invoker)| {
                    let kind = match relkind.as_str() {
                        "r" => "table",
                        "p" => "partitioned_table",
                        "v" => "view",
                        "m" => "materialized_view",
                        "f" => "foreign_table",
                        "S" => "sequence",
                        _ => "other",
                    }
                    .to_owned();
                    let mut problems = Vec::new();
                    match kind.as_str() {
                        "table" | "partitioned_table" => {
                            if !enabled {
                                problems.push("row-level security is not enabled".to_owned());
                            }
                            if !forced {
                                problems.push("row-level security is not forced".to_owned());
                            }
                            if policies == 0 {
                                problems.push("it has no policy".to_owned());
                            }
                            if owner {
                                problems.push("the tool role owns it (or belongs to its owner)".to_owned());
                            }
                        }
                        // The plan names the tables a security_invoker view reads; they are inspected
                        // themselves.
                        "view" if invoker => {}
                        "view" => problems
                            .push("the view is not security_invoker: it reads as its owner".to_owned()),
                        other => problems.push(format!(
                            "a {} cannot have row-level security",
                            other.replace('_', " ")
                        )),
                    }
                    TableReport {
                        protected: problems.is_empty(),
                        schema,
                        name,
                        kind,
                        rls_enabled: enabled,
                        rls_forced: forced,
                        policies,
                        role_is_owner: owner,
                        security_invoker: invoker,
                        problems,
                    }
                },
            )
            .collect();
    Ok(Inspection { role, tables })
}

/// A relation name from the parser (`schema.name`, case already folded) quoted for `to_regclass`.
fn quote_relation(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

async fn role_report(conn: &mut PgConnection) -> Result<RoleReport, DefineError> {
    let (name, superuser, bypassrls, via): (String, bool, bool, Vec<String>) = sqlx::query_as(
        "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
                ARRAY(SELECT o.rolname::text FROM pg_roles o
                       WHERE o.oid <> r.oid AND (o.rolsuper OR o.rolbypassrls)
                         AND pg_has_role(r.oid, o.oid, 'MEMBER') ORDER BY 1)
           FROM pg_roles r WHERE r.rolname = current_user",
    )
    .persistent(false)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| db_error("dsn", e))?;
    Ok(RoleReport {
        name,
        superuser,
        bypassrls,
        bypass_via: via,
    })
}

/// What testing a backend's connection found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    pub server_version: String,
    pub role: RoleReport,
    /// The installed `gatehouse` schema version (0: not installed).
    pub schema_version: i32,
    /// The schema version this Gatehouse needs.
    pub required_schema_version: i32,
    /// A context signed with the backend's key verifies there (the key is installed).
    pub context_key_installed: bool,
}

impl BackendStatus {
    pub fn ready(&self) -> bool {
        !self.role.can_bypass()
            && self.schema_version >= self.required_schema_version
            && self.context_key_installed
    }
}

/// Connects as the tool role and checks the role, the schema version, and that a context signed
/// with the backend's key verifies there (in a transaction that is rolled back).
pub async fn test_backend(
    backend: &BackendConfig,
    probe: &CallerContext,
) -> Result<BackendStatus, DefineError> {
    let mut conn = connect(backend).await?;
    let outcome = async {
        // One read-only transaction, rolled back: through a transaction-mode pooler every
        // statement then reaches the same server connection.
        sqlx::raw_sql("BEGIN READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(|e| db_error("dsn", e))?;
        let server_version: String = sqlx::query_scalar("SHOW server_version")
            .persistent(false)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| db_error("dsn", e))?;
        let role = role_report(&mut conn).await?;
        let installed: bool =
            sqlx::query_scalar("SELECT to_regclass('gatehouse.schema_version') IS NOT NULL")
                .persistent(false)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| db_error("dsn", e))?;
        let schema_version: i32 = if installed {
            sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM gatehouse.schema_version")
                .persistent(false)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| db_error("dsn", e))?
        } else {
            0
        };
        let context_key_installed = schema_version >= 1 && key_verifies(&mut conn, backend, probe).await;
        Ok(BackendStatus {
            server_version,
            role,
            schema_version,
            required_schema_version: SCHEMA_VERSION,
            context_key_installed,
        })
    }
    .await;
    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.ok();
    conn.close().await.ok();
    outcome
}

async fn key_verifies(conn: &mut PgConnection, backend: &BackendConfig, probe: &CallerContext) -> bool {
    let attempt = async {
        let binding: String = sqlx::query_scalar("SELECT gatehouse.binding()")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
        let Ok(signed) = backend.context_key.sign(probe, "gatehouse_test", &binding) else {
            return Ok::<bool, sqlx::Error>(false);
        };
        sqlx::query("SELECT set_config('gatehouse.context', $1, true)")
            .bind(signed)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        let subject: Option<String> = sqlx::query_scalar("SELECT gatehouse.subject()")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
        Ok(subject.as_deref() == Some(probe.subject.as_str()))
    }
    .await;
    attempt.unwrap_or(false)
}
