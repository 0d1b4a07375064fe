//! The request and response bodies of the endpoint routes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use gatehouse_core::ids::{EndpointId, ServerId, ToolId};
use gatehouse_core::snapshot::RateLimits;

/// A domain server combined into an endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointServerIn {
    pub server_id: ServerId,
    /// Expose only these tools of the server; absent (or null) exposes all its approved tools.
    #[serde(default)]
    pub tool_ids: Option<Vec<ToolId>>,
}

/// Whether, and to whom, an endpoint exposes its servers' prompts or resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposureIn {
    pub enabled: bool,
    /// The scope a caller needs (absent: any caller authorized for the endpoint). The same rule
    /// decides listing and use.
    #[serde(default)]
    pub scope: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// URL path segment, immutable: `{dataplane}/{org}/{slug}/mcp` is every token's audience.
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Absent: the rate limits of the org's plan (`rate_limit_defaults`; none on plans without).
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    #[serde(default)]
    pub servers: Vec<EndpointServerIn>,
    /// Prefix tool names with their server's slug (`orders__get_order`). May be false only while
    /// the endpoint has a single server: names of several servers could shadow each other.
    #[serde(default = "default_true")]
    pub namespace_tools: bool,
    #[serde(default)]
    pub prompts: ExposureIn,
    #[serde(default)]
    pub resources: ExposureIn,
    /// Vendor methods forwarded to the upstreams beyond the MCP methods Gatehouse understands
    /// (which every other method is refused with JSON-RPC -32601): exact method names, or
    /// prefixes written `prefix/*`; at most 32, none in a namespace of MCP itself.
    #[serde(default)]
    pub extra_methods: Vec<String>,
    /// Name every scope that grants something here in 401 challenges and the protected-resource
    /// metadata. By default they name only the scopes any member may hold (minimum role viewer).
    #[serde(default)]
    pub publish_scopes: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub rate_limits: Option<RateLimits>,
    pub namespace_tools: Option<bool>,
    pub prompts: Option<ExposureIn>,
    pub resources: Option<ExposureIn>,
    /// Replaces the endpoint's extra methods.
    pub extra_methods: Option<Vec<String>>,
    pub publish_scopes: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointServersIn {
    /// The complete selection (replaces the current one).
    pub servers: Vec<EndpointServerIn>,
}

/// A tool as exposed at the endpoint.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ExposedToolOut {
    pub tool_id: ToolId,
    pub server_id: ServerId,
    /// `<server slug>__<tool name>` (or the tool's own name on a single-server endpoint that
    /// does not namespace).
    pub exposed_name: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndpointServerOut {
    pub server_id: ServerId,
    /// All approved tools of the server, or only `tool_ids`.
    pub all_tools: bool,
    pub tool_ids: Vec<ToolId>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    pub id: EndpointId,
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The MCP endpoint URL (and the resource every token for it is bound to).
    pub url: String,
    pub rate_limits: RateLimits,
    /// Tool names carry their server's slug (always, when the endpoint has several servers).
    pub namespace_tools: bool,
    pub prompts: ExposureIn,
    pub resources: ExposureIn,
    /// Vendor methods forwarded beyond those Gatehouse understands (names or `prefix/*`).
    pub extra_methods: Vec<String>,
    /// Challenges and metadata name every scope of the endpoint, not only those to start with.
    pub publish_scopes: bool,
    pub servers: Vec<EndpointServerOut>,
    /// Approved tools served at this endpoint now, in the order `tools/list` serves them: by
    /// server, then as the server lists them.
    pub tools: Vec<ExposedToolOut>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}
