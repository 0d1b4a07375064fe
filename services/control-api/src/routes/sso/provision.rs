//! What a validated SSO identity may do in the org whose provider asserted it.
//!
//! - Linked already: it signs in (and rejoins, if it left, while its domain is allowed).
//! - Not linked, with a verified email in one of the org's allowed domains:
//!   - the org has verified the domain through DNS: the account is created, or the existing
//!     account with that address linked, and it signs in;
//!   - otherwise a link is mailed to the address, and the account is created or linked only when
//!     its owner follows it (`GET /sso/confirm` shows what they confirm, `POST /sso/confirm`
//!     does it and sends them back to the org's SSO to sign in).
//!
//! Both branches answer the same whether or not an account exists for the address: no
//! account-existence oracle.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::html::escape;
use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_core::secrets::token_hash;
use gatehouse_db::repos::sso::{self, SsoProviderRow};
use gatehouse_db::repos::sso_domains::{self, NewPendingLink};
use gatehouse_db::repos::{audit, memberships, orgs};
use gatehouse_db::{NewAuditEvent, OrgScope, TenantTx};
use gatehouse_mail::Mail;
use gatehouse_oauth::tokens;

use crate::accounts::{
    audit_event, email_domain, limit_mail_requests, normalize_email, send_mail_later, user_actor,
};
use crate::auth::ClientInfo;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ValidQuery, parse_query};
use crate::oidc::VerifiedIdentity;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(confirm_page).service(confirm);
}

/// What the identity's sign-in led to.
pub(super) enum Outcome {
    /// Start a session for this user.
    SignedIn(UserId),
    /// A confirmation link went to the address (or would have, had it been deliverable).
    MailSent,
}

pub(super) fn refused(detail: impl Into<String>) -> ApiError {
    ApiError::Forbidden(detail.into())
}

/// Decides for `identity`, asserted by the provider of the org of `tx`'s scope.
pub(super) async fn after_login(
    state: &AppState,
    org: OrgId,
    provider: &SsoProviderRow,
    identity: &VerifiedIdentity,
    return_to: &str,
    client: &ClientInfo,
) -> ApiResult<Outcome> {
    let verified_email = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified)
        .and_then(|e| normalize_email("email", e).ok());
    let domain_allowed = verified_email
        .as_deref()
        .is_some_and(|e| provider.allowed_domains.iter().any(|d| d == email_domain(e)));
    // The sealed login state proves this server started a login for this org.
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    if let Some(user) = sso::find_identity(&mut tx, &identity.issuer, &identity.subject).await? {
        if orgs::member_role(&mut tx, user).await?.is_none() {
            if !domain_allowed {
                return Err(refused(
                    "you are not a member of this org, and the provider did not assert a verified email \
                     address in one of the org's allowed domains",
                ));
            }
            let email = verified_email.as_deref().unwrap_or_default();
            let event = join(&mut tx, provider, user, email, client).await?;
            audit::append(&mut tx, &[event]).await?;
        }
        tx.commit().await?;
        return Ok(Outcome::SignedIn(user));
    }
    let Some(email) = verified_email.filter(|_| domain_allowed) else {
        return Err(refused(
            "this identity is not linked to a member, and the provider did not assert a verified email \
             address in one of the org's allowed domains",
        ));
    };
    let name: String = identity
        .name
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if sso_domains::is_verified(&mut tx, email_domain(&email)).await? {
        let user = link_and_join(
            &mut tx,
            provider,
            &Identity {
                issuer: &identity.issuer,
                subject: &identity.subject,
                email: &email,
                name: &name,
            },
            "verified_domain",
            client,
        )
        .await?;
        tx.commit().await?;
        return Ok(Outcome::SignedIn(user));
    }
    limit_mail_requests(state, "sso_link", client, &email).await?;
    let token = tokens::new_sso_link_token(org);
    let ttl = time::Duration::seconds(state.cfg.sso.link_ttl_secs as i64);
    sso_domains::add_pending_link(
        &mut tx,
        &NewPendingLink {
            token_hash: &token_hash(&token),
            issuer: &identity.issuer,
            subject: &identity.subject,
            email: &email,
            display_name: &name,
            return_to,
            ttl,
        },
    )
    .await?;
    let event = audit_event(user_actor_unknown(&email), "sso.link_requested", client)
        .details(serde_json::json!({"issuer": identity.issuer, "subject": identity.subject, "email": email}));
    audit::append(&mut tx, &[event]).await?;
    let org_row = orgs::get(&mut tx).await?;
    tx.commit().await?;
    let mut link = state.cfg.control_api.public_url.clone();
    link.set_path("/api/v1/sso/confirm");
    link.query_pairs_mut().clear().append_pair("token", &token);
    send_mail_later(
        state,
        email,
        Mail::SsoLinkConfirm {
            org_name: org_row.name,
            link: link.to_string(),
            expires_in_hours: (state.cfg.sso.link_ttl_secs / 3600).max(1) as u32,
        },
    );
    Ok(Outcome::MailSent)
}

