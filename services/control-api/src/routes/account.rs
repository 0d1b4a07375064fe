//! The signed-in user's own account: change password, delete the account.

use actix_web::{HttpResponse, delete, post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::role::Role;
use gatehouse_db::repos::email_tokens::{self, Purpose};
use gatehouse_db::repos::{audit, memberships, orgs, sessions, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx, UserTx};

use crate::account_events;
use crate::accounts::{audit_event, check_password, no_content_clearing_session};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::password;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(change_password).service(delete_account);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordIn {
    pub current_password: String,
    /// At least 8 and at most 256 characters.
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountIn {
    /// The current password; required for accounts that have one (SSO-only accounts send `{}`).
    #[serde(default)]
    pub password: Option<String>,
}

/// Changes the password. Every other session of the account ends (this one stays), and so does
/// its OAuth access in every org (grants revoked, live access tokens refused by the dataplanes).
#[utoipa::path(
    tag = "session",
    operation_id = "account.change_password",
    request_body = ChangePasswordIn,
    responses(
        (status = 204, description = "Password changed; other sessions ended"),
        (status = 400, description = "Invalid input or wrong current password", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Missing CSRF token", body = Problem),
    )
)]
#[post("/account/password")]
async fn change_password(
    state: web::Data<AppState>,
    current: CurrentUser,
    body: ValidJson<ChangePasswordIn>,
) -> ApiResult<HttpResponse> {
    check_password("new_password", &body.new_password)?;
    if current.user.password_hash.is_none() {
        return Err(ApiError::conflict(
            "no_password",
            "this account signs in through SSO and has no password; use password reset to set one",
        ));
    }
    if !password::verify(body.current_password.clone(), current.user.password_hash.clone()).await {
        return Err(ApiError::invalid(
            "current_password",
            "is not the current password",
        ));
    }
    let hash = password::hash(body.new_password.clone()).await?;
    let mut tx = GlobalTx::begin(&state.db).await?;
    users::set_password(&mut tx, current.user.id, &hash).await?;
    email_tokens::revoke_all(&mut tx, current.user.id, Purpose::ResetPassword).await?;
    let ended = sessions::delete_all_for_user(&mut tx, current.user.id, Some(current.session.id)).await?;
    let event = audit_event(current.actor(), "user.password_changed", &current.client)
        .target("user", current.user.id)
        .details(serde_json::json!({"other_sessions_ended": ended}));
    audit::append_to_user_orgs(&mut tx, current.user.id, &[event]).await?;
    let (tx, changes) = account_events::end_access_in_every_org(
        tx,
        &state.cfg,
        current.user.id,
        false,
        "password_changed",
        current.actor(),
    )
    .await?;
    tx.commit().await?;
    account_events::publish(&state, changes).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes the account, its sessions, memberships and OAuth grants (its live access tokens are
/// refused by the dataplanes). Refused while the user is the only owner of an org: transfer
/// ownership first.
#[utoipa::path(
    tag = "session",
    operation_id = "account.delete",
    request_body = DeleteAccountIn,
    responses(
        (status = 204, description = "Account deleted; the session cookie is cleared"),
        (status = 400, description = "Wrong or missing password", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 409, description = "The user is the only owner of an org (code `sole_owner`)", body = Problem),
    )
)]
#[delete("/account")]
async fn delete_account(
    state: web::Data<AppState>,
    current: CurrentUser,
    body: ValidJson<DeleteAccountIn>,
) -> ApiResult<HttpResponse> {
    if current.user.password_hash.is_some() {
        let given = body
            .password
            .clone()
            .ok_or_else(|| ApiError::invalid("password", "is required to delete an account that has one"))?;
        if !password::verify(given, current.user.password_hash.clone()).await {
            return Err(ApiError::invalid("password", "is not the current password"));
        }
    }
    let mut utx = UserTx::begin(&state.db, current.user.id).await?;
    let mine = orgs::list_for_user(&mut utx).await?;
    utx.commit().await?;
    let mut sole: Vec<String> = Vec::new();
    for m in mine.iter().filter(|m| m.role == Role::Owner) {
        // The user is an owner here, which is what allows looking at the org's owners.
        let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(m.org.id)).await?;
        let owners = memberships::lock_owners(&mut tx).await?;
        tx.commit().await?;
        if owners.len() <= 1 {
            sole.push(m.org.slug.clone());
        }
    }
    if !sole.is_empty() {
        return Err(ApiError::conflict(
            "sole_owner",
            format!(
                "you are the only owner of {}: transfer ownership to another member first",
                sole.join(", ")
            ),
        ));
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let event = audit_event(current.actor(), "user.deleted", &current.client)
        .target("user", current.user.id)
        .details(serde_json::json!({"email": current.user.email}));
    audit::append_to_user_orgs(&mut tx, current.user.id, &[event]).await?;
    // Before the memberships and grants go with the account, the dataplanes learn that its live
    // access tokens are void.
    let (mut tx, changes) = account_events::end_access_in_every_org(
        tx,
        &state.cfg,
        current.user.id,
        false,
        "account_deleted",
        current.actor(),
    )
    .await?;
    users::delete(&mut tx, current.user.id).await?;
    tx.commit().await?;
    account_events::publish(&state, changes).await;
    Ok(no_content_clearing_session(&state))
}
