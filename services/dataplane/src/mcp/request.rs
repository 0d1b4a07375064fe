//! One JSON-RPC message as the endpoint acts on it: read once at the wire edge into the envelope
//! fields the gateway decides on (method, id, the tool called, the cursor, the task, what a
//! prompt or resource request names), next to the message itself, which stays opaque and is what
//! goes upstream. The tool a `tools/call` names is resolved against the endpoint once, by
//! admission ([`CalledTool`]).

use serde_json::{Value, json};

use gatehouse_core::snapshot::EndpointTool;

use crate::jsonrpc::{Kind, Message};
use crate::store::EndpointState;

/// A message with its envelope read.
pub(super) struct McpRequest {
    /// The message as it goes upstream (handlers rewrite namespaced names in it).
    pub(super) message: Message,
    pub(super) method: Method,
    /// The size of the HTTP body it came in, for the call record.
    pub(super) bytes_in: u64,
    /// `tools/call`: the tool it names.
    pub(super) tool: Option<CalledTool>,
    /// `params.cursor` of a list request.
    pub(super) cursor: Cursor,
    /// `params.taskId` of a `tasks/*` request, as the client named it.
    pub(super) task_id: Option<String>,
    /// What a prompt or resource request names.
    pub(super) named: Option<Named>,
}

/// The methods the endpoint acts on; any other is `Other` (a notification's, or a vendor method an
/// endpoint may allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Method {
    Initialize,
    Ping,
    ServerDiscover,
    ToolsList,
    ToolsCall,
    TasksList,
    TasksGet,
    TasksResult,
    TasksCancel,
    TasksUpdate,
    PromptsList,
    PromptsGet,
    ResourcesList,
    ResourcesTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    CompletionComplete,
    LoggingSetLevel,
    SubscriptionsListen,
    SkillsList,
    SkillsGet,
    ResourcesDirectoryRead,
    Other(String),
}

impl Method {
    fn parse(name: &str) -> Self {
        match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "server/discover" => Method::ServerDiscover,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "tasks/list" => Method::TasksList,
            "tasks/get" => Method::TasksGet,
            "tasks/result" => Method::TasksResult,
            "tasks/cancel" => Method::TasksCancel,
            "tasks/update" => Method::TasksUpdate,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourcesTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "completion/complete" => Method::CompletionComplete,
            "logging/setLevel" => Method::LoggingSetLevel,
            "subscriptions/listen" => Method::SubscriptionsListen,
            "skills/list" => Method::SkillsList,
            "skills/get" => Method::SkillsGet,
            "resources/directory/read" => Method::ResourcesDirectoryRead,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method's name on the wire (`""` for a response, which has none).
    pub(super) fn as_str(&self) -> &str {
        match self {
            Method::Initialize => "initialize",
            Method::Ping => "ping",
            Method::ServerDiscover => "server/discover",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::TasksList => "tasks/list",
            Method::TasksGet => "tasks/get",
            Method::TasksResult => "tasks/result",
            Method::TasksCancel => "tasks/cancel",
            Method::TasksUpdate => "tasks/update",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::ResourcesList => "resources/list",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe => "resources/subscribe",
            Method::ResourcesUnsubscribe => "resources/unsubscribe",
            Method::CompletionComplete => "completion/complete",
            Method::LoggingSetLevel => "logging/setLevel",
            Method::SubscriptionsListen => "subscriptions/listen",
            Method::SkillsList => "skills/list",
            Method::SkillsGet => "skills/get",
            Method::ResourcesDirectoryRead => "resources/directory/read",
            Method::Other(name) => name,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tool a `tools/call` names, and what the endpoint has under that name.
pub(super) struct CalledTool {
    pub(super) name: String,
    /// The endpoint's tool of that name (an index into its snapshot's tools), if any, and whether
    /// the caller may call it (granted by its scopes, not withheld because its upstream
    /// definition drifted from the approved pin): set by admission.
    pub(super) found: Option<usize>,
    pub(super) callable: bool,
}

impl CalledTool {
    /// The endpoint's tool of this name, whether or not the caller may call it.
    pub(super) fn definition<'e>(&self, endpoint: &'e EndpointState) -> Option<&'e EndpointTool> {
        endpoint.snapshot.tools.get(self.found?)
    }

    /// The endpoint's tool, if the caller may call it.
    pub(super) fn callable<'e>(&self, endpoint: &'e EndpointState) -> Option<&'e EndpointTool> {
        self.definition(endpoint).filter(|_| self.callable)
    }
}

/// A list request's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cursor {
    /// None given (or `null`): the first page.
    Absent,
    Given(String),
    /// Given, but not a string.
    Malformed,
}

impl Cursor {
    /// The cursor to pass through to a single upstream.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Cursor::Given(cursor) => Some(cursor),
            Cursor::Absent | Cursor::Malformed => None,
        }
    }
}

