//! Orgs (the tenant registry), their settings and configuration versions.

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_core::role::Role;

use crate::error::{DbError, DbResult};
use crate::tenant::{GlobalTx, TenantTx, UserTx};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrgRow {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub plan_id: String,
    pub created_at: OffsetDateTime,
}

/// An org seen through one member's eyes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberOrg {
    pub org: OrgRow,
    pub role: Role,
}

/// Creates an org with `owner` as its owner, its settings row, and returns it. The transaction
/// must be scoped to the new org's id (the caller creates it, so it is authorized).
pub async fn create_with_owner(tx: &mut TenantTx, slug: &str, name: &str, owner: UserId) -> DbResult<OrgRow> {
    let org_id = tx.org_id();
    let org: OrgRow = sqlx::query_as(
        "INSERT INTO orgs (id, slug, name) VALUES ($1, $2, $3)
         RETURNING id, slug, name, plan_id, created_at",
    )
    .bind(org_id)
    .bind(slug)
    .bind(name)
    .fetch_one(tx.conn())
    .await?;
    sqlx::query("INSERT INTO org_settings (org_id) VALUES ($1)")
        .bind(org_id)
        .execute(tx.conn())
        .await?;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(org_id)
        .bind(owner)
        .execute(tx.conn())
        .await?;
    Ok(org)
}

/// Looks an org up by slug (slugs are public: they appear in endpoint URLs).
pub async fn find_by_slug(tx: &mut GlobalTx, slug: &str) -> DbResult<Option<OrgRow>> {
    Ok(
        sqlx::query_as("SELECT id, slug, name, plan_id, created_at FROM orgs WHERE slug = $1")
            .bind(slug)
            .fetch_optional(tx.conn())
            .await?,
    )
}

/// The org of the current tenant transaction.
pub async fn get(tx: &mut TenantTx) -> DbResult<OrgRow> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_as("SELECT id, slug, name, plan_id, created_at FROM orgs WHERE id = $1")
            .bind(org_id)
            .fetch_one(tx.conn())
            .await?,
    )
}

/// Every org id with its configuration version (for dataplanes starting cold). Org ids and
/// slugs are not secret; versions come from each org's tenant-scoped settings row, read by the
/// caller per org.
pub async fn list_all_ids(tx: &mut GlobalTx) -> DbResult<Vec<(OrgId, String)>> {
    Ok(sqlx::query_as("SELECT id, slug FROM orgs ORDER BY id")
        .fetch_all(tx.conn())
        .await?)
}

/// The orgs a user belongs to, with their role in each.
pub async fn list_for_user(tx: &mut UserTx) -> DbResult<Vec<MemberOrg>> {
    let user_id = tx.user_id();
    let rows: Vec<(OrgId, String, String, String, OffsetDateTime, String)> = sqlx::query_as(
        "SELECT o.id, o.slug, o.name, o.plan_id, o.created_at, m.role
           FROM memberships m JOIN orgs o ON o.id = m.org_id
          WHERE m.user_id = $1
          ORDER BY o.slug",
    )
    .bind(user_id)
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|(id, slug, name, plan_id, created_at, role)| {
            Ok(MemberOrg {
                org: OrgRow {
                    id,
                    slug,
                    name,
                    plan_id,
                    created_at,
                },
                role: role.parse().map_err(|_| DbError::CheckViolation {
                    constraint: "memberships_role_check".into(),
                })?,
            })
        })
        .collect()
}

/// The user's role in the org of this transaction, if a member.
pub async fn member_role(tx: &mut TenantTx, user: UserId) -> DbResult<Option<Role>> {
    let org_id = tx.org_id();
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user)
            .fetch_optional(tx.conn())
            .await?;
    role.map(|r| {
        r.parse().map_err(|_| DbError::CheckViolation {
            constraint: "memberships_role_check".into(),
        })
    })
    .transpose()
}

/// Bumps the org's configuration version (every change that affects the dataplane calls this in
/// its transaction) and returns the new version to publish after commit.
pub async fn bump_config_version(tx: &mut TenantTx) -> DbResult<i64> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "UPDATE org_settings SET config_version = config_version + 1, updated_at = now()
          WHERE org_id = $1 RETURNING config_version",
    )
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?)
}

/// The org's current configuration version.
pub async fn config_version(tx: &mut TenantTx) -> DbResult<i64> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_scalar("SELECT config_version FROM org_settings WHERE org_id = $1")
            .bind(org_id)
            .fetch_one(tx.conn())
            .await?,
    )
}

