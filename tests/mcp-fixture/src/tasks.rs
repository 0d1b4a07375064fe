//! Tools of the Tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`).
//!
//! A task-supporting tool answers a client that declared the extension with
//! a `CreateTaskResult` and keeps working in the background; the client polls
//! `tasks/get`, answers input requests with `tasks/update` and may
//! `tasks/cancel`. rmcp's [`TaskManager`] keeps the task records; these
//! functions are the work the tasks do.

use std::{future::Future, time::Duration};

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock,
        CreateTaskResult, InputRequest, JsonObject, TaskPayload, TaskStatus,
    },
    service::RequestContext,
    task_manager::{TaskContext, TaskExit, TaskOptions},
};
use serde_json::{Value, json};

use crate::{
    catalog::tool,
    handler::FixtureServer,
    inputs::{Ask, elicited_text},
    state::ChangeEvent,
};

/// `slow_compute` refuses to sleep longer than this.
const MAX_COMPUTE_SECONDS: u64 = 600;
/// How long the failing jobs pretend to work before they fail.
const JOB_DURATION: Duration = Duration::from_secs(1);
/// How often a running task is checked to announce its terminal status.
const STATUS_POLL: Duration = Duration::from_millis(50);

fn declared_tasks(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks())
}

/// The `-32021` error for a tool that can only run as a task.
fn tasks_required() -> ErrorData {
    ErrorData::missing_required_client_capability(ClientCapabilities::builder().enable_tasks().build())
}

fn text_result(message: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(message)])
}

/// A yes/no elicitation as an input request a task can park on.
fn confirmation(message: &str) -> Result<InputRequest, ErrorData> {
    serde_json::from_value(json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "confirm": { "type": "boolean" },
                    "name": { "type": "string" }
                },
                "required": ["confirm"]
            }
        }
    }))
    .map_err(|error| ErrorData::internal_error(format!("bad input request: {error}"), None))
}

fn arguments_of(request: &CallToolRequestParams) -> JsonObject {
    request.arguments.clone().unwrap_or_default()
}

impl FixtureServer {
    /// Run `work` as a task and hand back its `CreateTaskResult`.
    fn start_task<F, Fut>(&self, work: F) -> CallToolResponse
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = Result<CallToolResult, TaskExit>> + Send + 'static,
    {
        let task = self
            .state
            .tasks
            .spawn(TaskOptions::new(), |context| Box::pin(work(context)));
        self.state
            .task_ids
            .lock()
            .expect("task ids poisoned")
            .push(task.task_id.clone());
        self.announce_when_settled(task.task_id.clone());
        CreateTaskResult::new(task).into()
    }

