//! `tools/call` of a hosted SQL tool: run by `gatehouse-hosted-sql` on the tenant's backend, in a
//! transaction that carries the caller's signed context, so the backend's row-level security
//! policies decide which rows this caller sees and changes. No platform-database query on the way.

use serde_json::{Map, Value, json};

use gatehouse_core::ids::BackendId;
use gatehouse_core::snapshot::EndpointTool;
use gatehouse_events::{CallConfirmation, CallOutcome, SubjectKind};
use gatehouse_hosted_sql::{CallOptions, CallerContext, ErrorKind, Outcome, ToolError};

use crate::events::CallRecord;

use super::admission::Ctx;
use super::Era;
use super::dispatch::{Answer, result_value};

/// `_meta` key of a write's idempotency key (a retry with the same key changes nothing more).
pub(super) const META_IDEMPOTENCY_KEY: &str = "io.gatehouse/idempotency-key";
/// `_meta` key of a destructive call's confirmation token.
pub(super) const META_CONFIRMATION: &str = "io.gatehouse/confirmation";
/// `_meta` key of a 2026-07-28 request's client capabilities.
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Key of the confirmation question in an `input_required` result's `inputRequests`.
const CONFIRM_INPUT: &str = "confirm";

/// How the caller confirms a destructive call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConfirmBy {
    /// A 2026-07-28 multi-round-trip: an `input_required` result asking through
    /// `elicitation/create`, answered in the retried call's `inputResponses`.
    InputRequired,
    /// The two-step `_meta` token, for clients that cannot be asked.
    Token,
}

impl ConfirmBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::InputRequired => "input_required",
            Self::Token => "token",
        }
    }
}

/// Runs the hosted SQL tool `tool` (exposed as `name`) for the caller of `ctx`. The grant, rate
/// limits and quota were checked by the caller of this function; `record` is finished here.
pub(super) async fn call(
    ctx: &Ctx,
    era: Era,
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
    // A 2026-07-28 client that can be asked is asked with `input_required`; its retry carries the
    // token back as `requestState` and the person's answer in `inputResponses`.
    let ask = if era == Era::Modern
        && meta
            .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
            .and_then(|c| c.get("elicitation"))
            .is_some_and(Value::is_object)
    {
        ConfirmBy::InputRequired
    } else {
        ConfirmBy::Token
    };
    let request_state = params
        .and_then(|p| p.get("requestState"))
        .and_then(Value::as_str);
    let (confirmation, confirmed_by) = match request_state {
        Some(state) if sql_tool.destructive => {
            let answer = params
                .and_then(|p| p.get("inputResponses"))
                .and_then(|r| r.get(CONFIRM_INPUT));
            let accepted = answer
                .and_then(|a| a.get("action"))
                .and_then(Value::as_str)
                == Some("accept")
                && answer.and_then(|a| a.pointer("/content/confirm")) == Some(&Value::Bool(true));
            if !accepted {
                return declined(ctx, era, record, id);
            }
            (Some(state.to_owned()), ConfirmBy::InputRequired)
        }
        _ => (meta_str(meta, META_CONFIRMATION), ConfirmBy::Token),
    };
    let options = CallOptions {
        idempotency_key: meta_str(meta, META_IDEMPOTENCY_KEY),
        confirmation,
    };
    let presented = options.confirmation.is_some();
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
                    method = confirmed_by.as_str(),
                    "destructive hosted SQL call confirmed and run"
                );
                record.set_confirmation(CallConfirmation {
                    method: confirmed_by.as_str().to_owned(),
                    by: ctx.principal.subject.clone(),
                    nonce: Some(nonce.clone()),
                    decision: "accepted".to_owned(),
                });
            }
            let mut result = done.result.to_call_tool_result();
            if era == Era::Modern {
                result["resultType"] = json!("complete");
            }
            let body = result_value(id, result);
            record.add_bytes_out(serialized_len(&body));
            record.finish(CallOutcome::Success, None);
            Answer::Value(body)
        }
        Ok(Outcome::ConfirmationRequired(request)) => {
            // Nothing ran (recorded as refused, so not billed). The caller is asked, or told how
            // to confirm: the same call again with the token.
            let expires_at = request
                .expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let result = match ask {
                ConfirmBy::InputRequired => json!({
                    "resultType": "input_required",
                    "inputRequests": {
                        CONFIRM_INPUT: {
                            "method": "elicitation/create",
                            "params": {
                                "mode": "form",
                                "message": request.message,
                                "requestedSchema": {
                                    "type": "object",
                                    "properties": {
                                        "confirm": {
                                            "type": "boolean",
                                            "title": "Run it",
                                            "description": format!("Confirm before {expires_at}"),
                                        }
                                    },
                                    "required": ["confirm"],
                                },
                            },
                        }
                    },
                    "requestState": request.token,
                }),
                ConfirmBy::Token => json!({
                    "content": [{
                        "type": "text",
                        "text": format!(
                            "{} To run it, call this tool again with the same arguments and \
                             _meta[\"{META_CONFIRMATION}\"] set to the token in structuredContent \
                             (valid until {expires_at}).",
                            request.message,
                        ),
                    }],
                    "structuredContent": {
                        "confirmation_required": true,
                        "token": request.token,
                        "expires_at": expires_at,
                        "message": request.message,
                    },
                    "isError": true,
                }),
            };
            let body = result_value(id, result);
            record.add_bytes_out(serialized_len(&body));
            record.finish(CallOutcome::Denied, None);
            Answer::Value(body)
        }
        Err(e) if e.kind == ErrorKind::Confirmation && presented => {
            // A confirmation that does not hold (expired, used, another caller's or call's):
            // refused, and audited as such.
            record.set_confirmation(CallConfirmation {
                method: confirmed_by.as_str().to_owned(),
                by: ctx.principal.subject.clone(),
                nonce: None,
                decision: "refused".to_owned(),
            });
            let body = result_value(id, e.to_call_tool_result());
            record.add_bytes_out(serialized_len(&body));
            record.finish(CallOutcome::Denied, None);
            Answer::Value(body)
        }
        Err(e) => finish(record, id, &e),
    }
}

/// The person declined (or cancelled) a confirmation asked through `input_required`: nothing
/// runs, and the call is audited as denied.
fn declined(ctx: &Ctx, era: Era, mut record: CallRecord, id: &Value) -> Answer {
    record.set_confirmation(CallConfirmation {
        method: ConfirmBy::InputRequired.as_str().to_owned(),
        by: ctx.principal.subject.clone(),
        nonce: None,
        decision: "declined".to_owned(),
    });
    let mut result = ToolError::new(
        ErrorKind::Confirmation,
        "the call was not confirmed; nothing ran",
    )
    .to_call_tool_result();
    if era == Era::Modern {
        result["resultType"] = json!("complete");
    }
    let body = result_value(id, result);
    record.add_bytes_out(serialized_len(&body));
    record.finish(CallOutcome::Denied, None);
    Answer::Value(body)
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

/// The caller as the dataplane verified it, for the backend's `gatehouse` accessor functions:
/// the credential's subject and scopes, with the email and attribute values the org's snapshot
/// has for that subject.
fn caller_context(ctx: &Ctx) -> CallerContext {
    let principal = &ctx.principal;
    let known = ctx.org.caller(&principal.subject);
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
        email: known.and_then(|c| c.email.clone()),
        scopes,
        attributes: known.map(|c| c.attributes.clone()).unwrap_or_default(),
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
