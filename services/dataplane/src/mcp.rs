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

// Handlers answer with `HttpResponse` on the error path and `Answer` lives for one request:
// their size does not matter here.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::{CapabilityGrant, Limit, ToolTarget};
use gatehouse_events::CallOutcome;

use crate::auth::{self, Principal, TokenError};
use crate::events::{CallRecord, CallSite, error_code_of};
use crate::headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, RawHeaders};
use crate::jsonrpc::{self, Body, Kind, Message};
use crate::resource;
use crate::session::{EndedSessions, Session, UpstreamSession};
use crate::state::AppState;
use crate::store::{EndpointState, OrgState, ServerState};
use crate::upstream::{Caller, Outbound, Reply, SseEvents, UpstreamError};

/// The stateless revision and the session-based ones, newest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const LATEST_LEGACY: &str = "2025-11-25";
/// A missing `MCP-Protocol-Version` on a session request means this revision.
const DEFAULT_LEGACY: &str = "2025-03-26";
const SSE_RETRY_MS: u64 = 3000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a 2026-07-28 response stream that is waiting on its upstream writes an SSE comment.
/// actix notices that a client has gone only when a write fails, and closing the response stream
/// is cancellation in that revision: the comment makes the departure visible within about two
/// intervals, and dropping the response then closes the upstream call.
const CANCELLATION_PROBE: Duration = Duration::from_secs(1);
const RESPONSE_ID_PREFIX: &str = "gh.";
/// Methods the stateless revision removed (SEP-2575): 404 with -32601.
const REMOVED_IN_MODERN: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

fn all_versions() -> Vec<&'static str> {
    MODERN_VERSIONS.iter().chain(LEGACY_VERSIONS).copied().collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Modern,
    Legacy,
}

/// Everything established about a request before its body is looked at.
#[derive(Clone)]
struct Ctx {
    state: web::Data<AppState>,
    org: Arc<OrgState>,
    endpoint: Arc<EndpointState>,
    principal: Principal,
    site: CallSite,
    metadata_url: String,
}

impl Ctx {
    fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            org: self.org.snapshot.org_id,
            endpoint: self.endpoint.id(),
        }
    }

    fn server(&self, id: ServerId) -> Option<&Arc<ServerState>> {
        self.org.servers.get(&id)
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

/// Origin/Host, configuration, endpoint, token, base scope and rate limits.
async fn establish(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    org_slug: &str,
    endpoint_slug: &str,
) -> Result<Ctx, HttpResponse> {
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
        ip: req.peer_addr().map(|a| a.ip()),
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
    let limits = &ctx.endpoint.snapshot.rate_limits;
    let org_key = format!("rl:org:{}", ctx.org.snapshot.org_id);
    let subject_key = format!(
        "rl:sub:{}:{}:{}",
        ctx.org.snapshot.org_id,
        ctx.endpoint.id(),
        ctx.principal.subject
    );
    for (key, limit) in [(org_key, limits.per_org), (subject_key, limits.per_subject)] {
        if let Some(limit) = limit {
            check_limit(&ctx, &key, limit, "", None).await?;
        }
    }
    Ok(ctx)
}

async fn check_limit(
    ctx: &Ctx,
    key: &str,
    limit: Limit,
    method: &str,
    tool: Option<&str>,
) -> Result<(), HttpResponse> {
    let decision = ctx.state.limiter.check(key, limit).await;
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

fn raw_headers(req: &HttpRequest) -> RawHeaders<'_> {
    req.headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect()
}

/// `POST /{org}/{endpoint}/mcp`.
pub async fn post(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (org_slug, endpoint_slug) = path.into_inner();
    let ctx = match establish(&req, &state, &org_slug, &endpoint_slug).await {
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
    let parsed = match jsonrpc::parse_body(&body, state.max_json_depth) {
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
            match dispatch(req, ctx, Era::Legacy, Some(&session), message, bytes_in).await {
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

/// The session named by `Mcp-Session-Id`: 400 when absent, 404 when unknown, expired or not the
/// caller's.
fn open_session(req: &HttpRequest, ctx: &Ctx) -> Result<Session, HttpResponse> {
    let Some(id) = header_str(req, MCP_SESSION_ID) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
            None,
        ));
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if ctx.state.ended_sessions.contains(id) {
        return Err(rpc_error(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Found: session not found",
            None,
        ));
    }
    match ctx.state.sessions.open(id, now) {
        Some(s)
            if s.org == ctx.org.snapshot.org_id
                && s.endpoint == ctx.endpoint.id()
                && s.subject == ctx.principal.subject =>
        {
            Ok(s)
        }
        _ => Err(rpc_error(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Found: session not found",
            None,
        )),
    }
}

async fn modern(req: &HttpRequest, ctx: &Ctx, message: Message, bytes_in: u64) -> HttpResponse {
    let id = message.id().cloned();
    let Some(header_version) = req.headers().get(MCP_PROTOCOL_VERSION) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.as_ref(),
            jsonrpc::HEADER_MISMATCH,
            "Header mismatch: the MCP-Protocol-Version header is required",
            None,
        );
    };
    let Ok(header_version) = header_version.to_str() else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.as_ref(),
            jsonrpc::HEADER_MISMATCH,
            "Header mismatch: MCP-Protocol-Version is not valid",
            None,
        );
    };
    if message.kind == Kind::Request {
        match message.meta_protocol_version() {
            None => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id.as_ref(),
                    jsonrpc::INVALID_PARAMS,
                    &format!(
                        "Invalid params: request _meta is missing or has malformed required fields: {}",
                        jsonrpc::META_PROTOCOL_VERSION
                    ),
                    None,
                );
            }
            Some(meta) if meta != header_version => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id.as_ref(),
                    jsonrpc::HEADER_MISMATCH,
                    &format!(
                        "Header mismatch: MCP-Protocol-Version header ({header_version}) does not match request _meta protocolVersion ({meta})"
                    ),
                    None,
                );
            }
            Some(_) => {}
        }
    }
    if !MODERN_VERSIONS.contains(&header_version) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.as_ref(),
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            &format!("Unsupported protocol version: {header_version}"),
            Some(json!({"supported": all_versions(), "requested": header_version})),
        );
    }
    if message.kind != Kind::Response {
        let tool_schema = (message.method() == "tools/call")
            .then(|| message.param_str("name"))
            .flatten()
            .and_then(|n| ctx.endpoint.tool(n))
            .and_then(|t| t.approved_definition.get("inputSchema"));
        if let Err(reason) =
            headers::validate_standard(&raw_headers(req), message.method(), message.params(), tool_schema)
        {
            metrics::counter!("gatehouse_dataplane_header_mismatch_total").increment(1);
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id.as_ref(),
                jsonrpc::HEADER_MISMATCH,
                &format!("Header mismatch: {reason}"),
                None,
            );
        }
    }
    match message.kind {
        // Without sessions a notification has nowhere to go; closing a stream cancels.
        Kind::Notification => HttpResponse::Accepted().finish(),
        Kind::Response => rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: a stateless server accepts no JSON-RPC responses",
            None,
        ),
        Kind::Request if REMOVED_IN_MODERN.contains(&message.method()) => rpc_error(
            StatusCode::NOT_FOUND,
            id.as_ref(),
            jsonrpc::METHOD_NOT_FOUND,
            &format!(
                "Method not found: {} does not exist in protocol version {header_version}",
                message.method()
            ),
            None,
        ),
        Kind::Request => {
            let (req, ctx) = (req.clone(), ctx.clone());
            let answering = Box::pin(async move {
                let answer = dispatch(&req, &ctx, Era::Modern, None, message, bytes_in).await;
                modern_answer(&ctx, answer, id)
            });
            respond_or_stream(answering).await
        }
    }
}

