//! Requiring SSO for an org (admin or owner). While it is on, members cannot sign in with a
//! password, sessions that did not come through the org's own provider are refused at the org's
//! routes and at its authorization requests, and owners keep a break-glass (their password still
//! works; each such login is audited). Switching it on revokes the OAuth grants of everyone but
//! the owners, so that access obtained with a password session ends.

use actix_web::{HttpResponse, put, web};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::role::Role;
use gatehouse_db::repos::{audit, oauth_codes, sso};
use gatehouse_oauth::grants::{self, Selection};

use super::providers::{SsoConfigOut, config_out};
use crate::accounts::audit_event;
use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(put_enforcement);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnforcementIn {
    /// Whether members must sign in through the org's SSO.
    pub enforced: bool,
}

/// Switches SSO enforcement on or off (admin or owner). Switching it on needs SSO configured and
/// enabled, and a caller who is an owner or signed in through the org's SSO (so that nobody locks
/// themselves out); it revokes every member's OAuth grants except the owners'.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.set_enforcement",
    params(("org" = String, Path, description = "Org slug")),
    request_body = EnforcementIn,
    responses(
        (status = 200, body = SsoConfigOut),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
        (status = 409, description = "SSO not configured or disabled (code `sso_not_configured`), or the caller's session did not come through the org's SSO (code `sso_session_required`)", body = Problem),
    )
)]
#[put("/orgs/{org}/sso/enforcement")]
async fn put_enforcement(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<EnforcementIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let before = sso::get(&mut tx).await?.filter(|p| p.enabled).ok_or_else(|| {
        ApiError::conflict(
            "sso_not_configured",
            "configure and enable the org's SSO first (PUT /orgs/{org}/sso)",
        )
    })?;
    let signed_in_through_it = member.current.session.sso_org_id == Some(member.org.id);
    if body.enforced && member.role != Role::Owner && !signed_in_through_it {
        return Err(ApiError::conflict(
            "sso_session_required",
            "sign in through the org's SSO first: with enforcement on, this session would be refused",
        ));
    }
    // Taking the provider row's lock first: authorization codes being issued now (they hold a
    // share lock on it) are committed before their withdrawal below.
    let row = sso::set_enforced(&mut tx, body.enforced)
        .await?
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    let mut version = None;
    if body.enforced && before.enforced_at.is_none() {
        oauth_codes::withdraw_unredeemed(&mut tx, None, true).await?;
        let revoked = grants::revoke(
            &mut tx,
            &state.cfg,
            &Selection {
                except_owners: true,
                ..Default::default()
            },
            "sso_enforced",
            member.actor(),
        )
        .await?;
        version = revoked.version;
    }
    if before.enforced_at.is_some() != body.enforced {
        let event = audit_event(member.actor(), "sso.enforcement_changed", &member.current.client)
            .target("org", member.org.id)
            .details(serde_json::json!({
                "before": {"enforced": before.enforced_at.is_some()},
                "after": {"enforced": body.enforced},
            }));
        audit::append(&mut tx, &[event]).await?;
    }
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, version).await;
    Ok(HttpResponse::Ok().json(config_out(&state, &member.org.slug, &row)))
}
