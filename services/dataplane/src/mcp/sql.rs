//! `tools/call` of a hosted SQL tool: run by `gatehouse-hosted-sql` on the tenant's backend, in a
//! transaction that carries the caller's signed context, so the backend's row-level security
//! policies decide which rows this caller sees and changes. No platform-database query on the way.

use serde_json::{Map, Value, json};

use gatehouse_core::ids::BackendId;
use gatehouse_core::snapshot::EndpointTool;
use gatehouse_events::{CallOutcome, SubjectKind};
use gatehouse_hosted_sql::{CallOptions, CallerContext, ErrorKind, Outcome, ToolError};

use crate::events::CallRecord;

use super::admission::Ctx;
use super::dispatch::{Answer, result_value};

/// `_meta` key of a write's idempotency key (a retry with the same key changes nothing more).
pub(super) const META_IDEMPOTENCY_KEY: &str = "io.gatehouse/idempotency-key";
/// `_meta` key of a destructive call's confirmation token.
pub(super) const META_CONFIRMATION: &str = "io.gatehouse/confirmation";

/// Runs the hosted SQL tool `tool` (exposed as `name`) for the caller of `ctx`. The grant, rate
/// limits and quota were checked by the caller of this function; `record` is finished here.
pub(super) async fn call(
    ctx: &Ctx,
    id: &Value,
    tool: &EndpointTool,
    backend_id: BackendId,
    params: Option<&Map<String, Value>>,
    mut record: CallRecord,
) -> Answer {
    let (backend, sql_tool) = match ctx.org.sql_tool(tool.tool_id, backend_id) {
        Ok(pair) => pair,
        Err(problem) => {
            tracing::error!(
                org_id = %ctx.org.snapshot.org_id,
                tool_id = %tool.tool_id,
                problem,
                "hosted SQL tool cannot run"
            );
            return finish(
                record,
                id,
                &ToolError::new(
                    ErrorKind::Misconfigured,
                    "this tool's backend is not usable; its administrators have been told",
                ),
            );
        }
    };
    // The backend's host is checked against the SSRF guard at each call, as registration did:
    // what a name resolves to can change after the backend was registered.
    if let Err(e) = check_backend_host(ctx, backend.id, &backend.host_port()).await {
        return finish(record, id, &e);
    }
    let arguments = match params.and_then(|p| p.get("arguments")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(_) => {
            return finish(
                record,
                id,
                &ToolError::new(ErrorKind::InvalidArguments, "arguments must be an object"),
            );
        }
    };
    let meta = params.and_then(|p| p.get("_meta")).and_then(Value::as_object);
    let options = CallOptions {
        idempotency_key: meta_str(meta, META_IDEMPOTENCY_KEY),
        confirmation: meta_str(meta, META_CONFIRMATION),
    };
    let caller = caller_context(ctx);
    match ctx
        .state
        .hosted_sql
        .run(backend, sql_tool, &caller, &arguments, &options)
        .await
    {
        Ok(Outcome::Done(done)) => {
            if let Some(nonce) = &done.confirmed {
                tracing::info!(
                    org_id = %ctx.org.snapshot.org_id,
                    tool_id = %tool.tool_id,
                    subject = %ctx.principal.subject,
                    confirmation = %nonce,
                    "destructive hosted SQL call confirmed and run"
                );
            }
            let body = result_value(id, done.result.to_call_tool_result());
            record.add_bytes_out(serialized_len(&body));
            record.finish(CallOutcome::Success, None);
            Answer::Value(body)
        }
        Ok(Outcome::ConfirmationRequired(request)) => {
            // Nothing ran (recorded as refused, so not billed). The caller is told how to confirm:
            // the same call again with the token.
            let result = json!({
                "content": [{
                    "type": "text",
                    "text": format!(
                        "{} To run it, call this tool again with the same arguments and \
                         _meta[\"{META_CONFIRMATION}\"] set to the token in structuredContent \
                         (valid until {}).",
                        request.message,
                        request.expires_at
                    ),
                }],
                "structuredContent": {
                    "confirmation_required": true,
                    "token": request.token,
                    "expires_at": request.expires_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    "message": request.message,
                },
                "isError": true,
            });
            let body = result_value(id, result);
            record.add_bytes_out(serialized_len(&body));
            record.finish(CallOutcome::Denied, None);
            Answer::Value(body)
        }
        Err(e) => finish(record, id, &e),
    }
}

/// Answers with the tool error `e` (`isError: true`), recorded as an error.
fn finish(mut record: CallRecord, id: &Value, e: &ToolError) -> Answer {
    let body = result_value(id, e.to_call_tool_result());
    record.add_bytes_out(serialized_len(&body));
    record.finish(CallOutcome::Error, None);
    Answer::Value(body)
}

fn serialized_len(body: &Value) -> u64 {
    serde_json::to_vec(body).map_or(0, |b| b.len() as u64)
}

fn meta_str(meta: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    meta.and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The caller as the dataplane verified it, for the backend's `gatehouse` accessor functions.
fn caller_context(ctx: &Ctx) -> CallerContext {
    let principal = &ctx.principal;
    let mut scopes: Vec<String> = principal.scopes.iter().cloned().collect();
    scopes.sort();
    CallerContext {
        org_id: ctx.org.snapshot.org_id,
        endpoint_id: ctx.endpoint.id(),
        subject: principal.subject.clone(),
        subject_kind: match principal.kind {
            SubjectKind::User => "user",
            SubjectKind::OauthClient => "client",
            SubjectKind::ServiceToken => "service_token",
            SubjectKind::Anonymous => "anonymous",
        }
        .to_owned(),
        email: None,
        scopes,
        attributes: Default::default(),
    }
}

async fn check_backend_host(
    ctx: &Ctx,
    backend: BackendId,
    (host, port): &(String, u16),
) -> Result<(), ToolError> {
    match ctx.state.egress.check_host(host, *port).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(backend_id = %backend, error = %e, "hosted SQL backend refused by the egress guard");
            Err(match e {
                gatehouse_egress::EgressError::Unresolvable
                | gatehouse_egress::EgressError::Timeout
                | gatehouse_egress::EgressError::Unreachable => {
                    ToolError::new(ErrorKind::Unavailable, "the backend cannot be reached")
                }
                _ => ToolError::new(ErrorKind::Misconfigured, "the backend's address is not allowed"),
            })
        }
    }
}
