//! The bridge between the client's wire and each upstream's: one place that decides how a
//! request reaches an upstream, whatever revision either side speaks.
//!
//! - A stateless client (2026-07-28) of a session upstream: the request goes in a session the
//!   dataplane holds for (upstream, caller, declared capabilities) (`upstream::SessionKey`),
//!   opened with the client's capabilities mapped, without the revision's `_meta` keys; a 404
//!   (the upstream forgot the session: expired, restarted) opens a new one and sends again, so
//!   the client never sees it. The upstream's result gets the revision's `resultType` (and, for
//!   lists and reads, `ttlMs` and `cacheScope`) on the way back (`outcome::StatelessShape`).
//! - A session client (2025 revisions) of a stateless upstream: its session names the upstream with no
//!   session id and the stateless revision, and each request goes with the revision's headers
//!   and the `_meta` it requires (the client's declared capabilities).
//! - Otherwise the request goes as it came, in the client's own session or statelessly.

use std::sync::Arc;

use actix_web::HttpRequest;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::upstream::UpstreamTransport;

use crate::headers;
use crate::jsonrpc::Message;
use crate::session::Session;
use crate::store::ServerState;
use crate::upstream::{ClientHello, Reply, SessionKey, UpstreamError, Wire, stateless_meta};

use super::context::{ClientWire, Crossing, Ctx, STATELESS_VERSIONS};
use super::request::{declared_capabilities, declared_client_info};
use super::session_listen::in_own_session;
use super::upstream_calls::{UpstreamCall, wire_of};

/// The `_meta` keys of the stateless revision's requests.
const STATELESS_META_PREFIX: &str = "io.modelcontextprotocol/";

/// How one request reaches one upstream.
pub(super) struct Route {
    pub(super) server: ServerId,
    /// The id the upstream knows the call by (a resumed call keeps its first id).
    pub(super) call_id: Value,
    pub(super) wire: Wire,
    pub(super) version: String,
    pub(super) session_id: Option<String>,
    /// The session the dataplane holds for a stateless client, if that is the one used.
    held: Option<SessionKey>,
}

/// Why a request cannot reach an upstream.
pub(super) enum Unroutable {
    /// A session client whose session has no session with this upstream.
    NotInSession,
    /// A `requestState` the dataplane does not hold, for a session upstream.
    UnknownRequestState,
    Upstream(UpstreamError),
}

/// How `message` reaches `server` for this client.
pub(super) async fn route(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    server: &Arc<ServerState>,
    message: &Message,
) -> Result<Route, Unroutable> {
    let server_id = server.snapshot.id;
    let call_id = message.id().cloned().unwrap_or(Value::Null);
    if client_wire.has_own_sessions() {
        let upstream = session
            .and_then(|s| s.upstreams.iter().find(|u| u.server == server_id))
            .ok_or(Unroutable::NotInSession)?;
        return Ok(Route {
            server: server_id,
            call_id,
            wire: wire_of(&upstream.version),
            version: upstream.version.clone(),
            session_id: upstream.session_id.clone(),
            held: None,
        });
    }
    let upstreams = &ctx.state.upstreams;
    let learned = upstreams
        .learned(server, Some(ctx.caller()))
        .await
        .map_err(Unroutable::Upstream)?;
    let version = message
        .meta_protocol_version()
        .unwrap_or(STATELESS_VERSIONS[0])
        .to_owned();
    if learned.wire == Wire::Stateless || server.snapshot.transport == UpstreamTransport::HttpSse {
        // An HTTP+SSE upstream opens a connection and session of its own for each request.
        return Ok(Route {
            server: server_id,
            call_id,
            wire: learned.wire,
            version,
            session_id: None,
            held: None,
        });
    }
    let capabilities = declared_capabilities(message);
    let key = SessionKey::new(server_id, ctx.caller(), &capabilities);
    let hello = ClientHello {
        capabilities: &capabilities,
        client_info: declared_client_info(message),
    };
    let held = upstreams
        .held_session(server, &key, &hello, ctx.caller())
        .await
        .map_err(Unroutable::Upstream)?;
    // A stateless client's ids are its own to reuse (each request stands alone); in the session
    // the dataplane holds for the caller, the same id twice in flight would have the upstream
    // answer or cancel the wrong call. Each request goes there under an id of its own.
    let call_id = match message.id() {
        Some(_) => Value::String(format!("gatehouse-{}", uuid::Uuid::new_v4().simple())),
        None => call_id,
    };
    Ok(Route {
        server: server_id,
        call_id,
        wire: Wire::Session,
        version: held.version,
        session_id: Some(held.session_id),
        held: Some(key),
    })
}

