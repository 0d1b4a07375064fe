//! The MCP endpoint, `{public URL}/{org}/{endpoint}/mcp`: Streamable HTTP in both eras.
//!
//! - 2026-07-28 ("modern"): POST only, no sessions; `MCP-Protocol-Version` must equal the body's
//!   `_meta` version and the SEP-2243 headers must match the body.
//! - 2025-03-26 / 2025-06-18 / 2025-11-25 ("legacy"): `initialize` opens a session whose id is
//!   sealed by [`crate::session`]; GET opens the server-to-client stream, DELETE ends the session.
//!
//! Every request: Origin/Host check → configuration loaded → endpoint → bearer token → body parsed
//! (a batch's size checked first) → rate limits and quota, per message → body checks → era checks
//! → dispatch. Nothing is answered before the rate limits count the request. Policy is decided on the body. Tool lists and
//! definitions come from the snapshot (approved pins only); calls, prompts and resources are
//! forwarded to the upstream that owns them with the server's own credential.
//!
//! Layout (private submodules; each file's `//!` line says what it holds):
//! - `mod.rs`: the `POST` handler, one message to its era's path, and the JSON-RPC error
//!   answers every path uses;
//! - `admission`: the per-request context (`Ctx`), `establish` (Origin/Host, endpoint, token, base
//!   scope), `Unadmitted::admit`/`admit_batch` (the rate limits and the quota, per message; the
//!   only way to a `Ctx`) and `open_stream` (the caller's notification streams);
//! - `get_delete`: the `GET` and `DELETE` handlers (2025 sessions only);
//! - `modern`: the stateless 2026-07-28 path (header/body checks, answer or stream);
//! - `sessions`: legacy sessions (session lookup, `initialize`, notifications, batches);
//! - `dispatch`: a request to its handler by method, and what that produces (`Answer`);
//! - `aggregate`: requests answered across all upstreams (prompt/resource/task lists,
//!   `server/discover`), with `cursor`'s composite cursors when there are several;
//! - `calls`: `tools/call` and forwarding a request to the upstream that owns it;
//! - `bridge`: how a request reaches one upstream whatever revision either side speaks (the one
//!   place that picks the upstream's wire, session and headers, and shapes its body);
//! - `input`: server→client requests across the bridge (a session upstream's request ↔ a
//!   2026-07-28 `input_required` result), and cancellation of bridged calls;
//! - `relay`: upstream replies and streams back to the client as SSE, and the client's answers
//!   to server→client requests back to their upstream.
//!
//! With several upstreams (`EndpointState::server_ids`), what is not the endpoint's own is routed
//! to the upstream that owns it: tools and prompts by their `<server slug>__` prefix; resource
//! URIs, which are never rewritten, by who listed them (`resources`, over [`crate::owners`]);
//! task ids, namespaced like tools in both directions (`tasks`); `subscriptions/listen` goes to
//! every upstream and their streams are merged (`listen`). With one upstream, requests and
//! replies pass through as they are.
//!
//! **The bridge.** The client's wire (stateless 2026-07-28, or a 2025 session) is chosen at the
//! edge; each upstream's wire is learned on first use (`upstream::Learned`). Below the edge a
//! request reaches an upstream only through `bridge::send`, which speaks the upstream's wire: a
//! stateless client's request to a session upstream goes in a session the dataplane holds for
//! that caller (`upstream::SessionKey`; capped, idle ones closed, reopened on a 404), a session
//! client's request to a stateless upstream carries the revision's headers and `_meta`. What
//! comes back is shaped for the client's wire by the relay (`bridge::StatelessShape`) and, for
//! server→client requests, by `input`. `server/discover` and `initialize` are answered by the
//! endpoint itself from what was learned (`aggregate::discover`, `sessions::initialize`).

// Handlers answer with `HttpResponse` on the error path and `Answer` lives for one request:
// their size does not matter here.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

mod admission;
mod aggregate;
mod bridge;
mod calls;
mod cursor;
mod dispatch;
mod get_delete;
mod input;
mod listen;
mod modern;
mod relay;
mod resources;
mod sessions;
mod sql;
mod tasks;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::headers::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc::{self, Body, Kind, Message};
use crate::session::Session;
use crate::state::AppState;

use self::admission::{Ctx, establish, open_stream};
use self::dispatch::{Answer, dispatch};
use self::modern::modern;
use self::relay::{relay_reply, route_client_response};
use self::sessions::{batch, forward_notification, initialize, open_session};

pub use self::get_delete::{delete, get};
pub use self::input::InputRequests;

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
