//! Users (global).

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::UserId;

use crate::error::DbResult;
use crate::tenant::GlobalTx;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub email_verified_at: Option<OffsetDateTime>,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub display_name: String,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, email, email_verified_at, password_hash, display_name, created_at";

/// Creates a user. `email` must already be normalised (trimmed, lower case).
pub async fn create(
    tx: &mut GlobalTx,
    email: &str,
    password_hash: Option<&str>,
    display_name: &str,
    verified: bool,
) -> DbResult<UserRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email, password_hash, display_name, email_verified_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
         RETURNING {COLUMNS}"
    )))
    .bind(UserId::new())
    .bind(email)
    .bind(password_hash)
    .bind(display_name)
    .bind(verified)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn find_by_email(tx: &mut GlobalTx, email: &str) -> DbResult<Option<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE email = $1"
    )))
    .bind(email)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn find_by_id(tx: &mut GlobalTx, id: UserId) -> DbResult<Option<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Marks the user's email as verified (idempotent: the first verification time is kept).
pub async fn mark_verified(tx: &mut GlobalTx, id: UserId) -> DbResult<()> {
    sqlx::query(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Replaces the user's password hash.
pub async fn set_password(tx: &mut GlobalTx, id: UserId, password_hash: &str) -> DbResult<()> {
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(crate::error::DbError::NotFound);
    }
    Ok(())
}

/// Deletes the user. Sessions, email tokens, memberships and SSO links go with it (cascade);
/// invitations they sent keep existing with no inviter.
pub async fn delete(tx: &mut GlobalTx, id: UserId) -> DbResult<bool> {
    Ok(sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected()
        == 1)
}
