//! What every request handler shares (built once, outside the per-worker app factory).

use std::sync::Arc;
use std::time::Duration;

use gatehouse_events::{ChangeNotifier, EventPublisher, QuotaState, RateLimiter};

use crate::auth::TokenVerifier;
use crate::headers::OriginPolicy;
use crate::pins::Pins;
use crate::session::{EndedSessions, SessionCodec};
use crate::store::SnapshotStore;
use crate::stream_slots::StreamSlots;
use crate::task_owners::TaskOwners;
use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub store: SnapshotStore,
    /// Fetches an org's snapshot when a request names what it lacks.
    pub refresher: crate::loader::Refresher,
    pub verifier: TokenVerifier,
    pub sessions: SessionCodec,
    pub ended_sessions: EndedSessions,
    /// Tells the other replicas about sessions ended here.
    pub notifier: ChangeNotifier,
    pub upstreams: Upstreams,
    pub origins: OriginPolicy,
    pub events: EventPublisher,
    pub limiter: RateLimiter,
    pub quota: QuotaState,
    pub pins: Pins,
    /// Who created each task (shared through Redis when the dataplane uses it).
    pub tasks: TaskOwners,
    /// Runs hosted SQL tools: one small pool per backend.
    pub hosted_sql: gatehouse_hosted_sql::HostedSql,
    /// Confirmations of destructive hosted SQL calls asked through `elicitation/create`, waiting
    /// on this replica for the client's answer.
    pub elicitations: crate::elicitations::Elicitations,
    /// Checks a backend's host against the SSRF guard before each hosted SQL call.
    pub egress: gatehouse_egress::Egress,
    /// The OAuth issuer (authorization server) named in resource metadata.
    pub issuer: String,
    /// The dataplane's public URL without a trailing slash.
    pub public_url: String,
    pub max_json_depth: usize,
    pub batches: BatchLimits,
    /// Notification streams open per caller (`dataplane.max_streams_per_subject`).
    pub streams: StreamSlots,
    /// Redacts secrets in what upstreams send back (`dataplane.redact_secrets`).
    pub redactor: Option<crate::redact::Redactor>,
    /// Server→client requests bridged between revisions, waiting on this replica.
    pub inputs: crate::mcp::InputRequests,
    /// This instance, as named in events.
    pub source: Arc<str>,
    /// The drain on shutdown (SIGTERM), shared with the servers. The one hook for whatever this
    /// replica holds open beyond a request:
    /// - `drain.token()` is cancelled when draining begins: stop opening new long-lived things
    ///   (upstream sessions of a pool, notification streams) and end those that carry no call in
    ///   flight; the notification streams in [`StreamSlots`] end on it already.
    /// - `drain.on_close(|| async move { ... })` runs once every in-flight request has finished
    ///   (or the grace period ran out), before the process exits: end the upstream sessions
    ///   Gatehouse opened itself there (a DELETE each). Register it when the holder is built;
    ///   the sessions held for stateless clients (`Upstreams::close_all`) are registered in `lib.rs`.
    ///
    /// Sessions of 2025 clients are not among them: their upstream session ids travel sealed in
    /// the client's `Mcp-Session-Id`, and the client goes on with them on another replica.
    pub drain: gatehouse_http::Draining,
}

/// How far one JSON-RPC batch may go (`dataplane.max_batch_messages`, `.max_batch_answer_bytes`,
/// `.batch_timeout_ms`).
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_messages: usize,
    pub max_answer_bytes: usize,
    pub timeout: Duration,
}
