//! The bridging matrix: every client revision × every kind of upstream × every operation, through
//! a real dataplane (the whole platform: servers registered and synced through the REST API, the
//! configuration reaching the dataplane through the snapshot API, client-credentials tokens from
//! the authorization server).
//!
//! **Upstreams** (one endpoint each, tools not namespaced, prompts and resources exposed). They
//! serve one catalog (the fixture's conformance names and payloads): `test_simple_text` (no
//! arguments), `test_tool_with_progress` (progress 0, 50, 100 of 100), `test_elicitation` (asks for
//! a username and an email), `test://static-text` to read, `test_simple_prompt` to get, and three
//! resources listed one per page.
//! - TypeScript SDK, sessions: `tests/clients/bridging/ts-server.mjs streamable`, modelled on the
//!   SDK's `simpleStreamableHttp` example; the revisions up to 2025-11-25, sessions only.
//! - Python SDK: `tests/clients/bridging/py_server.py`, `MCPServer` (mcp 2's FastMCP) with its
//!   Streamable HTTP defaults (dual-era: sessions, and 2026-07-28 served statelessly). It has no
//!   pagination API; an SDK middleware pages `resources/list` with its own cursor.
//! - fixture, 2026-07-28 only / 2025 only: `tests/mcp-fixture` with `ProtocolMode::Only2026` (a
//!   stateless-only server) and `ProtocolMode::Only2025` (a 2025-era server's answers to 2026-07-28
//!   traffic, taken from the TypeScript SDK's example server; see the fixture's `era.rs`).
//! - HTTP+SSE: `tests/clients/bridging/ts-server.mjs sse`, the TypeScript SDK's
//!   `SSEServerTransport` (2024-11-05 transport).
//!
//! **Clients** (see `cells.rs` for which speaks which revision): the official TypeScript SDK client
//! (`bridging/ts-client.mjs`, 2025-03-26/06-18/11-25, pinned at its transport since the SDK has no
//! option for it), the official Python SDK client (`bridging/py_client.py`: a 2025-11-25 session,
//! and 2026-07-28 after `server/discover`) and the raw HTTP client of `raw.rs` (every revision).
//!
//! A cell passes when every client of its revision saw the operation's real outcome (the tool's
//! text, the three progress notifications, the client's elicitation answer in the tool's result,
//! the resource's text, the prompt's message, every resource exactly once over the pages; for the
//! raw 2026-07-28 client also the revision's result shape). The expected outcome of every cell is
//! [`cells::EXPECTED`], the table of docs/dataplane.md ("Bridging"). The test prints the grid and
//! the first failure of each cell, and fails when any cell differs from the table.
//!
//! ```text
//! tests/clients/setup.sh
//! cargo nextest run -p gatehouse-e2e --test e2e --run-ignored all -E 'test(bridging_matrix)' --no-capture
//! ```

mod cells;
mod raw;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use gatehouse_test_support::console::ConsoleClient;
use gatehouse_test_support::node_tools::clients_dir;
use gatehouse_test_support::sdk_servers::{SdkServer, SdkServerKind, node, python};
use mcp_fixture::{FixtureOptions, ProtocolMode};

use super::{Admin, platform_reaching_loopback, service_client_token};
use crate::platform::Platform;
use cells::{Driver, Expected, Op, Revision, Upstream};

/// Clients running at once (each SDK client is a process; the machine is shared).
const PARALLEL: usize = 6;
/// A client process that has not finished by then is killed (each operation has its own shorter
/// timeout in the client).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
const ORG: &str = "matrix";

/// An endpoint of the matrix: its resource URL and a token for it.
#[derive(Clone)]
struct Endpoint {
    url: String,
    token: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_revision_reaches_every_upstream() {
    let started = Instant::now();
    let (node, python) = (node(), python());
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "matrix-owner@example.com", ORG).await;
    let (typescript, python_server, http_sse) = tokio::join!(
        SdkServer::start(SdkServerKind::TypeScriptStreamable),
        SdkServer::start(SdkServerKind::Python),
        SdkServer::start(SdkServerKind::TypeScriptSse),
    );
    let fixture = |protocol| FixtureOptions {
        protocol,
        page_size: Some(1),
        skills_extension: false,
        ..Default::default()
    };
    let fixture_2026 = mcp_fixture::spawn_fixture(fixture(ProtocolMode::Only2026))
        .await
        .unwrap();
    let fixture_2025 = mcp_fixture::spawn_fixture(fixture(ProtocolMode::Only2025))
        .await
        .unwrap();

