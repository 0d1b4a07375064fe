//! A stateless client's `subscriptions/listen` at a session upstream (2025 revisions), which has
//! no such method: the stream is served from an upstream session opened for it alone, its GET
//! stream and `resources/subscribe` ([`in_own_session`]). The bridge sends a listen request there.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::jsonrpc::Message;
use crate::store::ServerState;
use crate::upstream::{ClientHello, HeldSession, Reply, SseEvents, UpstreamError, Upstreams};

use super::context::Ctx;
use super::error::McpError;
use super::request::{declared_capabilities, declared_client_info};
use super::upstream_calls::UpstreamCall;

pub(super) const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
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
/// A stateless client's `subscriptions/listen` at a session upstream: the dataplane opens an
/// upstream session for this stream alone (`initialize` with the client's capabilities and
/// `clientInfo`), opens its GET stream, and sends `resources/subscribe` in it for each URI in
/// `resourceSubscriptions`. The reply starts with the acknowledgement (what the client asked for
/// that the upstream's `initialize` declared: `listChanged` per kind, and the URIs its
/// `resources/subscribe` accepted), then carries only those notifications, each tagged with the
/// subscription's id. The session is ended (DELETE) when the stream is dropped. An upstream
/// without a GET stream answers `-32601`, as one without the method would.
pub(super) async fn in_own_session(
    ctx: &Ctx,
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
        let body = McpError::method_not_found("subscriptions/listen").body(Some(&id));
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
async fn subscribe_all(ctx: &Ctx, server: &ServerState, held: &HeldSession, uris: &[&str]) -> Vec<String> {
    let upstreams = &ctx.state.upstreams;
    let subscribes = uris.iter().enumerate().map(|(n, uri)| async move {
        let id = json!(format!("gatehouse-subscribe-{n}"));
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "resources/subscribe",
            "params": {"uri": uri}});
        let call = UpstreamCall::in_upstream_session(
            server,
            &held.version,
            Some(&held.session_id),
            Some(ctx.caller()),
        );
        let body = Bytes::from(serde_json::to_vec(&request).expect("json"));
        match call.request(upstreams, body, &id).await {
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
