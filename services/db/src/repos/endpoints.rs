//! Endpoints: named selections of domain servers published as governed MCP endpoints.

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::EndpointId;

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: EndpointId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub rate_limits: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, slug, name, description, rate_limits, created_at, updated_at";

pub async fn create(
    tx: &mut TenantTx,
    slug: &str,
    name: &str,
    description: &str,
    rate_limits: &serde_json::Value,
) -> DbResult<EndpointRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO endpoints (id, org_id, slug, name, description, rate_limits)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(EndpointId::new())
    .bind(org_id)
    .bind(slug)
    .bind(name)
    .bind(description)
    .bind(rate_limits)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM endpoints WHERE org_id = $1 ORDER BY slug"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn find_by_slug(tx: &mut TenantTx, slug: &str) -> DbResult<Option<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM endpoints WHERE org_id = $1 AND slug = $2"
    )))
    .bind(org_id)
    .bind(slug)
    .fetch_optional(tx.conn())
    .await?)
}
