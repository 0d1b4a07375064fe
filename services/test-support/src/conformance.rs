//! Runs the official MCP conformance suite (`@modelcontextprotocol/conformance`, every server
//! scenario, `--suite all`) against an MCP endpoint. The suite sends no Authorization header; a
//! preload (`tests/clients/conformance/inject-token.mjs`) adds the given bearer token to every
//! request it sends to the endpoint's origin.

use std::path::PathBuf;
use std::process::Stdio;

/// `tests/clients/conformance/` of the workspace.
fn conformance_dir() -> PathBuf {
    crate::node_tools::clients_dir().join("conformance")
}

/// Runs `package` (an npm package installed by tests/clients/setup.sh) against `url`, sending
/// `token` to requests for `origin`, and panics with the failing checks, if any. Every scenario's checks are read from the suite's results (`checks.json`); the
/// suite's whole output is kept in the temp directory under `gatehouse-conformance-{label}-last.txt`.
pub async fn run_suite(package: &str, label: &str, url: &str, origin: &str, token: &str) {
    let dir = conformance_dir();
    let node = dir.join("node_modules/.bin/node");
    let suite = dir.join(format!("node_modules/{package}/dist/index.js"));
    assert!(
        node.exists() && suite.exists(),
        "the conformance suite is not installed: run tests/clients/setup.sh"
    );
    let out = std::env::temp_dir().join(format!(
        "gatehouse-conformance-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let output = tokio::process::Command::new(&node)
        .current_dir(&dir)
        .arg("--import")
        .arg("./inject-token.mjs")
        .arg(&suite)
        .args(["server", "--url", url, "--suite", "all", "-o"])
        .arg(&out)
        .env("GATEHOUSE_CONFORMANCE_TOKEN", token)
        .env("GATEHOUSE_CONFORMANCE_ORIGIN", origin)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the conformance suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = std::env::temp_dir().join(format!("gatehouse-conformance-{label}-last.txt"));
    let _ = std::fs::write(&report, format!("{stdout}\n--- stderr ---\n{stderr}"));
    let tail: Vec<&str> = stdout.lines().rev().take(30).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");

    let (scenarios, failures) = failed_checks(&out);
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        scenarios > 0,
        "the conformance suite ran no scenario (full output in {}):\n{tail}",
        report.display()
    );
    let failed: Vec<String> = failures
        .iter()
        .map(|(id, message)| format!("{id}: {message}"))
        .collect();
    assert!(
        failed.is_empty(),
        "conformance checks failed through the dataplane (full output in {}):\n{}\n{tail}",
        report.display(),
        failed.join("\n"),
    );
    assert!(
        output.status.success(),
        "the conformance suite failed without a failing check (full output in {}):\n{tail}",
        report.display()
    );
}

/// How many scenarios reported checks under `out`, and every check that failed (id, message).
fn failed_checks(out: &std::path::Path) -> (usize, Vec<(String, String)>) {
    let mut scenarios = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) else {
            continue;
        };
        let checks: Vec<serde_json::Value> = serde_json::from_str(&text).expect("checks.json");
        scenarios += 1;
        for check in checks {
            if check["status"] == "FAILURE" {
                failures.push((
                    check["id"].as_str().unwrap_or("?").to_owned(),
                    check["errorMessage"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
    }
    (scenarios, failures)
}
