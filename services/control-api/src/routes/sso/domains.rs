//! The email domains an org proves it controls (admin or owner), so that its SSO may create
//! accounts for their addresses at once. The org adds a domain and gets a random value to publish
//! as a TXT record at `_gatehouse-challenge.<domain>`; a check looks the record up through the
//! operator's DNS servers (`sso.dns_nameservers`). Each org verifies with its own value: a
//! domain verified by one org is not thereby verified for another. A check that finds the record
//! gone takes the verification back.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::role::Role;
use gatehouse_core::secrets::random_token;
use gatehouse_db::repos::audit;
use gatehouse_db::repos::sso_domains::{self, DomainRow};

use super::providers::normalize_domain;
use crate::accounts::{audit_event, rate_limit};
use crate::auth::OrgMember;
use crate::dns::DnsError;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_domains)
        .service(add_domain)
        .service(verify_domain)
        .service(remove_domain);
}

/// The label under the domain where the record is published.
const CHALLENGE_LABEL: &str = "_gatehouse-challenge";
/// What the published value starts with.
const VALUE_PREFIX: &str = "gatehouse-domain-verification=";
const MAX_DOMAINS: usize = 50;
/// Checks per org per minute (each is one DNS question per configured server at most).
const CHECKS_PER_MINUTE: u32 = 20;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainIn {
    /// An email domain, e.g. `example.com` (exactly the part after `@`; subdomains are separate).
    pub domain: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainOut {
    pub domain: String,
    pub verified: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub verified_at: Option<OffsetDateTime>,
    /// Where to publish the TXT record.
    pub txt_name: String,
    /// The TXT record's value.
    pub txt_value: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_checked_at: Option<OffsetDateTime>,
    /// The outcome of the check this response answers (`POST .../verify` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<DomainCheckOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainCheckOut {
    /// `verified` (the record is there), `record_missing` (the lookup worked, the record is not
    /// there: any earlier verification is taken back) or `lookup_failed` (the DNS servers could
    /// not answer; the verification stays as it was).
    pub outcome: String,
    pub detail: String,
}

fn out(row: &DomainRow, check: Option<DomainCheckOut>) -> DomainOut {
    DomainOut {
        domain: row.domain.clone(),
        verified: row.verified_at.is_some(),
        verified_at: row.verified_at,
        txt_name: format!("{CHALLENGE_LABEL}.{}", row.domain),
        txt_value: format!("{VALUE_PREFIX}{}", row.challenge),
        created_at: row.created_at,
        last_checked_at: row.last_checked_at,
        check,
    }
}

/// The org's email domains and their verification (admin or owner).
#[utoipa::path(
    tag = "sso",
    operation_id = "sso_domains.list",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, body = Vec<DomainOut>),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
    )
)]
#[get("/orgs/{org}/sso/domains")]
async fn list_domains(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let rows = sso_domains::list(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(|r| out(r, None)).collect::<Vec<_>>()))
}

/// Adds an email domain to verify (admin or owner): the answer names the TXT record to publish.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso_domains.add",
    params(("org" = String, Path, description = "Org slug")),
    request_body = DomainIn,
    responses(
        (status = 201, body = DomainOut),
        (status = 400, description = "Not a domain name, or too many domains", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
        (status = 409, description = "The org already has this domain (code `domain_exists`)", body = Problem),
    )
)]
#[post("/orgs/{org}/sso/domains")]
async fn add_domain(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<DomainIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let domain = normalize_domain(&body.domain)
        .ok_or_else(|| ApiError::invalid("domain", "must be a domain name like example.com"))?;
    let mut tx = member.begin(&state).await?;
    if sso_domains::list(&mut tx).await?.len() >= MAX_DOMAINS {
        return Err(ApiError::invalid(
            "domain",
            format!("an org has at most {MAX_DOMAINS} domains"),
        ));
    }
    let row = sso_domains::add(&mut tx, &domain, &random_token(24))
        .await?
        .ok_or_else(|| ApiError::conflict("domain_exists", "the org already has this domain"))?;
    let event = audit_event(member.actor(), "sso.domain_added", &member.current.client)
        .target("domain", &domain)
        .details(serde_json::json!({"domain": domain}));
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(out(&row, None)))
}

