//! Backends: tenant PostgreSQL databases that hosted SQL tools run on. Register one with the
//! connection string of a dedicated least-privilege role (sealed, write-only), get the setup SQL
//! for its `gatehouse` schema, test it, mark tenant-neutral reference tables, and choose which
//! endpoints expose its tools.
//!
//! Marking reference tables is in [`reference_tables`], choosing an endpoint's backends in
//! [`endpoint_backends`].

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{BackendId, OrgId};
use gatehouse_core::role::Role;
use gatehouse_core::snapshot::{backend_context_key_context, backend_dsn_context};
use gatehouse_db::repos::backends::{self, BackendFields, BackendRow};
use gatehouse_egress::EgressError;
use gatehouse_hosted_sql::backend::{MAX_ROWS_LIMIT, TlsMode, check_dsn};
use gatehouse_hosted_sql::context::ContextKey;
use gatehouse_hosted_sql::{define, install, statement};

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ValidJson, ValidQuery};
use crate::hosted;
use crate::state::AppState;
use crate::validate;

mod endpoint_backends;
mod reference_tables;

pub use self::endpoint_backends::*;
pub use self::reference_tables::*;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_backends)
        .service(create_backend)
        .service(get_backend)
        .service(update_backend)
        .service(delete_backend)
        .service(test_backend)
        .service(setup_sql)
        .service(list_reference_tables)
        .service(mark_reference_table)
        .service(unmark_reference_table)
        .service(get_endpoint_backends)
        .service(set_endpoint_backends);
}

/// TLS to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsModeIo {
    /// No TLS (only for backends on a private network you trust).
    Disable,
    /// TLS without verifying the certificate.
    Require,
    /// TLS, the certificate chain verified (against `ca_pem` when given).
    VerifyCa,
    /// TLS, chain and host name verified. The default.
    VerifyFull,
}

impl From<TlsModeIo> for TlsMode {
    fn from(m: TlsModeIo) -> Self {
        match m {
            TlsModeIo::Disable => TlsMode::Disable,
            TlsModeIo::Require => TlsMode::Require,
            TlsModeIo::VerifyCa => TlsMode::VerifyCa,
            TlsModeIo::VerifyFull => TlsMode::VerifyFull,
        }
    }
}

fn tls_out(s: &str) -> TlsModeIo {
    match TlsMode::parse(s) {
        Some(TlsMode::Disable) => TlsModeIo::Disable,
        Some(TlsMode::Require) => TlsModeIo::Require,
        Some(TlsMode::VerifyCa) => TlsModeIo::VerifyCa,
        _ => TlsModeIo::VerifyFull,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendIn {
    /// Namespace of its tools at endpoints (`<slug>__<tool>`); immutable, and not a server's slug.
    pub slug: String,
    pub name: String,
    /// `postgres://role:password@host:port/database` of a dedicated role that owns nothing and
    /// cannot bypass row-level security. Write-only.
    pub dsn: String,
    #[serde(default = "default_tls")]
    pub tls_mode: TlsModeIo,
    /// A CA certificate (PEM) to verify the backend's certificate with.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The `search_path` tools run with (default `public`).
    #[serde(default)]
    pub allowed_schemas: Option<Vec<String>>,
    /// Functions tools may call beyond the built-in allowlist (`name` or `schema.name`).
    #[serde(default)]
    pub allowed_functions: Vec<String>,
    #[serde(default)]
    pub statement_timeout_ms: Option<i32>,
    /// Most rows a call returns (reads) or changes (writes); default 1000.
    #[serde(default)]
    pub max_rows: Option<i32>,
    /// The NOLOGIN role the setup script creates to own the `gatehouse` schema.
    #[serde(default)]
    pub owner_role: Option<String>,
}

impl std::fmt::Debug for BackendIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendIn")
            .field("slug", &self.slug)
            .finish_non_exhaustive()
    }
}

