//! Backends (tenant PostgreSQL databases that hosted SQL tools run on), their SQL tools, the
//! relations an admin marked as tenant-neutral reference data, and the endpoints exposing them.
//!
//! `dsn_enc` and `context_key_enc` are sealed with `snapshot::backend_dsn_context` and
//! `snapshot::backend_context_key_context` and never leave the control plane unsealed.

use serde_json::Value;
use time::OffsetDateTime;

use gatehouse_core::ids::{BackendId, EndpointId, ToolId, UserId};

use crate::error::DbResult;
use crate::repos::tools::{StatusColumn, ToolStatus};
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct BackendRow {
    pub id: BackendId,
    pub slug: String,
    pub name: String,
    pub dsn_enc: Vec<u8>,
    pub tls_mode: String,
    pub tls_ca_pem: Option<String>,
    pub context_key_enc: Option<Vec<u8>>,
    pub owner_role: String,
    pub allowed_schemas: Vec<String>,
    pub allowed_functions: Vec<String>,
    pub statement_timeout_ms: i32,
    pub max_rows: i32,
    pub last_test: Option<Value>,
    pub last_tested_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, slug, name, dsn_enc, tls_mode, tls_ca_pem, context_key_enc, owner_role, allowed_schemas, \
                       allowed_functions, statement_timeout_ms, max_rows, last_test, last_tested_at, created_at, updated_at";

/// A backend's settings, as written.
#[derive(Clone, Debug)]
pub struct BackendFields<'a> {
    pub name: &'a str,
    pub dsn_enc: &'a [u8],
    pub tls_mode: &'a str,
    pub tls_ca_pem: Option<&'a str>,
    pub owner_role: &'a str,
    pub allowed_schemas: &'a [String],
    pub allowed_functions: &'a [String],
    pub statement_timeout_ms: i32,
    pub max_rows: i32,
}

pub async fn create(
    tx: &mut TenantTx,
    id: BackendId,
    slug: &str,
    fields: &BackendFields<'_>,
    context_key_enc: &[u8],
) -> DbResult<BackendRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO backends (id, org_id, slug, name, dsn_enc, tls_mode, tls_ca_pem, owner_role, allowed_schemas,
                               allowed_functions, statement_timeout_ms, max_rows, context_key_enc)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(org_id)
    .bind(slug)
    .bind(fields.name)
    .bind(fields.dsn_enc)
    .bind(fields.tls_mode)
    .bind(fields.tls_ca_pem)
    .bind(fields.owner_role)
    .bind(fields.allowed_schemas)
    .bind(fields.allowed_functions)
    .bind(fields.statement_timeout_ms)
    .bind(fields.max_rows)
    .bind(context_key_enc)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn update(tx: &mut TenantTx, id: BackendId, fields: &BackendFields<'_>) -> DbResult<BackendRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE backends SET name = $3, dsn_enc = $4, tls_mode = $5, tls_ca_pem = $6, owner_role = $7,
                allowed_schemas = $8, allowed_functions = $9, statement_timeout_ms = $10, max_rows = $11,
                updated_at = now()
          WHERE org_id = $1 AND id = $2
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(fields.name)
    .bind(fields.dsn_enc)
    .bind(fields.tls_mode)
    .bind(fields.tls_ca_pem)
    .bind(fields.owner_role)
    .bind(fields.allowed_schemas)
    .bind(fields.allowed_functions)
    .bind(fields.statement_timeout_ms)
    .bind(fields.max_rows)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn record_test(tx: &mut TenantTx, id: BackendId, outcome: &Value) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("UPDATE backends SET last_test = $3, last_tested_at = now() WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .bind(outcome)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<BackendRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM backends WHERE org_id = $1 ORDER BY slug"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: BackendId) -> DbResult<Option<BackendRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM backends WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn get_for_update(tx: &mut TenantTx, id: BackendId) -> DbResult<Option<BackendRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM backends WHERE org_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn delete(tx: &mut TenantTx, id: BackendId) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(sqlx::query("DELETE FROM backends WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected()
        > 0)
}

/// Whether a domain server of the org has this slug (backends and servers share the namespace of
/// exposed tool names).
pub async fn slug_used_by_server(tx: &mut TenantTx, slug: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM domain_servers WHERE org_id = $1 AND slug = $2)")
            .bind(org_id)
            .bind(slug)
            .fetch_one(tx.conn())
            .await?,
    )
}

