//! The dataplane's binding of the platform's MCP client ([`gatehouse_mcp_client`]) to its
//! snapshot: requests name a [`ServerState`] (whose `upstream` is the client's view of the server,
//! credential opened) and a [`Caller`] (the authenticated principal), and caller assertions are
//! signed with the dataplane's key. Transports, sessions, credentials, bounded reads and
//! revision learning are the client's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use gatehouse_core::ids::{EndpointId, OrgId, ServerId};
use gatehouse_egress::Egress;
use gatehouse_events::SubjectKind;
use gatehouse_mcp_client as client;

pub use gatehouse_mcp_client::{
    ClientHello, HeldSession, Learned, Listing, Outbound, Reply, STATELESS_VERSION, SessionKey,
    SessionLimits, SseEvents, ToolLimits, UpstreamError, Wire, next_message, response_on,
    session_capabilities, stateless_meta,
};

use crate::assertion::AssertionSigner;
use crate::auth::Principal;
use crate::store::ServerState;

/// The identity the caller assertion names.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub org: OrgId,
    pub endpoint: EndpointId,
}

impl<'a> From<Caller<'a>> for client::Caller<'a> {
    fn from(caller: Caller<'a>) -> Self {
        client::Caller {
            org: caller.org,
            endpoint: caller.endpoint,
            subject: &caller.principal.subject,
            subject_kind: match caller.principal.kind {
                SubjectKind::User => "user",
                SubjectKind::ServiceToken => "service_token",
                SubjectKind::OauthClient => "client",
                SubjectKind::Anonymous => "anonymous",
            },
            client_id: caller.principal.client_id.as_deref(),
        }
    }
}

/// The dataplane's MCP client and the signer of its caller assertions.
#[derive(Clone)]
pub struct Upstreams {
    client: client::Client,
    signer: AssertionSigner,
}

impl Upstreams {
    /// `max_message_bytes` bounds an answer body or a single stream event; `reply_key` seals the
    /// routes of HTTP+SSE upstreams' server→client requests (one purpose); `sessions` bounds the
    /// upstream sessions held for stateless clients.
    pub fn new(
        egress: Egress,
        timeout: Duration,
        max_message_bytes: usize,
        signer: AssertionSigner,
        reply_key: &[u8; 32],
        sessions: SessionLimits,
    ) -> anyhow::Result<Self> {
        let settings = client::Settings {
            timeout,
            max_message_bytes,
            reply_key: *reply_key,
            sessions,
            metrics_prefix: "gatehouse_dataplane",
        };
        let client = client::Client::new(egress, settings, Some(Arc::new(signer.clone())))?;
        Ok(Self { client, signer })
    }

    /// The same upstreams (breakers, credentials, routes, sessions) through a connection pool of
    /// its own, for one HTTP worker ([`client::Client::with_own_pool`]).
    pub fn with_own_pool(&self) -> anyhow::Result<Self> {
        Ok(Self {
            client: self.client.with_own_pool()?,
            signer: self.signer.clone(),
        })
    }

    pub fn signer(&self) -> &AssertionSigner {
        &self.signer
    }

    /// POSTs one message (or batch) and returns the upstream's answer without reading a stream.
    pub async fn post(&self, out: Outbound<'_>) -> Result<Reply, UpstreamError> {
        self.client.post(out).await
    }

    /// Sends one request and waits for its response message ([`client::Client::request`]).
    pub async fn request(
        &self,
        out: Outbound<'_>,
        id: &Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        self.client.request(out, id).await
    }

    /// The response message to request `id` in `reply`, and the session id the upstream named.
    pub async fn answer_of(
        &self,
        reply: Reply,
        id: &Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        self.client.answer_of(reply, id).await
    }

    /// A stateless upstream's `subscriptions/listen` stream for the dataplane itself
    /// ([`client::Client::listen`]).
    pub async fn listen(
        &self,
        server: &ServerState,
        notifications: Value,
    ) -> Result<Option<SseEvents>, UpstreamError> {
        self.client.listen(&server.upstream, notifications).await
    }

    /// Opens the standalone GET stream of an upstream session ([`client::Client::get_stream`]).
    pub async fn get_stream(
        &self,
        server: &ServerState,
        protocol_version: &str,
        session_id: Option<&str>,
        last_event_id: Option<&str>,
        caller: Option<Caller<'_>>,
    ) -> Result<Option<SseEvents>, UpstreamError> {
        self.client
            .get_stream(
                &server.upstream,
                protocol_version,
                session_id,
                last_event_id,
                caller.map(Into::into),
            )
            .await
    }

    /// Ends an upstream session (best effort).
    pub async fn delete_session(&self, server: &ServerState, protocol_version: &str, session_id: &str) {
        self.client
            .delete_session(&server.upstream, protocol_version, session_id)
            .await
    }

    /// What is known of `server`'s wire, learned now if nothing (or something stale) is.
    pub async fn learned(
        &self,
        server: &ServerState,
        caller: Option<Caller<'_>>,
    ) -> Result<Arc<Learned>, UpstreamError> {
        self.client
            .learned(&server.upstream, caller.map(Into::into))
            .await
    }

    /// Forgets what was learned of `server` (a request showed it wrong).
    pub fn forget_wire(&self, server: ServerId) {
        self.client.forget_wire(server)
    }

    /// Every tool `server` lists, in the revision it speaks ([`client::Client::list_tools`]).
    pub async fn list_tools(
        &self,
        server: &ServerState,
        limits: ToolLimits,
    ) -> Result<(Arc<Learned>, Listing), UpstreamError> {
        self.client.list_tools(&server.upstream, limits).await
    }

    /// Opens a session with a session upstream for `caller` (`initialize` with `hello`, then
    /// `notifications/initialized`), not held in the pool: the session and the `initialize`
    /// result ([`client::Client::open_session`]).
    pub async fn open_session(
        &self,
        server: &ServerState,
        hello: &ClientHello<'_>,
        caller: Option<Caller<'_>>,
    ) -> Result<(HeldSession, Value), UpstreamError> {
        self.client
            .open_session(&server.upstream, hello, caller.map(Into::into))
            .await
    }

    /// A session of the dataplane's own with a session upstream (`None`: it keeps none).
    pub async fn own_session(&self, server: &ServerState) -> Result<Option<HeldSession>, UpstreamError> {
        self.client.own_session(&server.upstream).await
    }

    /// The session held for `key` with `server`, opened when there is none.
    pub async fn held_session(
        &self,
        server: &Arc<ServerState>,
        key: &SessionKey,
        hello: &ClientHello<'_>,
        caller: Caller<'_>,
    ) -> Result<HeldSession, UpstreamError> {
        self.client
            .held_session(&server.upstream, key, hello, caller.into())
            .await
    }

    /// Forgets the session held for `key` when it is `session_id` (the upstream answered 404).
    pub fn forget_session(&self, key: &SessionKey, session_id: &str) {
        self.client.forget_session(key, session_id)
    }

    /// How many upstream sessions are held.
    pub fn held_sessions(&self) -> usize {
        self.client.held_sessions()
    }

    /// Closes the sessions unused for longer than the idle limit.
    pub async fn close_idle_sessions(&self) {
        self.client.close_idle_sessions().await
    }

    /// Closes (DELETE) every held upstream session, for shutdown.
    pub async fn close_all(&self) {
        self.client.close_all().await
    }
}
