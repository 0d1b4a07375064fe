//! The session wire (2025 revisions): finding the caller's session, `initialize` across every
//! upstream, client notifications, the client's answers to server→client requests, the `GET`
//! stream (merged across the session's upstreams; one of the caller's bounded notification
//! streams) and `DELETE` (ending a session upstream and on every replica).

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{self, Kind, Message};
use crate::session::{EndedSessions, Session, UpstreamSession};
use crate::state::AppState;
use crate::upstream::{STATELESS_VERSION, UpstreamError, Wire};

use crate::mcp::admission::{establish, open_stream};
use crate::mcp::aggregate::{endpoint_server_info, filter_capabilities, merge_capabilities};
use crate::mcp::client_stream::{Carrying, to_client};
use crate::mcp::context::{ClientWire, Ctx, Incoming, KEEP_ALIVE, SESSION_VERSIONS, all_versions};
use crate::mcp::dispatch::dispatch;
use crate::mcp::error::McpError;
use crate::mcp::input::ASK_PREFIX;
use crate::mcp::outcome::{ClientStream, FrameStream, Relay, result_value};
use crate::mcp::relay::{SSE_RETRY_MS, parse_rewritten_id};
use crate::mcp::request::{McpRequest, Method};
use crate::mcp::sql::elicitation_answer;
use crate::mcp::upstream_calls::{UpstreamCall, fan_out, session_wire_upstreams};

use super::names_stateless_revision;
use super::render::{answer_response, error_response, header_str, refusal, sse_response};

const LATEST_SESSION_VERSION: &str = "2025-11-25";
/// A missing `MCP-Protocol-Version` on a session request means this revision.
pub(super) const DEFAULT_SESSION_VERSION: &str = "2025-03-26";

/// One message on the session wire: `initialize` opens a session; anything else needs one.
pub(super) async fn handle(req: &HttpRequest, ctx: &Ctx, request: McpRequest) -> HttpResponse {
    if request.kind() == Kind::Request && request.method == Method::Initialize {
        return initialize(req, ctx, request.message).await;
    }
    let session = match open_session(req, ctx) {
        Ok(s) => s,
        Err(error) => return refusal(&error),
    };
    if let Some(version) = req.headers().get(MCP_PROTOCOL_VERSION) {
        let known = version.to_str().ok().is_some_and(|v| all_versions().contains(&v));
        if !known {
            let error = McpError::BadRequest {
                code: jsonrpc::INVALID_REQUEST,
                message: "Bad Request: unsupported MCP-Protocol-Version".to_owned(),
                data: Some(json!({"supported": all_versions()})),
            };
            return error_response(&error, request.answer_id(), ClientWire::Session);
        }
    }
    match request.kind() {
        Kind::Request => {
            let id = request.answer_id().cloned();
            let answer = dispatch(Incoming::session(req, ctx, &session), request).await;
            answer_response(ctx, answer, id, ClientWire::Session)
        }
        Kind::Notification => {
            forward_notification(ctx, &session, &request.message).await;
            HttpResponse::Accepted().finish()
        }
        Kind::Response => route_client_response(ctx, &session, request.message).await,
    }
}

