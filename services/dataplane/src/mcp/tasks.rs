//! Tasks (Tasks extension): bound to their creator, and namespaced at endpoints with several
//! upstreams.
//!
//! - Binding: when an upstream answers a `tools/call` with a task, its creator (org, endpoint,
//!   subject, tool) is recorded in [`crate::task_owners`]. `tasks/get`, `tasks/result`,
//!   `tasks/cancel` and `tasks/update` reach the upstream only for that subject, and only while
//!   it may still call that tool (grants checked against the current snapshot); anything else is
//!   "Unknown task", as for a task that does not exist. `tasks/list` shows only such tasks.
//! - Namespacing: each upstream names its own tasks, so with several upstreams the client sees
//!   them namespaced like tools, `<server slug>__<upstream task id>`: in the answers that create
//!   tasks (JSON or streamed), in `tasks/*` results, in `tasks/list` (aggregated) and in task
//!   status notifications. A `tasks/*` request is routed by that prefix, which is removed on the
//!   way. With one upstream ids pass as they came.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use gatehouse_core::ids::{ServerId, ToolId};
use gatehouse_core::snapshot::{TOOL_NAMESPACE_SEPARATOR, namespaced_tool_name};

use crate::jsonrpc::{self, Message};
use crate::task_owners::{TaskKey, TaskOwner, TaskOwners};
use crate::upstream::{Reply, SseEvents};

use super::aggregate::{ListKind, aggregate_list, list_answer, list_page};
use super::context::{Ctx, Incoming};
use super::error::{MISSING_REQUIRED_CLIENT_CAPABILITY, McpError};
use super::forward::forward_request;
use super::outcome::Answer;
use super::request::McpRequest;

/// The `_meta` key naming the task a message belongs to (2025-11-25).
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// The Tasks extension, as clients declare it (`capabilities.extensions`).
const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a 2026-07-28 request declares the Tasks extension among its client capabilities.
fn declares_tasks(message: &Message) -> bool {
    message
        .meta_client_capabilities()
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some()
}

/// Whether task ids are namespaced at this endpoint.
pub(super) fn namespaces_tasks(ctx: &Ctx) -> bool {
    ctx.endpoint.server_ids.len() > 1
}

/// A `tasks/*` request naming a task (`tasks/get`, `tasks/result`, `tasks/cancel`,
/// `tasks/update`): to the upstream that holds it (with several, the one its id names), only for
/// the subject that created it while it may still call the tool that did.
pub(super) async fn forward_task_request(incoming: Incoming<'_>, request: McpRequest) -> Answer {
    let ctx = incoming.ctx;
    let McpRequest {
        mut message,
        method,
        bytes_in,
        task_id,
        ..
    } = request;
    // 2026-07-28: a client that did not declare the extension has no tasks (SEP-2663), whoever
    // created the one it names.
    if incoming.client_wire.declares_tasks_per_request() && !declares_tasks(&message) {
        return Answer::Error(McpError::protocol_with(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            "Missing required client capability",
            json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}),
        ));
    }
    let located = task_id.and_then(|task_id| locate_task(ctx, &mut message, task_id));
    let served = match &located {
        Some((target, task_id)) => serves(ctx, *target, task_id).await,
        None => false,
    };
    let (Some((target, _)), true) = (located, served) else {
        // Not found, someone else's, or no longer callable: the same answer, so nothing is
        // learned about other callers' tasks.
        let refusal = McpError::denied(jsonrpc::INVALID_PARAMS, "Unknown task");
        refusal.finish(ctx.record(method.as_str(), None, None, None, bytes_in));
        return Answer::Error(refusal);
    };
    let record = ctx.record(method.as_str(), None, Some(target), None, bytes_in);
    let answer = forward_request(incoming, message, Some(target), Some(record), None).await;
    namespace_answer(ctx, answer)
}

/// The upstream and upstream task id the client's `task_id` names: with several upstreams by its
/// prefix (removed from the request's `params.taskId`), with one as it is.
fn locate_task(ctx: &Ctx, message: &mut Message, task_id: String) -> Option<(ServerId, String)> {
    if !namespaces_tasks(ctx) {
        return Some((*ctx.endpoint.server_ids.first()?, task_id));
    }
    let (slug, upstream_id) = task_id.split_once(TOOL_NAMESPACE_SEPARATOR)?;
    let server = ctx.server_by_slug(slug)?;
    let upstream_id = upstream_id.to_owned();
    message
        .params_mut()?
        .insert("taskId".into(), Value::String(upstream_id.clone()));
    Some((server, upstream_id))
}