fn modern_answer(ctx: &Ctx, answer: Answer, id: Option<Value>) -> HttpResponse {
    match answer {
        Answer::Http(r) => r,
        // Protocol errors of the stateless revision carry their HTTP status.
        Answer::Value(v) => relay_json_error(&v),
        Answer::Upstream { reply, relay } => relay_reply(ctx, reply, relay, id),
    }
}

/// How long a 2026-07-28 request may take before its answer turns into a stream.
const ANSWER_AS_STREAM_AFTER: Duration = Duration::from_millis(500);

/// Answers as the request completes when it completes quickly (most calls: a plain JSON answer).
/// A slower request gets an SSE response at once, which writes a comment every
/// [`CANCELLATION_PROBE`] until the answer is ready and then carries it as an event. actix notices
/// that a client has gone only when a write fails; closing the response stream is cancellation in
/// this revision, and dropping the pending request closes its upstream call.
async fn respond_or_stream(
    mut answering: std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse>>>,
) -> HttpResponse {
    if let Ok(response) = tokio::time::timeout(ANSWER_AS_STREAM_AFTER, &mut answering).await {
        return response;
    }
    metrics::counter!("gatehouse_dataplane_answers_streamed_total").increment(1);
    let ticks = futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now(), CANCELLATION_PROBE),
        |mut interval| async move {
            interval.tick().await;
            Some((
                Ok(Bytes::from_static(b": waiting for the upstream\n\n")),
                interval,
            ))
        },
    );
    // Comments until the answer is ready, then the answer as SSE frames.
    let waiting = futures::stream::select(
        ticks.map(futures::future::Either::Left),
        futures::stream::once(answering).map(futures::future::Either::Right),
    )
    .take_while({
        let mut done = false;
        move |item| {
            let go = !done;
            if matches!(item, futures::future::Either::Right(_)) {
                done = true;
            }
            futures::future::ready(go)
        }
    });
    let frames = waiting.flat_map(|item| -> FrameStream {
        match item {
            futures::future::Either::Left(comment) => {
                Box::pin(futures::stream::once(futures::future::ready(comment)))
            }
            futures::future::Either::Right(response) => response_as_frames(response),
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(frames)
}

/// The body of a finished response as SSE frames: an SSE body is passed on as it is, a JSON body
/// becomes one event; anything else (no JSON-RPC message to carry) becomes nothing.
fn response_as_frames(response: HttpResponse) -> FrameStream {
    use actix_web::body::MessageBody;
    let is_stream = response
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut body = Box::pin(response.into_body());
    if is_stream {
        return Box::pin(futures::stream::poll_fn(move |cx| {
            body.as_mut().poll_next(cx).map(|chunk| {
                chunk.map(|r| r.map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string())))
            })
        }));
    }
    Box::pin(futures::stream::once(async move {
        let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
        if bytes.is_empty() || serde_json::from_slice::<Value>(&bytes).is_err() {
            return Ok(Bytes::new());
        }
        Ok(Bytes::from(frame(None, None, &String::from_utf8_lossy(&bytes))))
    }))
}

/// What a request dispatch produced.
enum Answer {
    Http(HttpResponse),
    Value(Value),
    Upstream { reply: Reply, relay: Relay },
}

/// How to relay an upstream stream back.
struct Relay {
    era: Era,
    /// Index of the upstream in the session (legacy), for event and request ids.
    index: usize,
    server: ServerId,
    record: Option<CallRecord>,
}

