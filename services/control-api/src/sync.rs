//! Syncing a domain server: list its tools upstream (outside any transaction), then record what
//! was seen in one transaction: definitions pinned by hash, poisoning flags, status transitions
//! (new → pending, drifted → changed, gone → removed), the server's sync outcome, audit events, and
//! a configuration-version bump when anything the dataplane serves may have changed.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use gatehouse_core::canonical::tool_definition_hash;
use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::namespaced_tool_name;
use gatehouse_db::repos::servers::{ServerRow, SyncOutcome};
use gatehouse_db::repos::tools::{Observed, ToolFilter, ToolStatus, Transition};
use gatehouse_db::repos::{servers, snapshot, tools};
use gatehouse_db::{AuditOutcome, NewAuditEvent};
use gatehouse_egress::Egress;
use gatehouse_mcp_client::{Listing, MAX_PAGES, SessionLimits, ToolLimits, Upstream, UpstreamError};

use crate::changes::{self, Acting};
use crate::error::{ApiError, ApiResult};
use crate::poisoning;
use crate::state::AppState;

/// A tool list larger than this is refused (a runaway or hostile server).
pub const MAX_TOOLS: usize = 1000;

/// What a sync found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct SyncReport {
    /// Tools the server lists now.
    pub tools_listed: usize,
    /// First seen: waiting for approval.
    pub new: Vec<String>,
    /// Definition differs from the approved pin: withheld until re-approved.
    pub changed: Vec<String>,
    /// Back to the approved definition: served again.
    pub restored: Vec<String>,
    /// No longer listed upstream: not served.
    pub removed: Vec<String>,
    /// Other definition or status updates (e.g. a pending tool's new definition).
    pub updated: Vec<String>,
    /// Listed tools that were ignored, with the reason.
    pub skipped: Vec<String>,
    /// Why the sync failed, if it did (the tools were left as they were).
    pub error: Option<String>,
}

/// Largest answer body, or single stream event, accepted from a server being synced.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The MCP client of tool sync: each request within `egress.request_timeout_ms`, each answer
/// within [`MAX_MESSAGE_BYTES`]; it asserts no caller and holds no sessions for clients.
pub fn mcp_client(egress: &Egress) -> anyhow::Result<gatehouse_mcp_client::Client> {
    let settings = gatehouse_mcp_client::Settings {
        timeout: egress.timeout(),
        max_message_bytes: MAX_MESSAGE_BYTES,
        // Routes of HTTP+SSE server→client requests are never handed out by tool sync.
        reply_key: rand::random(),
        sessions: SessionLimits {
            max_sessions: 1,
            idle: Duration::from_secs(60),
        },
        metrics_prefix: "gatehouse_tool_sync",
    };
    gatehouse_mcp_client::Client::new(egress.clone(), settings, None)
}

/// How long one sync may take end to end.
fn deadline(state: &AppState) -> Duration {
    (state.egress.timeout() * 3).max(Duration::from_secs(1))
}

/// Lists every tool of `server` in the revision it speaks (learned anew), within the
/// deadline: the tools and the revision, or a tenant-safe reason.
async fn list_tools(state: &AppState, upstream: &Upstream) -> Result<(Vec<Value>, String), String> {
    let limits = ToolLimits {
        max_tools: Some(MAX_TOOLS),
        max_bytes: None,
    };
    let listing = state.mcp.list_tools_relearned(upstream, limits);
    let deadline = deadline(state);
    let (learned, listing) = match tokio::time::timeout(deadline, listing).await {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => return Err(failure(&e)),
        Err(_) => {
            return Err(format!(
                "the server did not finish listing its tools within {} seconds",
                deadline.as_secs()
            ));
        }
    };
    match listing {
        Listing::Tools(tools) => Ok((tools, learned.version.clone())),
        Listing::TooManyTools => Err(format!("the server lists more than {MAX_TOOLS} tools")),
        Listing::TooManyPages => Err(format!(
            "the server's tool list did not end after {MAX_PAGES} pages"
        )),
        Listing::RepeatedCursor => Err("the server's tool list repeats the same page cursor".into()),
        // No byte bound is set.
        Listing::TooLarge => Err("the server's tool list is too large".into()),
    }
}

/// Why the exchange with the server failed, in words for the org (never what the server said).
fn failure(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Status(status @ (401 | 403)) => format!(
            "the server refused Gatehouse's credential (HTTP {status}); check the server's authentication settings"
        ),
        UpstreamError::Status(404) => "the server answered HTTP 404: no MCP endpoint at this URL".into(),
        UpstreamError::Status(status) => format!("the server answered HTTP {status}"),
        UpstreamError::Unreachable(e) => format!("cannot reach the server: {e}"),
        UpstreamError::TokenEndpoint(why) => format!("the OAuth token endpoint {why}"),
        UpstreamError::Refused(why) => format!("Gatehouse refused to call the server: {why}"),
        UpstreamError::SessionGone => "the server forgot its session while listing tools".into(),
        UpstreamError::Unavailable(why) => format!("the server did not complete the MCP exchange: {why}"),
    }
}

