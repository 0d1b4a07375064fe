//! Admission: what is established about a request before its body is acted on. The per-request
//! context ([`Ctx`]), `establish` (Origin/Host, configuration loaded, endpoint, bearer token, base
//! scope) and [`Unadmitted::admit`], which counts the request against the endpoint's rate limits
//! (and a single `tools/call` against its tool's) and is the only way to a [`Ctx`].

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::{EndpointTool, Limit};
use gatehouse_events::CallOutcome;

use crate::auth::{self, Principal, TokenError};
use crate::events::{CallRecord, CallSite};
use crate::jsonrpc;
use crate::resource;
use crate::state::AppState;
use crate::store::{EndpointState, OrgState, ServerState};
use crate::upstream::Caller;

use super::{header_str, rpc_error};

/// Everything established about a request before its body is looked at.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) state: web::Data<AppState>,
    pub(super) org: Arc<OrgState>,
    pub(super) endpoint: Arc<EndpointState>,
    pub(super) principal: Arc<Principal>,
    pub(super) site: CallSite,
    pub(super) metadata_url: String,
    /// The tool whose own rate limit this request was already counted against, with the
    /// endpoint's limits, at admission ([`Unadmitted::admit`]).
    pub(super) tool_limit_counted: Option<String>,
}

/// A request whose caller is established but which is not yet counted against the endpoint's rate
/// limits. Its [`Ctx`] is reached only through [`Unadmitted::admit`]: no handler can skip them.
pub(super) struct Unadmitted {
    ctx: Ctx,
}

impl Unadmitted {
    /// Counts the request against the org's and the caller's limits and, for a `tools/call` of a
    /// tool with a limit of its own (`tool`), against that one too: one check, all or nothing
    /// (one Redis round trip), so a request one limit refuses uses none of the others' budget.
    pub(super) async fn admit(self, tool: Option<&str>) -> Result<Ctx, HttpResponse> {
        let mut ctx = self.ctx;
        let limits = &ctx.endpoint.snapshot.rate_limits;
        let org_key = format!("rl:org:{}", ctx.org.snapshot.org_id);
        let subject_key = format!(
            "rl:sub:{}:{}:{}",
            ctx.org.snapshot.org_id,
            ctx.endpoint.id(),
            ctx.principal.subject
        );
        // Only a tool the caller may call: one it may not must not use up the tool's budget,
        // which every caller shares.
        let tool = tool
            .filter(|name| ctx.callable_tool(name).is_some())
            .and_then(|name| Some((name, *limits.per_tool.get(name)?)));
        let tool_key = tool.map(|(name, _)| tool_limit_key(&ctx, name));
        let checks: Vec<(&str, Limit)> = [
            (org_key.as_str(), limits.per_org),
            (subject_key.as_str(), limits.per_subject),
            (tool_key.as_deref().unwrap_or(""), tool.map(|(_, limit)| limit)),
        ]
        .into_iter()
        .filter_map(|(key, limit)| Some((key, limit?)))
        .collect();
        let (method, tool_name) = tool.map_or(("", None), |(name, _)| ("tools/call", Some(name)));
        check_limits(&ctx, &checks, method, tool_name).await?;
        ctx.tool_limit_counted = tool.map(|(name, _)| name.to_owned());
        Ok(ctx)
    }
}

/// The rate-limit key of one tool at one endpoint.
pub(super) fn tool_limit_key(ctx: &Ctx, tool: &str) -> String {
    format!("rl:tool:{}:{}:{tool}", ctx.org.snapshot.org_id, ctx.endpoint.id())
}

impl Ctx {
    pub(super) fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            org: self.org.snapshot.org_id,
            endpoint: self.endpoint.id(),
        }
    }

    /// The endpoint's tool `name` if the caller's scopes grant it and it is not withheld
    /// (its upstream definition drifted from the approved pin).
    pub(super) fn callable_tool(&self, name: &str) -> Option<&EndpointTool> {
        self.endpoint.tool(name).filter(|t| {
            self.endpoint.may_call(t.tool_id, &self.principal.scopes) && !self.state.pins.is_withheld(t)
        })
    }

    pub(super) fn server(&self, id: ServerId) -> Option<&Arc<ServerState>> {
        self.org.servers.get(&id)
    }

    /// The endpoint's upstream whose slug is `slug` (the prefix of namespaced names).
    pub(super) fn server_by_slug(&self, slug: &str) -> Option<ServerId> {
        self.endpoint
            .server_ids
            .iter()
            .find(|s| self.server(**s).is_some_and(|st| st.snapshot.slug == slug))
            .copied()
    }

    pub(super) fn record(
        &self,
        method: &str,
        tool: Option<&str>,
        server: Option<ServerId>,
        args: Option<&Value>,
        bytes_in: u64,
    ) -> CallRecord {
        CallRecord::start(
            &self.state.events,
            &self.site,
            method,
            tool,
            server,
            args,
            bytes_in,
        )
    }
}

