//! Scopes: the authorization vocabulary of an org, and the tools each scope grants.

use time::OffsetDateTime;

use gatehouse_core::ids::{ScopeId, ToolId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ScopeRow {
    pub id: ScopeId,
    pub name: String,
    pub description: String,
    /// Lowest member role that may hold the scope.
    pub min_role: String,
    /// Tools granted, sorted.
    pub tool_ids: Vec<ToolId>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const SELECT: &str = "SELECT s.id, s.name, s.description, s.min_role,
        COALESCE((SELECT array_agg(g.tool_id ORDER BY g.tool_id) FROM scope_grants g
                   WHERE g.org_id = s.org_id AND g.scope_id = s.id), '{}') AS tool_ids,
        s.created_at, s.updated_at
   FROM scopes s";

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<ScopeRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.org_id = $1 ORDER BY s.name"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: ScopeId) -> DbResult<Option<ScopeRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.org_id = $1 AND s.id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn create(tx: &mut TenantTx, name: &str, description: &str, min_role: &str) -> DbResult<ScopeId> {
    let org_id = tx.org_id();
    let id = ScopeId::new();
    sqlx::query("INSERT INTO scopes (id, org_id, name, description, min_role) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(org_id)
        .bind(name)
        .bind(description)
        .bind(min_role)
        .execute(tx.conn())
        .await?;
    Ok(id)
}

pub async fn update(tx: &mut TenantTx, id: ScopeId, description: &str, min_role: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    let done = sqlx::query(
        "UPDATE scopes SET description = $3, min_role = $4, updated_at = now() WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(description)
    .bind(min_role)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the scope's grants with exactly `tools` (which the caller has checked exist).
pub async fn set_grants(tx: &mut TenantTx, id: ScopeId, tools: &[ToolId]) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("DELETE FROM scope_grants WHERE org_id = $1 AND scope_id = $2 AND NOT (tool_id = ANY($3))")
        .bind(org_id)
        .bind(id)
        .bind(tools)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO scope_grants (org_id, scope_id, tool_id)
         SELECT $1, $2, t FROM UNNEST($3::uuid[]) AS t
         ON CONFLICT DO NOTHING",
    )
    .bind(org_id)
    .bind(id)
    .bind(tools)
    .execute(tx.conn())
    .await?;
    sqlx::query("UPDATE scopes SET updated_at = now() WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn delete(tx: &mut TenantTx, id: ScopeId) -> DbResult<bool> {
    let org_id = tx.org_id();
    let done = sqlx::query("DELETE FROM scopes WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() == 1)
}
