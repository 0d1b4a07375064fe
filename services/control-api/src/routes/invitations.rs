//! Invitations: an admin invites an email address with a role; the person signs in with that
//! address and accepts. Invitations expire and work once. The token is
//! `{org id, 32 hex}.{256-bit random}`; only its SHA-256 is stored, in the org's rows.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{InvitationId, OrgId};
use gatehouse_core::role::Role;
use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_db::repos::invitations::{self, InvitationRow};
use gatehouse_db::repos::{audit, memberships, orgs};
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_mail::Mail;

use crate::accounts::{audit_event, console_link, limit_mail_requests, normalize_email, send_mail_later};
use crate::auth::{CurrentUser, OrgMember};
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::routes::orgs::OrgOut;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_invitation)
        .service(list_invitations)
        .service(revoke_invitation)
        .service(accept_invitation);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationIn {
    pub email: String,
    /// `admin`, `developer` or `viewer`, at most the inviter's own role.
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationIn {
    /// The token from the invitation link.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationOut {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

impl From<&InvitationRow> for InvitationOut {
    fn from(i: &InvitationRow) -> Self {
        Self {
            id: i.id,
            email: i.email.clone(),
            role: i.role,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

fn new_token(org: OrgId) -> String {
    format!("{}.{}", org.as_uuid().simple(), random_token(32))
}

/// The org an invitation token names, if it is well formed.
fn token_org(token: &str) -> Option<OrgId> {
    let (org, secret) = token.split_once('.')?;
    if org.len() != 32 || secret.len() < 32 || secret.len() > 128 {
        return None;
    }
    uuid::Uuid::try_parse(org).ok().map(OrgId::from_uuid)
}

/// Invites an email address (admin or owner). Any pending invitation for the same address is
/// replaced; the link is mailed.
#[utoipa::path(
    tag = "orgs",
    operation_id = "invitations.create",
    params(("org" = String, Path, description = "Org slug")),
    request_body = InvitationIn,
    responses(
        (status = 201, body = InvitationOut),
        (status = 400, description = "Invalid input", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
        (status = 409, description = "Already a member, or no free seat on the org's plan (`seats_exhausted`)", body = Problem),
        (status = 429, description = "Too many invitations", body = Problem),
    )
)]
#[post("/orgs/{org}/invitations")]
async fn create_invitation(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<InvitationIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let email = normalize_email("email", &body.email)?;
    if body.role == Role::Owner {
        return Err(ApiError::invalid(
            "role",
            "invite as admin, developer or viewer; ownership moves only by transfer",
        ));
    }
    if !member.role.at_least(body.role) {
        return Err(ApiError::Forbidden(format!(
            "as {} you cannot invite a {}",
            member.role, body.role
        )));
    }
    limit_mail_requests(&state, "invite", &member.current.client, &email).await?;
    let ttl_secs = state.cfg.accounts.invitation_ttl_secs;
    let mut tx = member.begin(&state).await?;
    if memberships::is_member_email(&mut tx, &email).await? {
        return Err(ApiError::conflict(
            "already_member",
            "this address is already a member of the org",
        ));
    }
    if memberships::seats(&mut tx).await?.full_for_invitation() {
        return Err(ApiError::conflict(
            "seats_exhausted",
            "every seat of the org's plan is taken or promised to a pending invitation: remove a member or revoke an invitation, or ask the operator for a plan with more seats",
        ));
    }
    let token = new_token(member.org.id);
    let invitation = invitations::create(
        &mut tx,
        &email,
        body.role,
        &token_hash(&token),
        member.current.user.id,
        time::Duration::seconds(ttl_secs as i64),
    )
    .await?;
    let event = audit_event(member.actor(), "invitation.created", &member.current.client)
        .target("invitation", invitation.id)
        .details(serde_json::json!({"email": email, "role": body.role}));
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    let inviter = if member.current.user.display_name.is_empty() {
        member.current.user.email.clone()
    } else {
        format!(
            "{} ({})",
            member.current.user.display_name, member.current.user.email
        )
    };
    send_mail_later(
        &state,
        email,
        Mail::Invitation {
            org_name: member.org.name.clone(),
            inviter,
            role: body.role.to_string(),
            link: console_link(&state, "/invitations/accept", &token),
            expires_in_days: (ttl_secs.div_ceil(86_400)) as u32,
        },
    );
    Ok(HttpResponse::Created().json(InvitationOut::from(&invitation)))
}

/// Pending invitations (admin or owner).
#[utoipa::path(
    tag = "orgs",
    operation_id = "invitations.list",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, body = Vec<InvitationOut>),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
    )
)]
#[get("/orgs/{org}/invitations")]
async fn list_invitations(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let pending = invitations::list_pending(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(pending.iter().map(InvitationOut::from).collect::<Vec<_>>()))
}

/// Revokes a pending invitation (admin or owner).
#[utoipa::path(
    tag = "orgs",
    operation_id = "invitations.revoke",
    params(("org" = String, Path, description = "Org slug"), ("invitation_id" = String, Path, format = Uuid, description = "Invitation id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org or pending invitation", body = Problem),
    )
)]
#[delete("/orgs/{org}/invitations/{invitation_id}")]
async fn revoke_invitation(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, InvitationId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let revoked = invitations::revoke(&mut tx, path.1)
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    let event = audit_event(member.actor(), "invitation.revoked", &member.current.client)
        .target("invitation", revoked.id)
        .details(serde_json::json!({"email": revoked.email, "role": revoked.role}));
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invitation as the signed-in user, whose email must be the invited address.
#[utoipa::path(
    tag = "orgs",
    operation_id = "invitations.accept",
    request_body = AcceptInvitationIn,
    responses(
        (status = 200, description = "Joined; the org with the new role", body = OrgOut),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "The invitation is for another address", body = Problem),
        (status = 404, description = "Invalid, expired, revoked or used invitation", body = Problem),
        (status = 409, description = "Already a member, or no free seat on the org's plan (`seats_exhausted`)", body = Problem),
    )
)]
#[post("/invitations/accept")]
async fn accept_invitation(
    state: web::Data<AppState>,
    current: CurrentUser,
    body: ValidJson<AcceptInvitationIn>,
) -> ApiResult<HttpResponse> {
    let org_id = token_org(&body.token).ok_or(ApiError::NotFound("invitation"))?;
    // The scope only lets us look for the token's hash among this org's invitations; nothing is
    // read or changed unless the secret matches.
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org_id)).await?;
    let invitation = invitations::find_acceptable(&mut tx, &token_hash(&body.token))
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    if invitation.email != current.user.email {
        return Err(ApiError::Forbidden(
            "this invitation was sent to another email address: sign in with that address to accept it"
                .into(),
        ));
    }
    if orgs::member_role(&mut tx, current.user.id).await?.is_some() {
        return Err(ApiError::conflict(
            "already_member",
            "you are already a member of this org",
        ));
    }
    memberships::add(&mut tx, current.user.id, invitation.role).await?;
    invitations::mark_accepted(&mut tx, invitation.id, current.user.id).await?;
    let org = orgs::get(&mut tx).await?;
    let event = audit_event(current.actor(), "member.added", &current.client)
        .target("user", current.user.id)
        .details(serde_json::json!({
            "via": "invitation",
            "invitation_id": invitation.id,
            "email": current.user.email,
            "after": {"role": invitation.role},
        }));
    // A new member is a new caller the dataplane signs into hosted SQL contexts (email,
    // attributes): the org's configuration changes.
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(OrgOut::new(&org, invitation.role)))
}
