//! Org single sign-on through the org's OpenID Connect provider.
//!
//! Admins configure the provider (`/orgs/{org}/sso`; the client secret is sealed with the
//! keyring). Members log in at `GET /sso/{org}/start?return_to=/path`: Gatehouse redirects to the
//! provider with state, nonce and PKCE (S256), keeps them in a sealed, short-lived cookie, and on
//! `GET /sso/callback` validates everything, links or provisions the user, creates the console
//! session and redirects to `return_to` (a local path). [`start_sso_login`] is the same start step
//! for other flows (the OAuth authorization endpoint uses it as its login step).
//!
//! Provisioning: an identity already linked logs in. Otherwise the provider must assert a
//! verified email in one of the org's allowed domains; a new Gatehouse user is created for it and
//! joins with the org's JIT role. An address that already has a Gatehouse account is never linked
//! automatically (that would let any org's provider take over accounts that exist elsewhere); its
//! owner signs in with their password.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_db::repos::sso::{self, SsoProviderConfig, SsoProviderRow};
use gatehouse_db::repos::{audit, memberships, orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};

use crate::accounts::{
    audit_event, create_session, email_domain, normalize_email, session_cookie, user_actor,
};
use crate::auth::{ClientInfo, OrgMember};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::oidc::{OidcError, Provider};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_sso)
        .service(put_sso)
        .service(delete_sso)
        .service(sso_start)
        .service(sso_callback);
}

/// Context string binding sealed client secrets to their use.
const SECRET_CONTEXT: &str = "org_sso_providers.client_secret";
/// Context string of the sealed login-state cookie.
const STATE_CONTEXT: &str = "sso-login-state";
const MAX_DOMAINS: usize = 50;

