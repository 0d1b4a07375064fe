//! Domain servers: upstream MCP servers an org registers, with their sealed credential.

use time::OffsetDateTime;

use gatehouse_core::ids::ServerId;
use gatehouse_core::upstream::{CredentialKind, UpstreamTransport};

use crate::error::DbResult;
use crate::tenant::TenantTx;

/// A domain server as stored. `credential_enc` is sealed with
/// `snapshot::server_credential_context(org, id)` and never leaves the control plane unsealed.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ServerRow {
    pub id: ServerId,
    pub slug: String,
    pub name: String,
    pub url: String,
    pub transport: UpstreamTransport,
    pub auth_kind: CredentialKind,
    pub auth_header_name: Option<String>,
    pub credential_enc: Option<Vec<u8>>,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_scope: Option<String>,
    pub send_caller_assertion: bool,
    pub last_synced_at: Option<OffsetDateTime>,
    pub last_sync_error: Option<String>,
    /// The protocol revision the server spoke at its last successful sync: `2026-07-28` for a
    /// stateless server, otherwise the session revision it negotiated.
    pub protocol_revision: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, slug, name, url, transport, auth_kind, auth_header_name, credential_enc, \
                       oauth_token_url, oauth_client_id, oauth_scope, send_caller_assertion, \
                       last_synced_at, last_sync_error, protocol_revision, created_at, updated_at";

/// How Gatehouse authenticates to the server, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAuth {
    pub kind: CredentialKind,
    pub header_name: Option<String>,
    pub credential_enc: Option<Vec<u8>>,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_scope: Option<String>,
}

impl StoredAuth {
    pub fn none() -> Self {
        Self {
            kind: CredentialKind::None,
            header_name: None,
            credential_enc: None,
            oauth_token_url: None,
            oauth_client_id: None,
            oauth_scope: None,
        }
    }
}

/// Everything needed to register a server. The id is chosen by the caller because the
/// credential is sealed with a context naming it.
#[derive(Clone, Debug)]
pub struct NewServer<'a> {
    pub id: ServerId,
    pub slug: &'a str,
    pub name: &'a str,
    pub url: &'a str,
    pub transport: UpstreamTransport,
    pub auth: StoredAuth,
    pub send_caller_assertion: bool,
}

pub async fn create(tx: &mut TenantTx, new: &NewServer<'_>) -> DbResult<ServerRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO domain_servers (id, org_id, slug, name, url, transport, auth_kind, auth_header_name,
                                     credential_enc, oauth_token_url, oauth_client_id, oauth_scope,
                                     send_caller_assertion)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING {COLUMNS}"
    )))
    .bind(new.id)
    .bind(org_id)
    .bind(new.slug)
    .bind(new.name)
    .bind(new.url)
    .bind(new.transport)
    .bind(new.auth.kind)
    .bind(&new.auth.header_name)
    .bind(&new.auth.credential_enc)
    .bind(&new.auth.oauth_token_url)
    .bind(&new.auth.oauth_client_id)
    .bind(&new.auth.oauth_scope)
    .bind(new.send_caller_assertion)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<ServerRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM domain_servers WHERE org_id = $1 ORDER BY slug"
    )))
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: ServerId) -> DbResult<Option<ServerRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM domain_servers WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Locks the server row for the rest of the transaction (one sync at a time per server).
pub async fn get_for_update(tx: &mut TenantTx, id: ServerId) -> DbResult<Option<ServerRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM domain_servers WHERE org_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// The mutable part of a server (slug is immutable: it namespaces tool names at endpoints).
#[derive(Clone, Debug)]
pub struct ServerUpdate<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub transport: UpstreamTransport,
    pub auth: StoredAuth,
    pub send_caller_assertion: bool,
}

pub async fn update(tx: &mut TenantTx, id: ServerId, change: &ServerUpdate<'_>) -> DbResult<ServerRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE domain_servers
            SET name = $3, url = $4, transport = $5, auth_kind = $6, auth_header_name = $7,
                credential_enc = $8, oauth_token_url = $9, oauth_client_id = $10, oauth_scope = $11,
                send_caller_assertion = $12, updated_at = now()
          WHERE org_id = $1 AND id = $2
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(change.name)
    .bind(change.url)
    .bind(change.transport)
    .bind(change.auth.kind)
    .bind(&change.auth.header_name)
    .bind(&change.auth.credential_enc)
    .bind(&change.auth.oauth_token_url)
    .bind(&change.auth.oauth_client_id)
    .bind(&change.auth.oauth_scope)
    .bind(change.send_caller_assertion)
    .fetch_one(tx.conn())
    .await?)
}

/// How a sync ended: the tenant-safe reason it failed, or the protocol revision the server spoke.
#[derive(Clone, Copy, Debug)]
pub enum SyncOutcome<'a> {
    Failed(&'a str),
    Listed { protocol_revision: &'a str },
}

/// Records the outcome of a sync. A success sets `last_synced_at` and the server's protocol
/// revision and clears the error; a failure keeps both and records why.
pub async fn record_sync(tx: &mut TenantTx, id: ServerId, outcome: SyncOutcome<'_>) -> DbResult<ServerRow> {
    let org_id = tx.org_id();
    let (error, revision) = match outcome {
        SyncOutcome::Failed(error) => (Some(error), None),
        SyncOutcome::Listed { protocol_revision } => (None, Some(protocol_revision)),
    };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE domain_servers
            SET last_synced_at = CASE WHEN $3::text IS NULL THEN now() ELSE last_synced_at END,
                last_sync_error = $3,
                protocol_revision = COALESCE($4, protocol_revision)
          WHERE org_id = $1 AND id = $2
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(error)
    .bind(revision)
    .fetch_one(tx.conn())
    .await?)
}

/// Deletes the server and (by cascade) its tools, their grants and endpoint memberships.
pub async fn delete(tx: &mut TenantTx, id: ServerId) -> DbResult<bool> {
    let org_id = tx.org_id();
    let done = sqlx::query("DELETE FROM domain_servers WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Claims the org's servers due for a scheduled sync (never synced on schedule, or due now) and
/// moves their next due time `interval_secs` ahead, atomically: concurrent claimers (other
/// replicas) skip what this one took. Servers on the deprecated HTTP+SSE transport are not synced.
pub async fn claim_due_for_sync(tx: &mut TenantTx, interval_secs: u64) -> DbResult<Vec<ServerId>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "UPDATE domain_servers SET next_sync_at = now() + make_interval(secs => $2)
          WHERE org_id = $1 AND transport = 'streamable_http'
            AND (next_sync_at IS NULL OR next_sync_at <= now())
          RETURNING id",
    )
    .bind(org_id)
    .bind(interval_secs as f64)
    .fetch_all(tx.conn())
    .await?)
}