/// The audit actor for an identity whose account is not said yet (the trail must not tell the
/// org's admins whether the address has an account before its owner confirms).
fn user_actor_unknown(email: &str) -> gatehouse_db::Actor {
    gatehouse_db::Actor {
        kind: gatehouse_db::ActorType::Anonymous,
        id: None,
        label: Some(email.to_owned()),
    }
}

/// An identity at the provider, with the address it asserted.
struct Identity<'a> {
    issuer: &'a str,
    subject: &'a str,
    email: &'a str,
    name: &'a str,
}

/// Links `identity` to the account with its address (created if there is none; an existing
/// account that never proved its address gets it proven, and loses a password whoever
/// pre-registered it set) and makes the account a member with the org's JIT role. Audited.
async fn link_and_join(
    tx: &mut TenantTx,
    provider: &SsoProviderRow,
    identity: &Identity<'_>,
    via: &str,
    client: &ClientInfo,
) -> ApiResult<UserId> {
    let (user, provisioned) = match sso::find_user_id_by_email(tx, identity.email).await? {
        Some(existing) => {
            sso::claim_unverified_account(tx, existing).await?;
            (existing, false)
        }
        None => (
            sso::create_sso_user(tx, identity.email, identity.name).await?,
            true,
        ),
    };
    if sso::find_identity(tx, identity.issuer, identity.subject)
        .await?
        .is_none()
    {
        sso::link_identity(tx, identity.issuer, identity.subject, user).await?;
    }
    sso_domains::drop_pending_links(tx, identity.issuer, identity.subject).await?;
    let mut events = vec![
        audit_event(user_actor(user, identity.email), "sso.identity_linked", client)
            .target("user", user)
            .details(serde_json::json!({
                "issuer": identity.issuer, "subject": identity.subject,
                "provisioned": provisioned, "via": via,
            })),
    ];
    if orgs::member_role(tx, user).await?.is_none() {
        events.push(join(tx, provider, user, identity.email, client).await?);
    }
    audit::append(tx, &events).await?;
    Ok(user)
}

/// Adds `user` with the org's JIT role; returns the audit event.
async fn join(
    tx: &mut TenantTx,
    provider: &SsoProviderRow,
    user: UserId,
    email: &str,
    client: &ClientInfo,
) -> ApiResult<NewAuditEvent> {
    memberships::add(tx, user, provider.jit_role).await?;
    // A new caller for the dataplane (hosted SQL contexts carry members' emails): the version
    // moves with the join; dataplanes pick it up when they reconcile.
    orgs::bump_config_version(tx).await?;
    Ok(audit_event(user_actor(user, email), "member.added", client)
        .target("user", user)
        .details(serde_json::json!({"via": "sso_jit", "after": {"role": provider.jit_role}})))
}

#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmForm {
    /// The token from the mailed link.
    pub token: String,
}

fn invalid_link() -> ApiError {
    ApiError::invalid("token", "the link is invalid, has expired or was already used")
}

/// The org a link token belongs to, if it is well formed.
fn org_of(token: &str) -> ApiResult<OrgId> {
    if token.len() > 256 {
        return Err(invalid_link());
    }
    tokens::org_of(token, tokens::SSO_LINK_PREFIX).ok_or_else(invalid_link)
}

