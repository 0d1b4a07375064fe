//! `subscriptions/listen` (2026-07-28).
//!
//! - At an endpoint with several upstreams the request goes to every upstream, each with only the
//!   resource subscriptions it owns; the client gets one `notifications/subscriptions/acknowledged`
//!   first (the union of what the upstreams agreed to), then every upstream's notifications merged
//!   on one response stream, which stays open while any upstream keeps its own open.
//! - A session upstream (2025 era) has no such method: the stream is served from an upstream
//!   session opened for it alone ([`in_own_session`]), its GET stream and `resources/subscribe`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_events::CallOutcome;

use crate::jsonrpc::{self, Message};
use crate::session::Session;
use crate::store::ServerState;
use crate::upstream::{
    ClientHello, HeldSession, Outbound, Reply, SseEvents, UpstreamError, Upstreams, next_message,
};

use super::bridge::{declared_capabilities, declared_client_info};
use super::calls::forward_request;
use super::dispatch::{Answer, Relay};
use super::relay::{FrameStream, ListChangedHook, frame, relay_events, sse_response};
use super::resources::resource_owner;
use super::tasks::{namespace_events, only_served_tasks};
use super::{CANCELLATION_PROBE, Ctx, Era, Incoming};

const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
/// The `_meta` key naming, on every notification of a listen stream, the request that opened it.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// The list-changed kinds a client opts in to, each with the notification it names and the
/// 2025 server capability that sends it.
const LIST_CHANGES: [(&str, &str, &str); 3] = [
    ("toolsListChanged", "notifications/tools/list_changed", "tools"),
    (
        "promptsListChanged",
        "notifications/prompts/list_changed",
        "prompts",
    ),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
        "resources",
    ),
];
const RESOURCE_UPDATED: &str = "notifications/resources/updated";
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
        ctx, era, session, ..
    } = incoming;
    let id = message.id().cloned().unwrap_or(Value::Null);
    let record = ctx.record("subscriptions/listen", None, None, None, bytes_in);
    let requests = per_upstream_requests(ctx, era, session, &message).await;
    let opens = requests
        .into_iter()
        .map(|(server, message)| open(incoming, message, server));
    let mut opened = Vec::new();
    let mut refusal = None;
    for outcome in futures::future::join_all(opens).await {
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
            Answer::Value(jsonrpc::error_body(
                Some(&id),
                jsonrpc::METHOD_NOT_FOUND,
                "Method not found: subscriptions/listen",
                None,
            ))
        });
    }
    record.finish(CallOutcome::Success, None);
    Answer::Http(merged_response(ctx, era, id, opened))
}