fn task_key(ctx: &Ctx, server: ServerId, task_id: &str) -> TaskKey {
    TaskKey::new(ctx.org.snapshot.org_id, ctx.endpoint.id(), server, task_id)
}

/// Whether the caller may be served the task `task_id` of upstream `server`: it created it here,
/// and may still call the tool that did (granted now, and not withheld).
async fn serves(ctx: &Ctx, server: ServerId, task_id: &str) -> bool {
    let Some(owner) = ctx.state.tasks.owner(&task_key(ctx, server, task_id)).await else {
        return false;
    };
    owner.subject == ctx.principal.subject
        && ctx
            .endpoint
            .snapshot
            .tools
            .iter()
            .find(|t| t.tool_id == owner.tool)
            .is_some_and(|t| ctx.may_call(t))
}

/// `tasks/list`: the upstreams' lists (aggregated with several) with only the tasks the caller
/// is served ([`serves`]).
pub(super) async fn list_tasks(incoming: Incoming<'_>, request: McpRequest) -> Answer {
    let Incoming {
        ctx,
        client_wire,
        session,
        ..
    } = incoming;
    let id = request.id();
    let McpRequest { message, cursor, .. } = request;
    if namespaces_tasks(ctx) {
        let mut answer = aggregate_list(ctx, client_wire, session, &message, &cursor, ListKind::Tasks).await;
        if let Answer::Value(value) = &mut answer
            && let Some(items) = value
                .get_mut("result")
                .and_then(|r| r.get_mut("tasks"))
                .and_then(Value::as_array_mut)
        {
            let mut kept = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                let located = item
                    .get("taskId")
                    .and_then(Value::as_str)
                    .and_then(|t| t.split_once(TOOL_NAMESPACE_SEPARATOR))
                    .and_then(|(slug, task)| Some((ctx.server_by_slug(slug)?, task.to_owned())));
                if let Some((server, task)) = located
                    && serves(ctx, server, &task).await
                {
                    kept.push(item);
                }
            }
            *items = kept;
        }
        return answer;
    }
    let Some(server) = ctx.endpoint.server_ids.first().copied() else {
        return Answer::Error(McpError::protocol(
            jsonrpc::METHOD_NOT_FOUND,
            "Method not found: tasks/list",
        ));
    };
    let page = match list_page(
        ctx,
        client_wire,
        session,
        &message,
        ListKind::Tasks.key(),
        server,
        cursor.as_str(),
    )
    .await
    {
        Ok(page) => page,
        Err(Some(refusal)) => return Answer::Value(refusal),
        Err(None) => {
            return Answer::Error(McpError::protocol(
                jsonrpc::SERVER_ERROR,
                "Upstream server unavailable",
            ));
        }
    };
    let mut tasks = Vec::with_capacity(page.items.len());
    for item in page.items {
        if let Some(task) = item.get("taskId").and_then(Value::as_str)
            && serves(ctx, server, task).await
        {
            tasks.push(item);
        }
    }
    list_answer(&id, client_wire, ListKind::Tasks, tasks, page.next_cursor)
}

/// Records the creator of a task the answer to a `tools/call` of `tool` creates (request `id`),
/// before the client can learn the task's id: a JSON answer is recorded before it is returned, a
/// streamed one before its event is relayed.
pub(super) async fn bind_created_task(ctx: &Ctx, tool: Option<ToolId>, id: &Value, answer: Answer) -> Answer {
    let Some(tool) = tool else { return answer };
    let Answer::Upstream { reply, relay } = answer else {
        return answer;
    };
    let binding = Binding {
        owners: ctx.state.tasks.clone(),
        org: ctx.org.snapshot.org_id,
        endpoint: ctx.endpoint.id(),
        server: relay.server,
        owner: TaskOwner {
            subject: ctx.principal.subject.clone(),
            tool,
        },
        id: relay.upstream_id(id).clone(),
    };
    let reply = match reply {
        Reply::Json { body, session_id } => {
            binding.bind(&body).await;
            Reply::Json { body, session_id }
        }
        Reply::Stream { events, session_id } => {
            let binding = Arc::new(binding);
            let events: SseEvents = Box::pin(events.then(move |event| {
                let binding = binding.clone();
                async move {
                    if let Ok(event) = &event
                        && let Some(data) = event.data.as_deref()
                    {
                        binding.bind(data.as_bytes()).await;
                    }
                    event
                }
            }));
            Reply::Stream { events, session_id }
        }
        other => other,
    };
    Answer::Upstream { reply, relay }
}

