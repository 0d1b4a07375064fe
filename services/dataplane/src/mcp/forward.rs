//! Forwarding one request to the upstream that owns it, through the bridge, and what its reply
//! becomes for the client.

use serde_json::Value;

use gatehouse_core::ids::ServerId;

use crate::events::CallRecord;
use crate::jsonrpc::{self, Message};
use crate::upstream::{Reply, UpstreamError};

use super::bridge::{self, Unroutable};
use super::context::{Crossing, Incoming};
use super::error::McpError;
use super::input;
use super::outcome::{Answer, ClientStream, Relay, RenamedId, StatelessShape};
use super::relay::relay_events;

/// Sends a request to `target` and hands back its reply for relaying. `input_schema` is the
/// approved input schema of the tool a `tools/call` calls (its `Mcp-Param-*` headers are
/// forwarded to a stateless upstream).
pub(super) async fn forward_request(
    incoming: Incoming<'_>,
    message: Message,
    target: Option<ServerId>,
    record: Option<CallRecord>,
    input_schema: Option<&Value>,
) -> Answer {
    let Incoming {
        http: req,
        ctx,
        client_wire,
        session,
    } = incoming;
    let id = message.id().cloned().unwrap_or(Value::Null);
    let fail =
        |record: Option<CallRecord>, code: i64, text: &str| refused(record, McpError::protocol(code, text));
    let Some(server_id) = target else {
        return fail(
            record,
            jsonrpc::METHOD_NOT_FOUND,
            "Method not found: no upstream serves this request",
        );
    };
    let Some(server) = ctx.server(server_id).cloned() else {
        return fail(
            record,
            jsonrpc::INTERNAL_ERROR,
            "Upstream server is not configured",
        );
    };
    let index = session
        .and_then(|s| s.upstreams.iter().position(|u| u.server == server_id))
        .unwrap_or(0);
    ctx.state.pins.watch(ctx.org.snapshot.org_id, server_id);
    let sent = bridge::send(
        ctx,
        client_wire,
        session,
        &server,
        &message,
        Some(req),
        input_schema,
    )
    .await;
    match sent {
        Ok((reply, route)) => {
            let relay = Relay {
                client_wire,
                index,
                server: server_id,
                record,
                shape: StatelessShape::needed(client_wire, route.wire, message.method()),
                renamed: RenamedId::new(&route.call_id, &id, ctx.state.redactor.as_ref()),
            };
            match (client_wire.crossing(route.wire), reply) {
                // A listen stream served from a session upstream's own session is already the
                // revision's (`session_listen::in_own_session`).
                (Crossing::StatelessToSession, reply) if message.method() == "subscriptions/listen" => {
                    Answer::Upstream { reply, relay }
                }
                // The upstream's requests on the stream become `input_required` (and back); an
                // answer that is the stream's first message goes as JSON, with the HTTP status its
                // error has in the client's revision.
                (Crossing::StatelessToSession, Reply::Stream { events, session_id }) => {
                    let reply = input::stateless_reply(ctx, events, route, id, session_id).await;
                    Answer::Upstream { reply, relay }
                }
                // An `input_required` result becomes requests on the stream, answered by the
                // client and sent on with the next round.
                (Crossing::SessionToStateless, reply)
                    if input::may_ask(&reply)
                        && let Some(session) = session =>
                {
                    let events = input::session_view(ctx, session, &server, message, reply);
                    let request_id = Some(id.clone());
                    let hook = None;
                    let events = relay_events(events, relay, request_id, hook, ctx.state.redactor.clone());
                    Answer::Stream(ClientStream {
                        frames: events,
                        keep_alive: None,
                    })
                }
                (_, reply) => Answer::Upstream { reply, relay },
            }
        }
        Err(Unroutable::NotInSession) => fail(
            record,
            jsonrpc::SERVER_ERROR,
            "Upstream unavailable for this session; re-initialize",
        ),
        Err(Unroutable::UnknownRequestState) => fail(
            record,
            jsonrpc::INVALID_PARAMS,
            "Invalid params: requestState is not valid (altered or expired); send the request again without it",
        ),
        Err(Unroutable::Upstream(UpstreamError::SessionGone)) => refused(
            record,
            McpError::NotFound("Not Found: session expired upstream; re-initialize".to_owned()),
        ),
        Err(Unroutable::Upstream(e)) => {
            tracing::warn!(server_id = %server_id, error = %e, "upstream request failed");
            fail(record, jsonrpc::SERVER_ERROR, "Upstream server unavailable")
        }
    }
}

/// The call `record` records is refused with `error`.
fn refused(record: Option<CallRecord>, error: McpError) -> Answer {
    if let Some(record) = record {
        error.finish(record);
    }
    Answer::Error(error)
}
