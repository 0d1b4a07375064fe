//! Requests answered across all of an endpoint's upstreams: the prompt and resource lists,
//! `server/discover`, and the capability merging and filtering `initialize` shares.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::jsonrpc::{self, Message};
use crate::session::Session;
use crate::upstream::{Outbound, Reply};

use super::calls::{mcp_headers_for, upstream_session};
use super::dispatch::{Answer, modern_list_fields, result_value};
use super::modern::relay_json_error;
use super::{Ctx, Era, MODERN_VERSIONS};

/// `prompts/list`, `resources/list`, `resources/templates/list` across the endpoint's upstreams.
pub(super) async fn aggregate_list(
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

/// `server/discover`: asked of every upstream; the first answer is the base, capabilities are
/// merged. An upstream's protocol error (e.g. unsupported version) is passed on as a 4xx.
pub(super) async fn discover(req: &HttpRequest, ctx: &Ctx, message: Message) -> Answer {
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

pub(super) fn merge_capabilities(base: &mut Value, other: &Value) {
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
pub(super) fn filter_capabilities(ctx: &Ctx, result: &mut Value) {
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
