//! Server→client requests (elicitation, sampling, roots) across the bridge: a session upstream
//! asks on its response stream, a stateless upstream answers `input_required` (2026-07-28 MRTR);
//! each is turned into the other for a client of the other kind.
//!
//! - Stateless client, session upstream ([`stateless_reply`]): the upstream's request on the call's
//!   stream ends the client's answer with an `input_required` result naming it (`inputRequests`)
//!   and a `requestState` token; the upstream call is parked on this replica. The client's retry
//!   with that `requestState` and its `inputResponses` resumes it ([`InputRequests::resume`]):
//!   the answer is posted to the upstream in its session and the parked stream is relayed on.
//! - Session client, stateless upstream ([`session_view`]): an `input_required` result becomes
//!   the requests it names, sent on the call's SSE stream; the client's answers (routed back by
//!   their ids, [`InputRequests::answer`]) are put in `inputResponses` and the call is sent
//!   again with the upstream's `requestState`, until the upstream's result is final.
//!
//! Both hold state on the replica that relayed the call, for at most [`WAIT`] and at most
//! [`MAX_WAITING`] of each kind: a retry or an answer that reaches another replica finds nothing
//! (a retry then gets `-32602`, to be sent again without `requestState`; an answer gets 404).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::{EndpointId, OrgId};
use gatehouse_core::sync::MutexExt;

use crate::jsonrpc::Message;
use crate::session::Session;
use crate::store::ServerState;
use crate::upstream::{Reply, SseEvents};

use super::bridge::{self, Route};
use super::context::{ClientWire, Ctx};
use super::error::McpError;
use super::upstream_calls::UpstreamCall;

/// How long an input request waits for the client.
pub const WAIT: Duration = Duration::from_secs(300);
/// Most calls parked, and most requests waiting for an answer, on one replica.
pub const MAX_WAITING: usize = 4096;
const STATE_PREFIX: &str = "ghin.";
/// Ids of the requests sent to session clients for a stateless upstream's `input_required`.
pub const ASK_PREFIX: &str = "ghask.";
/// Rounds of `input_required` one call may go through.
const MAX_ROUNDS: usize = 8;

/// Upstream events that need not be `Send` (they may carry the request's context).
pub(super) type LocalEvents = Pin<Box<dyn Stream<Item = Result<sse_stream::Sse, String>>>>;

/// A session upstream's call waiting for a stateless client's retry.
struct Parked {
    events: SseEvents,
    route: Route,
    /// The upstream's own request, and the key it has in `inputRequests`.
    asked_id: Value,
    key: String,
    owner: Owner,
    at: Instant,
}

/// Whose a parked call or a question is: org, endpoint, subject.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Owner {
    org: OrgId,
    endpoint: EndpointId,
    subject: String,
}

impl Owner {
    pub(super) fn of(ctx: &Ctx) -> Self {
        Owner {
            org: ctx.org.snapshot.org_id,
            endpoint: ctx.endpoint.id(),
            subject: ctx.principal.subject.clone(),
        }
    }
}

struct Waiting {
    answer: oneshot::Sender<Value>,
    owner: Owner,
    at: Instant,
}

/// The calls parked and the requests waiting on this replica (shared by every worker).
#[derive(Clone, Default)]
pub struct InputRequests {
    parked: Arc<Mutex<HashMap<String, Parked>>>,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    /// Session clients' calls to stateless upstreams in flight, by caller and request id: a
    /// `notifications/cancelled` for one ends it (its upstream connection closes).
    calls: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

/// A session client's call in flight ([`InputRequests::calls`]); forgotten when dropped.
struct InFlight {
    calls: Arc<Mutex<HashMap<String, CancellationToken>>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.calls.lock_or_recover().remove(&self.key);
    }
}

fn call_key(owner: &Owner, id: &Value) -> String {
    format!("{}/{}/{}|{id}", owner.org, owner.endpoint, owner.subject)
}