fn state_cookie_name(local: bool) -> &'static str {
    if local {
        "gatehouse_sso"
    } else {
        "__Host-gatehouse_sso"
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoConfigIn {
    /// The provider's issuer; `{issuer_url}/.well-known/openid-configuration` must describe it.
    pub issuer_url: String,
    pub client_id: String,
    /// Required when SSO is first configured; omit to keep the stored secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Verified emails of these domains join the org on first SSO login.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// The role given to members who join on first SSO login (`admin`, `developer`, `viewer`).
    #[serde(default = "default_jit_role")]
    pub jit_role: Role,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_jit_role() -> Role {
    Role::Developer
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SsoConfigOut {
    pub issuer_url: String,
    pub client_id: String,
    /// The secret is never returned.
    pub client_secret_set: bool,
    pub allowed_domains: Vec<String>,
    pub jit_role: Role,
    pub enabled: bool,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
    /// Where members start an SSO login.
    pub login_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StartQuery {
    /// A local path (with optional query) to return to after login; defaults to `/`.
    #[serde(default)]
    pub return_to: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CallbackQuery {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// What the sealed cookie remembers between start and callback.
#[derive(Debug, Serialize, Deserialize)]
struct LoginState {
    org: OrgId,
    issuer: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    expires_at: i64,
}

fn redirect_uri(state: &AppState) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path("/api/v1/sso/callback");
    url.set_query(None);
    url.to_string()
}

fn login_url(state: &AppState, slug: &str) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path(&format!("/api/v1/sso/{slug}/start"));
    url.set_query(None);
    url.to_string()
}

fn config_out(state: &AppState, slug: &str, row: &SsoProviderRow) -> SsoConfigOut {
    SsoConfigOut {
        issuer_url: row.issuer_url.clone(),
        client_id: row.client_id.clone(),
        client_secret_set: !row.client_secret_enc.is_empty(),
        allowed_domains: row.allowed_domains.clone(),
        jit_role: row.jit_role,
        enabled: row.enabled,
        redirect_uri: redirect_uri(state),
        login_url: login_url(state, slug),
        updated_at: row.updated_at,
    }
}

/// A `return_to` that can only lead back into Gatehouse: an absolute path (optionally with a
/// query), no scheme, no host, no backslashes or control characters.
pub fn check_return_to(raw: Option<&str>) -> Result<String, ApiError> {
    let raw = raw.unwrap_or("/");
    let invalid = || ApiError::invalid("return_to", "must be a local path starting with a single /");
    if raw.is_empty() {
        return Ok("/".into());
    }
    if raw.len() > 2048
        || !raw.starts_with('/')
        || raw.starts_with("//")
        || raw.contains('\\')
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid());
    }
    let base = url::Url::parse("https://gatehouse.invalid/").expect("static URL");
    let joined = base.join(raw).map_err(|_| invalid())?;
    if joined.host_str() != Some("gatehouse.invalid") || joined.scheme() != "https" {
        return Err(invalid());
    }
    let mut out = joined.path().to_owned();
    if let Some(q) = joined.query() {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

fn check_domains(raw: &[String]) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_DOMAINS {
        return Err(ApiError::invalid(
            "allowed_domains",
            format!("at most {MAX_DOMAINS} domains"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, d) in raw.iter().enumerate() {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = d.len() >= 3
            && d.len() <= 253
            && d.contains('.')
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(ApiError::invalid(
                format!("allowed_domains[{i}]"),
                "must be a domain name like example.com",
            ));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The org's SSO configuration (admin or owner).
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.get",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, body = SsoConfigOut),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, not a member, or SSO not configured", body = Problem),
    )
)]
#[get("/orgs/{org}/sso")]
async fn get_sso(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let row = sso::get(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(config_out(&state, &member.org.slug, &row)))
}

/// Configures (or replaces) the org's OIDC provider (admin or owner). The issuer is discovered
/// before anything is stored, so a wrong issuer URL is reported at once.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.put",
    params(("org" = String, Path, description = "Org slug")),
    request_body = SsoConfigIn,
    responses(
        (status = 200, body = SsoConfigOut),
        (status = 400, description = "Invalid input, or discovery at the issuer failed", body = Problem),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, or not a member", body = Problem),
    )
)]
#[put("/orgs/{org}/sso")]
async fn put_sso(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<SsoConfigIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let issuer_url = body.issuer_url.trim().to_owned();
    let parsed = url::Url::parse(&issuer_url)
        .map_err(|_| ApiError::invalid("issuer_url", "must be an absolute URL"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() || issuer_url.len() > 2048 {
        return Err(ApiError::invalid(
            "issuer_url",
            "must not have a query or fragment",
        ));
    }
    state
        .oidc_http
        .check(&parsed)
        .await
        .map_err(|e| ApiError::invalid("issuer_url", e.to_string()))?;
    let client_id = body.client_id.trim();
    if client_id.is_empty() || client_id.len() > 512 || client_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "client_id",
            "must be 1 to 512 printable characters",
        ));
    }
    if body.jit_role == Role::Owner {
        return Err(ApiError::invalid(
            "jit_role",
            "must be admin, developer or viewer",
        ));
    }
    let domains = check_domains(&body.allowed_domains)?;
    let mut tx = member.begin(&state).await?;
    let before = sso::get(&mut tx).await?;
    let secret = match (&body.client_secret, &before) {
        (Some(s), _) if !s.is_empty() && s.len() <= 4096 => s.clone(),
        (Some(_), _) => return Err(ApiError::invalid("client_secret", "must be 1 to 4096 characters")),
        (None, Some(existing)) => String::from_utf8(
            state
                .keyring
                .open(&existing.client_secret_enc, SECRET_CONTEXT)
                .map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("stored SSO secret cannot be opened: {e}"))
                })?,
        )
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored SSO secret is not UTF-8")))?,
        (None, None) => {
            return Err(ApiError::invalid(
                "client_secret",
                "is required when configuring SSO",
            ));
        }
    };
    Provider::discover(
        &state.oidc_http,
        &issuer_url,
        client_id,
        &secret,
        &redirect_uri(&state),
    )
    .await
    .map_err(|e| {
        tracing::info!(error = %e, "SSO discovery failed while configuring");
        ApiError::invalid(
            "issuer_url",
            "OpenID Connect discovery failed: the provider must serve \
                 {issuer_url}/.well-known/openid-configuration naming exactly this issuer",
        )
    })?;
    let sealed = state.keyring.seal(secret.as_bytes(), SECRET_CONTEXT);
    let row = sso::upsert(
        &mut tx,
        &SsoProviderConfig {
            issuer_url: &issuer_url,
            client_id,
            client_secret_enc: &sealed,
            allowed_domains: &domains,
            jit_role: body.jit_role,
            enabled: body.enabled,
        },
    )
    .await?;
    let summary = |r: &SsoProviderRow| {
        serde_json::json!({
            "issuer_url": r.issuer_url, "client_id": r.client_id, "allowed_domains": r.allowed_domains,
            "jit_role": r.jit_role, "enabled": r.enabled,
        })
    };
    let event = audit_event(member.actor(), "sso.configured", &member.current.client)
        .target("org", member.org.id)
        .details(serde_json::json!({
            "before": before.as_ref().map(summary),
            "after": summary(&row),
            "client_secret_changed": body.client_secret.is_some(),
        }));
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(config_out(&state, &member.org.slug, &row)))
}

