//! Names, fixed payloads and schemas of everything the fixture serves. The
//! names and payload shapes are the ones the MCP conformance suite asks for.

use std::sync::Arc;

use rmcp::model::{JsonObject, Prompt, PromptArgument, Resource, ResourceTemplate, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// A 1x1 red PNG.
pub(crate) const PNG_1X1_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV file holding a single silent 16-bit mono sample at 8 kHz.
pub(crate) const WAV_SILENCE_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

pub(crate) mod tool {
    pub(crate) const SIMPLE_TEXT: &str = "test_simple_text";
    pub(crate) const IMAGE: &str = "test_image_content";
    pub(crate) const AUDIO: &str = "test_audio_content";
    pub(crate) const EMBEDDED_RESOURCE: &str = "test_embedded_resource";
    pub(crate) const MIXED_CONTENT: &str = "test_multiple_content_types";
    pub(crate) const WITH_LOGGING: &str = "test_tool_with_logging";
    pub(crate) const WITH_PROGRESS: &str = "test_tool_with_progress";
    pub(crate) const ERROR: &str = "test_error_handling";
    pub(crate) const RECONNECTION: &str = "test_reconnection";
    pub(crate) const SAMPLING: &str = "test_sampling";
    pub(crate) const ELICITATION: &str = "test_elicitation";
    pub(crate) const ELICITATION_DEFAULTS: &str = "test_elicitation_sep1034_defaults";
    pub(crate) const ELICITATION_ENUMS: &str = "test_elicitation_sep1330_enums";
    pub(crate) const JSON_SCHEMA_2020_12: &str = "json_schema_2020_12_tool";
    pub(crate) const ROUTED_BY_HEADER: &str = "test_routed_by_header";
    pub(crate) const MISSING_CAPABILITY: &str = "test_missing_capability";
    pub(crate) const STREAMING_ELICITATION: &str = "test_streaming_elicitation";
    pub(crate) const LOGGING: &str = "test_logging_tool";
    pub(crate) const TRIGGER_TOOL_CHANGE: &str = "test_trigger_tool_change";
    pub(crate) const TRIGGER_PROMPT_CHANGE: &str = "test_trigger_prompt_change";
    pub(crate) const INPUT_ELICITATION: &str = "test_input_required_result_elicitation";
    pub(crate) const INPUT_SAMPLING: &str = "test_input_required_result_sampling";
    pub(crate) const INPUT_LIST_ROOTS: &str = "test_input_required_result_list_roots";
    pub(crate) const INPUT_REQUEST_STATE: &str = "test_input_required_result_request_state";
    pub(crate) const INPUT_MULTIPLE: &str = "test_input_required_result_multiple_inputs";
    pub(crate) const INPUT_MULTI_ROUND: &str = "test_input_required_result_multi_round";
    pub(crate) const INPUT_TAMPERED_STATE: &str = "test_input_required_result_tampered_state";
    pub(crate) const INPUT_CAPABILITIES: &str = "test_input_required_result_capabilities";
    /// Only listed while toggled on by `test_trigger_tool_change`.
    pub(crate) const DYNAMIC: &str = "test_dynamic_tool";
    // Tasks extension (SEP-2663) fixtures.
    pub(crate) const GREET: &str = "greet";
    pub(crate) const SLOW_COMPUTE: &str = "slow_compute";
    pub(crate) const FAILING_JOB: &str = "failing_job";
    pub(crate) const PROTOCOL_ERROR_JOB: &str = "protocol_error_job";
    pub(crate) const CONFIRM_DELETE: &str = "confirm_delete";
    pub(crate) const MULTI_INPUT: &str = "multi_input";
    pub(crate) const TOOL_WITH_TASK: &str = "test_tool_with_task";
    /// Only listed with `FixtureOptions::slow_tool`.
    pub(crate) const SLOW_CANCELLABLE: &str = "test_slow_cancellable";
    /// The tools that only exist while the Tasks extension is enabled.
    pub(crate) const TASK_TOOLS: [&str; 7] = [
        GREET,
        SLOW_COMPUTE,
        FAILING_JOB,
        PROTOCOL_ERROR_JOB,
        CONFIRM_DELETE,
        MULTI_INPUT,
        TOOL_WITH_TASK,
    ];
}

pub(crate) mod prompt {
    pub(crate) const SIMPLE: &str = "test_simple_prompt";
    pub(crate) const WITH_ARGUMENTS: &str = "test_prompt_with_arguments";
    pub(crate) const EMBEDDED_RESOURCE: &str = "test_prompt_with_embedded_resource";
    pub(crate) const WITH_IMAGE: &str = "test_prompt_with_image";
    pub(crate) const INPUT_REQUIRED: &str = "test_input_required_result_prompt";
    /// Only listed while toggled on by `test_trigger_prompt_change`.
    pub(crate) const DYNAMIC: &str = "test_dynamic_prompt";
}

pub(crate) mod resource {
    pub(crate) const STATIC_TEXT: &str = "test://static-text";
    pub(crate) const STATIC_BINARY: &str = "test://static-binary";
    pub(crate) const WATCHED: &str = "test://watched-resource";
    pub(crate) const TEMPLATE: &str = "test://template/{id}/data";
    pub(crate) const TEMPLATE_PREFIX: &str = "test://template/";
    pub(crate) const TEMPLATE_SUFFIX: &str = "/data";
    pub(crate) const STATIC_TEXT_CONTENT: &str = "This is the content of the static text resource.";
}

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        other => unreachable!("schemas are objects, got {other}"),
    }
}

