//! `GET` (a session's server→client stream, merged across its upstreams; one of the caller's
//! bounded notification streams) and `DELETE` (ending a session upstream and on every replica):
//! they exist only for the 2025 revisions' sessions.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::jsonrpc;
use crate::session::EndedSessions;
use crate::state::AppState;
use crate::upstream::UpstreamError;

use super::admission::{Ctx, establish, open_stream};
use super::dispatch::Relay;
use super::relay::{FrameStream, ListChangedHook, SSE_RETRY_MS, relay_events, sse_response};
use super::sessions::open_session;
use super::tasks::{namespace_events, namespaces_tasks, only_served_tasks};
use super::{Era, KEEP_ALIVE, MODERN_VERSIONS, header_str, method_not_allowed, rpc_error};

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
    let slot = match open_stream(&ctx, None) {
        Ok(slot) => slot,
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
                // Messages about tasks reach only their creator; they name their upstream's tasks.
                let events = only_served_tasks(&ctx, upstream.server, events);
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
                    shape: None,
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
    // On drain the stream ends with a `retry` hint; the client resumes it (`Last-Event-ID`) on
    // another replica.
    slot.resumable(SSE_RETRY_MS)
        .held_by(sse_response(merged, Some(KEEP_ALIVE)))
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
