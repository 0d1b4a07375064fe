//! The platform's one client to upstream MCP servers, used by the dataplane (every forwarded
//! request, the pin watcher) and by the control API (tool sync).
//!
//! Requests are built from scratch: the upstream gets the JSON-RPC bytes, the MCP headers the
//! caller decided on, the server's *own* credential and, if configured, a caller assertion —
//! never a client's `Authorization`, cookies or any other client header. Every request goes
//! through the SSRF guard ([`gatehouse_egress`]); connections are pooled (keep-alive,
//! `TCP_NODELAY`); every upstream has a circuit breaker so a dead server fails fast; everything
//! an upstream sends is read within bounds.
//!
//! Layout: `lib.rs` holds the public types and the Streamable HTTP transport ([`Client`]);
//! private modules hold the headers each request carries (`headers`), bounded reading of answers
//! and SSE streams (`stream`), the per-upstream circuit breaker (`breaker`), the
//! client-credentials token cache (`oauth`), the deprecated HTTP+SSE transport (`http_sse`,
//! 2024-11-05), the sessions held for stateless clients of session upstreams (`sessions`), each
//! upstream's revision, learned (`wire`), and `tools/list` followed over every page (`tools`).
//! [`answer_messages`] reads the JSON-RPC messages of a whole answer body.
//!
//! What the caller knows and this crate does not (where a server is configured, its opened
//! credential, who a caller is and how to sign an assertion naming them) is passed in as plain
//! values ([`Upstream`], [`Caller`]) and one trait ([`CallerAssertion`]).

mod breaker;
mod headers;
mod http_sse;
mod messages;
mod oauth;
mod sessions;
mod stream;
mod tools;
mod wire;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde_json::Value;

use gatehouse_core::breaker::Breaker;
use gatehouse_core::ids::{EndpointId, OrgId, ServerId};
use gatehouse_core::secrets::Keyring;
use gatehouse_core::snapshot::{Sealed, ServerSnapshot, UpstreamAuth, server_credential_context};
use gatehouse_core::sync::MutexExt;
use gatehouse_core::upstream::UpstreamTransport;
use gatehouse_egress::{Egress, EgressError, RedirectMode};

pub use self::messages::answer_messages;
pub use self::sessions::{
    ClientHello, HeldSession, NEWEST_SESSION_VERSION, SessionKey, SessionLimits, session_capabilities,
};
pub use self::stream::{next_message, response_on};
pub use self::tools::{Listing, MAX_PAGES, ToolLimits};
pub use self::wire::{Learned, STATELESS_VERSION, Wire, stateless_meta};

use self::http_sse::ReplyRoutes;
use self::oauth::OauthToken;
use self::sessions::SessionPool;
use self::stream::read_body;
use self::wire::Wires;

pub type SseEvents = Pin<Box<dyn Stream<Item = Result<sse_stream::Sse, String>> + Send>>;

/// An upstream server as the client speaks to it.
pub struct Upstream {
    pub id: ServerId,
    /// The URL as configured (the caller assertion's audience).
    pub url: String,
    /// `url`, parsed once (`None`: invalid).
    parsed_url: Option<url::Url>,
    pub transport: UpstreamTransport,
    /// The server's own credential, opened; why it cannot be used otherwise (never sent).
    pub credential: Result<Credential, String>,
    /// Whether requests made for a caller carry an assertion naming them.
    pub send_caller_assertion: bool,
}

impl Upstream {
    pub fn new(
        id: ServerId,
        url: String,
        transport: UpstreamTransport,
        credential: Result<Credential, String>,
        send_caller_assertion: bool,
    ) -> Self {
        Self {
            id,
            parsed_url: url::Url::parse(&url).ok(),
            url,
            transport,
            credential,
            send_caller_assertion,
        }
    }
}

impl Upstream {
    /// The server `snapshot` of `org`, its sealed credential opened with `keyring` (or why it
    /// cannot be: the client then refuses to send to it).
    pub fn of_snapshot(org: OrgId, snapshot: &ServerSnapshot, keyring: &Keyring) -> Self {
        Upstream::new(
            snapshot.id,
            snapshot.url.clone(),
            snapshot.transport,
            Credential::open(org, snapshot, keyring),
            snapshot.send_caller_assertion,
        )
    }
}

