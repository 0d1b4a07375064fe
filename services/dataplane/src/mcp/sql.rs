//! `tools/call` of a hosted SQL tool: run by `gatehouse-hosted-sql` on the tenant's backend, in a
//! transaction that carries the caller's signed context, so the backend's row-level security
//! policies decide which rows this caller sees and changes. No platform-database query on the way.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use gatehouse_core::ids::{BackendId, ToolId};
use gatehouse_core::snapshot::EndpointTool;
use gatehouse_events::{CallConfirmation, CallOutcome, SubjectKind};
use gatehouse_hosted_sql::confirm::ConfirmationRequest;
use gatehouse_hosted_sql::{CallOptions, CallerContext, ErrorKind, Outcome, ToolError};

use crate::elicitations::ID_PREFIX;
use crate::events::CallRecord;
use crate::jsonrpc::{self, Message};

use super::context::{Asking, ClientWire, Ctx, Incoming, KEEP_ALIVE};
use super::error::McpError;
use super::outcome::{Answer, ClientStream, FrameStream, result_value};
use super::relay::frame;

/// `_meta` key of a write's idempotency key (a retry with the same key changes nothing more).
pub(super) const META_IDEMPOTENCY_KEY: &str = "io.gatehouse/idempotency-key";
/// `_meta` key of a destructive call's confirmation token.
pub(super) const META_CONFIRMATION: &str = "io.gatehouse/confirmation";
/// `_meta` key of a 2026-07-28 request's client capabilities.
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Key of the confirmation question in an `input_required` result's `inputRequests`.
const CONFIRM_INPUT: &str = "confirm";
/// Longest wait for the answer to an `elicitation/create` (the token it carries expires sooner
/// or later anyway).
const ELICITATION_WAIT: Duration = Duration::from_secs(300);

/// How the caller confirms a destructive call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConfirmBy {
    /// A 2025 session that declared elicitation: `elicitation/create` on the call's stream.
    Elicitation,
    /// A 2026-07-28 multi-round-trip: an `input_required` result asking through
    /// `elicitation/create`, answered in the retried call's `inputResponses`.
    InputRequired,
    /// The two-step `_meta` token, for clients that cannot be asked.
    Token,
}

impl ConfirmBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Elicitation => "elicitation",
            Self::InputRequired => "input_required",
            Self::Token => "token",
        }
    }
}

/// A call ready to run: everything owned, so it can outlive the request (a 2025 call waits for
/// its confirmation on a response stream).
struct SqlCall {
    ctx: Ctx,
    client_wire: ClientWire,
    id: Value,
    tool_id: ToolId,
    backend_id: BackendId,
    caller: CallerContext,
    arguments: Map<String, Value>,
    idempotency_key: Option<String>,
}

/// What running a call came to.
enum Ran {
    /// The JSON-RPC response, with the record finished.
    Answered(Value),
    /// A destructive call without a confirmation: nothing ran; the record is still open.
    MustConfirm(ConfirmationRequest, CallRecord),
}

/// Runs the hosted SQL tool `tool` (exposed as `name`) for the caller of `ctx`. The grant, rate
/// limits and quota were checked by the caller of this function; `record` is finished here.
pub(super) async fn call(
    incoming: &Incoming<'_>,
    id: &Value,
    tool: &EndpointTool,
    backend_id: BackendId,
    params: Option<&Map<String, Value>>,
    record: CallRecord,
) -> Answer {
    let (ctx, client_wire, session) = (incoming.ctx, incoming.client_wire, incoming.session);
    let (backend, sql_tool) = match ctx.org.sql_tool(tool.tool_id, backend_id) {
        Ok(pair) => pair,
        Err(problem) => {
            tracing::error!(
                org_id = %ctx.org.snapshot.org_id,
                tool_id = %tool.tool_id,
                problem,
                "hosted SQL tool cannot run"
            );
            return Answer::Value(finish(
                record,
                id,
                &ToolError::new(
                    ErrorKind::Misconfigured,
                    "this tool's backend is not usable; its administrators have been told",
                ),
            ));
        }
    };
    // The backend's host is checked against the SSRF guard at each call, as registration did:
    // what a name resolves to can change after the backend was registered.
    if let Err(e) = check_backend_host(ctx, backend.id, &backend.host_port()).await {
        return Answer::Value(finish(record, id, &e));
    }
    let arguments = match params.and_then(|p| p.get("arguments")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(_) => {
            return Answer::Value(finish(
                record,
                id,
                &ToolError::new(ErrorKind::InvalidArguments, "arguments must be an object"),
            ));
        }
    };
    let meta = params.and_then(|p| p.get("_meta")).and_then(Value::as_object);
    // Who can be asked is asked: a 2025 session that declared elicitation on the call's stream,
    // a 2026-07-28 client that declared it with `input_required`; others get the token.
    let declared = meta.and_then(|m| m.get(META_CLIENT_CAPABILITIES));
    let ask = match client_wire.asking(session, declared) {
        Some(Asking::OnStream) => ConfirmBy::Elicitation,
        Some(Asking::InputRequired) => ConfirmBy::InputRequired,
        None => ConfirmBy::Token,
    };
    let run = SqlCall {
        ctx: ctx.clone(),
        client_wire,
        id: id.clone(),
        tool_id: tool.tool_id,
        backend_id,
        caller: caller_context(ctx),
        arguments,
        idempotency_key: meta_str(meta, META_IDEMPOTENCY_KEY),
    };
    // A 2026-07-28 retry carries the token back as `requestState` and the answer in
    // `inputResponses`.
    let request_state = params.and_then(|p| p.get("requestState")).and_then(Value::as_str);
    let (confirmation, confirmed_by) = match request_state {
        Some(state) if sql_tool.destructive => {
            let answer = params
                .and_then(|p| p.get("inputResponses"))
                .and_then(|r| r.get(CONFIRM_INPUT));
            if !accepted(answer) {
                return Answer::Value(run.declined(record, ConfirmBy::InputRequired, "declined"));
            }
            (Some(state.to_owned()), ConfirmBy::InputRequired)
        }
        _ => (meta_str(meta, META_CONFIRMATION), ConfirmBy::Token),
    };
    let (request, record) = match run.run(confirmation, confirmed_by, record).await {
        Ran::Answered(body) => return Answer::Value(body),
        Ran::MustConfirm(request, record) => (request, record),
    };
    match ask {
        ConfirmBy::Elicitation => run.elicit(request, record),
        ConfirmBy::InputRequired => Answer::Value(run.input_required(&request, record)),
        ConfirmBy::Token => Answer::Value(run.token_required(&request, record)),
    }
}

