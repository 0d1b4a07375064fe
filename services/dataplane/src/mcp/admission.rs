//! Admission: what is established about a request before its body is acted on. `establish`
//! (Origin/Host, configuration loaded, endpoint, bearer token, base scope) makes the per-request
//! context; [`Unadmitted::admit`] and [`Unadmitted::admit_batch`] resolve the tool a `tools/call`
//! names, count every message against the endpoint's rate limits (a `tools/call` against its
//! tool's too) and refuse billable requests of an org over its quota, and are the only way to a
//! [`Ctx`]; [`open_stream`] is the caller's bounded share of notification streams. Every rate
//! limit and the quota are decided here, nowhere else.

use actix_web::{HttpRequest, web};

use gatehouse_core::snapshot::{Limit, ToolTarget};

use crate::auth::{self, TokenError};
use crate::events::CallSite;
use crate::jsonrpc::Kind;
use crate::resource;
use crate::state::AppState;
use crate::stream_slots::StreamSlot;

use super::context::Ctx;
use super::error::McpError;
use super::request::McpRequest;

/// A request whose caller is established but which is not yet counted against the endpoint's rate
/// limits. Its [`Ctx`] is reached only through [`Unadmitted::admit`] or
/// [`Unadmitted::admit_batch`]: no handler can skip them.
pub(super) struct Unadmitted {
    ctx: Ctx,
}

/// What admission decided about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Admitted,
    /// A rate limit refused it; it may be sent again after this many seconds.
    RateLimited {
        retry_after_secs: u64,
    },
    /// A billable request of an org over its quota.
    OverQuota,
}

impl Verdict {
    /// The error refusing the message; `None` when it was admitted.
    pub(super) fn refusal(self) -> Option<McpError> {
        match self {
            Verdict::Admitted => None,
            Verdict::RateLimited { retry_after_secs } => Some(McpError::RateLimited { retry_after_secs }),
            Verdict::OverQuota => Some(McpError::OverQuota),
        }
    }
}

impl Unadmitted {
    /// Admits a request holding one message (`None`: none, or a body that did not parse): counts
    /// it against the org's and the caller's limits and, for a `tools/call` of a tool with a limit
    /// of its own, against that one too, in one check; then refuses a billable request of an org
    /// over its quota. A refusal is the answer: 429 with `Retry-After`, or the quota's JSON-RPC
    /// error.
    pub(super) async fn admit(self, request: Option<&mut McpRequest>) -> Result<Ctx, McpError> {
        match self.ctx.verdict(request).await.refusal() {
            None => Ok(self.ctx),
            Some(refusal) => Err(refusal),
        }
    }

