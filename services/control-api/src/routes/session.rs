//! Sign-up, email verification, login and logout, password reset.
//!
//! Sign-up, login and reset answer the same (status and body) for known and unknown emails;
//! login attempts are limited per account email and per client IP.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::UserId;
use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_db::repos::email_tokens::{self, Purpose};
use gatehouse_db::repos::sessions;
use gatehouse_db::repos::users::{self, UserRow};
use gatehouse_db::{AuditOutcome, GlobalTx, repos::audit};
use gatehouse_mail::Mail;

use crate::account_events;
use crate::accounts::{
    audit_event, check_display_name, check_password, console_link, console_url, create_session,
    limit_mail_requests, no_content_clearing_session, normalize_email, presented_session_token, rate_limit,
    send_mail_later, session_cookie, user_actor,
};
use crate::auth::{ClientInfo, CurrentUser, csrf_token};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::password;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(signup)
        .service(verify_email)
        .service(login)
        .service(get_session)
        .service(logout)
        .service(request_password_reset)
        .service(confirm_password_reset);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupIn {
    /// The account's email address; a verification link is sent to it.
    pub email: String,
    /// At least 8 and at most 256 characters.
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    /// The token from the emailed link.
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetIn {
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmIn {
    /// The token from the emailed link.
    pub token: String,
    pub new_password: String,
}

/// A message for the user, returned where the outcome must not reveal more.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageOut {
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    /// False for accounts that only ever signed in through SSO.
    pub has_password: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&UserRow> for UserOut {
    fn from(u: &UserRow) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            email_verified: u.email_verified_at.is_some(),
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
        }
    }
}

/// The signed-in user and the CSRF token to send as `X-CSRF-Token` on writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    pub user: UserOut,
    pub csrf_token: String,
    /// `password` or `sso`.
    pub auth_method: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

const SIGNUP_MESSAGE: &str =
    "Check your inbox: we sent a link to confirm the address. It expires in 24 hours.";
const RESET_MESSAGE: &str =
    "If an account exists for this address, we sent it a link to choose a new password.";

fn message(status: actix_web::http::StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(MessageOut {
            message: text.to_owned(),
        })
}

/// Sign up with email and password. Answers 202 with the same body whether or not the address
/// already has an account (an existing, verified account gets an email saying so instead of a
/// verification link).
#[utoipa::path(
    tag = "session",
    operation_id = "session.signup",
    request_body = SignupIn,
    responses(
        (status = 202, description = "A verification (or account-exists) email is on its way", body = MessageOut),
        (status = 400, description = "Invalid input", body = Problem),
        (status = 429, description = "Too many requests", body = Problem),
    )
)]
#[post("/signup")]
async fn signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ValidJson<SignupIn>,
) -> ApiResult<HttpResponse> {
    let client = ClientInfo::of(&req);
    let email = normalize_email("email", &body.email)?;
    check_password("password", &body.password)?;
    let display_name = check_display_name("display_name", body.display_name.as_deref().unwrap_or_default())?;
    limit_mail_requests(&state, "signup", &client, &email).await?;
    // Hash in every case so that known and unknown addresses take the same time.
    let hash = password::hash(body.password.clone()).await?;
    let mut tx = GlobalTx::begin(&state.db).await?;
    let mail = match users::find_by_email(&mut tx, &email).await? {
        Some(existing) if existing.email_verified_at.is_some() => Mail::AccountExists {
            login_link: console_url(&state, "/login"),
            reset_link: console_url(&state, "/reset-password"),
        },
        found => {
            let user = match found {
                // An unverified account is taken over by whoever proves the mailbox: the new
                // password replaces any password set by someone who pre-registered the address.
                Some(unverified) => {
                    users::set_password(&mut tx, unverified.id, &hash).await?;
                    unverified
                }
                None => users::create(&mut tx, &email, Some(&hash), &display_name, false).await?,
            };
            let token = random_token(32);
            email_tokens::issue(
                &mut tx,
                user.id,
                Purpose::VerifyEmail,
                &token_hash(&token),
                time::Duration::seconds(state.cfg.accounts.verification_ttl_secs as i64),
            )
            .await?;
            Mail::VerifyEmail {
                link: console_link(&state, "/verify-email", &token),
            }
        }
    };
    tx.commit().await?;
    send_mail_later(&state, email, mail);
    Ok(message(actix_web::http::StatusCode::ACCEPTED, SIGNUP_MESSAGE))
}

