//! `tools/call` (grant and pin checks; its rate limits and the quota were checked at admission)
//! and forwarding a request to the upstream that owns it, with the upstream session and SEP-2243
//! headers to use.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::ToolTarget;
use gatehouse_events::CallOutcome;

use crate::events::CallRecord;
use crate::headers;
use crate::jsonrpc::{self, Message};
use crate::upstream::{Reply, UpstreamError, Wire};

use super::bridge::{self, StatelessShape, Unroutable};
use super::dispatch::{Answer, Relay, unknown_tool};
use super::input;
use super::relay::{relay_events, sse_response};
use super::{Era, Incoming, rpc_error};

/// The SEP-2243 headers for a request to a stateless upstream: computed from the body we send,
/// plus those of the client's `Mcp-Param-*` headers (validated before) that `input_schema`, the
/// approved input schema of the called tool, declares (`x-mcp-header`). No other client header
/// is forwarded.
pub(super) fn mcp_headers_for(
    message: &Message,
    req: Option<&HttpRequest>,
    input_schema: Option<&Value>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Ok(v) = HeaderValue::from_str(&headers::encode_value(message.method())) {
        out.push((HeaderName::from_static("mcp-method"), v));
    }
    if let Some(name) = headers::expected_name(message.method(), message.params())
        && let Ok(v) = HeaderValue::from_str(&headers::encode_value(name))
    {
        out.push((HeaderName::from_static("mcp-name"), v));
    }
    let declared: Vec<String> = input_schema
        .map(headers::param_annotations)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, header)| format!("{}{header}", headers::MCP_PARAM_PREFIX))
        .collect();
    if let Some(req) = req {
        for (name, value) in req.headers() {
            if declared.iter().any(|d| d == name.as_str())
                && let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_str().as_bytes()),
                    HeaderValue::from_bytes(value.as_bytes()),
                )
            {
                out.push((n, v));
            }
        }
    }
    out
}

pub(super) async fn call_tool(incoming: Incoming<'_>, mut message: Message, bytes_in: u64) -> Answer {
    let ctx = incoming.ctx;
    let id = message.id().cloned().unwrap_or(Value::Null);
    let Some(name) = message.param_str("name").map(str::to_owned) else {
        return Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::INVALID_PARAMS,
            "Invalid params: tools/call requires a tool name",
            None,
        ));
    };
    let arguments = message.params().and_then(|p| p.get("arguments")).cloned();
    let Some(tool) = ctx.callable_tool(&name) else {
        // Unknown, not granted and withheld look the same: the caller learns nothing.
        let mut record = ctx.record("tools/call", Some(&name), None, arguments.as_ref(), bytes_in);
        record.set_outcome(CallOutcome::Denied, Some(jsonrpc::INVALID_PARAMS));
        drop(record);
        return unknown_tool(&id, &name);
    };
    let server_id = match &tool.target {
        ToolTarget::Upstream { server_id, .. } => Some(*server_id),
        ToolTarget::Sql(_) => None,
    };
    let record = ctx.record("tools/call", Some(&name), server_id, arguments.as_ref(), bytes_in);
    match &tool.target {
        ToolTarget::Upstream {
            server_id,
            upstream_name,
        } => {
            let (server_id, upstream_name) = (*server_id, upstream_name.clone());
            if let Some(params) = message.params_mut() {
                params.insert("name".into(), Value::String(upstream_name));
            }
            forward_request(incoming, message, Some(server_id), Some(record)).await
        }
        ToolTarget::Sql(target) => {
            super::sql::call(&incoming, &id, tool, target.backend_id, message.params(), record).await
        }
    }
}

