//! What every handler below the wire edge works with: the per-request context ([`Ctx`], made
//! only by admission), the client's wire, the protocol revisions Gatehouse speaks, and
//! [`Incoming`], one request's context as handlers receive it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, web};
use serde_json::Value;

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::EndpointTool;

use crate::auth::Principal;
use crate::events::{CallRecord, CallSite};
use crate::session::Session;
use crate::state::AppState;
use crate::store::{EndpointState, OrgState, ServerState};
use crate::upstream::Caller;

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
