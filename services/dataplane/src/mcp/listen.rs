//! `subscriptions/listen` (2026-07-28).
//!
//! - At an endpoint with several upstreams the request goes to every upstream, each with only the
//!   resource subscriptions it owns; the client gets one `notifications/subscriptions/acknowledged`
//!   first (the union of what the upstreams agreed to), then every upstream's notifications merged
//!   on one response stream, which stays open while any upstream keeps its own open.
//! - A session upstream (2025 revisions) has no such method: the bridge serves the stream from an
//!   upstream session opened for it alone (`session_listen`).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_events::CallOutcome;

use crate::jsonrpc::{self, Message};
use crate::session::Session;
use crate::upstream::{Reply, SseEvents, next_message};

use super::client_stream::{Carrying, to_client};
use super::context::{ClientWire, Ctx, Incoming};
use super::error::McpError;
use super::forward::forward_request;
use super::outcome::{Answer, ClientStream, FrameStream, Relay};
use super::relay::frame;
use super::resources::resource_owner;
use super::session_listen::ACKNOWLEDGED;
use super::upstream_calls::fan_out;

/// How long an upstream may take to acknowledge before it is left out.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// One upstream's subscription: its acknowledgement and the rest of its stream.
struct Opened {
    ack: Value,
    events: SseEvents,
    relay: Relay,
}

pub(super) async fn listen(incoming: Incoming<'_>, message: Message, bytes_in: u64) -> Answer {
    let Incoming {
        ctx,
        client_wire,
        session,
        ..
    } = incoming;
    let id = message.id().cloned().unwrap_or(Value::Null);
    let record = ctx.record("subscriptions/listen", None, None, None, bytes_in);
    let requests = per_upstream_requests(ctx, client_wire, session, &message).await;
    let opens = fan_out(ctx, requests, |server, message| {
        open(incoming, message, server.snapshot.id)
    })
    .await;
    let mut opened = Vec::new();
    let mut refusal = None;
    for outcome in opens {
        match outcome {
            Ok(o) => opened.push(o),
            Err(answer) => {
                refusal.get_or_insert(answer);
            }
        }
    }
    if opened.is_empty() {
        record.finish(CallOutcome::Error, None);
        return refusal.unwrap_or_else(|| {
            Answer::Error(McpError::protocol(
                jsonrpc::METHOD_NOT_FOUND,
                "Method not found: subscriptions/listen",
            ))
        });
    }
    record.finish(CallOutcome::Success, None);
    Answer::Stream(merged_stream(ctx, client_wire, id, opened))
}