fn default_tls() -> TlsModeIo {
    TlsModeIo::VerifyFull
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendPatch {
    pub name: Option<String>,
    /// Replaces the connection string.
    pub dsn: Option<String>,
    pub tls_mode: Option<TlsModeIo>,
    /// Replaces the CA certificate; `""` removes it.
    pub ca_pem: Option<String>,
    pub allowed_schemas: Option<Vec<String>>,
    pub allowed_functions: Option<Vec<String>>,
    pub statement_timeout_ms: Option<i32>,
    pub max_rows: Option<i32>,
}

impl std::fmt::Debug for BackendPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendPatch").finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackendOut {
    #[schema(value_type = String, format = Uuid)]
    pub id: BackendId,
    pub slug: String,
    pub name: String,
    /// `host:port/database` of the connection string (never the credentials).
    pub target: String,
    pub tls_mode: TlsModeIo,
    pub has_ca_pem: bool,
    pub owner_role: String,
    pub allowed_schemas: Vec<String>,
    pub allowed_functions: Vec<String>,
    pub statement_timeout_ms: i32,
    pub max_rows: i32,
    /// The outcome of the last connection test.
    #[schema(value_type = Option<Object>)]
    pub last_test: Option<Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_tested_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

fn backend_out(state: &AppState, org: OrgId, row: &BackendRow) -> BackendOut {
    let target = state
        .keyring
        .open(&row.dsn_enc, &backend_dsn_context(org, row.id))
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| url::Url::parse(&d).ok())
        .map(|u| {
            format!(
                "{}:{}{}",
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(5432),
                u.path()
            )
        })
        .unwrap_or_default();
    BackendOut {
        id: row.id,
        slug: row.slug.clone(),
        name: row.name.clone(),
        target,
        tls_mode: tls_out(&row.tls_mode),
        has_ca_pem: row.tls_ca_pem.is_some(),
        owner_role: row.owner_role.clone(),
        allowed_schemas: row.allowed_schemas.clone(),
        allowed_functions: row.allowed_functions.clone(),
        statement_timeout_ms: row.statement_timeout_ms,
        max_rows: row.max_rows,
        last_test: row.last_test.clone(),
        last_tested_at: row.last_tested_at,
        created_at: row.created_at,
    }
}

/// A summary for the audit trail (never the connection string or key).
fn audit_view(row: &BackendRow) -> Value {
    json!({
        "slug": row.slug,
        "name": row.name,
        "tls_mode": row.tls_mode,
        "has_ca_pem": row.tls_ca_pem.is_some(),
        "allowed_schemas": row.allowed_schemas,
        "allowed_functions": row.allowed_functions,
        "statement_timeout_ms": row.statement_timeout_ms,
        "max_rows": row.max_rows,
    })
}

fn identifier(field: &str, s: &str) -> ApiResult<()> {
    if s.is_empty() || s.len() > 63 || s.contains('\0') || s.contains('"') {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 63 characters, without quotes",
        ));
    }
    Ok(())
}

/// Checks a connection string, and its host against the SSRF guard.
async fn check_connection_string(state: &AppState, dsn: &str) -> ApiResult<()> {
    if dsn.len() > 2048 {
        return Err(ApiError::invalid("dsn", "must be at most 2048 characters"));
    }
    let (host, port) = check_dsn(dsn).map_err(|e| ApiError::invalid("dsn", e.0))?;
    match state.egress.check_host(&host, port).await {
        Ok(()) | Err(EgressError::Unresolvable | EgressError::Timeout | EgressError::Unreachable) => Ok(()),
        Err(e) => Err(ApiError::invalid("dsn", e.to_string())),
    }
}

struct Settings {
    tls_mode: TlsMode,
    ca_pem: Option<String>,
    allowed_schemas: Vec<String>,
    allowed_functions: Vec<String>,
    statement_timeout_ms: i32,
    max_rows: i32,
}