/// A server's own credential, opened. Never logged (`Debug` redacts).
pub enum Credential {
    None,
    Bearer(SecretString),
    Header {
        name: String,
        value: SecretString,
    },
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        scope: Option<String>,
    },
}

impl Credential {
    /// Opens the sealed credential of `server`, a server of `org`.
    pub fn open(org: OrgId, server: &ServerSnapshot, keyring: &Keyring) -> Result<Credential, String> {
        let context = server_credential_context(org, server.id);
        let open = |sealed: &Sealed| -> Result<SecretString, String> {
            let bytes = keyring
                .open(&sealed.0, &context)
                .map_err(|e| format!("credential cannot be opened: {e}"))?;
            String::from_utf8(bytes)
                .map(SecretString::from)
                .map_err(|_| "credential is not UTF-8".to_owned())
        };
        Ok(match &server.auth {
            UpstreamAuth::None => Credential::None,
            UpstreamAuth::Bearer { token } => Credential::Bearer(open(token)?),
            UpstreamAuth::Header { name, value } => Credential::Header {
                name: name.clone(),
                value: open(value)?,
            },
            UpstreamAuth::OauthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Credential::OauthClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: open(client_secret)?,
                scope: scope.clone(),
            },
        })
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "None",
            Credential::Bearer(_) => "Bearer([REDACTED])",
            Credential::Header { .. } => "Header([REDACTED])",
            Credential::OauthClientCredentials { .. } => "OauthClientCredentials([REDACTED])",
        })
    }
}

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

/// Why a request to an upstream failed. Every text is the client's own, never the upstream's.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be used: a timeout, an open breaker, a broken or oversized
    /// answer, an answer that is not MCP.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The upstream could not be reached (the egress guard's refusal or a network failure).
    #[error("upstream unreachable: {0}")]
    Unreachable(EgressError),
    /// The upstream answered with an HTTP status that is no MCP answer (5xx, or a 4xx without a
    /// JSON-RPC error where an answer was needed).
    #[error("upstream answered {0}")]
    Status(u16),
    /// The upstream's OAuth token endpoint refused the client credentials or failed.
    #[error("token endpoint failed: {0}")]
    TokenEndpoint(String),
    /// The upstream no longer knows the session we named (404).
    #[error("upstream session expired")]
    SessionGone,
    /// The URL is not one Gatehouse may call (egress policy) or the credential cannot be used.
    #[error("upstream refused by policy: {0}")]
    Refused(&'static str),
}

/// Who a request is made for, as the caller assertion names them.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub org: OrgId,
    pub endpoint: EndpointId,
    pub subject: &'a str,
    /// `user`, `service_token`, `client` or `anonymous`.
    pub subject_kind: &'static str,
    pub client_id: Option<&'a str>,
}

/// Signs the assertion that names a caller to an upstream (the dataplane's signer).
pub trait CallerAssertion: Send + Sync + 'static {
    /// The header, and its value, naming `caller` to the upstream at `audience`; `None` when no
    /// assertion can be made.
    fn assertion(&self, audience: &str, caller: &Caller<'_>) -> Option<(HeaderName, HeaderValue)>;
}

/// One outbound POST.
pub struct Outbound<'a> {
    pub upstream: &'a Upstream,
    pub body: Bytes,
    pub protocol_version: Option<&'a str>,
    pub session_id: Option<&'a str>,
    /// `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` as the caller decided them.
    pub mcp_headers: Vec<(HeaderName, HeaderValue)>,
    pub caller: Option<Caller<'a>>,
    /// What the client declared at `initialize` (legacy sessions), for an HTTP+SSE upstream's
    /// per-request handshake.
    pub client_capabilities: Option<&'a Value>,
}

