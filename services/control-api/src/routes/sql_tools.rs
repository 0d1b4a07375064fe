//! Hosted SQL tools of a backend: define (validated by the parser and by the backend), change,
//! inspect and delete them. A new or changed tool waits for approval like any other tool
//! (`POST /orgs/{org}/tools/{tool_id}/approve`), where the publication gate runs.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{BackendId, ToolId, UserId};
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::namespaced_tool_name;
use gatehouse_db::repos::backends::{self, BackendRow, SqlToolFields, SqlToolRow};
use gatehouse_hosted_sql::statement::Access;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::hosted;
use crate::routes::tools::ToolStatusOut;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_sql_tools)
        .service(create_sql_tool)
        .service(get_sql_tool)
        .service(update_sql_tool)
        .service(delete_sql_tool)
        .service(inspect_sql_tool);
}

/// Whether a tool only reads or may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessIo {
    /// A SELECT, run in a READ ONLY transaction.
    Read,
    /// INSERT, UPDATE or DELETE.
    Write,
}

impl From<AccessIo> for Access {
    fn from(a: AccessIo) -> Self {
        match a {
            AccessIo::Read => Access::Read,
            AccessIo::Write => Access::Write,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlToolIn {
    /// The tool's name (a lower-case identifier), exposed as `<backend slug>__<name>`.
    pub name: String,
    pub description: String,
    /// One SELECT, INSERT, UPDATE or DELETE; parameters are `:name`.
    pub sql: String,
    pub access: AccessIo,
    /// Calls run only after the caller confirms them (write tools only).
    #[serde(default)]
    pub destructive: bool,
    /// Descriptions of parameters, by name, shown in the input schema.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameter_descriptions: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlToolPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub sql: Option<String>,
    pub access: Option<AccessIo>,
    pub destructive: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub parameter_descriptions: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SqlToolOut {
    #[schema(value_type = String, format = Uuid)]
    pub id: ToolId,
    #[schema(value_type = String, format = Uuid)]
    pub backend_id: BackendId,
    pub name: String,
    /// `<backend slug>__<name>` (or the name alone on a single-member endpoint that does not
    /// namespace).
    pub exposed_name: String,
    /// The statement as written.
    pub sql: String,
    pub access: AccessIo,
    pub destructive: bool,
    pub status: ToolStatusOut,
    /// The MCP tool definition: name, description, input and output schemas from the types the
    /// backend described, annotations.
    #[schema(value_type = Object)]
    pub definition: Value,
    pub definition_hash: String,
    pub approved_hash: Option<String>,
    /// The latest inspection: the tool role, and each relation the statement touches with its
    /// row-level security.
    #[schema(value_type = Option<Object>)]
    pub inspection: Option<Value>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub decided_by: Option<UserId>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

fn tool_out(backend: &BackendRow, row: &SqlToolRow) -> SqlToolOut {
    SqlToolOut {
        id: row.id,
        backend_id: row.backend_id,
        name: row.name.clone(),
        exposed_name: namespaced_tool_name(&backend.slug, &row.name),
        sql: row.sql_text.clone(),
        access: if row.sql_access == "write" {
            AccessIo::Write
        } else {
            AccessIo::Read
        },
        destructive: row.sql_destructive,
        status: row.status().into(),
        definition: row.definition.clone(),
        definition_hash: hex::encode(&row.definition_hash),
        approved_hash: row.approved_hash.as_ref().map(hex::encode),
        inspection: row.sql_inspection.clone(),
        decided_by: row.decided_by,
        updated_at: row.updated_at,
    }
}

/// The inspection with what blocks publication, for the response.
#[derive(Debug, Serialize, ToSchema)]
pub struct InspectionOut {
    #[schema(value_type = Object)]
    pub inspection: Value,
    /// Why the tool cannot be published as things stand (empty: it can).
    pub blocking: Vec<String>,
}

fn audit_view(row: &SqlToolRow) -> Value {
    json!({
        "name": row.name,
        "sql": row.sql_text,
        "access": row.sql_access,
        "destructive": row.sql_destructive,
        "definition_hash": hex::encode(&row.definition_hash),
        "status": row.status().as_str(),
    })
}

fn check_text(spec_name: &str, description: &str) -> ApiResult<()> {
    if description.len() > 4096 {
        return Err(ApiError::invalid(
            "description",
            "must be at most 4096 characters",
        ));
    }
    if spec_name.is_empty() {
        return Err(ApiError::invalid("name", "is required"));
    }
    Ok(())
}

async fn load_backend(state: &AppState, member: &OrgMember, id: BackendId) -> ApiResult<BackendRow> {
    let mut tx = member.begin(state).await?;
    let row = backends::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    tx.commit().await?;
    Ok(row)
}

/// SQL tools of a backend.
#[utoipa::path(
    operation_id = "backends.tools.list",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Vec<SqlToolOut>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/backends/{backend_id}/tools")]
pub async fn list_sql_tools(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let backend = backends::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    let rows = backends::list_tools(&mut tx, id).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(|r| tool_out(&backend, r)).collect::<Vec<_>>()))
}

/// Define a SQL tool. The statement is validated by the parser, then prepared on the backend in
/// a read-only transaction that is rolled back (learning its parameter and result types, from
/// which the input and output schemas are made), and what it touches is inspected. The tool waits
/// for approval.
#[utoipa::path(
    operation_id = "backends.tools.create",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    request_body = SqlToolIn,
    responses(
        (status = 201, body = SqlToolOut),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[post("/orgs/{org}/backends/{backend_id}/tools")]
pub async fn create_sql_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
    body: ValidJson<SqlToolIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Developer)?;
    let (_, backend_id) = path.into_inner();
    let body = body.0;
    check_text(&body.name, &body.description)?;
    let org = member.scope.org_id();
    let backend = load_backend(&state, &member, backend_id).await?;
    let config = hosted::backend_config(&state, org, &backend)?;
    let access: Access = body.access.into();
    let v = hosted::validate(
        &config,
        &body.name,
        &body.description,
        &body.sql,
        access,
        body.destructive,
        &body.parameter_descriptions,
    )
    .await?;
    let mut tx = member.begin(&state).await?;
    backends::get_for_update(&mut tx, backend_id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    let row = backends::create_tool(
        &mut tx,
        backend_id,
        &SqlToolFields {
            name: &body.name,
            sql_text: &body.sql,
            access: access.as_str(),
            destructive: body.destructive,
            definition: &v.definition.definition,
            definition_hash: &v.hash,
            target: &v.target,
            inspection: &v.inspection,
        },
    )
    .await
    .map_err(|e| match e.conflict_constraint() {
        Some(_) => ApiError::conflict("name_taken", "the backend already has a tool with this name"),
        None => e.into(),
    })?;
    let event = changes::event(&member, "sql_tool.create")
        .target("tool", row.id)
        .details(changes::before_after(None, Some(audit_view(&row))));
    changes::commit_audited(tx, &[event]).await?;
    Ok(HttpResponse::Created().json(tool_out(&backend, &row)))
}

/// One SQL tool.
#[utoipa::path(
    operation_id = "backends.tools.get",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid), ("tool_id" = String, Path, format = Uuid)),
    responses((status = 200, body = SqlToolOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/backends/{backend_id}/tools/{tool_id}")]
pub async fn get_sql_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId, ToolId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, backend_id, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let (tool, backend) = hosted::tool_and_backend(&mut tx, id)
        .await?
        .filter(|(t, _)| t.backend_id == backend_id)
        .ok_or(ApiError::NotFound("tool"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(tool_out(&backend, &tool)))
}

/// Change a SQL tool; it is validated again. An approved tool whose definition changes is
/// withheld until approved again.
#[utoipa::path(
    operation_id = "backends.tools.update",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid), ("tool_id" = String, Path, format = Uuid)),
    request_body = SqlToolPatch,
    responses(
        (status = 200, body = SqlToolOut),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[patch("/orgs/{org}/backends/{backend_id}/tools/{tool_id}")]
pub async fn update_sql_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId, ToolId)>,
    body: ValidJson<SqlToolPatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Developer)?;
    let (_, backend_id, id) = path.into_inner();
    let patch = body.0;
    let org = member.scope.org_id();
    let mut tx = member.begin(&state).await?;
    let (before, backend) = hosted::tool_and_backend(&mut tx, id)
        .await?
        .filter(|(t, _)| t.backend_id == backend_id)
        .ok_or(ApiError::NotFound("tool"))?;
    tx.commit().await?;
    let name = patch.name.clone().unwrap_or_else(|| before.name.clone());
    let description = patch.description.clone().unwrap_or_else(|| {
        before
            .definition
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    });
    check_text(&name, &description)?;
    let sql = patch.sql.clone().unwrap_or_else(|| before.sql_text.clone());
    let access: Access = match patch.access {
        Some(a) => a.into(),
        None => Access::parse(&before.sql_access).unwrap_or(Access::Read),
    };
    let destructive = patch.destructive.unwrap_or(before.sql_destructive);
    let descriptions = patch
        .parameter_descriptions
        .clone()
        .unwrap_or_else(|| hosted::parameter_descriptions(&before.definition));
    let config = hosted::backend_config(&state, org, &backend)?;
    let v = hosted::validate(
        &config,
        &name,
        &description,
        &sql,
        access,
        destructive,
        &descriptions,
    )
    .await?;
    let mut tx = member.begin(&state).await?;
    backends::get_tool(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("tool"))?;
    let after = backends::update_tool(
        &mut tx,
        id,
        &SqlToolFields {
            name: &name,
            sql_text: &sql,
            access: access.as_str(),
            destructive,
            definition: &v.definition.definition,
            definition_hash: &v.hash,
            target: &v.target,
            inspection: &v.inspection,
        },
    )
    .await
    .map_err(|e| match e.conflict_constraint() {
        Some(_) => ApiError::conflict("name_taken", "the backend already has a tool with this name"),
        None => e.into(),
    })?;
    let event = changes::event(&member, "sql_tool.update")
        .target("tool", id)
        .details(changes::before_after(
            Some(audit_view(&before)),
            Some(audit_view(&after)),
        ));
    if before.status() != after.status()
        || before.status() == gatehouse_db::repos::tools::ToolStatus::Approved
    {
        changes::commit_config_change(&state, tx, &[event]).await?;
    } else {
        changes::commit_audited(tx, &[event]).await?;
    }
    Ok(HttpResponse::Ok().json(tool_out(&backend, &after)))
}