fn check_settings(s: &Settings) -> ApiResult<()> {
    if let Some(pem) = &s.ca_pem
        && (pem.len() > 65_536 || !pem.contains("-----BEGIN CERTIFICATE-----"))
    {
        return Err(ApiError::invalid(
            "ca_pem",
            "must be a PEM certificate of at most 64 KiB",
        ));
    }
    if s.ca_pem.is_some() && !matches!(s.tls_mode, TlsMode::VerifyCa | TlsMode::VerifyFull) {
        return Err(ApiError::invalid(
            "ca_pem",
            "is used only with tls_mode verify_ca or verify_full",
        ));
    }
    if s.allowed_schemas.is_empty() || s.allowed_schemas.len() > 16 {
        return Err(ApiError::invalid("allowed_schemas", "must list 1 to 16 schemas"));
    }
    for schema in &s.allowed_schemas {
        identifier("allowed_schemas", schema)?;
        if schema == "gatehouse" || schema.starts_with("pg_") {
            return Err(ApiError::invalid(
                "allowed_schemas",
                "must not list gatehouse or pg_ schemas",
            ));
        }
    }
    if s.allowed_functions.len() > 200 {
        return Err(ApiError::invalid(
            "allowed_functions",
            "must list at most 200 functions",
        ));
    }
    for f in &s.allowed_functions {
        if !statement::valid_function_name(f) {
            return Err(ApiError::invalid(
                "allowed_functions",
                format!("{f:?} must be `name` or `schema.name` (lower-case identifiers)"),
            ));
        }
        let unqualified = f.rsplit('.').next().unwrap_or(f);
        const NEVER: &[&str] = &[
            "set_config",
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "lo_import",
            "lo_export",
            "dblink",
            "dblink_exec",
            "dblink_connect",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "current_setting",
        ];
        if NEVER.contains(&unqualified) || f.starts_with("gatehouse.") {
            return Err(ApiError::invalid(
                "allowed_functions",
                format!("{f} cannot be allowed"),
            ));
        }
    }
    if !(1..=60_000).contains(&s.statement_timeout_ms) {
        return Err(ApiError::invalid(
            "statement_timeout_ms",
            "must be between 1 and 60000",
        ));
    }
    if !(1..=MAX_ROWS_LIMIT).contains(&s.max_rows) {
        return Err(ApiError::invalid(
            "max_rows",
            format!("must be between 1 and {MAX_ROWS_LIMIT}"),
        ));
    }
    Ok(())
}

/// List the org's backends.
#[utoipa::path(
    operation_id = "backends.list",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<BackendOut>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/backends")]
pub async fn list_backends(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let rows = backends::list(&mut tx).await?;
    tx.commit().await?;
    let org = member.scope.org_id();
    Ok(HttpResponse::Ok().json(
        rows.iter()
            .map(|r| backend_out(&state, org, r))
            .collect::<Vec<_>>(),
    ))
}

/// Register a PostgreSQL backend. The connection string is sealed, a context key is generated
/// for it; run the setup SQL (`GET .../setup-sql`) on the backend, then test it.
#[utoipa::path(
    operation_id = "backends.create",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug")),
    request_body = BackendIn,
    responses(
        (status = 201, body = BackendOut),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
    )
)]
#[post("/orgs/{org}/backends")]
pub async fn create_backend(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<BackendIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let body = body.0;
    validate::server_slug("slug", &body.slug)?;
    let name = validate::name("name", &body.name)?;
    let owner_role = body
        .owner_role
        .clone()
        .unwrap_or_else(|| install::DEFAULT_OWNER_ROLE.to_owned());
    if !install::valid_role_name(&owner_role) {
        return Err(ApiError::invalid("owner_role", "must be a lower-case identifier"));
    }
    let settings = Settings {
        tls_mode: body.tls_mode.into(),
        ca_pem: body.ca_pem.clone().filter(|p| !p.is_empty()),
        allowed_schemas: body
            .allowed_schemas
            .clone()
            .unwrap_or_else(|| vec!["public".into()]),
        allowed_functions: body.allowed_functions.clone(),
        statement_timeout_ms: body.statement_timeout_ms.unwrap_or(5000),
        max_rows: body.max_rows.unwrap_or(1000),
    };
    check_settings(&settings)?;
    check_connection_string(&state, &body.dsn).await?;
    let org = member.scope.org_id();
    let id = BackendId::new();
    let dsn_enc = state
        .keyring
        .seal(body.dsn.as_bytes(), &backend_dsn_context(org, id));
    let key = ContextKey::generate();
    let key_enc = state
        .keyring
        .seal(key.bytes(), &backend_context_key_context(org, id));
    let mut tx = member.begin(&state).await?;
    if backends::slug_used_by_server(&mut tx, &body.slug).await? {
        return Err(ApiError::conflict(
            "slug_taken",
            "a domain server of the org has this slug",
        ));
    }
    let row = backends::create(
        &mut tx,
        id,
        &body.slug,
        &BackendFields {
            name: &name,
            dsn_enc: &dsn_enc,
            tls_mode: settings.tls_mode.as_str(),
            tls_ca_pem: settings.ca_pem.as_deref(),
            owner_role: &owner_role,
            allowed_schemas: &settings.allowed_schemas,
            allowed_functions: &settings.allowed_functions,
            statement_timeout_ms: settings.statement_timeout_ms,
            max_rows: settings.max_rows,
        },
        &key_enc,
    )
    .await
    .map_err(|e| match e.conflict_constraint() {
        Some(_) => ApiError::conflict("slug_taken", "a backend with this slug already exists in the org"),
        None => e.into(),
    })?;
    let event = changes::event(&member, "backend.create")
        .target("backend", row.id)
        .details(changes::before_after(None, Some(audit_view(&row))));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Created().json(backend_out(&state, org, &row)))
}

