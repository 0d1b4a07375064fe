//! Hosted SQL tools in the control plane: opening a stored backend, validating a tool against it
//! (parser, then the backend), and the publication gate that approval goes through.

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::{backend_context_key_context, backend_dsn_context};
use gatehouse_db::TenantTx;
use gatehouse_db::repos::backends::{self, BackendRow, SqlToolRow};
use gatehouse_hosted_sql::backend::{BackendConfig, TlsMode};
use gatehouse_hosted_sql::context::{CallerContext, ContextKey};
use gatehouse_hosted_sql::define::{self, Definition, ToolSpec};
use gatehouse_hosted_sql::statement::Access;
use gatehouse_hosted_sql::tool::SqlTool;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{what}: {e}"))
}

/// The stored backend, opened (connection string and context key unsealed).
pub fn backend_config(state: &AppState, org: OrgId, row: &BackendRow) -> ApiResult<BackendConfig> {
    let dsn = state
        .keyring
        .open(&row.dsn_enc, &backend_dsn_context(org, row.id))
        .map_err(|e| internal("cannot open the backend's connection string", e))?;
    let dsn = String::from_utf8(dsn).map_err(|e| internal("backend connection string", e))?;
    let sealed_key = row.context_key_enc.as_deref().ok_or_else(|| {
        ApiError::conflict(
            "backend_without_key",
            "the backend has no context key (it predates hosted SQL tools); register it again",
        )
    })?;
    let key = state
        .keyring
        .open(sealed_key, &backend_context_key_context(org, row.id))
        .map_err(|e| internal("cannot open the backend's context key", e))?;
    let key = ContextKey::from_bytes(&key).map_err(|e| internal("backend context key", e))?;
    let tls = TlsMode::parse(&row.tls_mode).ok_or_else(|| internal("backend TLS mode", &row.tls_mode))?;
    BackendConfig::new(
        org,
        row.id,
        SecretString::from(dsn),
        tls,
        row.tls_ca_pem.clone(),
        key,
        row.allowed_schemas.clone(),
        &row.allowed_functions,
        Duration::from_millis(u64::try_from(row.statement_timeout_ms.max(1)).unwrap_or(1)),
        usize::try_from(row.max_rows.max(1)).unwrap_or(1),
    )
    .map_err(|e| ApiError::invalid("dsn", e.0))
}

/// A caller context for probing a backend (signed, so it proves the key is installed).
pub fn probe_caller(org: OrgId) -> CallerContext {
    CallerContext {
        org_id: org,
        endpoint_id: gatehouse_core::ids::EndpointId::from_uuid(uuid::Uuid::nil()),
        subject: "gatehouse:connection-test".into(),
        subject_kind: "service_token".into(),
        email: None,
        scopes: vec![],
        attributes: Default::default(),
    }
}

/// A tool validated against its backend, with what is stored for it.
pub struct Validated {
    pub definition: Definition,
    pub target: Value,
    pub hash: Vec<u8>,
    pub inspection: Value,
}

/// The hash an SQL tool is pinned by: its MCP definition and everything the runtime runs.
pub fn definition_hash(definition: &Value, target: &Value) -> Vec<u8> {
    let hex = gatehouse_core::canonical::canonical_hash(&json!({"definition": definition, "target": target}));
    hex::decode(hex).unwrap_or_default()
}

/// Validates a tool with the parser and on its backend (errors are field errors).
pub async fn validate(
    config: &BackendConfig,
    name: &str,
    description: &str,
    sql: &str,
    access: Access,
    destructive: bool,
    param_descriptions: &Map<String, Value>,
) -> ApiResult<Validated> {
    let definition = define::define(
        config,
        &ToolSpec {
            name,
            description,
            sql,
            access,
            destructive,
            param_descriptions,
        },
    )
    .await
    .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let tool = SqlTool {
        id: gatehouse_core::ids::ToolId::from_uuid(uuid::Uuid::nil()),
        backend_id: config.id,
        name: name.to_owned(),
        approved_hash: String::new(),
        sql: definition.parsed.positional_sql.clone(),
        params: definition.params.clone(),
        columns: definition.columns.clone(),
        access,
        destructive,
    };
    let target = serde_json::to_value(tool.to_snapshot()).map_err(|e| internal("tool target", e))?;
    let hash = definition_hash(&definition.definition, &target);
    let inspection = serde_json::to_value(&definition.inspection).map_err(|e| internal("inspection", e))?;
    Ok(Validated {
        definition,
        target,
        hash,
        inspection,
    })
}

