//! Who is signing in at the authorization server: the console session cookie (shared with the
//! console, so one login serves both), and the CSRF tokens of the login and consent forms.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_core::secrets::{hmac_sha256, hmac_sha256_verify, random_token, token_hash};
use gatehouse_db::repos::sessions::{self, ABSOLUTE_TIMEOUT};
use gatehouse_db::repos::users::{self, UserRow};
use gatehouse_db::repos::{audit, sso};
use gatehouse_db::{Actor, ActorType, DbResult, GlobalTx, NewAuditEvent};

use crate::OAuthState;

/// How long a login or consent form stays valid.
pub const FORM_TTL_SECS: i64 = 600;

/// The signed-in user, and the session token (for the consent form's CSRF token).
pub struct SignedIn {
    pub user: UserRow,
    pub session_token: String,
    /// The org whose SSO signed the session in (`None`: a password session).
    pub sso_org: Option<OrgId>,
}

/// The user of the console session cookie, if it is live.
pub async fn current(state: &OAuthState, req: &HttpRequest) -> DbResult<Option<SignedIn>> {
    let Some(cookie) = req.cookie(state.accounts.session_cookie) else {
        return Ok(None);
    };
    let token = cookie.value().to_owned();
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let Some(session) = sessions::find_live(&mut tx, &token_hash(&token)).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let user = users::find_by_id(&mut tx, session.user_id).await?;
    tx.commit().await?;
    Ok(user.map(|user| SignedIn {
        user,
        session_token: token,
        sso_org: session.sso_org_id,
    }))
}

/// Whether a session may act in `org` as a member with `role`: always, unless the org enforces
/// SSO, where only sessions signed in through the org's own SSO may, and owners (break-glass).
pub fn sso_satisfied(org: OrgId, role: Role, enforced: bool, session_sso_org: Option<OrgId>) -> bool {
    !enforced || role == Role::Owner || session_sso_org == Some(org)
}

/// Where an SSO login for the org `slug` starts (a path on the control API), returning to the
/// local path `return_to` afterwards.
pub fn sso_start_path(slug: &str, return_to: Option<&str>) -> String {
    let mut path = format!("/api/v1/sso/{slug}/start");
    if let Some(to) = return_to {
        path.push_str("?return_to=");
        path.extend(url::form_urlencoded::byte_serialize(to.as_bytes()));
    }
    path
}

/// The check every password login makes (console and authorization server alike), after the
/// password was found right: `Some(slug)` of an org that enforces SSO and in which the user is
/// not an owner (the login is refused: sign in through that org's SSO). Owners of enforcing
/// orgs are let in (break-glass) and the login is recorded as `sso.break_glass_login` in each
/// such org's audit trail, in `tx`.
pub async fn check_password_login(
    tx: &mut GlobalTx,
    user: &UserRow,
    ip: Option<IpAddr>,
    user_agent: Option<&str>,
) -> DbResult<Option<String>> {
    let enforcing = sso::enforcing_memberships(tx, user.id).await?;
    if let Some(refusing) = enforcing.iter().find(|m| m.role != Role::Owner) {
        return Ok(Some(refusing.slug.clone()));
    }
    if !enforcing.is_empty() {
        let orgs: Vec<OrgId> = enforcing.iter().map(|m| m.org_id).collect();
        let actor = Actor {
            kind: ActorType::User,
            id: Some(user.id.to_string()),
            label: Some(user.email.clone()),
        };
        let event = NewAuditEvent::control(actor, "sso.break_glass_login")
            .target("user", user.id)
            .client(ip, user_agent.map(str::to_owned))
            .details(serde_json::json!({"method": "password"}));
        audit::append_to_orgs(tx, &orgs, &[event]).await?;
    }
    Ok(None)
}

/// Starts a console session for `user` and returns its cookie.
pub async fn start(
    state: &OAuthState,
    tx: &mut GlobalTx,
    user: &UserRow,
    ip: Option<IpAddr>,
    user_agent: Option<&str>,
) -> DbResult<Cookie<'static>> {
    let token = random_token(32);
    sessions::create(tx, user.id, &token_hash(&token), "password", ip, user_agent).await?;
    Ok(session_cookie(
        state.accounts.session_cookie,
        state.cfg.is_local(),
        token,
    ))
}

/// The console session cookie (one definition for the console and the authorization server):
/// HttpOnly, SameSite=Lax (so the SSO callback, a top-level navigation from the provider, can set
/// it and later navigations carry it), Secure outside local mode, living as long as the session.
pub fn session_cookie(name: &'static str, local: bool, token: String) -> Cookie<'static> {
    Cookie::build(name, token)
        .path("/")
        .http_only(true)
        .secure(!local)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            ABSOLUTE_TIMEOUT.whole_seconds(),
        ))
        .finish()
}

/// The pre-login cookie the login form's CSRF token is bound to (double submit): a cross-site
/// page can neither read it nor make the browser send it with a POST (SameSite=Lax).
pub fn login_cookie_name(local: bool) -> &'static str {
    if local {
        "gatehouse_oauth_login"
    } else {
        "__Host-gatehouse_oauth_login"
    }
}

pub fn new_login_cookie(state: &OAuthState) -> Cookie<'static> {
    Cookie::build(login_cookie_name(state.cfg.is_local()), random_token(24))
        .path("/")
        .http_only(true)
        .secure(!state.cfg.is_local())
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(FORM_TTL_SECS))
        .finish()
}

fn tag(state: &OAuthState, parts: &[&str]) -> Vec<u8> {
    hmac_sha256(&state.keys.oauth_state, parts.join("\u{0}").as_bytes()).to_vec()
}

/// The login form's token: bound to the login cookie, the request and the time it was issued.
pub fn login_csrf(state: &OAuthState, login_cookie: &str, query: &str, issued_at: i64) -> String {
    URL_SAFE_NO_PAD.encode(tag(
        state,
        &["login", login_cookie, query, &issued_at.to_string()],
    ))
}

/// The consent form's token: bound to the session, the request and the time it was issued.
pub fn consent_csrf(state: &OAuthState, session_token: &str, query: &str, issued_at: i64) -> String {
    URL_SAFE_NO_PAD.encode(tag(
        state,
        &["consent", session_token, query, &issued_at.to_string()],
    ))
}

/// Checks a form token made by `make`, and that the form is recent.
pub fn form_token_valid(
    state: &OAuthState,
    kind: &str,
    bound_to: &str,
    query: &str,
    issued_at: i64,
    presented: &str,
) -> bool {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // `issued_at` is the client's to send: no arithmetic on it can overflow.
    if issued_at > now.saturating_add(5) || now.saturating_sub(issued_at) > FORM_TTL_SECS {
        return false;
    }
    URL_SAFE_NO_PAD.decode(presented).is_ok_and(|t| {
        hmac_sha256_verify(
            &state.keys.oauth_state,
            [kind, bound_to, query, &issued_at.to_string()]
                .join("\u{0}")
                .as_bytes(),
            &t,
        )
    })
}
