//! The MCP endpoint, `{public URL}/{org}/{endpoint}/mcp`: Streamable HTTP in both eras.
//!
//! - 2026-07-28 ("modern"): POST only, no sessions; `MCP-Protocol-Version` must equal the body's
//!   `_meta` version and the SEP-2243 headers must match the body.
//! - 2025-03-26 / 2025-06-18 / 2025-11-25 ("legacy"): `initialize` opens a session whose id is
//!   sealed by [`crate::session`]; GET opens the server-to-client stream, DELETE ends the session.
//!
//! Every request: Origin/Host check → configuration loaded → endpoint → bearer token → rate
//! limits → body → era checks → dispatch. Policy is decided on the body. Tool lists and
//! definitions come from the snapshot (approved pins only); calls, prompts and resources are
//! forwarded to the upstream that owns them with the server's own credential.
//!
//! Layout (private submodules; each file's `//!` line says what it holds):
//! - `mod.rs`: the `POST`/`GET`/`DELETE` handlers, the per-request context (`Ctx`) and
//!   `establish` (Origin/Host, endpoint, token, base scope, endpoint-wide rate limits);
//! - `modern`: the stateless 2026-07-28 path (header/body checks, answer or stream);
//! - `sessions`: legacy sessions (session lookup, `initialize`, notifications, batches);
//! - `dispatch`: a request to its handler by method, and what that produces (`Answer`);
//! - `aggregate`: requests answered across all upstreams (prompt/resource/task lists,
//!   `server/discover`), with `cursor`'s composite cursors when there are several;
//! - `calls`: `tools/call` and forwarding a request to the upstream that owns it;
//! - `relay`: upstream replies and streams back to the client as SSE, and the client's answers
//!   to server→client requests back to their upstream.
//!
//! With several upstreams (`EndpointState::server_ids`), what is not the endpoint's own is routed
//! to the upstream that owns it: tools and prompts by their `<server slug>__` prefix; resource
//! URIs, which are never rewritten, by who listed them (`resources`, over [`crate::owners`]);
//! task ids, namespaced like tools in both directions (`tasks`); `subscriptions/listen` goes to
//! every upstream and their streams are merged (`listen`). With one upstream, requests and
//! replies pass through as they are.

// Handlers answer with `HttpResponse` on the error path and `Answer` lives for one request:
// their size does not matter here.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

mod aggregate;
mod calls;
mod cursor;
mod dispatch;
mod listen;
mod modern;
mod relay;
mod resources;
mod sessions;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::{EndpointTool, Limit};
use gatehouse_events::CallOutcome;

use crate::auth::{self, Principal, TokenError};
use crate::events::{CallRecord, CallSite};
use crate::headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{self, Body, Kind, Message};
use crate::resource;
use crate::session::{EndedSessions, Session};
use crate::state::AppState;
use crate::store::{EndpointState, OrgState, ServerState};
use crate::upstream::{Caller, UpstreamError};

use self::dispatch::{Answer, Relay, dispatch};
use self::modern::modern;
use self::relay::{
    FrameStream, ListChangedHook, relay_events, relay_reply, route_client_response, sse_response,
};
use self::sessions::{batch, forward_notification, initialize, open_session};
use self::tasks::{namespace_events, namespaces_tasks};

/// The stateless revision and the session-based ones, newest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a 2026-07-28 response stream that is waiting on its upstream writes an SSE comment.
/// actix notices that a client has gone only when a write fails, and closing the response stream
/// is cancellation in that revision: the comment makes the departure visible within about two
/// intervals, and dropping the response then closes the upstream call.
const CANCELLATION_PROBE: Duration = Duration::from_secs(1);

fn all_versions() -> Vec<&'static str> {
    MODERN_VERSIONS.iter().chain(LEGACY_VERSIONS).copied().collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Modern,
    Legacy,
}

