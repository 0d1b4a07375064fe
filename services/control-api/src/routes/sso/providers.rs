//! Admin CRUD of the org's OpenID Connect provider (admin or owner). The client secret is sealed
//! with the keyring; the issuer is discovered before anything is stored.

use actix_web::{HttpResponse, delete, get, put, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::role::Role;
use gatehouse_db::repos::audit;
use gatehouse_db::repos::sso::{self, SsoProviderConfig, SsoProviderRow};

use super::{client_secret, login_url, redirect_uri, secret_context};
use crate::accounts::audit_event;
use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::oidc::Provider;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_sso).service(put_sso).service(delete_sso);
}

const MAX_DOMAINS: usize = 50;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoConfigIn {
    /// The provider's issuer; `{issuer_url}/.well-known/openid-configuration` must describe it.
    pub issuer_url: String,
    pub client_id: String,
    /// Required when SSO is first configured; omit to keep the stored secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Verified emails of these domains join the org on first SSO login: at once for domains
    /// the org verified (`/orgs/{org}/sso/domains`), after a mailed confirmation otherwise.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// The role given to members who join on first SSO login (`admin`, `developer`, `viewer`).
    #[serde(default = "default_jit_role")]
    pub jit_role: Role,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_jit_role() -> Role {
    Role::Developer
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SsoConfigOut {
    pub issuer_url: String,
    pub client_id: String,
    /// The secret is never returned.
    pub client_secret_set: bool,
    pub allowed_domains: Vec<String>,
    pub jit_role: Role,
    pub enabled: bool,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
    /// Where members start an SSO login.
    pub login_url: String,
    /// Whether the org requires SSO (`PUT /orgs/{org}/sso/enforcement`): members cannot sign in
    /// with a password, and password sessions are refused at the org (owners excepted).
    pub enforced: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub enforced_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

pub(super) fn config_out(state: &AppState, slug: &str, row: &SsoProviderRow) -> SsoConfigOut {
    SsoConfigOut {
        issuer_url: row.issuer_url.clone(),
        client_id: row.client_id.clone(),
        client_secret_set: !row.client_secret_enc.is_empty(),
        allowed_domains: row.allowed_domains.clone(),
        jit_role: row.jit_role,
        enabled: row.enabled,
        redirect_uri: redirect_uri(state),
        login_url: login_url(state, slug),
        enforced: row.enforced_at.is_some(),
        enforced_since: row.enforced_at,
        updated_at: row.updated_at,
    }
}

fn check_domains(raw: &[String]) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_DOMAINS {
        return Err(ApiError::invalid(
            "allowed_domains",
            format!("at most {MAX_DOMAINS} domains"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, d) in raw.iter().enumerate() {
        let d = normalize_domain(d).ok_or_else(|| {
            ApiError::invalid(
                format!("allowed_domains[{i}]"),
                "must be a domain name like example.com",
            )
        })?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// An email domain trimmed and lower-cased (`Acme.Test.` → `acme.test`), if it is a valid
/// domain name of at least two labels.
pub(super) fn normalize_domain(raw: &str) -> Option<String> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = d.len() >= 3
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some(d)
}

/// The org's SSO configuration (admin or owner).
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.get",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, body = SsoConfigOut),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, not a member, or SSO not configured", body = Problem),
    )
)]
#[get("/orgs/{org}/sso")]
async fn get_sso(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let row = sso::get(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(config_out(&state, &member.org.slug, &row)))
}

/// Configures (or replaces) the org's OIDC provider (admin or owner). The issuer is discovered
/// before anything is stored, so a wrong issuer URL is reported at once.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.put",
    params(("org" = String, Path, description = "Org slug")),
    request_body = SsoConfigIn,
    responses(
        (status = 200, body = SsoConfigOut),
        (status = 400, description = "Invalid input, or discovery at the issuer failed", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
        (status = 409, description = "Disabling SSO while the org enforces it (code `sso_enforced`)", body = Problem),
    )
)]
#[put("/orgs/{org}/sso")]
async fn put_sso(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<SsoConfigIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let issuer_url = body.issuer_url.trim().to_owned();
    let parsed = url::Url::parse(&issuer_url)
        .map_err(|_| ApiError::invalid("issuer_url", "must be an absolute URL"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() || issuer_url.len() > 2048 {
        return Err(ApiError::invalid(
            "issuer_url",
            "must not have a query or fragment",
        ));
    }
    state
        .oidc_http
        .check(&parsed)
        .await
        .map_err(|e| ApiError::invalid("issuer_url", e.to_string()))?;
    let client_id = body.client_id.trim();
    if client_id.is_empty() || client_id.len() > 512 || client_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "client_id",
            "must be 1 to 512 printable characters",
        ));
    }
    if body.jit_role == Role::Owner {
        return Err(ApiError::invalid(
            "jit_role",
            "must be admin, developer or viewer",
        ));
    }
    let domains = check_domains(&body.allowed_domains)?;
    let mut tx = member.begin(&state).await?;
    let before = sso::get(&mut tx).await?;
    if !body.enabled && before.as_ref().is_some_and(|b| b.enforced_at.is_some()) {
        return Err(enforced_conflict());
    }
    let secret = match (&body.client_secret, &before) {
        (Some(s), _) if !s.is_empty() && s.len() <= 4096 => s.clone(),
        (Some(_), _) => return Err(ApiError::invalid("client_secret", "must be 1 to 4096 characters")),
        (None, Some(existing)) => client_secret(&state, &mut tx, existing).await?,
        (None, None) => {
            return Err(ApiError::invalid(
                "client_secret",
                "is required when configuring SSO",
            ));
        }
    };
    Provider::discover(
        &state.oidc_http,
        &issuer_url,
        client_id,
        &secret,
        &redirect_uri(&state),
    )
    .await
    .map_err(|e| {
        tracing::info!(error = %e, "SSO discovery failed while configuring");
        ApiError::invalid(
            "issuer_url",
            "OpenID Connect discovery failed: the provider must serve \
                 {issuer_url}/.well-known/openid-configuration naming exactly this issuer",
        )
    })?;
    let sealed = state
        .keyring
        .seal(secret.as_bytes(), &secret_context(member.org.id));
    let row = sso::upsert(
        &mut tx,
        &SsoProviderConfig {
            issuer_url: &issuer_url,
            client_id,
            client_secret_enc: &sealed,
            allowed_domains: &domains,
            jit_role: body.jit_role,
            enabled: body.enabled,
        },
    )
    .await?;
    let summary = |r: &SsoProviderRow| {
        serde_json::json!({
            "issuer_url": r.issuer_url, "client_id": r.client_id, "allowed_domains": r.allowed_domains,
            "jit_role": r.jit_role, "enabled": r.enabled,
        })
    };
    let event = audit_event(member.actor(), "sso.configured", &member.current.client)
        .target("org", member.org.id)
        .details(serde_json::json!({
            "before": before.as_ref().map(summary),
            "after": summary(&row),
            "client_secret_changed": body.client_secret.is_some(),
        }));
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(config_out(&state, &member.org.slug, &row)))
}

