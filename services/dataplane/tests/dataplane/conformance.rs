//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, every server
//! scenario, `--suite all`) run through the dataplane against the fixture upstream. The suite
//! sends no Authorization header; a preload (`tests/clients/conformance/inject-token.mjs`) adds a
//! valid token to its requests. Results are kept in docs/conformance.md.

use std::path::PathBuf;
use std::process::Stdio;

use mcp_fixture::FixtureOptions;

use crate::harness::*;

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/conformance")
}

/// 0.2.0-alpha.12, the newest published suite: 65 server scenarios, both eras.
#[tokio::test]
async fn conformance_suite_passes_through_the_dataplane() {
    run_suite("@modelcontextprotocol/conformance", "alpha12").await;
}

/// 0.1.16, npm's `latest`: 32 server scenarios on the 2025 (session) wire.
#[tokio::test]
async fn conformance_suite_latest_tag_passes_through_the_dataplane() {
    run_suite("conformance-0.1.16", "latest").await;
}

async fn run_suite(package: &str, label: &str) {
    let dir = conformance_dir();
    let node = dir.join("node_modules/.bin/node");
    let suite = dir.join(format!("node_modules/{package}/dist/index.js"));
    assert!(
        node.exists() && suite.exists(),
        "the conformance suite is not installed: run tests/clients/setup.sh"
    );
    let world = World::start(FixtureOptions::default(), &[("conformance", &["*"])], &[]).await;
    let token = world.token("conformance-runner", "conformance");
    let out = std::env::temp_dir().join(format!("gatehouse-conformance-{}", world.org.slug));
    let output = tokio::process::Command::new(&node)
        .current_dir(&dir)
        .arg("--import")
        .arg("./inject-token.mjs")
        .arg(&suite)
        .args(["server", "--url", &world.url(), "--suite", "all", "-o"])
        .arg(&out)
        .env("GATEHOUSE_CONFORMANCE_TOKEN", &token)
        .env("GATEHOUSE_CONFORMANCE_ORIGIN", &world.dataplane.url)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = std::env::temp_dir().join(format!("gatehouse-conformance-{label}-last.txt"));
    let _ = std::fs::write(&report, format!("{stdout}\n--- stderr ---\n{stderr}"));
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("FAIL") || l.contains("✗"))
        .collect();
    assert!(
        output.status.success() && failed.is_empty(),
        "conformance suite failed through the dataplane (full output in {}):\n{}\n{}",
        report.display(),
        failed.join("\n"),
        stdout
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
