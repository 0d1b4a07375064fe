//! One request to its handler by method (`tools/list` from the snapshot; lists, calls, prompts,
//! resources, tasks and subscriptions to the modules that serve them), the grants that gate them,
//! and what a dispatch produces.
//!
//! Dispatch is an allowlist: the methods of both revisions Gatehouse understands, each with the
//! policy that applies to it, and the endpoint's own extra (vendor) methods
//! (`EndpointSnapshot::extra_methods`). Every other method is answered -32601 and never reaches
//! an upstream.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::{CapabilityGrant, extra_method_allowed};

use crate::auth::Principal;
use crate::jsonrpc::{self, Message};
use crate::resource;
use crate::session::Session;

use super::aggregate::{ListKind, aggregate_list, discover};
use super::context::{ClientWire, Ctx, Incoming};
use super::error::McpError;
use super::forward::forward_request;
use super::listen::listen;
use super::outcome::{Answer, result_value};
use super::request::{McpRequest, Method, Named};
use super::resources::{Unrouted, resource_owner};
use super::tasks::{bind_created_task, forward_task_request, list_tasks, namespace_answer};
use super::tools::call_tool;
use super::upstream_calls::{UpstreamCall, fan_out, session_wire_upstreams};

/// Whether a grant lets the caller use a capability: `None` = not exposed at all.
fn grant_allows(grant: &Option<CapabilityGrant>, principal: &Principal) -> Option<Result<(), String>> {
    let grant = grant.as_ref()?;
    Some(match &grant.scope {
        None => Ok(()),
        Some(scope) if principal.scopes.contains(scope) => Ok(()),
        Some(scope) => Err(scope.clone()),
    })
}

