//! A small load generator for the dataplane benchmark (so the run needs nothing but wrk and
//! this): open-loop at a fixed rate (latency measured from each request's scheduled start, so a
//! slow server cannot hide its queueing), or closed-loop for N requests with C connections.
//!
//! loadgen rate URL RATE SECONDS [TOKEN]      → p50/p99/p99.9 latency, achieved rate, errors
//!   (with LOADGEN_DUMP=FILE, also every request's scheduled start and latency, in µs)
//! loadgen count URL N CONNECTIONS [TOKEN] [TOOL]
//!   → N 2026-07-28 (stateless) `tools/call`s of TOOL (default `echo`): requests/s, errors
//! loadgen session-count URL N CONNECTIONS TOKEN [TOOL]
//!   → one 2025-11-25 session per connection (`initialize`, `notifications/initialized`), then
//!     N `tools/call`s of TOOL in those sessions: requests/s, errors
//! loadgen sessions URL N CONNECTIONS TOKEN   → opens N 2025-11-25 sessions (initialize), leaves them idle
//!
//! An answer counts as an error unless its status is 2xx and it carries a JSON-RPC `result`. With
//! LOADGEN_BEFORE_CALLS set, `count` and `session-count` run it (`sh -c`) once the sessions are
//! open and before the first call, so that what a benchmark measures around the calls (a
//! process's CPU time, callgrind's counters) leaves the handshakes out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SESSION_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadgen","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// How a request is sent: the revision's headers and, in a session, its id.
#[derive(Clone, Copy)]
enum Wire<'a> {
    /// 2026-07-28: no session; the method and tool name repeated in headers.
    Stateless { tool: &'a str },
    /// A 2025-11-25 session's request (`None`: the `initialize` that opens it).
    Session { id: Option<&'a str> },
}

/// A `tools/call` of `tool` with request id `id`; in 2026-07-28, with the client's `_meta` every
/// request carries. Every request gets an id of its own: a caller's stateless requests may be
/// relayed in one upstream session, where ids must not repeat.
fn call_body(tool: &str, stateless: bool, id: u64) -> String {
    let meta = if stateless {
        format!(
            r#","_meta":{{"io.modelcontextprotocol/protocolVersion":"{STATELESS_VERSION}","io.modelcontextprotocol/clientInfo":{{"name":"loadgen","version":"1"}},"io.modelcontextprotocol/clientCapabilities":{{}}}}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hello"}}{meta}}}}}"#
    )
}

fn request(
    http: &reqwest::Client,
    url: &str,
    token: &Option<String>,
    body: impl Into<reqwest::Body>,
    wire: Wire<'_>,
) -> reqwest::RequestBuilder {
    let mut r = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    match wire {
        Wire::Stateless { tool } => {
            r = r
                .header("mcp-protocol-version", STATELESS_VERSION)
                .header("mcp-method", "tools/call")
                .header("mcp-name", tool);
        }
        Wire::Session { id: Some(id) } => {
            r = r
                .header("mcp-protocol-version", SESSION_VERSION)
                .header("mcp-session-id", id);
        }
        Wire::Session { id: None } => {}
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r
}

/// Sends one request; whether it was answered with a JSON-RPC `result` (a notification: 2xx).
async fn answered(r: reqwest::RequestBuilder, notification: bool) -> bool {
    match r.send().await {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(body) => notification || has_result(&body),
            Err(_) => false,
        },
        _ => false,
    }
}

fn has_result(body: &[u8]) -> bool {
    body.windows(b"\"result\"".len()).any(|w| w == b"\"result\"")
}

/// Opens a 2025-11-25 session: its id.
async fn open_session(http: &reqwest::Client, url: &str, token: &Option<String>) -> String {
    let init = request(http, url, token, INIT, Wire::Session { id: None })
        .send()
        .await
        .expect("initialize");
    assert!(init.status().is_success(), "initialize: {}", init.status());
    let id = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let _ = init.bytes().await;
    let initialized = request(http, url, token, INITIALIZED, Wire::Session { id: Some(&id) });
    assert!(answered(initialized, true).await, "notifications/initialized");
    id
}

fn before_calls() {
    if let Some(command) = std::env::var_os("LOADGEN_BEFORE_CALLS").filter(|c| !c.is_empty()) {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .expect("LOADGEN_BEFORE_CALLS");
        assert!(status.success(), "LOADGEN_BEFORE_CALLS: {status}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode: &'static str = match args.get(1).map(String::as_str) {
        Some("rate") => "rate",
        Some("count") => "count",
        Some("session-count") => "session-count",
        Some("sessions") => "sessions",
        _ => "",
    };
    let url = args.get(2).cloned().expect("URL");
    let a: u64 = args.get(3).and_then(|v| v.parse().ok()).expect("number");
    let b: u64 = args.get(4).and_then(|v| v.parse().ok()).expect("number");
    let token = args.get(5).cloned().filter(|t| !t.is_empty());
    let tool: &'static str = args.get(6).cloned().unwrap_or_else(|| "echo".into()).leak();
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    match mode {
        "rate" => {
            let (rate, seconds) = (a, b);
            let total = rate * seconds;
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let start = Instant::now() + Duration::from_millis(50);
            let errors = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::with_capacity(total as usize);
            // A thread paces the requests: tokio's timer has millisecond resolution, which would
            // add up to a millisecond of noise to every latency; a thread's sleep is accurate to
            // tens of microseconds.
            let (pacer, mut ticks) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            std::thread::spawn(move || {
                for i in 0..total {
                    let scheduled = start + interval * i as u32;
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if pacer.send(scheduled).is_err() {
                        return;
                    }
                }
            });
            let mut id = 0;
            while let Some(scheduled) = ticks.recv().await {
                id += 1;
                let call = call_body(tool, true, id);
                let req = request(&http, &url, &token, call, Wire::Stateless { tool });
                let errors = errors.clone();
                tasks.push(tokio::spawn(async move {
                    if !answered(req, false).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    (scheduled, scheduled.elapsed())
                }));
            }
            let mut latencies = Vec::with_capacity(tasks.len());
            let mut dump = std::env::var_os("LOADGEN_DUMP")
                .filter(|path| !path.is_empty())
                .map(|path| std::io::BufWriter::new(std::fs::File::create(path).expect("LOADGEN_DUMP")));
            for t in tasks {
                let (scheduled, latency) = t.await.unwrap();
                if let Some(out) = dump.as_mut() {
                    // One line per request: scheduled start (µs since the first) and latency (µs).
                    use std::io::Write;
                    let at = scheduled.duration_since(start).as_micros();
                    writeln!(out, "{at} {}", latency.as_micros()).expect("LOADGEN_DUMP");
                }
                latencies.push(latency);
            }
            let elapsed = start.elapsed().as_secs_f64();
            latencies.sort();
            println!(
                "rate: {:.0}/s over {:.1}s, {} requests, {} errors, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
                latencies.len() as f64 / elapsed,
                elapsed,
                latencies.len(),
                errors.load(Ordering::Relaxed),
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                percentile(&latencies, 0.999)
            );
        }
        "count" | "session-count" | "sessions" => {
            let (n, connections) = (a, b);
            let in_session = mode == "session-count";

            let mut sessions = Vec::new();
            if in_session {
                for _ in 0..connections {
                    sessions.push(Some(open_session(&http, &url, &token).await));
                }
            } else {
                sessions.resize(connections as usize, None);
            }
            if mode != "sessions" {
                before_calls();
            }
            let next = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let workers: Vec<_> = sessions
                .into_iter()
                .map(|session| {
                    let (http, url, token, next, errors) = (
                        http.clone(),
                        url.clone(),
                        token.clone(),
                        next.clone(),
                        errors.clone(),
                    );
                    tokio::spawn(async move {
                        let wire = match (mode, &session) {
                            ("count", _) => Wire::Stateless { tool },
                            (_, session) => Wire::Session {
                                id: session.as_deref(),
                            },
                        };
                        loop {
                            let id = next.fetch_add(1, Ordering::Relaxed);
                            if id >= n {
                                break;
                            }
                            let body = match mode {
                                "sessions" => INIT.to_owned(),
                                _ => call_body(tool, !in_session, id + 1),
                            };
                            let req = request(&http, &url, &token, body, wire);
                            if !answered(req, false).await {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await.unwrap();
            }
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{mode}: {n} requests in {elapsed:.1}s ({:.0}/s), {} errors",
                n as f64 / elapsed,
                errors.load(Ordering::Relaxed)
            );
        }
        _ => eprintln!(
            "usage: loadgen rate URL RATE SECONDS [TOKEN] | count URL N CONNECTIONS [TOKEN] [TOOL] | session-count URL N CONNECTIONS TOKEN [TOOL] | sessions URL N CONNECTIONS TOKEN"
        ),
    }
}
