//! Talking to a domain server: authenticating with the server's own credential (a bearer token, a
//! custom header, or an OAuth client-credentials token fetched from the server's token endpoint)
//! and listing its tools over MCP Streamable HTTP with rmcp's client, on the SSRF-guarded HTTP
//! client. Every failure becomes a tenant-safe sentence: what kind of problem, never what an
//! internal host said.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{ClientConfig, Implementation, PaginatedRequestParams};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, StreamableHttpClientTransportConfig,
};
use serde_json::Value;
use url::Url;

use gatehouse_egress::{Egress, EgressError, ReadError, limit_sse_events};

/// A tool list larger than this is refused (a runaway or hostile server).
pub const MAX_TOOLS: usize = 1000;
/// Pages of `tools/list` followed at most.
const MAX_PAGES: usize = 100;
/// Largest single SSE event accepted from an upstream.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The server's credential, opened, for the duration of one connection.
pub enum Credential {
    None,
    Bearer(String),
    Header {
        name: String,
        value: String,
    },
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "Credential::None",
            Credential::Bearer(_) => "Credential::Bearer([REDACTED])",
            Credential::Header { .. } => "Credential::Header([REDACTED])",
            Credential::ClientCredentials { .. } => "Credential::ClientCredentials([REDACTED])",
        })
    }
}

/// Why a sync failed, as shown to the org (and stored as `last_sync_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyncFailure(pub String);

impl SyncFailure {
    fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

fn egress_failure(context: &str, e: EgressError) -> SyncFailure {
    SyncFailure::new(format!("{context}: {e}"))
}

/// How a server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    StreamableHttp,
    /// The deprecated HTTP+SSE transport (protocol 2024-11-05), for old servers.
    HttpSse,
}

/// Lists every tool of the MCP server at `url` as raw JSON definitions.
pub async fn list_tools(
    egress: &Egress,
    url: &str,
    transport: Transport,
    credential: &Credential,
    deadline: Duration,
) -> Result<Vec<Value>, SyncFailure> {
    let listing = async {
        match transport {
            Transport::StreamableHttp => list_tools_inner(egress, url, credential).await,
            Transport::HttpSse => list_tools_http_sse(egress, url, credential).await,
        }
    };
    match tokio::time::timeout(deadline, listing).await {
        Ok(result) => result,
        Err(_) => Err(SyncFailure::new(format!(
            "the server did not finish listing its tools within {} seconds",
            deadline.as_secs()
        ))),
    }
}

async fn list_tools_inner(
    egress: &Egress,
    url: &str,
    credential: &Credential,
) -> Result<Vec<Value>, SyncFailure> {
    let parsed = Url::parse(url).map_err(|_| SyncFailure::new("the server URL is not valid"))?;
    egress
        .check_url(&parsed)
        .await
        .map_err(|e| egress_failure("cannot connect to the server", e))?;
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).max_sse_event_size(MAX_EVENT_BYTES);
    match credential {
        Credential::None => {}
        Credential::Bearer(token) => config = config.auth_header(token.clone()),
        Credential::Header { name, value } => {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SyncFailure::new("the credential header name is not a valid HTTP header name")
            })?;
            let mut value = http::HeaderValue::from_str(value).map_err(|_| {
                SyncFailure::new("the credential header value is not a valid HTTP header value")
            })?;
            value.set_sensitive(true);
            config = config.custom_headers(HashMap::from([(name, value)]));
        }
        Credential::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } => {
            let token =
                client_credentials_token(egress, token_url, client_id, client_secret, scope.as_deref())
                    .await?;
            config = config.auth_header(token);
        }
    }
    // The credentialed client follows redirects only within the server's origin.
    let transport = StreamableHttpClientTransport::with_client(egress.credentialed_client(), config);
    let info = ClientConfig::new(
        Default::default(),
        Implementation::new("gatehouse", env!("CARGO_PKG_VERSION")),
    );
    let client = match info.serve(transport).await {
        Ok(client) => client,
        // A server without sessions (2026-07-28 only) refuses `initialize`: it is listed in its
        // own revision.
        Err(e) => {
            return list_tools_stateless(egress, url, credential)
                .await
                .map_err(|_| classify(&e, "connect"));
        }
    };
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let outcome = loop {
        pages += 1;
        if pages > MAX_PAGES {
            break Err(SyncFailure::new(format!(
                "the server's tool list did not end after {MAX_PAGES} pages"
            )));
        }
        let params = PaginatedRequestParams::default().with_cursor(cursor.clone());
        let page = match client.peer().list_tools(Some(params)).await {
            Ok(page) => page,
            Err(e) => break Err(classify(&e, "list")),
        };
        for tool in page.tools {
            match serde_json::to_value(&tool) {
                Ok(v) => tools.push(v),
                Err(_) => break,
            }
        }
        if tools.len() > MAX_TOOLS {
            break Err(SyncFailure::new(format!(
                "the server lists more than {MAX_TOOLS} tools"
            )));
        }
        match page.next_cursor {
            Some(next) if Some(&next) == cursor.as_ref() => {
                break Err(SyncFailure::new(
                    "the server's tool list repeats the same page cursor",
                ));
            }
            Some(next) => cursor = Some(next),
            None => break Ok(tools),
        }
    };
    let _ = client.cancel().await;
    outcome
}

