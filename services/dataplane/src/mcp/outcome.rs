//! What handlers produce, whatever the client's wire: an [`Answer`] (a JSON-RPC response made
//! here, an [`McpError`], an upstream reply to relay, or a stream of SSE frames made here), how an
//! upstream reply is relayed ([`Relay`]), and the result builders every handler shares. The wire
//! edge turns an `Answer` into HTTP (`wire::render`).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;

use crate::events::CallRecord;
use crate::jsonrpc;
use crate::upstream::{Reply, Wire};

use super::context::{ClientWire, Crossing};
use super::error::McpError;

/// What a request dispatch produced.
pub(super) enum Answer {
    /// A JSON-RPC response (a result, or an upstream's own error passed on).
    Value(Value),
    /// The endpoint refuses the request.
    Error(McpError),
    Upstream {
        reply: Reply,
        relay: Relay,
    },
    /// An SSE response the endpoint writes itself.
    Stream(ClientStream),
}

/// SSE frames on their way to the client.
pub(super) type FrameStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, actix_web::Error>>>>;

/// An SSE response body: its frames, and how often a comment is written while it is quiet (the
/// client's departure is noticed only when a write fails).
pub(super) struct ClientStream {
    pub(super) frames: FrameStream,
    pub(super) keep_alive: Option<Duration>,
}

/// How to relay an upstream stream back.
pub(super) struct Relay {
    pub(super) client_wire: ClientWire,
    /// Index of the upstream in the session (session wire), for event and request ids.
    pub(super) index: usize,
    pub(super) server: ServerId,
    pub(super) record: Option<CallRecord>,
    /// What the answer must gain on its way to a stateless client of a session upstream.
    pub(super) shape: Option<StatelessShape>,
}

pub(super) fn result_value(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Unknown, not granted and withheld tools look the same: the caller learns nothing.
pub(super) fn unknown_tool(name: &str) -> McpError {
    McpError::denied(jsonrpc::INVALID_PARAMS, format!("Unknown tool: {name}"))
}

/// What a stateless client's results must carry that a session upstream's lack.
#[derive(Clone, Copy, Debug)]
pub(super) struct StatelessShape {
    /// Lists and reads also carry `ttlMs` and `cacheScope`.
    pub(super) cacheable: bool,
}

impl StatelessShape {
    /// The shape for `method`'s results when `route` is a session upstream of a stateless client.
    pub(super) fn needed(client_wire: ClientWire, wire: Wire, method: &str) -> Option<Self> {
        (client_wire.crossing(wire) == Crossing::StatelessToSession).then(|| StatelessShape {
            cacheable: method.ends_with("/list")
                || matches!(
                    method,
                    "resources/read" | "skills/get" | "resources/directory/read"
                ),
        })
    }

    /// Adds what `answer`'s result lacks (nothing when it is not a result).
    pub(super) fn apply(self, answer: &mut Value) {
        let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) else {
            return;
        };
        result.entry("resultType").or_insert_with(|| json!("complete"));
        if self.cacheable {
            result.entry("ttlMs").or_insert_with(|| json!(0));
            result.entry("cacheScope").or_insert_with(|| json!("private"));
        }
    }

    /// `apply` on an answer's bytes.
    pub(super) fn apply_bytes(self, body: Bytes) -> Bytes {
        match serde_json::from_slice::<Value>(&body) {
            Ok(mut value) if value.get("result").is_some() => {
                self.apply(&mut value);
                Bytes::from(serde_json::to_vec(&value).expect("json"))
            }
            _ => body,
        }
    }
}
