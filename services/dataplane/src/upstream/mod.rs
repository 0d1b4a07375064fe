//! The dataplane's client to upstream MCP servers (Streamable HTTP, both eras).
//!
//! Requests are built from scratch: the upstream gets the JSON-RPC bytes, the MCP headers the
//! dataplane decided on, the server's *own* credential and, if configured, a caller assertion —
//! never the caller's `Authorization`, cookies or any other client header. Connections are pooled
//! (keep-alive, `TCP_NODELAY`); every upstream has a circuit breaker so a dead server fails fast.
//!
//! Layout: `mod.rs` holds the public types and the Streamable HTTP client ([`Upstreams`]);
//! private submodules hold the per-upstream circuit breaker (`breaker`), the client-credentials
//! token cache (`oauth`) and the deprecated HTTP+SSE transport (`http_sse`, 2024-11-05).

mod breaker;
mod http_sse;
mod oauth;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;

use gatehouse_core::ids::{EndpointId, OrgId, ServerId};
use gatehouse_core::snapshot::UpstreamTransport;

use crate::assertion::{self, AssertionSigner, CallerClaims};
use crate::auth::Principal;
use crate::store::{ServerState, UpstreamCredential};
use gatehouse_egress::{Egress, EgressError, RedirectMode};

use self::breaker::Breaker;
use self::http_sse::ReplyRoutes;
use self::oauth::OauthToken;

pub type SseEvents = Pin<Box<dyn Stream<Item = Result<sse_stream::Sse, String>> + Send>>;

/// What an upstream answered to a POST.
pub enum Reply {
    /// 202: a notification or response was accepted.
    Accepted,
    /// One JSON-RPC message (or batch), as bytes.
    Json { body: Bytes, session_id: Option<String> },
    /// An SSE stream of messages.
    Stream {
        events: SseEvents,
        session_id: Option<String>,
    },
    /// Any other answer (4xx with a JSON-RPC error body, 405, ...), passed on as it is.
    Status { status: u16, body: Bytes, json: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be reached or failed (connect error, timeout, 5xx, open breaker).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The upstream no longer knows the session we named (404).
    #[error("upstream session expired")]
    SessionGone,
    /// The URL is not one Gatehouse may call (egress policy) or the credential cannot be used.
    #[error("upstream refused by policy: {0}")]
    Refused(&'static str),
}

/// The identity the caller assertion names.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub org: OrgId,
    pub endpoint: EndpointId,
}

/// One outbound POST.
pub struct Outbound<'a> {
    pub server: &'a ServerState,
    pub body: Bytes,
    pub protocol_version: Option<&'a str>,
    pub session_id: Option<&'a str>,
    /// `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` as the dataplane decided them.
    pub mcp_headers: Vec<(HeaderName, HeaderValue)>,
    pub caller: Option<Caller<'a>>,
    /// What the client declared at `initialize` (legacy sessions), for an HTTP+SSE upstream's
    /// per-request handshake.
    pub client_capabilities: Option<&'a Value>,
}

#[derive(Clone)]
pub struct Upstreams {
    /// The connection pool this handle sends through. Each HTTP worker gets its own
    /// ([`Upstreams::with_own_pool`]): a pooled connection's I/O task runs on the runtime that
    /// opened it, so a pool shared by workers would hand most calls to another worker's thread
    /// and back (two cross-thread wake-ups per call, and the I/O on the wrong core).
    http: reqwest::Client,
    inner: Arc<Inner>,
}

struct Inner {
    egress: Egress,
    timeout: Duration,
    /// Largest answer body, or single stream event, accepted from an upstream.
    max_message_bytes: usize,
    breakers: Mutex<HashMap<ServerId, Breaker>>,
    oauth: Mutex<HashMap<ServerId, OauthToken>>,
    oauth_fetch: Mutex<HashMap<ServerId, Arc<tokio::sync::Mutex<()>>>>,
    signer: AssertionSigner,
    reply_routes: ReplyRoutes,
}

impl Upstreams {
    /// `max_message_bytes` bounds an answer body or a single stream event; `reply_key` seals the
    /// routes of HTTP+SSE upstreams' server→client requests (one purpose).
    pub fn new(
        egress: Egress,
        timeout: Duration,
        max_message_bytes: usize,
        signer: AssertionSigner,
        reply_key: &[u8; 32],
    ) -> anyhow::Result<Self> {
        let http = pooled_client(&egress)?;
        Ok(Self {
            http,
            inner: Arc::new(Inner {
                egress,
                timeout,
                max_message_bytes,
                breakers: Mutex::new(HashMap::new()),
                oauth: Mutex::new(HashMap::new()),
                oauth_fetch: Mutex::new(HashMap::new()),
                signer,
                reply_routes: ReplyRoutes::new(reply_key),
            }),
        })
    }

