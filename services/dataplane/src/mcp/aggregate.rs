//! Requests answered across all of an endpoint's upstreams: the prompt, resource and task lists
//! (composite cursors with several upstreams), `server/discover`, and the capability merging and
//! filtering `initialize` shares.

use serde_json::{Map, Value, json};

use gatehouse_core::ids::ServerId;

use crate::jsonrpc::{self, Message};
use crate::owners::Listing;
use crate::session::Session;

use super::bridge::{self, Unroutable};
use super::context::{ClientWire, Ctx, all_versions, cacheable_result_fields};
use super::cursor::{Position, Walk};
use super::error::McpError;
use super::outcome::{Answer, result_value};
use super::request::Cursor;
use super::upstream_calls::fan_out;

/// The lists answered across the endpoint's upstreams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListKind {
    Prompts,
    Resources,
    ResourceTemplates,
    Tasks,
}

impl ListKind {
    pub(super) fn method(self) -> &'static str {
        match self {
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Tasks => "tasks/list",
        }
    }

    /// The result field holding the items.
    pub(super) fn key(self) -> &'static str {
        match self {
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Tasks => "tasks",
        }
    }

    /// The item field shown as `<server slug>__<value>` with several upstreams (resource URIs
    /// are never rewritten: they are meaningful to clients).
    fn namespaced_field(self) -> Option<&'static str> {
        match self {
            ListKind::Prompts => Some("name"),
            ListKind::Tasks => Some("taskId"),
            ListKind::Resources | ListKind::ResourceTemplates => None,
        }
    }

    fn is_resources(self) -> bool {
        matches!(self, ListKind::Resources | ListKind::ResourceTemplates)
    }
}

/// One page of an upstream's list.
pub(super) struct Page {
    pub(super) items: Vec<Value>,
    pub(super) next_cursor: Option<String>,
}

