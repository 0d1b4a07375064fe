//! Console login sessions (global). The cookie holds a random token; only its hash is stored.

use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use gatehouse_core::ids::{OrgId, SessionId, UserId};

use crate::error::DbResult;
use crate::tenant::GlobalTx;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: SessionId,
    pub user_id: UserId,
    pub auth_method: String,
    /// The org whose SSO signed this session in (`None`: a password session).
    pub sso_org_id: Option<OrgId>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

const COLUMNS: &str = "id, user_id, auth_method, sso_org_id, created_at, expires_at";

/// How long a console session lives without use.
pub const IDLE_TIMEOUT: Duration = Duration::hours(12);
/// How long a console session lives at most.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::days(7);

pub async fn create(
    tx: &mut GlobalTx,
    user_id: UserId,
    token_hash: &[u8],
    auth_method: &str,
    ip: Option<IpAddr>,
    user_agent: Option<&str>,
) -> DbResult<SessionRow> {
    insert(tx, user_id, token_hash, auth_method, None, ip, user_agent).await
}

/// A session signed in through `org`'s SSO.
pub async fn create_sso(
    tx: &mut GlobalTx,
    user_id: UserId,
    token_hash: &[u8],
    org: OrgId,
    ip: Option<IpAddr>,
    user_agent: Option<&str>,
) -> DbResult<SessionRow> {
    insert(tx, user_id, token_hash, "sso", Some(org), ip, user_agent).await
}

async fn insert(
    tx: &mut GlobalTx,
    user_id: UserId,
    token_hash: &[u8],
    auth_method: &str,
    sso_org: Option<OrgId>,
    ip: Option<IpAddr>,
    user_agent: Option<&str>,
) -> DbResult<SessionRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO user_sessions (id, user_id, token_hash, auth_method, sso_org_id, expires_at, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, now() + $6::interval, $7, $8)
         RETURNING {COLUMNS}"
    )))
    .bind(SessionId::new())
    .bind(user_id)
    .bind(token_hash)
    .bind(auth_method)
    .bind(sso_org)
    .bind(format!("{} seconds", ABSOLUTE_TIMEOUT.whole_seconds()))
    .bind(ip.map(sqlx::types::ipnet::IpNet::from))
    .bind(user_agent)
    .fetch_one(tx.conn())
    .await?)
}

/// The live session for a token hash, touching its last-seen time. Sessions idle for longer than
/// [`IDLE_TIMEOUT`] or past their absolute expiry are not returned.
pub async fn find_live(tx: &mut GlobalTx, token_hash: &[u8]) -> DbResult<Option<SessionRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE user_sessions SET last_seen_at = now()
          WHERE token_hash = $1 AND expires_at > now() AND last_seen_at > now() - $2::interval
          RETURNING {COLUMNS}"
    )))
    .bind(token_hash)
    .bind(format!("{} seconds", IDLE_TIMEOUT.whole_seconds()))
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn delete(tx: &mut GlobalTx, id: SessionId) -> DbResult<()> {
    sqlx::query("DELETE FROM user_sessions WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Ends every session of a user (password change or reset, account deletion), optionally
/// keeping one.
pub async fn delete_all_for_user(
    tx: &mut GlobalTx,
    user_id: UserId,
    keep: Option<SessionId>,
) -> DbResult<u64> {
    Ok(
        sqlx::query("DELETE FROM user_sessions WHERE user_id = $1 AND ($2::uuid IS NULL OR id <> $2)")
            .bind(user_id)
            .bind(keep)
            .execute(tx.conn())
            .await?
            .rows_affected(),
    )
}