fn result_value(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn modern_list_fields(era: Era, result: &mut Map<String, Value>) {
    if era == Era::Modern {
        result.insert("resultType".into(), json!("complete"));
        result.insert("ttlMs".into(), json!(0));
        result.insert("cacheScope".into(), json!("private"));
    }
}

fn unknown_tool(id: &Value, name: &str) -> Answer {
    Answer::Value(jsonrpc::error_body(
        Some(id),
        jsonrpc::INVALID_PARAMS,
        &format!("Unknown tool: {name}"),
        None,
    ))
}

/// Whether a grant lets the caller use a capability: `None` = not exposed at all.
fn grant_allows(grant: &Option<CapabilityGrant>, principal: &Principal) -> Option<Result<(), String>> {
    let grant = grant.as_ref()?;
    Some(match &grant.scope {
        None => Ok(()),
        Some(scope) if principal.scopes.contains(scope) => Ok(()),
        Some(scope) => Err(scope.clone()),
    })
}

async fn dispatch(
    req: &HttpRequest,
    ctx: &Ctx,
    era: Era,
    session: Option<&Session>,
    mut message: Message,
    bytes_in: u64,
) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let method = message.method().to_owned();
    match method.as_str() {
        "ping" => Answer::Value(result_value(&id, json!({}))),
        "tools/list" => {
            let servers = ctx.endpoint.server_ids.clone();
            ctx.state.pins.refresh(&ctx.org, &servers).await;
            let tools: Vec<Value> = ctx
                .endpoint
                .snapshot
                .tools
                .iter()
                .filter(|t| ctx.endpoint.may_call(t.tool_id, &ctx.principal.scopes))
                .filter(|t| !ctx.state.pins.is_withheld(t))
                .map(|t| {
                    let mut definition = t.approved_definition.clone();
                    if let Some(obj) = definition.as_object_mut() {
                        obj.insert("name".into(), Value::String(t.exposed_name.clone()));
                    }
                    definition
                })
                .collect();
            let mut result = Map::new();
            result.insert("tools".into(), Value::Array(tools));
            modern_list_fields(era, &mut result);
            Answer::Value(result_value(&id, Value::Object(result)))
        }
        "tools/call" => call_tool(req, ctx, era, session, message, bytes_in).await,
        "prompts/list" | "resources/list" | "resources/templates/list" => {
            let grant = if method.starts_with("prompts") {
                &ctx.endpoint.snapshot.prompts
            } else {
                &ctx.endpoint.snapshot.resources
            };
            let key = match method.as_str() {
                "prompts/list" => "prompts",
                "resources/list" => "resources",
                _ => "resourceTemplates",
            };
            match grant_allows(grant, &ctx.principal) {
                None => Answer::Value(jsonrpc::error_body(
                    Some(&id),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("Method not found: {method}"),
                    None,
                )),
                Some(Err(_)) => {
                    let mut result = Map::new();
                    result.insert(key.into(), json!([]));
                    modern_list_fields(era, &mut result);
                    Answer::Value(result_value(&id, Value::Object(result)))
                }
                Some(Ok(())) => aggregate_list(ctx, era, session, &message, key).await,
            }
        }
        "prompts/get"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete" => {
            let grant = match method.as_str() {
                "prompts/get" => &ctx.endpoint.snapshot.prompts,
                "completion/complete" => {
                    let is_prompt = message
                        .params()
                        .and_then(|p| p.get("ref"))
                        .and_then(|r| r.get("type"))
                        .and_then(Value::as_str)
                        == Some("ref/prompt");
                    if is_prompt {
                        &ctx.endpoint.snapshot.prompts
                    } else {
                        &ctx.endpoint.snapshot.resources
                    }
                }
                _ => &ctx.endpoint.snapshot.resources,
            };
            match grant_allows(grant, &ctx.principal) {
                None => Answer::Value(jsonrpc::error_body(
                    Some(&id),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("Method not found: {method}"),
                    None,
                )),
                Some(Err(scope)) => {
                    ctx.record(
                        &method,
                        message.param_str("name").or(message.param_str("uri")),
                        None,
                        None,
                        bytes_in,
                    )
                    .finish(CallOutcome::Denied, None);
                    Answer::Http(
                        HttpResponse::Forbidden()
                            .insert_header((
                                "www-authenticate",
                                resource::insufficient_scope(
                                    &ctx.metadata_url,
                                    std::slice::from_ref(&scope),
                                    &format!("{method} requires scope {scope}"),
                                ),
                            ))
                            .content_type("application/json")
                            .body(
                                serde_json::to_vec(&jsonrpc::error_body(
                                    Some(&id),
                                    jsonrpc::INVALID_REQUEST,
                                    &format!("Forbidden: insufficient scope ({scope} required)"),
                                    None,
                                ))
                                .expect("json"),
                            ),
                    )
                }
                Some(Ok(())) => {
                    let name = message
                        .param_str("name")
                        .or(message.param_str("uri"))
                        .map(str::to_owned);
                    let target = route_named(ctx, &mut message);
                    let record = ctx.record(&method, name.as_deref(), target, None, bytes_in);
                    forward_request(req, ctx, era, session, message, target, Some(record)).await
                }
            }
        }
        "logging/setLevel" => {
            if let Some(session) = session {
                let servers: Vec<(usize, &UpstreamSession)> = session.upstreams.iter().enumerate().collect();
                let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
                let id = &id;
                let sends = servers.into_iter().filter_map(|(_, u)| {
                    let server = ctx.server(u.server)?.clone();
                    let body = body.clone();
                    Some(async move {
                        let out = Outbound {
                            server: &server,
                            body,
                            protocol_version: Some(&u.version),
                            session_id: u.session_id.as_deref(),
                            mcp_headers: vec![],
                            caller: Some(ctx.caller()),
                        };
                        let _ = ctx.state.upstreams.request(out, id).await;
                    })
                });
                futures::future::join_all(sends).await;
            }
            Answer::Value(result_value(&id, json!({})))
        }
        "server/discover" => discover(req, ctx, message).await,
        _ => {
            // Everything else (tasks, subscriptions, extensions) goes to the endpoint's only
            // upstream; with several there is no way to know whose it is.
            if ctx.endpoint.server_ids.len() == 1 {
                let target = ctx.endpoint.server_ids[0];
                let record = ctx.record(&method, None, Some(target), None, bytes_in);
                forward_request(req, ctx, era, session, message, Some(target), Some(record)).await
            } else {
                Answer::Value(jsonrpc::error_body(
                    Some(&id),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("Method not found: {method}"),
                    None,
                ))
            }
        }
    }
}

