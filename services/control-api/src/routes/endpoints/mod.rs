//! Endpoints: named selections of domain servers (all their approved tools, or a chosen subset),
//! with rate limits, published at `{dataplane public URL}/{org}/{endpoint}/mcp`, and ready-to-paste
//! client configuration for them.
//!
//! The request and response bodies are in [`types`], the validation of what requests send in
//! [`checks`], choosing an endpoint's servers in [`servers`], client configuration in
//! [`client_config`].

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde_json::{Value, json};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::EndpointId;
use gatehouse_core::role::Role;
use gatehouse_db::TenantTx;
use gatehouse_db::repos::endpoints::{self, EndpointRow, EndpointServer, Protocol};
use gatehouse_db::repos::snapshot::exposed_tools;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;
use crate::validate;

mod checks;
mod client_config;
mod servers;
mod types;

pub(crate) use self::checks::check_rate_limits;
use self::checks::{checked_exposure, checked_extra_methods, checked_selection, plan_rate_limits};
pub use self::client_config::*;
pub use self::servers::*;
pub use self::types::*;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_endpoints)
        .service(create_endpoint)
        .service(get_endpoint)
        .service(update_endpoint)
        .service(set_endpoint_servers)
        .service(delete_endpoint)
        .service(endpoint_client_config);
}

fn exposure_out(enabled: bool, scope: &Option<String>) -> ExposureIn {
    ExposureIn {
        enabled,
        scope: scope.clone(),
    }
}

