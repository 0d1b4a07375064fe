//! What the authorization server reads about endpoints and scopes (written by the servers and
//! endpoints APIs): which endpoint a resource names, and which scopes grant something there.

use gatehouse_core::ids::EndpointId;

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointRef {
    pub id: EndpointId,
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointScope {
    pub name: String,
    pub description: String,
    pub min_role: String,
    /// Approved tools of the endpoint this scope grants.
    pub tool_count: i64,
}

pub async fn endpoint_by_slug(tx: &mut TenantTx, slug: &str) -> DbResult<Option<EndpointRef>> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_as("SELECT id, slug, name FROM endpoints WHERE org_id = $1 AND slug = $2")
            .bind(org_id)
            .bind(slug)
            .fetch_optional(tx.conn())
            .await?,
    )
}

pub async fn endpoint_by_id(tx: &mut TenantTx, id: EndpointId) -> DbResult<Option<EndpointRef>> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_as("SELECT id, slug, name FROM endpoints WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?,
    )
}

/// The org's scopes that grant at least one approved tool exposed at `endpoint`, by name.
pub async fn granting_scopes(tx: &mut TenantTx, endpoint: EndpointId) -> DbResult<Vec<EndpointScope>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT s.name, s.description, s.min_role, count(DISTINCT t.id) AS tool_count
           FROM scopes s
           JOIN scope_grants g ON g.org_id = s.org_id AND g.scope_id = s.id
           JOIN tools t ON t.org_id = g.org_id AND t.id = g.tool_id AND t.status = 'approved'
          WHERE s.org_id = $1
            AND (EXISTS (SELECT 1 FROM endpoint_tools et
                          WHERE et.org_id = t.org_id AND et.endpoint_id = $2 AND et.tool_id = t.id)
                 OR EXISTS (SELECT 1 FROM endpoint_servers es
                             WHERE es.org_id = t.org_id AND es.endpoint_id = $2
                               AND es.server_id = t.server_id AND es.all_tools)
                 OR EXISTS (SELECT 1 FROM endpoint_backends eb
                             WHERE eb.org_id = t.org_id AND eb.endpoint_id = $2
                               AND eb.backend_id = t.backend_id AND eb.all_tools))
          GROUP BY s.name, s.description, s.min_role
          ORDER BY s.name",
    )
    .bind(org_id)
    .bind(endpoint)
    .fetch_all(tx.conn())
    .await?)
}
