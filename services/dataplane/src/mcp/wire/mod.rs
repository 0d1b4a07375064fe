//! The wire edge: HTTP in, HTTP out. `POST` is admitted (every message of its body counted
//! before any is answered), checked (Content-Type, Accept) and handed to the client's wire,
//! chosen here once per message: stateless (2026-07-28, [`stateless`]) or a 2025 session
//! ([`session`], with [`batch`]es). `GET` and `DELETE` exist only for sessions.

mod batch;
mod session;
mod stateless;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::headers::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{self, Body, Kind, Message};
use crate::state::AppState;

use crate::mcp::admission::{establish, open_stream};
use crate::mcp::context::{Ctx, Incoming, MODERN_VERSIONS, all_versions};
use crate::mcp::dispatch::dispatch;
use crate::mcp::http::{header_str, json_response, rpc_error};
use crate::mcp::outcome::Answer;
use crate::mcp::relay::relay_reply;

use self::batch::batch;
use self::session::{forward_notification, initialize, open_session, route_client_response};
use self::stateless::modern;

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
        Err(response) => return response,
    };
    // Parsed before admission so that every message of the body is counted (a `tools/call`
    // against its tool's own limit in the same check) before any of it is answered; a batch over
    // `dataplane.max_batch_messages` is refused by a scan before it is parsed.
    let parsed = jsonrpc::parse_body(&body, state.max_json_depth, state.batches.max_messages);
    let admitted = match &parsed {
        Ok(Body::Batch(messages)) => unadmitted.admit_batch(messages).await,
        Ok(Body::Single(message)) => unadmitted.admit(Some(message)).await.map(|ctx| (ctx, vec![])),
        Err(_) => unadmitted.admit(None).await.map(|ctx| (ctx, vec![])),
    };
    let (ctx, verdicts) = match admitted {
        Ok(admitted) => admitted,
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
        Body::Batch(messages) => batch(&req, &ctx, messages, verdicts, bytes_in).await,
        Body::Single(message)
            if message.kind == Kind::Request && message.method() == "subscriptions/listen" =>
        {
            let slot = match open_stream(&ctx, message.id()) {
                Ok(slot) => slot,
                Err(response) => return response,
            };
            slot.held_by(single(&req, &ctx, message, bytes_in).await)
        }
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
