//! What every handler below the wire edge works with: the per-request context ([`Ctx`], made
//! only by admission), the client's wire, the protocol revisions Gatehouse speaks, and
//! [`Incoming`], one request's context as handlers receive it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, web};
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::EndpointTool;

use crate::auth::Principal;
use crate::events::{CallRecord, CallSite};
use crate::session::Session;
use crate::state::AppState;
use crate::store::{EndpointState, OrgState, ServerState};
use crate::upstream::{Caller, Wire};

/// The stateless revision and the session-based ones, newest first.
pub(super) const STATELESS_VERSIONS: &[&str] = &["2026-07-28"];
pub(super) const SESSION_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a 2026-07-28 response stream that is waiting on its upstream writes an SSE comment.
/// actix notices that a client has gone only when a write fails, and closing the response stream
/// is cancellation in that revision: the comment makes the departure visible within about two
/// intervals, and dropping the response then closes the upstream call.
pub(super) const CANCELLATION_PROBE: Duration = Duration::from_secs(1);

pub(super) fn all_versions() -> Vec<&'static str> {
    STATELESS_VERSIONS
        .iter()
        .chain(SESSION_VERSIONS)
        .copied()
        .collect()
}

/// How the client speaks to the endpoint, chosen once per message at the wire edge.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ClientWire {
    /// 2026-07-28: no sessions; each request carries its revision in `_meta`.
    Stateless,
    /// The 2025 revisions: a session opened by `initialize`.
    Session,
}

/// How a client's question reaches it (the server→client requests an upstream or the endpoint
/// itself puts to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Asking {
    /// A request on the call's response stream, answered by a POST in the session.
    OnStream,
    /// An `input_required` result, answered by the retried call's `inputResponses`.
    InputRequired,
}

/// Which way a request crosses between the client's wire and an upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Crossing {
    /// Both speak the same wire.
    Same,
    /// A stateless client's request to a session upstream (in a session the endpoint holds).
    StatelessToSession,
    /// A session client's request to a stateless upstream.
    SessionToStateless,
}

/// What the client's wire decides below the edge. Handlers ask these questions rather than
/// look at the wire: this `impl` and `wire/` are the only places that do.
impl ClientWire {
    /// How a request of this client crosses to an upstream speaking `upstream`.
    pub(super) fn crossing(self, upstream: Wire) -> Crossing {
        match (self, upstream) {
            (ClientWire::Stateless, Wire::Session) => Crossing::StatelessToSession,
            (ClientWire::Session, Wire::Stateless) => Crossing::SessionToStateless,
            _ => Crossing::Same,
        }
    }

    /// Whether the client's own session holds its upstream sessions (the session wire), rather
    /// than the bridge finding one for each request (the stateless wire).
    pub(super) fn has_own_sessions(self) -> bool {
        self == ClientWire::Session
    }

    /// The fields a list result (or `server/discover`'s) carries on this wire: the stateless
    /// revision's `resultType`, `ttlMs` and `cacheScope`.
    pub(super) fn list_fields(self, result: &mut Map<String, Value>) {
        if self == ClientWire::Stateless {
            cacheable_result_fields(result);
        }
    }

    /// A result of the endpoint's own, as this wire carries it (`resultType` on the stateless
    /// wire).
    pub(super) fn complete(self, result: &mut Value) {
        if self == ClientWire::Stateless {
            result["resultType"] = json!("complete");
        }
    }

    /// How often a response stream the client is waiting on writes a comment: on the stateless
    /// wire closing the stream is cancellation, and actix notices a departed client only when a
    /// write fails. A session client may resume instead; its streams are not probed.
    pub(super) fn cancellation_probe(self) -> Option<Duration> {
        (self == ClientWire::Stateless).then_some(CANCELLATION_PROBE)
    }

    /// Whether relayed event ids and server→client request ids name their upstream (a session
    /// client resumes streams and answers requests through any replica).
    pub(super) fn names_upstreams_in_ids(self) -> bool {
        self == ClientWire::Session
    }