    /// The same upstreams (breakers, credentials, routes) through a connection pool of its own,
    /// for one HTTP worker: that worker's calls then stay on its own thread.
    pub fn with_own_pool(&self) -> anyhow::Result<Self> {
        Ok(Self {
            http: pooled_client(&self.inner.egress)?,
            inner: self.inner.clone(),
        })
    }

    pub fn signer(&self) -> &AssertionSigner {
        &self.inner.signer
    }

    async fn headers_for(
        &self,
        server: &ServerState,
        protocol_version: Option<&str>,
        session_id: Option<&str>,
        caller: Option<Caller<'_>>,
    ) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::new();
        if let Some(v) = protocol_version.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert("mcp-protocol-version", v);
        }
        if let Some(s) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert("mcp-session-id", s);
        }
        match server
            .credential
            .as_ref()
            .map_err(|_| UpstreamError::Refused("upstream credential is unusable"))?
        {
            UpstreamCredential::None => {}
            UpstreamCredential::Bearer(token) => {
                let value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| UpstreamError::Refused("upstream credential is unusable"))?;
                headers.insert(reqwest::header::AUTHORIZATION, sensitive(value));
            }
            UpstreamCredential::Header { name, value } => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| UpstreamError::Refused("upstream credential is unusable"))?;
                let value = HeaderValue::from_str(value.expose_secret())
                    .map_err(|_| UpstreamError::Refused("upstream credential is unusable"))?;
                headers.insert(name, sensitive(value));
            }
            UpstreamCredential::OauthClientCredentials { .. } => {
                let token = self.oauth_token(server).await?;
                let value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| UpstreamError::Refused("upstream credential is unusable"))?;
                headers.insert(reqwest::header::AUTHORIZATION, sensitive(value));
            }
        }
        if server.snapshot.send_caller_assertion
            && let Some(caller) = caller
        {
            let sub_kind = match caller.principal.kind {
                gatehouse_events::SubjectKind::User => "user",
                gatehouse_events::SubjectKind::ServiceToken => "service_token",
                gatehouse_events::SubjectKind::OauthClient => "client",
                gatehouse_events::SubjectKind::Anonymous => "anonymous",
            };
            let (iat, exp) = AssertionSigner::times();
            let jwt = self.inner.signer.sign(&CallerClaims {
                iss: self.inner.signer.issuer(),
                aud: &server.snapshot.url,
                sub: &caller.principal.subject,
                sub_kind,
                org_id: caller.org.to_string(),
                endpoint_id: caller.endpoint.to_string(),
                client_id: caller.principal.client_id.as_deref(),
                iat,
                exp,
                jti: uuid::Uuid::now_v7().to_string(),
            });
            if let Ok(v) = HeaderValue::from_str(&jwt) {
                headers.insert(assertion::HEADER, v);
            }
        }
        Ok(headers)
    }

    fn url(&self, server: &ServerState) -> Result<url::Url, UpstreamError> {
        let url = server
            .url
            .clone()
            .ok_or(UpstreamError::Refused("upstream URL is invalid"))?;
        self.inner.egress.check_url_syntax(&url).map_err(refusal)?;
        Ok(url)
    }

    /// POSTs one message (or batch) and returns the upstream's answer without reading a stream.
    pub async fn post(&self, out: Outbound<'_>) -> Result<Reply, UpstreamError> {
        if out.server.snapshot.transport == UpstreamTransport::HttpSse {
            return self.post_http_sse(out).await;
        }
        let server_id = out.server.snapshot.id;
        if self.breaker_open(server_id) {
            return Err(UpstreamError::Unavailable("circuit breaker open".into()));
        }
        let url = self.url(out.server)?;
        let uses_oauth = matches!(
            out.server.credential,
            Ok(UpstreamCredential::OauthClientCredentials { .. })
        );
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut headers = self
                .headers_for(out.server, out.protocol_version, out.session_id, out.caller)
                .await?;
            for (name, value) in &out.mcp_headers {
                headers.insert(name.clone(), value.clone());
            }
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            );
            let send = self
                .http
                .post(url.clone())
                .headers(headers)
                .body(out.body.clone())
                .send();
            let response = match tokio::time::timeout(self.inner.timeout, send).await {
                Ok(Ok(r)) => r,
                // A connection that could not be established carried no request: trying once
                // more is safe for any method (a pooled connection the upstream had closed, a
                // restarting upstream).
                Ok(Err(e)) if e.is_connect() && attempt == 1 => continue,
                Ok(Err(e)) => {
                    self.record(server_id, false);
                    return Err(UpstreamError::Unavailable(classify(&e)));
                }
                Err(_) => {
                    self.record(server_id, false);
                    return Err(UpstreamError::Unavailable("no answer in time".into()));
                }
            };
            // A cached client-credentials token the upstream no longer accepts: fetch a new one
            // and try once more (the request was refused, so repeating it is safe).
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && uses_oauth && attempt == 1 {
                self.inner.oauth.lock().expect("oauth cache").remove(&server_id);
                continue;
            }
            break response;
        };
        let status = response.status().as_u16();
        if status >= 500 {
            self.record(server_id, false);
            return Err(UpstreamError::Unavailable(format!("upstream answered {status}")));
        }
        self.record(server_id, true);
        if status == 404 && out.session_id.is_some() {
            return Err(UpstreamError::SessionGone);
        }
        if status == 202 {
            return Ok(Reply::Accepted);
        }
        let session_id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if status == 200 && content_type.starts_with("text/event-stream") {
            return Ok(Reply::Stream {
                events: self.sse_events(response),
                session_id,
            });
        }
        let limit = self.inner.max_message_bytes;
        let body = match tokio::time::timeout(self.inner.timeout, read_body(response, limit)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(UpstreamError::Unavailable("upstream body incomplete".into())),
        };
        let json = content_type.starts_with("application/json");
        if status == 200 && json {
            return Ok(Reply::Json { body, session_id });
        }
        Ok(Reply::Status { status, body, json })
    }

    /// Opens the standalone GET stream of an upstream session (or resumes one after
    /// `last_event_id`). `Ok(None)` when the upstream offers no stream (405).
    pub async fn get_stream(
        &self,
        server: &ServerState,
        protocol_version: &str,
        session_id: Option<&str>,
        last_event_id: Option<&str>,
        caller: Option<Caller<'_>>,
    ) -> Result<Option<SseEvents>, UpstreamError> {
        if server.snapshot.transport == UpstreamTransport::HttpSse {
            // Its stream belongs to a connection of its own; there is no session to listen to.
            return Ok(None);
        }
        if self.breaker_open(server.snapshot.id) {
            return Err(UpstreamError::Unavailable("circuit breaker open".into()));
        }
        let url = self.url(server)?;
        let mut headers = self
            .headers_for(server, Some(protocol_version), session_id, caller)
            .await?;
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(id) = last_event_id.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert("last-event-id", id);
        }
        let send = self.http.get(url).headers(headers).send();
        let response = match tokio::time::timeout(self.inner.timeout, send).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(UpstreamError::Unavailable(classify(&e))),
            Err(_) => return Err(UpstreamError::Unavailable("no answer in time".into())),
        };
        match response.status().as_u16() {
            200 => Ok(Some(self.sse_events(response))),
            404 if session_id.is_some() => Err(UpstreamError::SessionGone),
            405 => Ok(None),
            s if s >= 500 => Err(UpstreamError::Unavailable(format!("upstream answered {s}"))),
            _ => Ok(None),
        }
    }

    /// Ends an upstream session (best effort).
    pub async fn delete_session(&self, server: &ServerState, protocol_version: &str, session_id: &str) {
        if server.snapshot.transport == UpstreamTransport::HttpSse {
            return;
        }
        let Ok(url) = self.url(server) else { return };
        let Ok(headers) = self
            .headers_for(server, Some(protocol_version), Some(session_id), None)
            .await
        else {
            return;
        };
        let _ = tokio::time::timeout(self.inner.timeout, self.http.delete(url).headers(headers).send()).await;
    }

    /// Sends one request and waits for its response message, reading a stream if the upstream
    /// answers with one (notifications on the way are dropped). For the dataplane's own requests
    /// (initialize, lists), not for relaying.
    pub async fn request(
        &self,
        out: Outbound<'_>,
        id: &Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        match self.post(out).await? {
            Reply::Json { body, session_id } => {
                let value: Value = serde_json::from_slice(&body)
                    .map_err(|_| UpstreamError::Unavailable("upstream sent invalid JSON".into()))?;
                Ok((value, session_id))
            }
            Reply::Stream {
                mut events,
                session_id,
            } => {
                let value = tokio::time::timeout(self.inner.timeout, response_on(&mut events, id))
                    .await
                    .map_err(|_| UpstreamError::Unavailable("no answer in time".into()))?
                    .map_err(UpstreamError::Unavailable)?;
                Ok((value, session_id))
            }
            Reply::Accepted => Err(UpstreamError::Unavailable(
                "upstream accepted a request without answering".into(),
            )),
            Reply::Status { status, body, json } => {
                if json
                    && let Ok(value) = serde_json::from_slice::<Value>(&body)
                    && value.get("error").is_some()
                {
                    return Ok((value, None));
                }
                Err(UpstreamError::Unavailable(format!("upstream answered {status}")))
            }
        }
    }
}

