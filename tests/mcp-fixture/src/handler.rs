//! The MCP server itself: one [`FixtureServer`] per session (or per stateless
//! request), all sharing one [`FixtureState`].

#![allow(deprecated)] // logging, sampling and roots are deprecated by SEP-2577 but still in the suite.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, CompleteRequestParams, CompleteResult,
        CompletionInfo, CustomRequest, CustomResult, ErrorCode, GetPromptRequestParams, GetPromptResponse,
        GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult, Implementation, JsonObject,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListSkillsResult,
        ListToolsResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
        ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult, ReadResourceRequestParams,
        ReadResourceResponse, Reference, ResourceUpdatedNotificationParam, SKILLS_EXTENSION_ID,
        ServerCapabilities, ServerConfig, ServerNotification, SetLevelRequestParams, SubscribeRequestParams,
        SubscriptionFilter, TASKS_EXTENSION_ID, TaskStatusNotification, TaskStatusNotificationParams, Tool,
        UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{NotificationContext, Peer, RequestContext, SubscriptionContext, SubscriptionSendError},
};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    catalog::{self, prompt, resource, tool},
    inputs::uses_input_required_results,
    logs, skills,
    state::{ChangeEvent, FixtureState},
};

/// What one 2025-era session remembers between its requests.
#[derive(Debug, Default)]
struct SessionState {
    log_level: Mutex<Option<LoggingLevel>>,
    subscriptions: Mutex<HashSet<String>>,
    /// Whether a task already forwards change notifications to this session.
    forwarding: AtomicBool,
}

#[derive(Debug, Clone)]
pub(crate) struct FixtureServer {
    pub(crate) state: Arc<FixtureState>,
    session: Arc<SessionState>,
}

impl FixtureServer {
    pub(crate) fn new(state: Arc<FixtureState>) -> Self {
        Self {
            state,
            session: Arc::default(),
        }
    }

    /// Send a log message if the client asked for messages of this level;
    /// returns whether it was sent.
    pub(crate) async fn log(
        &self,
        context: &RequestContext<RoleServer>,
        level: LoggingLevel,
        message: &str,
    ) -> bool {
        let session_level = *self.session.log_level.lock().expect("log level poisoned");
        if !logs::allows(context, session_level, level) {
            return false;
        }
        let params = LoggingMessageNotificationParam::new(level, json!(message)).with_logger("mcp-fixture");
        // A client that went away mid-call just misses the message.
        context.peer.notify_logging_message(params).await.is_ok()
    }