    let mut endpoints: HashMap<Upstream, Result<Endpoint, String>> = HashMap::new();
    for upstream in Upstream::ALL {
        let url = match upstream {
            Upstream::TypeScript => typescript.url(),
            Upstream::Python => python_server.url(),
            Upstream::Fixture2026 => fixture_2026.url().to_owned(),
            Upstream::Fixture2025 => fixture_2025.url().to_owned(),
            Upstream::HttpSse => http_sse.url(),
        };
        endpoints.insert(upstream, provision(&platform, &admin, upstream, &url).await);
    }

    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut runs = Vec::new();
    for upstream in Upstream::ALL {
        let Ok(endpoint) = endpoints[&upstream].clone() else {
            continue;
        };
        for revision in Revision::ALL {
            for &driver in revision.drivers() {
                let (limit, endpoint) = (limit.clone(), endpoint.clone());
                let (node, python) = (node.clone(), python.clone());
                runs.push(tokio::spawn(async move {
                    let _permit = limit.acquire().await.expect("the semaphore stays open");
                    let lines = match driver {
                        Driver::Raw => raw::run(&endpoint.url, &endpoint.token, revision).await,
                        Driver::TypeScript => {
                            let args = [
                                "bridging/ts-client.mjs",
                                &endpoint.url,
                                &endpoint.token,
                                revision.as_str(),
                            ];
                            run_client(&node, &args).await
                        }
                        Driver::Python => {
                            let era = if revision.is_stateless() {
                                "modern"
                            } else {
                                "legacy"
                            };
                            run_client(
                                &python,
                                &["bridging/py_client.py", &endpoint.url, &endpoint.token, era],
                            )
                            .await
                        }
                    };
                    ((upstream, revision, driver), lines)
                }));
            }
        }
    }
    let mut seen: HashMap<(Upstream, Revision, Driver), Vec<Value>> = HashMap::new();
    for run in runs {
        let (key, lines) = run.await.expect("a client run does not panic");
        seen.insert(key, lines);
    }

    let grid = Grid::judge(&endpoints, &seen);
    eprintln!("{}", grid.render(started.elapsed()));
    let report = keep_report(&seen);
    eprintln!("Every client's report: {}", report.display());
    assert!(
        grid.differences == 0,
        "{} of {} cells differ from the expected table (docs/dataplane.md, \"Bridging\"); the grid is above",
        grid.differences,
        grid.cells.len()
    );
}

/// Registers `upstream` (its tools synced, all approved and granted to one scope), creates its
/// endpoint and a service client with a token; a failure is the column's outcome.
async fn provision(
    platform: &Platform,
    admin: &ConsoleClient,
    upstream: Upstream,
    url: &str,
) -> Result<Endpoint, String> {
    let slug = upstream.slug();
    let mut server = json!({"slug": slug, "name": upstream.label(), "url": url, "auth": {"kind": "none"}});
    if upstream == Upstream::HttpSse {
        server["transport"] = json!("http_sse");
    }
    let scope = format!("{slug}:all");
    let server_id = admin
        .try_provision(ORG, server, &[(&scope, &["*"])])
        .await
        .map_err(|e| format!("registering the server: {e}"))?;
    let endpoint = admin
        .try_send(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{ORG}/endpoints"),
            Some(json!({
                "slug": slug,
                "name": upstream.label(),
                "servers": [{"server_id": server_id}],
                "namespace_tools": false,
                "prompts": {"enabled": true},
                "resources": {"enabled": true},
            })),
        )
        .await
        .map_err(|e| format!("creating the endpoint: {e}"))?;
    let (url, token) = service_client_token(platform, admin, ORG, &endpoint, &[&scope]).await;
    Ok(Endpoint { url, token })
}

/// Runs an SDK client (in tests/clients) and returns the JSON lines it printed; a client that
/// printed none reports its failure as the `connect` line.
async fn run_client(program: &PathBuf, args: &[&str]) -> Vec<Value> {
    let child = tokio::process::Command::new(program)
        .current_dir(clients_dir())
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(CLIENT_LIMIT, child).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return vec![
                json!({"op": "connect", "error": {"code": null, "message": format!("cannot start the client: {e}")}}),
            ];
        }
        Err(_) => {
            return vec![
                json!({"op": "connect", "error": {"code": null, "message": format!("the client did not finish within {CLIENT_LIMIT:?}")}}),
            ];
        }
    };
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    if lines.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        return vec![
            json!({"op": "connect", "error": {"code": null, "message": format!("the client printed nothing ({}): {tail}", output.status)}}),
        ];
    }
    lines
}

/// Writes what every client reported to `$TMPDIR/gatehouse-bridging-matrix-last.json` (upstream →
/// revision → client → lines) and returns its path.
fn keep_report(seen: &HashMap<(Upstream, Revision, Driver), Vec<Value>>) -> PathBuf {
    let mut report = serde_json::Map::new();
    for ((upstream, revision, driver), lines) in seen {
        let by_revision = report.entry(upstream.label()).or_insert_with(|| json!({}));
        by_revision[revision.as_str()][driver.to_string()] = Value::Array(lines.clone());
    }
    let path = std::env::temp_dir().join("gatehouse-bridging-matrix-last.json");
    let text = serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    path
}