/// The message as `route`'s upstream must get it, written out.
pub(super) fn upstream_body(
    client_wire: ClientWire,
    session: Option<&Session>,
    route: &Route,
    message: &Message,
) -> Bytes {
    let body = match client_wire.crossing(route.wire) {
        Crossing::StatelessToSession => serde_json::to_vec(&InSession {
            message,
            id: route.held.as_ref().map(|_| &route.call_id),
        }),
        Crossing::SessionToStateless if message.value.get("method").is_some() => {
            let mut value = message.value.clone();
            let capabilities = session
                .and_then(|s| s.client_capabilities.clone())
                .unwrap_or_else(|| json!({}));
            let meta = stateless_meta(&ClientHello {
                capabilities: &capabilities,
                client_info: None,
            });
            if !value.get("params").is_some_and(Value::is_object) {
                value["params"] = json!({});
            }
            let params = value["params"].as_object_mut().expect("an object");
            let target = params.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
            if let (Some(target), Some(meta)) = (target.as_object_mut(), meta.as_object()) {
                for (k, v) in meta {
                    target.insert(k.clone(), v.clone());
                }
            }
            serde_json::to_vec(&value)
        }
        _ => serde_json::to_vec(&message.value),
    };
    Bytes::from(body.expect("json"))
}

/// A stateless client's message as a session upstream gets it, written from the client's
/// without copying it: under `id` (the call's own in a session the dataplane holds), without
/// the revision's `_meta` keys (nor `_meta`, when nothing else is left in it) and, but in a
/// `tasks/update` (Tasks extension, the same in both eras, which carries them as its own),
/// without a retry's answers (MRTR), the dataplane's to deliver in the session.
struct InSession<'a> {
    message: &'a Message,
    id: Option<&'a Value>,
}

