//! Endpoints: named selections of domain servers (all their approved tools, or a chosen subset),
//! with rate limits, published at `{dataplane public URL}/{org}/{endpoint}/mcp`, and ready-to-paste
//! client configuration for them.

use std::collections::HashSet;

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{EndpointId, ServerId, ToolId};
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::{Limit, MAX_EXTRA_METHODS, RateLimits, extra_method_problem};
use gatehouse_db::TenantTx;
use gatehouse_db::repos::endpoints::{self, EndpointRow, EndpointServer, Exposure, Protocol};
use gatehouse_db::repos::snapshot::exposed_tools;
use gatehouse_db::repos::tools::{self, ToolFilter};
use gatehouse_db::repos::{orgs, scopes, servers};

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;
use crate::validate;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_endpoints)
        .service(create_endpoint)
        .service(get_endpoint)
        .service(update_endpoint)
        .service(set_endpoint_servers)
        .service(delete_endpoint)
        .service(endpoint_client_config);
}

/// A domain server combined into an endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointServerIn {
    pub server_id: ServerId,
    /// Expose only these tools of the server; absent (or null) exposes all its approved tools.
    #[serde(default)]
    pub tool_ids: Option<Vec<ToolId>>,
}

/// Whether, and to whom, an endpoint exposes its servers' prompts or resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposureIn {
    pub enabled: bool,
    /// The scope a caller needs (absent: any caller authorized for the endpoint). The same rule
    /// decides listing and use.
    #[serde(default)]
    pub scope: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// URL path segment, immutable: `{dataplane}/{org}/{slug}/mcp` is every token's audience.
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Absent: the rate limits of the org's plan (`rate_limit_defaults`; none on plans without).
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    #[serde(default)]
    pub servers: Vec<EndpointServerIn>,
    /// Prefix tool names with their server's slug (`orders__get_order`). May be false only while
    /// the endpoint has a single server: names of several servers could shadow each other.
    #[serde(default = "default_true")]
    pub namespace_tools: bool,
    #[serde(default)]
    pub prompts: ExposureIn,
    #[serde(default)]
    pub resources: ExposureIn,
    /// Vendor methods forwarded to the upstreams beyond the MCP methods Gatehouse understands
    /// (which every other method is refused with JSON-RPC -32601): exact method names, or
    /// prefixes written `prefix/*`; at most 32, none in a namespace of MCP itself.
    #[serde(default)]
    pub extra_methods: Vec<String>,
    /// Name every scope that grants something here in 401 challenges and the protected-resource
    /// metadata. By default they name only the scopes any member may hold (minimum role viewer).
    #[serde(default)]
    pub publish_scopes: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub rate_limits: Option<RateLimits>,
    pub namespace_tools: Option<bool>,
    pub prompts: Option<ExposureIn>,
    pub resources: Option<ExposureIn>,
    /// Replaces the endpoint's extra methods.
    pub extra_methods: Option<Vec<String>>,
    pub publish_scopes: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointServersIn {
    /// The complete selection (replaces the current one).
    pub servers: Vec<EndpointServerIn>,
}

/// A tool as exposed at the endpoint.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ExposedToolOut {
    pub tool_id: ToolId,
    pub server_id: ServerId,
    /// `<server slug>__<tool name>` (or the tool's own name on a single-server endpoint that
    /// does not namespace).
    pub exposed_name: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndpointServerOut {
    pub server_id: ServerId,
    /// All approved tools of the server, or only `tool_ids`.
    pub all_tools: bool,
    pub tool_ids: Vec<ToolId>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    pub id: EndpointId,
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The MCP endpoint URL (and the resource every token for it is bound to).
    pub url: String,
    pub rate_limits: RateLimits,
    /// Tool names carry their server's slug (always, when the endpoint has several servers).
    pub namespace_tools: bool,
    pub prompts: ExposureIn,
    pub resources: ExposureIn,
    /// Vendor methods forwarded beyond those Gatehouse understands (names or `prefix/*`).
    pub extra_methods: Vec<String>,
    /// Challenges and metadata name every scope of the endpoint, not only those to start with.
    pub publish_scopes: bool,
    pub servers: Vec<EndpointServerOut>,
    /// Approved tools served at this endpoint now, in the order `tools/list` serves them: by
    /// server, then as the server lists them.
    pub tools: Vec<ExposedToolOut>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// Ready-to-paste client configuration for an endpoint.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ClientConfigOut {
    pub url: String,
    /// A command for Claude Code.
    pub claude_code: String,
    /// Contents of `.vscode/mcp.json`.
    #[schema(value_type = Object)]
    pub vscode: Value,
    /// Contents of Cursor's `mcp.json` (`~/.cursor/mcp.json` or `.cursor/mcp.json`).
    #[schema(value_type = Object)]
    pub cursor: Value,
}

