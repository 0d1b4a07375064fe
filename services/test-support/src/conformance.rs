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
    run_suite_expecting(package, label, url, origin, token, &[]).await;
}

/// [`run_suite`], where the checks named in `not_mappable` are expected to fail and every other
/// check to pass. The list must stay exact: a named check that passes fails the run too, so the
/// documented exceptions (docs/conformance.md) cannot outlive their reason.
pub async fn run_suite_expecting(
    package: &str,
    label: &str,
    url: &str,
    origin: &str,
    token: &str,
    not_mappable: &[&str],
) {
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
        .filter(|(id, _)| !not_mappable.contains(&id.as_str()))
        .map(|(id, message)| format!("{id}: {message}"))
        .collect();
    assert!(
        failed.is_empty(),
        "conformance checks failed through the dataplane (full output in {}):\n{}\n{tail}",
        report.display(),
        failed.join("\n"),
    );
    let passing: Vec<&&str> = not_mappable
        .iter()
        .filter(|id| !failures.iter().any(|(failed, _)| failed == **id))
        .collect();
    assert!(
        passing.is_empty(),
        "checks listed as not mappable now pass: remove them from the list and from docs/conformance.md: {passing:?}"
    );
    assert!(
        output.status.success() || !not_mappable.is_empty(),
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