/// The request each upstream gets: the client's, with `resourceSubscriptions` narrowed to the
/// URIs that upstream owns (URIs nobody owns are dropped, so nobody acknowledges them).
async fn per_upstream_requests(
    ctx: &Ctx,
    era: Era,
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
        if let Ok(server) = resource_owner(ctx, era, session, message, &uri).await {
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
    let answer = forward_request(incoming, message, Some(server), None).await;
    let (mut events, relay) = match answer {
        Answer::Upstream {
            reply: Reply::Stream { events, .. },
            relay,
        } => (events, relay),
        other => return Err(other),
    };
    let unavailable = || {
        Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::SERVER_ERROR,
            "Upstream server unavailable",
            None,
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
fn merged_response(ctx: &Ctx, era: Era, id: Value, opened: Vec<Opened>) -> actix_web::HttpResponse {
    let acks: Vec<Value> = opened.iter().map(|o| o.ack.clone()).collect();
    let ack = merge_acknowledgements(&acks);
    let first = frame(None, None, &serde_json::to_string(&ack).expect("json"));
    let streams: Vec<FrameStream> = opened
        .into_iter()
        .map(|Opened { events, relay, .. }| {
            let slug: Arc<str> = ctx
                .server(relay.server)
                .map_or("", |s| s.snapshot.slug.as_str())
                .into();
            let hook = ListChangedHook {
                pins: ctx.state.pins.clone(),
                org: ctx.org.clone(),
                server: relay.server,
            };
            relay_events(
                namespace_events(only_served_tasks(ctx, relay.server, events), slug),
                relay,
                Some(id.clone()),
                Some(hook),
                ctx.state.redactor.clone(),
            )
        })
        .collect();
    let merged: FrameStream = Box::pin(
        futures::stream::once(futures::future::ready(Ok(Bytes::from(first))))
            .chain(futures::stream::select_all(streams)),
    );
    // As a single upstream's stream: 2026-07-28 probes for the client leaving (cancellation).
    sse_response(merged, (era == Era::Modern).then_some(CANCELLATION_PROBE))
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

/// A stateless client's `subscriptions/listen` at a session upstream: the dataplane opens an
/// upstream session for this stream alone (`initialize` with the client's capabilities and
/// `clientInfo`), opens its GET stream, and sends `resources/subscribe` in it for each URI in
/// `resourceSubscriptions`. The reply starts with the acknowledgement (what the client asked for
/// that the upstream's `initialize` declared: `listChanged` per kind, and the URIs its
/// `resources/subscribe` accepted), then carries only those notifications, each tagged with the
/// subscription's id. The session is ended (DELETE) when the stream is dropped. An upstream
/// without a GET stream answers `-32601`, as one without the method would.
pub(super) async fn in_own_session(
    ctx: &super::Ctx,
    server: &Arc<ServerState>,
    message: &Message,
) -> Result<(Reply, HeldSession), UpstreamError> {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let upstreams = &ctx.state.upstreams;
    let capabilities = declared_capabilities(message);
    let hello = ClientHello {
        capabilities: &capabilities,
        client_info: declared_client_info(message),
    };
    let (held, initialized) = upstreams.open_session(server, &hello, Some(ctx.caller())).await?;
    let own = OwnSession {
        upstreams: upstreams.clone(),
        server: server.clone(),
        held: held.clone(),
    };
    let stream = upstreams
        .get_stream(
            server,
            &held.version,
            Some(&held.session_id),
            None,
            Some(ctx.caller()),
        )
        .await?;
    let Some(events) = stream else {
        let body = jsonrpc::error_body(
            Some(&id),
            jsonrpc::METHOD_NOT_FOUND,
            "Method not found: subscriptions/listen",
            None,
        );
        let body = Bytes::from(serde_json::to_vec(&body).expect("json"));
        return Ok((
            Reply::Json {
                body,
                session_id: None,
            },
            held,
        ));
    };
    let requested = message.params().and_then(|p| p.get("notifications"));
    let declared = initialized.get("capabilities");
    let mut agreed = Map::new();
    let mut passed = Vec::new();
    for (kind, method, capability) in LIST_CHANGES {
        let wanted = requested.and_then(|r| r.get(kind)) == Some(&Value::Bool(true));
        let sent = declared
            .and_then(|c| c.get(capability))
            .and_then(|c| c.get("listChanged"))
            == Some(&Value::Bool(true));
        if wanted && sent {
            agreed.insert(kind.to_owned(), Value::Bool(true));
            passed.push(method);
        }
    }
    let uris: Vec<&str> = requested
        .and_then(|r| r.get("resourceSubscriptions"))
        .and_then(Value::as_array)
        .map(|uris| uris.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let subscribable = declared
        .and_then(|c| c.get("resources"))
        .and_then(|c| c.get("subscribe"))
        == Some(&Value::Bool(true));
    if subscribable && !uris.is_empty() {
        let subscribed = subscribe_all(ctx, server, &held, &uris).await;
        if !subscribed.is_empty() {
            agreed.insert("resourceSubscriptions".into(), json!(subscribed));
            passed.push(RESOURCE_UPDATED);
        }
    }
    let ack = json!({"jsonrpc": "2.0", "method": ACKNOWLEDGED, "params": {
        "_meta": {SUBSCRIPTION_ID: id},
        "notifications": agreed,
    }});
    let tagged = events.filter_map(move |event| {
        // The session lives as long as its stream.
        let _own = &own;
        let event = match event {
            Ok(event) => {
                let message = event
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok());
                message
                    .and_then(|m| subscription_notification(m, &passed, &id))
                    .map(|m| Ok(sse_message(&m)))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(event)
    });
    let events: SseEvents =
        Box::pin(futures::stream::once(futures::future::ready(Ok(sse_message(&ack)))).chain(tagged));
    Ok((
        Reply::Stream {
            events,
            session_id: None,
        },
        held,
    ))
}

/// `resources/subscribe` for each URI in the listen stream's own session: the URIs the upstream
/// accepted.
async fn subscribe_all(
    ctx: &super::Ctx,
    server: &ServerState,
    held: &HeldSession,
    uris: &[&str],
) -> Vec<String> {
    let upstreams = &ctx.state.upstreams;
    let subscribes = uris.iter().enumerate().map(|(n, uri)| async move {
        let id = json!(format!("gatehouse-subscribe-{n}"));
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "resources/subscribe",
            "params": {"uri": uri}});
        let out = Outbound {
            server,
            body: Bytes::from(serde_json::to_vec(&request).expect("json")),
            protocol_version: Some(&held.version),
            session_id: Some(&held.session_id),
            mcp_headers: vec![],
            caller: Some(ctx.caller()),
            client_capabilities: None,
        };
        match upstreams.request(out, &id).await {
            Ok((answer, _)) if answer.get("result").is_some() => Some((*uri).to_owned()),
            _ => None,
        }
    });
    futures::future::join_all(subscribes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A message of a session's GET stream as the listen stream `id` carries it: a notification of a
/// kind the subscription agreed to (`passed`), tagged with the subscription's id; anything else
/// (other notifications, the server's requests) is not the subscription's.
fn subscription_notification(mut message: Value, passed: &[&str], id: &Value) -> Option<Value> {
    let method = message.get("method").and_then(Value::as_str)?;
    if message.get("id").is_some() || !passed.contains(&method) {
        return None;
    }
    if !message.get("params").is_some_and(Value::is_object) {
        message["params"] = json!({});
    }
    let params = message["params"].as_object_mut().expect("an object");
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta[SUBSCRIPTION_ID] = id.clone();
    Some(message)
}

fn sse_message(message: &Value) -> sse_stream::Sse {
    sse_stream::Sse {
        event: None,
        data: Some(message.to_string()),
        id: None,
        retry: None,
    }
}

/// The upstream session a listen stream was served from; ended (DELETE) when the stream is
/// dropped.
struct OwnSession {
    upstreams: Upstreams,
    server: Arc<ServerState>,
    held: HeldSession,
}

impl Drop for OwnSession {
    fn drop(&mut self) {
        let (upstreams, server, held) = (self.upstreams.clone(), self.server.clone(), self.held.clone());
        tokio::spawn(async move {
            upstreams
                .delete_session(&server, &held.version, &held.session_id)
                .await;
        });
    }
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

    #[test]
    fn a_session_stream_carries_only_what_the_subscription_agreed_to() {
        let passed = ["notifications/tools/list_changed", RESOURCE_UPDATED];
        let id = json!(7);
        let tools = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let tagged = subscription_notification(tools, &passed, &id).expect("agreed to");
        assert_eq!(tagged["params"]["_meta"][SUBSCRIPTION_ID], 7);
        let updated = json!({"jsonrpc": "2.0", "method": RESOURCE_UPDATED,
            "params": {"uri": "test://a", "_meta": {"k": 1}}});
        let tagged = subscription_notification(updated, &passed, &id).expect("agreed to");
        assert_eq!(tagged["params"]["uri"], "test://a");
        assert_eq!(tagged["params"]["_meta"], json!({"k": 1, SUBSCRIPTION_ID: 7}));
        let prompts = json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"});
        assert!(subscription_notification(prompts, &passed, &id).is_none());
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}});
        assert!(subscription_notification(log, &passed, &id).is_none());
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"});
        assert!(subscription_notification(request, &passed, &id).is_none());
    }
}