impl<'a> Outbound<'a> {
    /// `message` to `upstream` outside any session, in no revision of its choosing, with no extra
    /// headers and for no caller: the fields a request sets differently are set over it.
    pub fn message(upstream: &'a Upstream, message: &Value) -> Self {
        Outbound {
            upstream,
            body: Bytes::from(serde_json::to_vec(message).expect("json")),
            protocol_version: None,
            session_id: None,
            mcp_headers: vec![],
            caller: None,
            client_capabilities: None,
        }
    }
}

/// How a [`Client`] is bounded.
#[derive(Clone)]
pub struct Settings {
    /// The longest a request (or the wait for an answer on a stream) may take.
    pub timeout: Duration,
    /// Largest answer body, or single stream event, accepted from an upstream.
    pub max_message_bytes: usize,
    /// Seals the reply routes of HTTP+SSE upstreams' server→client requests (one purpose).
    pub reply_key: [u8; 32],
    /// Bounds the upstream sessions held for stateless clients.
    pub sessions: SessionLimits,
    /// Prefix of the client's metric names (`gatehouse_dataplane`, `gatehouse_control_api`).
    pub metrics_prefix: &'static str,
}

#[derive(Clone)]
pub struct Client {
    /// The connection pool this handle sends through. Each HTTP worker gets its own
    /// ([`Client::with_own_pool`]): a pooled connection's I/O task runs on the runtime that
    /// opened it, so a pool shared by workers would hand most calls to another worker's thread
    /// and back (two cross-thread wake-ups per call, and the I/O on the wrong core).
    http: reqwest::Client,
    inner: Arc<Inner>,
}

struct Inner {
    egress: Egress,
    timeout: Duration,
    max_message_bytes: usize,
    metrics_prefix: &'static str,
    breakers: Mutex<HashMap<ServerId, Breaker>>,
    oauth: Mutex<HashMap<ServerId, OauthToken>>,
    oauth_fetch: Mutex<HashMap<ServerId, Arc<tokio::sync::Mutex<()>>>>,
    assertion: Option<Arc<dyn CallerAssertion>>,
    reply_routes: ReplyRoutes,
    /// Sessions held for stateless clients of session upstreams.
    sessions: SessionPool,
    /// Each upstream's wire (stateless or session), learned on first use.
    wires: Wires,
}

impl Client {
    /// A client through `egress`, bounded by `settings`; `assertion` signs caller assertions for
    /// upstreams that want them (none are sent without it).
    pub fn new(
        egress: Egress,
        settings: Settings,
        assertion: Option<Arc<dyn CallerAssertion>>,
    ) -> anyhow::Result<Self> {
        let http = pooled_client(&egress)?;
        Ok(Self {
            http,
            inner: Arc::new(Inner {
                egress,
                timeout: settings.timeout,
                max_message_bytes: settings.max_message_bytes,
                metrics_prefix: settings.metrics_prefix,
                breakers: Mutex::new(HashMap::new()),
                oauth: Mutex::new(HashMap::new()),
                oauth_fetch: Mutex::new(HashMap::new()),
                assertion,
                reply_routes: ReplyRoutes::new(&settings.reply_key),
                sessions: SessionPool::new(settings.sessions, settings.metrics_prefix),
                wires: Wires::default(),
            }),
        })
    }

    /// The same upstreams (breakers, credentials, routes, sessions) through a connection pool of
    /// its own, for one HTTP worker: that worker's calls then stay on its own thread.
    pub fn with_own_pool(&self) -> anyhow::Result<Self> {
        Ok(Self {
            http: pooled_client(&self.inner.egress)?,
            inner: self.inner.clone(),
        })
    }

    fn metric(&self, name: &str) -> String {
        format!("{}_{name}", self.inner.metrics_prefix)
    }

    fn url(&self, upstream: &Upstream) -> Result<url::Url, UpstreamError> {
        let url = upstream
            .parsed_url
            .clone()
            .ok_or(UpstreamError::Refused("upstream URL is invalid"))?;
        self.inner.egress.check_url_syntax(&url).map_err(refusal)?;
        Ok(url)
    }

