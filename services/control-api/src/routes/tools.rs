//! Tools of domain servers and their approval. Only an approved tool whose current definition is
//! the approved one is ever served; approving pins the definition by hash.

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{BackendId, ServerId, ToolId, UserId};
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::namespaced_tool_name;
use gatehouse_db::repos::tools::{self, DecisionRefused, ToolFilter, ToolRow, ToolStatus};
use gatehouse_db::repos::{backends, servers};

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ValidJson, ValidQuery};
use crate::poisoning::{ToolFlag, escape_invisible};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_tools)
        .service(list_server_tools)
        .service(get_tool)
        .service(approve_tool)
        .service(reject_tool)
        .service(decide_server_tools);
}

/// Approval state of a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatusOut {
    /// Seen, waiting for a decision; not served.
    Pending,
    /// Served, with the approved definition.
    Approved,
    /// The upstream definition drifted from the approved one: withheld until re-approved.
    Changed,
    /// Not served.
    Rejected,
    /// No longer offered upstream; not served.
    Removed,
}

impl From<ToolStatus> for ToolStatusOut {
    fn from(s: ToolStatus) -> Self {
        match s {
            ToolStatus::Pending => ToolStatusOut::Pending,
            ToolStatus::Approved => ToolStatusOut::Approved,
            ToolStatus::Changed => ToolStatusOut::Changed,
            ToolStatus::Rejected => ToolStatusOut::Rejected,
            ToolStatus::Removed => ToolStatusOut::Removed,
        }
    }
}