/// Asks `server_id` for the page of `message`'s list after `cursor` (the first without one).
/// An error when the upstream did not answer with a list: its JSON-RPC error response if it
/// sent one, `None` if it could not be asked or answered nothing usable.
pub(super) async fn list_page(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
    key: &str,
    server_id: ServerId,
    cursor: Option<&str>,
) -> Result<Page, Option<Value>> {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let mut value = message.value.clone();
    if !value.get("params").is_some_and(Value::is_object) {
        value["params"] = json!({});
    }
    match cursor {
        Some(cursor) => value["params"]["cursor"] = json!(cursor),
        None => {
            if let Some(params) = value["params"].as_object_mut() {
                params.remove("cursor");
            }
        }
    }
    let server = ctx.server(server_id).ok_or(None)?.clone();
    let message = Message {
        value,
        kind: message.kind,
    };
    // A list left out because its upstream failed still gives the client an answer (the other
    // upstreams' items), so the operator is told here: a warning and
    // `gatehouse_dataplane_upstream_list_failures_total`.
    let failed = |reason: &str| {
        tracing::warn!(server_id = %server_id, method = message.method(), reason, "upstream list left out of the answer");
        metrics::counter!("gatehouse_dataplane_upstream_list_failures_total").increment(1);
    };
    let upstreams = &ctx.state.upstreams;
    let reply = match bridge::send(ctx, client_wire, session, &server, &message, None, None).await {
        Ok((reply, _)) => upstreams.answer_of(reply, &id).await,
        Err(Unroutable::Upstream(e)) => Err(e),
        Err(Unroutable::NotInSession | Unroutable::UnknownRequestState) => {
            failed("not in the client's session");
            return Err(None);
        }
    };
    let (reply, _) = reply.map_err(|e| {
        failed(&e.to_string());
        None
    })?;
    let Some(result) = reply.get("result") else {
        // A JSON-RPC error (e.g. method not found from a server without prompts) is the upstream's
        // own answer, not a failure.
        if reply.get("error").is_some() {
            return Err(Some(reply));
        }
        failed("the answer holds neither a result nor an error");
        return Err(None);
    };
    let Some(items) = result.get(key).and_then(Value::as_array) else {
        failed("the result holds no list");
        return Err(None);
    };
    Ok(Page {
        items: items.clone(),
        next_cursor: result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `prompts/list`, `resources/list`, `resources/templates/list` (and, with several upstreams,
/// `tasks/list`) across the endpoint's upstreams. With several, each upstream is walked with
/// its own cursor inside a composite one ([`Walk`]); with one, cursors pass through.
pub(super) async fn aggregate_list(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
    cursor: &Cursor,
    kind: ListKind,
) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    if ctx.endpoint.server_ids.len() <= 1 {
        let page = match ctx.endpoint.server_ids.first() {
            Some(server) => list_page(
                ctx,
                client_wire,
                session,
                message,
                kind.key(),
                *server,
                cursor.as_str(),
            )
            .await
            .ok(),
            None => None,
        };
        let page = page.unwrap_or(Page {
            items: vec![],
            next_cursor: None,
        });
        return list_answer(&id, client_wire, kind, page.items, page.next_cursor);
    }
    let walk = match cursor {
        Cursor::Absent => None,
        Cursor::Given(cursor) => Walk::decode(cursor),
        Cursor::Malformed => None,
    };
    if walk.is_none() && *cursor != Cursor::Absent {
        return Answer::Error(McpError::protocol(
            jsonrpc::INVALID_PARAMS,
            "Invalid params: unknown cursor",
        ));
    }
    let walked = walk_upstreams(ctx, client_wire, session, message, kind, walk.as_ref()).await;
    // Lists the endpoint exposes itself are lists even when no upstream answers; a task list
    // nobody serves (2026-07-28 removed `tasks/list`) is the upstreams' own refusal.
    if kind == ListKind::Tasks
        && !walked.answered
        && let Some(refusal) = walked.refusal
    {
        return Answer::Value(refusal);
    }
    list_answer(&id, client_wire, kind, walked.items, walked.next.encode())
}

/// What one step of a walk through the upstreams' lists produced.
struct Walked {
    /// The items, namespaced where the kind says so, in the endpoint's order of upstreams.
    items: Vec<Value>,
    /// The walk to continue with.
    next: Walk,
    /// Whether any upstream answered with a list.
    answered: bool,
    /// The first upstream error response.
    refusal: Option<Value>,
}

/// One page from every upstream the walk has not finished.
async fn walk_upstreams(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
    kind: ListKind,
    walk: Option<&Walk>,
) -> Walked {
    let ranked = ctx
        .endpoint
        .server_ids
        .iter()
        .enumerate()
        .map(|(rank, s)| (*s, rank));
    let calls = fan_out(ctx, ranked, |server, rank| async move {
        let (server_id, slug) = (server.snapshot.id, server.snapshot.slug.clone());
        let cursor = match Walk::position(walk, &slug) {
            Position::Start => None,
            Position::At(cursor) => Some(cursor),
            Position::Done => return None,
        };
        let page = list_page(
            ctx,
            client_wire,
            session,
            message,
            kind.key(),
            server_id,
            cursor.as_deref(),
        );
        Some((rank, server_id, slug, page.await))
    });
    let mut walked = Walked {
        items: Vec::new(),
        next: Walk::default(),
        answered: false,
        refusal: None,
    };
    let now = std::time::Instant::now();
    for (rank, server, slug, page) in calls.await.into_iter().flatten() {
        // An upstream that failed mid-walk is left out of the rest of it.
        let page = match page {
            Ok(page) => page,
            Err(refusal) => {
                walked.refusal = walked.refusal.or(refusal);
                continue;
            }
        };
        walked.answered = true;
        if kind.is_resources() {
            let listing = listing_of(server, rank, &page.items);
            ctx.endpoint.resource_owners.learn_page(&listing, now);
        }
        if let Some(cursor) = page.next_cursor {
            walked.next.insert(&slug, cursor);
        }
        let items = page
            .items
            .into_iter()
            .map(|item| namespace_item(kind, &slug, item));
        walked.items.extend(items);
    }
    walked
}

/// The resource URIs and templates in a page of `resources/list` or `resources/templates/list`.
pub(super) fn listing_of(server: ServerId, rank: usize, items: &[Value]) -> Listing {
    let field = |key: &str| -> Vec<String> {
        items
            .iter()
            .filter_map(|item| item.get(key).and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    Listing {
        server,
        rank,
        uris: field("uri"),
        templates: field("uriTemplate"),
    }
}

fn namespace_item(kind: ListKind, slug: &str, mut item: Value) -> Value {
    if let Some(field) = kind.namespaced_field()
        && let Some(value) = item.get(field).and_then(Value::as_str)
    {
        item[field] = json!(gatehouse_core::snapshot::namespaced_tool_name(slug, value));
    }
    item
}

pub(super) fn list_answer(
    id: &Value,
    client_wire: ClientWire,
    kind: ListKind,
    items: Vec<Value>,
    next: Option<String>,
) -> Answer {
    let mut result = Map::new();
    result.insert(kind.key().into(), Value::Array(items));
    if let Some(next) = next {
        result.insert("nextCursor".into(), json!(next));
    }
    client_wire.list_fields(&mut result);
    Answer::Value(result_value(id, Value::Object(result)))
}

/// `server/discover`, answered by the dataplane from the endpoint's configuration: its own server
/// info and revisions, and the capabilities its upstreams declared (learned in each one's own
/// wire, `upstream::Learned`) that the endpoint exposes.
pub(super) async fn discover(ctx: &Ctx, message: Message) -> Answer {
    let id = message.id().cloned().unwrap_or(Value::Null);
    let upstreams = &ctx.state.upstreams;
    let servers = ctx.endpoint.server_ids.iter().map(|s| (*s, ()));
    let learning = fan_out(ctx, servers, |server, ()| async move {
        match upstreams.learned(&server, Some(ctx.caller())).await {
            Ok(learned) => Some(learned),
            Err(e) => {
                tracing::warn!(server_id = %server.snapshot.id, error = %e, "upstream could not be asked what it serves");
                None
            }
        }
    });
    let learned: Vec<_> = learning.await.into_iter().flatten().collect();
    if learned.is_empty() && !ctx.endpoint.server_ids.is_empty() {
        return Answer::Error(McpError::protocol(
            jsonrpc::SERVER_ERROR,
            "Upstream servers unavailable",
        ));
    }
    let mut result = json!({"capabilities": {}});
    for upstream in &learned {
        merge_capabilities(&mut result, &json!({"capabilities": upstream.capabilities}));
    }
    let instructions: Vec<&str> = learned.iter().filter_map(|l| l.instructions.as_deref()).collect();
    if !instructions.is_empty() {
        result["instructions"] = json!(instructions.join("\n\n"));
    }
    // 2026-07-28 results identify the server in `_meta` (a `ResultMetaObject`).
    result["_meta"] = json!({"io.modelcontextprotocol/serverInfo": endpoint_server_info(ctx)});
    result["supportedVersions"] = json!(all_versions());
    filter_capabilities(ctx, &mut result);
    let mut result = match result {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    cacheable_result_fields(&mut result);
    Answer::Value(result_value(&id, Value::Object(result)))
}

/// The endpoint's own server info.
pub(super) fn endpoint_server_info(ctx: &Ctx) -> Value {
    json!({
        "name": format!("gatehouse/{}/{}", ctx.org.snapshot.slug, ctx.endpoint.snapshot.slug),
        "title": ctx.endpoint.snapshot.name,
        "version": env!("CARGO_PKG_VERSION"),
    })
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
