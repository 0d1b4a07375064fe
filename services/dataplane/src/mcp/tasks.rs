//! Task ids at an endpoint with several upstreams. Each upstream names its own tasks, so the
//! client sees them namespaced like tools, `<server slug>__<upstream task id>`: in the answers
//! that create tasks (JSON or streamed), in `tasks/*` results, in `tasks/list` (aggregated) and in
//! task status notifications. A `tasks/*` request is routed by that prefix, which is removed on
//! the way. With one upstream nothing here runs: replies pass as they came, unparsed.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::{TOOL_NAMESPACE_SEPARATOR, namespaced_tool_name};
use gatehouse_events::CallOutcome;

use crate::jsonrpc::{self, Message};
use crate::upstream::{Reply, SseEvents};

use super::calls::forward_request;
use super::dispatch::Answer;
use super::{Ctx, Incoming};

/// The `_meta` key naming the task a message belongs to (2025-11-25).
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Whether task ids are namespaced at this endpoint.
pub(super) fn namespaces_tasks(ctx: &Ctx) -> bool {
    ctx.endpoint.server_ids.len() > 1
}

/// A `tasks/*` request naming a task (`tasks/get`, `tasks/result`, `tasks/cancel`,
/// `tasks/update`) at an endpoint with several upstreams: to the upstream its id names.
pub(super) async fn forward_task_request(
    incoming: Incoming<'_>,
    mut message: Message,
    bytes_in: u64,
) -> Answer {
    let ctx = incoming.ctx;
    let id = message.id().cloned().unwrap_or(Value::Null);
    let method = message.method().to_owned();
    let Some(target) = route_task(ctx, &mut message) else {
        ctx.record(&method, None, None, None, bytes_in)
            .finish(CallOutcome::Error, Some(jsonrpc::INVALID_PARAMS));
        return Answer::Value(jsonrpc::error_body(
            Some(&id),
            jsonrpc::INVALID_PARAMS,
            "Unknown task",
            None,
        ));
    };
    let record = ctx.record(&method, None, Some(target), None, bytes_in);
    let answer = forward_request(incoming, message, Some(target), Some(record)).await;
    namespace_answer(ctx, answer)
}

/// The upstream named by `params.taskId`'s prefix; the prefix is removed from the request.
fn route_task(ctx: &Ctx, message: &mut Message) -> Option<ServerId> {
    let task_id = message.param_str("taskId")?;
    let (slug, upstream_id) = task_id.split_once(TOOL_NAMESPACE_SEPARATOR)?;
    let server = ctx.server_by_slug(slug)?;
    let upstream_id = Value::String(upstream_id.to_owned());
    message.params_mut()?.insert("taskId".into(), upstream_id);
    Some(server)
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
    data.windows(6).any(|w| w == b"taskId")
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
    fn bodies_without_tasks_pass_untouched() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
        assert_eq!(namespace_body(body.clone(), "b"), body);
    }
}
