//! Invitations to join an org (tenant table). The emailed token carries the org id (so the
//! acceptance can open a tenant transaction) and a random secret; only its SHA-256 is stored.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use gatehouse_core::ids::{InvitationId, UserId};
use gatehouse_core::role::Role;

use crate::error::{DbError, DbResult};
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvitationRow {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

type Raw = (
    InvitationId,
    String,
    String,
    Option<UserId>,
    OffsetDateTime,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

const COLUMNS: &str = "id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

fn from_raw(r: Raw) -> DbResult<InvitationRow> {
    Ok(InvitationRow {
        id: r.0,
        email: r.1,
        role: r.2.parse().map_err(|_| DbError::CheckViolation {
            constraint: "invitations_role_check".into(),
        })?,
        invited_by: r.3,
        created_at: r.4,
        expires_at: r.5,
        accepted_at: r.6,
        revoked_at: r.7,
    })
}

/// Creates an invitation, revoking any pending one for the same email (only the latest link
/// works).
pub async fn create(
    tx: &mut TenantTx,
    email: &str,
    role: Role,
    token_hash: &[u8],
    invited_by: UserId,
    ttl: Duration,
) -> DbResult<InvitationRow> {
    let org_id = tx.org_id();
    sqlx::query(
        "UPDATE invitations SET revoked_at = now()
          WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(org_id)
    .bind(email)
    .execute(tx.conn())
    .await?;
    let raw: Raw = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO invitations (org_id, id, email, role, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(InvitationId::new())
    .bind(email)
    .bind(role.as_str())
    .bind(token_hash)
    .bind(invited_by)
    .bind(ttl.whole_seconds() as f64)
    .fetch_one(tx.conn())
    .await?;
    from_raw(raw)
}

/// Invitations that can still be accepted, newest first.
pub async fn list_pending(tx: &mut TenantTx) -> DbResult<Vec<InvitationRow>> {
    let org_id = tx.org_id();
    let rows: Vec<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations
          WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
          ORDER BY created_at DESC"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(from_raw).collect()
}

/// Revokes a pending invitation; `None` when there is no such pending invitation in this org.
pub async fn revoke(tx: &mut TenantTx, id: InvitationId) -> DbResult<Option<InvitationRow>> {
    let org_id = tx.org_id();
    let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE invitations SET revoked_at = now()
          WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?;
    raw.map(from_raw).transpose()
}

/// The invitation with this token hash if it can still be accepted, locked until the
/// transaction ends.
pub async fn find_acceptable(tx: &mut TenantTx, token_hash: &[u8]) -> DbResult<Option<InvitationRow>> {
    let org_id = tx.org_id();
    let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations
          WHERE org_id = $1 AND token_hash = $2
            AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
            FOR UPDATE"
    )))
    .bind(org_id)
    .bind(token_hash)
    .fetch_optional(tx.conn())
    .await?;
    raw.map(from_raw).transpose()
}

/// Marks an invitation accepted by `user`.
pub async fn mark_accepted(tx: &mut TenantTx, id: InvitationId, user: UserId) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("UPDATE invitations SET accepted_at = now(), accepted_by = $3 WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .bind(user)
        .execute(tx.conn())
        .await?;
    Ok(())
}