/// Removes the org's SSO configuration and identity links (admin or owner). Members who only
/// ever signed in through SSO can still reset a password by email.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.delete",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Role too low", body = Problem),
        (status = 404, description = "No such org, not a member, or SSO not configured", body = Problem),
    )
)]
#[delete("/orgs/{org}/sso")]
async fn delete_sso(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let before = sso::get(&mut tx)
        .await?
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    sso::delete(&mut tx).await?;
    let event = audit_event(member.actor(), "sso.removed", &member.current.client)
        .target("org", member.org.id)
        .details(
            serde_json::json!({"before": {"issuer_url": before.issuer_url, "client_id": before.client_id}}),
        );
    audit::append(&mut tx, &[event]).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts an SSO login for the org: redirects to its provider. No session needed.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.start",
    params(("org" = String, Path, description = "Org slug"), StartQuery),
    responses(
        (status = 302, description = "To the identity provider"),
        (status = 400, description = "Invalid return_to", body = Problem),
        (status = 404, description = "No such org, or SSO not enabled for it", body = Problem),
        (status = 502, description = "The provider could not be reached", body = Problem),
    )
)]
#[get("/sso/{org}/start")]
async fn sso_start(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> ApiResult<HttpResponse> {
    start_sso_login(&state, &path, query.return_to.as_deref()).await
}

/// Starts an SSO login for the org `org_slug` and answers with the redirect to its provider.
/// After a successful login the browser is sent to `return_to` (validated as a local path) with a
/// console session. Used by `GET /sso/{org}/start` and by the OAuth authorization endpoint.
pub async fn start_sso_login(
    state: &AppState,
    org_slug: &str,
    return_to: Option<&str>,
) -> ApiResult<HttpResponse> {
    let return_to = check_return_to(return_to)?;
    let mut global = GlobalTx::begin(&state.db).await?;
    let org = orgs::find_by_slug(&mut global, org_slug)
        .await?
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    global.commit().await?;
    // Reading an org's (non-secret) SSO settings to start a login is public by design: anyone
    // may try to sign in to an org through its provider.
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org.id)).await?;
    let provider_row = sso::get(&mut tx)
        .await?
        .filter(|p| p.enabled)
        .ok_or(ApiError::NotFound("SSO configuration"))?;
    tx.commit().await?;
    let provider = discover(state, &provider_row).await?;
    let start = provider.authorize();
    let login = LoginState {
        org: org.id,
        issuer: provider_row.issuer_url.clone(),
        state: start.state,
        nonce: start.nonce,
        pkce_verifier: start.pkce_verifier,
        return_to,
        expires_at: OffsetDateTime::now_utc().unix_timestamp() + state.cfg.accounts.sso_login_ttl_secs as i64,
    };
    let sealed = state.keyring.seal(
        &serde_json::to_vec(&login).map_err(|e| ApiError::Internal(e.into()))?,
        STATE_CONTEXT,
    );
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, start.url.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state_cookie(state, &URL_SAFE_NO_PAD.encode(sealed), false))
        .finish())
}

