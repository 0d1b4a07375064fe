//! What travels on the event bus from dataplanes to usage-workers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, EventId, OrgId, ServerId};

/// One message on the bus. Every variant carries a producer-minted UUIDv7 id; consumers write
/// idempotently on it, so redelivery is harmless.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusMessage {
    /// A call, denial or rate-limit rejection at an endpoint: becomes one audit event and one
    /// usage event.
    Call(CallEvent),
    /// An upstream served a definition that differs from the approved pin.
    ToolDrift(ToolDrift),
}

impl BusMessage {
    pub fn id(&self) -> EventId {
        match self {
            BusMessage::Call(e) => e.id,
            BusMessage::ToolDrift(e) => e.id,
        }
    }

    pub fn org_id(&self) -> OrgId {
        match self {
            BusMessage::Call(e) => e.org_id,
            BusMessage::ToolDrift(e) => e.org_id,
        }
    }
}

/// The JSON-RPC methods billed per call. A request of one of them that reached its upstream
/// (answered or failed there) is one billable call ([`CallEvent::billable_units`], what the
/// usage-worker meters); the dataplane refuses every one of them for an org over its quota
/// before it is dispatched.
pub const BILLABLE_METHODS: &[&str] = &["tools/call"];

/// Whether requests of `method` are billed ([`BILLABLE_METHODS`]).
pub fn is_billable(method: &str) -> bool {
    BILLABLE_METHODS.contains(&method)
}

impl CallEvent {
    /// Billable calls this event counts for: one for a billable method forwarded to its upstream
    /// (answered or failed there); refusals by the gateway and protocol traffic (`tools/list`,
    /// ...) are free.
    pub fn billable_units(&self) -> i64 {
        i64::from(
            is_billable(&self.method) && matches!(self.outcome, CallOutcome::Success | CallOutcome::Error),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Forwarded and answered (including tool results with `isError`).
    Success,
    /// Forwarded but the upstream failed (transport error, JSON-RPC error, timeout).
    Error,
    /// Refused by authorization (unknown or ungranted tool, insufficient scope).
    Denied,
    /// Refused by a rate limit.
    RateLimited,
    /// Refused because the org is over its quota.
    OverQuota,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    User,
    ServiceToken,
    OauthClient,
    Anonymous,
}

/// The record of one MCP request at an endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    pub id: EventId,
    pub org_id: OrgId,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The producing dataplane instance.
    pub source: String,
    pub endpoint_id: Option<EndpointId>,
    pub server_id: Option<ServerId>,
    /// JSON-RPC method (`tools/call`, `tools/list`, ...).
    pub method: String,
    /// Exposed tool (or prompt/resource) name, when the method targets one.
    pub tool: Option<String>,
    pub subject: String,
    pub subject_kind: SubjectKind,
    pub client_id: Option<String>,
    pub outcome: CallOutcome,
    /// JSON-RPC error code returned to the client, if any.
    pub error_code: Option<i64>,
    pub latency_ms: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// SHA-256 (hex) of the canonical JSON of the arguments.
    pub args_hash: Option<String>,
    /// The arguments themselves, only when the org opted in.
    pub arguments: Option<serde_json::Value>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// How a destructive call was confirmed (or that its confirmation was declined or refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Box<CallConfirmation>>,
}

/// The confirmation of a destructive call, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallConfirmation {
    /// How the person was asked: `elicitation` (a 2025 session's `elicitation/create`),
    /// `input_required` (a 2026-07-28 multi-round-trip result) or `token` (the `_meta` two-step).
    pub method: String,
    /// Who confirmed: the caller's subject (a confirmation is bound to its caller).
    pub by: String,
    /// The confirmation's nonce (hex), when it was presented.
    pub nonce: Option<String>,
    /// `accepted` (the call ran), `declined` (the person said no) or `refused` (the confirmation
    /// was invalid, expired, used, or for another call).
    pub decision: String,
}

/// A definition served upstream that no longer matches the approved pin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDrift {
    pub id: EventId,
    pub org_id: OrgId,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub server_id: ServerId,
    /// The upstream's own tool name.
    pub tool_name: String,
    pub approved_hash: String,
    pub observed_hash: String,
    pub observed_definition: serde_json::Value,
}