async fn endpoint_out(
    state: &AppState,
    member: &OrgMember,
    tx: &mut TenantTx,
    row: &EndpointRow,
) -> ApiResult<EndpointOut> {
    let selection = endpoints::servers(tx, row.id).await?;
    let exposed = exposed_tools(tx, Some(row.id)).await?;
    Ok(EndpointOut {
        id: row.id,
        slug: row.slug.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        url: state.cfg.endpoint_url(&member.org.slug, &row.slug),
        rate_limits: serde_json::from_value(row.rate_limits.clone()).unwrap_or_default(),
        namespace_tools: row.namespace_tools,
        prompts: exposure_out(row.expose_prompts, &row.prompts_scope),
        resources: exposure_out(row.expose_resources, &row.resources_scope),
        extra_methods: row.extra_methods.clone(),
        publish_scopes: row.publish_scopes,
        servers: selection
            .into_iter()
            .map(|s| EndpointServerOut {
                server_id: s.server_id,
                all_tools: s.all_tools,
                tool_ids: s.tool_ids,
            })
            .collect(),
        tools: exposed
            .iter()
            .map(|t| ExposedToolOut {
                tool_id: t.tool_id,
                server_id: t.server_id,
                exposed_name: t.exposed_name(),
            })
            .collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn audit_view(row: &EndpointRow, selection: &[EndpointServer]) -> Value {
    json!({
        "slug": row.slug,
        "name": row.name,
        "description": row.description,
        "rate_limits": row.rate_limits,
        "exposure": row.exposure(),
        "protocol": row.protocol(),
        "servers": selection,
    })
}

/// The org's endpoints.
#[utoipa::path(
    operation_id = "endpoints.list",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<EndpointOut>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/endpoints")]
pub async fn list_endpoints(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let rows = endpoints::list(&mut tx).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(endpoint_out(&state, &member, &mut tx, row).await?);
    }
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Provision an endpoint.
#[utoipa::path(
    operation_id = "endpoints.create",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug")),
    request_body = EndpointIn,
    responses(
        (status = 201, body = EndpointOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[post("/orgs/{org}/endpoints")]
pub async fn create_endpoint(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<EndpointIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    validate::endpoint_slug("slug", &body.slug)?;
    let name = validate::name("name", &body.name)?;
    let description = validate::description("description", &body.description)?;
    if let Some(limits) = &body.rate_limits {
        check_rate_limits(limits)?;
    }
    let protocol = Protocol {
        extra_methods: checked_extra_methods(&body.extra_methods)?,
        publish_scopes: body.publish_scopes,
    };
    let mut tx = member.begin(&state).await?;
    let limits = match &body.rate_limits {
        Some(limits) => serde_json::to_value(limits).map_err(|e| ApiError::Internal(e.into()))?,
        None => plan_rate_limits(&mut tx).await?,
    };
    let selection = checked_selection(&mut tx, &body.servers).await?;
    let exposure = checked_exposure(
        &mut tx,
        body.namespace_tools,
        &body.prompts,
        &body.resources,
        selection.len(),
    )
    .await?;
    let row = endpoints::create(&mut tx, &body.slug, &name, &description, &limits)
        .await
        .map_err(|e| match e.conflict_constraint() {
            Some(_) => ApiError::conflict(
                "slug_taken",
                "an endpoint with this slug already exists in the org",
            ),
            None => e.into(),
        })?;
    endpoints::set_servers(&mut tx, row.id, &selection).await?;
    endpoints::set_exposure(&mut tx, row.id, &exposure)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let row = endpoints::set_protocol(&mut tx, row.id, &protocol)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let out = endpoint_out(&state, &member, &mut tx, &row).await?;
    let event = changes::event(&member, "endpoint.create")
        .target("endpoint", row.id)
        .details(changes::before_after(None, Some(audit_view(&row, &selection))));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Created().json(out))
}

/// One endpoint, with its URL, servers and the tools it serves now.
#[utoipa::path(
    operation_id = "endpoints.get",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    responses((status = 200, body = EndpointOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/endpoints/{endpoint_id}")]
pub async fn get_endpoint(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = endpoints::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let out = endpoint_out(&state, &member, &mut tx, &row).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Change an endpoint's name, description, rate limits, exposure, extra methods or scope
/// publishing (the slug is immutable).
#[utoipa::path(
    operation_id = "endpoints.update",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    request_body = EndpointPatch,
    responses(
        (status = 200, body = EndpointOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[patch("/orgs/{org}/endpoints/{endpoint_id}")]
pub async fn update_endpoint(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
    body: ValidJson<EndpointPatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let name = body
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    let description = body
        .description
        .as_deref()
        .map(|d| validate::description("description", d))
        .transpose()?;
    if let Some(limits) = &body.rate_limits {
        check_rate_limits(limits)?;
    }
    let extra_methods = body
        .extra_methods
        .as_deref()
        .map(checked_extra_methods)
        .transpose()?;
    let mut tx = member.begin(&state).await?;
    let before = endpoints::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let limits = match &body.rate_limits {
        Some(l) => serde_json::to_value(l).map_err(|e| ApiError::Internal(e.into()))?,
        None => before.rate_limits.clone(),
    };
    endpoints::update(
        &mut tx,
        id,
        name.as_deref().unwrap_or(&before.name),
        description.as_deref().unwrap_or(&before.description),
        &limits,
    )
    .await?
    .ok_or(ApiError::NotFound("endpoint"))?;
    let selection = endpoints::servers(&mut tx, id).await?;
    let exposure = checked_exposure(
        &mut tx,
        body.namespace_tools.unwrap_or(before.namespace_tools),
        body.prompts
            .as_ref()
            .unwrap_or(&exposure_out(before.expose_prompts, &before.prompts_scope)),
        body.resources
            .as_ref()
            .unwrap_or(&exposure_out(before.expose_resources, &before.resources_scope)),
        selection.len(),
    )
    .await?;
    endpoints::set_exposure(&mut tx, id, &exposure)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let protocol = Protocol {
        extra_methods: extra_methods.unwrap_or_else(|| before.extra_methods.clone()),
        publish_scopes: body.publish_scopes.unwrap_or(before.publish_scopes),
    };
    let after = endpoints::set_protocol(&mut tx, id, &protocol)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let out = endpoint_out(&state, &member, &mut tx, &after).await?;
    let event = changes::event(&member, "endpoint.update")
        .target("endpoint", id)
        .details(changes::before_after(
            Some(audit_view(&before, &selection)),
            Some(audit_view(&after, &selection)),
        ));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Delete an endpoint; its URL stops serving and its tokens stop working.
#[utoipa::path(
    operation_id = "endpoints.delete",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/endpoints/{endpoint_id}")]
pub async fn delete_endpoint(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let before = endpoints::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let selection = endpoints::servers(&mut tx, id).await?;
    endpoints::delete(&mut tx, id).await?;
    let event = changes::event(&member, "endpoint.delete")
        .target("endpoint", id)
        .details(changes::before_after(Some(audit_view(&before, &selection)), None));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}
