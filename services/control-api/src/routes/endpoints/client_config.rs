//! Ready-to-paste client configuration (Claude Code, VS Code, Cursor) for an endpoint.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use gatehouse_core::ids::EndpointId;
use gatehouse_core::role::Role;
use gatehouse_db::repos::endpoints;

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

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