    /// POSTs one message (or batch) and returns the upstream's answer without reading a stream.
    pub async fn post(&self, out: Outbound<'_>) -> Result<Reply, UpstreamError> {
        if out.upstream.transport == UpstreamTransport::HttpSse {
            return self.post_http_sse(out).await;
        }
        let server_id = out.upstream.id;
        if self.breaker_open(server_id) {
            return Err(UpstreamError::Unavailable("circuit breaker open".into()));
        }
        let url = self.url(out.upstream)?;
        let uses_oauth = matches!(
            out.upstream.credential,
            Ok(Credential::OauthClientCredentials { .. })
        );
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut headers = self
                .headers_for(out.upstream, out.protocol_version, out.session_id, out.caller)
                .await?;
            // Never over a header already decided (the server's credential, the caller
            // assertion, the session) nor as a credential header of any kind.
            for (name, value) in &out.mcp_headers {
                if !headers.contains_key(name) && !is_credential_header(name) {
                    headers.insert(name.clone(), value.clone());
                }
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
                    return Err(unreachable(&e));
                }
                Err(_) => {
                    self.record(server_id, false);
                    return Err(UpstreamError::Unavailable("no answer in time".into()));
                }
            };
            // A cached client-credentials token the upstream no longer accepts: fetch a new one
            // and try once more (the request was refused, so repeating it is safe).
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && uses_oauth && attempt == 1 {
                self.inner.oauth.lock_or_recover().remove(&server_id);
                continue;
            }
            break response;
        };
        let status = response.status().as_u16();
        if status >= 500 {
            self.record(server_id, false);
            return Err(UpstreamError::Status(status));
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
        let body = read_body(response, limit, self.inner.timeout).await?;
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
        upstream: &Upstream,
        protocol_version: &str,
        session_id: Option<&str>,
        last_event_id: Option<&str>,
        caller: Option<Caller<'_>>,
    ) -> Result<Option<SseEvents>, UpstreamError> {
        if upstream.transport == UpstreamTransport::HttpSse {
            // Its stream belongs to a connection of its own; there is no session to listen to.
            return Ok(None);
        }
        if self.breaker_open(upstream.id) {
            return Err(UpstreamError::Unavailable("circuit breaker open".into()));
        }
        let url = self.url(upstream)?;
        let mut headers = self
            .headers_for(upstream, Some(protocol_version), session_id, caller)
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
            Ok(Err(e)) => return Err(unreachable(&e)),
            Err(_) => return Err(UpstreamError::Unavailable("no answer in time".into())),
        };
        match response.status().as_u16() {
            200 => Ok(Some(self.sse_events(response))),
            404 if session_id.is_some() => Err(UpstreamError::SessionGone),
            405 => Ok(None),
            s if s >= 500 => Err(UpstreamError::Status(s)),
            _ => Ok(None),
        }
    }

    /// Ends an upstream session (best effort).
    pub async fn delete_session(&self, upstream: &Upstream, protocol_version: &str, session_id: &str) {
        if upstream.transport == UpstreamTransport::HttpSse {
            return;
        }
        let Ok(url) = self.url(upstream) else { return };
        let Ok(headers) = self
            .headers_for(upstream, Some(protocol_version), Some(session_id), None)
            .await
        else {
            return;
        };
        let _ = tokio::time::timeout(self.inner.timeout, self.http.delete(url).headers(headers).send()).await;
    }

    /// Sends one request and waits for its response message, reading a stream if the upstream
    /// answers with one (notifications on the way are dropped). For the client's own requests
    /// (initialize, lists), not for relaying.
    pub async fn request(
        &self,
        out: Outbound<'_>,
        id: &Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        let reply = self.post(out).await?;
        self.answer_of(reply, id).await
    }

    /// The response message to request `id` in `reply` (reading a stream to it), and the
    /// session id the upstream named.
    pub async fn answer_of(
        &self,
        reply: Reply,
        id: &Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        match reply {
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
                Err(UpstreamError::Status(status))
            }
        }
    }
}

/// Headers that carry credentials: never sent on a client's behalf.
fn is_credential_header(name: &HeaderName) -> bool {
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie")
}

/// A transport failure, as the guard classifies it (without URLs, addresses or credentials).
fn unreachable(e: &reqwest::Error) -> UpstreamError {
    UpstreamError::Unreachable(EgressError::from_reqwest(e))
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
mod tests;
