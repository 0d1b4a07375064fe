//! Members of an org: list, change role, remove, leave, transfer ownership. An org always keeps
//! an owner: the owner role changes hands only by transfer, and an owner cannot be removed or
//! leave while they are the only one. Removal, leaving and every demotion (a transfer demotes
//! the previous owner) end the member's OAuth access in the org: grants revoked, codes
//! withdrawn, live access tokens refused by the dataplanes once the change is published. See
//! docs/permissions.md.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::UserId;
use gatehouse_core::role::Role;
use gatehouse_db::repos::audit;
use gatehouse_db::repos::memberships::{self, MemberRow};
use gatehouse_oauth::grants;

use crate::accounts::audit_event;
use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_members)
        .service(change_role)
        .service(remove_member)
        .service(leave_org)
        .service(transfer_ownership);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOut {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: OffsetDateTime,
}

impl From<&MemberRow> for MemberOut {
    fn from(m: &MemberRow) -> Self {
        Self {
            user_id: m.user_id,
            email: m.email.clone(),
            display_name: m.display_name.clone(),
            role: m.role,
            joined_at: m.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    /// `admin`, `developer` or `viewer` (ownership moves only by transfer).
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferIn {
    /// The member who becomes the owner; the current owner becomes an admin.
    pub user_id: UserId,
}

/// Every member with their role (any member).
#[utoipa::path(
    tag = "orgs",
    operation_id = "members.list",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<MemberOut>), (status = 404, description = "No such org, or not a member", body = Problem))
)]
#[get("/orgs/{org}/members")]
async fn list_members(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let members = memberships::list(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(members.iter().map(MemberOut::from).collect::<Vec<_>>()))
}

/// Changes a member's role (admin or owner; nobody acts on a member above their own role).
#[utoipa::path(
    tag = "orgs",
    operation_id = "members.change_role",
    params(("org" = String, Path, description = "Org slug"), ("user_id" = String, Path, description = "The member's user id")),
    request_body = RoleIn,
    responses(
        (status = 200, body = MemberOut),
        (status = 400, description = "Invalid role", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org or member", body = Problem),
        (status = 409, description = "Owner or own role", body = Problem),
    )
)]
#[patch("/orgs/{org}/members/{user_id}")]
async fn change_role(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, UserId)>,
    body: ValidJson<RoleIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let target_id = path.1;
    if body.role == Role::Owner {
        return Err(ApiError::invalid(
            "role",
            "ownership moves only by transfer (POST /orgs/{org}/transfer-ownership)",
        ));
    }
    let mut tx = member.begin(&state).await?;
    let target = memberships::get_for_update(&mut tx, target_id)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if target.user_id == member.current.user.id {
        return Err(ApiError::conflict(
            "own_role",
            "you cannot change your own role; ask another admin or owner",
        ));
    }
    if target.role == Role::Owner {
        return Err(ApiError::conflict(
            "owner_role",
            "the owner's role changes only through ownership transfer",
        ));
    }
    if !member.role.at_least(target.role) || !member.role.at_least(body.role) {
        return Err(ApiError::Forbidden(format!(
            "as {} you cannot change a {} into a {}",
            member.role, target.role, body.role
        )));
    }
    let mut version = None;
    if target.role != body.role {
        memberships::set_role(&mut tx, target_id, body.role).await?;
        let event = audit_event(member.actor(), "member.role_changed", &member.current.client)
            .target("user", target_id)
            .details(serde_json::json!({
                "email": target.email,
                "before": {"role": target.role},
                "after": {"role": body.role},
            }));
        audit::append(&mut tx, &[event]).await?;
        // Grants were consented with the old role's scopes: a demoted member authorizes again.
        if !body.role.at_least(target.role) {
            version = Some(
                grants::revoke_user_access(
                    &mut tx,
                    &state.cfg,
                    target_id,
                    false,
                    "member_demoted",
                    member.actor(),
                )
                .await?,
            );
        }
    }
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, version).await;
    let mut out = MemberOut::from(&target);
    out.role = body.role;
    Ok(HttpResponse::Ok().json(out))
}