    /// Sends a task status notification (SEP-2663 `notifications/tasks`) to the 2025-era
    /// sessions once the task is completed, failed or cancelled, with the task as `tasks/get`
    /// shows it then (so a client that reacts with `tasks/get` finds it settled).
    fn announce_when_settled(&self, task_id: String) {
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATUS_POLL).await;
                let Ok(detailed) = state.tasks.get_task(&task_id) else {
                    return;
                };
                if matches!(
                    detailed.task.status,
                    TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
                ) {
                    state.publish(ChangeEvent::TaskStatus(Box::new(detailed)));
                    return;
                }
            }
        });
    }

    /// Dispatch the Tasks-extension tools; `None` if `request` names none.
    pub(crate) async fn run_task_tool(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        let arguments = arguments_of(request);
        let response = match request.name.as_ref() {
            tool::GREET => {
                let name = arguments.get("name").and_then(Value::as_str).unwrap_or("World");
                Ok(text_result(format!("Hello, {name}!")).into())
            }
            tool::SLOW_COMPUTE => self.slow_compute(&arguments, context).await,
            tool::FAILING_JOB => {
                if !declared_tasks(context) {
                    return Some(Err(tasks_required()));
                }
                Ok(self.start_task(|_| async {
                    tokio::time::sleep(JOB_DURATION).await;
                    Ok(CallToolResult::error(vec![ContentBlock::text(
                        "failing_job ran and reported a tool execution error",
                    )]))
                }))
            }
            tool::PROTOCOL_ERROR_JOB => {
                if !declared_tasks(context) {
                    return Some(Err(tasks_required()));
                }
                Ok(self.start_task(|_| async {
                    tokio::time::sleep(JOB_DURATION).await;
                    Err(TaskExit::Error(ErrorData::internal_error(
                        "protocol_error_job hit an internal server failure",
                        None,
                    )))
                }))
            }
            tool::CONFIRM_DELETE => self.confirm_delete(&arguments, context),
            tool::MULTI_INPUT => self.multi_input(context),
            tool::TOOL_WITH_TASK => self.gather_then_task(request, context).await,
            _ => return None,
        };
        Some(response)
    }

    /// Sleeps `seconds`, as a task when the client declared the extension and
    /// synchronously otherwise. A running task settles as `cancelled` when
    /// `tasks/cancel` arrives.
    async fn slow_compute(
        &self,
        arguments: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let seconds = arguments.get("seconds").and_then(Value::as_u64).unwrap_or(1);
        if seconds > MAX_COMPUTE_SECONDS {
            return Err(ErrorData::invalid_params(
                format!("seconds must be at most {MAX_COMPUTE_SECONDS}"),
                None,
            ));
        }
        let label = arguments
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or("unlabelled")
            .to_owned();
        let work = Duration::from_secs(seconds);
        let finished = move || text_result(format!("slow_compute '{label}' finished after {seconds}s"));
        if !declared_tasks(context) {
            tokio::time::sleep(work).await;
            return Ok(finished().into());
        }
        Ok(self.start_task(move |task| async move {
            tokio::select! {
                () = task.cancelled() => Err(TaskExit::Cancelled),
                () = tokio::time::sleep(work) => Ok(finished()),
            }
        }))
    }

    /// Parks on one confirmation, then reports the decision.
    fn confirm_delete(
        &self,
        arguments: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !declared_tasks(context) {
            return Err(tasks_required());
        }
        let filename = arguments
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorData::invalid_params("missing string argument `filename`", None))?
            .to_owned();
        let question = confirmation(&format!("Delete {filename}?"))?;
        Ok(self.start_task(move |task| async move {
            let answer = task.request_input("confirm_delete", question).await?;
            let confirmed = elicited_text(&answer, "confirm").is_some_and(|value| value == "true");
            Ok(text_result(if confirmed {
                format!("Deletion of {filename} confirmed")
            } else {
                format!("Deletion of {filename} was not confirmed")
            }))
        }))
    }

    /// Parks on two questions at once, so a client can answer them one by one.
    fn multi_input(&self, context: &RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        if !declared_tasks(context) {
            return Err(tasks_required());
        }
        let first = confirmation("First input: confirm and give a name")?;
        let second = confirmation("Second input: confirm and give a name")?;
        Ok(self.start_task(move |task| async move {
            let (first, second) = tokio::join!(
                task.request_input("first", first),
                task.request_input("second", second)
            );
            let (first, second) = (first?, second?);
            let name_of =
                |answer: &Value| elicited_text(answer, "name").unwrap_or_else(|| "anonymous".into());
            Ok(text_result(format!(
                "Received inputs from {} and {}",
                name_of(&first),
                name_of(&second)
            )))
        }))
    }

    /// Gathers the user's name through MRTR rounds, then does the rest of the
    /// work as a task (the SEP-2663 MRTR-to-task composition).
    async fn gather_then_task(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !declared_tasks(context) {
            return Err(tasks_required());
        }
        let mut round = self.tool_input_round(tool::TOOL_WITH_TASK, request, context)?;
        let asks = vec![Ask::form(
            "user_name",
            "What is your name?",
            json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"]
            }),
        )];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let name = elicited_text(&answers["user_name"], "name").unwrap_or_else(|| "friend".into());
        Ok(self.start_task(move |_| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(text_result(format!("Hello, {name}! Your task is done.")))
        }))
    }
}

/// How long `tasks/result` waits for a task to settle.
const RESULT_WAIT: Duration = Duration::from_secs(30);
/// The `_meta` key naming the task a result belongs to (2025-11-25).
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

fn task_id_param(params: Option<&Value>) -> Result<String, ErrorData> {
    params
        .and_then(|p| p.get("taskId"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_params("missing string parameter `taskId`", None))
}

/// `tasks/list` and `tasks/result` of the 2025-11-25 revision, which the Tasks extension
/// (SEP-2663, 2026-07-28) dropped and rmcp does not serve: served to session clients only, as a
/// 2025-11-25 server would, so a gateway's relaying of them can be tested.
impl FixtureServer {
    /// `tasks/list`: every task this instance created, oldest first, in pages.
    pub(crate) fn list_tasks(&self, params: Option<&Value>) -> Result<Value, ErrorData> {
        let ids = self.state.task_ids.lock().expect("task ids poisoned").clone();
        let tasks: Vec<Value> = ids
            .iter()
            .filter_map(|id| self.state.tasks.get_task(id).ok())
            .filter_map(|task| serde_json::to_value(task.task).ok())
            .collect();
        let cursor = params.and_then(|p| p.get("cursor")).and_then(Value::as_str);
        let page = self.state.page(tasks, cursor)?;
        let mut result = json!({ "tasks": page.items });
        if let Some(next) = page.next_cursor {
            result["nextCursor"] = json!(next);
        }
        Ok(result)
    }

    /// `tasks/result`: waits for the task to settle, then answers what the call would have
    /// (its result with a related-task reference, or its error).
    pub(crate) async fn task_result(&self, params: Option<&Value>) -> Result<Value, ErrorData> {
        let task_id = task_id_param(params)?;
        let deadline = tokio::time::Instant::now() + RESULT_WAIT;
        loop {
            match self.state.tasks.get_task(&task_id)?.payload {
                TaskPayload::Completed { result } => {
                    let mut result = Value::Object(result);
                    result["_meta"][RELATED_TASK] = json!({ "taskId": task_id });
                    return Ok(result);
                }
                TaskPayload::Failed { error } => {
                    return Err(serde_json::from_value(Value::Object(error))
                        .unwrap_or_else(|_| ErrorData::internal_error("the task failed", None)));
                }
                TaskPayload::Cancelled => {
                    return Err(ErrorData::invalid_params("the task was cancelled", None));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(ErrorData::internal_error("the task is still running", None));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
