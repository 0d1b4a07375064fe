//! Domain servers: register an upstream MCP server with its own credential, list, update, delete,
//! and sync its tools on demand.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use url::Url;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{OrgId, ServerId};
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::server_credential_context;
use gatehouse_core::upstream::{CredentialKind, UpstreamTransport as Transport};
use gatehouse_db::repos::servers::{self, NewServer, ServerRow, ServerUpdate, StoredAuth};
use gatehouse_egress::EgressError;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;
use crate::sync::{self, SyncReport};
use crate::validate;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_servers)
        .service(create_server)
        .service(get_server)
        .service(update_server)
        .service(delete_server)
        .service(sync_server);
}

/// The server's own credential (write-only: never returned).
#[derive(Clone, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthIn {
    /// No credential.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// A custom header, e.g. `X-Api-Key: <value>`.
    Header { name: String, value: String },
    /// OAuth 2.0 client credentials: Gatehouse fetches a token from `token_url` (through the SSRF
    /// guard) and sends it as a bearer token.
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        scope: Option<String>,
    },
}

impl std::fmt::Debug for AuthIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthIn([REDACTED])")
    }
}

/// How the server is authenticated, without the secret.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AuthOut {
    pub kind: CredentialKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Whether a secret is stored (sealed).
    pub has_secret: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerIn {
    /// Namespace of its tools at endpoints (`<slug>__<tool>`); immutable.
    pub slug: String,
    pub name: String,
    /// The server's MCP endpoint, e.g. `https://orders.internal.example/mcp`.
    pub url: String,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    #[serde(default = "default_auth")]
    pub auth: AuthIn,
    /// Send upstream a short-lived assertion naming the org, endpoint and caller.
    #[serde(default)]
    pub send_caller_assertion: bool,
}

fn default_transport() -> Transport {
    Transport::StreamableHttp
}