    /// Admits a batch: every message is counted and checked as if it had come alone, and gets its
    /// own verdict (in order). When every message is refused by a rate limit the answer is 429,
    /// as it would have been for each of them.
    pub(super) async fn admit_batch(
        self,
        requests: &mut [McpRequest],
    ) -> Result<(Ctx, Vec<Verdict>), McpError> {
        let mut verdicts = Vec::with_capacity(requests.len());
        for request in requests {
            verdicts.push(self.ctx.verdict(Some(request)).await);
        }
        let rate_limited = |v: &Verdict| match v {
            Verdict::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        if verdicts.iter().all(|v| rate_limited(v).is_some()) {
            let secs = verdicts.iter().filter_map(rate_limited).max().unwrap_or(1);
            return Err(McpError::RateLimited {
                retry_after_secs: secs,
            });
        }
        Ok((self.ctx, verdicts))
    }
}

/// A notification stream of the caller (a session's GET stream, `subscriptions/listen`): a slot
/// among the caller's `dataplane.max_streams_per_subject` on this replica, held by the response
/// ([`StreamSlot::held_by`]), or 429 when the caller holds them all.
pub(super) fn open_stream(ctx: &Ctx) -> Result<StreamSlot, McpError> {
    let streams = &ctx.state.streams;
    streams
        .acquire(ctx.org.snapshot.org_id, &ctx.principal.subject)
        .ok_or_else(|| {
            metrics::counter!("gatehouse_dataplane_streams_refused_total").increment(1);
            McpError::TooManyStreams { max: streams.max() }
        })
}

/// The rate-limit key of one tool at one endpoint.
fn tool_limit_key(ctx: &Ctx, tool: &str) -> String {
    format!("rl:tool:{}:{}:{tool}", ctx.org.snapshot.org_id, ctx.endpoint.id())
}

impl Ctx {
    /// Resolves the tool a `tools/call` names (the one time it is looked up), then counts one
    /// message (or a request without one) against the org's and the caller's limits and, for a
    /// `tools/call` of a tool with a limit of its own that the caller may call, against that one
    /// too: one check, all or nothing (one Redis round trip), so a message one limit refuses uses
    /// none of the others' budget. Then, for a billable request, the quota. Every refusal is
    /// recorded.
    async fn verdict(&self, mut request: Option<&mut McpRequest>) -> Verdict {
        if let Some(called) = request.as_deref_mut().and_then(|r| r.tool.as_mut()) {
            called.found = self.endpoint.tool_index(&called.name);
            called.callable = called
                .definition(&self.endpoint)
                .is_some_and(|t| self.may_call(t));
        }
        let request = request.map(|r| &*r);
        let limits = &self.endpoint.snapshot.rate_limits;
        let org_key = format!("rl:org:{}", self.org.snapshot.org_id);
        let subject_key = format!(
            "rl:sub:{}:{}:{}",
            self.org.snapshot.org_id,
            self.endpoint.id(),
            self.principal.subject
        );
        let method = request.map_or("", |r| r.method.as_str());
        let called = request.and_then(|r| r.tool.as_ref());
        let named_tool = called.map(|t| t.name.as_str());
        // Only a tool the caller may call: one it may not must not use up the tool's budget,
        // which every caller shares.
        let tool = called
            .filter(|t| t.callable)
            .and_then(|t| Some((t.name.as_str(), *limits.per_tool.get(&t.name)?)));
        let tool_key = tool.map(|(name, _)| tool_limit_key(self, name));
        let checks: Vec<(&str, Limit)> = [
            (org_key.as_str(), limits.per_org),
            (subject_key.as_str(), limits.per_subject),
            (tool_key.as_deref().unwrap_or(""), tool.map(|(_, limit)| limit)),
        ]
        .into_iter()
        .filter_map(|(key, limit)| Some((key, limit?)))
        .collect();
        let decision = self.state.limiter.check_all(&checks).await;
        if !decision.allowed {
            let secs = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let verdict = Verdict::RateLimited {
                retry_after_secs: secs,
            };
            if let Some(refusal) = verdict.refusal() {
                refusal.finish(self.record(method, named_tool, None, None, 0));
            }
            return verdict;
        }
        let is_request = request.is_some_and(|r| r.kind() == Kind::Request);
        if is_request
            && gatehouse_events::is_billable(method)
            && self.state.quota.is_over(self.org.snapshot.org_id)
        {
            let server = called
                .and_then(|t| t.callable(&self.endpoint))
                .and_then(|t| match &t.target {
                    ToolTarget::Upstream { server_id, .. } => Some(*server_id),
                    ToolTarget::Sql(_) => None,
                });
            let arguments = request
                .and_then(|r| r.message.params())
                .and_then(|p| p.get("arguments"));
            McpError::OverQuota.finish(self.record(method, named_tool, server, arguments, 0));
            return Verdict::OverQuota;
        }
        Verdict::Admitted
    }
}

/// Origin/Host, configuration, endpoint, token and base scope; the rate limits are counted by
/// [`Unadmitted::admit`].
pub(super) async fn establish(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    org_slug: &str,
    endpoint_slug: &str,
) -> Result<Unadmitted, McpError> {
    state
        .origins
        .check(
            req.headers().get("origin").map(|v| v.as_bytes()),
            req.headers().get("host").map(|v| v.as_bytes()),
        )
        .map_err(|problem| McpError::OriginRefused(problem.to_string()))?;
    if !state.store.is_loaded() {
        return Err(McpError::NotReady);
    }
    let (mut org, mut endpoint) = state
        .refresher
        .endpoint(org_slug, endpoint_slug)
        .await
        .ok_or(McpError::EndpointNotFound)?;
    if org.snapshot.suspended {
        return Err(McpError::OrgSuspended);
    }
    tracing::Span::current().record("org_id", tracing::field::display(org.snapshot.org_id));
    let metadata_url = resource::metadata_url(&state.public_url, org_slug, endpoint_slug);
    let token = auth::bearer(req.headers().get("authorization").and_then(|v| v.to_str().ok()));
    let bearer = token.as_ref().ok().copied();
    let mut principal = match token {
        Ok(token) => state.verifier.authenticate(token, &org, &endpoint).await,
        Err(e) => Err(e),
    };
    // A service token created since the snapshot was taken: fetch the org's and look again.
    if let Some(token) = bearer
        && matches!(principal, Err(TokenError::UnknownServiceToken))
        && let Some(fresh) = state
            .refresher
            .refreshed(org.snapshot.org_id, endpoint_slug)
            .await
    {
        (org, endpoint) = fresh;
        if org.snapshot.suspended {
            return Err(McpError::OrgSuspended);
        }
        principal = state.verifier.authenticate(token, &org, &endpoint).await;
    }
    let principal = principal.map_err(|e| {
        let description = e.description();
        metrics::counter!("gatehouse_dataplane_unauthenticated_total").increment(1);
        McpError::Unauthorized {
            description: description.unwrap_or("a bearer token is required").to_owned(),
            challenge: resource::challenge(&metadata_url, &endpoint, description),
        }
    })?;
    let site = CallSite {
        org: org.snapshot.org_id,
        endpoint: endpoint.id(),
        principal: Some(principal.clone()),
        ip: gatehouse_http::client_ip(req),
        user_agent: req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        source: state.source.clone(),
        log_arguments: org.snapshot.log_tool_arguments,
    };
    let ctx = Ctx {
        state: state.clone(),
        org,
        endpoint,
        principal,
        site,
        metadata_url,
    };
    // A token whose scopes grant nothing here gets a step-up challenge naming what would.
    if !ctx.endpoint.scopes_supported.is_empty()
        && !ctx
            .endpoint
            .scopes_supported
            .iter()
            .any(|s| ctx.principal.scopes.contains(s))
    {
        let refusal = McpError::InsufficientScope {
            message: "Forbidden: insufficient scope".to_owned(),
            challenge: resource::insufficient_scope(
                &ctx.metadata_url,
                &ctx.endpoint,
                &ctx.endpoint.scopes_supported,
                "the token grants nothing at this endpoint",
            ),
        };
        refusal.finish(ctx.record("", None, None, None, 0));
        return Err(refusal);
    }
    Ok(Unadmitted { ctx })
}
