//! The wire edge: HTTP in, HTTP out. `POST` is admitted (every message of its body counted
//! before any is answered), checked (Content-Type, Accept) and handed to the client's wire,
//! chosen here once per message: stateless (2026-07-28, [`stateless`]) or a 2025 session
//! ([`session`], with [`batch`]es). `GET` and `DELETE` exist only for sessions.

mod batch;
mod render;
mod session;
mod stateless;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::headers::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{self, Body, Kind};
use crate::state::AppState;

use crate::mcp::admission::{establish, open_stream};
use crate::mcp::context::{ClientWire, Ctx, STATELESS_VERSIONS};
use crate::mcp::error::McpError;
use crate::mcp::request::{McpRequest, Method};

use self::batch::batch;
use self::render::{error_response, header_str, refusal};

pub use self::session::{delete, get};

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
        Err(error) => return refusal(&error),
    };
    // Parsed before admission so that every message of the body is counted (a `tools/call`
    // against its tool's own limit in the same check) before any of it is answered; a batch over
    // `dataplane.max_batch_messages` is refused by a scan before it is parsed.
    let bytes_in = body.len() as u64;
    let mut parsed =
        jsonrpc::parse_body(&body, state.max_json_depth, state.batches.max_messages).map(|body| match body {
            Body::Single(message) => Requests::Single(McpRequest::read(message, bytes_in)),
            Body::Batch(messages) => Requests::Batch(
                messages
                    .into_iter()
                    .map(|message| McpRequest::read(message, bytes_in))
                    .collect(),
            ),
        });
    let admitted = match &mut parsed {
        Ok(Requests::Batch(requests)) => unadmitted.admit_batch(requests).await,
        Ok(Requests::Single(request)) => unadmitted.admit(Some(request)).await.map(|ctx| (ctx, vec![])),
        Err(_) => unadmitted.admit(None).await.map(|ctx| (ctx, vec![])),
    };
    let (ctx, verdicts) = match admitted {
        Ok(admitted) => admitted,
        // A quota refusal is a JSON-RPC answer to the request; a rate limit refuses the HTTP
        // request.
        Err(error @ McpError::OverQuota) => {
            let id = match &parsed {
                Ok(Requests::Single(request)) => request.answer_id(),
                _ => None,
            };
            return error_response(&error, id, ClientWire::Session);
        }
        Err(error) => return refusal(&error),
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
        return refusal(&McpError::UnsupportedMediaType);
    }
    if !accepts_both(&req) {
        return refusal(&McpError::NotAcceptable(
            "Not Acceptable: the client must accept both application/json and text/event-stream",
        ));
    }
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return refusal(&McpError::bad_request(e.code, e.message)),
    };
    match parsed {
        Requests::Batch(requests) => Box::pin(batch(&req, &ctx, requests, verdicts)).await,
        Requests::Single(request)
            if request.kind() == Kind::Request && request.method == Method::SubscriptionsListen =>
        {
            let slot = match open_stream(&ctx) {
                Ok(slot) => slot,
                Err(error) => return error_response(&error, request.answer_id(), ClientWire::Session),
            };
            slot.held_by(single(&req, &ctx, request).await)
        }
        Requests::Single(request) => single(&req, &ctx, request).await,
    }
}

/// A body's messages, read.
enum Requests {
    Single(McpRequest),
    Batch(Vec<McpRequest>),
}

/// The client's wire for this message: stateless (2026-07-28) or a 2025 session.
fn client_wire(req: &HttpRequest, request: &McpRequest) -> ClientWire {
    if request.message.has_meta_protocol_version_key() {
        return ClientWire::Stateless;
    }
    let is_request = request.kind() == Kind::Request;
    if is_request && request.method == Method::Initialize {
        return ClientWire::Session;
    }
    let header_stateless = names_stateless_revision(req);
    let discover_without_session =
        is_request && request.method == Method::ServerDiscover && req.headers().get(MCP_SESSION_ID).is_none();
    if header_stateless || discover_without_session {
        ClientWire::Stateless
    } else {
        ClientWire::Session
    }
}

/// Whether the `MCP-Protocol-Version` header names a stateless revision.
pub(super) fn names_stateless_revision(req: &HttpRequest) -> bool {
    header_str(req, MCP_PROTOCOL_VERSION).is_some_and(|v| v >= STATELESS_VERSIONS[0])
}

/// Each wire's handling is boxed, as a batch's is: their futures are large, and `post`'s, which
/// would hold them inline, is copied whole when actix boxes it (the stateless wire's answer is
/// boxed once more, to be turned into a stream when slow).
async fn single(req: &HttpRequest, ctx: &Ctx, request: McpRequest) -> HttpResponse {
    match client_wire(req, &request) {
        ClientWire::Stateless => Box::pin(stateless::handle(req, ctx, request)).await,
        ClientWire::Session => Box::pin(session::handle(req, ctx, request)).await,
    }
}
