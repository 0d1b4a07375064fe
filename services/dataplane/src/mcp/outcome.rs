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
use crate::redact::Redactor;
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
    /// The id the call had upstream, when it is not the client's.
    pub(super) renamed: Option<RenamedId>,
}

impl Relay {
    /// Whether an upstream's answer needs changing for the client (its id, its shape).
    pub(super) fn changes_answers(&self) -> bool {
        self.shape.is_some() || self.renamed.is_some()
    }

    /// The id the upstream's answer to the call the client knows as `client_id` carries until it
    /// is relayed.
    pub(super) fn upstream_id<'a>(&'a self, client_id: &'a Value) -> &'a Value {
        self.renamed.as_ref().map_or(client_id, |r| &r.upstream)
    }

    /// Whether `message`, a response, is the upstream's answer to the call the client knows as
    /// `request_id`.
    pub(super) fn answers(&self, message: &Value, request_id: Option<&Value>) -> bool {
        let id = message.get("id");
        id == request_id || self.renamed.as_ref().is_some_and(|r| id == Some(&r.upstream))
    }

    /// Makes an upstream's answer the client's: under the client's id, shaped for its wire.
    /// Whether anything changed (if not, the upstream's bytes may go as they came).
    pub(super) fn to_client(&self, answer: &mut Value) -> bool {
        let renamed = self.renamed.as_ref().is_some_and(|r| r.restore(answer));
        let shaped = self.shape.is_some_and(|s| s.apply(answer));
        renamed || shaped
    }
}

/// A call that went upstream under an id of its own (a stateless client's, in the session the
/// dataplane holds for the caller: `bridge::route`); its answer goes back under the client's.
pub(super) struct RenamedId {
    upstream: Value,
    /// The client's id as a relayed message carries it: redacted like everything relayed.
    client: Value,
}

impl RenamedId {
    /// `None` when the call had the client's id upstream too.
    pub(super) fn new(upstream: &Value, client: &Value, redactor: Option<&Redactor>) -> Option<Self> {
        if upstream == client {
            return None;
        }
        let redacted = redactor
            .and_then(|r| r.redact(&serde_json::to_vec(client).expect("json")))
            .and_then(|r| serde_json::from_slice(&r.message).ok());
        Some(RenamedId {
            upstream: upstream.clone(),
            client: redacted.unwrap_or_else(|| client.clone()),
        })
    }

    /// Puts the client's id on `message` if it is the answer under the upstream's id.
    fn restore(&self, message: &mut Value) -> bool {
        let Some(object) = message.as_object_mut() else {
            return false;
        };
        if object.contains_key("method") {
            return false;
        }
        match object.get_mut("id") {
            Some(id) if *id == self.upstream => {
                *id = self.client.clone();
                true
            }
            _ => false,
        }
    }
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

    /// Adds what `answer`'s result lacks (nothing when it is not a result); whether it lacked
    /// anything.
    pub(super) fn apply(self, answer: &mut Value) -> bool {
        let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) else {
            return false;
        };
        let mut added = false;
        let mut add = |key: &str, value: Value| {
            if !result.contains_key(key) {
                result.insert(key.to_owned(), value);
                added = true;
            }
        };
        add("resultType", json!("complete"));
        if self.cacheable {
            add("ttlMs", json!(0));
            add("cacheScope", json!("private"));
        }
        added
    }
}