/// The request each upstream gets: the client's, with `resourceSubscriptions` narrowed to the
/// URIs that upstream owns (URIs nobody owns are dropped, so nobody acknowledges them).
async fn per_upstream_requests(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
) -> Vec<(ServerId, Message)> {
    let servers = &ctx.endpoint.server_ids;
    let wanted: Vec<String> = message
        .params()
        .and_then(|p| p.get("notifications"))
        .and_then(|n| n.get("resourceSubscriptions"))
        .and_then(Value::as_array)
        .map(|uris| uris.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if wanted.is_empty() {
        return servers.iter().map(|s| (*s, message.clone())).collect();
    }
    let mut owned: HashMap<ServerId, Vec<String>> = HashMap::new();
    for uri in wanted {
        if let Ok(server) = resource_owner(ctx, client_wire, session, message, &uri).await {
            owned.entry(server).or_default().push(uri);
        }
    }
    servers
        .iter()
        .map(|server| {
            let mut narrowed = message.clone();
            let uris = owned.remove(server).unwrap_or_default();
            if let Some(notifications) = narrowed.value["params"]["notifications"].as_object_mut() {
                if uris.is_empty() {
                    notifications.remove("resourceSubscriptions");
                } else {
                    notifications.insert("resourceSubscriptions".into(), json!(uris));
                }
            }
            (*server, narrowed)
        })
        .collect()
}

/// Sends the request to `server` and waits for its acknowledgement. An upstream that answers
/// anything else (an error, a plain reply) is left out, and its answer kept as a refusal.
async fn open(incoming: Incoming<'_>, message: Message, server: ServerId) -> Result<Opened, Answer> {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let answer = forward_request(incoming, message, Some(server), None, None).await;
    let (mut events, relay) = match answer {
        Answer::Upstream {
            reply: Reply::Stream { events, .. },
            relay,
        } => (events, relay),
        other => return Err(other),
    };
    let unavailable = || {
        Answer::Error(McpError::protocol(
            jsonrpc::SERVER_ERROR,
            "Upstream server unavailable",
        ))
    };
    match tokio::time::timeout(ACK_WAIT, acknowledgement(&mut events, &id)).await {
        Ok(Ok(ack)) => Ok(Opened { ack, events, relay }),
        Ok(Err(Some(refused))) => Err(Answer::Value(refused)),
        Ok(Err(None)) | Err(_) => Err(unavailable()),
    }
}

/// Reads a stream up to its acknowledgement; an upstream's response to the request (an error)
/// comes back as `Err(Some(response))`, an ended stream as `Err(None)`.
async fn acknowledgement(events: &mut SseEvents, id: &Value) -> Result<Value, Option<Value>> {
    while let Some(Ok(value)) = next_message(events).await {
        if value.get("method").and_then(Value::as_str) == Some(ACKNOWLEDGED) {
            return Ok(value);
        }
        if value.get("method").is_none() && value.get("id") == Some(id) {
            return Err(Some(value));
        }
    }
    Err(None)
}

/// One acknowledgement, then every upstream's stream (task ids namespaced, list changes watched
/// for drift) merged.
fn merged_stream(ctx: &Ctx, client_wire: ClientWire, id: Value, opened: Vec<Opened>) -> ClientStream {
    let acks: Vec<Value> = opened.iter().map(|o| o.ack.clone()).collect();
    let ack = merge_acknowledgements(&acks);
    let first = frame(None, None, &serde_json::to_string(&ack).expect("json"));
    let streams: Vec<FrameStream> = opened
        .into_iter()
        .map(|Opened { events, relay, .. }| {
            to_client(ctx, events, relay, Some(id.clone()), Carrying::Notifications)
        })
        .collect();
    let merged: FrameStream = Box::pin(
        futures::stream::once(futures::future::ready(Ok(Bytes::from(first))))
            .chain(futures::stream::select_all(streams)),
    );
    // As a single upstream's stream: 2026-07-28 probes for the client leaving (cancellation).
    ClientStream {
        frames: merged,
        keep_alive: client_wire.cancellation_probe(),
    }
}

/// The first acknowledgement with `notifications` the union of all of them: a kind is on when
/// any upstream agreed to it; resource subscriptions are each upstream's together.
fn merge_acknowledgements(acks: &[Value]) -> Value {
    let mut merged: Map<String, Value> = Map::new();
    for ack in acks {
        let Some(agreed) = ack
            .get("params")
            .and_then(|p| p.get("notifications"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (kind, value) in agreed {
            match (merged.get_mut(kind), value) {
                (Some(Value::Array(all)), Value::Array(more)) => all.extend(more.iter().cloned()),
                (Some(current), Value::Bool(true)) => *current = Value::Bool(true),
                (Some(_), _) => {}
                (None, value) => {
                    merged.insert(kind.clone(), value.clone());
                }
            }
        }
    }
    let mut ack = acks.first().cloned().unwrap_or_else(|| json!({}));
    ack["params"]["notifications"] = Value::Object(merged);
    ack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_are_united() {
        let a = json!({"jsonrpc": "2.0", "method": ACKNOWLEDGED, "params": {
            "_meta": {"io.modelcontextprotocol/subscriptionId": "1"},
            "notifications": {"toolsListChanged": true, "promptsListChanged": false,
                "resourceSubscriptions": ["test://a"]}}});
        let b = json!({"jsonrpc": "2.0", "method": ACKNOWLEDGED, "params": {
            "notifications": {"promptsListChanged": true, "resourceSubscriptions": ["test://b"]}}});
        let ack = merge_acknowledgements(&[a, b]);
        assert_eq!(
            ack["params"]["notifications"],
            json!({"toolsListChanged": true, "promptsListChanged": true,
                "resourceSubscriptions": ["test://a", "test://b"]})
        );
        assert_eq!(
            ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "1"
        );
    }
}