/// The server a prompt/resource request goes to. With several servers, prompts are namespaced
/// like tools (`<server slug>__<name>`; the prefix is removed here) and resources go to the first.
fn route_named(ctx: &Ctx, message: &mut Message) -> Option<ServerId> {
    let servers = &ctx.endpoint.server_ids;
    if servers.len() <= 1 {
        return servers.first().copied();
    }
    let method = message.method().to_owned();
    let is_prompt_ref = method == "completion/complete"
        && message
            .params()
            .and_then(|p| p.get("ref"))
            .and_then(|r| r.get("type"))
            .and_then(Value::as_str)
            == Some("ref/prompt");
    if method == "prompts/get" || is_prompt_ref {
        let name = if method == "prompts/get" {
            message.param_str("name").map(str::to_owned)
        } else {
            message
                .params()
                .and_then(|p| p.get("ref"))
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }?;
        let (slug, rest) = name.split_once(gatehouse_core::snapshot::TOOL_NAMESPACE_SEPARATOR)?;
        let server = servers
            .iter()
            .find(|s| ctx.server(**s).is_some_and(|st| st.snapshot.slug == slug))
            .copied()?;
        let params = message.params_mut()?;
        if method == "prompts/get" {
            params.insert("name".into(), json!(rest));
        } else if let Some(r) = params.get_mut("ref").and_then(Value::as_object_mut) {
            r.insert("name".into(), json!(rest));
        }
        return Some(server);
    }
    servers.first().copied()
}

/// `prompts/list`, `resources/list`, `resources/templates/list` across the endpoint's upstreams.
async fn aggregate_list(
    ctx: &Ctx,
    era: Era,
    session: Option<&Session>,
    message: &Message,
    key: &str,
) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let servers = ctx.endpoint.server_ids.clone();
    let namespaced = servers.len() > 1 && key == "prompts";
    let id_ref = &id;
    let calls = servers.iter().map(|server_id| {
        let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
        async move {
            let server = ctx.server(*server_id)?.clone();
            let (version, session_id) = upstream_session(era, session, *server_id, message)?;
            let out = Outbound {
                server: &server,
                body,
                protocol_version: Some(&version),
                session_id: session_id.as_deref(),
                mcp_headers: mcp_headers_for(era, message, None),
                caller: Some(ctx.caller()),
            };
            let (reply, _) = ctx.state.upstreams.request(out, id_ref).await.ok()?;
            let items = reply.get("result")?.get(key)?.as_array()?.clone();
            Some((server.snapshot.slug.clone(), items))
        }
    });
    let mut all = Vec::new();
    for (slug, items) in futures::future::join_all(calls).await.into_iter().flatten() {
        for mut item in items {
            if namespaced && let Some(name) = item.get("name").and_then(Value::as_str) {
                item["name"] = json!(gatehouse_core::snapshot::namespaced_tool_name(&slug, name));
            }
            all.push(item);
        }
    }
    let mut result = Map::new();
    result.insert(key.into(), Value::Array(all));
    modern_list_fields(era, &mut result);
    Answer::Value(result_value(&id, Value::Object(result)))
}

/// The protocol version and upstream session to use with `server` for this request.
fn upstream_session(
    era: Era,
    session: Option<&Session>,
    server: ServerId,
    message: &Message,
) -> Option<(String, Option<String>)> {
    match era {
        Era::Modern => Some((
            message
                .meta_protocol_version()
                .unwrap_or(MODERN_VERSIONS[0])
                .to_owned(),
            None,
        )),
        Era::Legacy => {
            let s = session?;
            let u = s.upstreams.iter().find(|u| u.server == server)?;
            Some((u.version.clone(), u.session_id.clone()))
        }
    }
}

/// The SEP-2243 headers for an upstream request (modern era): computed from the body we send,
/// plus the client's `Mcp-Param-*` headers (forwarded, validated before).
fn mcp_headers_for(era: Era, message: &Message, req: Option<&HttpRequest>) -> Vec<(HeaderName, HeaderValue)> {
    if era != Era::Modern {
        return vec![];
    }
    let mut out = Vec::new();
    if let Ok(v) = HeaderValue::from_str(&headers::encode_value(message.method())) {
        out.push((HeaderName::from_static("mcp-method"), v));
    }
    if let Some(name) = headers::expected_name(message.method(), message.params())
        && let Ok(v) = HeaderValue::from_str(&headers::encode_value(name))
    {
        out.push((HeaderName::from_static("mcp-name"), v));
    }
    if let Some(req) = req {
        for (name, value) in req.headers() {
            if name.as_str().starts_with(headers::MCP_PARAM_PREFIX)
                && let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_str().as_bytes()),
                    HeaderValue::from_bytes(value.as_bytes()),
                )
            {
                out.push((n, v));
            }
        }
    }
    out
}

async fn call_tool(
    req: &HttpRequest,
    ctx: &Ctx,
    era: Era,
    session: Option<&Session>,
    mut message: Message,
    bytes_in: u64,
) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let Some(name) = message.param_str("name").map(str::to_owned) else {
        return Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::INVALID_PARAMS,
            "Invalid params: tools/call requires a tool name",
            None,
        ));
    };
    let arguments = message.params().and_then(|p| p.get("arguments")).cloned();
    let tool = ctx.endpoint.tool(&name);
    let allowed = tool.filter(|t| {
        ctx.endpoint.may_call(t.tool_id, &ctx.principal.scopes) && !ctx.state.pins.is_withheld(t)
    });
    let Some(tool) = allowed else {
        // Unknown, not granted and withheld look the same: the caller learns nothing.
        let mut record = ctx.record("tools/call", Some(&name), None, arguments.as_ref(), bytes_in);
        record.set_outcome(CallOutcome::Denied, Some(jsonrpc::INVALID_PARAMS));
        drop(record);
        return unknown_tool(&id, &name);
    };
    let ToolTarget::Upstream {
        server_id,
        upstream_name,
    } = &tool.target
    else {
        let mut record = ctx.record("tools/call", Some(&name), None, arguments.as_ref(), bytes_in);
        record.set_outcome(CallOutcome::Error, Some(jsonrpc::INTERNAL_ERROR));
        drop(record);
        return Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::INTERNAL_ERROR,
            "This tool runs on a hosted SQL backend, which this dataplane does not serve yet",
            None,
        ));
    };
    if let Some(limit) = ctx.endpoint.snapshot.rate_limits.per_tool.get(&name) {
        let key = format!(
            "rl:tool:{}:{}:{}",
            ctx.org.snapshot.org_id,
            ctx.endpoint.id(),
            name
        );
        if let Err(response) = check_limit(ctx, &key, *limit, "tools/call", Some(&name)).await {
            return Answer::Http(response);
        }
    }
    if ctx.state.quota.is_over(ctx.org.snapshot.org_id) {
        let mut record = ctx.record(
            "tools/call",
            Some(&name),
            Some(*server_id),
            arguments.as_ref(),
            bytes_in,
        );
        record.set_outcome(CallOutcome::OverQuota, Some(jsonrpc::SERVER_ERROR));
        drop(record);
        return Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::SERVER_ERROR,
            "Quota exceeded: this organization has used its call allowance for the billing period",
            Some(json!({"reason": "quota_exceeded"})),
        ));
    }
    if let Some(params) = message.params_mut() {
        params.insert("name".into(), Value::String(upstream_name.clone()));
    }
    let record = ctx.record(
        "tools/call",
        Some(&name),
        Some(*server_id),
        arguments.as_ref(),
        bytes_in,
    );
    forward_request(req, ctx, era, session, message, Some(*server_id), Some(record)).await
}