/// The next message on an upstream stream: the next event whose data is JSON (other events are
/// skipped), why the stream broke, or `None` at its end.
pub async fn next_message(events: &mut SseEvents) -> Option<Result<Value, String>> {
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if let Some(value) = event.data.as_deref().and_then(|d| serde_json::from_str(d).ok()) {
                    return Some(Ok(value));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// Reads a stream up to the response to request `id` (messages before it are skipped): the
/// response, or why none came.
pub async fn response_on(events: &mut SseEvents, id: &Value) -> Result<Value, String> {
    while let Some(value) = next_message(events).await {
        let value = value?;
        let is_response =
            value.get("method").is_none() && (value.get("result").is_some() || value.get("error").is_some());
        if is_response && value.get("id") == Some(id) {
            return Ok(value);
        }
    }
    Err("stream ended without a response".into())
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

impl Upstreams {
    /// The events of an upstream stream; one event larger than the message limit breaks it.
    fn sse_events(&self, response: reqwest::Response) -> SseEvents {
        let bytes = limit_events(response.bytes_stream(), self.inner.max_message_bytes);
        Box::pin(
            sse_stream::SseStream::from_bytes_stream(bytes)
                .map(|e| e.map_err(|e| format!("upstream stream broke: {e}"))),
        )
    }
}

/// Reads an answer's body, refusing one larger than `limit`: a broken or hostile upstream must
/// not exhaust the memory that every tenant's calls share. A body that arrives in one chunk (the
/// usual small answer) is passed on without copying.
async fn read_body(response: reqwest::Response, limit: usize) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Unavailable("upstream answer too large".into());
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut chunks = response.bytes_stream();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unavailable(classify(&e)))?;
        size += chunk.len();
        if size > limit {
            return Err(too_large());
        }
        parts.push(chunk);
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => parts.concat().into(),
    })
}