fn state_cookie(state: &AppState, value: &str, removal: bool) -> Cookie<'static> {
    let local = state.cfg.is_local();
    let mut cookie = Cookie::build(state_cookie_name(local), value.to_owned())
        .path("/")
        .http_only(true)
        .secure(!local)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            state.cfg.accounts.sso_login_ttl_secs as i64,
        ))
        .finish();
    if removal {
        cookie.make_removal();
    }
    cookie
}

async fn discover(state: &AppState, row: &SsoProviderRow) -> ApiResult<Provider> {
    let secret = state
        .keyring
        .open(&row.client_secret_enc, SECRET_CONTEXT)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored SSO secret cannot be opened: {e}")))?;
    let secret =
        String::from_utf8(secret).map_err(|_| ApiError::Internal(anyhow::anyhow!("SSO secret not UTF-8")))?;
    Provider::discover(
        &state.oidc_http,
        &row.issuer_url,
        &row.client_id,
        &secret,
        &redirect_uri(state),
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "SSO discovery failed");
        ApiError::Upstream("the org's identity provider could not be reached; try again later".into())
    })
}

fn sso_refused(detail: impl Into<String>) -> ApiError {
    ApiError::Forbidden(detail.into())
}

/// The provider's redirect back: validates state (against the sealed cookie), redeems the code
/// with the PKCE verifier, validates the ID token, links or provisions the user, starts the
/// console session and redirects to `return_to`.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.callback",
    params(CallbackQuery),
    responses(
        (status = 302, description = "Logged in; to return_to with the session cookie"),
        (status = 400, description = "Missing or mismatched state, expired login, or provider error", body = Problem),
        (status = 403, description = "The identity may not sign in to this org", body = Problem),
        (status = 409, description = "The email already has a Gatehouse account (code `sso_account_exists`)", body = Problem),
    )
)]
#[get("/sso/callback")]
async fn sso_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> ApiResult<HttpResponse> {
    let client = ClientInfo::of(&req);
    let login = read_login_state(&state, &req)?;
    let returned_state = query
        .state
        .as_deref()
        .ok_or_else(|| ApiError::invalid("state", "is missing"))?;
    if !gatehouse_core::secrets::constant_time_eq(returned_state.as_bytes(), login.state.as_bytes()) {
        return Err(ApiError::invalid(
            "state",
            "does not match this browser's login; start again",
        ));
    }
    if let Some(error) = &query.error {
        let description = query.error_description.as_deref().unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "the identity provider refused the login: {}{}{}",
            error.chars().take(100).collect::<String>(),
            if description.is_empty() { "" } else { ": " },
            description.chars().take(300).collect::<String>()
        )));
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| ApiError::invalid("code", "is missing"))?;

    // The sealed state proves this server started a login for this org.
    let scope = OrgScope::authorized(login.org);
    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let provider_row = sso::get(&mut tx)
        .await?
        .filter(|p| p.enabled && p.issuer_url == login.issuer)
        .ok_or_else(|| sso_refused("SSO is no longer enabled for this org"))?;
    tx.commit().await?;
    let provider = discover(&state, &provider_row).await?;
    let identity = provider
        .finish(&state.oidc_http, code, &login.pkce_verifier, &login.nonce)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, org_id = %login.org, "SSO login refused");
            match e {
                OidcError::InvalidIdToken(_) | OidcError::NoIdToken => {
                    ApiError::BadRequest(format!("SSO login failed: {e}"))
                }
                OidcError::Exchange(_) => ApiError::BadRequest(
                    "SSO login failed: the identity provider refused the authorization code".into(),
                ),
                OidcError::InvalidIssuer | OidcError::Discovery(_) => {
                    ApiError::Upstream("the org's identity provider could not be reached".into())
                }
            }
        })?;

    let verified_email = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified)
        .and_then(|e| normalize_email("email", e).ok());
    let domain_allowed = verified_email
        .as_deref()
        .is_some_and(|e| provider_row.allowed_domains.iter().any(|d| d == email_domain(e)));

    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let mut events = Vec::new();
    let linked = sso::find_identity(&mut tx, &identity.issuer, &identity.subject).await?;
    let user_id = match linked {
        Some(user) => user,
        None => {
            let Some(email) = verified_email.clone().filter(|_| domain_allowed) else {
                return Err(sso_refused(
                    "this identity is not linked to a member, and the provider did not assert a verified \
                     email address in one of the org's allowed domains",
                ));
            };
            if sso::find_user_id_by_email(&mut tx, &email).await?.is_some() {
                return Err(ApiError::conflict(
                    "sso_account_exists",
                    "a Gatehouse account with this email already exists: sign in with its password",
                ));
            }
            let name = identity.name.clone().unwrap_or_default();
            let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
            let user = sso::create_sso_user(&mut tx, &email, &name).await?;
            sso::link_identity(&mut tx, &identity.issuer, &identity.subject, user).await?;
            events.push(
                audit_event(user_actor(user, &email), "sso.identity_linked", &client)
                    .target("user", user)
                    .details(serde_json::json!({"issuer": identity.issuer, "subject": identity.subject, "provisioned": true})),
            );
            user
        }
    };
    if orgs::member_role(&mut tx, user_id).await?.is_none() {
        if !domain_allowed {
            return Err(sso_refused(
                "you are not a member of this org, and the provider did not assert a verified email \
                 address in one of the org's allowed domains",
            ));
        }
        memberships::add(&mut tx, user_id, provider_row.jit_role).await?;
        events.push(
            audit_event(
                user_actor(user_id, verified_email.as_deref().unwrap_or_default()),
                "member.added",
                &client,
            )
            .target("user", user_id)
            .details(serde_json::json!({"via": "sso_jit", "after": {"role": provider_row.jit_role}})),
        );
    }
    audit::append(&mut tx, &events).await?;
    tx.commit().await?;

    let mut global = GlobalTx::begin(&state.db).await?;
    let user = users::find_by_id(&mut global, user_id)
        .await?
        .ok_or_else(|| sso_refused("the account no longer exists"))?;
    let session = create_session(&state, &mut global, user.id, "sso", &client).await?;
    let event = audit_event(user_actor(user.id, &user.email), "user.login", &client)
        .target("user", user.id)
        .details(serde_json::json!({"method": "sso", "org_id": login.org, "session_id": session.row.id}));
    audit::append_to_user_orgs(&mut global, user.id, &[event]).await?;
    global.commit().await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, login.return_to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(session_cookie(&state, &session.token))
        .cookie(state_cookie(&state, "", true))
        .finish())
}

