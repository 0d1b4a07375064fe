//! A small load generator for the dataplane benchmark (so the run needs nothing but wrk and
//! this): open-loop at a fixed rate (latency measured from each request's scheduled start, so a
//! slow server cannot hide its queueing), or closed-loop for N requests with C connections.
//!
//! loadgen rate URL RATE SECONDS [TOKEN]      → p50/p99/p99.9 latency, achieved rate, errors
//!   (with LOADGEN_DUMP=FILE, also every request's scheduled start and latency, in µs)
//! loadgen count URL N CONNECTIONS [TOKEN]    → requests/s, errors
//! loadgen sessions URL N CONNECTIONS TOKEN   → opens N 2025-11-25 sessions (initialize), leaves them idle

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"loadgen","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadgen","version":"1"}}}"#;

fn request(
    http: &reqwest::Client,
    url: &str,
    token: &Option<String>,
    body: &'static str,
    modern: bool,
) -> reqwest::RequestBuilder {
    let mut r = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if modern {
        r = r
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo");
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r
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
        Some("sessions") => "sessions",
        _ => "",
    };
    let url = args.get(2).cloned().expect("URL");
    let a: u64 = args.get(3).and_then(|v| v.parse().ok()).expect("number");
    let b: u64 = args.get(4).and_then(|v| v.parse().ok()).expect("number");
    let token = args.get(5).cloned().filter(|t| !t.is_empty());
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
            while let Some(scheduled) = ticks.recv().await {
                let req = request(&http, &url, &token, CALL, true);
                let errors = errors.clone();
                tasks.push(tokio::spawn(async move {
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
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
        "count" | "sessions" => {
            let (n, connections) = (a, b);
            let body = if mode == "count" { CALL } else { INIT };
            let next = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let workers: Vec<_> = (0..connections)
                .map(|_| {
                    let (http, url, token, next, errors) = (
                        http.clone(),
                        url.clone(),
                        token.clone(),
                        next.clone(),
                        errors.clone(),
                    );
                    tokio::spawn(async move {
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            match request(&http, &url, &token, body, mode == "count").send().await {
                                Ok(r) if r.status().is_success() => {
                                    let _ = r.bytes().await;
                                }
                                _ => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
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
            "usage: loadgen rate URL RATE SECONDS [TOKEN] | count URL N CONNECTIONS [TOKEN] | sessions URL N CONNECTIONS TOKEN"
        ),
    }
}