/// Syncs `server_id` on behalf of `acting`. A failure upstream is recorded on the server and in
/// the report (not an `Err`): the caller decides how to present it.
pub async fn sync_server(
    state: &AppState,
    acting: &Acting,
    server_id: ServerId,
) -> ApiResult<(ServerRow, SyncReport)> {
    let org_id = acting.scope.org_id();
    let mut tx = acting.begin(state).await?;
    let server = servers::get(&mut tx, server_id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    tx.commit().await?;
    // As the dataplane sees it (a corrupt row fails here, loudly); tool sync asserts no caller.
    let upstream = Upstream::of_snapshot(org_id, &snapshot::server_snapshot(&server)?, &state.keyring);
    let listed = list_tools(state, &upstream).await;
    drop(upstream);

    let mut tx = acting.begin(state).await?;
    let server = servers::get_for_update(&mut tx, server_id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    let (tools, protocol_revision) = match listed {
        Err(reason) => {
            let server = servers::record_sync(&mut tx, server_id, SyncOutcome::Failed(&reason)).await?;
            let event = acting
                .event("server.sync")
                .target("server", server_id)
                .outcome(AuditOutcome::Error)
                .details(json!({ "server": server.slug, "error": reason }));
            changes::commit_audited(tx, &[event]).await?;
            let report = SyncReport {
                error: Some(reason),
                ..Default::default()
            };
            return Ok((server, report));
        }
        Ok(listed) => listed,
    };

    // Names other servers of the org expose, for the cross-server reference heuristic.
    let mut others: Vec<String> = Vec::new();
    let all_servers = servers::list(&mut tx).await?;
    for tool in tools::list(&mut tx, &ToolFilter::default()).await? {
        if tool.server_id.is_some_and(|s| s != server_id)
            && let Some(owner) = all_servers.iter().find(|s| Some(s.id) == tool.server_id)
        {
            others.push(namespaced_tool_name(&owner.slug, &tool.name));
            others.push(tool.name.clone());
        }
    }

    let mut report = SyncReport {
        tools_listed: tools.len(),
        ..Default::default()
    };
    let mut events: Vec<NewAuditEvent> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    // The names in the server's own order: endpoints list tools in that order.
    let mut listed_order: Vec<&str> = Vec::with_capacity(tools.len());
    let mut dataplane_affected = false;
    for definition in &tools {
        let Some(name) = definition.get("name").and_then(Value::as_str) else {
            report.skipped.push("(a tool without a name)".into());
            continue;
        };
        if name.is_empty() || name.chars().count() > 128 {
            report.skipped.push(format!(
                "{}: the name must be 1 to 128 characters",
                poisoning::escape_invisible(name)
            ));
            continue;
        }
        if !seen.insert(name) {
            report
                .skipped
                .push(format!("{}: listed twice", poisoning::escape_invisible(name)));
            continue;
        }
        listed_order.push(name);
        let hash_hex = tool_definition_hash(definition);
        let hash = hex::decode(&hash_hex).map_err(|e| ApiError::Internal(e.into()))?;
        let flags = serde_json::to_value(poisoning::scan(definition, &others))
            .map_err(|e| ApiError::Internal(e.into()))?;
        let (row, transition) = tools::observe(
            &mut tx,
            server_id,
            &Observed {
                name,
                definition,
                hash: &hash,
                flags: &flags,
            },
        )
        .await?;
        let display = poisoning::escape_invisible(name);
        let action = match transition {
            Transition::Unchanged => None,
            Transition::New => {
                report.new.push(display);
                Some("tool.discovered")
            }
            Transition::Updated { from, to } => {
                dataplane_affected |= from == ToolStatus::Approved || to == ToolStatus::Approved;
                match to {
                    ToolStatus::Changed if from != ToolStatus::Changed => {
                        report.changed.push(display);
                        Some("tool.changed")
                    }
                    ToolStatus::Approved => {
                        report.restored.push(display);
                        Some("tool.restored")
                    }
                    _ => {
                        report.updated.push(display);
                        Some("tool.updated")
                    }
                }
            }
        };
        if let Some(action) = action {
            let (from, to) = match transition {
                Transition::Updated { from, to } => (Some(from.as_str()), to.as_str()),
                _ => (None, row.status().as_str()),
            };
            events.push(acting.event(action).target("tool", row.id).details(json!({
                "server": server.slug,
                "tool": name,
                "before": from.map(|s| json!({ "status": s })),
                "after": { "status": to, "definition_hash": hash_hex },
                "flags": flags.as_array().map_or(0, Vec::len),
            })));
        }
    }
    dataplane_affected |= tools::record_upstream_order(&mut tx, server_id, &listed_order).await?;
    for (row, from) in tools::mark_removed_except(&mut tx, server_id, &listed_order).await? {
        dataplane_affected |= from == ToolStatus::Approved;
        report.removed.push(poisoning::escape_invisible(&row.name));
        events.push(
            acting
                .event("tool.removed")
                .target("tool", row.id)
                .details(json!({
                    "server": server.slug,
                    "tool": row.name,
                    "before": { "status": from.as_str() },
                    "after": { "status": "removed" },
                })),
        );
    }
    let server = servers::record_sync(
        &mut tx,
        server_id,
        SyncOutcome::Listed {
            protocol_revision: &protocol_revision,
        },
    )
    .await?;
    events.insert(
        0,
        acting
            .event("server.sync")
            .target("server", server_id)
            .details(json!({
                "server": server.slug,
                "tools_listed": report.tools_listed,
                "new": report.new.len(),
                "changed": report.changed.len(),
                "restored": report.restored.len(),
                "removed": report.removed.len(),
            })),
    );
    if dataplane_affected {
        changes::commit_config_change(state, tx, &events).await?;
    } else {
        changes::commit_audited(tx, &events).await?;
    }
    Ok((server, report))
}
