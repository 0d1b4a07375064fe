//! Refresh-token families and their rotating tokens. Only token hashes are stored.

use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, RefreshFamilyId, UserId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RefreshFamilyRow {
    pub id: RefreshFamilyId,
    pub client_id: String,
    pub user_id: UserId,
    pub endpoint_id: EndpointId,
    pub scopes: Vec<String>,
    pub resource: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
}

const FAMILY_COLUMNS: &str = "id, client_id, user_id, endpoint_id, scopes, resource, created_at, last_used_at, revoked_at, revoked_reason";

/// A refresh token joined with its family, as presented at the token endpoint.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub family_id: RefreshFamilyId,
    pub generation: i32,
    pub expires_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    /// The newest generation of the family.
    pub latest_generation: i32,
}

pub struct NewFamily<'a> {
    pub id: RefreshFamilyId,
    pub client_id: &'a str,
    pub user_id: UserId,
    pub endpoint_id: EndpointId,
    pub scopes: &'a [String],
    pub resource: &'a str,
}

pub async fn create_family(tx: &mut TenantTx, f: &NewFamily<'_>) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "INSERT INTO oauth_refresh_families (id, org_id, client_id, user_id, endpoint_id, scopes, resource, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
    )
    .bind(f.id)
    .bind(org_id)
    .bind(f.client_id)
    .bind(f.user_id)
    .bind(f.endpoint_id)
    .bind(f.scopes)
    .bind(f.resource)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn insert_token(
    tx: &mut TenantTx,
    family: RefreshFamilyId,
    token_hash: &[u8],
    generation: i32,
    ttl_secs: i64,
) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query(
        "INSERT INTO oauth_refresh_tokens (org_id, token_hash, family_id, generation, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(org_id)
    .bind(token_hash)
    .bind(family)
    .bind(generation)
    .bind(ttl_secs as f64)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The token with that hash, locking its family row so that concurrent uses of one family are
/// serialised (the second sees what the first did).
pub async fn find_token_for_update(
    tx: &mut TenantTx,
    token_hash: &[u8],
) -> DbResult<Option<RefreshTokenRow>> {
    let org_id = tx.org_id();
    let family: Option<RefreshFamilyId> = sqlx::query_scalar(
        "SELECT f.id FROM oauth_refresh_tokens t
           JOIN oauth_refresh_families f ON f.org_id = t.org_id AND f.id = t.family_id
          WHERE t.org_id = $1 AND t.token_hash = $2
          FOR UPDATE OF f",
    )
    .bind(org_id)
    .bind(token_hash)
    .fetch_optional(tx.conn())
    .await?;
    if family.is_none() {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT t.family_id, t.generation, t.expires_at, t.rotated_at,
                (SELECT max(generation) FROM oauth_refresh_tokens x
                  WHERE x.org_id = t.org_id AND x.family_id = t.family_id) AS latest_generation
           FROM oauth_refresh_tokens t
          WHERE t.org_id = $1 AND t.token_hash = $2",
    )
    .bind(org_id)
    .bind(token_hash)
    .fetch_optional(tx.conn())
    .await?)
}

/// Marks every live token of the family rotated (the family moves on to a new generation).
pub async fn rotate_all(tx: &mut TenantTx, family: RefreshFamilyId) -> DbResult<u64> {
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "UPDATE oauth_refresh_tokens SET rotated_at = now()
          WHERE org_id = $1 AND family_id = $2 AND rotated_at IS NULL",
    )
    .bind(org_id)
    .bind(family)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

pub async fn get_family(tx: &mut TenantTx, id: RefreshFamilyId) -> DbResult<Option<RefreshFamilyRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FAMILY_COLUMNS} FROM oauth_refresh_families WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn touch_family(tx: &mut TenantTx, id: RefreshFamilyId) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("UPDATE oauth_refresh_families SET last_used_at = now() WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Which families a revocation applies to.
#[derive(Clone, Debug, Default)]
pub struct FamilyFilter<'a> {
    pub id: Option<RefreshFamilyId>,
    pub user_id: Option<UserId>,
    pub client_id: Option<&'a str>,
    pub endpoint_id: Option<EndpointId>,
    /// Every family except those of the org's owners (SSO enforcement switched on).
    pub except_owners: bool,
}

/// The live families `f` a [`FamilyFilter`] selects: org `$1`, then `$2` id, `$3` user, `$4`
/// client, `$5` endpoint (each unless NULL) and `$7` except owners.
const FILTERED_LIVE: &str = "f.org_id = $1 AND f.revoked_at IS NULL
    AND ($2::uuid IS NULL OR f.id = $2)
    AND ($3::uuid IS NULL OR f.user_id = $3)
    AND ($4::text IS NULL OR f.client_id = $4)
    AND ($5::uuid IS NULL OR f.endpoint_id = $5)
    AND ($7::boolean IS FALSE OR NOT EXISTS (
        SELECT 1 FROM memberships m WHERE m.org_id = f.org_id AND m.user_id = f.user_id AND m.role = 'owner'))";

/// Revokes the live families matching `filter`; returns their ids. A filter with no field set
/// matches nothing.
pub async fn revoke_families(
    tx: &mut TenantTx,
    filter: &FamilyFilter<'_>,
    reason: &str,
) -> DbResult<Vec<RefreshFamilyId>> {
    if filter.id.is_none()
        && filter.user_id.is_none()
        && filter.client_id.is_none()
        && filter.endpoint_id.is_none()
        && !filter.except_owners
    {
        return Ok(Vec::new());
    }
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE oauth_refresh_families f SET revoked_at = now(), revoked_reason = $6
          WHERE {FILTERED_LIVE}
          RETURNING f.id"
    )))
    .bind(org_id)
    .bind(filter.id)
    .bind(filter.user_id)
    .bind(filter.client_id)
    .bind(filter.endpoint_id)
    .bind(reason)
    .bind(filter.except_owners)
    .fetch_all(tx.conn())
    .await?)
}

/// Live (unrevoked) families matching the filter, newest first. An empty filter lists all.
pub async fn list_live(
    tx: &mut TenantTx,
    filter: &FamilyFilter<'_>,
    limit: i64,
) -> DbResult<Vec<RefreshFamilyRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FAMILY_COLUMNS} FROM oauth_refresh_families f
          WHERE {FILTERED_LIVE}
          ORDER BY f.created_at DESC LIMIT $6"
    )))
    .bind(org_id)
    .bind(filter.id)
    .bind(filter.user_id)
    .bind(filter.client_id)
    .bind(filter.endpoint_id)
    .bind(limit.clamp(1, 1000))
    .bind(filter.except_owners)
    .fetch_all(tx.conn())
    .await?)
}