/// Sends a request to `target` and hands back its reply for relaying.
async fn forward_request(
    req: &HttpRequest,
    ctx: &Ctx,
    era: Era,
    session: Option<&Session>,
    message: Message,
    target: Option<ServerId>,
    record: Option<CallRecord>,
) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let fail = |record: Option<CallRecord>, code: i64, text: &str| {
        if let Some(r) = record {
            r.finish(CallOutcome::Error, Some(code));
        }
        Answer::Value(jsonrpc::error_body(Some(&id), code, text, None))
    };
    let Some(server_id) = target else {
        return fail(
            record,
            jsonrpc::METHOD_NOT_FOUND,
            "Method not found: no upstream serves this request",
        );
    };
    let Some(server) = ctx.server(server_id).cloned() else {
        return fail(
            record,
            jsonrpc::INTERNAL_ERROR,
            "Upstream server is not configured",
        );
    };
    let Some((version, session_id)) = upstream_session(era, session, server_id, &message) else {
        return fail(
            record,
            jsonrpc::SERVER_ERROR,
            "Upstream unavailable for this session; re-initialize",
        );
    };
    let index = session
        .and_then(|s| s.upstreams.iter().position(|u| u.server == server_id))
        .unwrap_or(0);
    if era == Era::Modern || session.is_some() {
        ctx.state.pins.watch(ctx.org.snapshot.org_id, server_id);
    }
    let headers = mcp_headers_for(era, &message, Some(req));
    let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
    let out = Outbound {
        server: &server,
        body,
        protocol_version: Some(&version),
        session_id: session_id.as_deref(),
        mcp_headers: headers,
        caller: Some(ctx.caller()),
    };
    match ctx.state.upstreams.post(out).await {
        Ok(reply) => Answer::Upstream {
            reply,
            relay: Relay {
                era,
                index,
                server: server_id,
                record,
            },
        },
        Err(UpstreamError::SessionGone) => {
            if let Some(r) = record {
                r.finish(CallOutcome::Error, None);
            }
            Answer::Http(rpc_error(
                StatusCode::NOT_FOUND,
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                "Not Found: session expired upstream; re-initialize",
                None,
            ))
        }
        Err(e) => {
            tracing::warn!(server_id = %server_id, error = %e, "upstream request failed");
            fail(record, jsonrpc::SERVER_ERROR, "Upstream server unavailable")
        }
    }
}

