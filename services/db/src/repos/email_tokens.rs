//! Single-use links sent by email (verification, password reset). Global: they belong to a user,
//! not an org. Only the SHA-256 of a token is stored; consuming one is a single atomic UPDATE, so
//! two concurrent uses of the same link cannot both succeed.

use time::Duration;

use gatehouse_core::ids::UserId;

use crate::error::DbResult;
use crate::tenant::GlobalTx;

/// What a link is for. A token issued for one purpose never works for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

/// Stores a new token for `user`, valid for `ttl`. Earlier unused tokens of the same purpose
/// stop working: only the latest link mailed is valid.
pub async fn issue(
    tx: &mut GlobalTx,
    user: UserId,
    purpose: Purpose,
    token_hash: &[u8],
    ttl: Duration,
) -> DbResult<()> {
    sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL")
        .bind(user)
        .bind(purpose.as_str())
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(token_hash)
    .bind(user)
    .bind(purpose.as_str())
    .bind(ttl.whole_seconds() as f64)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Uses a token: returns its user if the token exists, has this purpose, is unused and unexpired,
/// and marks it used in the same statement.
pub async fn consume(tx: &mut GlobalTx, token_hash: &[u8], purpose: Purpose) -> DbResult<Option<UserId>> {
    Ok(sqlx::query_scalar(
        "UPDATE email_tokens SET used_at = now()
          WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
          RETURNING user_id",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(tx.conn())
    .await?)
}

/// Invalidates every unused token of `purpose` for `user` (e.g. reset links after a password
/// change).
pub async fn revoke_all(tx: &mut GlobalTx, user: UserId, purpose: Purpose) -> DbResult<u64> {
    Ok(sqlx::query(
        "UPDATE email_tokens SET used_at = now()
          WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
    )
    .bind(user)
    .bind(purpose.as_str())
    .execute(tx.conn())
    .await?
    .rows_affected())
}
