//! The one pipeline from an upstream's SSE events to the client's SSE frames ([`relay_events`]):
//! redaction, the call record finished when the response goes by, `list_changed` watched for
//! drift, and (session wire) event ids and server→client request ids rewritten to name their
//! upstream ([`parse_rewritten_id`] reads them back).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use gatehouse_core::ids::ServerId;
use gatehouse_events::CallOutcome;

use crate::events::error_code_in;
use crate::jsonrpc;
use crate::redact::Redactor;
use crate::store::OrgState;

use super::error::McpError;
use super::input::LocalEvents;
use super::outcome::{FrameStream, Relay};

pub(super) const SSE_RETRY_MS: u64 = 3000;
const RESPONSE_ID_PREFIX: &str = "gh.";

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

/// Relays upstream SSE events: event ids and server→client request ids are rewritten to name the
/// upstream (session wire), a priming event is sent first when the upstream sends none, the answer
/// is made the client's (`Relay::to_client`: its id, its shape), and the call record is finished
/// when it goes by (or when the client goes away).
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
    let session_client = relay.client_wire.names_upstreams_in_ids();
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
                    let error = McpError::protocol(
                        jsonrpc::SERVER_ERROR,
                        "Upstream server unavailable: its answer stream broke",
                    )
                    .body(Some(id));
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
            .filter(|_| session_client)
            .map(|orig| format!("{index}.{orig}"));
        if first {
            first = false;
            let priming = data.is_empty() && event.id.is_some();
            if session_client && !priming {
                out.push_str(&frame(Some(&format!("{index}.")), Some(SSE_RETRY_MS), ""));
            }
        }
        if data.is_empty() {
            if session_client && (id.is_some() || event.retry.is_some()) {
                out.push_str(&frame(id.as_deref(), event.retry, ""));
            }
            return Ok(Bytes::from(out));
        }
        let mut payload = std::borrow::Cow::Borrowed(data);
        if let Ok(mut value) = serde_json::from_str::<Value>(data) {
            let is_request = value.get("method").is_some() && value.get("id").is_some();
            if is_request && session_client {
                let rewritten = rewrite_request_id(index, &value["id"]);
                value["id"] = rewritten;
                payload = std::borrow::Cow::Owned(serde_json::to_string(&value).expect("json"));
            } else if jsonrpc::is_response(&value) && relay.answers(&value, request_id.as_ref()) {
                answered = true;
                if relay.to_client(&mut value) {
                    payload = std::borrow::Cow::Owned(serde_json::to_string(&value).expect("json"));
                }
                if let Some(mut r) = relay.record.take() {
                    r.add_bytes_out(data.len() as u64);
                    r.finish_answered(error_code_in(&value));
                }
            } else if value.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed")
                && let Some(h) = &hook
            {
                h.pins.upstream_changed(h.org.clone(), h.server);
            }
        }
        out.push_str(&frame(
            id.as_deref(),
            event.retry.filter(|_| session_client),
            &payload,
        ));
        Ok(Bytes::from(out))
    });
    Box::pin(stream.filter(|b: &Result<Bytes, actix_web::Error>| {
        futures::future::ready(b.as_ref().map_or(true, |b| !b.is_empty()))
    }))
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
