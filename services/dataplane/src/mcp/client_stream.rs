//! The one pipeline from an upstream's SSE stream to the client's: on a stream of notifications
//! (a session's GET stream, `subscriptions/listen`) the messages about tasks the caller is not
//! served are dropped and task ids are namespaced with several upstreams (`tasks`); then, on
//! every stream, redaction, `list_changed` watched for drift, the call record finished and ids
//! rewritten for the client's wire (`relay::relay_events`). An answer's own task ids are
//! namespaced with the answer, before it is relayed (`tasks::namespace_answer`).

use std::sync::Arc;

use serde_json::Value;

use crate::upstream::SseEvents;

use super::context::Ctx;
use super::outcome::{FrameStream, Relay};
use super::relay::{ListChangedHook, relay_events};
use super::tasks::{namespace_events, namespaces_tasks, only_served_tasks};

/// What an upstream stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Carrying {
    /// The answer to the client's request `request_id` (and what the upstream sends meanwhile).
    Answer,
    /// Notifications to the caller, whichever request they concern.
    Notifications,
}

/// `events` from upstream `relay.server` as the client's SSE frames.
pub(super) fn to_client(
    ctx: &Ctx,
    events: SseEvents,
    relay: Relay,
    request_id: Option<Value>,
    carrying: Carrying,
) -> FrameStream {
    let server = relay.server;
    let events = match carrying {
        Carrying::Answer => events,
        Carrying::Notifications => {
            // Messages about tasks reach only their creator; they name their upstream's tasks.
            let events = only_served_tasks(ctx, server, events);
            match ctx.server(server).filter(|_| namespaces_tasks(ctx)) {
                Some(upstream) => namespace_events(events, Arc::from(upstream.snapshot.slug.as_str())),
                None => events,
            }
        }
    };
    let hook = ListChangedHook {
        pins: ctx.state.pins.clone(),
        org: ctx.org.clone(),
        server,
    };
    relay_events(events, relay, request_id, Some(hook), ctx.state.redactor.clone())
}