const MAX_PER_MINUTE: u32 = 1_000_000;

fn check_limit(field: &str, limit: &Limit) -> ApiResult<()> {
    if limit.per_minute == 0 || limit.per_minute > MAX_PER_MINUTE {
        return Err(ApiError::invalid(
            format!("{field}.per_minute"),
            format!("must be between 1 and {MAX_PER_MINUTE}"),
        ));
    }
    if limit.burst > MAX_PER_MINUTE {
        return Err(ApiError::invalid(
            format!("{field}.burst"),
            format!("must be at most {MAX_PER_MINUTE}"),
        ));
    }
    Ok(())
}

/// Validates rate limits; `exposed` are the names tools could have at this endpoint (per-tool
/// limits must name one of them, unless the endpoint exposes nothing yet).
/// The org's plan's default rate limits, as stored on a new endpoint. Parsed and checked like
/// limits a request sends, so a malformed plan value fails here loudly instead of reaching the
/// dataplane.
async fn plan_rate_limits(tx: &mut TenantTx) -> ApiResult<Value> {
    let stored = orgs::plan_rate_limit_defaults(tx).await?;
    let limits: RateLimits = serde_json::from_value(stored)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the plan's rate_limit_defaults: {e}")))?;
    check_rate_limits(&limits)?;
    serde_json::to_value(&limits).map_err(|e| ApiError::Internal(e.into()))
}

pub(crate) fn check_rate_limits(limits: &RateLimits) -> ApiResult<()> {
    if let Some(l) = &limits.per_org {
        check_limit("rate_limits.per_org", l)?;
    }
    if let Some(l) = &limits.per_subject {
        check_limit("rate_limits.per_subject", l)?;
    }
    if limits.per_tool.len() > 1000 {
        return Err(ApiError::invalid(
            "rate_limits.per_tool",
            "must have at most 1000 entries",
        ));
    }
    for (name, l) in &limits.per_tool {
        if name.is_empty() || name.len() > 200 || !name.contains("__") {
            return Err(ApiError::invalid(
                "rate_limits.per_tool",
                format!("{name:?} is not an exposed tool name (`<server slug>__<tool>`)"),
            ));
        }
        check_limit(&format!("rate_limits.per_tool.{name}"), l)?;
    }
    Ok(())
}

/// Validates how an endpoint exposes names, prompts and resources, given its number of servers.
async fn checked_exposure(
    tx: &mut TenantTx,
    namespace_tools: bool,
    prompts: &ExposureIn,
    resources: &ExposureIn,
    server_count: usize,
) -> ApiResult<Exposure> {
    if !namespace_tools && server_count > 1 {
        return Err(ApiError::invalid(
            "namespace_tools",
            "can be false only while the endpoint has a single server (names of several servers could shadow each other)",
        ));
    }
    let known = scopes::list(tx).await?;
    for (field, exposure) in [("prompts.scope", prompts), ("resources.scope", resources)] {
        if let Some(scope) = &exposure.scope
            && !known.iter().any(|s| &s.name == scope)
        {
            return Err(ApiError::invalid(
                field,
                format!("{scope:?} is not a scope of this org"),
            ));
        }
    }
    Ok(Exposure {
        namespace_tools,
        expose_prompts: prompts.enabled,
        prompts_scope: prompts.scope.clone(),
        expose_resources: resources.enabled,
        resources_scope: resources.scope.clone(),
    })
}