/// Sends a request to `target` and hands back its reply for relaying.
pub(super) async fn forward_request(
    incoming: Incoming<'_>,
    message: Message,
    target: Option<ServerId>,
    record: Option<CallRecord>,
) -> Answer {
    let Incoming {
        http: req,
        ctx,
        era,
        session,
    } = incoming;
    let id = message.id().cloned().unwrap_or(Value::Null);
    let fail = |record: Option<CallRecord>, code: i64, text: &str| {
        if let Some(r) = record {
            r.finish(CallOutcome::Error, Some(code));
        }
        Answer::Value(jsonrpc::error_body(Some(&id), code, text, None))
    };
    let Some(server_id) = target else {
        return fail(
            record,
            jsonrpc::METHOD_NOT_FOUND,
            "Method not found: no upstream serves this request",
        );
    };
    let Some(server) = ctx.server(server_id).cloned() else {
        return fail(
            record,
            jsonrpc::INTERNAL_ERROR,
            "Upstream server is not configured",
        );
    };
    let index = session
        .and_then(|s| s.upstreams.iter().position(|u| u.server == server_id))
        .unwrap_or(0);
    if era == Era::Modern || session.is_some() {
        ctx.state.pins.watch(ctx.org.snapshot.org_id, server_id);
    }
    // The approved schema of the tool called (its upstream name is in the message by now).
    let input_schema = (message.method() == "tools/call")
        .then(|| {
            ctx.endpoint
                .tool_by_upstream(server_id, message.param_str("name")?)
        })
        .flatten()
        .and_then(|t| t.approved_definition.get("inputSchema"));
    let sent = bridge::send(ctx, era, session, &server, &message, Some(req), input_schema).await;
    match sent {
        Ok((reply, route)) => {
            let relay = Relay {
                era,
                index,
                server: server_id,
                record,
                shape: StatelessShape::needed(era, route.wire, message.method()),
            };
            match (era, route.wire, reply) {
                // A listen stream served from a session upstream's own session is already the
                // revision's (`listen::in_own_session`).
                (Era::Modern, Wire::Session, reply) if message.method() == "subscriptions/listen" => {
                    Answer::Upstream { reply, relay }
                }
                // The upstream's requests on the stream become `input_required` (and back).
                (Era::Modern, Wire::Session, Reply::Stream { events, session_id }) => {
                    let events = input::stateless_view(ctx, events, route, id.clone());
                    // An answer that is the stream's first message goes as JSON, with the HTTP
                    // status its error has in the client's revision.
                    let reply = input::answer_first(events, &id, session_id).await;
                    Answer::Upstream { reply, relay }
                }
                // An `input_required` result becomes requests on the stream, answered by the
                // client and sent on with the next round.
                (Era::Legacy, Wire::Stateless, reply) if input::may_ask(&reply) => {
                    let session = session.expect("a session client");
                    let events = input::session_view(ctx, session, &server, message, reply);
                    let request_id = Some(id.clone());
                    let hook = None;
                    let events = relay_events(events, relay, request_id, hook, ctx.state.redactor.clone());
                    Answer::Http(sse_response(events, None))
                }
                (_, _, reply) => Answer::Upstream { reply, relay },
            }
        }
        Err(Unroutable::NotInSession) => fail(
            record,
            jsonrpc::SERVER_ERROR,
            "Upstream unavailable for this session; re-initialize",
        ),
        Err(Unroutable::UnknownRequestState) => fail(
            record,
            jsonrpc::INVALID_PARAMS,
            "Invalid params: requestState is not valid (altered or expired); send the request again without it",
        ),
        Err(Unroutable::Upstream(UpstreamError::SessionGone)) => {
            if let Some(r) = record {
                r.finish(CallOutcome::Error, None);
            }
            Answer::Http(rpc_error(
                StatusCode::NOT_FOUND,
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                "Not Found: session expired upstream; re-initialize",
                None,
            ))
        }
        Err(Unroutable::Upstream(e)) => {
            tracing::warn!(server_id = %server_id, error = %e, "upstream request failed");
            fail(record, jsonrpc::SERVER_ERROR, "Upstream server unavailable")
        }
    }
}
