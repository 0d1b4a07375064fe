//! What every request handler shares (built once, outside the per-worker app factory).

use std::sync::Arc;

use gatehouse_events::{ChangeNotifier, EventPublisher, QuotaState, RateLimiter};

use crate::auth::TokenVerifier;
use crate::headers::OriginPolicy;
use crate::pins::Pins;
use crate::session::{EndedSessions, SessionCodec};
use crate::store::SnapshotStore;
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
    /// Runs hosted SQL tools: one small pool per backend.
    pub hosted_sql: gatehouse_hosted_sql::HostedSql,
    /// Checks a backend's host against the SSRF guard before each hosted SQL call.
    pub egress: gatehouse_egress::Egress,
    /// The OAuth issuer (authorization server) named in resource metadata.
    pub issuer: String,
    /// The dataplane's public URL without a trailing slash.
    pub public_url: String,
    pub max_json_depth: usize,
    /// Redacts secrets in what upstreams send back (`dataplane.redact_secrets`).
    pub redactor: Option<crate::redact::Redactor>,
    /// This instance, as named in events.
    pub source: Arc<str>,
}
