//! Remembered consent, per user per client per endpoint.

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, UserId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ConsentRow {
    pub user_id: UserId,
    pub client_id: String,
    pub endpoint_id: EndpointId,
    pub scopes: Vec<String>,
    pub granted_at: OffsetDateTime,
}

/// The live consent of `user` for `client` at `endpoint`, if any.
pub async fn find_live(
    tx: &mut TenantTx,
    user: UserId,
    client_id: &str,
    endpoint: EndpointId,
) -> DbResult<Option<ConsentRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT user_id, client_id, endpoint_id, scopes, granted_at FROM oauth_consents
          WHERE org_id = $1 AND user_id = $2 AND client_id = $3 AND endpoint_id = $4 AND revoked_at IS NULL",
    )
    .bind(org_id)
    .bind(user)
    .bind(client_id)
    .bind(endpoint)
    .fetch_optional(tx.conn())
    .await?)
}

/// Records (or renews) consent with exactly `scopes`.
pub async fn grant(
    tx: &mut TenantTx,
    user: UserId,
    client_id: &str,
    endpoint: EndpointId,
    scopes: &[String],
) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "INSERT INTO oauth_consents (org_id, user_id, client_id, endpoint_id, scopes)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (org_id, user_id, client_id, endpoint_id)
         DO UPDATE SET scopes = EXCLUDED.scopes, granted_at = now(), revoked_at = NULL",
    )
    .bind(org_id)
    .bind(user)
    .bind(client_id)
    .bind(endpoint)
    .bind(scopes)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Revokes live consents matching the filter (each `None` matches any); returns how many.
pub async fn revoke(
    tx: &mut TenantTx,
    user: Option<UserId>,
    client_id: Option<&str>,
    endpoint: Option<EndpointId>,
) -> DbResult<u64> {
    if user.is_none() && client_id.is_none() && endpoint.is_none() {
        return Ok(0);
    }
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "UPDATE oauth_consents SET revoked_at = now()
          WHERE org_id = $1 AND revoked_at IS NULL
            AND ($2::uuid IS NULL OR user_id = $2)
            AND ($3::text IS NULL OR client_id = $3)
            AND ($4::uuid IS NULL OR endpoint_id = $4)",
    )
    .bind(org_id)
    .bind(user)
    .bind(client_id)
    .bind(endpoint)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Live consents, optionally of one user, newest first.
pub async fn list_live(tx: &mut TenantTx, user: Option<UserId>) -> DbResult<Vec<ConsentRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT user_id, client_id, endpoint_id, scopes, granted_at FROM oauth_consents
          WHERE org_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR user_id = $2)
          ORDER BY granted_at DESC LIMIT 1000",
    )
    .bind(org_id)
    .bind(user)
    .fetch_all(tx.conn())
    .await?)
}