/// Looks the domain's TXT record up now (admin or owner) and records the outcome: verified when
/// the org's value is published, no longer verified when the lookup shows it is not.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso_domains.verify",
    params(
        ("org" = String, Path, description = "Org slug"),
        ("domain" = String, Path, description = "The domain"),
    ),
    responses(
        (status = 200, description = "The check's outcome is in `check`", body = DomainOut),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, not a member, or the org has no such domain", body = Problem),
        (status = 429, description = "Too many checks for this org", body = Problem),
    )
)]
#[post("/orgs/{org}/sso/domains/{domain}/verify")]
async fn verify_domain(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let domain = normalize_domain(&path.1).ok_or(ApiError::NotFound("domain"))?;
    let mut tx = member.begin(&state).await?;
    let before = sso_domains::get(&mut tx, &domain)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    tx.commit().await?;
    rate_limit(
        &state,
        &format!("sso-domain-check:{}", member.org.id),
        CHECKS_PER_MINUTE,
        CHECKS_PER_MINUTE / 2,
    )
    .await?;
    let expected = format!("{VALUE_PREFIX}{}", before.challenge);
    let name = format!("{CHALLENGE_LABEL}.{domain}");
    let (found, check) = match state.dns.lookup_txt(&name).await {
        Ok(values) if values.iter().any(|v| v.trim() == expected) => (
            Some(true),
            DomainCheckOut {
                outcome: "verified".into(),
                detail: format!("{name} has the org's TXT record"),
            },
        ),
        Ok(values) => (
            Some(false),
            DomainCheckOut {
                outcome: "record_missing".into(),
                detail: format!(
                    "{name} has {} TXT record(s), none with the value {expected}",
                    values.len()
                ),
            },
        ),
        Err(e @ DnsError::InvalidName) => (
            Some(false),
            DomainCheckOut {
                outcome: "record_missing".into(),
                detail: e.to_string(),
            },
        ),
        Err(e) => (
            None,
            DomainCheckOut {
                outcome: "lookup_failed".into(),
                detail: e.to_string(),
            },
        ),
    };
    let mut tx = member.begin(&state).await?;
    let row = sso_domains::record_check(&mut tx, &domain, found)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    let action = match (before.verified_at.is_some(), row.verified_at.is_some()) {
        (false, true) => Some("sso.domain_verified"),
        (true, false) => Some("sso.domain_unverified"),
        _ => None,
    };
    if let Some(action) = action {
        let event = audit_event(member.actor(), action, &member.current.client)
            .target("domain", &domain)
            .details(serde_json::json!({"domain": domain, "txt_name": name}));
        audit::append(&mut tx, &[event]).await?;
    }
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out(&row, Some(check))))
}

/// Removes a domain (admin or owner): its addresses need a mailed confirmation again before SSO
/// creates or links their accounts. Existing links stay.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso_domains.remove",
    params(
        ("org" = String, Path, description = "Org slug"),
        ("domain" = String, Path, description = "The domain"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, not a member, or the org has no such domain", body = Problem),
    )
)]
#[delete("/orgs/{org}/sso/domains/{domain}")]
async fn remove_domain(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let domain = normalize_domain(&path.1).ok_or(ApiError::NotFound("domain"))?;
    let mut tx = member.begin(&state).await?;
    if !sso_domains::remove(&mut tx, &domain).await? {
        return Err(ApiError::NotFound("domain"));
    }
    let event = audit_event(member.actor(), "sso.domain_removed", &member.current.client)
        .target("domain", &domain)
        .details(serde_json::json!({"domain": domain}));
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
