//! `tools/call`: grant and pin checks (its rate limits and the quota were checked at
//! admission), then the upstream that serves the tool or its hosted SQL backend.

use serde_json::Value;

use gatehouse_core::snapshot::ToolTarget;

use crate::jsonrpc;

use super::context::Incoming;
use super::error::McpError;
use super::forward::forward_request;
use super::outcome::{Answer, unknown_tool};
use super::request::McpRequest;

pub(super) async fn call_tool(incoming: Incoming<'_>, request: McpRequest) -> Answer {
    let ctx = incoming.ctx;
    let id = request.id();
    let McpRequest {
        mut message,
        bytes_in,
        tool: called,
        ..
    } = request;
    let Some(called) = called else {
        return Answer::Error(McpError::protocol(
            jsonrpc::INVALID_PARAMS,
            "Invalid params: tools/call requires a tool name",
        ));
    };
    let arguments = message.params().and_then(|p| p.get("arguments")).cloned();
    let name = called.name.as_str();
    let Some(tool) = called.callable(&ctx.endpoint) else {
        let refused = unknown_tool(name);
        refused.finish(ctx.record("tools/call", Some(name), None, arguments.as_ref(), bytes_in));
        return Answer::Error(refused);
    };
    let server_id = match &tool.target {
        ToolTarget::Upstream { server_id, .. } => Some(*server_id),
        ToolTarget::Sql(_) => None,
    };
    let record = ctx.record("tools/call", Some(name), server_id, arguments.as_ref(), bytes_in);
    match &tool.target {
        ToolTarget::Upstream {
            server_id,
            upstream_name,
        } => {
            let (server_id, upstream_name) = (*server_id, upstream_name.clone());
            if let Some(params) = message.params_mut() {
                params.insert("name".into(), Value::String(upstream_name));
            }
            let input_schema = tool.approved_definition.get("inputSchema");
            forward_request(incoming, message, Some(server_id), Some(record), input_schema).await
        }
        ToolTarget::Sql(target) => {
            super::sql::call(&incoming, &id, tool, target.backend_id, message.params(), record).await
        }
    }
}