/// Confirms an email address with the token from the verification link (single use).
#[utoipa::path(
    tag = "session",
    operation_id = "session.verify_email",
    request_body = TokenIn,
    responses(
        (status = 200, description = "The address is verified; log in", body = MessageOut),
        (status = 400, description = "The link is invalid, expired or already used", body = Problem),
    )
)]
#[post("/account/verify-email")]
async fn verify_email(state: web::Data<AppState>, body: ValidJson<TokenIn>) -> ApiResult<HttpResponse> {
    let invalid = || ApiError::invalid("token", "the link is invalid, has expired or was already used");
    if body.token.is_empty() || body.token.len() > 256 {
        return Err(invalid());
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let user = email_tokens::consume(&mut tx, &token_hash(&body.token), Purpose::VerifyEmail)
        .await?
        .ok_or_else(invalid)?;
    users::mark_verified(&mut tx, user).await?;
    tx.commit().await?;
    Ok(message(
        actix_web::http::StatusCode::OK,
        "Your email address is verified. You can log in now.",
    ))
}

/// Logs in with email and password and sets the session cookie (a new session every time). The
/// response carries the CSRF token for writes. Wrong email and wrong password answer alike. A
/// member of an org that enforces SSO is refused (`403 sso_required`, naming the org's SSO
/// login), unless they own every such org (break-glass, audited).
#[utoipa::path(
    tag = "session",
    operation_id = "session.login",
    request_body = LoginIn,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = SessionOut),
        (status = 401, description = "Invalid email or password", body = Problem),
        (status = 403, description = "The email address is not verified yet, or an org of the user requires SSO (code `sso_required`)", body = Problem),
        (status = 429, description = "Too many attempts for this account or from this address", body = Problem),
    )
)]
#[post("/session")]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ValidJson<LoginIn>,
) -> ApiResult<HttpResponse> {
    let client = ClientInfo::of(&req);
    let email = normalize_email("email", &body.email)?;
    if body.password.is_empty() || body.password.chars().count() > password::MAX_LEN {
        return Err(ApiError::InvalidCredentials);
    }
    let limits = &state.cfg.accounts;
    if let Some(ip) = client.ip {
        rate_limit(
            &state,
            &format!("login:ip:{ip}"),
            limits.login_per_ip_per_minute,
            limits.login_per_ip_burst,
        )
        .await?;
    }
    rate_limit(
        &state,
        &format!("login:account:{email}"),
        limits.login_per_account_per_minute,
        limits.login_per_account_burst,
    )
    .await?;

    let mut tx = GlobalTx::begin(&state.db).await?;
    let user = users::find_by_email(&mut tx, &email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let valid = password::verify(body.password.clone(), stored).await;
    let user = match user {
        Some(user) if valid => user,
        other => {
            if let Some(known) = other {
                let event = audit_event(user_actor(known.id, &known.email), "user.login_failed", &client)
                    .target("user", known.id)
                    .outcome(AuditOutcome::Denied)
                    .details(serde_json::json!({"method": "password"}));
                audit::append_to_user_orgs(&mut tx, known.id, &[event]).await?;
            }
            tx.commit().await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    if user.email_verified_at.is_none() {
        return Err(ApiError::EmailNotVerified);
    }
    if let Some(org) = gatehouse_oauth::session::check_password_login(
        &mut tx,
        &user,
        client.ip,
        client.user_agent.as_deref(),
    )
    .await?
    {
        tx.commit().await?;
        return Err(ApiError::SsoRequired {
            login_url: crate::routes::sso::login_url(&state, &org),
            org,
        });
    }
    // Rotation: whatever session the browser held before is ended.
    if let Some(old) = presented_session_token(&state, &req)
        && let Some(previous) = sessions::find_live(&mut tx, &token_hash(&old)).await?
    {
        sessions::delete(&mut tx, previous.id).await?;
    }
    let session = create_session(&state, &mut tx, user.id, None, &client).await?;
    let event = audit_event(user_actor(user.id, &user.email), "user.login", &client)
        .target("user", user.id)
        .details(serde_json::json!({"method": "password", "session_id": session.row.id}));
    audit::append_to_user_orgs(&mut tx, user.id, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .cookie(session_cookie(&state, &session.token))
        .json(SessionOut {
            user: UserOut::from(&user),
            csrf_token: session.csrf_token,
            auth_method: session.row.auth_method,
            expires_at: session.row.expires_at,
        }))
}

/// The current session: who is signed in, and the CSRF token for writes.
#[utoipa::path(
    tag = "session",
    operation_id = "session.get",
    responses(
        (status = 200, body = SessionOut),
        (status = 401, description = "Not signed in", body = Problem),
    )
)]
#[get("/session")]
async fn get_session(state: web::Data<AppState>, current: CurrentUser) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(SessionOut {
            user: UserOut::from(&current.user),
            csrf_token: csrf_token(&state.keys.cookie, &current.session_token),
            auth_method: current.session.auth_method.clone(),
            expires_at: current.session.expires_at,
        }))
}