/// What every handler of one incoming JSON-RPC request needs besides the message: the HTTP
/// request it came in, the endpoint's context, its era and (2025 era) its session.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    http: &'a HttpRequest,
    ctx: &'a Ctx,
    era: Era,
    session: Option<&'a Session>,
}

impl<'a> Incoming<'a> {
    fn legacy(http: &'a HttpRequest, ctx: &'a Ctx, session: &'a Session) -> Self {
        Self {
            http,
            ctx,
            era: Era::Legacy,
            session: Some(session),
        }
    }

    fn modern(http: &'a HttpRequest, ctx: &'a Ctx) -> Self {
        Self {
            http,
            ctx,
            era: Era::Modern,
            session: None,
        }
    }
}

/// Everything established about a request before its body is looked at.
#[derive(Clone)]
struct Ctx {
    state: web::Data<AppState>,
    org: Arc<OrgState>,
    endpoint: Arc<EndpointState>,
    principal: Arc<Principal>,
    site: CallSite,
    metadata_url: String,
    /// The tool whose own rate limit this request was already counted against, with the
    /// endpoint's limits, at admission ([`Unadmitted::admit`]).
    tool_limit_counted: Option<String>,
}

/// A request whose caller is established but which is not yet counted against the endpoint's rate
/// limits. Its [`Ctx`] is reached only through [`Unadmitted::admit`]: no handler can skip them.
struct Unadmitted {
    ctx: Ctx,
}

impl Unadmitted {
    /// Counts the request against the org's and the caller's limits and, for a `tools/call` of a
    /// tool with a limit of its own (`tool`), against that one too: one check, all or nothing
    /// (one Redis round trip), so a request one limit refuses uses none of the others' budget.
    async fn admit(self, tool: Option<&str>) -> Result<Ctx, HttpResponse> {
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
        match tool {
            Some((name, _)) => check_limits(&ctx, &checks, "tools/call", Some(name)).await?,
            None => check_limits(&ctx, &checks, "", None).await?,
        }
        ctx.tool_limit_counted = tool.map(|(name, _)| name.to_owned());
        Ok(ctx)
    }
}

/// The rate-limit key of one tool at one endpoint.
fn tool_limit_key(ctx: &Ctx, tool: &str) -> String {
    format!("rl:tool:{}:{}:{tool}", ctx.org.snapshot.org_id, ctx.endpoint.id())
}

impl Ctx {
    fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            org: self.org.snapshot.org_id,
            endpoint: self.endpoint.id(),
        }
    }

    /// The endpoint's tool `name` if the caller's scopes grant it and it is not withheld
    /// (its upstream definition drifted from the approved pin).
    fn callable_tool(&self, name: &str) -> Option<&EndpointTool> {
        self.endpoint.tool(name).filter(|t| {
            self.endpoint.may_call(t.tool_id, &self.principal.scopes) && !self.state.pins.is_withheld(t)
        })
    }

    fn server(&self, id: ServerId) -> Option<&Arc<ServerState>> {
        self.org.servers.get(&id)
    }

    /// The endpoint's upstream whose slug is `slug` (the prefix of namespaced names).
    fn server_by_slug(&self, slug: &str) -> Option<ServerId> {
        self.endpoint
            .server_ids
            .iter()
            .find(|s| self.server(**s).is_some_and(|st| st.snapshot.slug == slug))
            .copied()
    }

    fn record(
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

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::to_vec(body).expect("json"))
}