/// `server/discover`: asked of every upstream; the first answer is the base, capabilities are
/// merged. An upstream's protocol error (e.g. unsupported version) is passed on as a 4xx.
async fn discover(req: &HttpRequest, ctx: &Ctx, message: Message) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let mut merged: Option<Value> = None;
    let mut first_error: Option<Answer> = None;
    for server_id in ctx.endpoint.server_ids.clone() {
        let Some(server) = ctx.server(server_id).cloned() else {
            continue;
        };
        let version = message
            .meta_protocol_version()
            .unwrap_or(MODERN_VERSIONS[0])
            .to_owned();
        let out = Outbound {
            server: &server,
            body: Bytes::from(serde_json::to_vec(&message.value).expect("json")),
            protocol_version: Some(&version),
            session_id: None,
            mcp_headers: mcp_headers_for(Era::Modern, &message, Some(req)),
            caller: Some(ctx.caller()),
        };
        match ctx.state.upstreams.post(out).await {
            Ok(Reply::Json { body, .. }) => {
                let Ok(value) = serde_json::from_slice::<Value>(&body) else {
                    continue;
                };
                if let Some(result) = value.get("result") {
                    merged = Some(match merged.take() {
                        None => result.clone(),
                        Some(mut base) => {
                            merge_capabilities(&mut base, result);
                            base
                        }
                    });
                } else if first_error.is_none() {
                    first_error = Some(Answer::Http(relay_json_error(&value)));
                }
            }
            Ok(Reply::Status { status, body, json })
                if (400..500).contains(&status) && first_error.is_none() =>
            {
                first_error = Some(Answer::Http(
                    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
                        .content_type(if json { "application/json" } else { "text/plain" })
                        .body(body),
                ));
            }
            Ok(Reply::Stream { mut events, .. }) => {
                while let Some(Ok(event)) = events.next().await {
                    let Some(value) = event
                        .data
                        .as_deref()
                        .and_then(|d| serde_json::from_str::<Value>(d).ok())
                    else {
                        continue;
                    };
                    if value.get("id") == Some(&id) {
                        if let Some(result) = value.get("result") {
                            merged = Some(match merged.take() {
                                None => result.clone(),
                                Some(mut base) => {
                                    merge_capabilities(&mut base, result);
                                    base
                                }
                            });
                        } else if first_error.is_none() {
                            first_error = Some(Answer::Http(relay_json_error(&value)));
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    match (merged, first_error) {
        (Some(mut result), _) => {
            filter_capabilities(ctx, &mut result);
            Answer::Value(result_value(&id, result))
        }
        (None, Some(error)) => error,
        (None, None) => Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::SERVER_ERROR,
            "Upstream servers unavailable",
            None,
        )),
    }
}

fn relay_json_error(value: &Value) -> HttpResponse {
    let code = value
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = match code {
        jsonrpc::UNSUPPORTED_PROTOCOL_VERSION | jsonrpc::HEADER_MISMATCH | -32021 => StatusCode::BAD_REQUEST,
        jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    };
    json_response(status, value)
}

fn merge_capabilities(base: &mut Value, other: &Value) {
    let (Some(base_caps), Some(other_caps)) = (
        base.get_mut("capabilities").and_then(Value::as_object_mut),
        other.get("capabilities").and_then(Value::as_object),
    ) else {
        return;
    };
    for (k, v) in other_caps {
        base_caps.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// Capabilities the endpoint does not expose are removed; tools are always there.
fn filter_capabilities(ctx: &Ctx, result: &mut Value) {
    if let Some(caps) = result.get_mut("capabilities").and_then(Value::as_object_mut) {
        if ctx.endpoint.snapshot.prompts.is_none() {
            caps.remove("prompts");
        }
        if ctx.endpoint.snapshot.resources.is_none() {
            caps.remove("resources");
        }
        if ctx.endpoint.snapshot.prompts.is_none() && ctx.endpoint.snapshot.resources.is_none() {
            caps.remove("completions");
        }
        caps.entry("tools")
            .or_insert_with(|| json!({"listChanged": true}));
    }
}

/// `initialize` (legacy): opens a session with every upstream of the endpoint and seals their
/// session ids into ours.
async fn initialize(req: &HttpRequest, ctx: &Ctx, message: Message) -> HttpResponse {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let requested = message
        .param_str("protocolVersion")
        .unwrap_or(LATEST_LEGACY)
        .to_owned();
    if let Some(header) = header_str(req, MCP_PROTOCOL_VERSION)
        && header != requested
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Some(&id),
            jsonrpc::INVALID_REQUEST,
            &format!(
                "Invalid Request: MCP-Protocol-Version header ({header}) does not match initialize params.protocolVersion ({requested})"
            ),
            None,
        );
    }
    if let Some(method) = req.headers().get(headers::MCP_METHOD)
        && method.as_bytes() != b"initialize"
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Some(&id),
            jsonrpc::HEADER_MISMATCH,
            "Header mismatch: Mcp-Method does not match body method `initialize`",
            None,
        );
    }
    let version = if LEGACY_VERSIONS.contains(&requested.as_str()) {
        requested.clone()
    } else {
        LATEST_LEGACY.to_owned()
    };
    let mut upstream_message = message.value.clone();
    upstream_message["params"]["protocolVersion"] = json!(version);
    let body = Bytes::from(serde_json::to_vec(&upstream_message).expect("json"));
    let inits = ctx.endpoint.server_ids.iter().map(|server_id| {
        let body = body.clone();
        let id = id.clone();
        let version = version.clone();
        async move {
            let server = ctx.server(*server_id)?.clone();
            let out = Outbound {
                server: &server,
                body,
                protocol_version: None,
                session_id: None,
                mcp_headers: vec![],
                caller: Some(ctx.caller()),
            };
            match ctx.state.upstreams.request(out, &id).await {
                Ok((reply, session_id)) => {
                    let result = reply.get("result")?.clone();
                    let negotiated = result
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .unwrap_or(&version)
                        .to_owned();
                    Some((
                        UpstreamSession {
                            server: *server_id,
                            session_id,
                            version: negotiated,
                        },
                        result,
                    ))
                }
                Err(e) => {
                    tracing::warn!(server_id = %server_id, error = %e, "upstream initialize failed");
                    None
                }
            }
        }
    });
    let results: Vec<_> = futures::future::join_all(inits)
        .await
        .into_iter()
        .flatten()
        .collect();
    if results.is_empty() && !ctx.endpoint.server_ids.is_empty() {
        return rpc_error(
            StatusCode::OK,
            Some(&id),
            jsonrpc::SERVER_ERROR,
            "Upstream servers unavailable",
            None,
        );
    }
    let mut merged = results
        .first()
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| json!({"capabilities": {}}));
    for (_, other) in results.iter().skip(1) {
        merge_capabilities(&mut merged, other);
    }
    if results.len() != 1 {
        merged["serverInfo"] = json!({"name": format!("gatehouse/{}/{}", ctx.org.snapshot.slug, ctx.endpoint.snapshot.slug), "title": ctx.endpoint.snapshot.name, "version": env!("CARGO_PKG_VERSION")});
        let instructions: Vec<&str> = results
            .iter()
            .filter_map(|(_, r)| r.get("instructions").and_then(Value::as_str))
            .collect();
        if instructions.is_empty() {
            if let Some(obj) = merged.as_object_mut() {
                obj.remove("instructions");
            }
        } else {
            merged["instructions"] = json!(instructions.join("\n\n"));
        }
    }
    merged["protocolVersion"] = json!(version);
    filter_capabilities(ctx, &mut merged);
    let session = Session {
        org: ctx.org.snapshot.org_id,
        endpoint: ctx.endpoint.id(),
        subject: ctx.principal.subject.clone(),
        version: version.clone(),
        upstreams: results.into_iter().map(|(u, _)| u).collect(),
        issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    for u in &session.upstreams {
        ctx.state.pins.watch(ctx.org.snapshot.org_id, u.server);
    }
    let sealed = ctx.state.sessions.seal(&session);
    HttpResponse::Ok()
        .insert_header(("mcp-session-id", sealed))
        .content_type("application/json")
        .body(serde_json::to_vec(&result_value(&id, merged)).expect("json"))
}

/// A client notification (legacy) goes to every upstream of the session.
async fn forward_notification(ctx: &Ctx, session: &Session, message: &Message) {
    let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
    let sends = session.upstreams.iter().filter_map(|u| {
        let server = ctx.server(u.server)?.clone();
        let body = body.clone();
        Some(async move {
            let _ = ctx
                .state
                .upstreams
                .post(Outbound {
                    server: &server,
                    body,
                    protocol_version: Some(&u.version),
                    session_id: u.session_id.as_deref(),
                    mcp_headers: vec![],
                    caller: Some(ctx.caller()),
                })
                .await;
        })
    });
    futures::future::join_all(sends).await;
}

/// Rewrites an upstream's server→client request id so the client's answer finds its way back to
/// the same upstream from any replica: `gh.<upstream index>.<base64url(original id JSON)>`.
fn rewrite_request_id(index: usize, id: &Value) -> Value {
    Value::String(format!(
        "{RESPONSE_ID_PREFIX}{index}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(id).expect("json"))
    ))
}

fn parse_rewritten_id(id: &Value) -> Option<(usize, Value)> {
    let rest = id.as_str()?.strip_prefix(RESPONSE_ID_PREFIX)?;
    let (index, encoded) = rest.split_once('.')?;
    let original = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    Some((index.parse().ok()?, original))
}

/// The client's answer to a server→client request (sampling, elicitation, roots).
async fn route_client_response(ctx: &Ctx, session: &Session, mut message: Message) -> HttpResponse {
    let Some((index, original)) = message.id().and_then(parse_rewritten_id) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: response to an unknown request",
            None,
        );
    };
    let Some(upstream) = session.upstreams.get(index) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: response to an unknown request",
            None,
        );
    };
    let Some(server) = ctx.server(upstream.server).cloned() else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Found: session not found",
            None,
        );
    };
    message.value["id"] = original;
    let out = Outbound {
        server: &server,
        body: Bytes::from(serde_json::to_vec(&message.value).expect("json")),
        protocol_version: Some(&upstream.version),
        session_id: upstream.session_id.as_deref(),
        mcp_headers: vec![],
        caller: Some(ctx.caller()),
    };
    match ctx.state.upstreams.post(out).await {
        Ok(_) => HttpResponse::Accepted().finish(),
        Err(UpstreamError::SessionGone) => rpc_error(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "Not Found: session expired upstream",
            None,
        ),
        Err(_) => rpc_error(
            StatusCode::BAD_GATEWAY,
            None,
            jsonrpc::SERVER_ERROR,
            "Upstream server unavailable",
            None,
        ),
    }
}