/// The relations of a backend marked tenant-neutral, as `schema.table`.
pub async fn reference_tables(tx: &mut TenantTx, backend: BackendId) -> DbResult<Vec<String>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT schema_name || '.' || table_name FROM backend_reference_tables
          WHERE org_id = $1 AND backend_id = $2 ORDER BY 1",
    )
    .bind(org_id)
    .bind(backend)
    .fetch_all(tx.conn())
    .await?)
}

/// Marks a relation as tenant-neutral; false if it already was.
pub async fn mark_reference_table(
    tx: &mut TenantTx,
    backend: BackendId,
    schema: &str,
    table: &str,
    by: UserId,
) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "INSERT INTO backend_reference_tables (org_id, backend_id, schema_name, table_name, marked_by)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(org_id)
    .bind(backend)
    .bind(schema)
    .bind(table)
    .bind(by)
    .execute(tx.conn())
    .await?
    .rows_affected()
        > 0)
}

/// Removes the mark; false if there was none.
pub async fn unmark_reference_table(
    tx: &mut TenantTx,
    backend: BackendId,
    schema: &str,
    table: &str,
) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "DELETE FROM backend_reference_tables
          WHERE org_id = $1 AND backend_id = $2 AND schema_name = $3 AND table_name = $4",
    )
    .bind(org_id)
    .bind(backend)
    .bind(schema)
    .bind(table)
    .execute(tx.conn())
    .await?
    .rows_affected()
        > 0)
}

/// A SQL tool as stored.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SqlToolRow {
    pub id: ToolId,
    pub backend_id: BackendId,
    pub name: String,
    pub sql_text: String,
    pub sql_access: String,
    pub sql_destructive: bool,
    pub definition: Value,
    pub definition_hash: Vec<u8>,
    pub sql_target: Value,
    pub approved_definition: Option<Value>,
    pub approved_hash: Option<Vec<u8>>,
    pub approved_sql_target: Option<Value>,
    pub sql_inspection: Option<Value>,
    #[sqlx(try_from = "String")]
    pub status: StatusColumn,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<OffsetDateTime>,
    pub first_seen_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl SqlToolRow {
    pub fn status(&self) -> ToolStatus {
        self.status.0
    }
}

const TOOL_COLUMNS: &str = "id, backend_id, name, sql_text, sql_access, sql_destructive, definition, definition_hash, \
                            sql_target, approved_definition, approved_hash, approved_sql_target, sql_inspection, \
                            status, decided_by, decided_at, first_seen_at, updated_at";

/// A SQL tool's validated definition, as written.
#[derive(Clone, Debug)]
pub struct SqlToolFields<'a> {
    pub name: &'a str,
    pub sql_text: &'a str,
    pub access: &'a str,
    pub destructive: bool,
    pub definition: &'a Value,
    pub definition_hash: &'a [u8],
    pub target: &'a Value,
    pub inspection: &'a Value,
}

pub async fn create_tool(
    tx: &mut TenantTx,
    backend: BackendId,
    f: &SqlToolFields<'_>,
) -> DbResult<SqlToolRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tools (id, org_id, kind, backend_id, name, definition, definition_hash, sql_text, sql_access,
                            sql_destructive, sql_target, sql_inspection)
         VALUES ($1, $2, 'sql', $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING {TOOL_COLUMNS}"
    )))
    .bind(ToolId::new())
    .bind(org_id)
    .bind(backend)
    .bind(f.name)
    .bind(f.definition)
    .bind(f.definition_hash)
    .bind(f.sql_text)
    .bind(f.access)
    .bind(f.destructive)
    .bind(f.target)
    .bind(f.inspection)
    .fetch_one(tx.conn())
    .await?)
}