/// Lists tools in the stateless revision (2026-07-28): each page a request of its own, with the
/// revision's headers and `_meta`; answers are read within the event size limit.
async fn list_tools_stateless(
    egress: &Egress,
    url: &str,
    credential: &Credential,
) -> Result<Vec<Value>, SyncFailure> {
    use serde_json::json;
    const VERSION: &str = "2026-07-28";
    let headers = credential_headers(egress, credential).await?;
    let http = egress.credentialed_client();
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let mut params = json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")},
            "io.modelcontextprotocol/clientCapabilities": {},
        }});
        if let Some(c) = &cursor {
            params["cursor"] = c.clone();
        }
        let id = json!(page);
        let response = http
            .post(url)
            .headers(headers.clone())
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", VERSION)
            .header("mcp-method", "tools/list")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}))
            .send()
            .await
            .map_err(|e| egress_failure("cannot reach the server", EgressError::from_reqwest(&e)))?;
        if !response.status().is_success() {
            return Err(status_failure(response.status().as_u16()));
        }
        let body = egress.read_document(response).await.map_err(|e| match e {
            ReadError::TooLarge { .. } => SyncFailure::new("the server's tool list page is too large"),
            ReadError::Timeout => egress_failure("cannot read the server's tool list", EgressError::Timeout),
            ReadError::Transport(e) => egress_failure("cannot read the server's tool list", e),
        })?;
        let answer = answer_messages(&String::from_utf8_lossy(&body))
            .into_iter()
            .find(|m| m.get("id") == Some(&id) && m.get("method").is_none())
            .ok_or_else(|| {
                SyncFailure::new("the server did not answer tools/list with a valid MCP result")
            })?;
        let result = answer.get("result").ok_or_else(|| {
            SyncFailure::new("the server did not answer tools/list with a valid MCP result")
        })?;
        tools.extend(result["tools"].as_array().into_iter().flatten().cloned());
        if tools.len() > MAX_TOOLS {
            return Err(SyncFailure::new(format!(
                "the server lists more than {MAX_TOOLS} tools"
            )));
        }
        match result.get("nextCursor").filter(|c| !c.is_null()) {
            Some(next) if Some(next) == cursor.as_ref() => {
                return Err(SyncFailure::new(
                    "the server's tool list repeats the same page cursor",
                ));
            }
            Some(next) => cursor = Some(next.clone()),
            None => return Ok(tools),
        }
    }
    Err(SyncFailure::new(format!(
        "the server's tool list did not end after {MAX_PAGES} pages"
    )))
}

/// The headers carrying the server's own credential.
async fn credential_headers(
    egress: &Egress,
    credential: &Credential,
) -> Result<reqwest::header::HeaderMap, SyncFailure> {
    use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
    let mut headers = HeaderMap::new();
    let bearer = |token: &str| {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| SyncFailure::new("the credential is not a valid HTTP header value"))?;
        value.set_sensitive(true);
        Ok::<_, SyncFailure>(value)
    };
    match credential {
        Credential::None => {}
        Credential::Bearer(token) => {
            headers.insert(AUTHORIZATION, bearer(token)?);
        }
        Credential::Header { name, value } => {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SyncFailure::new("the credential header name is not a valid HTTP header name")
            })?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                SyncFailure::new("the credential header value is not a valid HTTP header value")
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Credential::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } => {
            let token =
                client_credentials_token(egress, token_url, client_id, client_secret, scope.as_deref())
                    .await?;
            headers.insert(AUTHORIZATION, bearer(&token)?);
        }
    }
    Ok(headers)
}