/// Delete a SQL tool; endpoints stop exposing it.
#[utoipa::path(
    operation_id = "backends.tools.delete",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid), ("tool_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/backends/{backend_id}/tools/{tool_id}")]
pub async fn delete_sql_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId, ToolId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Developer)?;
    let (_, backend_id, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let (before, _) = hosted::tool_and_backend(&mut tx, id)
        .await?
        .filter(|(t, _)| t.backend_id == backend_id)
        .ok_or(ApiError::NotFound("tool"))?;
    backends::delete_tool(&mut tx, id).await?;
    let event = changes::event(&member, "sql_tool.delete")
        .target("tool", id)
        .details(changes::before_after(Some(audit_view(&before)), None));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Inspect the tool on its backend now: the relations it touches, whether each has row-level
/// security enabled and forced with policies, whether the tool role can bypass it, and what
/// blocks publication.
#[utoipa::path(
    operation_id = "backends.tools.inspect",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid), ("tool_id" = String, Path, format = Uuid)),
    responses((status = 200, body = InspectionOut), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[post("/orgs/{org}/backends/{backend_id}/tools/{tool_id}/inspect")]
pub async fn inspect_sql_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId, ToolId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Developer)?;
    let (_, backend_id, id) = path.into_inner();
    let org = member.scope.org_id();
    let mut tx = member.begin(&state).await?;
    let (tool, backend) = hosted::tool_and_backend(&mut tx, id)
        .await?
        .filter(|(t, _)| t.backend_id == backend_id)
        .ok_or(ApiError::NotFound("tool"))?;
    let neutral = backends::reference_tables(&mut tx, backend_id).await?;
    tx.commit().await?;
    let config = hosted::backend_config(&state, org, &backend)?;
    let v = hosted::revalidate(&config, &tool).await?;
    let mut tx = member.begin(&state).await?;
    backends::record_inspection(&mut tx, id, &v.inspection).await?;
    tx.commit().await?;
    let neutral: std::collections::BTreeSet<String> = neutral.into_iter().collect();
    let mut blocking = v.definition.inspection.blocking(&neutral);
    if v.hash != tool.definition_hash {
        blocking.push(
            "the backend now describes the tool differently (its schema changed): update the tool".into(),
        );
    }
    Ok(HttpResponse::Ok().json(InspectionOut {
        inspection: v.inspection,
        blocking,
    }))
}
