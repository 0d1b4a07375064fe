//! What OAuth clients were allowed to do in an org: remembered consents (each member's own, or
//! anyone's for an admin) and grants (refresh-token families), and their revocation. Revoking
//! stops the grant's refresh tokens at once and its access tokens at the dataplane from the next
//! configuration refresh.

use actix_web::{get, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{EndpointId, RefreshFamilyId, UserId};
use gatehouse_core::role::Role;
use gatehouse_db::repos::oauth_consents::{self, ConsentRow};
use gatehouse_db::repos::oauth_refresh::{self, FamilyFilter, RefreshFamilyRow};
use gatehouse_oauth::grants::{self, Selection};

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult};
use crate::extract::ValidJson;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_consents)
        .service(revoke_consent)
        .service(list_grants)
        .service(revoke_grants);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentOut {
    pub user_id: UserId,
    pub client_id: String,
    pub endpoint_id: EndpointId,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: OffsetDateTime,
}

impl From<ConsentRow> for ConsentOut {
    fn from(c: ConsentRow) -> Self {
        Self {
            user_id: c.user_id,
            client_id: c.client_id,
            endpoint_id: c.endpoint_id,
            scopes: c.scopes,
            granted_at: c.granted_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsentQuery {
    /// Another member's consents (admins only); default: your own.
    pub user_id: Option<UserId>,
}

fn target_user(member: &OrgMember, user: Option<UserId>) -> ApiResult<UserId> {
    match user {
        Some(u) if u != member.current.user.id => {
            member.require(Role::Admin)?;
            Ok(u)
        }
        _ => Ok(member.current.user.id),
    }
}

/// Lists remembered consents: which applications may obtain tokens without asking again.
#[utoipa::path(
    tag = "tokens",
    operation_id = "oauth_consents.list",
    params(("org" = String, Path, description = "Org slug"), ConsentQuery),
    responses((status = 200, body = Vec<ConsentOut>), (status = 404, body = crate::error::Problem))
)]
#[get("/orgs/{org}/oauth/consents")]
pub async fn list_consents(
    state: web::Data<AppState>,
    member: OrgMember,
    query: web::Query<ConsentQuery>,
) -> ApiResult<web::Json<Vec<ConsentOut>>> {
    let user = target_user(&member, query.user_id)?;
    let mut tx = member.begin(&state).await?;
    let rows = oauth_consents::list_live(&mut tx, Some(user)).await?;
    tx.commit().await?;
    Ok(web::Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRevokeIn {
    pub client_id: String,
    /// One endpoint only; default: every endpoint of the org.
    pub endpoint_id: Option<EndpointId>,
    /// Another member's consent (admins only); default: your own.
    pub user_id: Option<UserId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedOut {
    /// Grants (refresh-token families) revoked.
    pub revoked_grants: usize,
    pub consents_withdrawn: u64,
}

/// Withdraws consent for an application, and revokes the grants it holds.
#[utoipa::path(
    tag = "tokens",
    operation_id = "oauth_consents.revoke",
    params(("org" = String, Path, description = "Org slug")),
    request_body = ConsentRevokeIn,
    responses((status = 200, body = RevokedOut), (status = 404, body = crate::error::Problem))
)]
#[post("/orgs/{org}/oauth/consents/revoke")]
pub async fn revoke_consent(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<ConsentRevokeIn>,
) -> ApiResult<web::Json<RevokedOut>> {
    let user = target_user(&member, body.user_id)?;
    if body.client_id.is_empty() {
        return Err(ApiError::invalid("client_id", "is required"));
    }
    let selection = Selection {
        user: Some(user),
        client_id: Some(body.client_id.clone()),
        endpoint: body.endpoint_id,
        consents: true,
        ..Default::default()
    };
    revoke(&state, &member, &selection, "consent_withdrawn").await
}

async fn revoke(
    state: &AppState,
    member: &OrgMember,
    selection: &Selection,
    reason: &str,
) -> ApiResult<web::Json<RevokedOut>> {
    let mut tx = member.begin(state).await?;
    let revoked = grants::revoke(&mut tx, &state.cfg, selection, reason, member.actor()).await?;
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, revoked.version).await;
    Ok(web::Json(RevokedOut {
        revoked_grants: revoked.families.len(),
        consents_withdrawn: revoked.consents,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantOut {
    pub id: RefreshFamilyId,
    pub user_id: UserId,
    pub client_id: String,
    pub endpoint_id: EndpointId,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<RefreshFamilyRow> for GrantOut {
    fn from(f: RefreshFamilyRow) -> Self {
        Self {
            id: f.id,
            user_id: f.user_id,
            client_id: f.client_id,
            endpoint_id: f.endpoint_id,
            scopes: f.scopes,
            created_at: f.created_at,
            last_used_at: f.last_used_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    pub user_id: Option<UserId>,
    pub client_id: Option<String>,
    pub endpoint_id: Option<EndpointId>,
}

/// Lists live grants (admin and above): who authorized which application at which endpoint.
#[utoipa::path(
    tag = "tokens",
    operation_id = "oauth_grants.list",
    params(("org" = String, Path, description = "Org slug"), GrantQuery),
    responses((status = 200, body = Vec<GrantOut>), (status = 403, body = crate::error::Problem))
)]
#[get("/orgs/{org}/oauth/grants")]
pub async fn list_grants(
    state: web::Data<AppState>,
    member: OrgMember,
    query: web::Query<GrantQuery>,
) -> ApiResult<web::Json<Vec<GrantOut>>> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let rows = oauth_refresh::list_live(
        &mut tx,
        &FamilyFilter {
            id: None,
            user_id: query.user_id,
            client_id: query.client_id.as_deref(),
            endpoint_id: query.endpoint_id,
            except_owners: false,
        },
        1000,
    )
    .await?;
    tx.commit().await?;
    Ok(web::Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRevokeIn {
    /// One grant.
    pub grant_id: Option<RefreshFamilyId>,
    /// Every grant of this member.
    pub user_id: Option<UserId>,
    /// Every grant of this application.
    pub client_id: Option<String>,
}

/// Revokes grants (admin and above) of a user, an application, or one grant; the matching
/// remembered consents are withdrawn too.
#[utoipa::path(
    tag = "tokens",
    operation_id = "oauth_grants.revoke",
    params(("org" = String, Path, description = "Org slug")),
    request_body = GrantRevokeIn,
    responses((status = 200, body = RevokedOut), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem))
)]
#[post("/orgs/{org}/oauth/grants/revoke")]
pub async fn revoke_grants(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<GrantRevokeIn>,
) -> ApiResult<web::Json<RevokedOut>> {
    member.require(Role::Admin)?;
    let body = body.0;
    if body.grant_id.is_none() && body.user_id.is_none() && body.client_id.is_none() {
        return Err(ApiError::invalid(
            "body",
            "name a grant_id, a user_id or a client_id",
        ));
    }
    let selection = Selection {
        family: body.grant_id,
        user: body.user_id,
        client_id: body.client_id,
        endpoint: None,
        consents: body.grant_id.is_none(),
        except_owners: false,
    };
    revoke(&state, &member, &selection, "admin_revoked").await
}
