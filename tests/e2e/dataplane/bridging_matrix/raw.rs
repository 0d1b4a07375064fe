//! The matrix's raw HTTP client: every revision, written from the specification pages alone
//! (`basic/transports` of 2025-03-26, 2025-06-18, 2025-11-25; `basic/transports/streamable-http`,
//! `basic/versioning` and `basic/patterns/mrtr` of 2026-07-28), for what the SDKs cannot pin.
//! It prints nothing; [`run`] returns the same lines the SDK drivers print (see `cells.rs`).
//!
//! - 2025 revisions: `initialize` asking for the revision (declaring `elicitation`), then
//!   `notifications/initialized`, then each operation in the session (`Mcp-Session-Id`, and
//!   `MCP-Protocol-Version` from 2025-06-18 on). Answers are JSON or an SSE stream; on a stream,
//!   `notifications/progress` are collected and an `elicitation/create` request is answered with
//!   a separate POST while the stream stays open.
//! - 2026-07-28: `server/discover`, then each operation on its own, with `MCP-Protocol-Version`,
//!   `Mcp-Method`, `Mcp-Name` and the `_meta` the revision requires; an `input_required` result is
//!   answered by retrying with `inputResponses` and the echoed `requestState`. Every result must
//!   carry `resultType: "complete"`, and list and read results `ttlMs` and `cacheScope`; what is
//!   missing is reported as a wire error of the operation.

use std::time::Duration;

use serde_json::{Value, json};

use super::cells::{Revision, elicitation_answer};

const TIMEOUT: Duration = Duration::from_secs(10);
const ROUNDS: usize = 5;

/// One JSON-RPC exchange's outcome: the final result or error, what arrived on the way.
#[derive(Default)]
struct Exchange {
    result: Option<Value>,
    error: Option<Value>,
    progress: Vec<Value>,
    elicitations: u64,
}

struct RawClient {
    http: reqwest::Client,
    url: String,
    token: String,
    revision: Revision,
    session: Option<String>,
    next_id: u64,
}

fn failure(op: &str, code: Option<i64>, message: impl Into<String>) -> Value {
    json!({"op": op, "error": {"code": code, "message": message.into()}})
}

