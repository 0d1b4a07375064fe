//! An org's OpenID Connect provider, whether the org enforces it, and the identities linked
//! through it (tenant tables). The client secret is stored sealed by the caller (AES-256-GCM with
//! the keyring, the org in the associated data); this module never sees it in clear.

use time::OffsetDateTime;

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_core::role::Role;

use crate::error::{DbError, DbResult};
use crate::repos::memberships;
use crate::tenant::{GlobalTx, TenantTx};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoProviderRow {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret_enc: Vec<u8>,
    pub allowed_domains: Vec<String>,
    pub jit_role: Role,
    pub enabled: bool,
    /// Since when the org requires SSO (`None`: it does not).
    pub enforced_at: Option<OffsetDateTime>,
    /// Whether `client_secret_enc` is sealed with the org in its associated data (rows sealed
    /// before that was done are re-sealed on first use).
    pub client_secret_org_bound: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What an admin configures. The secret is sealed with the org in its associated data.
#[derive(Clone, Debug)]
pub struct SsoProviderConfig<'a> {
    pub issuer_url: &'a str,
    pub client_id: &'a str,
    pub client_secret_enc: &'a [u8],
    pub allowed_domains: &'a [String],
    pub jit_role: Role,
    pub enabled: bool,
}

type Raw = (
    String,
    String,
    Vec<u8>,
    Vec<String>,
    String,
    bool,
    Option<OffsetDateTime>,
    bool,
    OffsetDateTime,
    OffsetDateTime,
);

const COLUMNS: &str = "issuer_url, client_id, client_secret_enc, allowed_domains, jit_role, enabled, \
                       enforced_at, client_secret_org_bound, created_at, updated_at";

fn from_raw(r: Raw) -> DbResult<SsoProviderRow> {
    Ok(SsoProviderRow {
        issuer_url: r.0,
        client_id: r.1,
        client_secret_enc: r.2,
        allowed_domains: r.3,
        jit_role: r.4.parse().map_err(|_| DbError::CheckViolation {
            constraint: "org_sso_providers_jit_role_check".into(),
        })?,
        enabled: r.5,
        enforced_at: r.6,
        client_secret_org_bound: r.7,
        created_at: r.8,
        updated_at: r.9,
    })
}

pub async fn get(tx: &mut TenantTx) -> DbResult<Option<SsoProviderRow>> {
    let org_id = tx.org_id();
    let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM org_sso_providers WHERE org_id = $1"
    )))
    .bind(org_id)
    .fetch_optional(tx.conn())
    .await?;
    raw.map(from_raw).transpose()
}

/// Creates or replaces the org's provider (enforcement is left as it was).
pub async fn upsert(tx: &mut TenantTx, cfg: &SsoProviderConfig<'_>) -> DbResult<SsoProviderRow> {
    let org_id = tx.org_id();
    let raw: Raw = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO org_sso_providers (org_id, issuer_url, client_id, client_secret_enc, allowed_domains,
                                        jit_role, enabled, client_secret_org_bound)
         VALUES ($1, $2, $3, $4, $5, $6, $7, true)
         ON CONFLICT (org_id) DO UPDATE SET
             issuer_url = EXCLUDED.issuer_url, client_id = EXCLUDED.client_id,
             client_secret_enc = EXCLUDED.client_secret_enc, allowed_domains = EXCLUDED.allowed_domains,
             jit_role = EXCLUDED.jit_role, enabled = EXCLUDED.enabled, client_secret_org_bound = true,
             updated_at = now()
         RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(cfg.issuer_url)
    .bind(cfg.client_id)
    .bind(cfg.client_secret_enc)
    .bind(cfg.allowed_domains)
    .bind(cfg.jit_role.as_str())
    .bind(cfg.enabled)
    .fetch_one(tx.conn())
    .await?;
    from_raw(raw)
}

/// Replaces a secret sealed before secrets were bound to their org with its org-bound form. Only
/// a row still marked unbound is changed (a concurrent re-seal wins once).
pub async fn reseal_secret(tx: &mut TenantTx, sealed: &[u8]) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "UPDATE org_sso_providers SET client_secret_enc = $2, client_secret_org_bound = true
          WHERE org_id = $1 AND NOT client_secret_org_bound",
    )
    .bind(org_id)
    .bind(sealed)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}

/// Switches SSO enforcement on (keeping the original time if it was on) or off; `None` when
/// the org has no provider.
pub async fn set_enforced(tx: &mut TenantTx, enforced: bool) -> DbResult<Option<SsoProviderRow>> {
    let org_id = tx.org_id();
    let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE org_sso_providers
            SET enforced_at = CASE WHEN $2 THEN coalesce(enforced_at, now()) END, updated_at = now()
          WHERE org_id = $1
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(enforced)
    .fetch_optional(tx.conn())
    .await?;
    raw.map(from_raw).transpose()
}

/// A member's role and, when the org enforces SSO, since when (one read for the membership
/// check every org route makes).
pub async fn member_access(
    tx: &mut TenantTx,
    user: UserId,
) -> DbResult<Option<(Role, Option<OffsetDateTime>)>> {
    let org_id = tx.org_id();
    let row: Option<(String, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT m.role, p.enforced_at
           FROM memberships m LEFT JOIN org_sso_providers p ON p.org_id = m.org_id
          WHERE m.org_id = $1 AND m.user_id = $2",
    )
    .bind(org_id)
    .bind(user)
    .fetch_optional(tx.conn())
    .await?;
    row.map(|(role, enforced)| {
        let role = role.parse().map_err(|_| DbError::CheckViolation {
            constraint: "memberships_role_check".into(),
        })?;
        Ok((role, enforced))
    })
    .transpose()
}