/// What [`bind_created_task`] records, for the answer of one `tools/call`.
struct Binding {
    owners: TaskOwners,
    org: gatehouse_core::ids::OrgId,
    endpoint: gatehouse_core::ids::EndpointId,
    server: ServerId,
    owner: TaskOwner,
    /// The id of the `tools/call` upstream: only its response creates the task.
    id: Value,
}

impl Binding {
    async fn bind(&self, message: &[u8]) {
        if !mentions_task(message) {
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(message) else {
            return;
        };
        if value.get("id") != Some(&self.id) || value.get("method").is_some() {
            return;
        }
        if let Some(task) = created_task_id(&value) {
            let key = TaskKey::new(self.org, self.endpoint, self.server, task);
            self.owners.record(key, self.owner.clone()).await;
        }
    }
}

/// The task a response creates: `CreateTaskResult` as `{task: {taskId}}` (2025-11-25) or
/// flattened with `resultType: "task"` (SEP-2663).
fn created_task_id(response: &Value) -> Option<&str> {
    let result = response.get("result")?;
    if let Some(task) = result
        .get("task")
        .and_then(|t| t.get("taskId"))
        .and_then(Value::as_str)
    {
        return Some(task);
    }
    if result.get("resultType").and_then(Value::as_str) == Some("task") {
        return result.get("taskId").and_then(Value::as_str);
    }
    None
}

/// Namespaces the task ids in an upstream's answer (with several upstreams; otherwise the
/// answer is returned as it is).
pub(super) fn namespace_answer(ctx: &Ctx, answer: Answer) -> Answer {
    if !namespaces_tasks(ctx) {
        return answer;
    }
    let Answer::Upstream { reply, relay } = answer else {
        return answer;
    };
    let Some(server) = ctx.server(relay.server) else {
        return Answer::Upstream { reply, relay };
    };
    let slug: Arc<str> = server.snapshot.slug.as_str().into();
    let reply = match reply {
        Reply::Json { body, session_id } => Reply::Json {
            body: namespace_body(body, &slug),
            session_id,
        },
        Reply::Stream { events, session_id } => Reply::Stream {
            events: namespace_events(events, slug),
            session_id,
        },
        other => other,
    };
    Answer::Upstream { reply, relay }
}

/// An upstream's SSE events without the messages about tasks the caller is not served
/// ([`serves`]): task status notifications, and notifications or requests whose `_meta` names a
/// related task. Upstreams may send these to every session (the 2025 GET stream,
/// `subscriptions/listen`); only the task's creator receives them. Runs before the ids are
/// namespaced (they are the upstream's own here).
pub(super) fn only_served_tasks(ctx: &Ctx, server: ServerId, events: SseEvents) -> SseEvents {
    let ctx = Arc::new(ctx.clone());
    Box::pin(events.filter_map(move |event| {
        let ctx = ctx.clone();
        async move {
            let task = event
                .as_ref()
                .ok()
                .and_then(|e| e.data.as_deref())
                .filter(|data| mentions_task(data.as_bytes()))
                .and_then(|data| serde_json::from_str::<Value>(data).ok())
                .and_then(|message| task_named_by(&message).map(str::to_owned));
            match task {
                Some(task) if !serves(&ctx, server, &task).await => None,
                _ => Some(event),
            }
        }
    }))
}

/// The task a server-sent message is about: a task status notification's `taskId`, or the
/// related task in its `_meta` (responses are the caller's own and are not looked at).
fn task_named_by(message: &Value) -> Option<&str> {
    let method = message.get("method")?.as_str()?;
    let params = message.get("params")?;
    if method.starts_with("notifications/tasks")
        && let Some(id) = params.get("taskId").and_then(Value::as_str)
    {
        return Some(id);
    }
    params.get("_meta")?.get(RELATED_TASK)?.get("taskId")?.as_str()
}

/// An upstream's SSE events with the task ids in their messages namespaced.
pub(super) fn namespace_events(events: SseEvents, slug: Arc<str>) -> SseEvents {
    Box::pin(events.map(move |event| {
        event.map(|mut event| {
            if let Some(data) = event.data.as_deref()
                && mentions_task(data.as_bytes())
                && let Ok(mut value) = serde_json::from_str::<Value>(data)
            {
                namespace_message(&mut value, &slug);
                event.data = Some(serde_json::to_string(&value).expect("json"));
            }
            event
        })
    }))
}

fn namespace_body(body: Bytes, slug: &str) -> Bytes {
    if !mentions_task(&body) {
        return body;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    match &mut value {
        Value::Array(batch) => batch.iter_mut().for_each(|m| namespace_message(m, slug)),
        message => namespace_message(message, slug),
    }
    Bytes::from(serde_json::to_vec(&value).expect("json"))
}

/// A cheap test that spares parsing the messages that cannot name a task.
fn mentions_task(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"taskId").is_some()
}

/// Namespaces the task ids one JSON-RPC message carries: a result's task (`CreateTaskResult` as
/// `{task: {taskId}}` or flattened with `resultType: "task"`, `tasks/get` and `tasks/cancel`
/// results), `tasks/list` items, task status notifications, and `_meta` related-task references.
fn namespace_message(message: &mut Value, slug: &str) {
    if let Some(result) = message.get_mut("result") {
        prefix(result, "taskId", slug);
        if let Some(task) = result.get_mut("task") {
            prefix(task, "taskId", slug);
        }
        if let Some(tasks) = result.get_mut("tasks").and_then(Value::as_array_mut) {
            tasks.iter_mut().for_each(|t| prefix(t, "taskId", slug));
        }
        related_task(result, slug);
    }
    let is_status = message
        .get("method")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("notifications/tasks"));
    if let Some(params) = message.get_mut("params") {
        if is_status {
            prefix(params, "taskId", slug);
        }
        related_task(params, slug);
    }
}