/// The publication gate: validates the tool on its backend again (it must still be exactly what
/// was reviewed) and refuses when what it touches is not protected by row-level security, or the
/// tool role can bypass it, unless the relation is marked tenant-neutral. Runs outside any
/// database transaction; returns the fresh inspection.
pub async fn publication_gate(
    state: &AppState,
    org: OrgId,
    backend: &BackendRow,
    tool: &SqlToolRow,
    neutral: &[String],
) -> ApiResult<Value> {
    let config = backend_config(state, org, backend)?;
    let validated = revalidate(&config, tool).await.map_err(|e| match e {
        ApiError::InvalidField { message, .. } => ApiError::conflict(
            "sql_tool_invalid",
            format!("the tool no longer validates on its backend: {message}"),
        ),
        other => other,
    })?;
    if validated.hash != tool.definition_hash {
        return Err(ApiError::conflict(
            "definition_changed",
            "the backend now describes this tool differently (its schema changed): update the tool and review it again",
        ));
    }
    let neutral: BTreeSet<String> = neutral.iter().cloned().collect();
    let blocking = validated.definition.inspection.blocking(&neutral);
    if !blocking.is_empty() {
        return Err(ApiError::conflict(
            "unprotected_tables",
            format!(
                "the tool cannot be published: {}. Enable and force row-level security with a policy, use a tool role that cannot bypass it, or mark the table as tenant-neutral reference data",
                blocking.join("; ")
            ),
        ));
    }
    Ok(validated.inspection)
}

/// Validates a stored tool on its backend again, with its stored name, description, statement,
/// access, flag and parameter descriptions (the same inputs give the same definition hash as long
/// as the backend describes the statement the same way).
pub async fn revalidate(config: &BackendConfig, tool: &SqlToolRow) -> ApiResult<Validated> {
    let access = Access::parse(&tool.sql_access).ok_or_else(|| internal("tool access", &tool.sql_access))?;
    validate(
        config,
        &tool.name,
        tool.definition
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or(""),
        &tool.sql_text,
        access,
        tool.sql_destructive,
        &parameter_descriptions(&tool.definition),
    )
    .await
}

/// The parameter descriptions recorded in a tool's input schema.
pub fn parameter_descriptions(definition: &Value) -> Map<String, Value> {
    definition
        .pointer("/inputSchema/properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter_map(|(k, v)| v.get("description").map(|d| (k.clone(), d.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Loads a SQL tool and its backend (404 when the tool is not a SQL tool of this org).
pub async fn tool_and_backend(
    tx: &mut TenantTx,
    id: gatehouse_core::ids::ToolId,
) -> ApiResult<Option<(SqlToolRow, BackendRow)>> {
    let Some(tool) = backends::get_tool(tx, id).await? else {
        return Ok(None);
    };
    let backend = backends::get(tx, tool.backend_id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    Ok(Some((tool, backend)))
}

/// For a hosted SQL tool being approved with `expected_hash`: runs the publication gate and
/// returns the fresh inspection. `None` for any other tool (or one of another org: the caller
/// answers 404).
pub async fn approval_gate(
    state: &AppState,
    member: &crate::auth::OrgMember,
    id: gatehouse_core::ids::ToolId,
    expected_hash: &[u8],
) -> ApiResult<Option<Value>> {
    let mut tx = member.begin(state).await?;
    let Some((tool, backend)) = tool_and_backend(&mut tx, id).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let neutral = backends::reference_tables(&mut tx, backend.id).await?;
    tx.commit().await?;
    if tool.definition_hash != expected_hash {
        // tools::approve refuses it as a stale definition.
        return Ok(None);
    }
    publication_gate(state, member.scope.org_id(), &backend, &tool, &neutral)
        .await
        .map(Some)
}
