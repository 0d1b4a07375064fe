//! Service clients: confidential OAuth clients an org admin creates for the client_credentials
//! grant (machine-to-machine). The secret is shown once; only its SHA-256 is stored.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{EndpointId, ServiceClientId};
use gatehouse_core::role::Role;
use gatehouse_core::secrets::token_hash;
use gatehouse_core::snapshot::RevocationKind;
use gatehouse_db::NewAuditEvent;
use gatehouse_db::repos::audit;
use gatehouse_db::repos::oauth_service_clients::{self, NewServiceClient, ServiceClientRow};
use gatehouse_oauth::admin::grantable;
use gatehouse_oauth::{grants, tokens};

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult};
use crate::extract::ValidJson;
use crate::routes::service_tokens::scope_problem;
use crate::state::AppState;
use crate::validate;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_service_clients)
        .service(create_service_client)
        .service(revoke_service_client);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceClientIn {
    pub name: String,
    pub endpoint_id: EndpointId,
    /// The scopes the client may request (client_credentials), within your role.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceClientOut {
    pub id: ServiceClientId,
    /// The OAuth client_id (`ghsc_<org>_<id>`).
    pub client_id: String,
    pub name: String,
    pub endpoint_id: EndpointId,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<ServiceClientRow> for ServiceClientOut {
    fn from(r: ServiceClientRow) -> Self {
        Self {
            id: r.id,
            client_id: r.client_id,
            name: r.name,
            endpoint_id: r.endpoint_id,
            scopes: r.scopes,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedServiceClient {
    #[serde(flatten)]
    pub client: ServiceClientOut,
    /// The client secret. Shown once: store it now.
    pub client_secret: String,
    /// Where to ask for tokens (`grant_type=client_credentials`).
    pub token_endpoint: String,
    /// The access tokens' audience: the endpoint's URL.
    pub resource: String,
}

/// Lists the org's service clients.
#[utoipa::path(
    tag = "tokens",
    operation_id = "service_clients.list",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<ServiceClientOut>), (status = 404, body = crate::error::Problem))
)]
#[get("/orgs/{org}/service-clients")]
pub async fn list_service_clients(
    state: web::Data<AppState>,
    member: OrgMember,
) -> ApiResult<web::Json<Vec<ServiceClientOut>>> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let rows = oauth_service_clients::list(&mut tx).await?;
    tx.commit().await?;
    Ok(web::Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates a service client for the client_credentials grant. The secret is shown once.
#[utoipa::path(
    tag = "tokens",
    operation_id = "service_clients.create",
    params(("org" = String, Path, description = "Org slug")),
    request_body = ServiceClientIn,
    responses((status = 201, body = CreatedServiceClient), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem))
)]
#[post("/orgs/{org}/service-clients")]
pub async fn create_service_client(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<ServiceClientIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let body = body.0;
    let name = validate::name("name", &body.name)?;
    let mut tx = member.begin(&state).await?;
    let (endpoint, scopes) = grantable(&mut tx, body.endpoint_id, &body.scopes, member.role)
        .await?
        .map_err(scope_problem)?;
    let id = ServiceClientId::new();
    let client_id = tokens::service_client_id(member.org.id, id);
    let secret = tokens::new_client_secret();
    let row = oauth_service_clients::create(
        &mut tx,
        &NewServiceClient {
            id,
            client_id: &client_id,
            name: &name,
            secret_hash: &token_hash(&secret),
            endpoint_id: endpoint.id,
            scopes: &scopes,
            created_by: Some(member.current.user.id),
        },
    )
    .await?;
    audit::append(
        &mut tx,
        &[NewAuditEvent::control(member.actor(), "service_client.created")
            .target("service_client", row.id)
            .client(member.current.client.ip, member.current.client.user_agent.clone())
            .details(json!({"client_id": row.client_id, "name": row.name, "endpoint_id": row.endpoint_id, "scopes": row.scopes}))],
    )
    .await?;
    tx.commit().await?;
    let issuer = state.cfg.issuer();
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedServiceClient {
            client: row.into(),
            client_secret: secret,
            token_endpoint: format!("{issuer}/oauth/token"),
            resource: state.cfg.endpoint_url(&member.org.slug, &endpoint.slug),
        }))
}

/// Revokes a service client: it can get no new token, and the tokens it holds stop working at the
/// dataplane from its next configuration refresh.
#[utoipa::path(
    tag = "tokens",
    operation_id = "service_clients.revoke",
    params(("org" = String, Path, description = "Org slug"), ("service_client_id" = ServiceClientId, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem))
)]
#[delete("/orgs/{org}/service-clients/{service_client_id}")]
pub async fn revoke_service_client(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServiceClientId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let id = path.into_inner().1;
    let mut tx = member.begin(&state).await?;
    let row = oauth_service_clients::revoke(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("service client"))?;
    audit::append(
        &mut tx,
        &[NewAuditEvent::control(member.actor(), "service_client.revoked")
            .target("service_client", row.id)
            .client(member.current.client.ip, member.current.client.user_agent.clone())
            .details(json!({"client_id": row.client_id, "name": row.name}))],
    )
    .await?;
    let version = grants::revoke_tokens(
        &mut tx,
        RevocationKind::Client,
        std::slice::from_ref(&row.client_id),
        grants::access_tokens_expired_by(&state.cfg),
        "service_client_revoked",
        member.actor(),
    )
    .await?;
    tx.commit().await?;
    grants::publish(&state.notifier, member.org.id, Some(version)).await;
    Ok(HttpResponse::NoContent().finish())
}
