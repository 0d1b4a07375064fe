//! Orgs: create, list mine, read, rename, settings, delete.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::repos::orgs::{self, OrgRow};
use gatehouse_db::repos::{audit, invoices, platform_audit, usage};
use gatehouse_db::{OrgScope, TenantTx, UserTx};

use crate::accounts::audit_event;
use crate::auth::{CurrentUser, OrgMember};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::routes::usage::InvoiceOut;
use crate::state::AppState;
use crate::validate;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_org)
        .service(list_orgs)
        .service(get_org)
        .service(update_org)
        .service(delete_org)
        .service(get_settings)
        .service(update_settings);
}

/// Slugs that would collide with routes of the public URLs.
const RESERVED_SLUGS: &[&str] = &[
    "api",
    "admin",
    "assets",
    "docs",
    "healthz",
    "internal",
    "login",
    "logout",
    "metrics",
    "oauth",
    "readyz",
    "signup",
    "sso",
    "static",
    "well-known",
    "www",
];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgIn {
    /// Lower-case letters, digits and inner hyphens, 1 to 40 characters; unique; appears in URLs.
    pub slug: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgDeleteIn {
    /// The org's slug, typed by the owner to confirm the deletion.
    pub confirm: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgSettingsPatch {
    /// Record tool-call arguments in the audit trail (otherwise only their hash).
    #[serde(default)]
    pub log_tool_arguments: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgOut {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub plan_id: String,
    /// The caller's role in the org.
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl OrgOut {
    pub fn new(org: &OrgRow, role: Role) -> Self {
        Self {
            id: org.id,
            slug: org.slug.clone(),
            name: org.name.clone(),
            plan_id: org.plan_id.clone(),
            role,
            created_at: org.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgSettingsOut {
    pub log_tool_arguments: bool,
    /// Configuration version published to dataplanes (increases with every change).
    pub config_version: i64,
}

fn check_slug(slug: &str) -> Result<(), ApiError> {
    let valid_chars = slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if slug.is_empty() || slug.len() > 40 || !valid_chars || slug.starts_with('-') || slug.ends_with('-') {
        return Err(ApiError::invalid(
            "slug",
            "must be 1 to 40 lower-case letters, digits or hyphens, not starting or ending with a hyphen",
        ));
    }
    if RESERVED_SLUGS.contains(&slug) {
        return Err(ApiError::invalid("slug", "is reserved; choose another"));
    }
    Ok(())
}

/// Creates an org; the caller becomes its owner.
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.create",
    request_body = OrgIn,
    responses(
        (status = 201, body = OrgOut),
        (status = 400, description = "Invalid input", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 409, description = "The slug is taken", body = Problem),
    )
)]
#[post("/orgs")]
async fn create_org(
    state: web::Data<AppState>,
    current: CurrentUser,
    body: ValidJson<OrgIn>,
) -> ApiResult<HttpResponse> {
    check_slug(&body.slug)?;
    let name = validate::name("name", &body.name)?;
    // Creating the org is what authorizes its scope.
    let scope = OrgScope::authorized(OrgId::new());
    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let org = orgs::create_with_owner(&mut tx, &body.slug, &name, current.user.id)
        .await
        .map_err(|e| match e.conflict_constraint() {
            Some("orgs_slug_key") => ApiError::conflict("slug_taken", "an org with this slug already exists"),
            _ => e.into(),
        })?;
    let event = audit_event(current.actor(), "org.created", &current.client)
        .target("org", org.id)
        .details(
            serde_json::json!({"after": {"slug": org.slug, "name": org.name}, "owner": current.user.id}),
        );
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(OrgOut::new(&org, Role::Owner)))
}

/// The orgs the caller belongs to, with their role in each.
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.list",
    responses((status = 200, body = Vec<OrgOut>), (status = 401, description = "Not signed in", body = Problem))
)]
#[get("/orgs")]
async fn list_orgs(state: web::Data<AppState>, current: CurrentUser) -> ApiResult<HttpResponse> {
    let mut tx = UserTx::begin(&state.db, current.user.id).await?;
    let mine = orgs::list_for_user(&mut tx).await?;
    tx.commit().await?;
    let out: Vec<OrgOut> = mine.iter().map(|m| OrgOut::new(&m.org, m.role)).collect();
    Ok(HttpResponse::Ok().json(out))
}

/// One org (any member).
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.get",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = OrgOut), (status = 404, description = "No such org, or not a member", body = Problem))
)]
#[get("/orgs/{org}")]
async fn get_org(member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(OrgOut::new(&member.org, member.role)))
}

/// Renames the org (admin or owner).
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.update",
    params(("org" = String, Path, description = "Org slug")),
    request_body = OrgPatch,
    responses(
        (status = 200, body = OrgOut),
        (status = 400, description = "Invalid input", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
    )
)]
#[patch("/orgs/{org}")]
async fn update_org(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<OrgPatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let mut org = orgs::get(&mut tx).await?;
    if let Some(name) = &body.name {
        let name = validate::name("name", name)?;
        let before = org.name.clone();
        org = orgs::update_name(&mut tx, &name).await?;
        let event = audit_event(member.actor(), "org.updated", &member.current.client)
            .target("org", org.id)
            .details(serde_json::json!({"before": {"name": before}, "after": {"name": org.name}}));
        audit::append(&mut tx, &[event]).await?;
    }
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(OrgOut::new(&org, member.role)))
}

