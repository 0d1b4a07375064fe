//! Confidential clients pre-registered by an org admin for the client_credentials grant.

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, ServiceClientId, UserId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ServiceClientRow {
    pub id: ServiceClientId,
    pub client_id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    pub endpoint_id: EndpointId,
    pub scopes: Vec<String>,
    pub created_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str =
    "id, client_id, name, secret_hash, endpoint_id, scopes, created_by, created_at, last_used_at, revoked_at";

pub struct NewServiceClient<'a> {
    pub id: ServiceClientId,
    pub client_id: &'a str,
    pub name: &'a str,
    pub secret_hash: &'a [u8],
    pub endpoint_id: EndpointId,
    pub scopes: &'a [String],
    pub created_by: Option<UserId>,
}

pub async fn create(tx: &mut TenantTx, c: &NewServiceClient<'_>) -> DbResult<ServiceClientRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO service_clients (id, org_id, client_id, name, secret_hash, endpoint_id, scopes, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(c.id)
    .bind(org_id)
    .bind(c.client_id)
    .bind(c.name)
    .bind(c.secret_hash)
    .bind(c.endpoint_id)
    .bind(c.scopes)
    .bind(c.created_by)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<ServiceClientRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM service_clients WHERE org_id = $1 ORDER BY created_at DESC"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: ServiceClientId) -> DbResult<Option<ServiceClientRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM service_clients WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// A live (unrevoked) client by its client id.
pub async fn find_live_by_client_id(
    tx: &mut TenantTx,
    client_id: &str,
) -> DbResult<Option<ServiceClientRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM service_clients WHERE org_id = $1 AND client_id = $2 AND revoked_at IS NULL"
    )))
    .bind(org_id)
    .bind(client_id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn revoke(tx: &mut TenantTx, id: ServiceClientId) -> DbResult<Option<ServiceClientRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE service_clients SET revoked_at = now()
          WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Records use, at most once a minute (the token endpoint calls this on every issuance).
pub async fn touch_last_used(tx: &mut TenantTx, id: ServiceClientId) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "UPDATE service_clients SET last_used_at = now()
          WHERE org_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(org_id)
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}
