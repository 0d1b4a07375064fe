//! What each tool does when called.

#![allow(deprecated)] // logging is deprecated by SEP-2577 but still part of the suite.

use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, LoggingLevel,
        ProgressNotificationParam, ResourceContents,
    },
    service::RequestContext,
    transport::streamable_http_server::session::SessionId,
};
use serde_json::{Value, json};

use crate::{
    SessionMode,
    catalog::{PNG_1X1_BASE64, WAV_SILENCE_BASE64, tool},
    handler::FixtureServer,
    inputs::{
        Ask, InputKind, InputRound, describe_elicitation, elicited_text, root_count, sampled_text,
        uses_input_required_results,
    },
    state::ChangeEvent,
};

/// Pause between the steps of the logging and progress tools, so clients see
/// the notifications arrive over time rather than in one burst.
const STEP_DELAY: Duration = Duration::from_millis(50);
/// How long `test_reconnection` waits for its caller to come back.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The retry interval `test_reconnection` suggests when it hangs up.
const RECONNECT_RETRY: Duration = Duration::from_millis(500);

fn text(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(message)]).into()
}

fn tool_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

fn string_argument(arguments: Option<&JsonObject>, name: &str) -> Result<String, ErrorData> {
    arguments
        .and_then(|arguments| arguments.get(name))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing string argument `{name}`"), None))
}

fn string_field() -> Value {
    json!({ "type": "string" })
}

fn one_field_form(field: &str, schema: Value) -> Value {
    json!({ "type": "object", "properties": { field: schema }, "required": [field] })
}

impl FixtureServer {
    /// Whether 2025-era requests have a session the server can send its own
    /// requests on.
    fn sessions_enabled(&self) -> bool {
        self.state.options.session_mode == SessionMode::Stateful
    }

