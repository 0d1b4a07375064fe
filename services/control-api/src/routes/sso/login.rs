//! The SSO login flow: `GET /sso/{org}/start` (or [`start_sso_login`] from other flows) seals
//! state, nonce and PKCE verifier into a short-lived cookie and redirects to the provider;
//! `GET /sso/callback` checks them, redeems the code, validates the ID token, and hands the
//! identity to `provision`; when that signs someone in, it starts the console session (marked as
//! signed in through this org's SSO) and redirects to `return_to`.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::sso::{self, SsoProviderRow};
use gatehouse_db::repos::{audit, orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};

use super::provision::{self, Outcome, refused};
use super::{client_secret, redirect_uri};
use crate::accounts::{audit_event, create_session, session_cookie, user_actor};
use crate::auth::ClientInfo;
use crate::error::{ApiError, ApiResult, Problem};
use crate::oidc::{OidcError, Provider};
use crate::routes::session::MessageOut;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(sso_start).service(sso_callback);
}

/// Context string of the sealed login-state cookie.
const STATE_CONTEXT: &str = "sso-login-state";

/// The answer when the address must be confirmed by mail first (the same for every address).
const CONFIRM_BY_MAIL: &str = "Check your inbox: to finish signing in, follow the link we sent to the \
     email address your identity provider gave us. Nothing changes until you do.";

fn state_cookie_name(local: bool) -> &'static str {
    if local {
        "gatehouse_sso"
    } else {
        "__Host-gatehouse_sso"
    }
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

/// Starts an SSO login for the org: redirects to its provider. No session needed.
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.start",
    params(("org" = String, Path, description = "Org slug"), StartQuery),
    responses(
        (status = 302, description = "To the identity provider"),
        (status = 303, description = "A browser's navigation that failed: to the console's login page, `?sso_error=<problem code>`"),
        (status = 400, description = "Invalid return_to", body = Problem),
        (status = 404, description = "No such org, or SSO not enabled for it", body = Problem),
        (status = 502, description = "The provider could not be reached", body = Problem),
    )
)]
#[get("/sso/{org}/start")]
async fn sso_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> ApiResult<HttpResponse> {
    let started = start_sso_login(&state, &path, query.return_to.as_deref()).await;
    navigation_answer(&req, started)
}

/// Whether `req` is a browser's navigation (it asks for a page), not an API client's request.
fn is_navigation(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The SSO steps a browser navigates to answer it with pages: a refusal sends it to the console's
/// login page with the problem's code (`/login?sso_error=<code>`), which says what happened in
/// its own words (no text from the request is shown). API clients get the problem itself.
fn navigation_answer(req: &HttpRequest, answer: ApiResult<HttpResponse>) -> ApiResult<HttpResponse> {
    match answer {
        Err(e) if is_navigation(req) => {
            tracing::info!(code = e.code(), detail = %e.detail(), "SSO step refused; the browser is sent to the login page");
            Ok(to_login_page("sso_error", e.code()))
        }
        other => other,
    }
}

/// 303 to the console's login page with `key=value` (both plain identifiers).
fn to_login_page(key: &str, value: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/login?{key}={value}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
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
    let secret = client_secret(state, &mut tx, &provider_row).await?;
    tx.commit().await?;
    let provider = discover(state, &provider_row, &secret).await?;
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

async fn discover(state: &AppState, row: &SsoProviderRow, secret: &str) -> ApiResult<Provider> {
    Provider::discover(
        &state.oidc_http,
        &row.issuer_url,
        &row.client_id,
        secret,
        &redirect_uri(state),
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "SSO discovery failed");
        ApiError::Upstream("the org's identity provider could not be reached; try again later".into())
    })
}

/// The provider's redirect back: validates state (against the sealed cookie), redeems the code
/// with the PKCE verifier, validates the ID token, and signs the identity in (302 to
/// `return_to` with the session cookie) or mails its address a confirmation link first (202, the
/// same answer whether or not an account exists for the address).
#[utoipa::path(
    tag = "sso",
    operation_id = "sso.callback",
    params(CallbackQuery),
    responses(
        (status = 302, description = "Logged in; to return_to with the session cookie"),
        (status = 202, description = "A confirmation link was mailed to the asserted address (a domain the org has not verified)", body = MessageOut),
        (status = 303, description = "A browser's navigation: to the console's login page, `?sso=confirm_by_mail` when a confirmation link was mailed, `?sso_error=<problem code>` when refused"),
        (status = 400, description = "Missing or mismatched state, expired login, or provider error", body = Problem),
        (status = 403, description = "The identity may not sign in to this org", body = Problem),
        (status = 429, description = "Too many confirmation mails for this address or client", body = Problem),
    )
)]
#[get("/sso/callback")]
async fn sso_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> ApiResult<HttpResponse> {
    let finished = finish_sso_login(&state, &req, &query).await;
    navigation_answer(&req, finished)
}

async fn finish_sso_login(
    state: &AppState,
    req: &HttpRequest,
    query: &CallbackQuery,
) -> ApiResult<HttpResponse> {
    let client = ClientInfo::of(req);
    let login = read_login_state(state, req)?;
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
        .ok_or_else(|| refused("SSO is no longer enabled for this org"))?;
    let secret = client_secret(state, &mut tx, &provider_row).await?;
    tx.commit().await?;
    let provider = discover(state, &provider_row, &secret).await?;
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

    let outcome = provision::after_login(
        state,
        login.org,
        &provider_row,
        &identity,
        &login.return_to,
        &client,
    )
    .await?;
    let user_id = match outcome {
        Outcome::SignedIn(user) => user,
        Outcome::MailSent if is_navigation(req) => {
            let mut page = to_login_page("sso", "confirm_by_mail");
            page.add_cookie(&state_cookie(state, "", true))
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("state cookie: {e}")))?;
            return Ok(page);
        }
        Outcome::MailSent => {
            return Ok(HttpResponse::Accepted()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(state_cookie(state, "", true))
                .json(MessageOut {
                    message: CONFIRM_BY_MAIL.to_owned(),
                }));
        }
    };

    let mut global = GlobalTx::begin(&state.db).await?;
    let user = users::find_by_id(&mut global, user_id)
        .await?
        .ok_or_else(|| refused("the account no longer exists"))?;
    let session = create_session(state, &mut global, user.id, Some(login.org), &client).await?;
    let event = audit_event(user_actor(user.id, &user.email), "user.login", &client)
        .target("user", user.id)
        .details(serde_json::json!({"method": "sso", "org_id": login.org, "session_id": session.row.id}));
    audit::append_to_user_orgs(&mut global, user.id, &[event]).await?;
    global.commit().await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, login.return_to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(session_cookie(state, &session.token))
        .cookie(state_cookie(state, "", true))
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
}