/// What a prompt or resource request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Named {
    /// `prompts/get` (`params.name`), or `completion/complete` of a `ref/prompt` (`params.ref.name`).
    Prompt(Option<String>),
    /// `resources/*` (`params.uri`), or `completion/complete` of a `ref/resource` (`params.ref.uri`).
    Resource(Option<String>),
}

impl McpRequest {
    /// Reads the envelope of `message`, which came in an HTTP body of `bytes_in` bytes.
    pub(super) fn read(message: Message, bytes_in: u64) -> Self {
        let name = match message.kind {
            Kind::Request | Kind::Notification => message.method(),
            Kind::Response => "",
        };
        let method = Method::parse(name);
        let is_request = message.kind == Kind::Request;
        let params = message.params();
        let text = |key: &str| {
            params
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let tool = (is_request && method == Method::ToolsCall)
            .then(|| text("name"))
            .flatten()
            .map(|name| CalledTool {
                name,
                found: None,
                callable: false,
            });
        let cursor = match params.and_then(|p| p.get("cursor")) {
            None | Some(Value::Null) => Cursor::Absent,
            Some(Value::String(cursor)) => Cursor::Given(cursor.clone()),
            Some(_) => Cursor::Malformed,
        };
        let task_id = name.starts_with("tasks/").then(|| text("taskId")).flatten();
        let reference = params.and_then(|p| p.get("ref"));
        let ref_text = |key: &str| {
            reference
                .and_then(|r| r.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let named = match method {
            Method::PromptsGet => Some(Named::Prompt(text("name"))),
            Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
                Some(Named::Resource(text("uri")))
            }
            Method::CompletionComplete if ref_text("type").as_deref() == Some("ref/prompt") => {
                Some(Named::Prompt(ref_text("name")))
            }
            Method::CompletionComplete => Some(Named::Resource(ref_text("uri"))),
            _ => None,
        };
        McpRequest {
            message,
            method,
            bytes_in,
            tool,
            cursor,
            task_id,
            named,
        }
    }

    pub(super) fn kind(&self) -> Kind {
        self.message.kind
    }

    /// The id to answer with, when the message is a request.
    pub(super) fn answer_id(&self) -> Option<&Value> {
        self.message.id()
    }

    /// The id an answer to it carries (`null` for a notification or a response).
    pub(super) fn id(&self) -> Value {
        self.answer_id().cloned().unwrap_or(Value::Null)
    }

    /// The name or URI a prompt or resource request names, for its call record.
    pub(super) fn named_target(&self) -> Option<&str> {
        match &self.named {
            Some(Named::Prompt(name)) => name.as_deref(),
            Some(Named::Resource(uri)) => uri.as_deref(),
            None => None,
        }
    }
}

/// The capabilities a stateless client declared in its request's `_meta`.
pub(super) fn declared_capabilities(message: &Message) -> Value {
    message
        .meta_client_capabilities()
        .cloned()
        .unwrap_or_else(|| json!({}))
}

pub(super) fn declared_client_info(message: &Message) -> Option<&Value> {
    message
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/clientInfo"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: Value) -> McpRequest {
        McpRequest::read(Message::classify(value).expect("a message"), 10)
    }

    #[test]
    fn the_envelope_is_read_once() {
        let call = read(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "b__search", "arguments": {}}}));
        assert_eq!(call.tool.as_ref().map(|t| t.name.as_str()), Some("b__search"));
        assert!(
            call.tool
                .as_ref()
                .is_some_and(|t| !t.callable && t.found.is_none())
        );
        let list =
            read(json!({"jsonrpc": "2.0", "id": 2, "method": "prompts/list", "params": {"cursor": 3}}));
        assert_eq!(list.cursor, Cursor::Malformed);
        assert!(list.tool.is_none());
        let task =
            read(json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"taskId": "b__t1"}}));
        assert_eq!(task.task_id.as_deref(), Some("b__t1"));
        let completion = read(json!({"jsonrpc": "2.0", "id": 4, "method": "completion/complete",
            "params": {"ref": {"type": "ref/prompt", "name": "b__greet"}}}));
        assert_eq!(completion.named, Some(Named::Prompt(Some("b__greet".into()))));
        let read_resource = read(json!({"jsonrpc": "2.0", "id": 5, "method": "resources/read",
            "params": {"uri": "test://a"}}));
        assert_eq!(read_resource.named_target(), Some("test://a"));
        let answer = read(json!({"jsonrpc": "2.0", "id": 6, "result": {}}));
        assert_eq!((answer.method.as_str(), answer.kind()), ("", Kind::Response));
        assert_eq!(call.method, Method::ToolsCall);
        let vendor = read(json!({"jsonrpc": "2.0", "id": 7, "method": "x-acme/report"}));
        assert_eq!(vendor.method, Method::Other("x-acme/report".into()));
        assert_eq!(vendor.method.as_str(), "x-acme/report");
    }
}