pub(super) async fn dispatch(incoming: Incoming<'_>, mut request: McpRequest) -> Answer {
    let Incoming {
        ctx,
        client_wire,
        session,
        ..
    } = incoming;
    let id = request.id();
    let method = request.method.clone();
    match &method {
        Method::Ping => Answer::Value(result_value(&id, json!({}))),
        Method::ToolsList => {
            let servers = ctx.endpoint.server_ids.clone();
            ctx.state.pins.refresh(&ctx.org, &servers).await;
            let tools: Vec<Value> = ctx
                .endpoint
                .snapshot
                .tools
                .iter()
                .filter(|t| ctx.may_call(t))
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
            client_wire.list_fields(&mut result);
            Answer::Value(result_value(&id, Value::Object(result)))
        }
        Method::ToolsCall => {
            let tool = request
                .tool
                .as_ref()
                .and_then(|t| t.callable(&ctx.endpoint))
                .map(|t| t.tool_id);
            let answer = call_tool(incoming, request).await;
            // A task the call created is its caller's; with several upstreams it is named after
            // its upstream.
            let answer = bind_created_task(ctx, tool, &id, answer).await;
            namespace_answer(ctx, answer)
        }
        // 2026-07-28 removed them (SEP-2663).
        Method::TasksList | Method::TasksResult if !client_wire.has_method(method.as_str()) => {
            method_not_found(method.as_str())
        }
        Method::TasksList => list_tasks(incoming, request).await,
        Method::TasksGet | Method::TasksResult | Method::TasksCancel | Method::TasksUpdate => {
            forward_task_request(incoming, request).await
        }
        Method::PromptsList | Method::ResourcesList | Method::ResourcesTemplatesList => {
            let (grant, kind) = match method {
                Method::PromptsList => (&ctx.endpoint.snapshot.prompts, ListKind::Prompts),
                Method::ResourcesList => (&ctx.endpoint.snapshot.resources, ListKind::Resources),
                _ => (&ctx.endpoint.snapshot.resources, ListKind::ResourceTemplates),
            };
            match grant_allows(grant, &ctx.principal) {
                None => Answer::Error(McpError::method_not_found(method.as_str())),
                Some(Err(_)) => {
                    let mut result = Map::new();
                    result.insert(kind.key().into(), json!([]));
                    client_wire.list_fields(&mut result);
                    Answer::Value(result_value(&id, Value::Object(result)))
                }
                Some(Ok(())) => {
                    aggregate_list(ctx, client_wire, session, &request.message, &request.cursor, kind).await
                }
            }
        }
        Method::PromptsGet
        | Method::ResourcesRead
        | Method::ResourcesSubscribe
        | Method::ResourcesUnsubscribe
        | Method::CompletionComplete => {
            let grant = if names_prompt(&request) {
                &ctx.endpoint.snapshot.prompts
            } else {
                &ctx.endpoint.snapshot.resources
            };
            match grant_allows(grant, &ctx.principal) {
                None => Answer::Error(McpError::method_not_found(method.as_str())),
                Some(Err(scope)) => {
                    let required = std::slice::from_ref(&scope);
                    // The scope is named only if any caller may know it (see `nameable`).
                    let (description, message) = if resource::nameable(&ctx.endpoint, required).is_empty() {
                        (
                            format!("{method} requires a scope this token lacks"),
                            "Forbidden: insufficient scope".to_owned(),
                        )
                    } else {
                        (
                            format!("{method} requires scope {scope}"),
                            format!("Forbidden: insufficient scope ({scope} required)"),
                        )
                    };
                    let refusal = McpError::InsufficientScope {
                        message,
                        challenge: resource::insufficient_scope(
                            &ctx.metadata_url,
                            &ctx.endpoint,
                            required,
                            &description,
                        ),
                    };
                    refusal.finish(ctx.record(
                        method.as_str(),
                        request.named_target(),
                        None,
                        None,
                        request.bytes_in,
                    ));
                    Answer::Error(refusal)
                }
                Some(Ok(())) => forward_named(incoming, request).await,
            }
        }
        Method::LoggingSetLevel => {
            if let Some(session) = session {
                // The stateless revision has no logging level to set.
                let body = Bytes::from(serde_json::to_vec(&request.message.value).expect("json"));
                let id = &id;
                fan_out(ctx, session_wire_upstreams(session), |server, upstream| {
                    let body = body.clone();
                    async move {
                        let call = UpstreamCall::in_session(ctx, &server, upstream);
                        let _ = call.request(&ctx.state.upstreams, body, id).await;
                    }
                })
                .await;
            }
            Answer::Value(result_value(&id, json!({})))
        }
        Method::ServerDiscover => discover(ctx, request.message).await,
        Method::SubscriptionsListen => {
            narrow_listen_to_grants(ctx, &mut request.message);
            to_upstreams(incoming, request).await
        }
        // Skills (SEP-2640) are resources: the endpoint's resource grant decides.
        Method::SkillsList | Method::SkillsGet | Method::ResourcesDirectoryRead => {
            match grant_allows(&ctx.endpoint.snapshot.resources, &ctx.principal) {
                Some(Ok(())) => to_upstreams(incoming, request).await,
                None | Some(Err(_)) => method_not_found(method.as_str()),
            }
        }
        // A vendor method passes only where the endpoint lists it.
        method if extra_method_allowed(&ctx.endpoint.snapshot.extra_methods, method.as_str()) => {
            to_upstreams(incoming, request).await
        }
        _ => method_not_found(method.as_str()),
    }
}

fn method_not_found(method: &str) -> Answer {
    Answer::Error(McpError::method_not_found(method))
}

/// A request the endpoint does not serve itself: to its only upstream as it is, or, with
/// several, to the ones [`dispatch_among_several`] can tell it belongs to.
async fn to_upstreams(incoming: Incoming<'_>, request: McpRequest) -> Answer {
    let ctx = incoming.ctx;
    if let [target] = ctx.endpoint.server_ids[..] {
        let record = ctx.record(
            request.method.as_str(),
            None,
            Some(target),
            None,
            request.bytes_in,
        );
        forward_request(incoming, request.message, Some(target), Some(record), None).await
    } else {
        dispatch_among_several(incoming, request).await
    }
}

