//! The dataplane's configuration snapshot of one org, read from the tenant tables.
//!
//! Call [`build`] in a transaction from `TenantTx::begin_consistent_read`, so every table is read
//! at one instant. The version is read in the same snapshot; a change committed later bumps the
//! version and is published, so the dataplane never keeps a stale snapshot believing it current.

use serde_json::Value;
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, ServerId, ServiceTokenId, ToolId};
use gatehouse_core::snapshot::{
    BackendSnapshot, BackendTls, CapabilityGrant, ConfigChange, EndpointSnapshot, EndpointTool, OrgSnapshot,
    RateLimits, Revocation, RevocationKind, ScopeSnapshot, Sealed, ServerSnapshot, ServiceTokenSnapshot,
    SqlToolTarget, ToolTarget, UpstreamAuth, namespaced_tool_name,
};
use gatehouse_core::upstream::CredentialKind;

use crate::error::{DbError, DbResult};
use crate::repos::{backends, caller_attributes, endpoints, scopes, servers};
use crate::tenant::TenantTx;

/// An approved tool exposed at an endpoint.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ExposedTool {
    pub endpoint_id: EndpointId,
    pub tool_id: ToolId,
    pub server_id: ServerId,
    pub server_slug: String,
    pub name: String,
    pub approved_definition: Value,
    pub approved_hash: Vec<u8>,
    /// Where the server listed the tool in its latest listing (1 = first); `None` until the
    /// server is synced again after the column was added.
    pub upstream_position: Option<i32>,
    /// Whether names carry the server's namespace: always, unless the endpoint turned it off and
    /// has a single server (so nothing can be shadowed).
    pub namespaced: bool,
}

impl ExposedTool {
    /// Where the tool comes in its endpoint's `tools/list`: by endpoint, then server, then as
    /// the server lists it (tools without a recorded position last, by name).
    fn listing_order(&self) -> (EndpointId, &str, bool, Option<i32>, &str) {
        (
            self.endpoint_id,
            &self.server_slug,
            self.upstream_position.is_none(),
            self.upstream_position,
            &self.name,
        )
    }

    pub fn exposed_name(&self) -> String {
        if self.namespaced {
            namespaced_tool_name(&self.server_slug, &self.name)
        } else {
            self.name.clone()
        }
    }
}

/// The approved tools exposed at one endpoint (or at every endpoint of the org), sorted by
/// endpoint, then server (by slug), then in the order the server lists them (tools without a
/// recorded position last, by name). A tool that is not `approved` (pending, changed, rejected,
/// removed) is never exposed.
pub async fn exposed_tools(tx: &mut TenantTx, endpoint: Option<EndpointId>) -> DbResult<Vec<ExposedTool>> {
    let org_id = tx.org_id();
    let mut rows: Vec<ExposedTool> = sqlx::query_as(
        "SELECT es.endpoint_id, t.id AS tool_id, s.id AS server_id, s.slug AS server_slug, t.name,
                t.approved_definition, t.approved_hash, t.upstream_position,
                (e.namespace_tools
                 OR (SELECT count(*) FROM endpoint_servers o WHERE o.org_id = es.org_id AND o.endpoint_id = es.endpoint_id)
                  + (SELECT count(*) FROM endpoint_backends o WHERE o.org_id = es.org_id AND o.endpoint_id = es.endpoint_id) > 1)
                    AS namespaced
           FROM endpoint_servers es
           JOIN endpoints e ON e.org_id = es.org_id AND e.id = es.endpoint_id
           JOIN domain_servers s ON s.org_id = es.org_id AND s.id = es.server_id
           JOIN tools t ON t.org_id = es.org_id AND t.server_id = es.server_id
          WHERE es.org_id = $1
            AND ($2::uuid IS NULL OR es.endpoint_id = $2)
            AND t.status = 'approved'
            AND t.approved_definition IS NOT NULL AND t.approved_hash IS NOT NULL
            AND (es.all_tools OR EXISTS (
                    SELECT 1 FROM endpoint_tools et
                     WHERE et.org_id = es.org_id AND et.endpoint_id = es.endpoint_id AND et.tool_id = t.id))",
    )
    .bind(org_id)
    .bind(endpoint)
    .fetch_all(tx.conn())
    .await?;
    rows.sort_by(|a, b| a.listing_order().cmp(&b.listing_order()));
    Ok(rows)
}