fn token() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl InputRequests {
    fn park(&self, parked: Parked) -> Option<String> {
        let mut map = self.parked.lock_or_recover();
        map.retain(|_, p| p.at.elapsed() < WAIT);
        if map.len() >= MAX_WAITING {
            return None;
        }
        let token = format!("{STATE_PREFIX}{}", token());
        map.insert(token.clone(), parked);
        Some(token)
    }

    /// Resumes the call a stateless client's retry names in `requestState`, if it was parked
    /// here for this caller: the client's answer goes to the upstream, and the parked stream is
    /// the retry's reply. `None` when there is nothing to resume.
    pub(super) async fn resume(
        &self,
        ctx: &Ctx,
        server: &Arc<ServerState>,
        message: &Message,
    ) -> Option<(Reply, Route)> {
        let params = message.params()?;
        let state = params.get("requestState")?.as_str()?;
        let parked = {
            let mut map = self.parked.lock_or_recover();
            let owned = map
                .get(state)
                .is_some_and(|p| p.owner == Owner::of(ctx) && p.route.server == server.snapshot.id);
            if !owned {
                return None;
            }
            map.remove(state)?
        };
        let answer = match params.get("inputResponses").and_then(|r| r.get(&parked.key)) {
            Some(result) => json!({"jsonrpc": "2.0", "id": parked.asked_id, "result": result}),
            None => json!({"jsonrpc": "2.0", "id": parked.asked_id, "error": {
                "code": crate::jsonrpc::INVALID_PARAMS, "message": "The client gave no answer"}}),
        };
        let call = UpstreamCall::in_upstream_session(
            server,
            &parked.route.version,
            parked.route.session_id.as_deref(),
            Some(ctx.caller()),
        );
        let body = Bytes::from(serde_json::to_vec(&answer).expect("json"));
        if let Err(e) = call.post(&ctx.state.upstreams, body).await {
            tracing::debug!(error = %e, "the answer to an upstream's request could not be delivered");
            return None;
        }
        let reply = Reply::Stream {
            events: parked.events,
            session_id: None,
        };
        Some((reply, parked.route))
    }

    /// Cancels the caller's call `request_id` to a stateless upstream, if one is in flight here.
    pub(super) fn cancel(&self, ctx: &Ctx, request_id: &Value) -> bool {
        let token = self
            .calls
            .lock_or_recover()
            .get(&call_key(&Owner::of(ctx), request_id))
            .cloned();
        token.map(|t| t.cancel()).is_some()
    }

    fn in_flight(&self, ctx: &Ctx, request_id: &Value) -> (InFlight, CancellationToken) {
        let key = call_key(&Owner::of(ctx), request_id);
        let token = CancellationToken::new();
        let mut calls = self.calls.lock_or_recover();
        if calls.len() < MAX_WAITING {
            calls.insert(key.clone(), token.clone());
        }
        let guard = InFlight {
            calls: self.calls.clone(),
            key,
        };
        (guard, token)
    }

    /// Waits for the session client's answer to the request sent with id `id`.
    fn ask(&self, owner: Owner) -> Option<(String, oneshot::Receiver<Value>)> {
        let mut map = self.waiting.lock_or_recover();
        map.retain(|_, w| w.at.elapsed() < WAIT && !w.answer.is_closed());
        if map.len() >= MAX_WAITING {
            return None;
        }
        let id = format!("{ASK_PREFIX}{}", token());
        let (tx, rx) = oneshot::channel();
        map.insert(
            id.clone(),
            Waiting {
                answer: tx,
                owner,
                at: Instant::now(),
            },
        );
        Some((id, rx))
    }

    /// Delivers a session client's answer (`message`, its id one of ours) to the call waiting
    /// for it; `false` when no call here waits for it.
    pub(super) fn answer(&self, ctx: &Ctx, id: &str, message: &Message) -> bool {
        let waiting = {
            let mut map = self.waiting.lock_or_recover();
            if !map.get(id).is_some_and(|w| w.owner == Owner::of(ctx)) {
                return false;
            }
            map.remove(id)
        };
        let Some(waiting) = waiting else { return false };
        let answer = message
            .value
            .get("result")
            .cloned()
            .unwrap_or_else(|| json!({"action": "cancel"}));
        waiting.answer.send(answer).is_ok()
    }
}

fn event(data: &Value) -> sse_stream::Sse {
    sse_stream::Sse {
        event: None,
        data: Some(data.to_string()),
        id: None,
        retry: None,
    }
}