/// One backend.
#[utoipa::path(
    operation_id = "backends.get",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    responses((status = 200, body = BackendOut), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/backends/{backend_id}")]
pub async fn get_backend(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = backends::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(backend_out(&state, member.scope.org_id(), &row)))
}

/// Change a backend. A new connection string, TLS setting, schema list or function allowlist
/// withholds its approved tools until they are approved again (the gate runs again).
#[utoipa::path(
    operation_id = "backends.update",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    request_body = BackendPatch,
    responses(
        (status = 200, body = BackendOut),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[patch("/orgs/{org}/backends/{backend_id}")]
pub async fn update_backend(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
    body: ValidJson<BackendPatch>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let patch = body.0;
    let name = patch
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    if let Some(dsn) = &patch.dsn {
        check_connection_string(&state, dsn).await?;
    }
    let org = member.scope.org_id();
    let mut tx = member.begin(&state).await?;
    let before = backends::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    let settings = Settings {
        tls_mode: match patch.tls_mode {
            Some(m) => m.into(),
            None => TlsMode::parse(&before.tls_mode).unwrap_or(TlsMode::VerifyFull),
        },
        ca_pem: match &patch.ca_pem {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(p.clone()),
            None => before.tls_ca_pem.clone(),
        },
        allowed_schemas: patch
            .allowed_schemas
            .clone()
            .unwrap_or_else(|| before.allowed_schemas.clone()),
        allowed_functions: patch
            .allowed_functions
            .clone()
            .unwrap_or_else(|| before.allowed_functions.clone()),
        statement_timeout_ms: patch.statement_timeout_ms.unwrap_or(before.statement_timeout_ms),
        max_rows: patch.max_rows.unwrap_or(before.max_rows),
    };
    check_settings(&settings)?;
    let dsn_enc = match &patch.dsn {
        Some(dsn) => state.keyring.seal(dsn.as_bytes(), &backend_dsn_context(org, id)),
        None => before.dsn_enc.clone(),
    };
    let after = backends::update(
        &mut tx,
        id,
        &BackendFields {
            name: name.as_deref().unwrap_or(&before.name),
            dsn_enc: &dsn_enc,
            tls_mode: settings.tls_mode.as_str(),
            tls_ca_pem: settings.ca_pem.as_deref(),
            owner_role: &before.owner_role,
            allowed_schemas: &settings.allowed_schemas,
            allowed_functions: &settings.allowed_functions,
            statement_timeout_ms: settings.statement_timeout_ms,
            max_rows: settings.max_rows,
        },
    )
    .await?;
    let revalidate = patch.dsn.is_some()
        || after.tls_mode != before.tls_mode
        || after.tls_ca_pem != before.tls_ca_pem
        || after.allowed_schemas != before.allowed_schemas
        || after.allowed_functions != before.allowed_functions;
    let withheld = if revalidate {
        backends::withhold_tools(&mut tx, id, None).await?
    } else {
        vec![]
    };
    let mut details = changes::before_after(Some(audit_view(&before)), Some(audit_view(&after)));
    details["dsn_replaced"] = json!(patch.dsn.is_some());
    details["tools_withheld"] = json!(withheld);
    let event = changes::event(&member, "backend.update")
        .target("backend", id)
        .details(details);
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(backend_out(&state, org, &after)))
}

