//! Batches (2025-03-26 sessions only): every message admitted on its own, the admitted ones
//! handled in turn, the answers returned together within the batch's deadline and size.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::headers::MCP_SESSION_ID;
use crate::jsonrpc::{self, Kind};
use crate::redact::Redactor;
use crate::upstream::{Reply, response_on};

use crate::events::error_code_in;
use crate::mcp::admission::Verdict;
use crate::mcp::context::{ClientWire, Ctx, Incoming};
use crate::mcp::dispatch::dispatch;
use crate::mcp::error::McpError;
use crate::mcp::outcome::Answer;
use crate::mcp::request::{McpRequest, Method};

use super::render::refusal;

use super::session::{DEFAULT_SESSION_VERSION, forward_notification, open_session, route_client_response};

/// Batches: only the 2025-03-26 revision has them. Each message was admitted on its own
/// (`verdicts`, in order); the admitted ones are handled in turn and the answers returned
/// together, within the batch's deadline and answer size (`dataplane.batch_timeout_ms`,
/// `dataplane.max_batch_answer_bytes`). A request past either gets a JSON-RPC error and is not
/// sent upstream.
pub(super) async fn batch(
    req: &HttpRequest,
    ctx: &Ctx,
    requests: Vec<McpRequest>,
    verdicts: Vec<Verdict>,
) -> HttpResponse {
    let session = match open_session(req, ctx) {
        Ok(s) => s,
        // Without a session this is a stateless request, and that revision has no batches.
        Err(_) if req.headers().get(MCP_SESSION_ID).is_none() => return refusal(&not_supported()),
        Err(error) => return refusal(&error),
    };
    if session.version != DEFAULT_SESSION_VERSION {
        return refusal(&not_supported());
    }
    let limits = ctx.state.batches;
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut answers = BatchAnswers::new(limits.max_answer_bytes);
    for (request, verdict) in requests.into_iter().zip(verdicts) {
        let id = request.id();
        let is_request = request.kind() == Kind::Request;
        // Refused at admission: a request gets the refusal, anything else is dropped.
        if let Some(refused) = verdict.refusal() {
            if is_request {
                answers.push_error(refused.body(Some(&id)));
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
        match request.kind() {
            Kind::Notification => {
                let _ =
                    tokio::time::timeout_at(deadline, forward_notification(ctx, &session, &request.message))
                        .await;
            }
            Kind::Response => {
                let _ =
                    tokio::time::timeout_at(deadline, route_client_response(ctx, &session, request.message))
                        .await;
            }
            Kind::Request => {
                if request.method == Method::Initialize {
                    let error = McpError::protocol(
                        jsonrpc::INVALID_REQUEST,
                        "Invalid Request: initialize cannot be batched",
                    );
                    answers.push_error(error.body(Some(&id)));
                    continue;
                }
                let answered = tokio::time::timeout_at(deadline, async {
                    let answer = dispatch(Incoming::session(req, ctx, &session), request).await;
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
        McpError::protocol_with(
            jsonrpc::SERVER_ERROR,
            format!(
                "Batch answers too large: the answers to one batch may total {} bytes; send this request on its own",
                self.max_bytes
            ),
            json!({"maxBatchAnswerBytes": self.max_bytes}),
        )
        .body(Some(id))
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

fn not_supported() -> McpError {
    McpError::bad_request(
        jsonrpc::INVALID_REQUEST,
        "Invalid Request: batches are not supported by this protocol version",
    )
}

fn request_refused(id: &Value) -> Value {
    McpError::protocol(jsonrpc::SERVER_ERROR, "Request refused").body(Some(id))
}

fn batch_deadline_error(id: &Value, timeout: std::time::Duration) -> Value {
    let ms = timeout.as_millis();
    McpError::protocol_with(
        jsonrpc::SERVER_ERROR,
        format!("Batch deadline exceeded: a batch may take {ms} ms in all"),
        json!({"batchTimeoutMs": ms}),
    )
    .body(Some(id))
}

/// The response message of an answer (reading a stream to its response).
async fn answer_value(ctx: &Ctx, answer: Answer, id: &Value) -> Value {
    match answer {
        Answer::Value(v) => v,
        // An error that would refuse the HTTP request, or an SSE response the endpoint writes
        // itself, has no place in a batch's array.
        Answer::Error(error) if error.status(ClientWire::Session) == StatusCode::OK => error.body(Some(id)),
        Answer::Error(_) | Answer::Stream(_) => request_refused(id),
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
            let value = value.unwrap_or_else(|| McpError::unavailable().body(Some(id)));
            if let Some(r) = relay.record.take() {
                r.finish_answered(error_code_in(&value));
            }
            value
        }
    }
}