/// `subscriptions/listen` asks upstreams only for what the caller may see: resource subscriptions
/// and resource list changes need the endpoint's resource grant, prompt list changes its prompt
/// grant. (Tool lists are filtered per caller on every `tools/list`, so their change notice
/// reveals nothing.) What is left out is simply not acknowledged.
fn narrow_listen_to_grants(ctx: &Ctx, message: &mut Message) {
    let may = |grant| matches!(grant_allows(grant, &ctx.principal), Some(Ok(())));
    let (resources, prompts) = (
        may(&ctx.endpoint.snapshot.resources),
        may(&ctx.endpoint.snapshot.prompts),
    );
    let Some(notifications) = message
        .params_mut()
        .and_then(|p| p.get_mut("notifications"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if !resources {
        notifications.remove("resourceSubscriptions");
        notifications.remove("resourcesListChanged");
    }
    if !prompts {
        notifications.remove("promptsListChanged");
    }
}

/// The methods beyond the endpoint's own that can still be routed with several upstreams:
/// `subscriptions/listen` (to all; tasks are routed by their namespaced ids in `tasks`). Nobody
/// can tell whose anything else is.
async fn dispatch_among_several(incoming: Incoming<'_>, request: McpRequest) -> Answer {
    let ctx = incoming.ctx;
    match &request.method {
        Method::SubscriptionsListen if !ctx.endpoint.server_ids.is_empty() => {
            listen(incoming, request.message, request.bytes_in).await
        }
        method => method_not_found(method.as_str()),
    }
}

/// A prompt or resource request (its grant was checked) to the upstream that owns it.
async fn forward_named(incoming: Incoming<'_>, mut request: McpRequest) -> Answer {
    let Incoming {
        ctx,
        client_wire,
        session,
        ..
    } = incoming;
    let name = request.named_target().map(str::to_owned);
    let target = if names_prompt(&request) || ctx.endpoint.server_ids.len() <= 1 {
        route_named(ctx, &mut request)
    } else {
        match route_resource(ctx, client_wire, session, &request).await {
            Ok(target) => Some(target),
            Err(error) => {
                error.finish(ctx.record(
                    request.method.as_str(),
                    name.as_deref(),
                    None,
                    None,
                    request.bytes_in,
                ));
                return Answer::Error(error);
            }
        }
    };
    let record = ctx.record(
        request.method.as_str(),
        name.as_deref(),
        target,
        None,
        request.bytes_in,
    );
    forward_request(incoming, request.message, target, Some(record), None).await
}

/// Whether a request names a prompt (`prompts/get`, or a completion of a `ref/prompt`) rather
/// than a resource.
fn names_prompt(request: &McpRequest) -> bool {
    matches!(request.named, Some(Named::Prompt(_)))
}

/// With several upstreams: the owner of the URI a resource request names, or the JSON-RPC error
/// to answer (-32002 when nobody serves it; never a guess).
async fn route_resource(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    request: &McpRequest,
) -> Result<ServerId, McpError> {
    let Some(Named::Resource(Some(uri))) = &request.named else {
        return Err(McpError::protocol(
            jsonrpc::INVALID_PARAMS,
            "Invalid params: a resource URI is required",
        ));
    };
    resource_owner(ctx, client_wire, session, &request.message, uri)
        .await
        .map_err(|why| match why {
            Unrouted::NotFound => McpError::protocol_with(
                jsonrpc::RESOURCE_NOT_FOUND,
                "Resource not found",
                json!({"uri": uri}),
            ),
            Unrouted::Unavailable => {
                McpError::protocol(jsonrpc::SERVER_ERROR, "Upstream servers unavailable")
            }
        })
}

/// The server a prompt request (or, with one upstream, any request naming something) goes to.
/// With several servers, prompts are namespaced like tools (`<server slug>__<name>`; the prefix
/// is removed here).
fn route_named(ctx: &Ctx, request: &mut McpRequest) -> Option<ServerId> {
    let servers = &ctx.endpoint.server_ids;
    if servers.len() <= 1 {
        return servers.first().copied();
    }
    let Some(Named::Prompt(Some(name))) = &request.named else {
        return None;
    };
    let (slug, rest) = name.split_once(gatehouse_core::snapshot::TOOL_NAMESPACE_SEPARATOR)?;
    let server = ctx.server_by_slug(slug)?;
    let rest = json!(rest);
    let is_get = request.method == Method::PromptsGet;
    let params = request.message.params_mut()?;
    if is_get {
        params.insert("name".into(), rest);
    } else if let Some(r) = params.get_mut("ref").and_then(Value::as_object_mut) {
        r.insert("name".into(), rest);
    }
    Some(server)
}