fn read_login_state(state: &AppState, req: &HttpRequest) -> Result<LoginState, ApiError> {
    let expired =
        || ApiError::BadRequest("this SSO login is missing, expired or was already used; start again".into());
    let cookie = req
        .cookie(state_cookie_name(state.cfg.is_local()))
        .ok_or_else(expired)?;
    if cookie.value().len() > 8192 {
        return Err(expired());
    }
    let sealed = URL_SAFE_NO_PAD.decode(cookie.value()).map_err(|_| expired())?;
    let plain = state
        .keyring
        .open(&sealed, STATE_CONTEXT)
        .map_err(|_| expired())?;
    let login: LoginState = serde_json::from_slice(&plain).map_err(|_| expired())?;
    if login.expires_at < OffsetDateTime::now_utc().unix_timestamp() {
        return Err(expired());
    }
    Ok(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_is_local_only() {
        assert_eq!(check_return_to(None).unwrap(), "/");
        assert_eq!(
            check_return_to(Some("/oauth/authorize?x=1&y=2")).unwrap(),
            "/oauth/authorize?x=1&y=2"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "/ x",
            "http:/evil.example",
        ] {
            assert!(check_return_to(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(check_return_to(Some("/a/../b")).unwrap(), "/b");
    }

    #[test]
    fn domains() {
        assert_eq!(
            check_domains(&["Acme.Test".into(), "acme.test".into()]).unwrap(),
            vec!["acme.test"]
        );
        assert!(check_domains(&["nodot".into()]).is_err());
        assert!(check_domains(&["a..b".into()]).is_err());
        assert!(check_domains(&["*.acme.test".into()]).is_err());
    }
}