/// Removes a member (admin or owner; not the owner, not above the caller's role).
#[utoipa::path(
    tag = "orgs",
    operation_id = "members.remove",
    params(("org" = String, Path, description = "Org slug"), ("user_id" = String, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org or member", body = Problem),
        (status = 409, description = "The owner cannot be removed; use leave for yourself", body = Problem),
    )
)]
#[delete("/orgs/{org}/members/{user_id}")]
async fn remove_member(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, UserId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let target_id = path.1;
    let mut tx = member.begin(&state).await?;
    let target = memberships::get_for_update(&mut tx, target_id)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if target.user_id == member.current.user.id {
        return Err(ApiError::conflict(
            "remove_self",
            "to leave the org, use POST /orgs/{org}/leave",
        ));
    }
    if target.role == Role::Owner {
        return Err(ApiError::conflict(
            "owner_cannot_be_removed",
            "the owner cannot be removed; ownership must be transferred first",
        ));
    }
    if !member.role.at_least(target.role) {
        return Err(ApiError::Forbidden(format!(
            "as {} you cannot remove a {}",
            member.role, target.role
        )));
    }
    memberships::remove(&mut tx, target_id).await?;
    let event = audit_event(member.actor(), "member.removed", &member.current.client)
        .target("user", target_id)
        .details(serde_json::json!({"email": target.email, "before": {"role": target.role}}));
    audit::append(&mut tx, &[event]).await?;
    let version = grants::revoke_user_access(
        &mut tx,
        &state.cfg,
        target_id,
        true,
        "member_removed",
        member.actor(),
    )
    .await?;
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, Some(version)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Leaves the org (any member; the only owner must transfer ownership first).
#[utoipa::path(
    tag = "orgs",
    operation_id = "members.leave",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 204, description = "Left the org"),
        (status = 404, description = "No such org, or not a member", body = Problem),
        (status = 409, description = "The only owner cannot leave (code `sole_owner`)", body = Problem),
    )
)]
#[post("/orgs/{org}/leave")]
async fn leave_org(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let me = member.current.user.id;
    let mut tx = member.begin(&state).await?;
    let owners = memberships::lock_owners(&mut tx).await?;
    if owners == [me] {
        return Err(ApiError::conflict(
            "sole_owner",
            "you are the only owner: transfer ownership to another member before leaving",
        ));
    }
    if !memberships::remove(&mut tx, me).await? {
        return Err(ApiError::NotFound("org"));
    }
    let event = audit_event(member.actor(), "member.left", &member.current.client)
        .target("user", me)
        .details(serde_json::json!({"before": {"role": member.role}}));
    audit::append(&mut tx, &[event]).await?;
    let version =
        grants::revoke_user_access(&mut tx, &state.cfg, me, true, "member_left", member.actor()).await?;
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, Some(version)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Makes another member the owner (owner only); the caller becomes an admin.
#[utoipa::path(
    tag = "orgs",
    operation_id = "members.transfer_ownership",
    params(("org" = String, Path, description = "Org slug")),
    request_body = TransferIn,
    responses(
        (status = 200, description = "The new owner", body = MemberOut),
        (status = 403, description = "Only the owner can transfer ownership", body = Problem),
        (status = 404, description = "No such org or member", body = Problem),
        (status = 409, description = "Transfer to yourself", body = Problem),
    )
)]
#[post("/orgs/{org}/transfer-ownership")]
async fn transfer_ownership(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<TransferIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Owner)?;
    let me = member.current.user.id;
    if body.user_id == me {
        return Err(ApiError::conflict("own_role", "you already own this org"));
    }
    let mut tx = member.begin(&state).await?;
    memberships::lock_owners(&mut tx).await?;
    let target = memberships::get_for_update(&mut tx, body.user_id)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    memberships::set_role(&mut tx, target.user_id, Role::Owner).await?;
    memberships::set_role(&mut tx, me, Role::Admin).await?;
    let event = audit_event(
        member.actor(),
        "org.ownership_transferred",
        &member.current.client,
    )
    .target("user", target.user_id)
    .details(serde_json::json!({
        "email": target.email,
        "before": {"owner": me, "new_owner_role": target.role},
        "after": {"owner": target.user_id, "previous_owner_role": Role::Admin},
    }));
    audit::append(&mut tx, &[event]).await?;
    // The previous owner is demoted to admin: their grants go like any demoted member's.
    let version =
        grants::revoke_user_access(&mut tx, &state.cfg, me, false, "member_demoted", member.actor()).await?;
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, Some(version)).await;
    let mut out = MemberOut::from(&target);
    out.role = Role::Owner;
    Ok(HttpResponse::Ok().json(out))
}