/// Deletes the org (owner only) with everything it owns: servers, tools, endpoints, scopes,
/// tokens, service clients, OAuth grants, members and invitations, SSO, usage, invoices and its
/// audit trail. Its endpoints stop answering at once (every dataplane drops the org when it
/// learns of the change, within about a second), its tokens stop working, and its members lose
/// access; no other org changes. The platform trail keeps an `org.deleted` entry with the final
/// head of the org's audit chain (export the trail first to keep it) and what billing needs to
/// settle the account: the open period's billable calls and every invoice's totals. Refused
/// while the platform operator has the org suspended.
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.delete",
    params(("org" = String, Path, description = "Org slug")),
    request_body = OrgDeleteIn,
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`confirm` is not the org's slug", body = Problem),
        (status = 403, description = "Not the owner", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
        (status = 409, description = "The operator suspended the org (`org_suspended`)", body = Problem),
    )
)]
#[delete("/orgs/{org}")]
async fn delete_org(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<OrgDeleteIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Owner)?;
    if body.confirm != member.org.slug {
        return Err(ApiError::invalid(
            "confirm",
            format!(
                "type the org's slug ({}) to confirm the deletion",
                member.org.slug
            ),
        ));
    }
    let mut tx = member.begin(&state).await?;
    let org = orgs::get_admin(&mut tx).await?;
    if org.suspended_at.is_some() {
        return Err(ApiError::conflict(
            "org_suspended",
            "the platform operator suspended this org; it cannot be deleted until they resume it",
        ));
    }
    let members = orgs::member_count(&mut tx).await?;
    // What billing needs to settle the account once the org is gone: the open period's calls
    // and the invoices (totals, not lines).
    let period_start = usage::period_start_of(OffsetDateTime::now_utc());
    let period_calls = usage::period_calls(&mut tx, period_start).await?;
    // (`invoices::list` reads at most 1,000: 83 years of monthly invoices.)
    let invoices = invoices::list(&mut tx, 1000)
        .await?
        .into_iter()
        .map(InvoiceOut::of)
        .collect::<ApiResult<Vec<_>>>()?;
    // A version past the last, so that every dataplane refetches the org, finds it gone and
    // drops it.
    let version = orgs::bump_config_version(&mut tx).await?;
    let deleted = orgs::delete(&mut tx).await?;
    let event = audit_event(member.actor(), "org.deleted", &member.current.client)
        .target("org", org.id)
        .details(serde_json::json!({
            "org": {"slug": org.slug, "name": org.name, "plan_id": org.plan_id, "members": members},
            "audit": {
                "entries_deleted": deleted.audit_entries,
                "head_seq": deleted.audit_head_seq,
                "head_hash": deleted.audit_head_hash.as_deref().map(hex::encode),
            },
            "billing": {
                "period_start": period_start.to_string(),
                "period_calls": period_calls,
                "invoices": invoices,
            },
        }));
    let mut global = tx.into_global().await?;
    platform_audit::append(&mut global, Some(org.id), &event).await?;
    global.commit().await?;
    state
        .notifier
        .publish(ConfigChange {
            org_id: org.id,
            version,
        })
        .await;
    Ok(HttpResponse::NoContent().finish())
}

/// The org's settings (any member).
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.get_settings",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = OrgSettingsOut), (status = 404, description = "No such org, or not a member", body = Problem))
)]
#[get("/orgs/{org}/settings")]
async fn get_settings(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let settings = orgs::settings(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(OrgSettingsOut {
        log_tool_arguments: settings.log_tool_arguments,
        config_version: settings.config_version,
    }))
}

/// Changes the org's settings (admin or owner). Dataplanes pick the change up at once.
#[utoipa::path(
    tag = "orgs",
    operation_id = "orgs.update_settings",
    params(("org" = String, Path, description = "Org slug")),
    request_body = OrgSettingsPatch,
    responses(
        (status = 200, body = OrgSettingsOut),
        (status = 400, description = "Invalid input", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
    )
)]
#[patch("/orgs/{org}/settings")]
async fn update_settings(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<OrgSettingsPatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let before = orgs::settings(&mut tx).await?;
    let mut published = None;
    if let Some(value) = body.log_tool_arguments
        && value != before.log_tool_arguments
    {
        orgs::set_log_tool_arguments(&mut tx, value).await?;
        let version = orgs::bump_config_version(&mut tx).await?;
        let event = audit_event(member.actor(), "org.settings_changed", &member.current.client)
            .target("org", member.org.id)
            .details(serde_json::json!({
                "before": {"log_tool_arguments": before.log_tool_arguments},
                "after": {"log_tool_arguments": value},
            }));
        audit::append(&mut tx, &[event]).await?;
        published = Some(version);
    }
    let after = orgs::settings(&mut tx).await?;
    tx.commit().await?;
    if let Some(version) = published {
        state
            .notifier
            .publish(ConfigChange {
                org_id: member.org.id,
                version,
            })
            .await;
    }
    Ok(HttpResponse::Ok().json(OrgSettingsOut {
        log_tool_arguments: after.log_tool_arguments,
        config_version: after.config_version,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "acme", "acme-2", "a1b2"] {
            assert!(check_slug(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Acme", "a_b", "a.b", "api", &"x".repeat(41)] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
    }
}
