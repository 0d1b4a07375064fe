//! Scopes (e.g. `orders:read`) and the tools each grants. A token's scopes decide which tools its
//! holder may list and call; `min_role` caps which members may be granted the scope.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{ScopeId, ToolId};
use gatehouse_core::role::Role;
use gatehouse_db::repos::scopes::{self, ScopeRow};
use gatehouse_db::repos::tools;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;
use crate::validate;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_scopes)
        .service(create_scope)
        .service(get_scope)
        .service(update_scope)
        .service(delete_scope)
        .service(set_scope_tools);
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ScopeOut {
    pub id: ScopeId,
    pub name: String,
    pub description: String,
    pub min_role: Role,
    /// Tools this scope grants.
    pub tool_ids: Vec<ToolId>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<&ScopeRow> for ScopeOut {
    fn from(row: &ScopeRow) -> Self {
        ScopeOut {
            id: row.id,
            name: row.name.clone(),
            description: row.description.clone(),
            min_role: row.min_role.parse().unwrap_or(Role::Owner),
            tool_ids: row.tool_ids.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeIn {
    /// e.g. `orders:read`; immutable (tokens carry it).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Lowest member role that may be granted this scope.
    #[serde(default = "default_min_role")]
    pub min_role: Role,
    /// Tools this scope grants.
    #[serde(default)]
    pub tool_ids: Vec<ToolId>,
}

fn default_min_role() -> Role {
    Role::Viewer
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopePatch {
    pub description: Option<String>,
    pub min_role: Option<Role>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeToolsIn {
    /// The complete set of tools the scope grants (replaces the current set).
    pub tool_ids: Vec<ToolId>,
}

/// Checks that every id is a tool of the org; returns them sorted and deduplicated.
async fn checked_tools(tx: &mut gatehouse_db::TenantTx, ids: &[ToolId]) -> ApiResult<Vec<ToolId>> {
    if ids.len() > 10_000 {
        return Err(ApiError::invalid("tool_ids", "must list at most 10000 tools"));
    }
    let mut wanted = ids.to_vec();
    wanted.sort();
    wanted.dedup();
    let found = tools::existing_ids(tx, &wanted).await?;
    if let Some(missing) = wanted.iter().find(|id| !found.contains(id)) {
        return Err(ApiError::invalid(
            "tool_ids",
            format!("{missing} is not a tool of this org"),
        ));
    }
    Ok(wanted)
}

fn audit_view(row: &ScopeRow) -> serde_json::Value {
    json!({ "name": row.name, "description": row.description, "min_role": row.min_role, "tool_ids": row.tool_ids })
}

/// The org's scopes.
#[utoipa::path(
    operation_id = "scopes.list",
    tag = "scopes",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<ScopeOut>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/scopes")]
pub async fn list_scopes(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let rows = scopes::list(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(ScopeOut::from).collect::<Vec<_>>()))
}

/// Define a scope and the tools it grants.
#[utoipa::path(
    operation_id = "scopes.create",
    tag = "scopes",
    params(("org" = String, Path, description = "Org slug")),
    request_body = ScopeIn,
    responses(
        (status = 201, body = ScopeOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[post("/orgs/{org}/scopes")]
pub async fn create_scope(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<ScopeIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    validate::scope_name("name", &body.name)?;
    let description = validate::description("description", &body.description)?;
    let mut tx = member.begin(&state).await?;
    let tool_ids = checked_tools(&mut tx, &body.tool_ids).await?;
    let id = scopes::create(&mut tx, &body.name, &description, body.min_role.as_str())
        .await
        .map_err(|e| match e.conflict_constraint() {
            Some(_) => ApiError::conflict("name_taken", "a scope with this name already exists in the org"),
            None => e.into(),
        })?;
    scopes::set_grants(&mut tx, id, &tool_ids).await?;
    let row = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    let event = changes::event(&member, "scope.create")
        .target("scope", id)
        .details(changes::before_after(None, Some(audit_view(&row))));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Created().json(ScopeOut::from(&row)))
}

/// One scope.
#[utoipa::path(
    operation_id = "scopes.get",
    tag = "scopes",
    params(("org" = String, Path, description = "Org slug"), ("scope_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ScopeOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/scopes/{scope_id}")]
pub async fn get_scope(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ScopeId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(ScopeOut::from(&row)))
}

/// Change a scope's description or minimum role (the name is immutable).
#[utoipa::path(
    operation_id = "scopes.update",
    tag = "scopes",
    params(("org" = String, Path, description = "Org slug"), ("scope_id" = String, Path, format = Uuid)),
    request_body = ScopePatch,
    responses(
        (status = 200, body = ScopeOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[patch("/orgs/{org}/scopes/{scope_id}")]
pub async fn update_scope(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ScopeId)>,
    body: ValidJson<ScopePatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let description = body
        .description
        .as_deref()
        .map(|d| validate::description("description", d))
        .transpose()?;
    let mut tx = member.begin(&state).await?;
    let before = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    let min_role = body
        .min_role
        .map_or(before.min_role.clone(), |r| r.as_str().to_owned());
    scopes::update(
        &mut tx,
        id,
        description.as_deref().unwrap_or(&before.description),
        &min_role,
    )
    .await?;
    let after = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    let event = changes::event(&member, "scope.update")
        .target("scope", id)
        .details(changes::before_after(
            Some(audit_view(&before)),
            Some(audit_view(&after)),
        ));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(ScopeOut::from(&after)))
}

/// Set exactly which tools a scope grants.
#[utoipa::path(
    operation_id = "scopes.set_tools",
    tag = "scopes",
    params(("org" = String, Path, description = "Org slug"), ("scope_id" = String, Path, format = Uuid)),
    request_body = ScopeToolsIn,
    responses(
        (status = 200, body = ScopeOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[put("/orgs/{org}/scopes/{scope_id}/tools")]
pub async fn set_scope_tools(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ScopeId)>,
    body: ValidJson<ScopeToolsIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let before = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    let tool_ids = checked_tools(&mut tx, &body.tool_ids).await?;
    scopes::set_grants(&mut tx, id, &tool_ids).await?;
    let after = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    let event = changes::event(&member, "scope.grants")
        .target("scope", id)
        .details(changes::before_after(
            Some(json!({ "tool_ids": before.tool_ids })),
            Some(json!({ "tool_ids": after.tool_ids })),
        ));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(ScopeOut::from(&after)))
}

/// Delete a scope; tokens carrying it no longer grant anything through it.
#[utoipa::path(
    operation_id = "scopes.delete",
    tag = "scopes",
    params(("org" = String, Path, description = "Org slug"), ("scope_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/scopes/{scope_id}")]
pub async fn delete_scope(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ScopeId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let before = scopes::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("scope"))?;
    scopes::delete(&mut tx, id).await?;
    let event = changes::event(&member, "scope.delete")
        .target("scope", id)
        .details(changes::before_after(Some(audit_view(&before)), None));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}