/// Passes a stream's bytes on while no single event (the bytes between blank lines) is larger
/// than `limit`; then ends it with an error instead of buffering without bound.
fn limit_events(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    limit: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut sizer = EventSizer::default();
    bytes.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if sizer.feed(&chunk) > limit {
            return Err(std::io::Error::other("upstream event too large"));
        }
        Ok(chunk)
    })
}

/// Measures SSE events across chunks, in one pass over each chunk's bytes.
#[derive(Default)]
struct EventSizer {
    /// Bytes of the event in progress (its ending blank line included).
    pending: usize,
    /// The last three bytes seen: a blank line may be split between chunks.
    last: [u8; 3],
}

impl EventSizer {
    /// Takes the next chunk; returns the size of the largest event it ends or continues.
    fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut largest = 0;
        for &b in chunk {
            self.pending += 1;
            // An event ends with a blank line: `\n\n`, `\r\r` or `\r\n\r\n`.
            let ends =
                (self.last[2] == b && (b == b'\n' || b == b'\r')) || (self.last == *b"\r\n\r" && b == b'\n');
            self.last = [self.last[1], self.last[2], b];
            if ends {
                largest = largest.max(self.pending);
                self.pending = 0;
            }
        }
        largest.max(self.pending)
    }
}

/// A description of a transport error without URLs, addresses or credentials.
fn classify(e: &reqwest::Error) -> String {
    EgressError::from_reqwest(e).as_str().to_owned()
}

/// The SSRF guard's client: public destinations only (unless configured), DNS pinned, redirects
/// only within the upstream's origin (its credential never travels elsewhere); pooled keep-alive
/// connections with `TCP_NODELAY`.
fn pooled_client(egress: &Egress) -> anyhow::Result<reqwest::Client> {
    Ok(egress
        .client_builder(RedirectMode::SameOrigin)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .build()?)
}