/// Whether the org enforces SSO, holding a share lock on the provider row until the transaction
/// ends, so that switching enforcement on waits for this transaction (and sees what it wrote).
pub async fn enforced_locked(tx: &mut TenantTx) -> DbResult<bool> {
    let org_id = tx.org_id();
    let enforced: Option<Option<OffsetDateTime>> =
        sqlx::query_scalar("SELECT enforced_at FROM org_sso_providers WHERE org_id = $1 FOR SHARE")
            .bind(org_id)
            .fetch_optional(tx.conn())
            .await?;
    Ok(enforced.flatten().is_some())
}

/// An org that enforces SSO, as one of a user's memberships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcingMembership {
    pub org_id: OrgId,
    pub slug: String,
    pub role: Role,
}

/// The orgs `user` belongs to that enforce SSO (for the password-login check). The tenant
/// context is set per org and cleared again before returning.
pub async fn enforcing_memberships(tx: &mut GlobalTx, user: UserId) -> DbResult<Vec<EnforcingMembership>> {
    let mut out = Vec::new();
    for (org_id, role) in memberships::orgs_of_user(tx, user).await? {
        let conn = tx.conn();
        sqlx::query("SELECT set_config('app.org_id', $1, true)")
            .bind(org_id.to_string())
            .execute(&mut *conn)
            .await?;
        let slug: Option<String> = sqlx::query_scalar(
            "SELECT o.slug FROM org_sso_providers p JOIN orgs o ON o.id = p.org_id
              WHERE p.org_id = $1 AND p.enforced_at IS NOT NULL",
        )
        .bind(org_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(slug) = slug {
            out.push(EnforcingMembership { org_id, slug, role });
        }
    }
    sqlx::query("SELECT set_config('app.org_id', '', true)")
        .execute(tx.conn())
        .await?;
    Ok(out)
}

/// Removes the provider and every identity linked through it; false when none was configured.
pub async fn delete(tx: &mut TenantTx) -> DbResult<bool> {
    let org_id = tx.org_id();
    sqlx::query("DELETE FROM sso_identities WHERE org_id = $1")
        .bind(org_id)
        .execute(tx.conn())
        .await?;
    Ok(sqlx::query("DELETE FROM org_sso_providers WHERE org_id = $1")
        .bind(org_id)
        .execute(tx.conn())
        .await?
        .rows_affected()
        == 1)
}

/// The user linked to `(issuer, subject)` in this org, touching its last login time.
pub async fn find_identity(tx: &mut TenantTx, issuer: &str, subject: &str) -> DbResult<Option<UserId>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "UPDATE sso_identities SET last_login_at = now()
          WHERE org_id = $1 AND issuer = $2 AND subject = $3
          RETURNING user_id",
    )
    .bind(org_id)
    .bind(issuer)
    .bind(subject)
    .fetch_optional(tx.conn())
    .await?)
}

/// Links `(issuer, subject)` to `user` in this org.
pub async fn link_identity(tx: &mut TenantTx, issuer: &str, subject: &str, user: UserId) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("INSERT INTO sso_identities (org_id, issuer, subject, user_id) VALUES ($1, $2, $3, $4)")
        .bind(org_id)
        .bind(issuer)
        .bind(subject)
        .bind(user)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Removes every SSO link of `user` in this org; returns how many there were.
pub async fn unlink_user(tx: &mut TenantTx, user: UserId) -> DbResult<u64> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query("DELETE FROM sso_identities WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user)
            .execute(tx.conn())
            .await?
            .rows_affected(),
    )
}

/// The id of the user with this (normalised) email, if any. Users are global; SSO needs to know
/// whether an address is taken before provisioning it.
pub async fn find_user_id_by_email(tx: &mut TenantTx, email: &str) -> DbResult<Option<UserId>> {
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(tx.conn())
        .await?)
}

/// Creates an SSO-only user (no password) whose address is proven (a domain the org verified,
/// or a link mailed to it), in the same transaction as the identity link and membership that
/// justify it.
pub async fn create_sso_user(tx: &mut TenantTx, email: &str, display_name: &str) -> DbResult<UserId> {
    let id = UserId::new();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, display_name, email_verified_at)
         VALUES ($1, $2, NULL, $3, now())",
    )
    .bind(id)
    .bind(email)
    .bind(display_name)
    .execute(tx.conn())
    .await?;
    Ok(id)
}

/// An existing account linked through SSO whose address was never verified: the link proved
/// the address, so it is marked verified, and a password someone set when pre-registering the
/// address is dropped (the owner sets one by password reset).
pub async fn claim_unverified_account(tx: &mut TenantTx, user: UserId) -> DbResult<bool> {
    Ok(sqlx::query(
        "UPDATE users SET email_verified_at = now(), password_hash = NULL, updated_at = now()
          WHERE id = $1 AND email_verified_at IS NULL",
    )
    .bind(user)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}
