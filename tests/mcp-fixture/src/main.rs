//! `mcp-fixture`: run the fixture by hand, e.g. to point the conformance suite
//! at it.
//!
//! ```text
//! mcp-fixture [--port N] [--host-policy any|loopback]
//!             [--session-mode stateful|stateless] [--response-format sse|json]
//!             [--protocol both|2026-only|2025-only] [--page-size N]
//! ```

use anyhow::{Context, bail};
use mcp_fixture::{FixtureOptions, HostPolicy, ProtocolMode, ResponseFormat, SessionMode, spawn_fixture};

const USAGE: &str = "usage: mcp-fixture [--port N] [--host-policy any|loopback] \
                     [--session-mode stateful|stateless] [--response-format sse|json] \
                     [--protocol both|2026-only|2025-only] [--page-size N]";

fn parse_options() -> anyhow::Result<FixtureOptions> {
    let mut options = FixtureOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match (flag.as_str(), value.as_str()) {
            ("--port", port) => options.port = port.parse().context("--port takes a number")?,
            ("--host-policy", "any") => options.host_policy = HostPolicy::AnyHost,
            ("--host-policy", "loopback") => options.host_policy = HostPolicy::LoopbackOnly,
            ("--session-mode", "stateful") => options.session_mode = SessionMode::Stateful,
            ("--session-mode", "stateless") => options.session_mode = SessionMode::Stateless,
            ("--response-format", "sse") => options.response_format = ResponseFormat::Sse,
            ("--response-format", "json") => options.response_format = ResponseFormat::Json,
            ("--protocol", "both") => options.protocol = ProtocolMode::Both,
            ("--protocol", "2026-only") => options.protocol = ProtocolMode::Only2026,
            ("--protocol", "2025-only") => options.protocol = ProtocolMode::Only2025,
            ("--page-size", size) => {
                options.page_size = Some(size.parse().context("--page-size takes a number")?);
            }
            _ => bail!("unexpected argument {flag} {value}\n{USAGE}"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let fixture = spawn_fixture(parse_options()?).await?;
    println!("{}", fixture.url());
    tokio::signal::ctrl_c().await?;
    fixture.shutdown().await;
    Ok(())
}