fn refusal(e: EgressError) -> UpstreamError {
    UpstreamError::Refused(e.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ends_are_found_within_and_across_chunks() {
        // Two events of 9 bytes each, whole in one chunk.
        let mut sizer = EventSizer::default();
        assert_eq!(sizer.feed(b"data: a\n\ndata: b\n\n"), 9);
        assert_eq!(sizer.pending, 0);
        // `\r\n\r\n` split between chunks ends the event; what follows starts a new one.
        let mut sizer = EventSizer::default();
        sizer.feed(b"a\r\n");
        sizer.feed(b"\r\ndata");
        assert_eq!(sizer.pending, 4);
        // So does `\n\n`.
        let mut sizer = EventSizer::default();
        sizer.feed(b"xa\n");
        sizer.feed(b"\nb");
        assert_eq!(sizer.pending, 1);
        // No blank line: one event still in progress.
        let mut sizer = EventSizer::default();
        assert_eq!(sizer.feed(b"data: no end"), 12);
        assert_eq!(sizer.pending, 12);
    }

    /// An HTTP/1.1 upstream that answers every POST with one JSON-RPC result on a kept-alive
    /// connection, and counts the connections it accepted.
    async fn counting_upstream() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: its head, then `content-length` bytes of body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < head_end + length {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + length);
                        let body = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if socket.write_all(answer.as_bytes()).await.is_err()
                            || socket.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn server_at(url: String) -> ServerState {
        use gatehouse_core::snapshot::{ServerSnapshot, UpstreamAuth};
        ServerState {
            org_id: OrgId::new(),
            url: url::Url::parse(&url).ok(),
            snapshot: ServerSnapshot {
                id: ServerId::new(),
                slug: "echo".into(),
                url,
                transport: UpstreamTransport::StreamableHttp,
                auth: UpstreamAuth::None,
                send_caller_assertion: false,
            },
            credential: Ok(UpstreamCredential::None),
        }
    }

    fn outbound(server: &ServerState) -> Outbound<'_> {
        Outbound {
            server,
            body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            protocol_version: None,
            session_id: None,
            mcp_headers: Vec::new(),
            caller: None,
            client_capabilities: None,
        }
    }

    #[tokio::test]
    async fn a_worker_pool_keeps_its_own_connections_and_shares_the_breakers() {
        use std::sync::atomic::Ordering;
        let egress = Egress::from_config(&gatehouse_core::config::EgressConfig {
            allow_http: true,
            allow_private_networks: true,
            allow_hosts: Vec::new(),
            request_timeout_ms: 5_000,
            max_redirects: 0,
        })
        .unwrap();
        let first = Upstreams::new(
            egress,
            Duration::from_secs(5),
            1 << 20,
            AssertionSigner::new([7; 32], "https://gatehouse.test".into()).unwrap(),
            &[9; 32],
        )
        .unwrap();
        let second = first.with_own_pool().unwrap();
        let (addr, accepted) = counting_upstream().await;
        let echo = server_at(format!("http://{addr}/mcp"));

        // Between calls, a moment for the pool to take the connection back (hyper returns it
        // from a task of its own), so that every call after the first could reuse it.
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        for _ in 0..3 {
            assert!(matches!(
                first.post(outbound(&echo)).await,
                Ok(Reply::Json { .. })
            ));
            settle().await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one pool reuses its connection"
        );
        for _ in 0..3 {
            assert!(matches!(
                second.post(outbound(&echo)).await,
                Ok(Reply::Json { .. })
            ));
            settle().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the other pool opens its own");

        // An upstream that refuses connections opens the breaker through one handle; the other
        // then fails fast too (breakers belong to the upstream, not to a pool).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = server_at(format!("http://{}/mcp", closed.local_addr().unwrap()));
        drop(closed);
        for _ in 0..breaker::BREAKER_THRESHOLD {
            assert!(matches!(
                first.post(outbound(&dead)).await,
                Err(UpstreamError::Unavailable(_))
            ));
        }
        match second.post(outbound(&dead)).await {
            Err(UpstreamError::Unavailable(why)) => assert_eq!(why, "circuit breaker open"),
            _ => panic!("the other pool's handle must see the open breaker"),
        }
    }

    #[tokio::test]
    async fn one_event_larger_than_the_limit_breaks_the_stream() {
        let chunks = |parts: Vec<&'static [u8]>| {
            futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
        };
        let fits: Vec<_> = limit_events(chunks(vec![b"data: 12345\n\n", b"data: 6789", b"0\n\n"]), 16)
            .collect()
            .await;
        assert!(fits.iter().all(Result::is_ok));
        let whole: Vec<_> = limit_events(chunks(vec![b"data: 0123456789abcdef\n\n"]), 16)
            .collect()
            .await;
        assert!(whole[0].is_err(), "one large event in one chunk");
        let split: Vec<_> = limit_events(chunks(vec![b"data: 01234567", b"89abcdef"]), 16)
            .collect()
            .await;
        assert!(split[1].is_err(), "one large event across chunks");
    }
}