fn related_task(object: &mut Value, slug: &str) {
    if let Some(related) = object.get_mut("_meta").and_then(|m| m.get_mut(RELATED_TASK)) {
        prefix(related, "taskId", slug);
    }
}

fn prefix(object: &mut Value, field: &str, slug: &str) {
    if let Some(id) = object.get(field).and_then(Value::as_str) {
        object[field] = json!(namespaced_tool_name(slug, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaced(mut message: Value) -> Value {
        namespace_message(&mut message, "b");
        message
    }

    #[test]
    fn every_shape_that_names_a_task() {
        // 2025-11-25 CreateTaskResult.
        let created = namespaced(json!({"id": 1, "result": {"task": {"taskId": "t1", "status": "working"}}}));
        assert_eq!(created["result"]["task"]["taskId"], "b__t1");
        // SEP-2663 CreateTaskResult and tasks/get results: flattened.
        let flat = namespaced(json!({"id": 1, "result": {"resultType": "task", "taskId": "t1"}}));
        assert_eq!(flat["result"]["taskId"], "b__t1");
        let list = namespaced(json!({"id": 1, "result": {"tasks": [{"taskId": "t1"}, {"taskId": "t2"}]}}));
        assert_eq!(list["result"]["tasks"][1]["taskId"], "b__t2");
        let result = namespaced(json!({"id": 1, "result": {"content": [],
            "_meta": {RELATED_TASK: {"taskId": "t1"}}}}));
        assert_eq!(result["result"]["_meta"][RELATED_TASK]["taskId"], "b__t1");
        let status = namespaced(json!({"method": "notifications/tasks/status", "params": {"taskId": "t1"}}));
        assert_eq!(status["params"]["taskId"], "b__t1");
        let elicit = namespaced(json!({"method": "elicitation/create", "id": 3, "params": {
            "taskId": "not a task reference", "_meta": {RELATED_TASK: {"taskId": "t1"}}}}));
        assert_eq!(elicit["params"]["_meta"][RELATED_TASK]["taskId"], "b__t1");
        assert_eq!(elicit["params"]["taskId"], "not a task reference");
    }

    #[test]
    fn what_creates_a_task() {
        let nested = json!({"id": 1, "result": {"task": {"taskId": "t1", "status": "working"}}});
        assert_eq!(created_task_id(&nested), Some("t1"));
        let flat = json!({"id": 1, "result": {"resultType": "task", "taskId": "t2"}});
        assert_eq!(created_task_id(&flat), Some("t2"));
        // A tool result that merely mentions a task does not create one.
        let mention = json!({"id": 1, "result": {"content": [], "taskId": "t3"}});
        assert_eq!(created_task_id(&mention), None);
        let related = json!({"id": 1, "result": {"content": [], "_meta": {RELATED_TASK: {"taskId": "t4"}}}});
        assert_eq!(created_task_id(&related), None);
    }

    #[test]
    fn bodies_without_tasks_pass_untouched() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
        assert_eq!(namespace_body(body.clone(), "b"), body);
    }
}