/// Origin/Host, configuration, endpoint, token and base scope; the rate limits are counted by
/// [`Unadmitted::admit`].
pub(super) async fn establish(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    org_slug: &str,
    endpoint_slug: &str,
) -> Result<Unadmitted, HttpResponse> {
    if let Err(problem) = state.origins.check(
        req.headers().get("origin").map(|v| v.as_bytes()),
        req.headers().get("host").map(|v| v.as_bytes()),
    ) {
        return Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            jsonrpc::INVALID_REQUEST,
            &format!("Forbidden: {problem}"),
            None,
        ));
    }
    if !state.store.is_loaded() {
        return Err(resource::not_ready());
    }
    let not_found = || {
        rpc_error(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Found: no such endpoint",
            None,
        )
    };
    let org = state.store.org_by_slug(org_slug).ok_or_else(not_found)?;
    let endpoint = org.endpoint(endpoint_slug).cloned().ok_or_else(not_found)?;
    if org.snapshot.suspended {
        return Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            jsonrpc::SERVER_ERROR,
            "Forbidden: this organization is suspended; its endpoints refuse calls until the platform operator resumes it",
            Some(json!({"reason": "org_suspended"})),
        ));
    }
    tracing::Span::current().record("org_id", tracing::field::display(org.snapshot.org_id));
    let metadata_url = resource::metadata_url(&state.public_url, org_slug, endpoint_slug);
    let token = auth::bearer(header_str(req, "authorization"));
    let principal = match token {
        Ok(token) => state.verifier.authenticate(token, &org, &endpoint).await,
        Err(e) => Err(e),
    };
    let principal = principal.map_err(|e| {
        let description = match &e {
            TokenError::Missing => None,
            TokenError::Invalid(why) => Some(*why),
        };
        metrics::counter!("gatehouse_dataplane_unauthenticated_total").increment(1);
        HttpResponse::Unauthorized()
            .insert_header((
                "www-authenticate",
                resource::challenge(&metadata_url, &endpoint, description),
            ))
            .content_type("application/json")
            .body(
                serde_json::to_vec(&jsonrpc::error_body(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    &format!(
                        "Unauthorized: {}",
                        description.unwrap_or("a bearer token is required")
                    ),
                    None,
                ))
                .expect("json"),
            )
    })?;
    let site = CallSite {
        org: org.snapshot.org_id,
        endpoint: endpoint.id(),
        principal: Some(principal.clone()),
        ip: gatehouse_http::client_ip(req),
        user_agent: header_str(req, "user-agent").map(|s| s.chars().take(256).collect()),
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
        tool_limit_counted: None,
    };
    // A token whose scopes grant nothing here gets a step-up challenge naming what would.
    if !ctx.endpoint.scopes_supported.is_empty()
        && !ctx
            .endpoint
            .scopes_supported
            .iter()
            .any(|s| ctx.principal.scopes.contains(s))
    {
        ctx.record("", None, None, None, 0)
            .finish(CallOutcome::Denied, None);
        return Err(HttpResponse::Forbidden()
            .insert_header((
                "www-authenticate",
                resource::insufficient_scope(
                    &ctx.metadata_url,
                    &ctx.endpoint.scopes_supported,
                    "the token grants nothing at this endpoint",
                ),
            ))
            .content_type("application/json")
            .body(
                serde_json::to_vec(&jsonrpc::error_body(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "Forbidden: insufficient scope",
                    None,
                ))
                .expect("json"),
            ));
    }
    Ok(Unadmitted { ctx })
}

/// Counts the request against `checks` (all or nothing); when a limit refuses, records the
/// rejection and answers 429 with `Retry-After`.
pub(super) async fn check_limits(
    ctx: &Ctx,
    checks: &[(&str, Limit)],
    method: &str,
    tool: Option<&str>,
) -> Result<(), HttpResponse> {
    let decision = ctx.state.limiter.check_all(checks).await;
    if decision.allowed {
        return Ok(());
    }
    ctx.record(method, tool, None, None, 0)
        .finish(CallOutcome::RateLimited, None);
    let secs = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    Err(HttpResponse::TooManyRequests()
        .insert_header(("retry-after", secs.to_string()))
        .content_type("application/json")
        .body(
            serde_json::to_vec(&jsonrpc::error_body(
                None,
                jsonrpc::SERVER_ERROR,
                &format!("Rate limit exceeded; retry after {secs} s"),
                Some(json!({"retryAfterSeconds": secs})),
            ))
            .expect("json"),
        ))
}