/// A session upstream's reply to a stateless client's call (`route`), as that client must get it:
/// a request from the upstream parks the call and ends the client's answer with an
/// `input_required` result naming it; the answer to `route.call_id` ends the stream (its id is
/// the relay's to restore, `outcome::RenamedId`). What ends the call goes as JSON when it is the
/// stream's first message.
pub(super) async fn stateless_reply(
    ctx: &Ctx,
    events: SseEvents,
    route: Route,
    client_id: Value,
    session_id: Option<String>,
) -> Reply {
    let mut view = stateless_view(ctx, events, route, client_id);
    let first = loop {
        match view.next().await {
            Some((Ok(sse), _)) if sse.data.as_deref().is_none_or(|d| d.trim().is_empty()) => continue,
            other => break other,
        }
    };
    let first = match first {
        Some((Ok(sse_stream::Sse { data: Some(data), .. }), true)) => {
            return Reply::Json {
                body: Bytes::from(data),
                session_id,
            };
        }
        other => other.map(|(item, _)| item),
    };
    let events: SseEvents = Box::pin(futures::stream::iter(first).chain(view.map(|(item, _)| item)));
    Reply::Stream { events, session_id }
}

/// What [`stateless_view`] must know of an upstream message, read without building it.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    method: Option<serde::de::IgnoredAny>,
}

/// A member that is there, even as `null`.
fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Probe {
    /// The message `data` carries, if it is a JSON object.
    fn of(data: Option<&str>) -> Option<Self> {
        let data = data?;
        if !data.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(data).ok()
    }
}

/// Upstream events, each with whether it ends the call.
type ViewedEvents = Pin<Box<dyn Stream<Item = (Result<sse_stream::Sse, String>, bool)> + Send>>;

/// The upstream's events for [`stateless_reply`], each with whether it ends the call (the answer,
/// or the `input_required` result made of a request from the upstream); nothing follows it.
fn stateless_view(ctx: &Ctx, events: SseEvents, route: Route, client_id: Value) -> ViewedEvents {
    struct State {
        events: Option<SseEvents>,
        route: Option<Route>,
        cancel: Option<CancelOnDrop>,
        inputs: InputRequests,
        owner: Owner,
        client_id: Value,
    }
    let cancel = route.session_id.clone().and_then(|session_id| {
        Some(CancelOnDrop {
            upstreams: ctx.state.upstreams.clone(),
            server: ctx.server(route.server)?.clone(),
            session_id,
            version: route.version.clone(),
            call_id: route.call_id.clone(),
            armed: true,
        })
    });
    let state = State {
        events: Some(events),
        route: Some(route),
        cancel,
        inputs: ctx.state.inputs.clone(),
        owner: Owner::of(ctx),
        client_id,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        let events = state.events.as_mut()?;
        let sse = match events.next().await? {
            Ok(sse) => sse,
            Err(e) => {
                state.events = None;
                return Some(((Err(e), false), state));
            }
        };
        let Some(probe) = Probe::of(sse.data.as_deref()) else {
            return Some(((Ok(sse), false), state));
        };
        match (probe.method, probe.id) {
            (Some(_), Some(_)) => {
                // The call goes on, parked: not cancelled.
                if let Some(cancel) = state.cancel.as_mut() {
                    cancel.armed = false;
                }
                let events = state.events.take().expect("events");
                let route = state.route.take().expect("route");
                let owner = state.owner.clone();
                let answer = park(&state.inputs, owner, events, route, &sse, &state.client_id);
                Some(((Ok(event(&answer)), true), state))
            }
            (None, Some(id)) if state.route.as_ref().is_some_and(|r| r.call_id == id) => {
                state.events = None;
                state.route = None;
                if let Some(cancel) = state.cancel.as_mut() {
                    cancel.armed = false;
                }
                Some(((Ok(sse), true), state))
            }
            _ => Some(((Ok(sse), false), state)),
        }
    }))
}