/// Validates extra methods: each a method name or `prefix/*` outside MCP's own namespaces, at
/// most [`MAX_EXTRA_METHODS`]; returned sorted without duplicates.
fn checked_extra_methods(methods: &[String]) -> ApiResult<Vec<String>> {
    if methods.len() > MAX_EXTRA_METHODS {
        return Err(ApiError::invalid(
            "extra_methods",
            format!("must list at most {MAX_EXTRA_METHODS} methods"),
        ));
    }
    for (i, method) in methods.iter().enumerate() {
        if let Some(problem) = extra_method_problem(method) {
            return Err(ApiError::invalid(format!("extra_methods[{i}]"), problem));
        }
    }
    let mut out = methods.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

fn exposure_out(enabled: bool, scope: &Option<String>) -> ExposureIn {
    ExposureIn {
        enabled,
        scope: scope.clone(),
    }
}

/// Validates a server selection against the org's servers and tools.
async fn checked_selection(
    tx: &mut TenantTx,
    selection: &[EndpointServerIn],
) -> ApiResult<Vec<EndpointServer>> {
    if selection.len() > 100 {
        return Err(ApiError::invalid("servers", "must list at most 100 servers"));
    }
    let known = servers::list(tx).await?;
    let all_tools = tools::list(tx, &ToolFilter::default()).await?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(selection.len());
    for (i, item) in selection.iter().enumerate() {
        if !known.iter().any(|s| s.id == item.server_id) {
            return Err(ApiError::invalid(
                format!("servers[{i}].server_id"),
                "is not a server of this org",
            ));
        }
        if !seen.insert(item.server_id) {
            return Err(ApiError::invalid(
                format!("servers[{i}].server_id"),
                "is listed twice",
            ));
        }
        let mut tool_ids = item.tool_ids.clone().unwrap_or_default();
        tool_ids.sort();
        tool_ids.dedup();
        for id in &tool_ids {
            if !all_tools
                .iter()
                .any(|t| t.id == *id && t.server_id == Some(item.server_id))
            {
                return Err(ApiError::invalid(
                    format!("servers[{i}].tool_ids"),
                    format!("{id} is not a tool of this server"),
                ));
            }
        }
        out.push(EndpointServer {
            server_id: item.server_id,
            all_tools: item.tool_ids.is_none(),
            tool_ids,
        });
    }
    Ok(out)
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

/// Set exactly which servers (and which of their tools) the endpoint combines.
#[utoipa::path(
    operation_id = "endpoints.set_servers",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    request_body = EndpointServersIn,
    responses(
        (status = 200, body = EndpointOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[put("/orgs/{org}/endpoints/{endpoint_id}/servers")]
pub async fn set_endpoint_servers(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
    body: ValidJson<EndpointServersIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = endpoints::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let before = endpoints::servers(&mut tx, id).await?;
    let selection = checked_selection(&mut tx, &body.servers).await?;
    if !row.namespace_tools && selection.len() > 1 {
        return Err(ApiError::invalid(
            "servers",
            "this endpoint does not namespace tool names, so it can combine only one server; set namespace_tools first",
        ));
    }
    endpoints::set_servers(&mut tx, id, &selection).await?;
    let out = endpoint_out(&state, &member, &mut tx, &row).await?;
    let event = changes::event(&member, "endpoint.servers")
        .target("endpoint", id)
        .details(changes::before_after(Some(json!(before)), Some(json!(selection))));
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

/// Ready-to-paste configuration for Claude Code, VS Code and Cursor. Clients log in through
/// Gatehouse's OAuth flow the first time they connect.
#[utoipa::path(
    operation_id = "endpoints.client_config",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ClientConfigOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/endpoints/{endpoint_id}/client-config")]
pub async fn endpoint_client_config(
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
    tx.commit().await?;
    let url = state.cfg.endpoint_url(&member.org.slug, &row.slug);
    Ok(HttpResponse::Ok().json(client_config(&member.org.slug, &row.slug, &url)))
}

/// The client configuration for an endpoint. The server name is `<org>-<endpoint>`: letters,
/// digits and `-` only, so it pastes safely into a shell.
pub fn client_config(org_slug: &str, endpoint_slug: &str, url: &str) -> ClientConfigOut {
    let name = format!("{org_slug}-{endpoint_slug}");
    ClientConfigOut {
        url: url.to_owned(),
        claude_code: format!("claude mcp add --transport http {name} {url}"),
        vscode: json!({ "servers": { name.clone(): { "type": "http", "url": url } } }),
        cursor: json!({ "mcpServers": { name: { "url": url } } }),
    }
}
