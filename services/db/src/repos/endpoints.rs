//! Endpoints: named selections of domain servers published as governed MCP endpoints.

use serde::Serialize;
use time::OffsetDateTime;

use gatehouse_core::ids::EndpointId;

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: EndpointId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub rate_limits: serde_json::Value,
    /// False: the tools of a single-server endpoint keep their own names.
    pub namespace_tools: bool,
    pub expose_prompts: bool,
    pub prompts_scope: Option<String>,
    pub expose_resources: bool,
    pub resources_scope: Option<String>,
    /// Vendor methods forwarded beyond those Gatehouse understands (names or `prefix/*`).
    pub extra_methods: Vec<String>,
    /// Challenges and metadata name every scope of the endpoint (not only those to start with).
    pub publish_scopes: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, slug, name, description, rate_limits, namespace_tools, expose_prompts, prompts_scope, \
                       expose_resources, resources_scope, extra_methods, publish_scopes, created_at, updated_at";

/// How an endpoint exposes tool names, prompts and resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exposure {
    pub namespace_tools: bool,
    pub expose_prompts: bool,
    pub prompts_scope: Option<String>,
    pub expose_resources: bool,
    pub resources_scope: Option<String>,
}

impl Default for Exposure {
    fn default() -> Self {
        Self {
            namespace_tools: true,
            expose_prompts: false,
            prompts_scope: None,
            expose_resources: false,
            resources_scope: None,
        }
    }
}

impl EndpointRow {
    pub fn exposure(&self) -> Exposure {
        Exposure {
            namespace_tools: self.namespace_tools,
            expose_prompts: self.expose_prompts,
            prompts_scope: self.prompts_scope.clone(),
            expose_resources: self.expose_resources,
            resources_scope: self.resources_scope.clone(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        Protocol {
            extra_methods: self.extra_methods.clone(),
            publish_scopes: self.publish_scopes,
        }
    }
}

/// Sets how the endpoint exposes tool names, prompts and resources.
pub async fn set_exposure(
    tx: &mut TenantTx,
    id: EndpointId,
    exposure: &Exposure,
) -> DbResult<Option<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE endpoints SET namespace_tools = $3, expose_prompts = $4, prompts_scope = $5,
                expose_resources = $6, resources_scope = $7, updated_at = now()
          WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(exposure.namespace_tools)
    .bind(exposure.expose_prompts)
    .bind(&exposure.prompts_scope)
    .bind(exposure.expose_resources)
    .bind(&exposure.resources_scope)
    .fetch_optional(tx.conn())
    .await?)
}

/// What an endpoint says to callers about methods and scopes beyond its tools.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Protocol {
    pub extra_methods: Vec<String>,
    pub publish_scopes: bool,
}

/// Sets the endpoint's extra methods and whether it publishes every scope name (validated by
/// the caller).
pub async fn set_protocol(
    tx: &mut TenantTx,
    id: EndpointId,
    protocol: &Protocol,
) -> DbResult<Option<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE endpoints SET extra_methods = $3, publish_scopes = $4, updated_at = now()
          WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(&protocol.extra_methods)
    .bind(protocol.publish_scopes)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn create(
    tx: &mut TenantTx,
    slug: &str,
    name: &str,
    description: &str,
    rate_limits: &serde_json::Value,
) -> DbResult<EndpointRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO endpoints (id, org_id, slug, name, description, rate_limits)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(EndpointId::new())
    .bind(org_id)
    .bind(slug)
    .bind(name)
    .bind(description)
    .bind(rate_limits)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM endpoints WHERE org_id = $1 ORDER BY slug"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn find_by_slug(tx: &mut TenantTx, slug: &str) -> DbResult<Option<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM endpoints WHERE org_id = $1 AND slug = $2"
    )))
    .bind(org_id)
    .bind(slug)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: EndpointId) -> DbResult<Option<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM endpoints WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Updates the mutable fields (the slug is immutable: it is part of the endpoint's URL, which is
/// the audience of every token issued for it).
pub async fn update(
    tx: &mut TenantTx,
    id: EndpointId,
    name: &str,
    description: &str,
    rate_limits: &serde_json::Value,
) -> DbResult<Option<EndpointRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE endpoints SET name = $3, description = $4, rate_limits = $5, updated_at = now()
          WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(rate_limits)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn delete(tx: &mut TenantTx, id: EndpointId) -> DbResult<bool> {
    let org_id = tx.org_id();
    let done = sqlx::query("DELETE FROM endpoints WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// One domain server combined into an endpoint: all its approved tools, or only `tool_ids`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointServer {
    pub server_id: gatehouse_core::ids::ServerId,
    pub all_tools: bool,
    pub tool_ids: Vec<gatehouse_core::ids::ToolId>,
}

/// The servers of an endpoint, by server id.
pub async fn servers(tx: &mut TenantTx, id: EndpointId) -> DbResult<Vec<EndpointServer>> {
    let org_id = tx.org_id();
    let rows: Vec<(
        gatehouse_core::ids::ServerId,
        bool,
        Vec<gatehouse_core::ids::ToolId>,
    )> = sqlx::query_as(
        "SELECT es.server_id, es.all_tools,
                COALESCE((SELECT array_agg(et.tool_id ORDER BY et.tool_id)
                            FROM endpoint_tools et JOIN tools t ON t.org_id = et.org_id AND t.id = et.tool_id
                           WHERE et.org_id = es.org_id AND et.endpoint_id = es.endpoint_id
                             AND t.server_id = es.server_id), '{}')
           FROM endpoint_servers es
          WHERE es.org_id = $1 AND es.endpoint_id = $2
          ORDER BY es.server_id",
    )
    .bind(org_id)
    .bind(id)
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(server_id, all_tools, tool_ids)| EndpointServer {
            server_id,
            all_tools,
            tool_ids,
        })
        .collect())
}

/// Replaces the endpoint's selection of servers and tools. The caller has checked that every
/// server exists and every listed tool belongs to its server.
pub async fn set_servers(tx: &mut TenantTx, id: EndpointId, selection: &[EndpointServer]) -> DbResult<()> {
    let org_id = tx.org_id();
    // The selection of backends' tools (`backends::set_endpoint_backends`) stays.
    sqlx::query(
        "DELETE FROM endpoint_tools et USING tools t
          WHERE et.org_id = $1 AND et.endpoint_id = $2 AND t.org_id = et.org_id AND t.id = et.tool_id
            AND t.kind = 'upstream'",
    )
    .bind(org_id)
    .bind(id)
    .execute(tx.conn())
    .await?;
    sqlx::query("DELETE FROM endpoint_servers WHERE org_id = $1 AND endpoint_id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    for server in selection {
        sqlx::query(
            "INSERT INTO endpoint_servers (org_id, endpoint_id, server_id, all_tools) VALUES ($1, $2, $3, $4)",
        )
        .bind(org_id)
        .bind(id)
        .bind(server.server_id)
        .bind(server.all_tools)
        .execute(tx.conn())
        .await?;
        if !server.all_tools && !server.tool_ids.is_empty() {
            sqlx::query(
                "INSERT INTO endpoint_tools (org_id, endpoint_id, tool_id)
                 SELECT $1, $2, t FROM UNNEST($3::uuid[]) AS t ON CONFLICT DO NOTHING",
            )
            .bind(org_id)
            .bind(id)
            .bind(&server.tool_ids)
            .execute(tx.conn())
            .await?;
        }
    }
    sqlx::query("UPDATE endpoints SET updated_at = now() WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(())
}