/// `service_tokens` columns read into the snapshot.
type TokenRow = (
    ServiceTokenId,
    EndpointId,
    Vec<u8>,
    String,
    Vec<String>,
    Option<OffsetDateTime>,
);

/// The org's current configuration version.
pub async fn version(tx: &mut TenantTx) -> DbResult<i64> {
    crate::repos::orgs::config_version(tx).await
}

fn corrupt(what: &str) -> DbError {
    DbError::CheckViolation {
        constraint: format!("snapshot: {what}"),
    }
}

/// Converts a stored server into its snapshot form (credential still sealed).
pub fn server_snapshot(row: &servers::ServerRow) -> DbResult<ServerSnapshot> {
    let sealed = || {
        row.credential_enc
            .clone()
            .map(Sealed)
            .ok_or_else(|| corrupt("domain_servers.credential_enc"))
    };
    let auth = match row.auth_kind {
        CredentialKind::None => UpstreamAuth::None,
        CredentialKind::Bearer => UpstreamAuth::Bearer { token: sealed()? },
        CredentialKind::Header => UpstreamAuth::Header {
            name: row
                .auth_header_name
                .clone()
                .ok_or_else(|| corrupt("domain_servers.auth_header_name"))?,
            value: sealed()?,
        },
        CredentialKind::OauthClientCredentials => UpstreamAuth::OauthClientCredentials {
            token_url: row
                .oauth_token_url
                .clone()
                .ok_or_else(|| corrupt("domain_servers.oauth_token_url"))?,
            client_id: row
                .oauth_client_id
                .clone()
                .ok_or_else(|| corrupt("domain_servers.oauth_client_id"))?,
            client_secret: sealed()?,
            scope: row.oauth_scope.clone(),
        },
    };
    Ok(ServerSnapshot {
        id: row.id,
        slug: row.slug.clone(),
        url: row.url.clone(),
        transport: row.transport,
        auth,
        send_caller_assertion: row.send_caller_assertion,
    })
}