/// Parks the call whose stream `events` carries the upstream's request `asked`, and answers
/// the client with the `input_required` result naming it (or an error when too many wait).
fn park(
    inputs: &InputRequests,
    owner: Owner,
    events: SseEvents,
    route: Route,
    asked: &sse_stream::Sse,
    client_id: &Value,
) -> Value {
    let asked = asked
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .unwrap_or_default();
    let key = "input-1".to_owned();
    let request = json!({"method": asked["method"], "params": asked.get("params").cloned().unwrap_or_else(|| json!({}))});
    let parked = Parked {
        events,
        route,
        asked_id: asked["id"].clone(),
        key: key.clone(),
        owner,
        at: Instant::now(),
    };
    match inputs.park(parked) {
        Some(token) => {
            let mut requests = Map::new();
            requests.insert(key, request);
            json!({"jsonrpc": "2.0", "id": client_id, "result": {
                "resultType": "input_required",
                "inputRequests": requests,
                "requestState": token,
            }})
        }
        None => McpError::protocol(
            crate::jsonrpc::SERVER_ERROR,
            "Too many calls waiting for input; try again later",
        )
        .body(Some(client_id)),
    }
}

/// Where a session client's call to a stateless upstream stands.
enum Step {
    /// The upstream's reply to (a round of) the call.
    Reply(Reply),
    /// Relaying its stream.
    Relay(SseEvents),
    /// Waiting for the client's answers (by `inputRequests` key) to send the next round.
    Asked(Vec<(String, oneshot::Receiver<Value>)>, Value),
    Done,
}

/// A stateless client's call in a held upstream session: if the client goes away (closing its
/// stream, the revision's cancellation) before the answer, the upstream is sent
/// `notifications/cancelled` for it in that session.
struct CancelOnDrop {
    upstreams: crate::upstream::Upstreams,
    server: Arc<ServerState>,
    session_id: String,
    version: String,
    call_id: Value,
    /// Off once the call was answered or parked.
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.call_id, "reason": "The client closed the request"}});
        let (upstreams, server) = (self.upstreams.clone(), self.server.clone());
        let (session_id, version) = (self.session_id.clone(), self.version.clone());
        tokio::spawn(async move {
            let call = UpstreamCall::in_upstream_session(&server, &version, Some(&session_id), None);
            let body = Bytes::from(serde_json::to_vec(&cancelled).expect("json"));
            let _ = call.post(&upstreams, body).await;
        });
    }
}

/// Whether a stateless upstream's reply may ask for input (a stream, or a JSON result that says
/// `input_required`).
pub(super) fn may_ask(reply: &Reply) -> bool {
    match reply {
        Reply::Stream { .. } => true,
        Reply::Json { body, .. } => memchr::memmem::find(body, b"\"input_required\"").is_some(),
        _ => false,
    }
}

