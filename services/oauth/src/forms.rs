//! The login and consent forms of the authorization endpoint. Each POST carries the raw
//! authorization request (`q`), which goes through the same validation as `GET /authorize`.

use actix_web::cookie::Cookie;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use gatehouse_core::snapshot::Limit;
use gatehouse_db::repos::{audit, orgs, users};
use gatehouse_db::{AuditOutcome, GlobalTx, NewAuditEvent, OrgScope, TenantTx};

use crate::authorize::{Rejection, issue_code, login_response, member_actor, see_other, validate};
use crate::{OAuthState, scopes, session};

#[derive(Deserialize)]
pub struct LoginForm {
    q: String,
    t: i64,
    csrf: String,
    email: String,
    password: String,
}

/// `POST /authorize/login`.
pub async fn login(
    state: web::Data<OAuthState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    match login_inner(&state, &req, form.into_inner()).await {
        Ok(r) => r,
        Err(rejection) => rejection.respond(&state),
    }
}

async fn login_inner(
    state: &OAuthState,
    req: &HttpRequest,
    form: LoginForm,
) -> Result<HttpResponse, Rejection> {
    let v = validate(state, &form.q, gatehouse_http::client_ip(req)).await?;
    let email = form.email.trim().to_lowercase();
    let cookie_name = session::login_cookie_name(state.cfg.is_local());
    let csrf_ok = req
        .cookie(cookie_name)
        .is_some_and(|c| session::form_token_valid(state, "login", c.value(), &v.query, form.t, &form.csrf));
    if !csrf_ok {
        return Ok(login_response(
            state,
            &v,
            &email,
            Some("The sign-in form expired. Please sign in again."),
        ));
    }
    let info = gatehouse_http::ClientInfo::of(req);
    let per_minute = state.cfg.oauth.login_attempts_per_minute.max(1);
    let limit = Limit {
        per_minute,
        burst: per_minute,
    };
    let ip_key = format!(
        "oauth-login:ip:{}",
        info.ip.map(|i| i.to_string()).unwrap_or_default()
    );
    for key in [ip_key, format!("oauth-login:email:{email}")] {
        let decision = state.rate_limiter.check(&key, limit).await;
        if !decision.allowed {
            let message = format!(
                "Too many sign-in attempts. Try again in {} seconds.",
                decision.retry_after.as_secs().max(1)
            );
            let mut response = login_response(state, &v, &email, Some(&message));
            *response.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
            return Ok(response);
        }
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let user = users::find_by_email(&mut tx, &email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let valid = (state.accounts.verify_password)(form.password, stored).await;
    let user = match user {
        Some(u) if valid => u,
        _ => {
            tx.commit().await?;
            tracing::info!("authorization server sign-in failed");
            return Ok(login_response(
                state,
                &v,
                &email,
                Some("Wrong email or password."),
            ));
        }
    };
    if user.email_verified_at.is_none() {
        tx.commit().await?;
        return Ok(login_response(
            state,
            &v,
            &email,
            Some("Verify your email address first: follow the link we sent you, then sign in again."),
        ));
    }
    if let Some(org) =
        session::check_password_login(&mut tx, &user, info.ip, info.user_agent.as_deref()).await?
    {
        tx.commit().await?;
        let message = format!(
            "The organization {org} requires single sign-on: sign in through its identity provider, not with a password."
        );
        return Ok(login_response(state, &v, &email, Some(&message)));
    }
    let session_cookie = session::start(state, &mut tx, &user, info.ip, info.user_agent.as_deref()).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "signed in at the authorization server");
    let mut response = see_other(&format!("/authorize?{}", v.query));
    let _ = response.add_cookie(&session_cookie);
    let mut expired = Cookie::new(cookie_name, "");
    expired.set_path("/");
    expired.make_removal();
    let _ = response.add_cookie(&expired);
    Ok(response)
}

#[derive(Deserialize)]
pub struct ConsentForm {
    q: String,
    t: i64,
    csrf: String,
    decision: String,
}

/// `POST /authorize/consent`.
pub async fn consent(
    state: web::Data<OAuthState>,
    req: HttpRequest,
    form: web::Form<ConsentForm>,
) -> HttpResponse {
    match consent_inner(&state, &req, form.into_inner()).await {
        Ok(r) => r,
        Err(rejection) => rejection.respond(&state),
    }
}

async fn consent_inner(
    state: &OAuthState,
    req: &HttpRequest,
    form: ConsentForm,
) -> Result<HttpResponse, Rejection> {
    let v = validate(state, &form.q, gatehouse_http::client_ip(req)).await?;
    let Some(signed_in) = session::current(state, req).await? else {
        return Ok(login_response(
            state,
            &v,
            "",
            Some("Your session ended. Please sign in again."),
        ));
    };
    if !session::form_token_valid(
        state,
        "consent",
        &signed_in.session_token,
        &v.query,
        form.t,
        &form.csrf,
    ) {
        return Err(Rejection::Page {
            title: "Form expired",
            message:
                "This approval form expired or did not come from this site. Start again from the application."
                    .into(),
        });
    }
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(v.org.id)).await?;
    let role = orgs::member_role(&mut tx, signed_in.user.id).await?;
    let Some(role) = role else {
        tx.commit().await?;
        return Err(v.reject(
            "access_denied",
            "the signed-in user is not a member of the endpoint's organization",
        ));
    };
    if form.decision != "approve" {
        let info = gatehouse_http::ClientInfo::of(req);
        audit::append(
            &mut tx,
            &[
                NewAuditEvent::control(member_actor(&signed_in.user), "oauth.consent_denied")
                    .target("endpoint", v.endpoint.id)
                    .outcome(AuditOutcome::Denied)
                    .client(info.ip, info.user_agent)
                    .details(json!({"client_id": v.client.client_id, "client_name": v.client.client_name})),
            ],
        )
        .await?;
        tx.commit().await?;
        return Err(v.reject("access_denied", "the user denied the request"));
    }
    tx.commit().await?;
    let (granted, _) = scopes::for_role(v.requested.as_ref(), &v.endpoint_scopes, role);
    let location = issue_code(state, req, &v, &signed_in, role, &granted, true).await?;
    Ok(see_other(&location))
}