/// Replaces a SQL tool's definition. An approved tool whose definition changes goes to `changed`
/// (withheld until re-approved); one changed back to its approved definition is `approved` again.
pub async fn update_tool(tx: &mut TenantTx, id: ToolId, f: &SqlToolFields<'_>) -> DbResult<SqlToolRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tools
            SET definition = $3, definition_hash = $4, sql_text = $5, sql_access = $6, sql_destructive = $7,
                sql_target = $8, sql_inspection = $9, name = $10,
                status = CASE
                    WHEN status = 'rejected' AND definition_hash = $4 THEN 'rejected'
                    WHEN approved_hash = $4 THEN 'approved'
                    WHEN approved_hash IS NOT NULL THEN 'changed'
                    ELSE 'pending' END,
                last_seen_at = now(), updated_at = now()
          WHERE org_id = $1 AND id = $2 AND kind = 'sql'
          RETURNING {TOOL_COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(f.definition)
    .bind(f.definition_hash)
    .bind(f.sql_text)
    .bind(f.access)
    .bind(f.destructive)
    .bind(f.target)
    .bind(f.inspection)
    .bind(f.name)
    .fetch_one(tx.conn())
    .await?)
}

/// Records a fresh inspection without changing the definition.
pub async fn record_inspection(tx: &mut TenantTx, id: ToolId, inspection: &Value) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("UPDATE tools SET sql_inspection = $3 WHERE org_id = $1 AND id = $2 AND kind = 'sql'")
        .bind(org_id)
        .bind(id)
        .bind(inspection)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn list_tools(tx: &mut TenantTx, backend: BackendId) -> DbResult<Vec<SqlToolRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TOOL_COLUMNS} FROM tools WHERE org_id = $1 AND backend_id = $2 AND kind = 'sql' ORDER BY name"
    )))
    .bind(org_id)
    .bind(backend)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get_tool(tx: &mut TenantTx, id: ToolId) -> DbResult<Option<SqlToolRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TOOL_COLUMNS} FROM tools WHERE org_id = $1 AND id = $2 AND kind = 'sql'"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn delete_tool(tx: &mut TenantTx, id: ToolId) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query("DELETE FROM tools WHERE org_id = $1 AND id = $2 AND kind = 'sql'")
            .bind(org_id)
            .bind(id)
            .execute(tx.conn())
            .await?
            .rows_affected()
            > 0,
    )
}

/// Withholds every approved tool of `backend` (to `changed`) whose inspection names one of
/// `tables` (`schema.table`), or all of them when `tables` is `None`. Returns the tools moved.
pub async fn withhold_tools(
    tx: &mut TenantTx,
    backend: BackendId,
    tables: Option<&[String]>,
) -> DbResult<Vec<ToolId>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "UPDATE tools t SET status = 'changed', updated_at = now()
          WHERE t.org_id = $1 AND t.backend_id = $2 AND t.kind = 'sql' AND t.status = 'approved'
            AND ($3::text[] IS NULL OR EXISTS (
                  SELECT 1 FROM jsonb_array_elements(coalesce(t.sql_inspection->'tables', '[]')) r
                   WHERE (r->>'schema') || '.' || (r->>'name') = ANY($3)))
          RETURNING t.id",
    )
    .bind(org_id)
    .bind(backend)
    .bind(tables)
    .fetch_all(tx.conn())
    .await?)
}

/// A backend combined into an endpoint: all its approved tools, or only `tool_ids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointBackend {
    pub backend_id: BackendId,
    pub all_tools: bool,
    pub tool_ids: Vec<ToolId>,
}

/// The backends of an endpoint, by backend id.
pub async fn endpoint_backends(tx: &mut TenantTx, endpoint: EndpointId) -> DbResult<Vec<EndpointBackend>> {
    let org_id = tx.org_id();
    let rows: Vec<(BackendId, bool, Vec<ToolId>)> = sqlx::query_as(
        "SELECT eb.backend_id, eb.all_tools,
                COALESCE((SELECT array_agg(et.tool_id ORDER BY et.tool_id)
                            FROM endpoint_tools et JOIN tools t ON t.org_id = et.org_id AND t.id = et.tool_id
                           WHERE et.org_id = eb.org_id AND et.endpoint_id = eb.endpoint_id
                             AND t.backend_id = eb.backend_id), '{}')
           FROM endpoint_backends eb
          WHERE eb.org_id = $1 AND eb.endpoint_id = $2
          ORDER BY eb.backend_id",
    )
    .bind(org_id)
    .bind(endpoint)
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(backend_id, all_tools, tool_ids)| EndpointBackend {
            backend_id,
            all_tools,
            tool_ids,
        })
        .collect())
}