/// Renames the org of this transaction.
pub async fn update_name(tx: &mut TenantTx, name: &str) -> DbResult<OrgRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "UPDATE orgs SET name = $2, updated_at = now() WHERE id = $1
         RETURNING id, slug, name, plan_id, created_at",
    )
    .bind(org_id)
    .bind(name)
    .fetch_one(tx.conn())
    .await?)
}

/// The org's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrgSettingsRow {
    pub log_tool_arguments: bool,
    pub config_version: i64,
    pub updated_at: OffsetDateTime,
}

pub async fn settings(tx: &mut TenantTx) -> DbResult<OrgSettingsRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT log_tool_arguments, config_version, updated_at FROM org_settings WHERE org_id = $1",
    )
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?)
}

/// Sets whether tool-call arguments are recorded in the audit trail.
pub async fn set_log_tool_arguments(tx: &mut TenantTx, value: bool) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("UPDATE org_settings SET log_tool_arguments = $2, updated_at = now() WHERE org_id = $1")
        .bind(org_id)
        .bind(value)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// An org as platform operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrgAdminRow {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub plan_id: String,
    pub suspended_at: Option<OffsetDateTime>,
    pub suspended_reason: Option<String>,
    pub created_at: OffsetDateTime,
}

const ADMIN_COLUMNS: &str = "id, slug, name, plan_id, suspended_at, suspended_reason, created_at";

/// Every org, by slug (operators only).
pub async fn list_admin(tx: &mut GlobalTx) -> DbResult<Vec<OrgAdminRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_COLUMNS} FROM orgs ORDER BY slug"
    )))
    .fetch_all(tx.conn())
    .await?)
}

/// One org by slug (operators only).
pub async fn find_admin_by_slug(tx: &mut GlobalTx, slug: &str) -> DbResult<Option<OrgAdminRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_COLUMNS} FROM orgs WHERE slug = $1"
    )))
    .bind(slug)
    .fetch_optional(tx.conn())
    .await?)
}

/// The rate limits (JSON, the endpoint `rate_limits` shape without per-tool limits) that the org's
/// plan gives endpoints created without limits of their own.
pub async fn plan_rate_limit_defaults(tx: &mut TenantTx) -> DbResult<serde_json::Value> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT p.rate_limit_defaults FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1",
    )
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?)
}

/// Moves the org of this transaction onto `plan_id` (which must exist).
pub async fn set_plan(tx: &mut TenantTx, plan_id: &str) -> DbResult<OrgAdminRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE orgs SET plan_id = $2, updated_at = now() WHERE id = $1 RETURNING {ADMIN_COLUMNS}"
    )))
    .bind(org_id)
    .bind(plan_id)
    .fetch_one(tx.conn())
    .await?)
}

/// Suspends the org of this transaction (`Some(reason)`, keeping the first suspension time when
/// it already is) or resumes it (`None`).
pub async fn set_suspension(tx: &mut TenantTx, reason: Option<&str>) -> DbResult<OrgAdminRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE orgs
            SET suspended_at = CASE WHEN $2 THEN COALESCE(suspended_at, now()) END,
                suspended_reason = $3,
                updated_at = now()
          WHERE id = $1
         RETURNING {ADMIN_COLUMNS}"
    )))
    .bind(org_id)
    .bind(reason.is_some())
    .bind(reason)
    .fetch_one(tx.conn())
    .await?)
}

/// How many members the org of this transaction has.
pub async fn member_count(tx: &mut TenantTx) -> DbResult<i64> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM memberships WHERE org_id = $1")
            .bind(org_id)
            .fetch_one(tx.conn())
            .await?,
    )
}

/// The org of this transaction as platform operators see it (with its suspension).
pub async fn get_admin(tx: &mut TenantTx) -> DbResult<OrgAdminRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ADMIN_COLUMNS} FROM orgs WHERE id = $1"
    )))
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?)
}

/// What deleting an org removed of its audit trail: how many entries, and the chain head they
/// ended at (sequence number 0 and no hash for an empty chain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedOrg {
    pub audit_entries: i64,
    pub audit_head_seq: i64,
    pub audit_head_hash: Option<Vec<u8>>,
}

/// Deletes the org of this transaction with everything it owns, its audit trail included
/// (through `gatehouse_delete_org`, the one way the services can remove audit entries of a whole
/// org). The caller records the deletion where it outlives the org (the platform trail).
pub async fn delete(tx: &mut TenantTx) -> DbResult<DeletedOrg> {
    let (audit_entries, audit_head_seq, audit_head_hash): (i64, i64, Option<Vec<u8>>) =
        sqlx::query_as("SELECT * FROM gatehouse_delete_org()")
            .fetch_one(tx.conn())
            .await?;
    Ok(DeletedOrg {
        audit_entries,
        audit_head_seq,
        audit_head_hash,
    })
}
