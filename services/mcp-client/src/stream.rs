//! Reading what an upstream sends back, within bounds (the egress crate's bounded reads): a whole
//! answer body, or an SSE stream whose single events may not exceed the message limit, and the
//! JSON-RPC messages on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gatehouse_egress::{EventTooLarge, ReadError};
use serde_json::Value;

use super::{Client, SseEvents, UpstreamError};

/// The next message on an upstream stream: the next event whose data is JSON (other events are
/// skipped), why the stream broke, or `None` at its end.
pub async fn next_message(events: &mut SseEvents) -> Option<Result<Value, String>> {
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if let Some(value) = event.data.as_deref().and_then(|d| serde_json::from_str(d).ok()) {
                    return Some(Ok(value));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// Reads a stream up to the response to request `id` (messages before it are skipped): the
/// response, or why none came.
pub async fn response_on(events: &mut SseEvents, id: &Value) -> Result<Value, String> {
    while let Some(value) = next_message(events).await {
        let value = value?;
        if is_response(&value) && value.get("id") == Some(id) {
            return Ok(value);
        }
    }
    Err("stream ended without a response".into())
}

/// A JSON-RPC response: no method, a result or an error.
pub(super) fn is_response(message: &Value) -> bool {
    message.get("method").is_none() && (message.get("result").is_some() || message.get("error").is_some())
}

impl Client {
    /// The events of an upstream stream; one event larger than the message limit breaks it
    /// ("upstream sent an oversized event").
    pub(super) fn sse_events(&self, response: reqwest::Response) -> SseEvents {
        let oversized = Arc::new(AtomicBool::new(false));
        let seen = oversized.clone();
        let bytes = gatehouse_egress::limit_sse_events(response.bytes_stream(), self.inner.max_message_bytes)
            .inspect(move |chunk| {
                if chunk.as_ref().is_err_and(EventTooLarge::is) {
                    seen.store(true, Ordering::Relaxed);
                }
            });
        Box::pin(sse_stream::SseStream::from_bytes_stream(bytes).map(move |e| {
            e.map_err(|e| {
                if oversized.load(Ordering::Relaxed) {
                    "upstream sent an oversized event".to_owned()
                } else {
                    format!("upstream stream broke: {e}")
                }
            })
        }))
    }
}

/// Reads an answer's body, refusing one larger than `limit` or slower than `deadline`: a broken
/// or hostile upstream must not exhaust the memory that every tenant's calls share.
pub(super) async fn read_body(
    response: reqwest::Response,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, UpstreamError> {
    gatehouse_egress::read_body(response, limit, deadline)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge { .. } => UpstreamError::Unavailable("upstream answer too large".into()),
            ReadError::Timeout => UpstreamError::Unavailable("upstream body incomplete".into()),
            ReadError::Transport(e) => UpstreamError::Unreachable(e),
        })
}
