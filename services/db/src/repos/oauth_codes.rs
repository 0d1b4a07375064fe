//! Authorization codes: single use, short-lived, only their hash stored.

use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, RefreshFamilyId, UserId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AuthorizationCodeRow {
    pub client_id: String,
    pub user_id: UserId,
    pub endpoint_id: EndpointId,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub resource: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub consumed_at: Option<OffsetDateTime>,
    pub family_id: Option<RefreshFamilyId>,
}

const COLUMNS: &str =
    "client_id, user_id, endpoint_id, redirect_uri, code_challenge, scopes, resource, created_at,
    expires_at, consumed_at, family_id";

pub struct NewAuthorizationCode<'a> {
    pub code_hash: &'a [u8],
    pub client_id: &'a str,
    pub user_id: UserId,
    pub endpoint_id: EndpointId,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scopes: &'a [String],
    pub resource: &'a str,
    pub ttl_secs: i64,
}

pub async fn insert(tx: &mut TenantTx, c: &NewAuthorizationCode<'_>) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "INSERT INTO oauth_authorization_codes (org_id, code_hash, client_id, user_id, endpoint_id, redirect_uri,
                                                code_challenge, scopes, resource, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))",
    )
    .bind(org_id)
    .bind(c.code_hash)
    .bind(c.client_id)
    .bind(c.user_id)
    .bind(c.endpoint_id)
    .bind(c.redirect_uri)
    .bind(c.code_challenge)
    .bind(c.scopes)
    .bind(c.resource)
    .bind(c.ttl_secs as f64)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Marks the code consumed, atomically: of concurrent redemptions exactly one gets the row back.
/// `None` means the code is unknown or was already consumed.
pub async fn consume(tx: &mut TenantTx, code_hash: &[u8]) -> DbResult<Option<AuthorizationCodeRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE oauth_authorization_codes SET consumed_at = now()
          WHERE org_id = $1 AND code_hash = $2 AND consumed_at IS NULL
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(code_hash)
    .fetch_optional(tx.conn())
    .await?)
}

/// A code that was already consumed (to detect replays), with what its redemption issued.
pub async fn find_consumed(tx: &mut TenantTx, code_hash: &[u8]) -> DbResult<Option<AuthorizationCodeRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM oauth_authorization_codes
          WHERE org_id = $1 AND code_hash = $2 AND consumed_at IS NOT NULL"
    )))
    .bind(org_id)
    .bind(code_hash)
    .fetch_optional(tx.conn())
    .await?)
}

/// Records the refresh family a successful redemption created.
pub async fn record_family(tx: &mut TenantTx, code_hash: &[u8], family: RefreshFamilyId) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("UPDATE oauth_authorization_codes SET family_id = $3 WHERE org_id = $1 AND code_hash = $2")
        .bind(org_id)
        .bind(code_hash)
        .bind(family)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Deletes codes that expired more than an hour ago (replays of older codes are plain unknowns).
pub async fn delete_expired(tx: &mut TenantTx) -> DbResult<u64> {
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "DELETE FROM oauth_authorization_codes WHERE org_id = $1 AND expires_at < now() - interval '1 hour'",
    )
    .bind(org_id)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Deletes the codes not yet redeemed of `user` (or, with `except_owners` and no user, of
/// everyone but the org's owners): a redemption in flight finishes first (its row is locked), so
/// a revocation that runs this before revoking families also sees the family it creates.
pub async fn withdraw_unredeemed(
    tx: &mut TenantTx,
    user: Option<UserId>,
    except_owners: bool,
) -> DbResult<u64> {
    if user.is_none() && !except_owners {
        return Ok(0);
    }
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "DELETE FROM oauth_authorization_codes c
          WHERE c.org_id = $1 AND c.consumed_at IS NULL
            AND ($2::uuid IS NULL OR c.user_id = $2)
            AND ($3::boolean IS FALSE OR NOT EXISTS (
                 SELECT 1 FROM memberships m WHERE m.org_id = c.org_id AND m.user_id = c.user_id AND m.role = 'owner'))",
    )
    .bind(org_id)
    .bind(user)
    .bind(except_owners)
    .execute(tx.conn())
    .await?
    .rows_affected())
}