/// Removes the org's SSO configuration and identity links (admin or owner). Members who only
/// ever signed in through SSO can still reset a password by email. Refused while the org
/// enforces SSO (`409 sso_enforced`).
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.delete",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, not a member, or SSO not configured", body = Problem),
        (status = 409, description = "The org enforces SSO (code `sso_enforced`)", body = Problem),
    )
)]
#[delete("/orgs/{org}/sso")]
async fn delete_sso(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let before = sso::get(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    if before.enforced_at.is_some() {
        return Err(enforced_conflict());
    }
    sso::delete(&mut tx).await?;
    let event = audit_event(member.actor(), "sso.removed", &member.current.client)
        .target("org", member.org.id)
        .details(
            serde_json::json!({"before": {"issuer_url": before.issuer_url, "client_id": before.client_id}}),
        );
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

fn enforced_conflict() -> ApiError {
    ApiError::conflict(
        "sso_enforced",
        "the org enforces SSO: switch enforcement off first (PUT /orgs/{org}/sso/enforcement)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            check_domains(&["Acme.Test".into(), "acme.test".into()]).unwrap(),
            vec!["acme.test"]
        );
        assert!(check_domains(&["nodot".into()]).is_err());
        assert!(check_domains(&["a..b".into()]).is_err());
        assert!(check_domains(&["*.acme.test".into()]).is_err());
    }
}