/// Logs out: ends this session and clears the cookie.
#[utoipa::path(
    tag = "session",
    operation_id = "session.logout",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Missing CSRF token", body = Problem),
    )
)]
#[delete("/session")]
async fn logout(state: web::Data<AppState>, current: CurrentUser) -> ApiResult<HttpResponse> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    sessions::delete(&mut tx, current.session.id).await?;
    let event = audit_event(current.actor(), "user.logout", &current.client)
        .target("user", current.user.id)
        .details(serde_json::json!({"session_id": current.session.id}));
    audit::append_to_user_orgs(&mut tx, current.user.id, &[event]).await?;
    tx.commit().await?;
    Ok(no_content_clearing_session(&state))
}

/// Asks for a password reset link. Answers 202 with the same body whether or not the address
/// has an account; only an existing account gets mail.
#[utoipa::path(
    tag = "session",
    operation_id = "session.request_password_reset",
    request_body = PasswordResetIn,
    responses(
        (status = 202, body = MessageOut),
        (status = 400, description = "Invalid input", body = Problem),
        (status = 429, description = "Too many requests", body = Problem),
    )
)]
#[post("/password-reset")]
async fn request_password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ValidJson<PasswordResetIn>,
) -> ApiResult<HttpResponse> {
    let client = ClientInfo::of(&req);
    let email = normalize_email("email", &body.email)?;
    limit_mail_requests(&state, "reset", &client, &email).await?;
    let mut tx = GlobalTx::begin(&state.db).await?;
    if let Some(user) = users::find_by_email(&mut tx, &email).await? {
        let token = random_token(32);
        email_tokens::issue(
            &mut tx,
            user.id,
            Purpose::ResetPassword,
            &token_hash(&token),
            time::Duration::seconds(state.cfg.accounts.reset_ttl_secs as i64),
        )
        .await?;
        tx.commit().await?;
        send_mail_later(
            &state,
            email,
            Mail::PasswordReset {
                link: console_link(&state, "/reset-password", &token),
            },
        );
    } else {
        tx.commit().await?;
    }
    Ok(message(actix_web::http::StatusCode::ACCEPTED, RESET_MESSAGE))
}

/// Sets a new password with the token from the reset link (single use). Ends every session of
/// the account and its OAuth access in every org, removes its SSO links; also confirms the email
/// address (the link proves the mailbox).
#[utoipa::path(
    tag = "session",
    operation_id = "session.confirm_password_reset",
    request_body = PasswordResetConfirmIn,
    responses(
        (status = 200, description = "Password changed; log in again", body = MessageOut),
        (status = 400, description = "Invalid token or password", body = Problem),
    )
)]
#[post("/password-reset/confirm")]
async fn confirm_password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ValidJson<PasswordResetConfirmIn>,
) -> ApiResult<HttpResponse> {
    let client = ClientInfo::of(&req);
    let invalid = || ApiError::invalid("token", "the link is invalid, has expired or was already used");
    if body.token.is_empty() || body.token.len() > 256 {
        return Err(invalid());
    }
    check_password("new_password", &body.new_password)?;
    let hash = password::hash(body.new_password.clone()).await?;
    let mut tx = GlobalTx::begin(&state.db).await?;
    let user_id = email_tokens::consume(&mut tx, &token_hash(&body.token), Purpose::ResetPassword)
        .await?
        .ok_or_else(invalid)?;
    let user = users::find_by_id(&mut tx, user_id).await?.ok_or_else(invalid)?;
    users::set_password(&mut tx, user.id, &hash).await?;
    users::mark_verified(&mut tx, user.id).await?;
    email_tokens::revoke_all(&mut tx, user.id, Purpose::ResetPassword).await?;
    let ended = sessions::delete_all_for_user(&mut tx, user.id, None).await?;
    let actor = user_actor(user.id, &user.email);
    let event = audit_event(actor.clone(), "user.password_reset", &client)
        .target("user", user.id)
        .details(serde_json::json!({"sessions_ended": ended}));
    audit::append_to_user_orgs(&mut tx, user.id, &[event]).await?;
    // Whoever held a session or a grant keeps nothing: OAuth access ends in every org, and SSO
    // links go (an identity provider that once linked the address signs in as it no more).
    let (tx, changes) =
        account_events::end_access_in_every_org(tx, &state.cfg, user.id, true, "password_reset", actor)
            .await?;
    tx.commit().await?;
    account_events::publish(&state, changes).await;
    Ok(message(
        actix_web::http::StatusCode::OK,
        "Your password was changed. Log in with the new password.",
    ))
}
