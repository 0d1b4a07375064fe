//! Legacy (2025) sessions: finding the caller's session, `initialize` across every upstream,
//! client notifications, and the 2025-03-26 batches.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use gatehouse_events::CallOutcome;

use crate::headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{self, Kind, Message};
use crate::redact::Redactor;
use crate::session::{Session, UpstreamSession};
use crate::upstream::{Outbound, Reply, STATELESS_VERSION, Wire, response_on};

use super::admission::Verdict;
use super::aggregate::{endpoint_server_info, filter_capabilities, merge_capabilities};
use super::bridge::wire_of;
use super::dispatch::{Answer, dispatch, result_value};
use super::relay::route_client_response;
use super::{Ctx, Incoming, LEGACY_VERSIONS, header_str, rpc_error};

const LATEST_LEGACY: &str = "2025-11-25";
/// A missing `MCP-Protocol-Version` on a session request means this revision.
const DEFAULT_LEGACY: &str = "2025-03-26";

/// The session named by `Mcp-Session-Id`: 400 when absent, 404 when unknown, expired or not the
/// caller's.
pub(super) fn open_session(req: &HttpRequest, ctx: &Ctx) -> Result<Session, HttpResponse> {
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

/// `initialize` (legacy): opens a session with every upstream of the endpoint and seals their
/// session ids into ours.
pub(super) async fn initialize(req: &HttpRequest, ctx: &Ctx, message: Message) -> HttpResponse {
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
    let speaks_http_sse = ctx.endpoint.server_ids.iter().any(|s| {
        ctx.server(*s)
            .is_some_and(|st| st.snapshot.transport == gatehouse_core::snapshot::UpstreamTransport::HttpSse)
    });
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
                client_capabilities: None,
            };
            let refusal = match ctx.state.upstreams.request(out, &id).await {
                Ok((reply, session_id)) if reply.get("result").is_some() => {
                    let result = reply["result"].clone();
                    let negotiated = result
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .unwrap_or(&version)
                        .to_owned();
                    return Some((
                        UpstreamSession {
                            server: *server_id,
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
                        server: *server_id,
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

/// A client notification (legacy) goes to every session upstream of the session; a stateless
/// upstream takes none, but a `notifications/cancelled` ends the call to it.
pub(super) async fn forward_notification(ctx: &Ctx, session: &Session, message: &Message) {
    if message.method() == "notifications/cancelled"
        && let Some(request_id) = message.params().and_then(|p| p.get("requestId"))
    {
        ctx.state.inputs.cancel(ctx, request_id);
    }
    let body = Bytes::from(serde_json::to_vec(&message.value).expect("json"));
    let sends = session
        .upstreams
        .iter()
        .filter(|u| wire_of(&u.version) == Wire::Session)
        .filter_map(|u| {
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
                        client_capabilities: None,
                    })
                    .await;
            })
        });
    futures::future::join_all(sends).await;
}

/// Batches: only the 2025-03-26 revision has them. Each message was admitted on its own
/// (`verdicts`, in order); the admitted ones are handled in turn and the answers returned
/// together, within the batch's deadline and answer size (`dataplane.batch_timeout_ms`,
/// `dataplane.max_batch_answer_bytes`). A request past either gets a JSON-RPC error and is not
/// sent upstream.
pub(super) async fn batch(
    req: &HttpRequest,
    ctx: &Ctx,
    messages: Vec<Message>,
    verdicts: Vec<Verdict>,
    bytes_in: u64,
) -> HttpResponse {
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
    let limits = ctx.state.batches;
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut answers = BatchAnswers::new(limits.max_answer_bytes);
    for (message, verdict) in messages.into_iter().zip(verdicts) {
        let id = message.id().cloned().unwrap_or(Value::Null);
        let is_request = message.kind == Kind::Request;
        // Refused at admission: a request gets the refusal, anything else is dropped.
        if let Some(refusal) = verdict.error_body(Some(&id)) {
            if is_request {
                answers.push_error(refusal);
            }
            continue;
        }
        let late = tokio::time::Instant::now() >= deadline;
        if late || answers.full {
            if is_request {
                let error = if late {
                    batch_deadline_error(&id, limits.timeout)
                } else {
                    answers.too_large_error(&id)
                };
                answers.push_error(error);
            }
            continue;
        }
        match message.kind {
            Kind::Notification => {
                let _ =
                    tokio::time::timeout_at(deadline, forward_notification(ctx, &session, &message)).await;
            }
            Kind::Response => {
                let _ =
                    tokio::time::timeout_at(deadline, route_client_response(ctx, &session, message)).await;
            }
            Kind::Request => {
                if message.method() == "initialize" {
                    answers.push_error(jsonrpc::error_body(
                        Some(&id),
                        jsonrpc::INVALID_REQUEST,
                        "Invalid Request: initialize cannot be batched",
                        None,
                    ));
                    continue;
                }
                let answered = tokio::time::timeout_at(deadline, async {
                    let answer = dispatch(Incoming::legacy(req, ctx, &session), message, bytes_in).await;
                    answer_value(ctx, answer, &id).await
                })
                .await;
                match answered {
                    Ok(value) => answers.push(&value, &id),
                    Err(_) => answers.push_error(batch_deadline_error(&id, limits.timeout)),
                }
            }
        }
    }
    answers.into_response()
}

/// The answers to a batch as they are serialized, within `max_bytes`: the answer that would
/// cross it is replaced by an error, and so is every one after it (errors are small and one per
/// request, at most `dataplane.max_batch_messages`).
struct BatchAnswers {
    body: Vec<u8>,
    count: usize,
    max_bytes: usize,
    /// An answer was refused for size: the requests after it are not sent.
    full: bool,
}

impl BatchAnswers {
    fn new(max_bytes: usize) -> Self {
        Self {
            body: vec![b'['],
            count: 0,
            max_bytes,
            full: false,
        }
    }

    fn push(&mut self, answer: &Value, id: &Value) {
        let bytes = serde_json::to_vec(answer).expect("json");
        if self.body.len() + bytes.len() + 2 > self.max_bytes {
            self.full = true;
            let error = self.too_large_error(id);
            self.push_error(error);
            return;
        }
        self.append(&bytes);
    }

    fn push_error(&mut self, error: Value) {
        let bytes = serde_json::to_vec(&error).expect("json");
        self.append(&bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.count > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(bytes);
        self.count += 1;
    }

    fn too_large_error(&self, id: &Value) -> Value {
        jsonrpc::error_body(
            Some(id),
            jsonrpc::SERVER_ERROR,
            &format!(
                "Batch answers too large: the answers to one batch may total {} bytes; send this request on its own",
                self.max_bytes
            ),
            Some(json!({"maxBatchAnswerBytes": self.max_bytes})),
        )
    }

    fn into_response(mut self) -> HttpResponse {
        if self.count == 0 {
            return HttpResponse::Accepted().finish();
        }
        self.body.push(b']');
        HttpResponse::Ok()
            .content_type("application/json")
            .body(self.body)
    }
}

fn batch_deadline_error(id: &Value, timeout: std::time::Duration) -> Value {
    let ms = timeout.as_millis();
    jsonrpc::error_body(
        Some(id),
        jsonrpc::SERVER_ERROR,
        &format!("Batch deadline exceeded: a batch may take {ms} ms in all"),
        Some(json!({"batchTimeoutMs": ms})),
    )
}

/// The response message of an answer (reading a stream to its response).
async fn answer_value(ctx: &Ctx, answer: Answer, id: &Value) -> Value {
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
            let body = match reply {
                Reply::Json { body, .. } | Reply::Status { body, .. } => Some(body),
                Reply::Stream { mut events, .. } => response_on(&mut events, id)
                    .await
                    .ok()
                    .map(|v| Bytes::from(serde_json::to_vec(&v).expect("json"))),
                Reply::Accepted => None,
            };
            // Redacted as every upstream message toward the client is (`relay`).
            let value = body
                .map(|body| Redactor::apply(ctx.state.redactor.as_ref(), body))
                .and_then(|body| serde_json::from_slice(&body).ok());
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