    pub(crate) fn tool_input_round<'a>(
        &'a self,
        owner: &str,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<InputRound<'a>, ErrorData> {
        InputRound::start(
            &self.state.request_state,
            owner,
            context,
            request.input_responses.clone(),
            request.request_state.as_deref(),
            self.sessions_enabled(),
        )
    }

    pub(crate) async fn run_tool(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.state.options.tasks_extension
            && let Some(response) = self.run_task_tool(&request, context).await
        {
            return response;
        }
        let arguments = request.arguments.as_ref();
        match request.name.as_ref() {
            tool::SIMPLE_TEXT => Ok(text("This is a simple text response for testing.")),
            tool::SLOW_CANCELLABLE if self.state.options.slow_tool => {
                let seconds = arguments
                    .and_then(|a| a.get("seconds"))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(30.0)
                    .clamp(0.0, 60.0);
                Ok(self
                    .slow_cancellable(context, Duration::from_secs_f64(seconds))
                    .await)
            }
            tool::IMAGE => {
                Ok(CallToolResult::success(vec![ContentBlock::image(PNG_1X1_BASE64, "image/png")]).into())
            }
            tool::AUDIO => Ok(CallToolResult::success(vec![ContentBlock::audio(
                WAV_SILENCE_BASE64,
                "audio/wav",
            )])
            .into()),
            tool::EMBEDDED_RESOURCE => Ok(CallToolResult::success(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                ),
            )])
            .into()),
            tool::MIXED_CONTENT => Ok(CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG_1X1_BASE64, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({ "test": "data", "value": 123 }).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ])
            .into()),
            tool::WITH_LOGGING => Ok(self.tool_with_logging(context).await),
            tool::WITH_PROGRESS => Ok(self.tool_with_progress(context).await),
            tool::ERROR => Ok(tool_error("This tool intentionally returns an error for testing")),
            tool::RECONNECTION => Ok(self.reconnection(context).await),
            tool::SAMPLING => self.sampling(&request, context).await,
            tool::ELICITATION => self.elicitation(&request, context).await,
            tool::ELICITATION_DEFAULTS => self.elicitation_with_defaults(&request, context).await,
            tool::ELICITATION_ENUMS => self.elicitation_with_enums(&request, context).await,
            tool::JSON_SCHEMA_2020_12 => Ok(text(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(arguments.cloned().unwrap_or_default())
            ))),
            tool::ROUTED_BY_HEADER => {
                let region = string_argument(arguments, "region")?;
                Ok(text(format!("Routed to region {region}")))
            }
            tool::MISSING_CAPABILITY => self.needs_sampling(&request, context).await,
            tool::STREAMING_ELICITATION => self.streaming_elicitation(&request, context).await,
            tool::LOGGING => {
                let emitted = self
                    .log(context, LoggingLevel::Info, "Diagnostic trace logging activated")
                    .await;
                Ok(text(format!("Logging evaluated (log message sent: {emitted})")))
            }
            tool::TRIGGER_TOOL_CHANGE => {
                let listed = self.state.toggle_dynamic_tool();
                self.state.publish(ChangeEvent::ToolListChanged);
                Ok(text(format!("{} is now listed: {listed}", tool::DYNAMIC)))
            }
            tool::TRIGGER_PROMPT_CHANGE => {
                let listed = self.state.toggle_dynamic_prompt();
                self.state.publish(ChangeEvent::PromptListChanged);
                Ok(text(format!(
                    "{} is now listed: {listed}",
                    crate::catalog::prompt::DYNAMIC
                )))
            }
            tool::INPUT_ELICITATION => self.greet_by_name(&request, context).await,
            tool::INPUT_SAMPLING => self.ask_capital(&request, context).await,
            tool::INPUT_LIST_ROOTS => self.count_roots(&request, context).await,
            tool::INPUT_REQUEST_STATE => {
                self.confirm_with_sealed_state(&request, context, "state-ok: requestState validated")
                    .await
            }
            tool::INPUT_TAMPERED_STATE => {
                self.confirm_with_sealed_state(&request, context, "integrity-ok: state verified")
                    .await
            }
            tool::INPUT_MULTIPLE => self.several_inputs(&request, context).await,
            tool::INPUT_MULTI_ROUND => self.two_rounds(&request, context).await,
            tool::INPUT_CAPABILITIES => self.declared_capabilities_only(&request, context).await,
            tool::DYNAMIC if self.state.dynamic_tool_listed() => Ok(text(
                "test_dynamic_tool exists because test_trigger_tool_change added it",
            )),
            unknown => Err(ErrorData::invalid_params(
                format!("Unknown tool: {unknown}"),
                None,
            )),
        }
    }

    /// Waits `wait`. A call that does not get there (its future dropped because the client went
    /// away, or its request cancelled) is counted as abandoned.
    async fn slow_cancellable(
        &self,
        context: &RequestContext<RoleServer>,
        wait: Duration,
    ) -> CallToolResponse {
        use std::sync::atomic::Ordering;
        struct Abandoned<'a> {
            counter: &'a std::sync::atomic::AtomicU64,
            finished: bool,
        }
        impl Drop for Abandoned<'_> {
            fn drop(&mut self) {
                if !self.finished {
                    self.counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.state.slow_calls_started.fetch_add(1, Ordering::SeqCst);
        let mut guard = Abandoned {
            counter: &self.state.slow_calls_abandoned,
            finished: false,
        };
        tokio::select! {
            () = context.ct.cancelled() => tool_error("cancelled"),
            () = tokio::time::sleep(wait) => {
                guard.finished = true;
                text(format!("finished after {} seconds", wait.as_secs_f64()))
            }
        }
    }

    async fn tool_with_logging(&self, context: &RequestContext<RoleServer>) -> CallToolResponse {
        let steps = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        let mut sent = 0;
        for (index, step) in steps.into_iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(STEP_DELAY).await;
            }
            if self.log(context, LoggingLevel::Info, step).await {
                sent += 1;
            }
        }
        text(format!(
            "Tool with logging executed successfully ({sent} log messages sent)"
        ))
    }

    async fn tool_with_progress(&self, context: &RequestContext<RoleServer>) -> CallToolResponse {
        let Some(token) = context.meta.get_progress_token() else {
            return text("No progress token was supplied, so no progress was reported");
        };
        for (index, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(STEP_DELAY).await;
            }
            let notification = ProgressNotificationParam::new(token.clone(), progress)
                .with_total(100.0)
                .with_message(format!("Completed step {progress} of 100"));
            if context.peer.notify_progress(notification).await.is_err() {
                return tool_error("the client disconnected while progress was reported");
            }
        }
        let token = serde_json::to_value(&token).unwrap_or_default();
        text(format!("Progress reported to token {token}"))
    }

    async fn reconnection(&self, context: &RequestContext<RoleServer>) -> CallToolResponse {
        let session = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|value| value.to_str().ok())
            .map(|value| SessionId::from(value.to_owned()));
        let Some(session) = session else {
            return tool_error(
                "test_reconnection needs an Mcp-Session-Id session: only session streams can be resumed",
            );
        };
        let sessions = &self.state.sessions;
        let Some(stream) = sessions.stream_of_request(&session, &context.id) else {
            return tool_error("the SSE stream of this call could not be found");
        };
        if let Err(error) = sessions
            .disconnect_stream(&session, stream, RECONNECT_RETRY)
            .await
        {
            return tool_error(format!("could not close the SSE stream: {error}"));
        }
        if sessions
            .wait_for_resume(&session, stream, RECONNECT_TIMEOUT)
            .await
        {
            text(
                "Reconnection test completed successfully. If you received this, the client \
                 properly reconnected after stream closure.",
            )
        } else {
            tool_error("the client did not resume the closed SSE stream in time")
        }
    }

    async fn sampling(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let prompt = string_argument(request.arguments.as_ref(), "prompt")?;
        let mut round = self.tool_input_round(tool::SAMPLING, request, context)?;
        let asks = vec![Ask::sampling("completion", &prompt, 100)];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let reply = sampled_text(&answers["completion"]).unwrap_or_else(|| "No response".into());
        Ok(text(format!("LLM response: {reply}")))
    }

    async fn elicitation(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let message = string_argument(request.arguments.as_ref(), "message")?;
        let schema = json!({
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" }
            },
            "required": ["username", "email"]
        });
        let mut round = self.tool_input_round(tool::ELICITATION, request, context)?;
        let asks = vec![Ask::form("user_info", &message, schema)];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        Ok(text(format!(
            "User response: {}",
            describe_elicitation(&answers["user_info"])
        )))
    }

    async fn elicitation_with_defaults(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User age", "default": 30 },
                "score": { "type": "number", "description": "User score", "default": 95.5 },
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": { "type": "boolean", "description": "Verification status", "default": true }
            },
            "required": []
        });
        self.elicit_form(
            request,
            context,
            tool::ELICITATION_DEFAULTS,
            "Please review and update the form fields with defaults",
            schema,
        )
        .await
    }

    async fn elicitation_with_enums(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Select one option",
                    "enum": ["option1", "option2", "option3"]
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Select one option with titles",
                    "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" }
                    ]
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Select one option (legacy)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Select multiple options",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Select multiple options with titles",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {
                        "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" }
                        ]
                    }
                }
            },
            "required": []
        });
        self.elicit_form(
            request,
            context,
            tool::ELICITATION_ENUMS,
            "Please select options from the enum fields",
            schema,
        )
        .await
    }

    async fn elicit_form(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        owner: &str,
        message: &str,
        schema: Value,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(owner, request, context)?;
        let asks = vec![Ask::form("form", message, schema)];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        Ok(text(format!(
            "Elicitation completed: {}",
            describe_elicitation(&answers["form"])
        )))
    }

    /// Refuses with `-32021` unless the client declared sampling, and then
    /// really uses it.
    async fn needs_sampling(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::MISSING_CAPABILITY, request, context)?;
        let asks = vec![Ask::sampling("pong", "Reply with the single word: pong", 10)];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let reply = sampled_text(&answers["pong"]).unwrap_or_default();
        Ok(text(format!(
            "Sampling capability used; the client replied: {reply}"
        )))
    }

    /// Streams progress, then asks for confirmation the way the protocol
    /// revision allows: never as an independent request on a 2026 stream.
    async fn streaming_elicitation(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(token) = context.meta.get_progress_token() {
            let notification = ProgressNotificationParam::new(token, 50.0)
                .with_total(100.0)
                .with_message("Waiting for confirmation");
            let _ = context.peer.notify_progress(notification).await;
        }
        let mut round = self.tool_input_round(tool::STREAMING_ELICITATION, request, context)?;
        let asks = vec![Ask::form(
            "confirmation",
            "Continue the streaming operation?",
            one_field_form("proceed", json!({ "type": "boolean" })),
        )];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        Ok(text(format!(
            "Streaming complete: {}",
            describe_elicitation(&answers["confirmation"])
        )))
    }

    async fn greet_by_name(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::INPUT_ELICITATION, request, context)?;
        let asks = vec![Ask::form(
            "user_name",
            "What is your name?",
            one_field_form("name", string_field()),
        )];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        Ok(match elicited_text(&answers["user_name"], "name") {
            Some(name) => text(format!("Hello, {name}!")),
            None => text("The user did not share their name"),
        })
    }

    async fn ask_capital(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::INPUT_SAMPLING, request, context)?;
        let asks = vec![Ask::sampling(
            "capital_question",
            "What is the capital of France?",
            100,
        )];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let reply = sampled_text(&answers["capital_question"]).unwrap_or_else(|| "no response".into());
        Ok(text(format!("Sampling result: {reply}")))
    }

    async fn count_roots(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::INPUT_LIST_ROOTS, request, context)?;
        let asks = vec![Ask::roots("client_roots")];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        Ok(text(format!(
            "Found {} root(s)",
            root_count(&answers["client_roots"])
        )))
    }

    /// Asks for a confirmation whose answer only counts when it comes back
    /// together with the sealed `requestState` of the round that asked.
    async fn confirm_with_sealed_state(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        success: &str,
    ) -> Result<CallToolResponse, ErrorData> {
        let owner = request.name.to_string();
        let mut round = self.tool_input_round(&owner, request, context)?;
        let asks = vec![Ask::form(
            "confirm",
            "Please confirm",
            one_field_form("ok", json!({ "type": "boolean" })),
        )];
        round.require_capabilities(&asks)?;
        if uses_input_required_results(context) && request.request_state.is_none() {
            // First round: whatever responses came along, issue the state.
            round.discard_responses();
        }
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let confirmed = elicited_text(&answers["confirm"], "ok").is_some_and(|ok| ok == "true");
        Ok(text(format!("{success} (confirmed: {confirmed})")))
    }

    async fn several_inputs(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::INPUT_MULTIPLE, request, context)?;
        let asks = vec![
            Ask::form(
                "user_name",
                "What is your name?",
                one_field_form("name", string_field()),
            ),
            Ask::sampling("greeting", "Generate a greeting", 50),
            Ask::roots("client_roots"),
        ];
        round.require_capabilities(&asks)?;
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let name = elicited_text(&answers["user_name"], "name").unwrap_or_else(|| "unknown".into());
        let greeting = sampled_text(&answers["greeting"]).unwrap_or_else(|| "none".into());
        let roots = root_count(&answers["client_roots"]);
        Ok(text(format!(
            "Name: {name}; Greeting: {greeting}; Roots: {roots}"
        )))
    }

    async fn two_rounds(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::INPUT_MULTI_ROUND, request, context)?;
        let first = vec![Ask::form(
            "step1",
            "Step 1: What is your name?",
            one_field_form("name", string_field()),
        )];
        round.require_capabilities(&first)?;
        let Some(answers) = round.ask(first).await? else {
            return Ok(round.input_required().into());
        };
        let name = elicited_text(&answers["step1"], "name").unwrap_or_else(|| "friend".into());
        let second = vec![Ask::form(
            "step2",
            "Step 2: What is your favorite color?",
            one_field_form("color", string_field()),
        )];
        let Some(answers) = round.ask(second).await? else {
            return Ok(round.input_required().into());
        };
        let color = elicited_text(&answers["step2"], "color").unwrap_or_else(|| "no color".into());
        Ok(text(format!("Multi-round complete for {name} who likes {color}")))
    }

    async fn declared_capabilities_only(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut round = self.tool_input_round(tool::INPUT_CAPABILITIES, request, context)?;
        let mut asks = Vec::new();
        if round.client_supports(InputKind::Elicitation) {
            asks.push(Ask::form(
                "elicit_input",
                "Elicitation input",
                one_field_form("value", string_field()),
            ));
        }
        if round.client_supports(InputKind::Sampling) {
            asks.push(Ask::sampling("sample_input", "Sample request", 50));
        }
        if asks.is_empty() {
            return Ok(text("No supported capabilities declared"));
        }
        let Some(answers) = round.ask(asks).await? else {
            return Ok(round.input_required().into());
        };
        let keys: Vec<&str> = answers.keys().map(String::as_str).collect();
        Ok(text(format!("capabilities-ok: received {}", keys.join(","))))
    }
}