impl From<ToolStatusOut> for ToolStatus {
    fn from(s: ToolStatusOut) -> Self {
        match s {
            ToolStatusOut::Pending => ToolStatus::Pending,
            ToolStatusOut::Approved => ToolStatus::Approved,
            ToolStatusOut::Changed => ToolStatus::Changed,
            ToolStatusOut::Rejected => ToolStatus::Rejected,
            ToolStatusOut::Removed => ToolStatus::Removed,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ToolOut {
    pub id: ToolId,
    pub server_id: Option<ServerId>,
    /// Set for hosted SQL tools (their definition and inspection are under
    /// `/backends/{backend_id}/tools/{tool_id}`).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub backend_id: Option<BackendId>,
    /// The upstream's own name.
    pub name: String,
    /// The name it is exposed under at endpoints: `<server slug>__<name>`.
    pub exposed_name: String,
    pub status: ToolStatusOut,
    /// The latest definition seen upstream.
    #[schema(value_type = Object)]
    pub definition: Value,
    /// SHA-256 (hex) of the canonical pinned fields of `definition`.
    pub definition_hash: String,
    /// The description with invisible and control characters escaped (`\u{200b}`).
    pub description_escaped: Option<String>,
    /// The approved (pinned) definition: the only one ever served.
    #[schema(value_type = Option<Object>)]
    pub approved_definition: Option<Value>,
    pub approved_hash: Option<String>,
    /// Tool-poisoning heuristics on the latest definition.
    pub flags: Vec<ToolFlag>,
    pub decided_by: Option<UserId>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: OffsetDateTime,
}

fn tool_out(row: &ToolRow, server_slug: &str) -> ToolOut {
    ToolOut {
        id: row.id,
        server_id: row.server_id,
        backend_id: row.backend_id,
        name: row.name.clone(),
        exposed_name: namespaced_tool_name(server_slug, &row.name),
        status: row.status().into(),
        description_escaped: row
            .definition
            .get("description")
            .and_then(Value::as_str)
            .map(escape_invisible),
        definition: row.definition.clone(),
        definition_hash: hex::encode(&row.definition_hash),
        approved_definition: row.approved_definition.clone(),
        approved_hash: row.approved_hash.as_ref().map(hex::encode),
        flags: serde_json::from_value(row.flags.clone()).unwrap_or_default(),
        decided_by: row.decided_by,
        decided_at: row.decided_at,
        first_seen_at: row.first_seen_at,
        last_seen_at: row.last_seen_at,
    }
}

async fn with_slugs(tx: &mut gatehouse_db::TenantTx, rows: &[ToolRow]) -> ApiResult<Vec<ToolOut>> {
    let servers = servers::list(tx).await?;
    let backends = if rows.iter().any(|r| r.backend_id.is_some()) {
        backends::list(tx).await?
    } else {
        vec![]
    };
    Ok(rows
        .iter()
        .map(|row| {
            let slug = servers
                .iter()
                .find(|s| Some(s.id) == row.server_id)
                .map(|s| s.slug.as_str())
                .or_else(|| {
                    backends
                        .iter()
                        .find(|b| Some(b.id) == row.backend_id)
                        .map(|b| b.slug.as_str())
                })
                .unwrap_or("");
            tool_out(row, slug)
        })
        .collect())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ToolQuery {
    /// Only tools in this state.
    #[param(inline)]
    pub status: Option<ToolStatusOut>,
    /// Only tools of this server.
    pub server_id: Option<ServerId>,
}

/// Tools of every server of the org, optionally filtered.
#[utoipa::path(
    operation_id = "tools.list",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ToolQuery),
    responses((status = 200, body = Vec<ToolOut>), (status = 400, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/tools")]
pub async fn list_tools(
    state: web::Data<AppState>,
    member: OrgMember,
    query: ValidQuery<ToolQuery>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let rows = tools::list(
        &mut tx,
        &ToolFilter {
            server: query.server_id,
            status: query.status.map(Into::into),
        },
    )
    .await?;
    let out = with_slugs(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Tools of one server.
#[utoipa::path(
    operation_id = "servers.tools",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("server_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Vec<ToolOut>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/servers/{server_id}/tools")]
pub async fn list_server_tools(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServerId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, server_id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    servers::get(&mut tx, server_id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    let rows = tools::list(
        &mut tx,
        &ToolFilter {
            server: Some(server_id),
            status: None,
        },
    )
    .await?;
    let out = with_slugs(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out))
}

/// One tool, with its latest and approved definitions and its flags.
#[utoipa::path(
    operation_id = "tools.get",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("tool_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ToolOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/tools/{tool_id}")]
pub async fn get_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ToolId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = tools::get(&mut tx, id).await?.ok_or(ApiError::NotFound("tool"))?;
    let out = with_slugs(&mut tx, std::slice::from_ref(&row)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(&out[0]))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveIn {
    /// The `definition_hash` the approver reviewed; approval is refused (409) if the definition
    /// changed since.
    pub definition_hash: String,
}

fn decision_event(
    member: &OrgMember,
    action: &str,
    row: &ToolRow,
    from: ToolStatus,
) -> gatehouse_db::NewAuditEvent {
    changes::event(member, action).target("tool", row.id).details(json!({
        "tool": row.name,
        "server_id": row.server_id,
        "before": { "status": from.as_str() },
        "after": { "status": row.status().as_str(), "approved_hash": row.approved_hash.as_ref().map(hex::encode) },
    }))
}

fn refused(reason: DecisionRefused) -> ApiError {
    match reason {
        DecisionRefused::NotOffered => ApiError::conflict(
            "tool_removed",
            "the tool is no longer offered by its server; sync the server first",
        ),
        DecisionRefused::StaleDefinition => ApiError::conflict(
            "definition_changed",
            "the tool's definition changed since it was reviewed; review the new definition_hash",
        ),
    }
}

/// Approve a tool's current definition (pinning it by hash).
#[utoipa::path(
    operation_id = "tools.approve",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("tool_id" = String, Path, format = Uuid)),
    request_body = ApproveIn,
    responses(
        (status = 200, body = ToolOut),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[post("/orgs/{org}/tools/{tool_id}/approve")]
pub async fn approve_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ToolId)>,
    body: ValidJson<ApproveIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let expected = hex::decode(&body.definition_hash)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| ApiError::invalid("definition_hash", "must be 64 hexadecimal characters"))?;
    // A hosted SQL tool is published only through the gate (validated on its backend again,
    // every relation it touches protected by row-level security): outside any transaction.
    let inspection = crate::hosted::approval_gate(&state, &member, id, &expected).await?;
    let mut tx = member.begin(&state).await?;
    tools::get(&mut tx, id).await?.ok_or(ApiError::NotFound("tool"))?;
    if let Some(inspection) = &inspection {
        backends::record_inspection(&mut tx, id, inspection).await?;
    }
    let (row, from) = tools::approve(&mut tx, id, Some(&expected), member.current.user.id)
        .await?
        .map_err(refused)?;
    let out = with_slugs(&mut tx, std::slice::from_ref(&row)).await?;
    let event = decision_event(&member, "tool.approve", &row, from);
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(&out[0]))
}

/// Reject a tool: it is not served (whether or not it was approved before).
#[utoipa::path(
    operation_id = "tools.reject",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("tool_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ToolOut), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[post("/orgs/{org}/tools/{tool_id}/reject")]
pub async fn reject_tool(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ToolId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    tools::get(&mut tx, id).await?.ok_or(ApiError::NotFound("tool"))?;
    let (row, from) = tools::reject(&mut tx, id, member.current.user.id).await?;
    let out = with_slugs(&mut tx, std::slice::from_ref(&row)).await?;
    let event = decision_event(&member, "tool.reject", &row, from);
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(&out[0]))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionsIn {
    pub decision: Decision,
    /// The tools to decide; absent means every tool of the server waiting for a decision
    /// (pending or changed).
    #[serde(default)]
    pub tool_ids: Option<Vec<ToolId>>,
}

/// Approve or reject several tools of a server at once.
#[utoipa::path(
    operation_id = "servers.tools.decide",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("server_id" = String, Path, format = Uuid)),
    request_body = DecisionsIn,
    responses(
        (status = 200, body = Vec<ToolOut>),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[post("/orgs/{org}/servers/{server_id}/tools/decisions")]
pub async fn decide_server_tools(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServerId)>,
    body: ValidJson<DecisionsIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, server_id) = path.into_inner();
    let body = body.0;
    if body.tool_ids.as_ref().is_some_and(|ids| ids.len() > 1000) {
        return Err(ApiError::invalid("tool_ids", "must list at most 1000 tools"));
    }
    let mut tx = member.begin(&state).await?;
    servers::get(&mut tx, server_id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    let of_server = tools::list(
        &mut tx,
        &ToolFilter {
            server: Some(server_id),
            status: None,
        },
    )
    .await?;
    let targets: Vec<ToolId> = match &body.tool_ids {
        Some(ids) => {
            if let Some(missing) = ids.iter().find(|id| !of_server.iter().any(|t| t.id == **id)) {
                return Err(ApiError::invalid(
                    "tool_ids",
                    format!("{missing} is not a tool of this server"),
                ));
            }
            ids.clone()
        }
        None => of_server
            .iter()
            .filter(|t| t.status().awaits_decision())
            .map(|t| t.id)
            .collect(),
    };
    let mut decided = Vec::new();
    let mut events = Vec::new();
    for id in targets {
        let (row, from) = match body.decision {
            Decision::Approve => tools::approve(&mut tx, id, None, member.current.user.id)
                .await?
                .map_err(refused)?,
            Decision::Reject => tools::reject(&mut tx, id, member.current.user.id).await?,
        };
        let action = match body.decision {
            Decision::Approve => "tool.approve",
            Decision::Reject => "tool.reject",
        };
        events.push(decision_event(&member, action, &row, from));
        decided.push(row);
    }
    let out = with_slugs(&mut tx, &decided).await?;
    if events.is_empty() {
        tx.commit().await?;
    } else {
        changes::commit_config_change(&state, tx, &events).await?;
    }
    Ok(HttpResponse::Ok().json(out))
}
