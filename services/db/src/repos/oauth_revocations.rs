//! Token revocations the dataplane honours until the affected access tokens expire anyway.

use time::OffsetDateTime;

use gatehouse_core::snapshot::RevocationKind;

use crate::error::DbResult;
use crate::tenant::TenantTx;

fn kind_str(kind: RevocationKind) -> &'static str {
    match kind {
        RevocationKind::Family => "family",
        RevocationKind::Jti => "jti",
        RevocationKind::User => "user",
        RevocationKind::Client => "client",
    }
}

/// Inserts one row per value.
pub async fn insert(
    tx: &mut TenantTx,
    kind: RevocationKind,
    values: &[String],
    expires_at: OffsetDateTime,
) -> DbResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    let org_id = tx.org_id();
    let ids: Vec<uuid::Uuid> = values.iter().map(|_| uuid::Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO token_revocations (id, org_id, kind, value, expires_at)
         SELECT id, $1, $2, value, $4 FROM UNNEST($3::uuid[], $5::text[]) AS v(id, value)",
    )
    .bind(org_id)
    .bind(kind_str(kind))
    .bind(&ids)
    .bind(expires_at)
    .bind(values)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Whether any live revocation matches one of `(kind, value)` for a token issued at `issued_at`
/// (unix seconds): `user` revocations catch only tokens issued up to them (in whole seconds, as
/// the dataplane compares; see `Revocation::catches`).
pub async fn any_live(
    tx: &mut TenantTx,
    candidates: &[(RevocationKind, String)],
    issued_at: Option<i64>,
) -> DbResult<bool> {
    if candidates.is_empty() {
        return Ok(false);
    }
    let org_id = tx.org_id();
    let kinds: Vec<&str> = candidates.iter().map(|(k, _)| kind_str(*k)).collect();
    let values: Vec<&str> = candidates.iter().map(|(_, v)| v.as_str()).collect();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM token_revocations r
                          JOIN UNNEST($2::text[], $3::text[]) AS c(kind, value)
                            ON r.kind = c.kind AND r.value = c.value
                         WHERE r.org_id = $1 AND r.expires_at > now()
                           AND (r.kind <> 'user' OR $4::bigint IS NULL
                                OR $4 <= floor(extract(epoch FROM r.revoked_at))))",
    )
    .bind(org_id)
    .bind(&kinds)
    .bind(&values)
    .bind(issued_at)
    .fetch_one(tx.conn())
    .await?)
}

/// Deletes revocations whose tokens have all expired.
pub async fn delete_expired(tx: &mut TenantTx) -> DbResult<u64> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query("DELETE FROM token_revocations WHERE org_id = $1 AND expires_at < now()")
            .bind(org_id)
            .execute(tx.conn())
            .await?
            .rows_affected(),
    )
}
