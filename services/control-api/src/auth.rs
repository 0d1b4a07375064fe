//! Who is calling the REST API: the console session (cookie), with CSRF protection on writes, and
//! their membership and role in the org named by the path.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use gatehouse_core::role::Role;
use gatehouse_core::secrets::{hmac_sha256, hmac_sha256_verify, token_hash};
use gatehouse_db::repos::orgs::OrgRow;
use gatehouse_db::repos::sessions::SessionRow;
use gatehouse_db::repos::users::UserRow;
use gatehouse_db::repos::{orgs, sessions, sso, users};
use gatehouse_db::{Actor, GlobalTx, OrgScope, TenantTx};

use crate::error::ApiError;
use crate::state::AppState;

/// Session cookie name: `__Host-` (Secure, no Domain, Path=/) outside local mode, where browsers
/// on plain-http localhost would refuse a Secure cookie.
pub fn session_cookie_name(local: bool) -> &'static str {
    if local {
        "gatehouse_session"
    } else {
        "__Host-gatehouse_session"
    }
}

/// Header carrying the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session: an HMAC of the session token, so it needs no storage and dies
/// with the session.
pub fn csrf_token(cookie_key: &[u8], session_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256(
        cookie_key,
        format!("csrf:{session_token}").as_bytes(),
    ))
}

fn csrf_valid(cookie_key: &[u8], session_token: &str, presented: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(presented)
        .is_ok_and(|tag| hmac_sha256_verify(cookie_key, format!("csrf:{session_token}").as_bytes(), &tag))
}

pub use gatehouse_http::ClientInfo;

/// A signed-in user (valid console session). On unsafe methods the CSRF header must match.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub user: UserRow,
    pub session: SessionRow,
    /// The raw session token from the cookie (to derive the CSRF token); never logged.
    pub session_token: String,
    pub client: ClientInfo,
}

impl CurrentUser {
    /// The audit-trail actor for this user.
    pub fn actor(&self) -> Actor {
        Actor {
            kind: gatehouse_db::ActorType::User,
            id: Some(self.user.id.to_string()),
            label: Some(self.user.email.clone()),
        }
    }
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing from app data")))
}

async fn authenticate(req: HttpRequest) -> Result<CurrentUser, ApiError> {
    let state = state_of(&req)?;
    let cookie = req
        .cookie(session_cookie_name(state.cfg.is_local()))
        .ok_or(ApiError::Unauthenticated)?;
    let token = cookie.value().to_owned();
    if token.is_empty() || token.len() > 128 {
        return Err(ApiError::Unauthenticated);
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let session = sessions::find_live(&mut tx, &token_hash(&token))
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let user = users::find_by_id(&mut tx, session.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    tx.commit().await?;
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !csrf_valid(&state.keys.cookie, &token, presented) {
            return Err(ApiError::Csrf);
        }
    }
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    Ok(CurrentUser {
        user,
        session,
        session_token: token,
        client: ClientInfo::of(&req),
    })
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()))
    }
}

/// A member of the org named by the `{org}` path segment (its slug). Anyone else, including a
/// signed-in user of another org, gets 404 for the org: its existence is not confirmed.
#[derive(Clone, Debug)]
pub struct OrgMember {
    pub current: CurrentUser,
    pub org: OrgRow,
    pub role: Role,
    pub scope: OrgScope,
}

impl OrgMember {
    /// Refuses unless the member's role is at least `role`. A member may learn that a resource
    /// exists in their own org, so this is a 403.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.at_least(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this action requires the {role} role or higher (you are {})",
                self.role
            )))
        }
    }

    pub fn actor(&self) -> Actor {
        self.current.actor()
    }

    /// A transaction confined to this org.
    pub async fn begin(&self, state: &AppState) -> Result<TenantTx, ApiError> {
        Ok(TenantTx::begin(&state.db, &self.scope).await?)
    }
}

async fn resolve_member(req: HttpRequest) -> Result<OrgMember, ApiError> {
    let current = authenticate(req.clone()).await?;
    let state = state_of(&req)?;
    let slug = req
        .match_info()
        .get("org")
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("OrgMember used on a route without {{org}}")))?
        .to_owned();
    let mut global = GlobalTx::begin(&state.db).await?;
    let org = orgs::find_by_slug(&mut global, &slug)
        .await?
        .ok_or(ApiError::NotFound("org"))?;
    global.commit().await?;
    // The membership row is itself tenant data: read it inside the org's scope. Reading is what
    // establishes the right to act, so this is the one place a scope is granted before it.
    let probe = OrgScope::authorized(org.id);
    let mut tx = TenantTx::begin(&state.db, &probe).await?;
    let access = sso::member_access(&mut tx, current.user.id).await?;
    tx.commit().await?;
    let (role, enforced) = access.ok_or(ApiError::NotFound("org"))?;
    // An org that enforces SSO accepts only sessions signed in through its own provider
    // (owners excepted: the break-glass).
    if !gatehouse_oauth::session::sso_satisfied(org.id, role, enforced.is_some(), current.session.sso_org_id)
    {
        return Err(ApiError::SsoRequired {
            login_url: crate::routes::sso::login_url(&state, &org.slug),
            org: org.slug,
        });
    }
    tracing::Span::current().record("org_id", tracing::field::display(org.id));
    Ok(OrgMember {
        current,
        scope: OrgScope::authorized(org.id),
        org,
        role,
    })
}

impl FromRequest for OrgMember {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(resolve_member(req.clone()))
    }
}
