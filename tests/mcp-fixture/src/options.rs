//! Knobs a test uses to shape the fixture before it starts.

use std::time::Duration;

/// How the fixture treats clients that speak the session-based protocol
/// revisions (2024-11-05 through 2025-11-25).
///
/// Requests that carry `2026-07-28` per-request metadata are always served
/// statelessly: that revision removed sessions, and rmcp routes them past the
/// session layer whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    /// `initialize` opens an `Mcp-Session-Id` session with a standalone GET
    /// stream, DELETE termination and server-to-client requests (sampling,
    /// elicitation) on the tool call's SSE stream.
    #[default]
    Stateful,
    /// No sessions at all: every POST is answered on its own, GET and DELETE
    /// are refused. Server-to-client requests are impossible, so the sampling
    /// and elicitation tools report that instead of blocking.
    Stateless,
}

/// Which protocol revisions the fixture speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolMode {
    /// Both eras (a dual-era server): `initialize` opens a session in one of the
    /// revisions up to 2025-11-25, a request carrying 2026-07-28 `_meta` is served
    /// statelessly.
    #[default]
    Both,
    /// 2026-07-28 only, as a stateless-only server is: `initialize` is refused
    /// with `-32022` naming the one supported version (HTTP 400), a request
    /// without the 2026-07-28 `_meta` is refused (HTTP 400), GET and DELETE get
    /// 405, `Mcp-Session-Id` is ignored and never minted.
    Only2026,
    /// The session revisions only (2024-11-05 through 2025-11-25), answering
    /// 2026-07-28 traffic as a 2025-era server built on the official TypeScript
    /// SDK's Streamable HTTP example does (see `era.rs`): a request without a
    /// session that is not `initialize` gets 400 `-32000 Bad Request: No valid
    /// session ID provided`, an `MCP-Protocol-Version` it does not know gets 400
    /// `-32000 Bad Request: Unsupported protocol version`, `server/discover` and
    /// `subscriptions/listen` are unknown methods (`-32601`), and `initialize`
    /// asking for 2026-07-28 is answered with 2025-11-25.
    Only2025,
}

/// Encoding of a POST response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// Always stream the answer as `text/event-stream`.
    #[default]
    Sse,
    /// Answer with a single `application/json` body when the handler produces
    /// nothing but the final response. rmcp falls back to SSE when a handler
    /// emits notifications first, and it only honours this on stateless
    /// requests: legacy sessions always stream.
    Json,
}

/// Which `Host` headers the fixture accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostPolicy {
    /// Accept every `Host`, so a gateway may reach the fixture under any name.
    #[default]
    AnyHost,
    /// Accept only `localhost`, `127.0.0.1` and `::1` (any port), which is the
    /// DNS-rebinding protection the conformance suite checks for.
    LoopbackOnly,
    /// Accept exactly these hosts or `host:port` authorities.
    Only(Vec<String>),
}

/// A "rug pull": the fixture changes a tool's description after it has served
/// some number of `tools/call` requests, imitating a server that turns
/// malicious after it has been approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RugPull {
    /// The tool whose description changes.
    pub tool: String,
    /// After this many `tools/call` requests (to any tool) the description
    /// changes; the call that reaches the threshold is still served normally.
    pub after_calls: u64,
    /// The description the tool advertises from then on.
    pub new_description: String,
}

/// Everything [`spawn_fixture`](crate::spawn_fixture) needs to know.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    /// Which protocol revisions are served.
    pub protocol: ProtocolMode,
    /// Session handling for the pre-2026 protocol revisions.
    pub session_mode: SessionMode,
    /// JSON or SSE answers where rmcp lets the server choose.
    pub response_format: ResponseFormat,
    /// `Host` header validation.
    pub host_policy: HostPolicy,
    /// Keep every request's headers so a test can inspect what reached the
    /// upstream (for instance that no client credential leaked through).
    pub record_headers: bool,
    /// Change a tool's description after N calls, if set.
    pub rug_pull: Option<RugPull>,
    /// List the tools in reverse order once this many `tools/call` requests were served (to
    /// observe that a gateway follows the server's order).
    pub reverse_tools_after_calls: Option<u64>,
    /// How often `test://watched-resource` changes and subscribers hear about
    /// it.
    pub watched_resource_interval: Duration,
    /// Advertise the Tasks extension (SEP-2663) and serve its fixture tools
    /// (`greet`, `slow_compute`, `failing_job`, ...).
    pub tasks_extension: bool,
    /// Advertise the Skills extension (SEP-2640, with `directoryRead`) and
    /// serve the `skill://conformance-guide/` skill.
    pub skills_extension: bool,
    /// Serve `test_slow_cancellable`, which waits 30 s and counts the calls abandoned before
    /// they finish (its future dropped or its request cancelled), to observe cancellation.
    pub slow_tool: bool,
    /// Also serve resources of this instance's own, so that fixtures behind one gateway can be
    /// told apart: `test://<name>/info` (its text names the instance), `test://<name>/watched`
    /// (changes with `test://watched-resource`) and the template `test://<name>/items/{id}`.
    pub own_resources: Option<String>,
    /// List prompts, resources, resource templates and tasks in pages of this many items, with
    /// a `nextCursor` only this instance accepts; `None` lists everything at once.
    pub page_size: Option<usize>,
    /// The port to bind on 127.0.0.1; `0` picks a free one.
    pub port: u16,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        Self {
            protocol: ProtocolMode::default(),
            session_mode: SessionMode::default(),
            response_format: ResponseFormat::default(),
            host_policy: HostPolicy::default(),
            record_headers: false,
            rug_pull: None,
            reverse_tools_after_calls: None,
            watched_resource_interval: Duration::from_secs(3),
            tasks_extension: true,
            skills_extension: true,
            slow_tool: false,
            own_resources: None,
            page_size: None,
            port: 0,
        }
    }
}
