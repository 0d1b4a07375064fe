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

use crate::events::{error_code_in, error_code_of};
use crate::redact::Redactor;
use crate::resource;
use crate::upstream::{Reply, SseEvents};

use crate::mcp::client_stream::{Carrying, to_client};
use crate::mcp::context::{ClientWire, Ctx};
use crate::mcp::error::{McpError, protocol_status};
use crate::mcp::outcome::{Answer, ClientStream, FrameStream, Relay};
use crate::mcp::relay::frame;

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
                ClientWire::Stateless => protocol_status(error_code_in(&value)),
                ClientWire::Session => StatusCode::OK,
            };
            json_response(status, &value)
        }
        Answer::Error(error) => error_response(&error, id.as_ref(), wire),
        Answer::Upstream { reply, relay } => relay_reply(ctx, reply, relay, id),
        Answer::Stream(stream) => sse_response(stream),
    }
}

/// An upstream reply to the client.
fn relay_reply(ctx: &Ctx, reply: Reply, mut relay: Relay, request_id: Option<Value>) -> HttpResponse {
    match reply {
        Reply::Accepted => {
            relayed_accepted(&mut relay);
            HttpResponse::Accepted().finish()
        }
        Reply::Json { body, .. } => {
            let (body, status) = relayed_json(ctx, body, &mut relay);
            HttpResponse::build(status)
                .content_type("application/json")
                .body(body)
        }
        Reply::Status { status, body, json } => {
            let body = relayed_status(ctx, body, &mut relay);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            HttpResponse::build(status)
                .content_type(if json {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                })
                .body(body)
        }
        Reply::Stream { events, .. } => sse_response(relayed_stream(ctx, events, relay, request_id)),
    }
}

/// An answer that took too long to go as JSON, as the frames of the stateless wire's SSE
/// response: a JSON-RPC message becomes one event, a stream is relayed; anything else (no
/// message to carry) becomes nothing.
pub(super) fn answer_stream(ctx: &Ctx, answer: Answer, id: Option<Value>) -> ClientStream {
    let message = |body: Option<Bytes>| {
        let event = body.map(|b| Ok(Bytes::from(frame(None, None, &String::from_utf8_lossy(&b)))));
        ClientStream {
            frames: Box::pin(futures::stream::iter(event)),
            keep_alive: None,
        }
    };
    let json = |value: &Value| Some(Bytes::from(serde_json::to_vec(value).expect("json")));
    // An upstream's body goes only if it is JSON (checked without building it).
    let upstream_json =
        |body: Bytes| Some(body).filter(|b| serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok());
    match answer {
        Answer::Value(value) => message(json(&value)),
        Answer::Error(error) => message(json(&error.body(id.as_ref()))),
        Answer::Stream(stream) => stream,
        Answer::Upstream { reply, mut relay } => match reply {
            Reply::Accepted => {
                relayed_accepted(&mut relay);
                message(None)
            }
            Reply::Json { body, .. } => message(upstream_json(relayed_json(ctx, body, &mut relay).0)),
            Reply::Status { body, .. } => message(upstream_json(relayed_status(ctx, body, &mut relay))),
            Reply::Stream { events, .. } => relayed_stream(ctx, events, relay, id),
        },
    }
}

fn relayed_accepted(relay: &mut Relay) {
    if let Some(r) = relay.record.take() {
        r.finish(CallOutcome::Success, None);
    }
}

/// An upstream's JSON answer as the client gets it: redacted; made the client's when the relay
/// changes answers (`Relay::to_client`: a stateless client's call in a session upstream), with
/// the status its protocol error carries on that wire; the call record finished. A changed
/// answer is read once and written once.
fn relayed_json(ctx: &Ctx, body: Bytes, relay: &mut Relay) -> (Bytes, StatusCode) {
    let body = Redactor::apply(ctx.state.redactor.as_ref(), body);
    let parsed = relay
        .changes_answers()
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten();
    let (body, status, code) = match parsed {
        Some(mut answer) => {
            let status = match relay.shape {
                Some(_) => protocol_status(error_code_in(&answer)),
                None => StatusCode::OK,
            };
            let code = error_code_in(&answer);
            let body = match relay.to_client(&mut answer) {
                true => Bytes::from(serde_json::to_vec(&answer).expect("json")),
                false => body,
            };
            (body, status, code)
        }
        None => {
            let code = error_code_of(&body).flatten();
            (body, StatusCode::OK, code)
        }
    };
    if let Some(mut r) = relay.record.take() {
        r.add_bytes_out(body.len() as u64);
        r.finish_answered(code);
    }
    (body, status)
}

/// An upstream's refusal (an HTTP error status) as the client gets it: redacted, under the
/// client's id; the call record finished as an error.
fn relayed_status(ctx: &Ctx, body: Bytes, relay: &mut Relay) -> Bytes {
    let mut body = Redactor::apply(ctx.state.redactor.as_ref(), body);
    if relay.renamed.is_some()
        && let Ok(mut answer) = serde_json::from_slice::<Value>(&body)
        && relay.to_client(&mut answer)
    {
        body = Bytes::from(serde_json::to_vec(&answer).expect("json"));
    }
    if let Some(r) = relay.record.take() {
        r.finish(CallOutcome::Error, error_code_of(&body).flatten());
    }
    body
}

/// An upstream's stream answering the client's request: probed for the client leaving on the
/// stateless wire (a session client's disconnect is not cancellation: it may resume).
fn relayed_stream(ctx: &Ctx, events: SseEvents, relay: Relay, request_id: Option<Value>) -> ClientStream {
    let keep_alive = relay.client_wire.cancellation_probe();
    let frames = to_client(ctx, events, relay, request_id, Carrying::Answer);
    ClientStream { frames, keep_alive }
}

/// An SSE response; with `keep_alive`, a comment is written whenever the stream has been quiet
/// that long (proxies keep the connection, and a client that left is noticed).
pub(super) fn sse_response(stream: ClientStream) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(with_keep_alive(stream))
}

/// The stream's frames, with its keep-alive comments.
pub(super) fn with_keep_alive(ClientStream { frames, keep_alive }: ClientStream) -> FrameStream {
    let Some(every) = keep_alive else {
        return frames;
    };
    let ticks = futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        |mut i| async move {
            i.tick().await;
            Some((Ok(Bytes::from_static(b": keep-alive\n\n")), i))
        },
    );
    // End when the upstream streams end (the `None` after them), not when the ticker would.
    let frames = frames
        .map(Some)
        .chain(futures::stream::once(futures::future::ready(None)));
    Box::pin(
        futures::stream::select(frames, ticks.map(Some))
            .take_while(|item| futures::future::ready(item.is_some()))
            .filter_map(futures::future::ready),
    )
}