/// A JSON-RPC error object as a driver line's `error`.
fn rpc_failure(op: &str, error: &Value) -> Value {
    failure(
        op,
        error["code"].as_i64(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Runs `connect` and every operation against `url` in `revision`.
pub async fn run(url: &str, token: &str, revision: Revision) -> Vec<Value> {
    // A new connection per request: a pooled connection the server has just closed would fail
    // a request for reasons that have nothing to do with the cell.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let mut client = RawClient {
        http,
        url: url.to_owned(),
        token: token.to_owned(),
        revision,
        session: None,
        next_id: 1,
    };
    let mut lines = Vec::new();
    let connected = client.connect().await;
    let ok = connected.get("error").is_none();
    lines.push(connected);
    // A 2026-07-28 client needs no connection: its operations run even when discovery failed
    // (the cells still fail on the failed `server/discover`, but show what else happened).
    if !ok && !revision.is_stateless() {
        return lines;
    }
    for op in super::cells::Op::ALL {
        lines.push(client.operation(op).await);
    }
    if let Some(session) = client.session.take() {
        let _ = client
            .http
            .delete(&client.url)
            .bearer_auth(&client.token)
            .header("mcp-session-id", session)
            .timeout(TIMEOUT)
            .send()
            .await;
    }
    lines
}

impl RawClient {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn client_meta(&self) -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": self.revision.as_str(),
            "io.modelcontextprotocol/clientInfo": {"name": "gatehouse-matrix-raw", "version": "1.0.0"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        })
    }

    async fn connect(&mut self) -> Value {
        if self.revision.is_stateless() {
            let exchange = match self.call("server/discover", json!({})).await {
                Ok(exchange) => exchange,
                Err(message) => return failure("connect", None, message),
            };
            if let Some(error) = &exchange.error {
                return rpc_failure("connect", error);
            }
            let result = exchange.result.unwrap_or_default();
            let mut problems = wire_problems(&result, true);
            let versions = &result["supportedVersions"];
            if !versions
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == self.revision.as_str()))
            {
                problems.push(format!("supportedVersions {versions} lacks 2026-07-28"));
            }
            return json!({"op": "connect", "result": {"protocolVersion": self.revision.as_str()}, "wire": problems});
        }
        let id = self.id();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
            "protocolVersion": self.revision.as_str(),
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "gatehouse-matrix-raw", "version": "1.0.0"},
        }});
        let response = match self.post(&body, None).await {
            Ok(response) => response,
            Err(message) => return failure("connect", None, message),
        };
        self.session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let exchange = match self.read_answer(response, id).await {
            Ok(exchange) => exchange,
            Err(message) => return failure("connect", None, message),
        };
        if let Some(error) = &exchange.error {
            return rpc_failure("connect", error);
        }
        let negotiated = exchange.result.unwrap_or_default()["protocolVersion"].clone();
        if self.session.is_none() {
            return failure("connect", None, "initialize answered without an Mcp-Session-Id");
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        match self.post(&initialized, None).await {
            Ok(response) if response.status() == 202 => {}
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                return failure(
                    "connect",
                    None,
                    format!("notifications/initialized: HTTP {status} {text}"),
                );
            }
            Err(message) => return failure("connect", None, message),
        }
        json!({"op": "connect", "result": {"protocolVersion": negotiated}})
    }

    async fn operation(&mut self, op: super::cells::Op) -> Value {
        use super::cells::Op;
        let name = op.as_str();
        let outcome = match op {
            Op::List => self.call("tools/list", json!({})).await,
            Op::Call => {
                self.call("tools/call", json!({"name": "test_simple_text", "arguments": {}}))
                    .await
            }
            Op::Progress => {
                let params = json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "matrix-progress"}});
                self.call("tools/call", params).await
            }
            Op::Elicit => {
                let params = json!({"name": "test_elicitation", "arguments": {"message": "Who is calling?"}});
                self.call("tools/call", params).await
            }
            Op::Read => {
                self.call("resources/read", json!({"uri": "test://static-text"}))
                    .await
            }
            Op::Prompt => {
                self.call("prompts/get", json!({"name": "test_simple_prompt"}))
                    .await
            }
            Op::Pages => return self.pages().await,
        };
        let exchange = match outcome {
            Ok(exchange) => exchange,
            Err(message) => return failure(name, None, message),
        };
        if let Some(error) = &exchange.error {
            return rpc_failure(name, error);
        }
        let result = exchange.result.unwrap_or_default();
        let wire = if self.revision.is_stateless() {
            wire_problems(&result, matches!(op, Op::List | Op::Read))
        } else {
            Vec::new()
        };
        let progress: Vec<Value> = exchange
            .progress
            .iter()
            .map(|p| json!({"progress": p["progress"], "total": p["total"], "message": p["message"]}))
            .collect();
        json!({"op": name, "result": result, "progress": progress, "elicitations": exchange.elicitations, "wire": wire})
    }

    async fn pages(&mut self) -> Value {
        let mut pages = Vec::new();
        let mut wire = Vec::new();
        let mut cursor: Option<Value> = None;
        loop {
            let params = cursor
                .as_ref()
                .map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let exchange = match self.call("resources/list", params).await {
                Ok(exchange) => exchange,
                Err(message) => return failure("pages", None, message),
            };
            if let Some(error) = &exchange.error {
                return rpc_failure("pages", error);
            }
            let result = exchange.result.unwrap_or_default();
            if self.revision.is_stateless() {
                wire.extend(wire_problems(&result, true));
            }
            let uris: Vec<Value> = result["resources"]
                .as_array()
                .map(|r| r.iter().map(|r| r["uri"].clone()).collect())
                .unwrap_or_default();
            pages.push(uris);
            cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() || pages.len() >= 10 {
                break;
            }
        }
        json!({"op": "pages", "pages": pages, "more": cursor.is_some(), "wire": wire})
    }

    /// Sends request `method` and reads its final answer (answering `input_required` results in
    /// 2026-07-28 and `elicitation/create` requests in the sessions).
    async fn call(&mut self, method: &str, params: Value) -> Result<Exchange, String> {
        let mut params = params;
        let mut total = Exchange::default();
        for _ in 0..ROUNDS {
            if self.revision.is_stateless() {
                let meta = params
                    .as_object_mut()
                    .expect("params are an object")
                    .entry("_meta")
                    .or_insert_with(|| json!({}));
                for (key, value) in self.client_meta().as_object().expect("an object") {
                    meta[key] = value.clone();
                }
            }
            let id = self.id();
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let name = match method {
                "tools/call" | "prompts/get" => params["name"].as_str(),
                "resources/read" => params["uri"].as_str(),
                _ => None,
            };
            let response = self.post(&body, Some((method, name))).await?;
            let exchange = self.read_answer(response, id).await?;
            total.progress.extend(exchange.progress);
            total.elicitations += exchange.elicitations;
            total.error = exchange.error;
            let result = exchange.result;
            let input_required = result
                .as_ref()
                .is_some_and(|r| r["resultType"] == "input_required");
            if !(self.revision.is_stateless() && input_required) {
                total.result = result;
                return Ok(total);
            }
            let result = result.unwrap_or_default();
            let mut responses = serde_json::Map::new();
            for (key, request) in result["inputRequests"].as_object().into_iter().flatten() {
                if request["method"] == "elicitation/create" {
                    total.elicitations += 1;
                    responses.insert(
                        key.clone(),
                        json!({"action": "accept", "content": elicitation_answer()}),
                    );
                } else {
                    return Err(format!("input_required asked for {}", request["method"]));
                }
            }
            params["inputResponses"] = Value::Object(responses);
            match result.get("requestState") {
                Some(state) => params["requestState"] = state.clone(),
                None => {
                    params.as_object_mut().expect("an object").remove("requestState");
                }
            }
        }
        Err(format!("still input_required after {ROUNDS} rounds"))
    }

    async fn post(
        &self,
        body: &Value,
        mcp: Option<(&str, Option<&str>)>,
    ) -> Result<reqwest::Response, String> {
        let mut request = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .timeout(TIMEOUT)
            .json(body);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        let is_initialize = body["method"] == "initialize";
        if self.revision.sends_version_header() && !is_initialize {
            request = request.header("mcp-protocol-version", self.revision.as_str());
        }
        if self.revision.is_stateless()
            && let Some((method, name)) = mcp
        {
            request = request.header("mcp-method", method);
            if let Some(name) = name {
                request = request.header("mcp-name", name);
            }
        }
        request
            .send()
            .await
            .map_err(|e| format!("{} failed: {e}", body["method"]))
    }

    /// Reads the answer to request `id`: a JSON body, or an SSE stream with notifications and
    /// server requests before it. An HTTP error status with a JSON-RPC error body is that error.
    async fn read_answer(&self, mut response: reqwest::Response, id: u64) -> Result<Exchange, String> {
        let status = response.status();
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut exchange = Exchange::default();
        if !is_sse {
            let text = response.text().await.map_err(|e| e.to_string())?;
            let message: Value = serde_json::from_str(&text)
                .map_err(|_| format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))?;
            if let Some(error) = message.get("error") {
                exchange.error = Some(error.clone());
            } else if status.is_success() {
                exchange.result = message.get("result").cloned();
            } else {
                return Err(format!("HTTP {status}: {message}"));
            }
            return Ok(exchange);
        }
        let mut buffer = String::new();
        // What arrived before the answer, for the failure message.
        let mut seen: Vec<String> = Vec::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| format!("no answer within {TIMEOUT:?} on the SSE stream (it carried {seen:?})"))?
                .map_err(|e| format!("the SSE stream broke ({e}) after {seen:?}"))?;
            let Some(chunk) = chunk else {
                return Err(format!("the SSE stream ended before the answer, after {seen:?}"));
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                let data = data.join("\n");
                if data.trim().is_empty() {
                    continue;
                }
                let message: Value =
                    serde_json::from_str(&data).map_err(|_| format!("SSE data is not JSON: {data}"))?;
                seen.push(
                    message["method"]
                        .as_str()
                        .map_or_else(|| format!("answer to {}", message["id"]), str::to_owned),
                );
                if message["id"] == id && message.get("method").is_none() {
                    exchange.result = message.get("result").cloned();
                    exchange.error = message.get("error").cloned();
                    return Ok(exchange);
                }
                match (message["method"].as_str(), message.get("id")) {
                    (Some("notifications/progress"), None) => {
                        exchange.progress.push(message["params"].clone())
                    }
                    // 2026-07-28: "The server MUST NOT send independent JSON-RPC requests on this
                    // stream" (input comes as an `input_required` result); nothing could answer it.
                    (Some(method), Some(_)) if self.revision.is_stateless() => {
                        return Err(format!(
                            "the server sent a {method} request on the 2026-07-28 response stream \
                             (input must come as an input_required result)"
                        ));
                    }
                    (Some("elicitation/create"), Some(request_id)) => {
                        exchange.elicitations += 1;
                        self.answer(
                            request_id,
                            json!({"action": "accept", "content": elicitation_answer()}),
                        )
                        .await?;
                    }
                    (Some(method), Some(request_id)) => {
                        let error = json!({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": format!("{method} is not supported by this client")}});
                        self.post(&error, None).await?;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Answers a server request that arrived on a session's stream.
    async fn answer(&self, id: &Value, result: Value) -> Result<(), String> {
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let response = self.post(&body, None).await?;
        if response.status() != 202 {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!("answering elicitation/create: HTTP {status} {text}"));
        }
        Ok(())
    }
}

/// What a 2026-07-28 result lacks: `resultType: "complete"`, and for cacheable results (lists,
/// reads, discovery) `ttlMs` and `cacheScope`.
fn wire_problems(result: &Value, cacheable: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if result["resultType"] != "complete" {
        problems.push(format!(
            "resultType is {} (want \"complete\")",
            result["resultType"]
        ));
    }
    if cacheable {
        if !result["ttlMs"].is_u64() {
            problems.push(format!("ttlMs is {}", result["ttlMs"]));
        }
        if !matches!(result["cacheScope"].as_str(), Some("public" | "private")) {
            problems.push(format!("cacheScope is {}", result["cacheScope"]));
        }
    }
    problems
}