/// The session named by `Mcp-Session-Id`: 400 when absent, 404 when unknown, expired or not the
/// caller's.
pub(super) fn open_session(req: &HttpRequest, ctx: &Ctx) -> Result<Session, McpError> {
    let Some(id) = header_str(req, MCP_SESSION_ID) else {
        return Err(McpError::bad_request(
            jsonrpc::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if ctx.state.ended_sessions.contains(id) {
        return Err(McpError::NotFound("Not Found: session not found".to_owned()));
    }
    match ctx.state.sessions.open(id, now) {
        Some(s)
            if s.org == ctx.org.snapshot.org_id
                && s.endpoint == ctx.endpoint.id()
                && s.subject == ctx.principal.subject =>
        {
            Ok(s)
        }
        _ => Err(McpError::NotFound("Not Found: session not found".to_owned())),
    }
}

/// `initialize`: opens a session with every upstream of the endpoint and seals their
/// session ids into ours.
pub(super) async fn initialize(req: &HttpRequest, ctx: &Ctx, message: Message) -> HttpResponse {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let requested = message
        .param_str("protocolVersion")
        .unwrap_or(LATEST_SESSION_VERSION)
        .to_owned();
    if let Some(header) = header_str(req, MCP_PROTOCOL_VERSION)
        && header != requested
    {
        return error_response(
            &McpError::bad_request(
                jsonrpc::INVALID_REQUEST,
                format!(
                    "Invalid Request: MCP-Protocol-Version header ({header}) does not match initialize params.protocolVersion ({requested})"
                ),
            ),
            Some(&id),
            ClientWire::Session,
        );
    }
    if let Some(method) = req.headers().get(headers::MCP_METHOD)
        && method.as_bytes() != b"initialize"
    {
        return error_response(
            &McpError::bad_request(
                jsonrpc::HEADER_MISMATCH,
                "Header mismatch: Mcp-Method does not match body method `initialize`",
            ),
            Some(&id),
            ClientWire::Session,
        );
    }
    let version = if SESSION_VERSIONS.contains(&requested.as_str()) {
        requested.clone()
    } else {
        LATEST_SESSION_VERSION.to_owned()
    };
    let speaks_http_sse = ctx.endpoint.server_ids.iter().any(|s| {
        ctx.server(*s)
            .is_some_and(|st| st.snapshot.transport == gatehouse_core::upstream::UpstreamTransport::HttpSse)
    });
    let mut upstream_message = message.value.clone();
    upstream_message["params"]["protocolVersion"] = json!(version);
    let body = Bytes::from(serde_json::to_vec(&upstream_message).expect("json"));
    let servers = ctx
        .endpoint
        .server_ids
        .iter()
        .map(|server_id| (*server_id, *server_id));
    let inits = fan_out(ctx, servers, |server, server_id| {
        let body = body.clone();
        let id = id.clone();
        let version = version.clone();
        async move {
            let call = UpstreamCall::opening(ctx, &server);
            let refusal = match call.request(&ctx.state.upstreams, body, &id).await {
                Ok((reply, session_id)) if reply.get("result").is_some() => {
                    let result = reply["result"].clone();
                    let negotiated = result
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .unwrap_or(&version)
                        .to_owned();
                    return Some((
                        UpstreamSession {
                            server: server_id,
                            session_id,
                            version: negotiated,
                        },
                        result,
                    ));
                }
                Ok((reply, _)) => reply.get("error").map(Value::to_string).unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            // A server without sessions (2026-07-28 only) is spoken to statelessly within ours.
            match ctx.state.upstreams.learned(&server, Some(ctx.caller())).await {
                Ok(learned) if learned.wire == Wire::Stateless => {
                    let mut result = json!({
                        "capabilities": learned.capabilities,
                        "serverInfo": learned.server_info.clone().unwrap_or_else(|| endpoint_server_info(ctx)),
                    });
                    if let Some(instructions) = &learned.instructions {
                        result["instructions"] = json!(instructions);
                    }
                    let upstream = UpstreamSession {
                        server: server_id,
                        session_id: None,
                        version: STATELESS_VERSION.to_owned(),
                    };
                    Some((upstream, result))
                }
                _ => {
                    tracing::warn!(server_id = %server_id, error = %refusal, "upstream initialize failed");
                    None
                }
            }
        }
    });
    let results: Vec<_> = inits.await.into_iter().flatten().collect();
    if results.is_empty() && !ctx.endpoint.server_ids.is_empty() {
        return error_response(
            &McpError::protocol(jsonrpc::SERVER_ERROR, "Upstream servers unavailable"),
            Some(&id),
            ClientWire::Session,
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
        merged["serverInfo"] = endpoint_server_info(ctx);
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
        client_capabilities: None,
        elicitation: false,
    };
    // An HTTP+SSE upstream's handshake per request, and a stateless upstream's `_meta`, declare
    // them again.
    let needs_capabilities = speaks_http_sse
        || session
            .upstreams
            .iter()
            .any(|u| u.session_id.is_none() && u.version == STATELESS_VERSION);
    let session = Session {
        client_capabilities: needs_capabilities
            .then(|| message.params().and_then(|p| p.get("capabilities")).cloned())
            .flatten(),
        elicitation: message
            .params()
            .and_then(|p| p.get("capabilities"))
            .and_then(|c| c.get("elicitation"))
            .is_some_and(Value::is_object),
        ..session
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

/// A client notification goes to every session upstream of the session; a stateless
/// upstream takes none, but a `notifications/cancelled` ends the call to it.
pub(super) async fn forward_notification(ctx: &Ctx, session: &Session, message: &Message) {
    if message.method() == "notifications/cancelled"
        && let Some(request_id) = message.params().and_then(|p| p.get("requestId"))
    {
        ctx.state.inputs.cancel(ctx, request_id);
    }
    let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
    fan_out(ctx, session_wire_upstreams(session), |server, upstream| {
        let body = body.clone();
        async move {
            let call = UpstreamCall::in_session(ctx, &server, upstream);
            let _ = call.post(&ctx.state.upstreams, body).await;
        }
    })
    .await;
}

/// The client's answer to a server→client request (sampling, elicitation, roots).
pub(super) async fn route_client_response(
    ctx: &Ctx,
    session: &Session,
    mut message: Message,
) -> HttpResponse {
    match elicitation_answer(ctx, &message) {
        Some(Ok(())) => return HttpResponse::Accepted().finish(),
        Some(Err(error)) => return error_response(&error, None, ClientWire::Session),
        None => {}
    }
    let Some((index, original)) = message.id().and_then(parse_rewritten_id) else {
        return error_response(
            &McpError::bad_request(
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: response to an unknown request",
            ),
            None,
            ClientWire::Session,
        );
    };
    // The answer to a request put to the client for a stateless upstream's `input_required`.
    if let Some(ask) = original.as_str().filter(|id| id.starts_with(ASK_PREFIX)) {
        if ctx.state.inputs.answer(ctx, ask, &message) {
            return HttpResponse::Accepted().finish();
        }
        return error_response(
            &McpError::NotFound("Not Found: no call waits for this answer on this server".to_owned()),
            None,
            ClientWire::Session,
        );
    }
    let Some(upstream) = session.upstreams.get(index) else {
        return error_response(
            &McpError::bad_request(
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: response to an unknown request",
            ),
            None,
            ClientWire::Session,
        );
    };
    let Some(server) = ctx.server(upstream.server).cloned() else {
        return error_response(
            &McpError::NotFound("Not Found: session not found".to_owned()),
            None,
            ClientWire::Session,
        );
    };
    message.value["id"] = original;
    let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
    match UpstreamCall::in_session(ctx, &server, upstream)
        .post(&ctx.state.upstreams, body)
        .await
    {
        Ok(_) => HttpResponse::Accepted().finish(),
        Err(UpstreamError::SessionGone) => error_response(
            &McpError::NotFound("Not Found: session expired upstream".to_owned()),
            None,
            ClientWire::Session,
        ),
        // An HTTP+SSE upstream's request whose route is not ours, or has expired.
        Err(UpstreamError::Refused(_)) => error_response(
            &McpError::bad_request(
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: response to an unknown request",
            ),
            None,
            ClientWire::Session,
        ),
        Err(_) => error_response(&McpError::BadGateway, None, ClientWire::Session),
    }
}

/// GET and DELETE exist only for sessions of the 2025 protocol versions: authenticates the caller
/// for the endpoint, and answers 405 to a 2026-07-28 request or one without a session id.
async fn establish_session_request(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<Ctx, McpError> {
    let (org_slug, endpoint_slug) = path.into_inner();
    let ctx = establish(req, state, &org_slug, &endpoint_slug)
        .await?
        .admit(None)
        .await?;
    if names_stateless_revision(req) || req.headers().get(MCP_SESSION_ID).is_none() {
        return Err(McpError::MethodNotAllowed);
    }
    Ok(ctx)
}

/// `GET /{org}/{endpoint}/mcp`: the session's server→client stream (session wire only).
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let ctx = match establish_session_request(&req, &state, path).await {
        Ok(ctx) => ctx,
        Err(error) => return refusal(&error),
    };
    let accepts_sse = req
        .headers()
        .get_all("accept")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"));
    if !accepts_sse {
        return error_response(
            &McpError::NotAcceptable("Not Acceptable: the client must accept text/event-stream"),
            None,
            ClientWire::Session,
        );
    }
    let session = match open_session(&req, &ctx) {
        Ok(s) => s,
        Err(error) => return refusal(&error),
    };
    let slot = match open_stream(&ctx) {
        Ok(slot) => slot,
        Err(error) => return refusal(&error),
    };
    // A resume names the upstream whose stream it continues.
    let resume = header_str(&req, headers::LAST_EVENT_ID).and_then(|id| {
        let (index, orig) = id.split_once('.')?;
        Some((index.parse::<usize>().ok()?, orig.to_owned()))
    });
    // Every upstream's stream, opened at once.
    let upstreams = session
        .upstreams
        .iter()
        .enumerate()
        .map(|(index, u)| (u.server, (index, u)));
    let opened = fan_out(&ctx, upstreams, |server, (index, upstream)| {
        let last_event_id = match &resume {
            Some((i, orig)) if *i == index && !orig.is_empty() => Some(orig.as_str()),
            Some(_) | None => None,
        };
        let ctx = &ctx;
        async move {
            let events = ctx
                .state
                .upstreams
                .get_stream(
                    &server,
                    &upstream.version,
                    upstream.session_id.as_deref(),
                    last_event_id,
                    Some(ctx.caller()),
                )
                .await;
            (index, upstream.server, events)
        }
    })
    .await;
    let mut streams = Vec::new();
    for (index, server, events) in opened {
        match events {
            Ok(Some(events)) => {
                let relay = Relay {
                    client_wire: ClientWire::Session,
                    index,
                    server,
                    record: None,
                    shape: None,
                    renamed: None,
                };
                streams.push(to_client(&ctx, events, relay, None, Carrying::Notifications));
            }
            Ok(None) => {}
            Err(UpstreamError::SessionGone) => {
                return error_response(
                    &McpError::NotFound("Not Found: session expired upstream; re-initialize".to_owned()),
                    None,
                    ClientWire::Session,
                );
            }
            Err(e) => tracing::warn!(server_id = %server, error = %e, "upstream GET stream failed"),
        }
    }
    if streams.is_empty() {
        return refusal(&McpError::MethodNotAllowed);
    }
    let merged: FrameStream = Box::pin(futures::stream::select_all(streams));
    // On drain the stream ends with a `retry` hint; the client resumes it (`Last-Event-ID`) on
    // another replica.
    slot.resumable(SSE_RETRY_MS).held_by(sse_response(ClientStream {
        frames: merged,
        keep_alive: Some(KEEP_ALIVE),
    }))
}

/// `DELETE /{org}/{endpoint}/mcp`: ends the session upstream.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let ctx = match establish_session_request(&req, &state, path).await {
        Ok(ctx) => ctx,
        Err(error) => return refusal(&error),
    };
    let session = match open_session(&req, &ctx) {
        Ok(s) => s,
        Err(error) => return refusal(&error),
    };
    let upstreams = session.upstreams.iter().map(|u| (u.server, u));
    fan_out(&ctx, upstreams, |server, u| {
        let state = state.clone();
        async move {
            if let Some(id) = &u.session_id {
                state.upstreams.delete_session(&server, &u.version, id).await;
            }
        }
    })
    .await;
    if let Some(id) = header_str(&req, MCP_SESSION_ID) {
        let key = EndedSessions::key(id);
        state.ended_sessions.insert(key);
        let expires_at = time::OffsetDateTime::now_utc().unix_timestamp() + crate::session::MAX_AGE_SECS;
        state.notifier.publish_session_end(key, expires_at).await;
    }
    HttpResponse::NoContent().finish()
}
