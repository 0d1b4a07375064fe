//! Token signing keys (global). The private key is sealed; the public JWK is stored in the clear.
//! A key is published (`publish_at`) before it signs (`sign_from`), stops signing at `retire_at`
//! and leaves the JWKS at `expire_at`, once every token it signed has expired.

use time::OffsetDateTime;

use crate::error::DbResult;
use crate::tenant::GlobalTx;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: serde_json::Value,
    pub private_key_enc: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub publish_at: OffsetDateTime,
    pub sign_from: OffsetDateTime,
    pub retire_at: Option<OffsetDateTime>,
    pub expire_at: Option<OffsetDateTime>,
}

const COLUMNS: &str =
    "kid, alg, public_jwk, private_key_enc, created_at, publish_at, sign_from, retire_at, expire_at";

/// Serialises key maintenance across control-API replicas for the rest of the transaction.
pub async fn lock_for_rotation(tx: &mut GlobalTx) -> DbResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(7243502)")
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Keys that are not yet past `expire_at`, oldest signer first.
pub async fn list_live(tx: &mut GlobalTx) -> DbResult<Vec<SigningKeyRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM signing_keys WHERE expire_at IS NULL OR expire_at > now() ORDER BY sign_from, kid"
    )))
    .fetch_all(tx.conn())
    .await?)
}

/// The public JWKs to publish now: published and not yet expired.
pub async fn published_jwks(tx: &mut GlobalTx) -> DbResult<Vec<serde_json::Value>> {
    Ok(sqlx::query_scalar(
        "SELECT public_jwk FROM signing_keys
          WHERE publish_at <= now() AND (expire_at IS NULL OR expire_at > now())
          ORDER BY sign_from, kid",
    )
    .fetch_all(tx.conn())
    .await?)
}

pub struct NewSigningKey<'a> {
    pub kid: &'a str,
    pub alg: &'a str,
    pub public_jwk: &'a serde_json::Value,
    pub private_key_enc: &'a [u8],
    pub publish_at: OffsetDateTime,
    pub sign_from: OffsetDateTime,
}

pub async fn insert(tx: &mut GlobalTx, key: &NewSigningKey<'_>) -> DbResult<SigningKeyRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO signing_keys (kid, alg, public_jwk, private_key_enc, publish_at, sign_from)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(key.kid)
    .bind(key.alg)
    .bind(key.public_jwk)
    .bind(key.private_key_enc)
    .bind(key.publish_at)
    .bind(key.sign_from)
    .fetch_one(tx.conn())
    .await?)
}

/// Schedules the end of a key's life: it stops signing at `retire_at` and leaves the JWKS at
/// `expire_at`.
pub async fn schedule_retirement(
    tx: &mut GlobalTx,
    kid: &str,
    retire_at: OffsetDateTime,
    expire_at: OffsetDateTime,
) -> DbResult<()> {
    sqlx::query("UPDATE signing_keys SET retire_at = $2, expire_at = $3 WHERE kid = $1")
        .bind(kid)
        .bind(retire_at)
        .bind(expire_at)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Deletes keys that left the JWKS more than a day ago (nothing can still need them).
pub async fn delete_expired(tx: &mut GlobalTx) -> DbResult<u64> {
    Ok(
        sqlx::query("DELETE FROM signing_keys WHERE expire_at < now() - interval '1 day'")
            .execute(tx.conn())
            .await?
            .rows_affected(),
    )
}