/// Builds the org's snapshot. `endpoint_url(org_slug, endpoint_slug)` gives each endpoint's
/// canonical resource URL (from configuration).
pub async fn build(tx: &mut TenantTx, endpoint_url: impl Fn(&str, &str) -> String) -> DbResult<OrgSnapshot> {
    let org_id = tx.org_id();
    let (version, log_tool_arguments): (i64, bool) =
        sqlx::query_as("SELECT config_version, log_tool_arguments FROM org_settings WHERE org_id = $1")
            .bind(org_id)
            .fetch_one(tx.conn())
            .await?;
    let (slug, hard_limit_calls, suspended): (String, Option<i64>, bool) = sqlx::query_as(
        "SELECT o.slug, p.hard_limit_calls, o.suspended_at IS NOT NULL
           FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1",
    )
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?;

    let endpoint_rows = endpoints::list(tx).await?;
    let exposed = exposed_tools(tx, None).await?;
    let exposed_sql = backends::exposed_sql_tools(tx, None).await?;
    let scope_rows = scopes::list(tx).await?;
    let mut endpoints = Vec::with_capacity(endpoint_rows.len());
    for row in endpoint_rows {
        let rate_limits: RateLimits =
            serde_json::from_value(row.rate_limits.clone()).map_err(|_| corrupt("endpoints.rate_limits"))?;
        let mut tools: Vec<EndpointTool> = exposed
            .iter()
            .filter(|t| t.endpoint_id == row.id)
            .map(|t| EndpointTool {
                tool_id: t.tool_id,
                exposed_name: t.exposed_name(),
                target: ToolTarget::Upstream {
                    server_id: t.server_id,
                    upstream_name: t.name.clone(),
                },
                approved_definition: t.approved_definition.clone(),
                approved_hash: hex::encode(&t.approved_hash),
            })
            .collect();
        // Hosted SQL tools come after the servers' tools, by backend and name. Backend slugs
        // cannot equal a server slug of the org, so names never collide; a tool that would is
        // left out rather than shadow another.
        for t in exposed_sql.iter().filter(|t| t.endpoint_id == row.id) {
            let exposed_name = if t.namespaced {
                namespaced_tool_name(&t.backend_slug, &t.name)
            } else {
                t.name.clone()
            };
            if tools.iter().any(|other| other.exposed_name == exposed_name) {
                continue;
            }
            let target: SqlToolTarget = serde_json::from_value(t.approved_sql_target.clone())
                .map_err(|_| corrupt("tools.approved_sql_target"))?;
            tools.push(EndpointTool {
                tool_id: t.tool_id,
                exposed_name,
                target: ToolTarget::Sql(target),
                approved_definition: t.approved_definition.clone(),
                approved_hash: hex::encode(&t.approved_hash),
            });
        }
        let scopes = scope_rows
            .iter()
            .map(|s| ScopeSnapshot {
                name: s.name.clone(),
                tool_ids: s
                    .tool_ids
                    .iter()
                    .copied()
                    .filter(|id| tools.iter().any(|t| t.tool_id == *id))
                    .collect(),
                min_role: s.min_role.parse().ok(),
            })
            .collect();
        let grant =
            |enabled: bool, scope: &Option<String>| enabled.then(|| CapabilityGrant { scope: scope.clone() });
        endpoints.push(EndpointSnapshot {
            prompts: grant(row.expose_prompts, &row.prompts_scope),
            resources: grant(row.expose_resources, &row.resources_scope),
            resource_url: endpoint_url(&slug, &row.slug),
            id: row.id,
            slug: row.slug,
            name: row.name,
            rate_limits,
            tools,
            scopes,
            extra_methods: row.extra_methods,
            publish_scopes: row.publish_scopes,
        });
    }

    let servers = servers::list(tx)
        .await?
        .iter()
        .map(server_snapshot)
        .collect::<DbResult<Vec<_>>>()?;

    let backends = backends::list(tx)
        .await?
        .into_iter()
        .filter_map(|b| {
            // A backend without a context key cannot sign a caller context: it serves nothing.
            let context_key = b.context_key_enc?;
            Some(BackendSnapshot {
                id: b.id,
                slug: b.slug,
                dsn: Sealed(b.dsn_enc),
                tls: BackendTls {
                    mode: b.tls_mode,
                    ca_pem: b.tls_ca_pem,
                },
                context_key: Sealed(context_key),
                allowed_schemas: b.allowed_schemas,
                allowed_functions: b.allowed_functions,
                statement_timeout_ms: b.statement_timeout_ms,
                max_rows: b.max_rows,
            })
        })
        .collect();

    let tokens: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, endpoint_id, token_hash, name, scopes, expires_at FROM service_tokens
              WHERE org_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
              ORDER BY id",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?;
    let service_tokens = tokens
        .into_iter()
        .map(
            |(id, endpoint_id, hash, name, scopes, expires_at)| ServiceTokenSnapshot {
                id,
                endpoint_id,
                token_hash: hex::encode(hash),
                name,
                scopes,
                expires_at,
            },
        )
        .collect();

    let revocation_rows: Vec<(String, String, OffsetDateTime, OffsetDateTime)> = sqlx::query_as(
        "SELECT kind, value, expires_at, revoked_at FROM token_revocations
          WHERE org_id = $1 AND expires_at > now() ORDER BY expires_at, id",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?;
    let revocations = revocation_rows
        .into_iter()
        .map(|(kind, value, expires_at, revoked_at)| {
            let kind = match kind.as_str() {
                "family" => RevocationKind::Family,
                "jti" => RevocationKind::Jti,
                "user" => RevocationKind::User,
                "client" => RevocationKind::Client,
                _ => return Err(corrupt("token_revocations.kind")),
            };
            Ok(Revocation {
                kind,
                value,
                expires_at,
                // A user's tokens are revoked up to the event; those they obtain later work.
                issued_before: (kind == RevocationKind::User).then_some(revoked_at),
            })
        })
        .collect::<DbResult<Vec<_>>>()?;
    let callers = caller_attributes::callers(tx).await?;

    Ok(OrgSnapshot {
        org_id,
        slug,
        version,
        log_tool_arguments,
        hard_limit_calls,
        suspended,
        endpoints,
        servers,
        backends,
        revocations,
        service_tokens,
        callers,
    })
}

/// The configuration version of one org (for the dataplane's cold start and reconciliation).
pub async fn org_version(tx: &mut TenantTx) -> DbResult<ConfigChange> {
    let version = version(tx).await?;
    Ok(ConfigChange {
        org_id: tx.org_id(),
        version,
    })
}
