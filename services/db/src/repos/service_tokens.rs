//! Long-lived scoped service tokens for one endpoint. Only the SHA-256 of a token is stored.

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, ServiceTokenId, UserId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ServiceTokenRow {
    pub id: ServiceTokenId,
    pub endpoint_id: EndpointId,
    pub name: String,
    pub token_prefix: String,
    #[serde(skip)]
    pub token_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub created_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, endpoint_id, name, token_prefix, token_hash, scopes, created_by, created_at, expires_at, last_used_at, revoked_at";

pub struct NewServiceToken<'a> {
    pub id: ServiceTokenId,
    pub endpoint_id: EndpointId,
    pub name: &'a str,
    pub token_prefix: &'a str,
    pub token_hash: &'a [u8],
    pub scopes: &'a [String],
    pub created_by: Option<UserId>,
    pub expires_at: Option<OffsetDateTime>,
}

pub async fn create(tx: &mut TenantTx, t: &NewServiceToken<'_>) -> DbResult<ServiceTokenRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO service_tokens (id, org_id, endpoint_id, name, token_prefix, token_hash, scopes, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    )))
    .bind(t.id)
    .bind(org_id)
    .bind(t.endpoint_id)
    .bind(t.name)
    .bind(t.token_prefix)
    .bind(t.token_hash)
    .bind(t.scopes)
    .bind(t.created_by)
    .bind(t.expires_at)
    .fetch_one(tx.conn())
    .await?)
}

/// Every token of the org, revoked ones included (the console shows them greyed), newest first.
pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<ServiceTokenRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM service_tokens WHERE org_id = $1 ORDER BY created_at DESC"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

/// Revokes a live token; `None` if there is no such live token.
pub async fn revoke(tx: &mut TenantTx, id: ServiceTokenId) -> DbResult<Option<ServiceTokenRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE service_tokens SET revoked_at = now()
          WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Records that the token was used at `at` (the dataplane accepted it), keeping the latest time:
/// redelivered or out-of-order events never move it back.
pub async fn touch_last_used(
    tx: &mut TenantTx,
    id: gatehouse_core::ids::ServiceTokenId,
    at: time::OffsetDateTime,
) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "UPDATE service_tokens SET last_used_at = GREATEST(COALESCE(last_used_at, $3), $3)
          WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}
