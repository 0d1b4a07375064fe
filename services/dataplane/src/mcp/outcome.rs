//! What handlers produce: an [`Answer`] (a JSON-RPC message, an upstream reply to relay, or a
//! finished HTTP response), how an upstream reply is relayed ([`Relay`]), and the result
//! builders every handler shares.

use actix_web::HttpResponse;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;

use crate::events::CallRecord;
use crate::jsonrpc;
use crate::upstream::{Reply, Wire};

use super::context::Era;

/// What a request dispatch produced.
pub(super) enum Answer {
    Http(HttpResponse),
    Value(Value),
    Upstream { reply: Reply, relay: Relay },
}

/// How to relay an upstream stream back.
pub(super) struct Relay {
    pub(super) era: Era,
    /// Index of the upstream in the session (legacy), for event and request ids.
    pub(super) index: usize,
    pub(super) server: ServerId,
    pub(super) record: Option<CallRecord>,
    /// What the answer must gain on its way to a stateless client of a session upstream.
    pub(super) shape: Option<StatelessShape>,
}

pub(super) fn result_value(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub(super) fn modern_list_fields(era: Era, result: &mut Map<String, Value>) {
    if era == Era::Modern {
        result.insert("resultType".into(), json!("complete"));
        result.insert("ttlMs".into(), json!(0));
        result.insert("cacheScope".into(), json!("private"));
    }
}

pub(super) fn unknown_tool(id: &Value, name: &str) -> Answer {
    Answer::Value(jsonrpc::error_body(
        Some(id),
        jsonrpc::INVALID_PARAMS,
        &format!("Unknown tool: {name}"),
        None,
    ))
}

/// What a stateless client's results must carry that a session upstream's lack.
#[derive(Clone, Copy, Debug)]
pub(super) struct StatelessShape {
    /// Lists and reads also carry `ttlMs` and `cacheScope`.
    pub(super) cacheable: bool,
}

impl StatelessShape {
    /// The shape for `method`'s results when `route` is a session upstream of a stateless client.
    pub(super) fn needed(era: Era, wire: Wire, method: &str) -> Option<Self> {
        (era == Era::Modern && wire == Wire::Session).then(|| StatelessShape {
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
