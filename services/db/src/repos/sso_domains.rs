//! Email domains an org proves it controls (DNS TXT challenge), and SSO identities waiting for
//! their address to be proven by a mailed link (tenant tables).

use time::OffsetDateTime;

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainRow {
    pub domain: String,
    /// The value the org publishes (public; random per org and domain).
    pub challenge: String,
    pub created_at: OffsetDateTime,
    pub verified_at: Option<OffsetDateTime>,
    pub last_checked_at: Option<OffsetDateTime>,
}

const DOMAIN_COLUMNS: &str = "domain, challenge, created_at, verified_at, last_checked_at";

/// Adds a domain (unverified); `None` when the org already has it.
pub async fn add(tx: &mut TenantTx, domain: &str, challenge: &str) -> DbResult<Option<DomainRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO org_sso_domains (org_id, domain, challenge) VALUES ($1, $2, $3)
         ON CONFLICT (org_id, domain) DO NOTHING
         RETURNING {DOMAIN_COLUMNS}"
    )))
    .bind(org_id)
    .bind(domain)
    .bind(challenge)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<DomainRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DOMAIN_COLUMNS} FROM org_sso_domains WHERE org_id = $1 ORDER BY domain"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, domain: &str) -> DbResult<Option<DomainRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DOMAIN_COLUMNS} FROM org_sso_domains WHERE org_id = $1 AND domain = $2"
    )))
    .bind(org_id)
    .bind(domain)
    .fetch_optional(tx.conn())
    .await?)
}

/// Records a check: `Some(true)` the record was found (verified from now, unless it already
/// was), `Some(false)` the lookup worked and the record is absent (no longer verified), `None`
/// the lookup failed (the verification stays as it was).
pub async fn record_check(
    tx: &mut TenantTx,
    domain: &str,
    found: Option<bool>,
) -> DbResult<Option<DomainRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE org_sso_domains
            SET last_checked_at = now(),
                verified_at = CASE WHEN $3::boolean IS NULL THEN verified_at
                                   WHEN $3 THEN coalesce(verified_at, now())
                              END
          WHERE org_id = $1 AND domain = $2
          RETURNING {DOMAIN_COLUMNS}"
    )))
    .bind(org_id)
    .bind(domain)
    .bind(found)
    .fetch_optional(tx.conn())
    .await?)
}

/// Removes a domain; false when the org did not have it.
pub async fn remove(tx: &mut TenantTx, domain: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query("DELETE FROM org_sso_domains WHERE org_id = $1 AND domain = $2")
            .bind(org_id)
            .bind(domain)
            .execute(tx.conn())
            .await?
            .rows_affected()
            == 1,
    )
}

/// Whether this org has verified `domain`.
pub async fn is_verified(tx: &mut TenantTx, domain: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM org_sso_domains
                         WHERE org_id = $1 AND domain = $2 AND verified_at IS NOT NULL)",
    )
    .bind(org_id)
    .bind(domain)
    .fetch_one(tx.conn())
    .await?)
}

/// An SSO identity waiting for its address to be proven.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingLinkRow {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub display_name: String,
    pub return_to: String,
    pub expires_at: OffsetDateTime,
}

const LINK_COLUMNS: &str = "issuer, subject, email, display_name, return_to, expires_at";

pub struct NewPendingLink<'a> {
    pub token_hash: &'a [u8],
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub return_to: &'a str,
    pub ttl: time::Duration,
}

/// Records a pending link (expired ones of the org are cleared on the way).
pub async fn add_pending_link(tx: &mut TenantTx, link: &NewPendingLink<'_>) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("DELETE FROM sso_pending_links WHERE org_id = $1 AND expires_at < now() - interval '1 day'")
        .bind(org_id)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO sso_pending_links (id, org_id, token_hash, issuer, subject, email, display_name, return_to, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(org_id)
    .bind(link.token_hash)
    .bind(link.issuer)
    .bind(link.subject)
    .bind(link.email)
    .bind(link.display_name)
    .bind(link.return_to)
    .bind(link.ttl.whole_seconds() as f64)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The live (unused, unexpired) pending link with this token hash.
pub async fn find_pending_link(tx: &mut TenantTx, token_hash: &[u8]) -> DbResult<Option<PendingLinkRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LINK_COLUMNS} FROM sso_pending_links
          WHERE org_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > now()"
    )))
    .bind(org_id)
    .bind(token_hash)
    .fetch_optional(tx.conn())
    .await?)
}

/// Uses the pending link with this token hash (once); `None` when it is unknown, used or
/// expired.
pub async fn consume_pending_link(tx: &mut TenantTx, token_hash: &[u8]) -> DbResult<Option<PendingLinkRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE sso_pending_links SET used_at = now()
          WHERE org_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > now()
          RETURNING {LINK_COLUMNS}"
    )))
    .bind(org_id)
    .bind(token_hash)
    .fetch_optional(tx.conn())
    .await?)
}

/// Withdraws the pending links of an identity (issuer and subject) once it is linked, so older
/// mails stop working.
pub async fn drop_pending_links(tx: &mut TenantTx, issuer: &str, subject: &str) -> DbResult<u64> {
    let org_id = tx.org_id();
    Ok(sqlx::query(
        "UPDATE sso_pending_links SET used_at = now()
          WHERE org_id = $1 AND issuer = $2 AND subject = $3 AND used_at IS NULL",
    )
    .bind(org_id)
    .bind(issuer)
    .bind(subject)
    .execute(tx.conn())
    .await?
    .rows_affected())
}