fn rpc_error(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> HttpResponse {
    json_response(status, &jsonrpc::error_body(id, code, message, data))
}

fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("allow", "POST"))
        .content_type("application/json")
        .body(
            serde_json::to_vec(&jsonrpc::error_body(
                None,
                jsonrpc::INVALID_REQUEST,
                "Method Not Allowed",
                None,
            ))
            .expect("json"),
        )
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Origin/Host, configuration, endpoint, token and base scope; the rate limits are counted by
/// [`Unadmitted::admit`].
async fn establish(
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
async fn check_limits(
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

fn accepts_both(req: &HttpRequest) -> bool {
    let mut json = false;
    let mut sse = false;
    for value in req.headers().get_all("accept") {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let essence = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let zero = pieces.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            if zero {
                continue;
            }
            json |= essence == "application/json" || essence == "*/*" || essence == "application/*";
            sse |= essence == "text/event-stream" || essence == "*/*" || essence == "text/*";
        }
    }
    json && sse
}

/// `POST /{org}/{endpoint}/mcp`.
pub async fn post(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (org_slug, endpoint_slug) = path.into_inner();
    let unadmitted = match establish(&req, &state, &org_slug, &endpoint_slug).await {
        Ok(unadmitted) => unadmitted,
        Err(response) => return response,
    };
    // Parsed before admission so that a single `tools/call` is counted against its tool's own
    // limit in the same check; every request is counted before any of it is answered.
    let parsed = jsonrpc::parse_body(&body, state.max_json_depth);
    let tool = match &parsed {
        Ok(Body::Single(m)) if m.kind == Kind::Request && m.method() == "tools/call" => m.param_str("name"),
        _ => None,
    };
    let ctx = match unadmitted.admit(tool).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let content_type_ok = header_str(&req, "content-type")
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !content_type_ok {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            jsonrpc::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
            None,
        );
    }
    if !accepts_both(&req) {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Acceptable: the client must accept both application/json and text/event-stream",
            None,
        );
    }
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, None, e.code, &e.message, None),
    };
    let bytes_in = body.len() as u64;
    match parsed {
        Body::Batch(messages) => batch(&req, &ctx, messages, bytes_in).await,
        Body::Single(message) => single(&req, &ctx, message, bytes_in).await,
    }
}

/// Whether this message is handled statelessly (2026-07-28).
fn is_modern(req: &HttpRequest, message: &Message) -> bool {
    if message.has_meta_protocol_version_key() {
        return true;
    }
    if message.kind == Kind::Request && message.method() == "initialize" {
        return false;
    }
    let header_modern = header_str(req, MCP_PROTOCOL_VERSION).is_some_and(|v| v >= MODERN_VERSIONS[0]);
    if header_modern {
        return true;
    }
    message.kind == Kind::Request
        && message.method() == "server/discover"
        && req.headers().get(MCP_SESSION_ID).is_none()
}

async fn single(req: &HttpRequest, ctx: &Ctx, message: Message, bytes_in: u64) -> HttpResponse {
    if is_modern(req, &message) {
        return modern(req, ctx, message, bytes_in).await;
    }
    if message.kind == Kind::Request && message.method() == "initialize" {
        return initialize(req, ctx, message).await;
    }
    let session = match open_session(req, ctx) {
        Ok(s) => s,
        Err(response) => return response,
    };
    if let Some(version) = req.headers().get(MCP_PROTOCOL_VERSION) {
        let known = version.to_str().ok().is_some_and(|v| all_versions().contains(&v));
        if !known {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                message.id(),
                jsonrpc::INVALID_REQUEST,
                "Bad Request: unsupported MCP-Protocol-Version",
                Some(json!({"supported": all_versions()})),
            );
        }
    }
    match message.kind {
        Kind::Request => {
            let id = message.id().cloned();
            match dispatch(Incoming::legacy(req, ctx, &session), message, bytes_in).await {
                Answer::Http(r) => r,
                Answer::Value(v) => json_response(StatusCode::OK, &v),
                Answer::Upstream { reply, relay } => relay_reply(ctx, reply, relay, id),
            }
        }
        Kind::Notification => {
            forward_notification(ctx, &session, &message).await;
            HttpResponse::Accepted().finish()
        }
        Kind::Response => route_client_response(ctx, &session, message).await,
    }
}

