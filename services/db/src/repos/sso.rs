//! An org's OpenID Connect provider and the identities linked through it (tenant tables). The
//! client secret is stored sealed by the caller (AES-256-GCM with the keyring); this module never
//! sees it in clear.

use time::OffsetDateTime;

use gatehouse_core::ids::UserId;
use gatehouse_core::role::Role;

use crate::error::{DbError, DbResult};
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoProviderRow {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret_enc: Vec<u8>,
    pub allowed_domains: Vec<String>,
    pub jit_role: Role,
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What an admin configures.
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
    OffsetDateTime,
    OffsetDateTime,
);

const COLUMNS: &str =
    "issuer_url, client_id, client_secret_enc, allowed_domains, jit_role, enabled, created_at, updated_at";

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
        created_at: r.6,
        updated_at: r.7,
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

/// Creates or replaces the org's provider.
pub async fn upsert(tx: &mut TenantTx, cfg: &SsoProviderConfig<'_>) -> DbResult<SsoProviderRow> {
    let org_id = tx.org_id();
    let raw: Raw = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO org_sso_providers (org_id, issuer_url, client_id, client_secret_enc, allowed_domains,
                                        jit_role, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org_id) DO UPDATE SET
             issuer_url = EXCLUDED.issuer_url, client_id = EXCLUDED.client_id,
             client_secret_enc = EXCLUDED.client_secret_enc, allowed_domains = EXCLUDED.allowed_domains,
             jit_role = EXCLUDED.jit_role, enabled = EXCLUDED.enabled, updated_at = now()
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

/// The id of the user with this (normalised) email, if any. Users are global; SSO needs to know
/// whether an address is taken before provisioning it.
pub async fn find_user_id_by_email(tx: &mut TenantTx, email: &str) -> DbResult<Option<UserId>> {
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(tx.conn())
        .await?)
}

/// Creates an SSO-only user (no password; the provider verified the email), in the same
/// transaction as the identity link and membership that justify it.
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
