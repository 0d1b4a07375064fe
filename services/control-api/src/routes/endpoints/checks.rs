//! Validation of what an endpoint request sends: rate limits (and the plan's defaults), extra
//! methods, the server selection, and how names, prompts and resources are exposed.

use std::collections::HashSet;

use serde_json::Value;

use gatehouse_core::snapshot::{Limit, MAX_EXTRA_METHODS, RateLimits, extra_method_problem};
use gatehouse_db::TenantTx;
use gatehouse_db::repos::endpoints::{EndpointServer, Exposure};
use gatehouse_db::repos::tools::{self, ToolFilter};
use gatehouse_db::repos::{orgs, scopes, servers};

use crate::error::{ApiError, ApiResult};

use super::types::{EndpointServerIn, ExposureIn};

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

/// The org's plan's default rate limits, as stored on a new endpoint. Parsed and checked like
/// limits a request sends, so a malformed plan value fails here loudly instead of reaching the
/// dataplane.
pub(super) async fn plan_rate_limits(tx: &mut TenantTx) -> ApiResult<Value> {
    let stored = orgs::plan_rate_limit_defaults(tx).await?;
    let limits: RateLimits = serde_json::from_value(stored)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the plan's rate_limit_defaults: {e}")))?;
    check_rate_limits(&limits)?;
    serde_json::to_value(&limits).map_err(|e| ApiError::Internal(e.into()))
}

/// Validates rate limits: each limit in range, per-tool limits keyed by exposed tool names
/// (`<server slug>__<tool>`), at most 1000 of them.
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
pub(super) async fn checked_exposure(
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
pub(super) fn checked_extra_methods(methods: &[String]) -> ApiResult<Vec<String>> {
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

/// Validates a server selection against the org's servers and tools.
pub(super) async fn checked_selection(
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
