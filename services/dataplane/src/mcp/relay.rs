//! Upstream replies back to the client: JSON as it came, streams as SSE frames (event ids and
//! server→client request ids rewritten to name their upstream), and the client's answers to those
//! requests routed back to the upstream that asked.

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use gatehouse_core::ids::ServerId;
use gatehouse_events::CallOutcome;

use crate::events::error_code_of;
use crate::jsonrpc;
use crate::redact::Redactor;
use crate::store::OrgState;
use crate::upstream::Reply;

use super::context::{CANCELLATION_PROBE, Ctx, Era};
use super::http::stateless_status;
use super::input::LocalEvents;
use super::outcome::Relay;

pub(super) const SSE_RETRY_MS: u64 = 3000;
const RESPONSE_ID_PREFIX: &str = "gh.";

/// Sends an upstream reply to the client: JSON as it came, streams event by event.
pub(super) fn relay_reply(
    ctx: &Ctx,
    reply: Reply,
    mut relay: Relay,
    request_id: Option<Value>,
) -> HttpResponse {
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
                        .map(|v| stateless_status(&v))
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
            let hook = ListChangedHook {
                pins: ctx.state.pins.clone(),
                org: ctx.org.clone(),
                server: relay.server,
            };
            // A legacy client's disconnect is not cancellation (it may resume the stream), so
            // only the 2026-07-28 relays probe for it.
            let probe = (relay.era == Era::Modern).then_some(CANCELLATION_PROBE);
            let events = relay_events(events, relay, request_id, Some(hook), ctx.state.redactor.clone());
            sse_response(events, probe)
        }
    }
}

pub(super) struct ListChangedHook {
    pub(super) pins: crate::pins::Pins,
    pub(super) org: Arc<OrgState>,
    pub(super) server: ServerId,
}

/// Formats one SSE frame.
pub(super) fn frame(id: Option<&str>, retry: Option<u64>, data: &str) -> String {
    let mut out = String::new();
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(retry) = retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

pub(super) type FrameStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, actix_web::Error>>>>;

/// Relays upstream SSE events: event ids and server→client request ids are rewritten to name the
/// upstream (legacy), a priming event is sent first when the upstream sends none, and the call
/// record is finished when the response goes by (or when the client goes away).
pub(super) fn relay_events(
    events: LocalEvents,
    mut relay: Relay,
    request_id: Option<Value>,
    hook: Option<ListChangedHook>,
    redactor: Option<Redactor>,
) -> FrameStream {
    let mut first = true;
    let mut answered = false;
    let index = relay.index;
    let legacy = relay.era == Era::Legacy;
    let stream = events.map(move |event| {
        let mut out = String::new();
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "upstream stream ended with an error");
                if let Some(r) = relay.record.take() {
                    r.finish(CallOutcome::Error, Some(jsonrpc::SERVER_ERROR));
                }
                // A client still waiting for its answer learns that none will come.
                if let Some(id) = request_id.as_ref().filter(|_| !answered) {
                    answered = true;
                    let error = jsonrpc::error_body(
                        Some(id),
                        jsonrpc::SERVER_ERROR,
                        "Upstream server unavailable: its answer stream broke",
                        None,
                    );
                    return Ok(Bytes::from(frame(None, None, &error.to_string())));
                }
                return Ok(Bytes::new());
            }
        };
        let data = event.data.as_deref().unwrap_or("");
        let redacted = redactor.as_ref().and_then(|r| r.redact(data.as_bytes()));
        let redacted_text = redacted.as_ref().map(|r| String::from_utf8_lossy(&r.message));
        let data = redacted_text.as_deref().unwrap_or(data);
        let id = event
            .id
            .as_deref()
            .filter(|_| legacy)
            .map(|orig| format!("{index}.{orig}"));
        if first {
            first = false;
            let priming = data.is_empty() && event.id.is_some();
            if legacy && !priming {
                out.push_str(&frame(Some(&format!("{index}.")), Some(SSE_RETRY_MS), ""));
            }
        }
        if data.is_empty() {
            if legacy && (id.is_some() || event.retry.is_some()) {
                out.push_str(&frame(id.as_deref(), event.retry, ""));
            }
            return Ok(Bytes::from(out));
        }
        let mut payload = std::borrow::Cow::Borrowed(data);
        if let Ok(mut value) = serde_json::from_str::<Value>(data) {
            let is_request = value.get("method").is_some() && value.get("id").is_some();
            if is_request && legacy {
                let rewritten = rewrite_request_id(index, &value["id"]);
                value["id"] = rewritten;
                payload = std::borrow::Cow::Owned(serde_json::to_string(&value).expect("json"));
            } else if jsonrpc::is_response(&value) && value.get("id") == request_id.as_ref() {
                answered = true;
                if let Some(shape) = relay.shape {
                    shape.apply(&mut value);
                    payload = std::borrow::Cow::Owned(serde_json::to_string(&value).expect("json"));
                }
                if let Some(mut r) = relay.record.take() {
                    r.add_bytes_out(data.len() as u64);
                    match value
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_i64)
                    {
                        Some(code) => r.finish(CallOutcome::Error, Some(code)),
                        None => r.finish(CallOutcome::Success, None),
                    }
                }
            } else if value.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed")
                && let Some(h) = &hook
            {
                h.pins.upstream_changed(h.org.clone(), h.server);
            }
        }
        out.push_str(&frame(id.as_deref(), event.retry.filter(|_| legacy), &payload));
        Ok(Bytes::from(out))
    });
    Box::pin(stream.filter(|b: &Result<Bytes, actix_web::Error>| {
        futures::future::ready(b.as_ref().map_or(true, |b| !b.is_empty()))
    }))
}

/// An SSE response; with `keep_alive`, a comment is written whenever the stream has been quiet
/// that long (proxies keep the connection, and a client that left is noticed).
pub(super) fn sse_response(stream: FrameStream, keep_alive: Option<Duration>) -> HttpResponse {
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

/// Rewrites an upstream's server→client request id so the client's answer finds its way back to
/// the same upstream from any replica: `gh.<upstream index>.<base64url(original id JSON)>`.
fn rewrite_request_id(index: usize, id: &Value) -> Value {
    Value::String(format!(
        "{RESPONSE_ID_PREFIX}{index}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(id).expect("json"))
    ))
}

pub(super) fn parse_rewritten_id(id: &Value) -> Option<(usize, Value)> {
    let rest = id.as_str()?.strip_prefix(RESPONSE_ID_PREFIX)?;
    let (index, encoded) = rest.split_once('.')?;
    let original = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    Some((index.parse().ok()?, original))
}
