//! Shared pieces of the account, org and SSO routes: input normalisation, console sessions and
//! their cookies, rate limits, audit events, and mail sent after commit.

use actix_web::HttpResponse;
use actix_web::cookie::Cookie;

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_core::snapshot::Limit;
use gatehouse_db::repos::sessions::{self, SessionRow};
use gatehouse_db::{Actor, ActorType, GlobalTx, NewAuditEvent};
use gatehouse_mail::Mail;

use crate::auth::{ClientInfo, csrf_token, session_cookie_name};
use crate::error::ApiError;
use crate::state::AppState;

/// Trims and lower-cases an email address and checks its shape (one `@`, non-empty parts, a dot
/// in the domain, no spaces or control characters, at most 254 characters).
pub fn normalize_email(field: &str, raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let invalid = || ApiError::invalid(field, "must be an email address like name@example.com");
    if email.len() < 3 || email.len() > 254 {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let bad_char = |c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\')
    };
    if local.is_empty()
        || local.len() > 64
        || domain.len() < 3
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || email.chars().any(bad_char)
    {
        return Err(invalid());
    }
    Ok(email)
}

/// The domain part of a normalised email.
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

/// Checks a display name: at most 200 characters, no control characters.
pub fn check_display_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be at most 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Checks a new password against the policy, naming `field`.
pub fn check_password(field: &str, password: &str) -> Result<(), ApiError> {
    crate::password::check_policy(password).map_err(|m| ApiError::invalid(field, m))
}

/// A console session just created: the cookie to set and the CSRF token to hand out.
pub struct NewSession {
    pub row: SessionRow,
    pub token: String,
    pub csrf_token: String,
}

/// Creates a session for `user` in `tx`: signed in through `sso_org`'s SSO, or with a password
/// (`None`). A new random token every time: logging in always rotates the session (no fixation).
pub async fn create_session(
    state: &AppState,
    tx: &mut GlobalTx,
    user: UserId,
    sso_org: Option<OrgId>,
    client: &ClientInfo,
) -> Result<NewSession, ApiError> {
    let token = random_token(32);
    let (ip, agent) = (client.ip, client.user_agent.as_deref());
    let row = match sso_org {
        Some(org) => sessions::create_sso(tx, user, &token_hash(&token), org, ip, agent).await?,
        None => sessions::create(tx, user, &token_hash(&token), "password", ip, agent).await?,
    };
    let csrf = csrf_token(&state.keys.cookie, &token);
    Ok(NewSession {
        row,
        token,
        csrf_token: csrf,
    })
}

/// The console session cookie for `token` (defined once, in the authorization server's session
/// module, which reads the same cookie).
pub fn session_cookie(state: &AppState, token: &str) -> Cookie<'static> {
    let local = state.cfg.is_local();
    gatehouse_oauth::session::session_cookie(session_cookie_name(local), local, token.to_owned())
}

pub fn clear_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = session_cookie(state, "");
    cookie.make_removal();
    cookie
}

/// The session token presented by the request's cookie, if any.
pub fn presented_session_token(state: &AppState, req: &actix_web::HttpRequest) -> Option<String> {
    req.cookie(session_cookie_name(state.cfg.is_local()))
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= 128)
}

/// Counts one request against `key`; refuses with 429 and Retry-After when over `limit`.
pub async fn rate_limit(state: &AppState, key: &str, per_minute: u32, burst: u32) -> Result<(), ApiError> {
    let decision = state.rate_limiter.check(key, Limit { per_minute, burst }).await;
    if decision.allowed {
        Ok(())
    } else {
        let secs = decision.retry_after.as_secs() + u64::from(decision.retry_after.subsec_nanos() > 0);
        Err(ApiError::RateLimited {
            retry_after_secs: secs.max(1),
        })
    }
}

/// The limit on mail-sending requests (sign-up, reset), per client IP and per target email.
pub async fn limit_mail_requests(
    state: &AppState,
    kind: &str,
    client: &ClientInfo,
    email: &str,
) -> Result<(), ApiError> {
    let a = &state.cfg.accounts;
    if let Some(ip) = client.ip {
        rate_limit(
            state,
            &format!("mail:{kind}:ip:{ip}"),
            a.mail_requests_per_minute,
            a.mail_requests_burst,
        )
        .await?;
    }
    rate_limit(
        state,
        &format!("mail:{kind}:email:{email}"),
        a.mail_requests_per_minute,
        a.mail_requests_burst,
    )
    .await
}

/// An audit event by `actor` with the request's client details.
pub fn audit_event(actor: Actor, action: &str, client: &ClientInfo) -> NewAuditEvent {
    NewAuditEvent::control(actor, action).client(client.ip, client.user_agent.clone())
}

/// The audit actor for a user known by id and email.
pub fn user_actor(id: UserId, email: &str) -> Actor {
    Actor {
        kind: ActorType::User,
        id: Some(id.to_string()),
        label: Some(email.to_owned()),
    }
}

/// Sends `mail` to `to` in the background, after the response: delivery time must not reveal
/// whether an account exists, and a slow SMTP server must not hold requests. Failures are logged
/// (without the message, which holds a secret link); the user can ask again.
pub fn send_mail_later(state: &AppState, to: String, mail: Mail) {
    let mailer = state.mailer.clone();
    actix_web::rt::spawn(async move {
        if let Err(err) = mailer.send(&to, &mail).await {
            tracing::error!(template = mail.template_name(), error = %err, "sending mail failed");
        }
    });
}

/// A link to a console page of the public URL, e.g. `link(state, "/verify-email", token)`.
pub fn console_link(state: &AppState, path: &str, token: &str) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path(path);
    url.query_pairs_mut().clear().append_pair("token", token);
    url.to_string()
}

/// A console page of the public URL, without query.
pub fn console_url(state: &AppState, path: &str) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path(path);
    url.set_query(None);
    url.to_string()
}

/// A 204 with the session cookie removed.
pub fn no_content_clearing_session(state: &AppState) -> HttpResponse {
    HttpResponse::NoContent()
        .cookie(clear_session_cookie(state))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("email", "  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "a",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@example..com",
            "a@.example.com",
            "a@example.com.",
            "<a>@example.com",
        ] {
            assert!(normalize_email("email", bad).is_err(), "{bad}");
        }
        assert_eq!(email_domain("a@acme.test"), "acme.test");
    }
}