/// Whether an `elicitation/create` answer accepts the confirmation form.
fn accepted(answer: Option<&Value>) -> bool {
    answer.and_then(|a| a.get("action")).and_then(Value::as_str) == Some("accept")
        && answer.and_then(|a| a.pointer("/content/confirm")) == Some(&Value::Bool(true))
}

/// The `elicitation/create` parameters that ask the person to confirm `request`.
fn elicitation_params(request: &ConfirmationRequest) -> Value {
    json!({
        "mode": "form",
        "message": request.message,
        "requestedSchema": {
            "type": "object",
            "properties": {
                "confirm": {
                    "type": "boolean",
                    "title": "Run it",
                    "description": "Nothing runs unless this is true.",
                }
            },
            "required": ["confirm"],
        },
    })
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl SqlCall {
    /// Runs the call (with `confirmation`, the token, for a destructive tool) and answers it,
    /// unless a destructive tool still needs confirming.
    async fn run(
        &self,
        confirmation: Option<String>,
        confirmed_by: ConfirmBy,
        mut record: CallRecord,
    ) -> Ran {
        let ctx = &self.ctx;
        let Ok((backend, tool)) = ctx.org.sql_tool(self.tool_id, self.backend_id) else {
            return Ran::Answered(finish(
                record,
                &self.id,
                &ToolError::new(ErrorKind::Misconfigured, "this tool's backend is not usable"),
            ));
        };
        let presented = confirmation.is_some();
        let options = CallOptions {
            idempotency_key: self.idempotency_key.clone(),
            confirmation,
        };
        match ctx
            .state
            .hosted_sql
            .run(backend, tool, &self.caller, &self.arguments, &options)
            .await
        {
            Ok(Outcome::Done(done)) => {
                if let Some(nonce) = &done.confirmed {
                    tracing::info!(
                        org_id = %ctx.org.snapshot.org_id,
                        tool_id = %self.tool_id,
                        subject = %ctx.principal.subject,
                        confirmation = %nonce,
                        method = confirmed_by.as_str(),
                        "destructive hosted SQL call confirmed and run"
                    );
                    record.set_confirmation(self.confirmation(confirmed_by, Some(nonce.clone()), "accepted"));
                }
                let body = self.answer(done.result.to_call_tool_result());
                record.add_bytes_out(serialized_len(&body));
                record.finish(CallOutcome::Success, None);
                Ran::Answered(body)
            }
            Ok(Outcome::ConfirmationRequired(request)) => Ran::MustConfirm(request, record),
            Err(e) if e.kind == ErrorKind::Confirmation && presented => {
                // A confirmation that does not hold (expired, used, another caller's or call's):
                // refused, and audited as such.
                record.set_confirmation(self.confirmation(confirmed_by, None, "refused"));
                let body = self.answer(e.to_call_tool_result());
                record.add_bytes_out(serialized_len(&body));
                record.finish(CallOutcome::Denied, None);
                Ran::Answered(body)
            }
            Err(e) => Ran::Answered(finish(record, &self.id, &e)),
        }
    }

    fn confirmation(&self, by: ConfirmBy, nonce: Option<String>, decision: &str) -> CallConfirmation {
        CallConfirmation {
            method: by.as_str().to_owned(),
            by: self.ctx.principal.subject.clone(),
            nonce,
            decision: decision.to_owned(),
        }
    }

    /// The JSON-RPC response carrying `result` (a complete result, in the 2026-07-28 revision).
    fn answer(&self, mut result: Value) -> Value {
        self.client_wire.complete(&mut result);
        result_value(&self.id, result)
    }

    /// The person declined (or did not answer): nothing runs; audited as denied.
    fn declined(&self, mut record: CallRecord, by: ConfirmBy, decision: &str) -> Value {
        record.set_confirmation(self.confirmation(by, None, decision));
        let body = self.answer(
            ToolError::new(ErrorKind::Confirmation, "the call was not confirmed; nothing ran")
                .to_call_tool_result(),
        );
        record.add_bytes_out(serialized_len(&body));
        record.finish(CallOutcome::Denied, None);
        body
    }

    /// Nothing ran (recorded as refused, so not billed); `result` asks for the confirmation.
    fn asked(&self, mut record: CallRecord, result: Value) -> Value {
        let body = result_value(&self.id, result);
        record.add_bytes_out(serialized_len(&body));
        record.finish(CallOutcome::Denied, None);
        body
    }

    /// A 2026-07-28 `input_required` result: the client asks the person and retries the call
    /// with the answer and the token as `requestState`.
    fn input_required(&self, request: &ConfirmationRequest, record: CallRecord) -> Value {
        self.asked(
            record,
            json!({
                "resultType": "input_required",
                "inputRequests": {
                    CONFIRM_INPUT: {"method": "elicitation/create", "params": elicitation_params(request)}
                },
                "requestState": request.token,
            }),
        )
    }

    /// A tool error carrying the token: the caller confirms by calling again with it in `_meta`.
    fn token_required(&self, request: &ConfirmationRequest, record: CallRecord) -> Value {
        let expires_at = rfc3339(request.expires_at);
        self.asked(
            record,
            json!({
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
        )
    }

    /// A 2025 session: the response becomes a stream carrying an `elicitation/create` request;
    /// the client's answer (posted on the session) decides, and the call's result follows on the
    /// same stream. When too many questions wait on this replica, the token instead.
    fn elicit(self, request: ConfirmationRequest, record: CallRecord) -> Answer {
        let asker = caller_key(&self.ctx);
        let Some(mut pending) = self.ctx.state.elicitations.ask(asker) else {
            return Answer::Value(self.token_required(&request, record));
        };
        let question = json!({
            "jsonrpc": "2.0",
            "id": pending.id(),
            "method": "elicitation/create",
            "params": elicitation_params(&request),
        });
        let first = Bytes::from(frame(None, None, &question.to_string()));
        let rest = async move {
            let left: Duration = (request.expires_at - time::OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            let wait = left.min(ELICITATION_WAIT);
            let body = match tokio::time::timeout(wait, pending.answer()).await {
                Ok(Some(answer)) if accepted(Some(&answer)) => {
                    match self
                        .run(Some(request.token.clone()), ConfirmBy::Elicitation, record)
                        .await
                    {
                        Ran::Answered(body) => body,
                        // The token was just issued for this very call.
                        Ran::MustConfirm(_, record) => {
                            self.declined(record, ConfirmBy::Elicitation, "refused")
                        }
                    }
                }
                Ok(Some(_)) => self.declined(record, ConfirmBy::Elicitation, "declined"),
                Ok(None) | Err(_) => self.declined(record, ConfirmBy::Elicitation, "unanswered"),
            };
            drop(pending);
            Ok::<_, actix_web::Error>(Bytes::from(frame(None, None, &body.to_string())))
        };
        let stream: FrameStream = Box::pin(futures::StreamExt::chain(
            futures::stream::once(futures::future::ready(Ok(first))),
            futures::stream::once(rest),
        ));
        Answer::Stream(ClientStream {
            frames: stream,
            keep_alive: Some(KEEP_ALIVE),
        })
    }
}

/// Who may answer a question asked of this caller.
fn caller_key(ctx: &Ctx) -> String {
    format!(
        "{}/{}/{}",
        ctx.org.snapshot.org_id,
        ctx.endpoint.id(),
        ctx.principal.subject
    )
}

/// A 2025 session client's answer to a confirmation asked through `elicitation/create`, if
/// `message` is one (its id has [`ID_PREFIX`]): delivered to the waiting call, or refused when
/// no such question of this caller waits on this replica.
pub(super) fn elicitation_answer(ctx: &Ctx, message: &Message) -> Option<Result<(), McpError>> {
    let id = message.id()?.as_str()?.strip_prefix(ID_PREFIX)?;
    let answer = match (message.value.get("result"), message.value.get("error")) {
        (Some(result), _) => result.clone(),
        (None, Some(error)) => json!({"error": error}),
        (None, None) => Value::Null,
    };
    let delivered = ctx
        .state
        .elicitations
        .answer(&format!("{ID_PREFIX}{id}"), &caller_key(ctx), answer);
    Some(if delivered {
        Ok(())
    } else {
        Err(McpError::bad_request(
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: response to an unknown request",
        ))
    })
}

/// Answers with the tool error `e` (`isError: true`), recorded as an error.
fn finish(mut record: CallRecord, id: &Value, e: &ToolError) -> Value {
    let body = result_value(id, e.to_call_tool_result());
    record.add_bytes_out(serialized_len(&body));
    record.finish(CallOutcome::Error, None);
    body
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