    /// Whether the client's revision has `method` (the stateless one removed `tasks/list` and
    /// `tasks/result`, SEP-2663).
    pub(super) fn has_method(self, method: &str) -> bool {
        !(self == ClientWire::Stateless && matches!(method, "tasks/list" | "tasks/result"))
    }

    /// Whether a client must declare the Tasks extension in its request to use tasks (SEP-2663;
    /// a session client declared its capabilities once, at `initialize`).
    pub(super) fn declares_tasks_per_request(self) -> bool {
        self == ClientWire::Stateless
    }

    /// How the client can be asked a question, if it can: a session that declared elicitation at
    /// `initialize`, or a stateless request whose `_meta` client capabilities declare it.
    pub(super) fn asking(self, session: Option<&Session>, declared: Option<&Value>) -> Option<Asking> {
        match self {
            ClientWire::Session => session.is_some_and(|s| s.elicitation).then_some(Asking::OnStream),
            ClientWire::Stateless => declared
                .and_then(|c| c.get("elicitation"))
                .is_some_and(Value::is_object)
                .then_some(Asking::InputRequired),
        }
    }
}

/// `resultType`, `ttlMs` and `cacheScope` of a complete, uncached list result.
pub(super) fn cacheable_result_fields(result: &mut Map<String, Value>) {
    result.insert("resultType".into(), json!("complete"));
    result.insert("ttlMs".into(), json!(0));
    result.insert("cacheScope".into(), json!("private"));
}

/// What every handler of one incoming JSON-RPC request needs besides the message: the HTTP
/// request it came in, the endpoint's context, the client's wire and (session wire) its session.
#[derive(Clone, Copy)]
pub(super) struct Incoming<'a> {
    pub(super) http: &'a HttpRequest,
    pub(super) ctx: &'a Ctx,
    pub(super) client_wire: ClientWire,
    pub(super) session: Option<&'a Session>,
}

impl<'a> Incoming<'a> {
    pub(super) fn session(http: &'a HttpRequest, ctx: &'a Ctx, session: &'a Session) -> Self {
        Self {
            http,
            ctx,
            client_wire: ClientWire::Session,
            session: Some(session),
        }
    }

    pub(super) fn stateless(http: &'a HttpRequest, ctx: &'a Ctx) -> Self {
        Self {
            http,
            ctx,
            client_wire: ClientWire::Stateless,
            session: None,
        }
    }
}

/// Everything established about a request before its body is looked at.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) state: web::Data<AppState>,
    pub(super) org: Arc<OrgState>,
    pub(super) endpoint: Arc<EndpointState>,
    pub(super) principal: Arc<Principal>,
    pub(super) site: CallSite,
    pub(super) metadata_url: String,
}

impl Ctx {
    pub(super) fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            org: self.org.snapshot.org_id,
            endpoint: self.endpoint.id(),
        }
    }

    /// Whether the caller's scopes grant `tool` and it is not withheld.
    pub(super) fn may_call(&self, tool: &EndpointTool) -> bool {
        self.endpoint.may_call(tool.tool_id, &self.principal.scopes) && !self.state.pins.is_withheld(tool)
    }

    pub(super) fn server(&self, id: ServerId) -> Option<&Arc<ServerState>> {
        self.org.servers.get(&id)
    }

    /// The endpoint's upstream whose slug is `slug` (the prefix of namespaced names).
    pub(super) fn server_by_slug(&self, slug: &str) -> Option<ServerId> {
        self.endpoint
            .server_ids
            .iter()
            .find(|s| self.server(**s).is_some_and(|st| st.snapshot.slug == slug))
            .copied()
    }

    pub(super) fn record(
        &self,
        method: &str,
        tool: Option<&str>,
        server: Option<ServerId>,
        args: Option<&Value>,
        bytes_in: u64,
    ) -> CallRecord {
        CallRecord::start(
            &self.state.events,
            &self.site,
            method,
            tool,
            server,
            args,
            bytes_in,
        )
    }
}