fn default_auth() -> AuthIn {
    AuthIn::None
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerPatch {
    pub name: Option<String>,
    /// A URL on another origin (scheme, host or port) than the current one requires `auth` in
    /// the same request when the server has a stored credential: the credential is write-only,
    /// and is never sent to a new destination without being supplied again (422
    /// `credential_required` otherwise).
    pub url: Option<String>,
    pub transport: Option<Transport>,
    /// Replaces the credential (its secret included: a new OAuth `token_url` comes with its
    /// `client_secret`).
    pub auth: Option<AuthIn>,
    pub send_caller_assertion: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ServerOut {
    #[schema(value_type = String, format = Uuid)]
    pub id: ServerId,
    pub slug: String,
    pub name: String,
    pub url: String,
    pub transport: Transport,
    pub auth: AuthOut,
    pub send_caller_assertion: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_synced_at: Option<OffsetDateTime>,
    /// Why the last sync failed, if it did.
    pub last_sync_error: Option<String>,
    /// The MCP protocol revision the server spoke at its last successful sync: `2026-07-28` for
    /// a server without sessions, otherwise the session revision it negotiated.
    pub protocol_revision: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<&ServerRow> for ServerOut {
    fn from(row: &ServerRow) -> Self {
        ServerOut {
            id: row.id,
            slug: row.slug.clone(),
            name: row.name.clone(),
            url: row.url.clone(),
            transport: row.transport,
            auth: AuthOut {
                kind: row.auth_kind,
                header_name: row.auth_header_name.clone(),
                token_url: row.oauth_token_url.clone(),
                client_id: row.oauth_client_id.clone(),
                scope: row.oauth_scope.clone(),
                has_secret: row.credential_enc.is_some(),
            },
            send_caller_assertion: row.send_caller_assertion,
            last_synced_at: row.last_synced_at,
            last_sync_error: row.last_sync_error.clone(),
            protocol_revision: row.protocol_revision.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A server with the outcome of the sync that ran with the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerSynced {
    pub server: ServerOut,
    pub sync: SyncReport,
}

/// Checks a tenant-supplied URL against the SSRF guard; refusals are field errors.
async fn check_upstream_url(state: &AppState, field: &str, raw: &str) -> ApiResult<()> {
    if raw.len() > 2048 {
        return Err(ApiError::invalid(field, "must be at most 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|_| ApiError::invalid(field, "must be an absolute http(s) URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(
            field,
            "must not carry credentials; put them in `auth`",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::invalid(field, "must not have a fragment"));
    }
    match state.egress.check_url(&url).await {
        Ok(()) => Ok(()),
        // Might be a transient DNS or network problem: registration goes ahead and the sync
        // reports it.
        Err(EgressError::Unresolvable | EgressError::Timeout | EgressError::Unreachable) => Ok(()),
        Err(e) => Err(ApiError::invalid(field, e.to_string())),
    }
}

/// Validates an `AuthIn` and seals its secret for `(org, server)`.
async fn stored_auth(state: &AppState, org: OrgId, server: ServerId, auth: &AuthIn) -> ApiResult<StoredAuth> {
    let seal = |secret: &str, field: &str| -> ApiResult<Vec<u8>> {
        if secret.is_empty() || secret.len() > 8192 {
            return Err(ApiError::invalid(field, "must be 1 to 8192 characters"));
        }
        Ok(state
            .keyring
            .seal(secret.as_bytes(), &server_credential_context(org, server)))
    };
    Ok(match auth {
        AuthIn::None => StoredAuth::none(),
        AuthIn::Bearer { token } => {
            if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                return Err(ApiError::invalid("auth.token", "must be valid in an HTTP header"));
            }
            StoredAuth {
                kind: CredentialKind::Bearer,
                credential_enc: Some(seal(token, "auth.token")?),
                ..StoredAuth::none()
            }
        }
        AuthIn::Header { name, value } => {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.len() > 128 {
                return Err(ApiError::invalid("auth.name", "must be a valid HTTP header name"));
            }
            const RESERVED: &[&str] = &[
                "host",
                "content-length",
                "content-type",
                "accept",
                "connection",
                "transfer-encoding",
                "mcp-session-id",
                "mcp-protocol-version",
                "last-event-id",
                "cookie",
            ];
            if RESERVED.contains(&lower.as_str()) {
                return Err(ApiError::invalid(
                    "auth.name",
                    "is a header Gatehouse sets itself; use another name (or `bearer` for Authorization)",
                ));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(ApiError::invalid("auth.value", "must be valid in an HTTP header"));
            }
            StoredAuth {
                kind: CredentialKind::Header,
                header_name: Some(name.clone()),
                credential_enc: Some(seal(value, "auth.value")?),
                ..StoredAuth::none()
            }
        }
        AuthIn::OauthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } => {
            check_upstream_url(state, "auth.token_url", token_url).await?;
            if client_id.is_empty() || client_id.len() > 512 {
                return Err(ApiError::invalid("auth.client_id", "must be 1 to 512 characters"));
            }
            if scope.as_ref().is_some_and(|s| s.len() > 1024) {
                return Err(ApiError::invalid("auth.scope", "must be at most 1024 characters"));
            }
            StoredAuth {
                kind: CredentialKind::OauthClientCredentials,
                credential_enc: Some(seal(client_secret, "auth.client_secret")?),
                oauth_token_url: Some(token_url.clone()),
                oauth_client_id: Some(client_id.clone()),
                oauth_scope: scope.clone().filter(|s| !s.is_empty()),
                header_name: None,
            }
        }
    })
}

/// A summary of a server for the audit trail (never the secret).
fn audit_view(row: &ServerRow) -> serde_json::Value {
    json!({
        "slug": row.slug,
        "name": row.name,
        "url": row.url,
        "transport": row.transport,
        "auth_kind": row.auth_kind,
        "auth_header_name": row.auth_header_name,
        "oauth_token_url": row.oauth_token_url,
        "oauth_client_id": row.oauth_client_id,
        "send_caller_assertion": row.send_caller_assertion,
    })
}

/// Syncs after a registration or change, unless the transport cannot be synced yet.
async fn sync_or_explain(state: &AppState, member: &OrgMember, row: ServerRow) -> ApiResult<ServerSynced> {
    let (row, report) = sync::sync_server(state, &member.into(), row.id).await?;
    Ok(ServerSynced {
        server: ServerOut::from(&row),
        sync: report,
    })
}

/// List the org's domain servers.
#[utoipa::path(
    operation_id = "servers.list",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, body = Vec<ServerOut>),
        (status = 401, body = Problem), (status = 404, body = Problem),
    )
)]
#[get("/orgs/{org}/servers")]
pub async fn list_servers(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let rows = servers::list(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(ServerOut::from).collect::<Vec<_>>()))
}

/// Register a domain server. Its URL is checked by the SSRF guard, its credential sealed, and its
/// tools listed right away; new tools wait for approval.
#[utoipa::path(
    operation_id = "servers.create",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug")),
    request_body = ServerIn,
    responses(
        (status = 201, body = ServerSynced),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[post("/orgs/{org}/servers")]
pub async fn create_server(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<ServerIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let body = body.0;
    validate::server_slug("slug", &body.slug)?;
    let name = validate::name("name", &body.name)?;
    check_upstream_url(&state, "url", &body.url).await?;
    let org_id = member.scope.org_id();
    let id = ServerId::new();
    let auth = stored_auth(&state, org_id, id, &body.auth).await?;
    let mut tx = member.begin(&state).await?;
    let row = servers::create(
        &mut tx,
        &NewServer {
            id,
            slug: &body.slug,
            name: &name,
            url: &body.url,
            transport: body.transport,
            auth,
            send_caller_assertion: body.send_caller_assertion,
        },
    )
    .await
    .map_err(|e| match e.conflict_constraint() {
        Some(_) => ApiError::conflict("slug_taken", "a server with this slug already exists in the org"),
        None => e.into(),
    })?;
    let event = changes::event(&member, "server.create")
        .target("server", row.id)
        .details(changes::before_after(None, Some(audit_view(&row))));
    changes::commit_config_change(&state, tx, &[event]).await?;
    let synced = sync_or_explain(&state, &member, row).await?;
    Ok(HttpResponse::Created().json(synced))
}

/// One domain server.
#[utoipa::path(
    operation_id = "servers.get",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("server_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ServerOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/servers/{server_id}")]
pub async fn get_server(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServerId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = servers::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(ServerOut::from(&row)))
}