/// Lists tools over the deprecated HTTP+SSE transport (2024-11-05): a GET opens an event stream
/// that first announces the message endpoint (`event: endpoint`); requests are POSTed there and
/// their answers arrive on the stream.
async fn list_tools_http_sse(
    egress: &Egress,
    url: &str,
    credential: &Credential,
) -> Result<Vec<Value>, SyncFailure> {
    use futures::StreamExt;
    use serde_json::json;

    let base = Url::parse(url).map_err(|_| SyncFailure::new("the server URL is not valid"))?;
    egress
        .check_url(&base)
        .await
        .map_err(|e| egress_failure("cannot connect to the server", e))?;
    let headers = credential_headers(egress, credential).await?;
    // The credentialed client follows redirects only within the server's origin.
    let http = egress.credentialed_client();
    let response = http
        .get(base.clone())
        .headers(headers.clone())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| egress_failure("cannot reach the server", EgressError::from_reqwest(&e)))?;
    if !response.status().is_success() {
        return Err(status_failure(response.status().as_u16()));
    }
    // No event is buffered beyond the limit: a stream whose event does not end breaks at once.
    let oversized = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = oversized.clone();
    let bytes = limit_sse_events(response.bytes_stream(), MAX_EVENT_BYTES).inspect(move |chunk| {
        if chunk.is_err() {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut events = std::pin::pin!(sse_stream::SseStream::from_bytes_stream(bytes));
    let mut next_event = async || -> Result<sse_stream::Sse, SyncFailure> {
        match events.next().await {
            Some(Ok(event)) => Ok(event),
            _ if oversized.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(SyncFailure::new("the server sent an oversized event"))
            }
            Some(Err(_)) | None => Err(SyncFailure::new("the server's event stream ended early")),
        }
    };
    let endpoint = loop {
        let event = next_event().await?;
        if event.event.as_deref() == Some("endpoint") {
            break event.data.unwrap_or_default();
        }
    };
    let endpoint = base
        .join(endpoint.trim())
        .map_err(|_| SyncFailure::new("the server announced an invalid message endpoint"))?;
    // The credential goes to the announced endpoint too: only within the server's own origin.
    if endpoint.origin() != base.origin() {
        return Err(SyncFailure::new(
            "the server announced a message endpoint on another origin; refused (its credential would travel there)",
        ));
    }
    let post = async |message: Value| -> Result<(), SyncFailure> {
        let response = http
            .post(endpoint.clone())
            .headers(headers.clone())
            .json(&message)
            .send()
            .await
            .map_err(|e| egress_failure("cannot reach the server", EgressError::from_reqwest(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_failure(response.status().as_u16()))
        }
    };
    // Reads the stream until the response with `id`, skipping notifications and other messages.
    let mut answer = async |id: i64| -> Result<Value, SyncFailure> {
        loop {
            let event = next_event().await?;
            if event.event.as_deref().is_some_and(|e| e != "message") {
                continue;
            }
            let Some(message) = event
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
            else {
                continue;
            };
            if message.get("method").is_none() && message.get("id") == Some(&json!(id)) {
                if let Some(result) = message.get("result") {
                    return Ok(result.clone());
                }
                return Err(SyncFailure::new("the server answered with a JSON-RPC error"));
            }
        }
    };

    post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05",
            "capabilities": {},
            "clientInfo": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}
        }}),
    )
    .await?;
    answer(1).await?;
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;

    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let id = 2 + page as i64;
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params})).await?;
        let result = answer(id).await?;
        let listed = result.get("tools").and_then(Value::as_array).ok_or_else(|| {
            SyncFailure::new("the server did not answer tools/list with a valid MCP result")
        })?;
        tools.extend(listed.iter().cloned());
        if tools.len() > MAX_TOOLS {
            return Err(SyncFailure::new(format!(
                "the server lists more than {MAX_TOOLS} tools"
            )));
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(next) if Some(next) == cursor.as_deref() => {
                return Err(SyncFailure::new(
                    "the server's tool list repeats the same page cursor",
                ));
            }
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(tools),
        }
    }
    Err(SyncFailure::new(format!(
        "the server's tool list did not end after {MAX_PAGES} pages"
    )))
}

