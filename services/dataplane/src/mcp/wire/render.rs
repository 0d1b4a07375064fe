//! The one rendering of answers and errors into HTTP, for both wires: an [`McpError`] as a
//! JSON-RPC error with its status and headers, a JSON-RPC response with the status the wire gives
//! it, an upstream reply relayed, and SSE responses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use gatehouse_events::CallOutcome;

use crate::events::error_code_of;
use crate::redact::Redactor;
use crate::resource;
use crate::upstream::Reply;

use crate::mcp::client_stream::{Carrying, to_client};
use crate::mcp::context::{ClientWire, Ctx};
use crate::mcp::error::{McpError, error_code, protocol_status};
use crate::mcp::outcome::{Answer, ClientStream, FrameStream, Relay};

pub(super) fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::to_vec(body).expect("json"))
}

/// `error` answering request `id` on `wire`.
pub(super) fn error_response(error: &McpError, id: Option<&Value>, wire: ClientWire) -> HttpResponse {
    if let McpError::NotReady = error {
        return resource::not_ready();
    }
    let mut response = json_response(error.status(wire), &error.body(id));
    let headers = response.headers_mut();
    match error {
        McpError::Unauthorized { challenge, .. } | McpError::InsufficientScope { challenge, .. } => {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        McpError::RateLimited { retry_after_secs } => {
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        McpError::MethodNotAllowed => {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        _ => {}
    }
    response
}

/// A refusal before any message is looked at: its status does not depend on the wire.
pub(super) fn refusal(error: &McpError) -> HttpResponse {
    error_response(error, None, ClientWire::Session)
}

/// The answer to request `id` on `wire`.
pub(super) fn answer_response(
    ctx: &Ctx,
    answer: Answer,
    id: Option<Value>,
    wire: ClientWire,
) -> HttpResponse {
    match answer {
        Answer::Value(value) => {
            let status = match wire {
                ClientWire::Stateless => protocol_status(error_code(&value)),
                ClientWire::Session => StatusCode::OK,
            };
            json_response(status, &value)
        }
        Answer::Error(error) => error_response(&error, id.as_ref(), wire),
        Answer::Upstream { reply, relay } => relay_reply(ctx, reply, relay, id),
        Answer::Stream(stream) => sse_response(stream),
    }
}

/// An upstream reply to the client: JSON as it came, streams event by event.
fn relay_reply(ctx: &Ctx, reply: Reply, mut relay: Relay, request_id: Option<Value>) -> HttpResponse {
    match reply {
        Reply::Accepted => {
            if let Some(r) = relay.record.take() {
                r.finish(CallOutcome::Success, None);
            }
            HttpResponse::Accepted().finish()
        }
        Reply::Json { body, .. } => {
            let body = Redactor::apply(ctx.state.redactor.as_ref(), body);
            // A session upstream's answer to a stateless client: shaped, and its protocol
            // errors carry their status in that revision.
            let (body, status) = match relay.shape {
                Some(shape) => {
                    let body = shape.apply_bytes(body);
                    let status = serde_json::from_slice::<Value>(&body)
                        .map(|v| protocol_status(error_code(&v)))
                        .unwrap_or(StatusCode::OK);
                    (body, status)
                }
                None => (body, StatusCode::OK),
            };
            if let Some(mut r) = relay.record.take() {
                r.add_bytes_out(body.len() as u64);
                match error_code_of(&body) {
                    Some(Some(code)) => r.finish(CallOutcome::Error, Some(code)),
                    _ => r.finish(CallOutcome::Success, None),
                }
            }
            HttpResponse::build(status)
                .content_type("application/json")
                .body(body)
        }
        Reply::Status { status, body, json } => {
            let body = Redactor::apply(ctx.state.redactor.as_ref(), body);
            if let Some(r) = relay.record.take() {
                r.finish(CallOutcome::Error, error_code_of(&body).flatten());
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            HttpResponse::build(status)
                .content_type(if json {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                })
                .body(body)
        }
        Reply::Stream { events, .. } => {
            let keep_alive = relay.client_wire.cancellation_probe();
            let frames = to_client(ctx, events, relay, request_id, Carrying::Answer);
            sse_response(ClientStream { frames, keep_alive })
        }
    }
}

/// An SSE response; with `keep_alive`, a comment is written whenever the stream has been quiet
/// that long (proxies keep the connection, and a client that left is noticed).
pub(super) fn sse_response(
    ClientStream {
        frames: stream,
        keep_alive,
    }: ClientStream,
) -> HttpResponse {
    let stream: FrameStream = if let Some(every) = keep_alive {
        let ticks = futures::stream::unfold(
            tokio::time::interval_at(tokio::time::Instant::now() + every, every),
            |mut i| async move {
                i.tick().await;
                Some((Ok(Bytes::from_static(b": keep-alive\n\n")), i))
            },
        );
        // End when the upstream streams end (the `None` after them), not when the ticker would.
        let frames = stream
            .map(Some)
            .chain(futures::stream::once(futures::future::ready(None)));
        Box::pin(
            futures::stream::select(frames, ticks.map(Some))
                .take_while(|item| futures::future::ready(item.is_some()))
                .filter_map(futures::future::ready),
        )
    } else {
        stream
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream)
}