/// Change a server's name, URL, transport, credential or caller assertion. A new URL, transport
/// or credential triggers a sync. The slug cannot change (it namespaces tool names). Moving a
/// server with a stored credential to another origin requires the credential again (`auth`).
#[utoipa::path(
    operation_id = "servers.update",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("server_id" = String, Path, format = Uuid)),
    request_body = ServerPatch,
    responses(
        (status = 200, body = ServerSynced),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`credential_required`: a URL on another origin without `auth`"),
    )
)]
#[patch("/orgs/{org}/servers/{server_id}")]
pub async fn update_server(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServerId)>,
    body: ValidJson<ServerPatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let patch = body.0;
    let name = patch
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    if let Some(url) = &patch.url {
        check_upstream_url(&state, "url", url).await?;
    }
    let new_auth = match &patch.auth {
        Some(auth) => Some(stored_auth(&state, member.scope.org_id(), id, auth).await?),
        None => None,
    };
    let mut tx = member.begin(&state).await?;
    let before = servers::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    if new_auth.is_none()
        && let Some(url) = &patch.url
    {
        require_credential_for_new_origin(&before, url)?;
    }
    let auth = new_auth.clone().unwrap_or_else(|| StoredAuth {
        kind: before.auth_kind,
        header_name: before.auth_header_name.clone(),
        credential_enc: before.credential_enc.clone(),
        oauth_token_url: before.oauth_token_url.clone(),
        oauth_client_id: before.oauth_client_id.clone(),
        oauth_scope: before.oauth_scope.clone(),
    });
    let transport = patch.transport.unwrap_or(before.transport);
    let after = servers::update(
        &mut tx,
        id,
        &ServerUpdate {
            name: name.as_deref().unwrap_or(&before.name),
            url: patch.url.as_deref().unwrap_or(&before.url),
            transport,
            auth,
            send_caller_assertion: patch
                .send_caller_assertion
                .unwrap_or(before.send_caller_assertion),
        },
    )
    .await?;
    let resync = after.url != before.url || after.transport != before.transport || new_auth.is_some();
    let mut details = changes::before_after(Some(audit_view(&before)), Some(audit_view(&after)));
    details["credential_replaced"] = json!(new_auth.is_some());
    let event = changes::event(&member, "server.update")
        .target("server", id)
        .details(details);
    changes::commit_config_change(&state, tx, &[event]).await?;
    let synced = if resync {
        sync_or_explain(&state, &member, after).await?
    } else {
        ServerSynced {
            server: ServerOut::from(&after),
            sync: SyncReport::default(),
        }
    };
    Ok(HttpResponse::Ok().json(synced))
}

/// A stored credential goes only where it was supplied for: a URL on another origin needs the
/// credential again (`auth` in the same request).
fn require_credential_for_new_origin(before: &ServerRow, new_url: &str) -> ApiResult<()> {
    if before.credential_enc.is_none() {
        return Ok(());
    }
    let origin = |u: &str| Url::parse(u).map(|u| u.origin()).ok();
    let (old, new) = (origin(&before.url), origin(new_url));
    if old.is_some() && old == new {
        return Ok(());
    }
    Err(ApiError::CredentialRequired {
        field: "auth",
        detail: "the new URL is on another origin: supply the server's credential again in `auth` \
                 (stored credentials are write-only and never follow a URL to a new destination)"
            .into(),
    })
}

/// Delete a server with its tools; endpoints stop exposing them.
#[utoipa::path(
    operation_id = "servers.delete",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("server_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/servers/{server_id}")]
pub async fn delete_server(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServerId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let before = servers::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    servers::delete(&mut tx, id).await?;
    let event = changes::event(&member, "server.delete")
        .target("server", id)
        .details(changes::before_after(Some(audit_view(&before)), None));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List the server's tools again now. New tools wait for approval; a tool whose definition
/// changed is withheld until re-approved. An unreachable server answers 502 with the reason
/// (also stored as `last_sync_error`).
#[utoipa::path(
    operation_id = "servers.sync",
    tag = "servers",
    params(("org" = String, Path, description = "Org slug"), ("server_id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = ServerSynced),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem),
    )
)]
#[post("/orgs/{org}/servers/{server_id}/sync")]
pub async fn sync_server(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServerId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Developer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = servers::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    tx.commit().await?;
    let synced = sync_or_explain(&state, &member, row).await?;
    if let Some(error) = &synced.sync.error {
        return Err(ApiError::Upstream(error.clone()));
    }
    Ok(HttpResponse::Ok().json(synced))
}
