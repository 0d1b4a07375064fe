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
}

/// How far one JSON-RPC batch may go (`dataplane.max_batch_messages`, `.max_batch_answer_bytes`,
/// `.batch_timeout_ms`).
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_messages: usize,
    pub max_answer_bytes: usize,
    pub timeout: Duration,
}
