//! docs/quickstart.md, run as a newcomer runs it: its ```bash blocks, in order, in one shell,
//! against a real `gatehouse up` and the fixture MCP server. A step of the document that no
//! longer works fails here, with the shell's output.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::up::{http_client, scratch_checkout, sigterm, start_ready};

/// The ```bash blocks of a Markdown document, in order (```sh blocks are not run).
fn bash_blocks(markdown: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```bash\n") {
        let body = &rest[start + "```bash\n".len()..];
        let end = body.find("```").expect("an unterminated ```bash block");
        blocks.push(&body[..end]);
        rest = &body[end + 3..];
    }
    blocks
}

#[tokio::test]
async fn the_quickstart_works_as_written() {
    gatehouse_test_support::init();
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/quickstart.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/quickstart.md");
    let blocks = bash_blocks(&doc);
    assert!(
        blocks.len() >= 6,
        "expected the quickstart's steps, found {} blocks",
        blocks.len()
    );

    let (checkout, data) = scratch_checkout("quickstart");
    let mut up = start_ready(&checkout, &data, &http_client()).await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions::default())
        .await
        .unwrap();

    let script = format!("set -euo pipefail\n{}", blocks.concat());
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&checkout)
        .env("API", format!("{}/api/v1", up.control_api))
        .env("DATA", &data)
        .env("UPSTREAM", fixture.url())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the quickstart did not finish within 120 s")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the quickstart failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );

    // Step 6: the token lists exactly the tool its scope grants...
    let listed: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.pointer("/result/tools").cloned())
        .collect();
    assert_eq!(listed.len(), 1, "one tools/list answer printed:\n{stdout}");
    let names: Vec<&str> = listed[0]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["fixture__greet"], "{stdout}");
    // ... calls it through the dataplane, and an ungranted tool looks unknown.
    assert!(stdout.contains(r#""text":"Hello, Ada!""#), "{stdout}");
    assert!(
        stdout.contains("Unknown tool: fixture__test_simple_text"),
        "{stdout}"
    );
    // Step 7: both reached the audit trail, by the service token.
    let audited: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|fields| fields.len() == 5)
        .map(|fields| fields[1..].to_vec())
        .collect();
    assert_eq!(
        audited,
        [
            ["tool.call", "success", "fixture__greet", "service_token"],
            [
                "tool.denied",
                "denied",
                "fixture__test_simple_text",
                "service_token"
            ],
        ],
        "{stdout}"
    );

    fixture.shutdown().await;
    assert!(sigterm(&mut up).success());
    let _ = std::fs::remove_dir_all(&checkout);
}

#[test]
fn only_bash_blocks_are_run() {
    let doc = "a\n```sh\nnot run\n```\n```bash\nfirst\n```\ntext\n```bash\nsecond\n```\n";
    assert_eq!(bash_blocks(doc), ["first\n", "second\n"]);
}