/// Sends an upstream reply to the client: JSON as it came, streams event by event.
fn relay_reply(ctx: &Ctx, reply: Reply, mut relay: Relay, request_id: Option<Value>) -> HttpResponse {
    match reply {
        Reply::Accepted => {
            if let Some(r) = relay.record.take() {
                r.finish(CallOutcome::Success, None);
            }
            HttpResponse::Accepted().finish()
        }
        Reply::Json { body, .. } => {
            if let Some(mut r) = relay.record.take() {
                r.add_bytes_out(body.len() as u64);
                match error_code_of(&body) {
                    Some(Some(code)) => r.finish(CallOutcome::Error, Some(code)),
                    _ => r.finish(CallOutcome::Success, None),
                }
            }
            HttpResponse::Ok().content_type("application/json").body(body)
        }
        Reply::Status { status, body, json } => {
            if let Some(r) = relay.record.take() {
                r.finish(CallOutcome::Error, error_code_of(&body).flatten());
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            HttpResponse::build(status)
                .content_type(if json {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                })
                .body(body)
        }
        Reply::Stream { events, .. } => {
            let hook = ListChangedHook {
                pins: ctx.state.pins.clone(),
                org: ctx.org.clone(),
                server: relay.server,
            };
            // A legacy client's disconnect is not cancellation (it may resume the stream), so
            // only the 2026-07-28 relays probe for it.
            let probe = (relay.era == Era::Modern).then_some(CANCELLATION_PROBE);
            sse_response(relay_events(events, relay, request_id, Some(hook)), probe)
        }
    }
}

struct ListChangedHook {
    pins: crate::pins::Pins,
    org: Arc<OrgState>,
    server: ServerId,
}

/// Formats one SSE frame.
fn frame(id: Option<&str>, retry: Option<u64>, data: &str) -> String {
    let mut out = String::new();
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(retry) = retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

type FrameStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, actix_web::Error>>>>;

/// Relays upstream SSE events: event ids and server→client request ids are rewritten to name the
/// upstream (legacy), a priming event is sent first when the upstream sends none, and the call
/// record is finished when the response goes by (or when the client goes away).
fn relay_events(
    events: SseEvents,
    mut relay: Relay,
    request_id: Option<Value>,
    hook: Option<ListChangedHook>,
) -> FrameStream {
    let mut first = true;
    let index = relay.index;
    let legacy = relay.era == Era::Legacy;
    let stream = events.map(move |event| {
        let mut out = String::new();
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "upstream stream ended with an error");
                if let Some(r) = relay.record.take() {
                    r.finish(CallOutcome::Error, None);
                }
                return Ok(Bytes::new());
            }
        };
        let data = event.data.as_deref().unwrap_or("");
        let id = event
            .id
            .as_deref()
            .filter(|_| legacy)
            .map(|orig| format!("{index}.{orig}"));
        if first {
            first = false;
            let priming = data.is_empty() && event.id.is_some();
            if legacy && !priming {
                out.push_str(&frame(Some(&format!("{index}.")), Some(SSE_RETRY_MS), ""));
            }
        }
        if data.is_empty() {
            if legacy && (id.is_some() || event.retry.is_some()) {
                out.push_str(&frame(id.as_deref(), event.retry, ""));
            }
            return Ok(Bytes::from(out));
        }
        let mut payload = std::borrow::Cow::Borrowed(data);
        if let Ok(mut value) = serde_json::from_str::<Value>(data) {
            let is_request = value.get("method").is_some() && value.get("id").is_some();
            let is_response = value.get("method").is_none()
                && (value.get("result").is_some() || value.get("error").is_some());
            if is_request && legacy {
                let rewritten = rewrite_request_id(index, &value["id"]);
                value["id"] = rewritten;
                payload = std::borrow::Cow::Owned(serde_json::to_string(&value).expect("json"));
            } else if is_response && value.get("id") == request_id.as_ref() {
                if let Some(mut r) = relay.record.take() {
                    r.add_bytes_out(data.len() as u64);
                    match value
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_i64)
                    {
                        Some(code) => r.finish(CallOutcome::Error, Some(code)),
                        None => r.finish(CallOutcome::Success, None),
                    }
                }
            } else if value.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed")
                && let Some(h) = &hook
            {
                h.pins.upstream_changed(h.org.clone(), h.server);
            }
        }
        out.push_str(&frame(id.as_deref(), event.retry.filter(|_| legacy), &payload));
        Ok(Bytes::from(out))
    });
    Box::pin(stream.filter(|b: &Result<Bytes, actix_web::Error>| {
        futures::future::ready(b.as_ref().map_or(true, |b| !b.is_empty()))
    }))
}