/// GET and DELETE exist only for sessions of the 2025 protocol versions: authenticates the caller
/// for the endpoint, and answers 405 to a 2026-07-28 request or one without a session id.
async fn establish_legacy_session_request(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<Ctx, HttpResponse> {
    let (org_slug, endpoint_slug) = path.into_inner();
    let ctx = establish(req, state, &org_slug, &endpoint_slug)
        .await?
        .admit(None)
        .await?;
    let modern_header = header_str(req, MCP_PROTOCOL_VERSION).is_some_and(|v| v >= MODERN_VERSIONS[0]);
    if modern_header || req.headers().get(MCP_SESSION_ID).is_none() {
        return Err(method_not_allowed());
    }
    Ok(ctx)
}

/// `GET /{org}/{endpoint}/mcp`: the session's server→client stream (legacy only).
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let ctx = match establish_legacy_session_request(&req, &state, path).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let accepts_sse = req
        .headers()
        .get_all("accept")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"));
    if !accepts_sse {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Acceptable: the client must accept text/event-stream",
            None,
        );
    }
    let session = match open_session(&req, &ctx) {
        Ok(s) => s,
        Err(response) => return response,
    };
    // A resume names the upstream whose stream it continues.
    let resume = header_str(&req, headers::LAST_EVENT_ID).and_then(|id| {
        let (index, orig) = id.split_once('.')?;
        Some((index.parse::<usize>().ok()?, orig.to_owned()))
    });
    let mut streams = Vec::new();
    for (index, upstream) in session.upstreams.iter().enumerate() {
        let last_event_id = match &resume {
            Some((i, orig)) if *i == index && !orig.is_empty() => Some(orig.as_str()),
            Some(_) => None,
            None => None,
        };
        let Some(server) = ctx.server(upstream.server).cloned() else {
            continue;
        };
        match state
            .upstreams
            .get_stream(
                &server,
                &upstream.version,
                upstream.session_id.as_deref(),
                last_event_id,
                Some(ctx.caller()),
            )
            .await
        {
            Ok(Some(events)) => {
                // Task status notifications name their upstream's tasks.
                let events = if namespaces_tasks(&ctx) {
                    namespace_events(events, server.snapshot.slug.as_str().into())
                } else {
                    events
                };
                let relay = Relay {
                    era: Era::Legacy,
                    index,
                    server: upstream.server,
                    record: None,
                };
                let hook = ListChangedHook {
                    pins: state.pins.clone(),
                    org: ctx.org.clone(),
                    server: upstream.server,
                };
                streams.push(relay_events(
                    events,
                    relay,
                    None,
                    Some(hook),
                    state.redactor.clone(),
                ));
            }
            Ok(None) => {}
            Err(UpstreamError::SessionGone) => {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "Not Found: session expired upstream; re-initialize",
                    None,
                );
            }
            Err(e) => tracing::warn!(server_id = %upstream.server, error = %e, "upstream GET stream failed"),
        }
    }
    if streams.is_empty() {
        return method_not_allowed();
    }
    let merged: FrameStream = Box::pin(futures::stream::select_all(streams));
    sse_response(merged, Some(KEEP_ALIVE))
}

/// `DELETE /{org}/{endpoint}/mcp`: ends the session upstream.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let ctx = match establish_legacy_session_request(&req, &state, path).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let session = match open_session(&req, &ctx) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let deletes = session.upstreams.iter().filter_map(|u| {
        let server = ctx.server(u.server)?.clone();
        let state = state.clone();
        Some(async move {
            if let Some(id) = &u.session_id {
                state.upstreams.delete_session(&server, &u.version, id).await;
            }
        })
    });
    futures::future::join_all(deletes).await;
    if let Some(id) = header_str(&req, MCP_SESSION_ID) {
        let key = EndedSessions::key(id);
        state.ended_sessions.insert(key);
        let expires_at = time::OffsetDateTime::now_utc().unix_timestamp() + crate::session::MAX_AGE_SECS;
        state.notifier.publish_session_end(key, expires_at).await;
    }
    HttpResponse::NoContent().finish()
}