fn no_arguments() -> Arc<JsonObject> {
    object(json!({ "type": "object", "properties": {} }))
}

/// The JSON Schema 2020-12 input schema whose keywords SEP-1613 and SEP-2106
/// require a server to pass through untouched.
pub(crate) fn json_schema_2020_12() -> Arc<JsonObject> {
    object(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": {
            "properties": { "contactMethod": { "const": "phone" } },
            "required": ["contactMethod"]
        },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    }))
}

/// The name of the `Mcp-Param-*` header that mirrors `region` (SEP-2243).
pub(crate) const REGION_HEADER: &str = "Region";

/// Every tool the fixture can serve, in the order `tools/list` reports them.
/// The first one takes no arguments: the header-validation scenario calls the
/// first listed tool with `{}`.
pub(crate) fn tools() -> Vec<Tool> {
    use tool::*;
    let text_argument = |name: &str, description: &str| {
        object(json!({
            "type": "object",
            "properties": { name: { "type": "string", "description": description } },
            "required": [name]
        }))
    };
    vec![
        Tool::new(
            SLOW_CANCELLABLE,
            "Waits `seconds` (default 30) before answering (for cancellation tests)",
            object(json!({
                "type": "object",
                "properties": { "seconds": { "type": "number", "description": "How long to wait" } }
            })),
        ),
        Tool::new(SIMPLE_TEXT, "Returns a simple text content block", no_arguments()),
        Tool::new(IMAGE, "Returns an image content block (1x1 PNG)", no_arguments()),
        Tool::new(AUDIO, "Returns an audio content block (WAV)", no_arguments()),
        Tool::new(
            EMBEDDED_RESOURCE,
            "Returns an embedded text resource",
            no_arguments(),
        ),
        Tool::new(
            MIXED_CONTENT,
            "Returns text, image and embedded resource content together",
            no_arguments(),
        ),
        Tool::new(
            WITH_LOGGING,
            "Emits three info log messages while it runs",
            no_arguments(),
        ),
        Tool::new(
            WITH_PROGRESS,
            "Reports progress 0, 50 and 100 of 100 to the request's progress token",
            no_arguments(),
        ),
        Tool::new(ERROR, "Always fails with a tool execution error", no_arguments()),
        Tool::new(
            RECONNECTION,
            "Closes its own SSE stream mid-call and answers once the client resumes it with Last-Event-ID (SEP-1699)",
            no_arguments(),
        ),
        Tool::new(
            SAMPLING,
            "Asks the client's LLM to complete the prompt (sampling/createMessage)",
            text_argument("prompt", "The prompt to send to the LLM"),
        ),
        Tool::new(
            ELICITATION,
            "Asks the user for a username and email (elicitation/create)",
            text_argument("message", "The message to show the user"),
        ),
        Tool::new(
            ELICITATION_DEFAULTS,
            "Elicits a form whose fields all carry default values (SEP-1034)",
            no_arguments(),
        ),
        Tool::new(
            ELICITATION_ENUMS,
            "Elicits a form with every enum variant of SEP-1330",
            no_arguments(),
        ),
        Tool::new(
            JSON_SCHEMA_2020_12,
            "Echoes its arguments; its input schema uses JSON Schema 2020-12 keywords (SEP-1613)",
            json_schema_2020_12(),
        ),
        Tool::new(
            ROUTED_BY_HEADER,
            "Echoes the region it was routed to; the region is mirrored in the Mcp-Param-Region header (SEP-2243)",
            object(json!({
                "type": "object",
                "properties": {
                    "region": {
                        "type": "string",
                        "description": "Region that should serve the request",
                        "x-mcp-header": REGION_HEADER
                    }
                },
                "required": ["region"]
            })),
        ),
        Tool::new(
            MISSING_CAPABILITY,
            "Needs the client's sampling capability and refuses with -32021 without it",
            no_arguments(),
        ),
        Tool::new(
            STREAMING_ELICITATION,
            "Reports progress on its response stream, then asks for a confirmation through elicitation",
            no_arguments(),
        ),
        Tool::new(
            LOGGING,
            "Emits a log message only when the client asked for logs",
            no_arguments(),
        ),
        Tool::new(
            TRIGGER_TOOL_CHANGE,
            "Adds or removes test_dynamic_tool and announces notifications/tools/list_changed",
            no_arguments(),
        ),
        Tool::new(
            TRIGGER_PROMPT_CHANGE,
            "Adds or removes test_dynamic_prompt and announces notifications/prompts/list_changed",
            no_arguments(),
        ),
        Tool::new(
            INPUT_ELICITATION,
            "Asks for the user's name, then greets them (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_SAMPLING,
            "Asks the client's LLM for the capital of France (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_LIST_ROOTS,
            "Asks the client for its roots and counts them (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_REQUEST_STATE,
            "Asks for a confirmation and carries sealed requestState across rounds (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_MULTIPLE,
            "Asks for a name, a generated greeting and the client's roots at once (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_MULTI_ROUND,
            "Asks for a name, then a favourite colour, in two rounds (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_TAMPERED_STATE,
            "Rejects a requestState whose integrity seal does not verify (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            INPUT_CAPABILITIES,
            "Only asks for inputs the client declared capabilities for (SEP-2322)",
            no_arguments(),
        ),
        Tool::new(
            GREET,
            "Greets by name, synchronously (Tasks extension fixture)",
            object(json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"]
            })),
        ),
        Tool::new(
            SLOW_COMPUTE,
            "Sleeps `seconds`, as a task when the client supports tasks; cancellable",
            object(json!({
                "type": "object",
                "properties": {
                    "seconds": { "type": "integer", "minimum": 0 },
                    "label": { "type": "string" }
                },
                "required": ["seconds"]
            })),
        ),
        Tool::new(
            FAILING_JOB,
            "Task-only: reports a tool execution error after about a second",
            no_arguments(),
        ),
        Tool::new(
            PROTOCOL_ERROR_JOB,
            "Task-only: fails with an internal protocol error after about a second",
            no_arguments(),
        ),
        Tool::new(
            CONFIRM_DELETE,
            "Task-only: asks the user to confirm deleting a file through tasks/update",
            object(json!({
                "type": "object",
                "properties": { "filename": { "type": "string" } },
                "required": ["filename"]
            })),
        ),
        Tool::new(
            MULTI_INPUT,
            "Task-only: asks two questions at once through tasks/update",
            no_arguments(),
        ),
        Tool::new(
            TOOL_WITH_TASK,
            "Task-only: asks for a name through MRTR, then finishes as a task",
            no_arguments(),
        ),
        Tool::new(
            DYNAMIC,
            "Appears and disappears with test_trigger_tool_change",
            no_arguments(),
        )
        .with_annotations(ToolAnnotations::new().read_only(true)),
    ]
}

