//! MCP over raw HTTP: a client that controls every header (`RawClient`), the parsing of JSON and
//! SSE response bodies, and a direct look at an upstream's tools.

use serde_json::{Value, json};

/// A minimal MCP client speaking raw HTTP, so tests control every header.
#[derive(Clone)]
pub struct RawClient {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub version: String,
    /// The client capabilities declared (in `initialize`, or in each 2026-07-28 request's
    /// `_meta`); `None` for the defaults.
    pub capabilities: Option<Value>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub messages: Vec<Value>,
}

impl Answer {
    /// Reads a whole response: status, headers and its JSON-RPC messages (JSON or SSE).
    pub async fn read(resp: reqwest::Response) -> Answer {
        let headers = resp.headers().clone();
        let (status, messages) = read_messages(resp).await;
        Answer {
            status,
            headers,
            messages,
        }
    }

    /// The response message to request `id`.
    pub fn response(&self, id: i64) -> &Value {
        self.messages
            .iter()
            .find(|m| m.get("id") == Some(&json!(id)) && m.get("method").is_none())
            .unwrap_or_else(|| {
                panic!(
                    "no response to {id} in {:?} (status {})",
                    self.messages, self.status
                )
            })
    }
}

impl RawClient {
    pub fn new(url: &str, token: Option<String>, version: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            token,
            session: None,
            version: version.into(),
            capabilities: None,
        }
    }

    /// The same client declaring the Tasks extension (`io.modelcontextprotocol/tasks`).
    pub fn declaring_tasks(mut self) -> Self {
        let mut capabilities = if self.modern() {
            json!({})
        } else {
            default_legacy_capabilities()
        };
        capabilities["extensions"] = json!({"io.modelcontextprotocol/tasks": {}});
        self.capabilities = Some(capabilities);
        self
    }

    pub fn modern(&self) -> bool {
        self.version.as_str() >= "2026-07-28"
    }

    /// A request body; modern requests carry the version in `_meta`.
    pub fn request(&self, id: i64, method: &str, mut params: Value) -> Value {
        if self.modern() {
            if !params.is_object() {
                params = json!({});
            }
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.version,
                "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities":
                    self.capabilities.clone().unwrap_or_else(|| json!({})),
            });
        }
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    pub fn builder(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            b = b.header("mcp-session-id", s);
        }
        if self.modern() || self.session.is_some() {
            b = b.header("mcp-protocol-version", &self.version);
        }
        if self.modern()
            && let Some(method) = body.get("method").and_then(Value::as_str)
        {
            b = b.header("mcp-method", method);
            let key = match method {
                "tools/call" | "prompts/get" => Some("name"),
                "resources/read" => Some("uri"),
                "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
                _ => None,
            };
            if let Some(name) = key.and_then(|k| body["params"].get(k)).and_then(Value::as_str) {
                b = b.header("mcp-name", name);
            }
        }
        b.body(serde_json::to_vec(body).unwrap())
    }

    pub async fn send(&self, body: &Value) -> Answer {
        Answer::read(self.builder(body).send().await.unwrap()).await
    }

    pub async fn call(&self, id: i64, method: &str, params: Value) -> Answer {
        self.send(&self.request(id, method, params)).await
    }

    /// The body of a `tools/call` of `name` with `arguments`.
    pub fn tool_call(&self, id: i64, name: &str, arguments: Value) -> Value {
        self.request(id, "tools/call", json!({"name": name, "arguments": arguments}))
    }

    /// Calls tool `name` with `arguments`.
    pub async fn call_tool(&self, id: i64, name: &str, arguments: Value) -> Answer {
        self.send(&self.tool_call(id, name, arguments)).await
    }

    /// Opens a session on legacy revisions (`initialize`); stateless revisions need none.
    pub async fn handshake(&mut self) {
        if !self.modern() {
            self.initialize().await;
        }
    }

    /// initialize + notifications/initialized (legacy revisions).
    pub async fn initialize(&mut self) -> Value {
        let capabilities = self
            .capabilities
            .clone()
            .unwrap_or_else(default_legacy_capabilities);
        let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": self.version,
            "capabilities": capabilities,
            "clientInfo": {"name": "raw-test", "version": "1"}}});
        let answer = self.send(&body).await;
        assert_eq!(answer.status, 200, "initialize: {:?}", answer.messages);
        self.session = Some(answer.headers["mcp-session-id"].to_str().unwrap().to_owned());
        let note = self
            .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(note.status, 202);
        answer.response(0).clone()
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let answer = self.call(900, "tools/list", json!({})).await;
        assert_eq!(answer.status, 200, "tools/list: {:?}", answer.messages);
        let mut names: Vec<String> = answer.response(900)["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }
}

/// What a session-based client declares unless told otherwise.
fn default_legacy_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}})
}

/// The fixture's current tool definitions (initialize + tools/list, 2025-11-25).
pub async fn upstream_tools(url: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let init = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    let session = init
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = init.bytes().await;
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream");
    let mut params = json!({});
    match &session {
        Some(s) => {
            req = req
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-session-id", s)
        }
        // A server without sessions (2026-07-28 only).
        None => {
            req = req
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list");
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
    }
    let resp = req
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":params}))
        .send()
        .await
        .unwrap();
    let messages = read_messages(resp).await.1;
    let reply = messages
        .into_iter()
        .find(|m| m.get("id") == Some(&json!(2)))
        .expect("tools/list answered");
    reply["result"]["tools"].as_array().unwrap().clone()
}

/// Parses a response body into JSON-RPC messages (JSON or SSE).
pub async fn read_messages(resp: reqwest::Response) -> (u16, Vec<Value>) {
    let status = resp.status().as_u16();
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    if sse {
        (status, sse_messages(&text))
    } else {
        (
            status,
            serde_json::from_str::<Value>(&text)
                .map(|v| vec![v])
                .unwrap_or_default(),
        )
    }
}

/// Parses SSE frames into JSON-RPC messages (frames without JSON data are skipped).
pub fn sse_messages(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|frame| {
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                .collect();
            let joined = data.join("\n");
            serde_json::from_str(&joined).ok()
        })
        .collect()
}

/// The messages of an SSE response as they arrive, for tests that act while the stream is open.
pub struct MessageStream {
    chunks: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    /// Everything received so far (for failure messages).
    pub received: String,
    pending: String,
    ready: std::collections::VecDeque<Value>,
}

impl MessageStream {
    pub fn new(response: reqwest::Response) -> Self {
        use futures::StreamExt;
        Self {
            chunks: response.bytes_stream().boxed(),
            received: String::new(),
            pending: String::new(),
            ready: Default::default(),
        }
    }

    /// The next complete message; `None` once the stream ends or `deadline` passes.
    pub async fn next(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        use futures::StreamExt;
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Some(message);
            }
            let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, self.chunks.next()).await else {
                return None;
            };
            let text = std::str::from_utf8(&chunk.unwrap()).unwrap().to_owned();
            self.received.push_str(&text);
            self.pending.push_str(&text);
            while let Some(end) = self.pending.find("\n\n") {
                let frame: String = self.pending.drain(..end + 2).collect();
                self.ready.extend(sse_messages(&frame));
            }
        }
    }
}
