//! Service tokens: long-lived scoped tokens for one endpoint (CI agents). Shown once at creation;
//! only their SHA-256 is stored. Admin and above.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{EndpointId, ServiceTokenId};
use gatehouse_core::role::Role;
use gatehouse_core::secrets::token_hash;
use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::NewAuditEvent;
use gatehouse_db::repos::service_tokens::{self, NewServiceToken, ServiceTokenRow};
use gatehouse_db::repos::{audit, orgs};
use gatehouse_oauth::admin::{ScopeProblem, grantable};
use gatehouse_oauth::tokens;

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult};
use crate::extract::ValidJson;
use crate::state::AppState;
use crate::validate;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_service_tokens)
        .service(create_service_token)
        .service(revoke_service_token);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceTokenIn {
    /// What the token is for, e.g. "nightly CI".
    pub name: String,
    pub endpoint_id: EndpointId,
    /// Scopes of the org that grant something at the endpoint, within your role.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Expiry (RFC 3339); absent means the token does not expire.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceTokenOut {
    pub id: ServiceTokenId,
    pub name: String,
    pub endpoint_id: EndpointId,
    /// The recognisable start of the token (`ghs_<org>_` and a few characters).
    pub token_prefix: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<ServiceTokenRow> for ServiceTokenOut {
    fn from(r: ServiceTokenRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            endpoint_id: r.endpoint_id,
            token_prefix: r.token_prefix,
            scopes: r.scopes,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedServiceToken {
    #[serde(flatten)]
    pub token: ServiceTokenOut,
    /// The token itself. Shown once: store it now.
    pub secret: String,
}

pub fn scope_problem(problem: ScopeProblem) -> ApiError {
    match problem {
        ScopeProblem::UnknownEndpoint => ApiError::invalid("endpoint_id", problem.to_string()),
        other => ApiError::invalid("scopes", other.to_string()),
    }
}

/// Lists the org's service tokens (never the tokens themselves).
#[utoipa::path(
    tag = "tokens",
    operation_id = "service_tokens.list",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<ServiceTokenOut>), (status = 404, body = crate::error::Problem))
)]
#[get("/orgs/{org}/service-tokens")]
pub async fn list_service_tokens(
    state: web::Data<AppState>,
    member: OrgMember,
) -> ApiResult<web::Json<Vec<ServiceTokenOut>>> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let rows = service_tokens::list(&mut tx).await?;
    tx.commit().await?;
    Ok(web::Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates a service token. The response carries the token once.
#[utoipa::path(
    tag = "tokens",
    operation_id = "service_tokens.create",
    params(("org" = String, Path, description = "Org slug")),
    request_body = ServiceTokenIn,
    responses((status = 201, body = CreatedServiceToken), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem))
)]
#[post("/orgs/{org}/service-tokens")]
pub async fn create_service_token(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<ServiceTokenIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let body = body.0;
    let name = validate::name("name", &body.name)?;
    if body.expires_at.is_some_and(|e| e <= OffsetDateTime::now_utc()) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let mut tx = member.begin(&state).await?;
    let (endpoint, scopes) = grantable(&mut tx, body.endpoint_id, &body.scopes, member.role)
        .await?
        .map_err(scope_problem)?;
    let secret = tokens::new_service_token(member.org.id);
    let prefix: String = secret.chars().take(tokens::SERVICE_TOKEN_DISPLAY_LEN).collect();
    let row = service_tokens::create(
        &mut tx,
        &NewServiceToken {
            id: ServiceTokenId::new(),
            endpoint_id: endpoint.id,
            name: &name,
            token_prefix: &prefix,
            token_hash: &token_hash(&secret),
            scopes: &scopes,
            created_by: Some(member.current.user.id),
            expires_at: body.expires_at,
        },
    )
    .await?;
    audit::append(
        &mut tx,
        &[NewAuditEvent::control(member.actor(), "service_token.created")
            .target("service_token", row.id)
            .client(member.current.client.ip, member.current.client.user_agent.clone())
            .details(json!({"name": row.name, "endpoint_id": row.endpoint_id, "scopes": row.scopes, "prefix": row.token_prefix}))],
    )
    .await?;
    let version = orgs::bump_config_version(&mut tx).await?;
    tx.commit().await?;
    state
        .notifier
        .publish(ConfigChange {
            org_id: member.org.id,
            version,
        })
        .await;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedServiceToken {
            token: row.into(),
            secret,
        }))
}

/// Revokes a service token; the dataplane refuses it from its next configuration refresh.
#[utoipa::path(
    tag = "tokens",
    operation_id = "service_tokens.revoke",
    params(("org" = String, Path, description = "Org slug"), ("service_token_id" = ServiceTokenId, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem))
)]
#[delete("/orgs/{org}/service-tokens/{service_token_id}")]
pub async fn revoke_service_token(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServiceTokenId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let id = path.into_inner().1;
    let mut tx = member.begin(&state).await?;
    let row = service_tokens::revoke(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("service token"))?;
    audit::append(
        &mut tx,
        &[NewAuditEvent::control(member.actor(), "service_token.revoked")
            .target("service_token", row.id)
            .client(member.current.client.ip, member.current.client.user_agent.clone())
            .details(json!({"name": row.name, "prefix": row.token_prefix}))],
    )
    .await?;
    let version = orgs::bump_config_version(&mut tx).await?;
    tx.commit().await?;
    state
        .notifier
        .publish(ConfigChange {
            org_id: member.org.id,
            version,
        })
        .await;
    Ok(HttpResponse::NoContent().finish())
}