/// Fetches an access token with the OAuth 2.0 client-credentials grant (RFC 6749 §4.4), the client
/// authenticating with HTTP Basic (§2.3.1), through the guard.
async fn client_credentials_token(
    egress: &Egress,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
) -> Result<String, SyncFailure> {
    let url = Url::parse(token_url).map_err(|_| SyncFailure::new("the OAuth token URL is not valid"))?;
    egress
        .check_url(&url)
        .await
        .map_err(|e| egress_failure("cannot reach the OAuth token endpoint", e))?;
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let response = egress
        .credentialed_client()
        .post(url)
        .basic_auth(form_urlencode(client_id), Some(form_urlencode(client_secret)))
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| {
            egress_failure(
                "cannot reach the OAuth token endpoint",
                EgressError::from_reqwest(&e),
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(SyncFailure::new(format!(
            "the OAuth token endpoint refused the client credentials (HTTP {})",
            status.as_u16()
        )));
    }
    let body = egress.read_document(response).await.map_err(|e| match e {
        ReadError::TooLarge { .. } => SyncFailure::new("the OAuth token response is too large"),
        ReadError::Timeout => egress_failure("cannot read the OAuth token response", EgressError::Timeout),
        ReadError::Transport(e) => egress_failure("cannot read the OAuth token response", e),
    })?;
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|_| SyncFailure::new("the OAuth token endpoint did not answer with JSON"))?;
    let token = parsed
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SyncFailure::new("the OAuth token response has no access_token"))?;
    if let Some(kind) = parsed.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(SyncFailure::new(format!(
            "the OAuth token endpoint issued a {kind:?} token; only Bearer tokens are supported"
        )));
    }
    Ok(token.to_owned())
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
fn form_urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Turns an rmcp error chain into a tenant-safe sentence by looking for known causes.
fn classify(err: &(dyn std::error::Error + 'static), stage: &str) -> SyncFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if let Some(status) = r.status() {
                return status_failure(status.as_u16());
            }
            return egress_failure("cannot reach the server", EgressError::from_reqwest(r));
        }
        if e.downcast_ref::<AuthRequiredError>().is_some() {
            return status_failure(401);
        }
        if e.downcast_ref::<InsufficientScopeError>().is_some() {
            return status_failure(403);
        }
        if let Some(s) = e.downcast_ref::<HttpStatusError>() {
            return status_failure(s.status);
        }
        source = e.source();
    }
    tracing::debug!(error = %err, stage, "upstream MCP exchange failed");
    match stage {
        "connect" => SyncFailure::new(
            "the server did not complete the MCP initialization (is the URL an MCP Streamable HTTP endpoint?)",
        ),
        _ => SyncFailure::new("the server did not answer tools/list with a valid MCP result"),
    }
}

fn status_failure(status: u16) -> SyncFailure {
    match status {
        401 | 403 => SyncFailure::new(format!(
            "the server refused Gatehouse's credential (HTTP {status}); check the server's authentication settings"
        )),
        404 => SyncFailure::new("the server answered HTTP 404: no MCP endpoint at this URL"),
        s => SyncFailure::new(format!("the server answered HTTP {s}")),
    }
}

/// The JSON-RPC messages of a Streamable HTTP answer body, read whole: the body itself when it is
/// JSON, otherwise the `data:` of each SSE event (an event's several `data:` lines joined).
/// Bodies are read bounded before they get here ([`Egress::read_document`],
/// [`gatehouse_egress::read_body`]).
pub(crate) fn answer_messages(body: &str) -> Vec<Value> {
    if let Ok(message) = serde_json::from_str::<Value>(body.trim()) {
        return vec![message];
    }
    let mut out = Vec::new();
    let mut data = String::new();
    let mut flush = |data: &mut String| {
        if let Ok(message) = serde_json::from_str(data) {
            out.push(message);
        }
        data.clear();
    };
    for line in body.lines() {
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    flush(&mut data);
    out
}