/// A stateless upstream's answer as a session client must see it: an `input_required` result
/// becomes the requests it names on the stream, and the call is sent again with the client's
/// answers until its result is final. `message` is the call as the client sent it.
pub(super) fn session_view(
    ctx: &Ctx,
    session: &Session,
    server: &Arc<ServerState>,
    message: Message,
    first: Reply,
) -> LocalEvents {
    let (ctx, session, server) = (ctx.clone(), session.clone(), server.clone());
    let id = message.id().cloned().unwrap_or(Value::Null);
    struct State {
        step: Step,
        rounds: usize,
        pending: std::collections::VecDeque<sse_stream::Sse>,
    }
    let state = State {
        step: Step::Reply(first),
        rounds: 0,
        pending: Default::default(),
    };
    let (in_flight, cancelled) = ctx.state.inputs.in_flight(&ctx, &id);
    let rounds = futures::stream::unfold(state, move |mut state| {
        let (ctx, session, server, message, id) = (
            ctx.clone(),
            session.clone(),
            server.clone(),
            message.clone(),
            id.clone(),
        );
        async move {
            loop {
                if let Some(sse) = state.pending.pop_front() {
                    return Some((Ok(sse), state));
                }
                match std::mem::replace(&mut state.step, Step::Done) {
                    Step::Done => return None,
                    Step::Reply(Reply::Stream { events, .. }) => state.step = Step::Relay(events),
                    Step::Reply(Reply::Json { body, .. }) => {
                        let value = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                        state.step = on_answer(&ctx, value, &id, &mut state.pending, &mut state.rounds);
                    }
                    Step::Reply(Reply::Status { body, .. }) => {
                        let value = serde_json::from_slice::<Value>(&body).unwrap_or_else(|_| {
                            McpError::protocol(crate::jsonrpc::SERVER_ERROR, "Upstream server unavailable")
                                .body(Some(&id))
                        });
                        state.pending.push_back(event(&value));
                    }
                    Step::Reply(Reply::Accepted) => {}
                    Step::Relay(mut events) => match events.next().await {
                        None => {}
                        Some(Err(e)) => return Some((Err(e), state)),
                        Some(Ok(sse)) => {
                            let value = sse
                                .data
                                .as_deref()
                                .and_then(|d| serde_json::from_str::<Value>(d).ok());
                            match value {
                                Some(value)
                                    if value.get("method").is_none() && value.get("id") == Some(&id) =>
                                {
                                    state.step =
                                        on_answer(&ctx, value, &id, &mut state.pending, &mut state.rounds);
                                }
                                _ => {
                                    state.step = Step::Relay(events);
                                    return Some((Ok(sse), state));
                                }
                            }
                        }
                    },
                    Step::Asked(questions, request_state) => {
                        let mut responses = Map::new();
                        for (key, answer) in questions {
                            let answer = tokio::time::timeout(WAIT, answer).await;
                            let answer = answer
                                .ok()
                                .and_then(Result::ok)
                                .unwrap_or_else(|| json!({"action": "cancel"}));
                            responses.insert(key, answer);
                        }
                        let mut retry = message.clone();
                        if let Some(params) = retry.params_mut() {
                            params.insert("inputResponses".into(), Value::Object(responses));
                            if request_state.is_null() {
                                params.remove("requestState");
                            } else {
                                params.insert("requestState".into(), request_state);
                            }
                        }
                        match bridge::send(
                            &ctx,
                            ClientWire::Session,
                            Some(&session),
                            &server,
                            &retry,
                            None,
                            None,
                        )
                        .await
                        {
                            Ok((reply, _)) => state.step = Step::Reply(reply),
                            Err(_) => state.pending.push_back(event(
                                &McpError::protocol(
                                    crate::jsonrpc::SERVER_ERROR,
                                    "Upstream server unavailable",
                                )
                                .body(Some(&id)),
                            )),
                        }
                    }
                }
            }
        }
    });
    // Cancelled: the stream ends, dropping the upstream call (its connection closes).
    Box::pin(
        rounds
            .take_until(cancelled.cancelled_owned())
            .chain(futures::stream::once(async move {
                drop(in_flight);
                Ok(sse_stream::Sse::default())
            }))
            .filter(|e| {
                futures::future::ready(
                    !matches!(e, Ok(sse) if sse.data.is_none() && sse.id.is_none() && sse.event.is_none()),
                )
            }),
    )
}

/// The next step after the upstream's answer to the call: the answer itself, or the questions
/// an `input_required` result asks (sent on the stream first).
fn on_answer(
    ctx: &Ctx,
    value: Value,
    id: &Value,
    pending: &mut std::collections::VecDeque<sse_stream::Sse>,
    rounds: &mut usize,
) -> Step {
    let result = value.get("result");
    let input_required =
        result.is_some_and(|r| r.get("resultType").and_then(Value::as_str) == Some("input_required"));
    if !input_required {
        pending.push_back(event(&value));
        return Step::Done;
    }
    *rounds += 1;
    let result = result.expect("a result");
    let requests = result.get("inputRequests").and_then(Value::as_object);
    let too_many = *rounds > MAX_ROUNDS;
    let mut questions = Vec::new();
    for (key, request) in requests.into_iter().flatten() {
        if too_many {
            break;
        }
        let Some((ask_id, answer)) = ctx.state.inputs.ask(Owner::of(ctx)) else {
            break;
        };
        let mut ask = json!({"jsonrpc": "2.0", "id": ask_id, "method": request.get("method").cloned().unwrap_or(Value::Null)});
        if let Some(params) = request.get("params") {
            ask["params"] = params.clone();
        }
        pending.push_back(event(&ask));
        questions.push((key.clone(), answer));
    }
    if questions.is_empty() {
        pending.push_back(event(
            &McpError::protocol(
                crate::jsonrpc::SERVER_ERROR,
                "The upstream's request for input could not be put to the client",
            )
            .body(Some(id)),
        ));
        return Step::Done;
    }
    let request_state = result.get("requestState").cloned().unwrap_or(Value::Null);
    Step::Asked(questions, request_state)
}