impl Serialize for InSession<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(members) = self.message.value.as_object() else {
            return self.message.value.serialize(serializer);
        };
        let retry_keys = self.message.method() != "tasks/update";
        let mut out = serializer.serialize_map(None)?;
        for (key, value) in members {
            match (key.as_str(), value) {
                ("id", _) => out.serialize_entry(key, self.id.unwrap_or(value))?,
                ("params", Value::Object(params)) => {
                    out.serialize_entry(key, &Params { params, retry_keys })?
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

/// [`InSession`]'s params.
struct Params<'a> {
    params: &'a Map<String, Value>,
    retry_keys: bool,
}

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        for (key, value) in self.params {
            match (key.as_str(), value) {
                ("inputResponses" | "requestState", _) if self.retry_keys => {}
                ("_meta", Value::Object(meta)) => {
                    let kept = || meta.iter().filter(|(k, _)| !k.starts_with(STATELESS_META_PREFIX));
                    if kept().next().is_some() {
                        out.serialize_entry(key, &MetaKept(kept))?;
                    }
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

/// The members of a `_meta` a session upstream gets.
struct MetaKept<F>(F);

impl<'a, F, I> Serialize for MetaKept<F>
where
    F: Fn() -> I,
    I: Iterator<Item = (&'a String, &'a Value)>,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map((self.0)())
    }
}

/// Sends `message` to `server` the way [`route`] says, and once more in a new session when the
/// session the dataplane held for a stateless client is gone upstream. `req` is the client's
/// request (its `Mcp-Param-*` headers the tool declares are forwarded to stateless upstreams).
pub(super) async fn send(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    server: &Arc<ServerState>,
    message: &Message,
    req: Option<&HttpRequest>,
    input_schema: Option<&Value>,
) -> Result<(Reply, Route), Unroutable> {
    let request_state = message.params().and_then(|p| p.get("requestState"));
    // A `requestState` the dataplane made (a stateless client's retry of a parked call).
    if request_state.is_some()
        && let Some((reply, route)) = ctx.state.inputs.resume(ctx, server, message).await
    {
        return Ok((reply, route));
    }
    if !client_wire.has_own_sessions()
        && message.method() == "subscriptions/listen"
        && server.snapshot.transport != UpstreamTransport::HttpSse
    {
        let learned = ctx
            .state
            .upstreams
            .learned(server, Some(ctx.caller()))
            .await
            .map_err(Unroutable::Upstream)?;
        if learned.wire == Wire::Session {
            let (reply, held) = in_own_session(ctx, server, message)
                .await
                .map_err(Unroutable::Upstream)?;
            let route = Route {
                server: server.snapshot.id,
                call_id: message.id().cloned().unwrap_or(Value::Null),
                wire: Wire::Session,
                version: held.version,
                session_id: Some(held.session_id),
                held: None,
            };
            return Ok((reply, route));
        }
    }
    let mut retried = false;
    loop {
        let route = route(ctx, client_wire, session, server, message).await?;
        // Only the dataplane makes the `requestState` of a session upstream's call: one it does
        // not hold (altered, expired, or parked on another replica) is refused.
        if client_wire.crossing(route.wire) == Crossing::StatelessToSession && request_state.is_some() {
            return Err(Unroutable::UnknownRequestState);
        }
        // The headers name what the body does; the bridge's changes to it (ids, `_meta`) are
        // none of theirs.
        let headers = match route.wire {
            Wire::Stateless => mcp_headers_for(message, req, input_schema),
            Wire::Session => vec![],
        };
        // Only an HTTP+SSE upstream's handshake, made for each request, needs them.
        let capabilities = (server.snapshot.transport == UpstreamTransport::HttpSse)
            .then(|| client_capabilities(client_wire, session, message))
            .flatten();
        let call = UpstreamCall {
            server,
            version: Some(&route.version),
            session_id: route.session_id.as_deref(),
            caller: Some(ctx.caller()),
            mcp_headers: headers,
            client_capabilities: capabilities.as_ref(),
        };
        let body = upstream_body(client_wire, session, &route, message);
        match call.post(&ctx.state.upstreams, body).await {
            Err(UpstreamError::SessionGone) if !retried && route.held.is_some() => {
                let (key, id) = (route.held.as_ref().expect("held"), route.session_id.as_deref());
                ctx.state.upstreams.forget_session(key, id.unwrap_or_default());
                metrics::counter!("gatehouse_dataplane_upstream_sessions_reopened_total").increment(1);
                retried = true;
            }
            Err(e) => return Err(Unroutable::Upstream(e)),
            Ok(reply) => {
                if route.wire == Wire::Stateless
                    && client_wire.crossing(route.wire) == Crossing::Same
                    && matches!(&reply, Reply::Status { status: 400, .. })
                {
                    // A server that stopped speaking the revision is learned again next time.
                    ctx.state.upstreams.forget_wire(server.snapshot.id);
                }
                return Ok((reply, route));
            }
        }
    }
}

/// What the client declared, for an HTTP+SSE upstream's own handshake.
fn client_capabilities(
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
) -> Option<Value> {
    if client_wire.has_own_sessions() {
        session.and_then(|s| s.client_capabilities.clone())
    } else {
        Some(crate::upstream::session_capabilities(&declared_capabilities(
            message,
        )))
    }
}

/// The SEP-2243 headers for a request to a stateless upstream: computed from the body we send,
/// plus those of the client's `Mcp-Param-*` headers (validated before) that `input_schema`, the
/// approved input schema of the called tool, declares (`x-mcp-header`). No other client header
/// is forwarded.
pub(super) fn mcp_headers_for(
    message: &Message,
    req: Option<&HttpRequest>,
    input_schema: Option<&Value>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Ok(v) = HeaderValue::from_str(&headers::encode_value(message.method())) {
        out.push((HeaderName::from_static("mcp-method"), v));
    }
    if let Some(name) = headers::expected_name(message.method(), message.params())
        && let Ok(v) = HeaderValue::from_str(&headers::encode_value(name))
    {
        out.push((HeaderName::from_static("mcp-name"), v));
    }
    let declared: Vec<String> = input_schema
        .map(headers::param_annotations)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, header)| format!("{}{header}", headers::MCP_PARAM_PREFIX))
        .collect();
    if let Some(req) = req {
        for (name, value) in req.headers() {
            if declared.iter().any(|d| d == name.as_str())
                && let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_str().as_bytes()),
                    HeaderValue::from_bytes(value.as_bytes()),
                )
            {
                out.push((n, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_session_route() -> Route {
        Route {
            server: ServerId::new(),
            call_id: json!(1),
            wire: Wire::Session,
            version: "2025-11-25".into(),
            session_id: Some("s".into()),
            held: None,
        }
    }

    fn body_of(bytes: Bytes) -> Value {
        serde_json::from_slice(&bytes).expect("json")
    }

    fn stateless_request(method: &str, params: Value) -> Message {
        Message::classify(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .expect("a request")
    }

    #[test]
    fn a_retry_reaches_a_session_upstream_without_its_answers() {
        let message = stateless_request(
            "tools/call",
            json!({"name": "t", "inputResponses": {"input-1": {}}, "requestState": "ghin.x",
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
        );
        let body = body_of(upstream_body(
            ClientWire::Stateless,
            None,
            &held_session_route(),
            &message,
        ));
        assert_eq!(body["params"], json!({"name": "t"}));
    }

    #[test]
    fn tasks_update_reaches_a_session_upstream_with_its_input_responses() {
        let responses = json!({"confirm_delete": {"action": "accept", "content": {"confirm": true}}});
        let message = stateless_request(
            "tasks/update",
            json!({"taskId": "t1", "inputResponses": responses,
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
        );
        let body = body_of(upstream_body(
            ClientWire::Stateless,
            None,
            &held_session_route(),
            &message,
        ));
        assert_eq!(
            body["params"],
            json!({"taskId": "t1", "inputResponses": responses})
        );
    }

    #[test]
    fn a_call_in_a_held_session_goes_under_its_own_id_without_the_revisions_meta() {
        let server = ServerId::new();
        let route = Route {
            call_id: json!("gatehouse-1"),
            held: Some(SessionKey {
                server,
                org: gatehouse_core::ids::OrgId::new(),
                endpoint: gatehouse_core::ids::EndpointId::new(),
                subject: "someone".into(),
                capabilities: 0,
            }),
            ..held_session_route()
        };
        let message = stateless_request(
            "tools/call",
            json!({"name": "t", "arguments": {"a": [1, "two"]}, "_meta": {"progressToken": 7,
                "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
        );
        let body = body_of(upstream_body(ClientWire::Stateless, None, &route, &message));
        assert_eq!(
            body,
            json!({"jsonrpc": "2.0", "id": "gatehouse-1", "method": "tools/call", "params":
                {"name": "t", "arguments": {"a": [1, "two"]}, "_meta": {"progressToken": 7}}})
        );
    }

    #[test]
    fn a_request_between_stateless_wires_goes_as_it_came() {
        let route = Route {
            wire: Wire::Stateless,
            session_id: None,
            ..held_session_route()
        };
        let message = stateless_request(
            "tools/call",
            json!({"name": "t", "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
        );
        let body = upstream_body(ClientWire::Stateless, None, &route, &message);
        assert_eq!(body, serde_json::to_vec(&message.value).expect("json"));
    }
}