/// Replaces the endpoint's backends and its selection of their tools (servers' tools are left
/// alone). The caller has checked that every backend exists and every listed tool is its.
pub async fn set_endpoint_backends(
    tx: &mut TenantTx,
    endpoint: EndpointId,
    backends: &[EndpointBackend],
) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "DELETE FROM endpoint_tools et USING tools t
          WHERE et.org_id = $1 AND et.endpoint_id = $2 AND t.org_id = et.org_id AND t.id = et.tool_id AND t.kind = 'sql'",
    )
    .bind(org_id)
    .bind(endpoint)
    .execute(tx.conn())
    .await?;
    sqlx::query("DELETE FROM endpoint_backends WHERE org_id = $1 AND endpoint_id = $2")
        .bind(org_id)
        .bind(endpoint)
        .execute(tx.conn())
        .await?;
    for b in backends {
        sqlx::query("INSERT INTO endpoint_backends (org_id, endpoint_id, backend_id, all_tools) VALUES ($1, $2, $3, $4)")
            .bind(org_id)
            .bind(endpoint)
            .bind(b.backend_id)
            .bind(b.all_tools)
            .execute(tx.conn())
            .await?;
        if !b.all_tools && !b.tool_ids.is_empty() {
            sqlx::query(
                "INSERT INTO endpoint_tools (org_id, endpoint_id, tool_id)
                 SELECT $1, $2, t FROM UNNEST($3::uuid[]) AS t ON CONFLICT DO NOTHING",
            )
            .bind(org_id)
            .bind(endpoint)
            .bind(&b.tool_ids)
            .execute(tx.conn())
            .await?;
        }
    }
    sqlx::query("UPDATE endpoints SET updated_at = now() WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(endpoint)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// An approved SQL tool exposed at an endpoint.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ExposedSqlTool {
    pub endpoint_id: EndpointId,
    pub tool_id: ToolId,
    pub backend_id: BackendId,
    pub backend_slug: String,
    pub name: String,
    pub approved_definition: Value,
    pub approved_hash: Vec<u8>,
    pub approved_sql_target: Value,
    pub namespaced: bool,
}

/// The approved SQL tools exposed at one endpoint (or every endpoint), by endpoint, backend slug
/// and name.
pub async fn exposed_sql_tools(
    tx: &mut TenantTx,
    endpoint: Option<EndpointId>,
) -> DbResult<Vec<ExposedSqlTool>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT eb.endpoint_id, t.id AS tool_id, b.id AS backend_id, b.slug AS backend_slug, t.name,
                t.approved_definition, t.approved_hash, t.approved_sql_target,
                (e.namespace_tools
                 OR (SELECT count(*) FROM endpoint_servers o WHERE o.org_id = eb.org_id AND o.endpoint_id = eb.endpoint_id)
                  + (SELECT count(*) FROM endpoint_backends o WHERE o.org_id = eb.org_id AND o.endpoint_id = eb.endpoint_id) > 1)
                    AS namespaced
           FROM endpoint_backends eb
           JOIN endpoints e ON e.org_id = eb.org_id AND e.id = eb.endpoint_id
           JOIN backends b ON b.org_id = eb.org_id AND b.id = eb.backend_id
           JOIN tools t ON t.org_id = eb.org_id AND t.backend_id = eb.backend_id AND t.kind = 'sql'
          WHERE eb.org_id = $1
            AND ($2::uuid IS NULL OR eb.endpoint_id = $2)
            AND t.status = 'approved'
            AND t.approved_definition IS NOT NULL AND t.approved_hash IS NOT NULL AND t.approved_sql_target IS NOT NULL
            AND b.context_key_enc IS NOT NULL
            AND (eb.all_tools OR EXISTS (
                    SELECT 1 FROM endpoint_tools et
                     WHERE et.org_id = eb.org_id AND et.endpoint_id = eb.endpoint_id AND et.tool_id = t.id))
          ORDER BY eb.endpoint_id, b.slug, t.name",
    )
    .bind(org_id)
    .bind(endpoint)
    .fetch_all(tx.conn())
    .await?)
}