/// The page the mailed link opens: what following it confirms, and a button that does it.
/// Opening the page changes nothing (mail scanners open links too).
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.confirm_page",
    params(ConfirmForm),
    responses(
        (status = 200, description = "An HTML page with the confirmation form", content_type = "text/html"),
        (status = 400, description = "The link is invalid, expired or used", body = Problem),
    )
)]
#[get("/sso/confirm")]
async fn confirm_page(state: web::Data<AppState>, query: ValidQuery<ConfirmForm>) -> ApiResult<HttpResponse> {
    let org = org_of(&query.token)?;
    // Possession of the mailed token is the right to look at its pending link.
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let link = sso_domains::find_pending_link(&mut tx, &token_hash(&query.token))
        .await?
        .ok_or_else(invalid_link)?;
    let org_row = orgs::get(&mut tx).await?;
    tx.commit().await?;
    let body = format!(
        "<h1>Confirm your email address</h1>\
         <p>The identity provider of the org <strong>{org}</strong> signed someone in as \
         <strong>{email}</strong>. Confirm that it was you: your Gatehouse account is then created, or \
         your existing account linked to that identity provider, and you continue signing in.</p>\
         <form method=\"post\" action=\"/api/v1/sso/confirm\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button type=\"submit\">Confirm and continue</button></form>\
         <p class=\"muted\">If this was not you, close this page: nothing changes.</p>",
        org = escape(&org_row.name),
        email = escape(&link.email),
        token = escape(&query.token),
    );
    Ok(page(StatusCode::OK, "Confirm your email address", &body))
}

/// A small HTML page with the headers every page carries (no framing, no caching, no script).
fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let mut builder = HttpResponseBuilder::new(status);
    gatehouse_oauth::pages::security_headers(
        &mut builder,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    builder.content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} · Gatehouse</title><style>body{{font-family:system-ui,sans-serif;max-width:34rem;\
         margin:4rem auto;padding:0 1rem}}.muted{{color:#667}}</style></head><body>{body}</body></html>",
        escape(title)
    ))
}

/// Follows the mailed link (once): creates the account or links the existing one, makes it a
/// member, and sends the browser on to the org's SSO, which now signs it in.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.confirm",
    request_body(content = ConfirmForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Confirmed: an HTML page that moves on to the org's SSO login (`Refresh` header, and a link)", content_type = "text/html"),
        (status = 400, description = "The link is invalid, expired or used", body = Problem),
        (status = 403, description = "The org no longer allows this identity to join", body = Problem),
        (status = 415, description = "Not a form", body = Problem),
    )
)]
#[post("/sso/confirm")]
async fn confirm(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> ApiResult<HttpResponse> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ApiError::UnsupportedMediaType);
    }
    let form: ConfirmForm = parse_query(
        std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("the form is not UTF-8".into()))?,
    )?;
    let client = ClientInfo::of(&req);
    let org = org_of(&form.token)?;
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let link = sso_domains::consume_pending_link(&mut tx, &token_hash(&form.token))
        .await?
        .ok_or_else(invalid_link)?;
    let provider = sso::get(&mut tx)
        .await?
        .filter(|p| p.enabled && p.allowed_domains.iter().any(|d| d == email_domain(&link.email)))
        .ok_or_else(|| refused("the org no longer lets this address join through its SSO"))?;
    link_and_join(
        &mut tx,
        &provider,
        &Identity {
            issuer: &link.issuer,
            subject: &link.subject,
            email: &link.email,
            name: &link.display_name,
        },
        "mail",
        &client,
    )
    .await?;
    let org_row = orgs::get(&mut tx).await?;
    tx.commit().await?;
    let next = gatehouse_oauth::session::sso_start_path(&org_row.slug, Some(&link.return_to));
    // A page that moves on by itself (`Refresh`), not a redirect: the org's SSO login redirects
    // to the identity provider, and browsers hold a form submission's whole redirect chain to the
    // page's `form-action 'self'`, so a 303 from here would stop at that hop.
    let body = format!(
        "<h1>Email address confirmed</h1>\
         <p>You continue signing in to <strong>{org}</strong> through its identity provider.</p>\
         <p><a href=\"{next}\">Continue</a></p>",
        org = escape(&org_row.name),
        next = escape(&next),
    );
    let mut response = page(StatusCode::OK, "Email address confirmed", &body);
    let refresh = header::HeaderValue::from_str(&format!("0;url={next}"))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("refresh header: {e}")))?;
    response.headers_mut().insert(header::REFRESH, refresh);
    Ok(response)
}