/// One cell's outcome.
struct Cell {
    upstream: Upstream,
    op: Op,
    revision: Revision,
    expected: Expected,
    /// The first client whose outcome differs from `expected`, and how.
    failure: Option<String>,
}

struct Grid {
    cells: Vec<Cell>,
    differences: usize,
    /// Upstreams whose endpoint could not be set up, and why (every one of their cells fails).
    setup_failures: Vec<(Upstream, String)>,
}

impl Grid {
    fn judge(
        endpoints: &HashMap<Upstream, Result<Endpoint, String>>,
        seen: &HashMap<(Upstream, Revision, Driver), Vec<Value>>,
    ) -> Grid {
        let mut cells = Vec::new();
        for upstream in Upstream::ALL {
            for op in Op::ALL {
                for revision in Revision::ALL {
                    let expected = cells::expected(upstream, op, revision);
                    let failure = match &endpoints[&upstream] {
                        Err(setup) => Some(format!("setup: {setup}")),
                        Ok(_) => revision.drivers().iter().find_map(|driver| {
                            let lines = seen.get(&(upstream, revision, *driver))?;
                            let find = |name: &str| lines.iter().find(|l| l["op"] == name);
                            cells::judge(&expected, revision, find("connect"), find(op.as_str()), op)
                                .err()
                                .map(|e| format!("{driver}: {e}"))
                        }),
                    };
                    cells.push(Cell {
                        upstream,
                        op,
                        revision,
                        expected: expected.clone(),
                        failure,
                    });
                }
            }
        }
        let differences = cells.iter().filter(|c| c.failure.is_some()).count();
        let setup_failures = Upstream::ALL
            .into_iter()
            .filter_map(|u| endpoints[&u].as_ref().err().map(|e| (u, e.clone())))
            .collect();
        Grid {
            cells,
            differences,
            setup_failures,
        }
    }

    fn render(&self, took: Duration) -> String {
        let mut out = format!(
            "\nBridging matrix ({} cells, {} differ from docs/dataplane.md \"Bridging\"; {:.0} s)\n{:<28}{:<20}",
            self.cells.len(),
            self.differences,
            took.as_secs_f64(),
            "upstream",
            "operation"
        );
        for revision in Revision::ALL {
            out.push_str(&format!("{:<13}", revision.as_str()));
        }
        for row in self.cells.chunks(Revision::ALL.len()) {
            out.push_str(&format!(
                "\n{:<28}{:<20}",
                row[0].upstream.label(),
                row[0].op.label()
            ));
            for cell in row {
                let mark = match (&cell.expected, &cell.failure) {
                    (Expected::Pass, None) => "pass",
                    (Expected::NotMappable { .. }, None) => "not mappable",
                    (_, Some(_)) => "FAIL",
                };
                out.push_str(&format!("{mark:<13}"));
            }
        }
        if self.differences > 0 {
            out.push_str("\n\nFirst failure of each cell that differs:");
            for (upstream, setup) in &self.setup_failures {
                let setup: String = setup.chars().take(300).collect();
                out.push_str(&format!("\n  {} / every cell: setup: {setup}", upstream.label()));
            }
            let judged = self
                .cells
                .iter()
                .filter(|c| !self.setup_failures.iter().any(|(u, _)| *u == c.upstream));
            for cell in judged.filter(|c| c.failure.is_some()) {
                let failure = cell.failure.as_deref().unwrap_or_default();
                let first: String = failure
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(220)
                    .collect();
                out.push_str(&format!(
                    "\n  {} / {} / {}: {first}",
                    cell.upstream.label(),
                    cell.op.label(),
                    cell.revision.as_str()
                ));
            }
        }
        out
    }
}

/// docs/dataplane.md renders [`cells::EXPECTED`] under "Bridging", verbatim.
#[test]
fn the_documented_table_is_the_tested_one() {
    let docs =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dataplane.md"))
            .expect("docs/dataplane.md");
    let section = docs
        .split("\n## Bridging")
        .nth(1)
        .expect("docs/dataplane.md has a \"Bridging\" section");
    let table: Vec<&str> = section
        .lines()
        .skip_while(|line| !line.starts_with("| upstream |"))
        .take_while(|line| line.starts_with('|'))
        .collect();
    let expected: Vec<&str> = cells::EXPECTED.lines().collect();
    assert_eq!(
        table, expected,
        "the Bridging table in docs/dataplane.md is not cells::EXPECTED"
    );
}