/// An SSE response; with `keep_alive`, a comment is written whenever the stream has been quiet
/// that long (proxies keep the connection, and a client that left is noticed).
fn sse_response(stream: FrameStream, keep_alive: Option<Duration>) -> HttpResponse {
    let stream: FrameStream = if let Some(every) = keep_alive {
        let ticks = futures::stream::unfold(
            tokio::time::interval_at(tokio::time::Instant::now() + every, every),
            |mut i| async move {
                i.tick().await;
                Some((Ok(Bytes::from_static(b": keep-alive\n\n")), i))
            },
        );
        // End when the upstream streams end (the `None` after them), not when the ticker would.
        let frames = stream
            .map(Some)
            .chain(futures::stream::once(futures::future::ready(None)));
        Box::pin(
            futures::stream::select(frames, ticks.map(Some))
                .take_while(|item| futures::future::ready(item.is_some()))
                .filter_map(futures::future::ready),
        )
    } else {
        stream
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream)
}

/// Batches: only the 2025-03-26 revision has them; each element is handled in turn and the
/// answers are returned together.
async fn batch(req: &HttpRequest, ctx: &Ctx, messages: Vec<Message>, bytes_in: u64) -> HttpResponse {
    let session = match open_session(req, ctx) {
        Ok(s) => s,
        Err(response) => {
            if req.headers().get(MCP_SESSION_ID).is_none() {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "Invalid Request: batches are not supported by this protocol version",
                    None,
                );
            }
            return response;
        }
    };
    if session.version != DEFAULT_LEGACY {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "Invalid Request: batches are not supported by this protocol version",
            None,
        );
    }
    let mut answers = Vec::new();
    for message in messages {
        match message.kind {
            Kind::Notification => forward_notification(ctx, &session, &message).await,
            Kind::Response => {
                route_client_response(ctx, &session, message).await;
            }
            Kind::Request => {
                let id = message.id().cloned().unwrap_or(Value::Null);
                if message.method() == "initialize" {
                    answers.push(jsonrpc::error_body(
                        Some(&id),
                        jsonrpc::INVALID_REQUEST,
                        "Invalid Request: initialize cannot be batched",
                        None,
                    ));
                    continue;
                }
                let answer = dispatch(req, ctx, Era::Legacy, Some(&session), message, bytes_in).await;
                answers.push(answer_value(answer, &id).await);
            }
        }
    }
    if answers.is_empty() {
        return HttpResponse::Accepted().finish();
    }
    json_response(StatusCode::OK, &Value::Array(answers))
}

/// The response message of an answer (reading a stream to its response).
async fn answer_value(answer: Answer, id: &Value) -> Value {
    match answer {
        Answer::Value(v) => v,
        Answer::Http(r) => {
            let code = if r.status() == StatusCode::TOO_MANY_REQUESTS {
                "Rate limit exceeded"
            } else {
                "Request refused"
            };
            jsonrpc::error_body(Some(id), jsonrpc::SERVER_ERROR, code, None)
        }
        Answer::Upstream { reply, mut relay } => {
            let value = match reply {
                Reply::Json { body, .. } => serde_json::from_slice(&body).ok(),
                Reply::Stream { mut events, .. } => {
                    let mut found = None;
                    while let Some(Ok(e)) = events.next().await {
                        if let Some(v) = e
                            .data
                            .as_deref()
                            .and_then(|d| serde_json::from_str::<Value>(d).ok())
                            && v.get("id") == Some(id)
                            && v.get("method").is_none()
                        {
                            found = Some(v);
                            break;
                        }
                    }
                    found
                }
                Reply::Status { body, .. } => serde_json::from_slice(&body).ok(),
                Reply::Accepted => None,
            };
            let value = value.unwrap_or_else(|| {
                jsonrpc::error_body(
                    Some(id),
                    jsonrpc::SERVER_ERROR,
                    "Upstream server unavailable",
                    None,
                )
            });
            if let Some(r) = relay.record.take() {
                match value
                    .get("error")
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_i64)
                {
                    Some(code) => r.finish(CallOutcome::Error, Some(code)),
                    None => r.finish(CallOutcome::Success, None),
                }
            }
            value
        }
    }
}

/// `GET /{org}/{endpoint}/mcp`: the session's server→client stream (legacy only).
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (org_slug, endpoint_slug) = path.into_inner();
    let ctx = match establish(&req, &state, &org_slug, &endpoint_slug).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let modern_header = header_str(&req, MCP_PROTOCOL_VERSION).is_some_and(|v| v >= MODERN_VERSIONS[0]);
    if modern_header || req.headers().get(MCP_SESSION_ID).is_none() {
        return method_not_allowed();
    }
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
                streams.push(relay_events(events, relay, None, Some(hook)));
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
    let (org_slug, endpoint_slug) = path.into_inner();
    let ctx = match establish(&req, &state, &org_slug, &endpoint_slug).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let modern_header = header_str(&req, MCP_PROTOCOL_VERSION).is_some_and(|v| v >= MODERN_VERSIONS[0]);
    if modern_header || req.headers().get(MCP_SESSION_ID).is_none() {
        return method_not_allowed();
    }
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
        state.notifier.publish_session_end(key).await;
    }
    HttpResponse::NoContent().finish()
}
