//! An upstream MCP server for tests.
//!
//! It serves every tool, resource, prompt and protocol utility the MCP
//! conformance suite (`@modelcontextprotocol/conformance`) asks a server for,
//! over rmcp's Streamable HTTP transport, for both the session-based protocol
//! revisions (up to 2025-11-25) and the stateless 2026-07-28 revision. On top of
//! that it can record the headers it receives and turn on its clients by
//! rewriting a tool description mid-session ("rug pull").
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
//!     record_headers: true,
//!     ..Default::default()
//! })
//! .await?;
//! println!("MCP endpoint: {}", fixture.url());
//! # Ok(()) }
//! ```

mod catalog;
mod content;
mod era;
mod handler;
mod inputs;
mod logs;
mod options;
mod pages;
mod reconnect;
mod skills;
mod state;
mod tasks;
mod tools;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use options::{FixtureOptions, HostPolicy, ProtocolMode, ResponseFormat, RugPull, SessionMode};
pub use state::RecordedHeaders;

use crate::{
    handler::FixtureServer,
    reconnect::ResumableSessionManager,
    state::{ChangeEvent, FixtureState},
};

/// The path the MCP endpoint is served on.
pub const MCP_PATH: &str = "/mcp";

/// A running fixture. Dropping it stops the server.
#[derive(Debug)]
pub struct FixtureHandle {
    addr: SocketAddr,
    url: String,
    state: Arc<FixtureState>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl FixtureHandle {
    /// The address the fixture listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint, e.g. `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The shared log of request headers. Only filled when
    /// [`FixtureOptions::record_headers`] is set.
    pub fn recorded_headers(&self) -> RecordedHeaders {
        self.state.recorded_headers.clone()
    }

    /// A copy of every request's headers received so far.
    pub fn headers_snapshot(&self) -> Vec<Vec<(String, String)>> {
        self.state
            .recorded_headers
            .lock()
            .expect("recorded headers poisoned")
            .clone()
    }

    /// How many `tools/call` requests the fixture has served.
    pub fn tool_calls(&self) -> u64 {
        self.state.tool_calls()
    }

    /// How many `test_slow_cancellable` calls started.
    pub fn slow_calls_started(&self) -> u64 {
        self.state
            .slow_calls_started
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many `test_slow_cancellable` calls were abandoned before they finished: their handler
    /// was dropped or their request cancelled (what closing a 2026-07-28 response stream means).
    pub fn slow_calls_abandoned(&self) -> u64 {
        self.state
            .slow_calls_abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stop accepting connections, end open streams and wait for the accept
    /// loop to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.state.tasks.shutdown();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for FixtureHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.state.tasks.shutdown();
    }
}

/// Start a fixture on `127.0.0.1` (port [`FixtureOptions::port`], `0` for any
/// free port) and return once it accepts connections.
pub async fn spawn_fixture(options: FixtureOptions) -> anyhow::Result<FixtureHandle> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, options.port)).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let sessions = Arc::new(ResumableSessionManager::default());
    let state = Arc::new(FixtureState::new(options.clone(), sessions.clone()));

    // 2026-07-28 only: no sessions, and every request must carry that revision's metadata.
    let modern_only = options.protocol == ProtocolMode::Only2026;
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(options.session_mode == SessionMode::Stateful && !modern_only)
        .with_stateless_protocol_metadata_required(modern_only)
        .with_json_response(options.response_format == ResponseFormat::Json)
        .with_cancellation_token(shutdown.child_token());
    config = match &options.host_policy {
        HostPolicy::AnyHost => config.disable_allowed_hosts(),
        // rmcp's default allow-list is exactly the loopback names.
        HostPolicy::LoopbackOnly => config,
        HostPolicy::Only(hosts) => config.with_allowed_hosts(hosts.clone()),
    };
    let handler_state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(FixtureServer::new(handler_state.clone())),
        sessions,
        config,
    );

    tokio::spawn(change_watched_resource(state.clone(), shutdown.clone()));
    let server = tokio::spawn(accept_connections(listener, mcp, state.clone(), shutdown.clone()));
    tracing::info!(%addr, "MCP fixture listening");
    Ok(FixtureHandle {
        addr,
        url: format!("http://{addr}{MCP_PATH}"),
        state,
        shutdown,
        server: Some(server),
    })
}

/// Give `test://watched-resource` (and the instance's own watched resource) a
/// new revision every interval, so that subscribers have real updates to hear
/// about.
async fn change_watched_resource(state: Arc<FixtureState>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(state.options.watched_resource_interval);
    ticks.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                state.bump_watched_resource();
                state.publish(ChangeEvent::ResourceUpdated(catalog::resource::WATCHED.to_owned()));
                if let Some(name) = &state.options.own_resources {
                    state.publish(ChangeEvent::ResourceUpdated(catalog::own_uri(name, "watched")));
                }
            }
        }
    }
}

type McpService = StreamableHttpService<FixtureServer, ResumableSessionManager>;

async fn accept_connections(
    listener: TcpListener,
    mcp: McpService,
    state: Arc<FixtureState>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        // An SSE answer goes out as several small writes (a priming event, then the message):
        // with Nagle's algorithm each waits for the previous one's acknowledgement, which a
        // client on a long-lived connection delays by up to 40 ms.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "TCP_NODELAY not set");
        }
        let mcp = mcp.clone();
        let state = state.clone();
        let service = service_fn(move |request| serve(mcp.clone(), state.clone(), request));
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                served = connection => if let Err(error) = served {
                    tracing::debug!(%error, "connection ended with an error");
                },
            }
        });
    }
}

async fn serve(
    mcp: McpService,
    state: Arc<FixtureState>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<bytes::Bytes, Infallible>>, Infallible> {
    if state.options.record_headers {
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        state
            .recorded_headers
            .lock()
            .expect("recorded headers poisoned")
            .push(headers);
    }
    if request.uri().path() != MCP_PATH {
        let mut not_found = Response::new(Full::from("Not Found").boxed());
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return Ok(not_found);
    }
    if state.options.protocol == ProtocolMode::Both {
        return Ok(mcp.handle(request).await);
    }
    Ok(match era::gate(state.options.protocol, request).await {
        era::Gate::Answer(response) => response,
        era::Gate::Serve(request) => mcp.handle(request).await,
    })
}
