//! The stateless wire (2026-07-28): the `MCP-Protocol-Version` and SEP-2243 header checks against
//! the body, and answering at once when quick or as an SSE stream that probes for cancellation.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::headers::{self, MCP_PROTOCOL_VERSION, RawHeaders};
use crate::jsonrpc::{self, Kind};

use crate::mcp::context::{CANCELLATION_PROBE, ClientWire, Ctx, Incoming, STATELESS_VERSIONS, all_versions};
use crate::mcp::dispatch::dispatch;
use crate::mcp::error::McpError;
use crate::mcp::outcome::Answer;
use crate::mcp::outcome::FrameStream;
use crate::mcp::request::{McpRequest, Method};

use super::render::{answer_response, answer_stream, error_response, with_keep_alive};

/// Methods the stateless revision removed (SEP-2575): 404 with -32601.
const REMOVED_IN_STATELESS: &[Method] = &[
    Method::Initialize,
    Method::Ping,
    Method::LoggingSetLevel,
    Method::ResourcesSubscribe,
    Method::ResourcesUnsubscribe,
];

fn raw_headers(req: &HttpRequest) -> RawHeaders<'_> {
    req.headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect()
}

/// One message on the stateless wire: the revision's header and `_meta` checks, then the answer.
pub(super) async fn handle(req: &HttpRequest, ctx: &Ctx, request: McpRequest) -> HttpResponse {
    let id = request.answer_id().cloned();
    let header_version = match checked_version(req, ctx, &request) {
        Ok(version) => version,
        Err(error) => return error_response(&error, id.as_ref(), ClientWire::Stateless),
    };
    match request.kind() {
        // Without sessions a notification has nowhere to go; closing a stream cancels.
        Kind::Notification => HttpResponse::Accepted().finish(),
        Kind::Response => error_response(
            &McpError::bad_request(
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: a stateless server accepts no JSON-RPC responses",
            ),
            None,
            ClientWire::Stateless,
        ),
        Kind::Request if REMOVED_IN_STATELESS.contains(&request.method) => error_response(
            &McpError::method_not_found(&format!(
                "{} does not exist in protocol version {header_version}",
                request.method.as_str()
            )),
            id.as_ref(),
            ClientWire::Stateless,
        ),
        Kind::Request => {
            let (req, ctx) = (req.clone(), ctx.clone());
            let answering = Box::pin(async move {
                let answer = dispatch(Incoming::stateless(&req, &ctx), request).await;
                (ctx, answer)
            });
            respond_or_stream(answering, id).await
        }
    }
}

/// The revision's checks of a message against its HTTP request: `MCP-Protocol-Version` present,
/// supported and equal to the request's `_meta` one, the required `_meta` fields, and the
/// SEP-2243 headers matching the body. The revision, when they pass.
fn checked_version<'r>(req: &'r HttpRequest, ctx: &Ctx, request: &McpRequest) -> Result<&'r str, McpError> {
    let message = &request.message;
    let header_version = req
        .headers()
        .get(MCP_PROTOCOL_VERSION)
        .ok_or_else(|| {
            McpError::bad_request(
                jsonrpc::HEADER_MISMATCH,
                "Header mismatch: the MCP-Protocol-Version header is required",
            )
        })?
        .to_str()
        .map_err(|_| {
            McpError::bad_request(
                jsonrpc::HEADER_MISMATCH,
                "Header mismatch: MCP-Protocol-Version is not valid",
            )
        })?;
    if request.kind() == Kind::Request {
        let declares_capabilities = message.meta_client_capabilities().is_some_and(Value::is_object);
        match message.meta_protocol_version() {
            None => {
                return Err(McpError::bad_request(
                    jsonrpc::INVALID_PARAMS,
                    format!(
                        "Invalid params: request _meta is missing or has malformed required fields: {}",
                        jsonrpc::META_PROTOCOL_VERSION
                    ),
                ));
            }
            Some(_) if !declares_capabilities => {
                return Err(McpError::bad_request(
                    jsonrpc::INVALID_PARAMS,
                    "Invalid params: request _meta is missing or has malformed required fields: io.modelcontextprotocol/clientCapabilities",
                ));
            }
            Some(meta) if meta != header_version => {
                return Err(McpError::bad_request(
                    jsonrpc::HEADER_MISMATCH,
                    format!(
                        "Header mismatch: MCP-Protocol-Version header ({header_version}) does not match request _meta protocolVersion ({meta})"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if !STATELESS_VERSIONS.contains(&header_version) {
        return Err(McpError::BadRequest {
            code: jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            message: format!("Unsupported protocol version: {header_version}"),
            data: Some(json!({"supported": all_versions(), "requested": header_version})),
        });
    }
    if request.kind() != Kind::Response {
        let tool_schema = request
            .tool
            .as_ref()
            .and_then(|t| t.definition(&ctx.endpoint))
            .and_then(|t| t.approved_definition.get("inputSchema"));
        if let Err(reason) = headers::validate_standard(
            &raw_headers(req),
            request.method.as_str(),
            message.params(),
            tool_schema,
        ) {
            metrics::counter!("gatehouse_dataplane_header_mismatch_total").increment(1);
            return Err(McpError::bad_request(
                jsonrpc::HEADER_MISMATCH,
                format!("Header mismatch: {reason}"),
            ));
        }
    }
    Ok(header_version)
}

/// How long a 2026-07-28 request may take before its answer turns into a stream.
const ANSWER_AS_STREAM_AFTER: Duration = Duration::from_millis(500);

/// Answers as the request completes when it completes quickly (most calls: a plain JSON answer).
/// A slower request gets an SSE response at once, which writes a comment every
/// [`CANCELLATION_PROBE`] until the answer is ready and then carries it as an event. actix notices
/// that a client has gone only when a write fails; closing the response stream is cancellation in
/// this revision, and dropping the pending request closes its upstream call.
async fn respond_or_stream(
    mut answering: std::pin::Pin<Box<dyn std::future::Future<Output = (Ctx, Answer)>>>,
    id: Option<Value>,
) -> HttpResponse {
    if let Ok((ctx, answer)) = tokio::time::timeout(ANSWER_AS_STREAM_AFTER, &mut answering).await {
        return answer_response(&ctx, answer, id, ClientWire::Stateless);
    }
    metrics::counter!("gatehouse_dataplane_answers_streamed_total").increment(1);
    let ticks = futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now(), CANCELLATION_PROBE),
        |mut interval| async move {
            interval.tick().await;
            Some((
                Ok(Bytes::from_static(b": waiting for the upstream\n\n")),
                interval,
            ))
        },
    );
    // Comments until the answer is ready, then the answer as SSE frames.
    let waiting = futures::stream::select(
        ticks.map(futures::future::Either::Left),
        futures::stream::once(answering).map(futures::future::Either::Right),
    )
    .take_while({
        let mut done = false;
        move |item| {
            let go = !done;
            if matches!(item, futures::future::Either::Right(_)) {
                done = true;
            }
            futures::future::ready(go)
        }
    });
    let frames = waiting.flat_map(move |item| -> FrameStream {
        match item {
            futures::future::Either::Left(comment) => {
                Box::pin(futures::stream::once(futures::future::ready(comment)))
            }
            futures::future::Either::Right((ctx, answer)) => {
                with_keep_alive(answer_stream(&ctx, answer, id.clone()))
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(frames)
}
