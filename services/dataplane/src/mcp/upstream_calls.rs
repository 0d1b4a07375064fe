//! The one place a message to an upstream is built ([`UpstreamCall`], which owns the
//! `upstream::Outbound` literal) and the one fan-out to several upstreams ([`fan_out`]). Which
//! revision, upstream session and headers a forwarded request uses is decided by the bridge
//! (`bridge::route`); what is built here follows that decision or the client's own session.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use gatehouse_core::ids::ServerId;

use crate::session::{Session, UpstreamSession};
use crate::store::ServerState;
use crate::upstream::{Caller, Outbound, Reply, UpstreamError, Upstreams, Wire};

use super::context::Ctx;

/// One message to one upstream: in which revision and upstream session, for whom.
pub(super) struct UpstreamCall<'a> {
    pub(super) server: &'a ServerState,
    /// The revision spoken (`None`: the upstream's own handshake decides).
    pub(super) version: Option<&'a str>,
    /// The upstream session the message goes in (`None`: statelessly, or opening one).
    pub(super) session_id: Option<&'a str>,
    /// Whose call it is (`None`: the endpoint's own, e.g. a cancellation after the client left).
    pub(super) caller: Option<Caller<'a>>,
    /// `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` for a stateless upstream.
    pub(super) mcp_headers: Vec<(HeaderName, HeaderValue)>,
    /// What the client declared, for an HTTP+SSE upstream's per-request handshake.
    pub(super) client_capabilities: Option<&'a Value>,
}

impl<'a> UpstreamCall<'a> {
    /// A message in `upstream`, one of the client's session's upstream sessions.
    pub(super) fn in_session(ctx: &'a Ctx, server: &'a ServerState, upstream: &'a UpstreamSession) -> Self {
        Self::in_upstream_session(
            server,
            &upstream.version,
            upstream.session_id.as_deref(),
            Some(ctx.caller()),
        )
    }

    /// A message in the upstream session `session_id` spoken in `version`.
    pub(super) fn in_upstream_session(
        server: &'a ServerState,
        version: &'a str,
        session_id: Option<&'a str>,
        caller: Option<Caller<'a>>,
    ) -> Self {
        UpstreamCall {
            server,
            version: Some(version),
            session_id,
            caller,
            mcp_headers: vec![],
            client_capabilities: None,
        }
    }

    /// A message outside any session (`initialize`, which opens one).
    pub(super) fn opening(ctx: &'a Ctx, server: &'a ServerState) -> Self {
        UpstreamCall {
            server,
            version: None,
            session_id: None,
            caller: Some(ctx.caller()),
            mcp_headers: vec![],
            client_capabilities: None,
        }
    }

    fn outbound(self, body: Bytes) -> Outbound<'a> {
        Outbound {
            upstream: &self.server.upstream,
            body,
            protocol_version: self.version,
            session_id: self.session_id,
            mcp_headers: self.mcp_headers,
            caller: self.caller.map(Into::into),
            client_capabilities: self.client_capabilities,
        }
    }

    /// Posts `body`; the upstream's reply as it came.
    pub(super) async fn post(self, upstreams: &Upstreams, body: Bytes) -> Result<Reply, UpstreamError> {
        upstreams.post(self.outbound(body)).await
    }

    /// Posts the request `body` (id `id`) and reads its response, with the upstream session id
    /// the reply named.
    pub(super) async fn request(
        self,
        upstreams: &Upstreams,
        body: Bytes,
        id: &Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        upstreams.request(self.outbound(body), id).await
    }
}

/// `call` for each of `targets` whose server is configured, all at once; the results in the order
/// of `targets`.
pub(super) async fn fan_out<I, X, F, Fut, T>(ctx: &Ctx, targets: I, mut call: F) -> Vec<T>
where
    I: IntoIterator<Item = (ServerId, X)>,
    F: FnMut(Arc<ServerState>, X) -> Fut,
    Fut: Future<Output = T>,
{
    let calls = targets
        .into_iter()
        .filter_map(|(id, x)| Some(call(ctx.server(id)?.clone(), x)))
        .collect::<Vec<_>>();
    futures::future::join_all(calls).await
}

/// The upstream sessions of a client's session on the session wire (a stateless upstream has
/// no notifications from the client and no logging level), with their servers' ids.
pub(super) fn session_wire_upstreams(
    session: &Session,
) -> impl Iterator<Item = (ServerId, &UpstreamSession)> {
    session
        .upstreams
        .iter()
        .filter(|u| wire_of(&u.version) == Wire::Session)
        .map(|u| (u.server, u))
}

/// The wire a version is spoken on.
pub(super) fn wire_of(version: &str) -> Wire {
    if version >= crate::upstream::STATELESS_VERSION {
        Wire::Stateless
    } else {
        Wire::Session
    }
}