/// Every prompt the fixture can serve, in the order `prompts/list` reports
/// them.
pub(crate) fn prompts() -> Vec<Prompt> {
    use prompt::*;
    let argument = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    vec![
        Prompt::new(SIMPLE, Some("A simple prompt without arguments"), None).with_title("Simple Test Prompt"),
        Prompt::new(
            WITH_ARGUMENTS,
            Some("A prompt with required arguments"),
            Some(vec![
                argument("arg1", "First test argument"),
                argument("arg2", "Second test argument"),
            ]),
        )
        .with_title("Prompt With Arguments"),
        Prompt::new(
            EMBEDDED_RESOURCE,
            Some("A prompt that includes an embedded resource"),
            Some(vec![argument("resourceUri", "URI of the resource to embed")]),
        )
        .with_title("Prompt With Embedded Resource"),
        Prompt::new(WITH_IMAGE, Some("A prompt that includes image content"), None)
            .with_title("Prompt With Image"),
        Prompt::new(
            INPUT_REQUIRED,
            Some("Asks the user for context before rendering (SEP-2322)"),
            None,
        ),
        Prompt::new(
            DYNAMIC,
            Some("Appears and disappears with test_trigger_prompt_change"),
            None,
        ),
    ]
}

/// The concrete resources, in the order `resources/list` reports them.
pub(crate) fn resources() -> Vec<Resource> {
    use resource::*;
    vec![
        Resource::new(STATIC_TEXT, "static-text")
            .with_title("Static Text Resource")
            .with_description("A static text resource for testing")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY, "static-binary")
            .with_title("Static Binary Resource")
            .with_description("A static binary resource (image) for testing")
            .with_mime_type("image/png"),
        Resource::new(WATCHED, "watched-resource")
            .with_title("Watched Resource")
            .with_description("A resource whose content changes periodically; subscribe to hear about it")
            .with_mime_type("text/plain"),
    ]
}

/// The URI of an instance's own resource (see `FixtureOptions::own_resources`).
pub(crate) fn own_uri(name: &str, path: &str) -> String {
    format!("test://{name}/{path}")
}

/// The concrete resources of an instance named `name`.
pub(crate) fn own_resources(name: &str) -> Vec<Resource> {
    vec![
        Resource::new(own_uri(name, "info"), format!("{name}-info"))
            .with_description("Names the fixture instance that serves it")
            .with_mime_type("text/plain"),
        Resource::new(own_uri(name, "watched"), format!("{name}-watched"))
            .with_description("Changes with test://watched-resource; subscribe to hear about it")
            .with_mime_type("text/plain"),
    ]
}

/// The resource template of an instance named `name`.
pub(crate) fn own_resource_template(name: &str) -> ResourceTemplate {
    ResourceTemplate::new(own_uri(name, "items/{id}"), format!("{name}-items"))
        .with_description("An item of the fixture instance that serves it")
        .with_mime_type("text/plain")
}

pub(crate) fn resource_templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(resource::TEMPLATE, "template")
            .with_title("Resource Template")
            .with_description("A resource template with parameter substitution")
            .with_mime_type("application/json"),
    ]
}