/// Delete a backend with its tools; endpoints stop exposing them.
#[utoipa::path(
    operation_id = "backends.delete",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/backends/{backend_id}")]
pub async fn delete_backend(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let before = backends::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    backends::delete(&mut tx, id).await?;
    let event = changes::event(&member, "backend.delete")
        .target("backend", id)
        .details(changes::before_after(Some(audit_view(&before)), None));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Connect to the backend as its tool role and check it: the role (superuser, BYPASSRLS, roles
/// it belongs to that are), the `gatehouse` schema version, and that the backend verifies a
/// caller context signed with its key. A backend that cannot be reached answers 502.
#[utoipa::path(
    operation_id = "backends.test",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = Object),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem),
    )
)]
#[post("/orgs/{org}/backends/{backend_id}/test")]
pub async fn test_backend(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Developer)?;
    let (_, id) = path.into_inner();
    let org = member.scope.org_id();
    let mut tx = member.begin(&state).await?;
    let row = backends::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    tx.commit().await?;
    let config = hosted::backend_config(&state, org, &row)?;
    let outcome = define::test_backend(&config, &hosted::probe_caller(org)).await;
    let recorded = match &outcome {
        Ok(status) => json!({"ok": status.ready(), "status": status}),
        Err(e) => json!({"ok": false, "error": e.message}),
    };
    let mut tx = member.begin(&state).await?;
    backends::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    backends::record_test(&mut tx, id, &recorded).await?;
    let event = changes::event(&member, "backend.test")
        .target("backend", id)
        .outcome(if recorded["ok"] == true {
            gatehouse_db::AuditOutcome::Success
        } else {
            gatehouse_db::AuditOutcome::Error
        })
        .details(recorded.clone());
    changes::commit_audited(tx, &[event]).await?;
    match outcome {
        Ok(status) => Ok(HttpResponse::Ok().json(json!({
            "ready": status.ready(),
            "status": status,
            "upgrade_needed": status.schema_version < install::SCHEMA_VERSION,
        }))),
        Err(e) => Err(ApiError::Upstream(e.message)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SetupQuery {
    /// The `gatehouse` schema version installed on the backend (0 or absent: none); the script
    /// upgrades from there.
    pub installed: Option<i32>,
}

/// The SQL to run on the backend as a superuser: the `gatehouse` schema (or its upgrade) and
/// the backend's context key. It contains the key: keep it private.
#[utoipa::path(
    operation_id = "backends.setup_sql",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid), SetupQuery),
    responses((status = 200, content_type = "application/sql", body = String), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/backends/{backend_id}/setup-sql")]
pub async fn setup_sql(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
    query: ValidQuery<SetupQuery>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let org = member.scope.org_id();
    let installed = query.installed.unwrap_or(0);
    if !(0..=install::SCHEMA_VERSION).contains(&installed) {
        return Err(ApiError::invalid(
            "installed",
            format!("must be between 0 and {}", install::SCHEMA_VERSION),
        ));
    }
    let mut tx = member.begin(&state).await?;
    let row = backends::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    let config = hosted::backend_config(&state, org, &row)?;
    let event = changes::event(&member, "backend.setup_sql_viewed").target("backend", id);
    changes::commit_audited(tx, &[event]).await?;
    let script = install::setup_script(&row.owner_role, installed, &config.context_key);
    Ok(HttpResponse::Ok()
        .content_type("application/sql; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(script))
}