    /// Start relaying change notifications to this 2025-era session, once.
    fn forward_changes_to(&self, peer: Peer<RoleServer>) {
        if self.session.forwarding.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut changes = self.state.changes.subscribe();
        let session = self.session.clone();
        tokio::spawn(async move {
            loop {
                let sent = match changes.recv().await {
                    Ok(ChangeEvent::ToolListChanged) => peer.notify_tool_list_changed().await,
                    Ok(ChangeEvent::PromptListChanged) => peer.notify_prompt_list_changed().await,
                    Ok(ChangeEvent::ResourceUpdated(uri)) => {
                        let subscribed = session
                            .subscriptions
                            .lock()
                            .expect("subscriptions poisoned")
                            .contains(&uri);
                        if !subscribed {
                            continue;
                        }
                        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                    }
                    Ok(ChangeEvent::TaskStatus(task)) => {
                        let params = TaskStatusNotificationParams::new(*task);
                        peer.send_notification(ServerNotification::TaskStatusNotification(
                            TaskStatusNotification::new(params),
                        ))
                        .await
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                // The session is gone once its transport refuses messages.
                if sent.is_err() {
                    break;
                }
            }
        });
    }

    fn listed_tools(&self) -> Vec<Tool> {
        let mut tools: Vec<Tool> = catalog::tools()
            .into_iter()
            .filter(|listed| listed.name != tool::DYNAMIC || self.state.dynamic_tool_listed())
            .filter(|listed| listed.name != tool::SLOW_CANCELLABLE || self.state.options.slow_tool)
            .filter(|listed| self.state.options.tasks_extension || !tool::TASK_TOOLS.contains(&&*listed.name))
            .map(|mut listed| {
                if let Some(description) = self.state.pulled_description(&listed.name) {
                    listed.description = Some(description.to_owned().into());
                }
                listed
            })
            .collect();
        if self.state.tools_reversed() {
            tools.reverse();
        }
        tools
    }
}

fn cursor_of(request: Option<&PaginatedRequestParams>) -> Option<&str> {
    request.and_then(|r| r.cursor.as_deref())
}

/// Completions for an argument; `own` names the instance's own resources (their template's
/// `id` completes to ids that name the instance).
fn completion_candidates(reference: &Reference, argument: &str, own: Option<&str>) -> Vec<String> {
    if let (Reference::Resource(template), Some(name), "id") = (reference, own, argument)
        && template.uri == catalog::own_uri(name, "items/{id}")
    {
        return vec![format!("{name}-1"), format!("{name}-2")];
    }
    let values: &[&str] = match reference {
        Reference::Prompt(prompt_ref) => match (prompt_ref.name.as_str(), argument) {
            (prompt::WITH_ARGUMENTS, "arg1") => &["alpha", "apple", "apricot", "test-value-1"],
            (prompt::WITH_ARGUMENTS, "arg2") => &["beta", "banana", "blueberry", "test-value-2"],
            (prompt::EMBEDDED_RESOURCE, "resourceUri") => {
                &[resource::STATIC_TEXT, resource::STATIC_BINARY, resource::WATCHED]
            }
            _ => &[],
        },
        Reference::Resource(template) => match (template.uri.as_str(), argument) {
            (resource::TEMPLATE, "id") => &["1", "2", "3", "42", "123"],
            _ => &[],
        },
        _ => &[],
    };
    values.iter().map(|value| (*value).to_owned()).collect()
}

impl ServerHandler for FixtureServer {
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [rmcp::model::ProtocolVersion]> {
        crate::era::supported_versions(self.state.options.protocol)
    }

    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        if self.state.options.skills_extension {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    SKILLS_EXTENSION_ID.to_owned(),
                    json!({ "directoryRead": true })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                );
        }
        if self.state.options.tasks_extension {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(TASKS_EXTENSION_ID.to_owned(), JsonObject::new());
        }
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("mcp-fixture", env!("CARGO_PKG_VERSION")))
            .with_instructions("Test fixture implementing the MCP conformance suite's server scenarios.")
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.state
            .tasks
            .get_task(&request.task_id)
            .map(GetTaskResult::new)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .tasks
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state.tasks.cancel_task(&request.task_id)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.forward_changes_to(context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.session.log_level.lock().expect("log level poisoned") = Some(request.level);
        self.forward_changes_to(context.peer);
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let typed = request.argument.value.as_str();
        let own = self.state.options.own_resources.as_deref();
        let values: Vec<String> = completion_candidates(&request.r#ref, &request.argument.name, own)
            .into_iter()
            .filter(|candidate| candidate.starts_with(typed))
            .collect();
        let completion = CompletionInfo::with_all_values(values)
            .map_err(|error| ErrorData::internal_error(error, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.listed_tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.listed_tools().into_iter().find(|listed| listed.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let response = self.run_tool(request, &context).await;
        if self.state.count_tool_call() {
            tracing::info!(
                calls = self.state.tool_calls(),
                "rug pull: a tool description changed"
            );
            self.state.publish(ChangeEvent::ToolListChanged);
        }
        response
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = catalog::prompts()
            .into_iter()
            .filter(|listed| listed.name != prompt::DYNAMIC || self.state.dynamic_prompt_listed())
            .collect();
        let page = self.state.page(prompts, cursor_of(request.as_ref()))?;
        let mut result = ListPromptsResult::with_all_items(page.items);
        result.next_cursor = page.next_cursor;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.render_prompt(request, &context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut resources = catalog::resources();
        if self.state.options.skills_extension {
            resources.push(skills::skill_md_resource());
        }
        if let Some(name) = &self.state.options.own_resources {
            resources.extend(catalog::own_resources(name));
        }
        let page = self.state.page(resources, cursor_of(request.as_ref()))?;
        let mut result = ListResourcesResult::with_all_items(page.items);
        result.next_cursor = page.next_cursor;
        Ok(result)
    }

    async fn list_skills(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, ErrorData> {
        Ok(ListSkillsResult::with_all_items(vec![skills::skill()]))
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, ErrorData> {
        let skill = skills::skill();
        if request.uri != skill.uri {
            return Err(ErrorData::invalid_params(
                format!("no skill is served at {}", request.uri),
                Some(json!({ "uri": request.uri })),
            ));
        }
        Ok(GetSkillResult::new(skill))
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, ErrorData> {
        skills::read_directory(&request.uri)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut templates = catalog::resource_templates();
        if let Some(name) = &self.state.options.own_resources {
            templates.push(catalog::own_resource_template(name));
        }
        let page = self.state.page(templates, cursor_of(request.as_ref()))?;
        let mut result = ListResourceTemplatesResult::with_all_items(page.items);
        result.next_cursor = page.next_cursor;
        Ok(result)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let params = request.params.as_ref();
        // 2026-07-28 removed them (SEP-2663): the conformance suite wants -32601 there.
        let session_tasks = self.state.options.tasks_extension && !uses_input_required_results(&context);
        let result = match request.method.as_str() {
            "tasks/list" if session_tasks => self.list_tasks(params)?,
            "tasks/result" if session_tasks => self.task_result(params).await?,
            method => {
                return Err(ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    method.to_owned(),
                    None,
                ));
            }
        };
        Ok(CustomResult(result))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read(&request.uri).map(ReadResourceResponse::from)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.read(&request.uri)?;
        self.session
            .subscriptions
            .lock()
            .expect("subscriptions poisoned")
            .insert(request.uri);
        self.forward_changes_to(context.peer);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session
            .subscriptions
            .lock()
            .expect("subscriptions poisoned")
            .remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let known: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| self.read(uri).is_ok())
            .cloned()
            .collect();
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = Some(true);
        accepted.prompts_list_changed = Some(true);
        accepted.resource_subscriptions = (!known.is_empty()).then_some(known);
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.state.changes.subscribe();
        let sink = context.sink().clone();
        loop {
            let event = tokio::select! {
                () = context.cancelled() => return Ok(()),
                event = changes.recv() => event,
            };
            let sent = match event {
                Ok(ChangeEvent::ToolListChanged) => sink.notify_tool_list_changed().await,
                Ok(ChangeEvent::PromptListChanged) => sink.notify_prompt_list_changed().await,
                Ok(ChangeEvent::ResourceUpdated(uri)) => sink.notify_resource_updated(uri).await,
                // Subscription streams carry list and resource changes only.
                Ok(ChangeEvent::TaskStatus(_)) | Err(RecvError::Lagged(_)) => continue,
                // The fixture is shutting down: end the subscription gracefully.
                Err(RecvError::Closed) => return Ok(()),
            };
            match sent {
                // The client did not ask for this kind of change.
                Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                Err(_) => return Ok(()),
            }
        }
    }
}
