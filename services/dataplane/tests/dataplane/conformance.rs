//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, every server
//! scenario, `--suite all`) run through the dataplane against the fixture upstream. The suite
//! sends no Authorization header; a preload (`tests/clients/conformance/inject-token.mjs`) adds a
//! valid token to its requests. Results are kept in docs/conformance.md.

use gatehouse_test_support::conformance::run_suite;
use mcp_fixture::{FixtureOptions, ProtocolMode};

use crate::harness::*;

/// 0.2.0-alpha.12, the newest published suite: 65 server scenarios, both eras.
#[tokio::test]
async fn conformance_suite_passes_through_the_dataplane() {
    run_through_the_dataplane("@modelcontextprotocol/conformance", "alpha12").await;
}

/// 0.1.16, npm's `latest`: 32 server scenarios on the 2025 (session) wire.
#[tokio::test]
async fn conformance_suite_latest_tag_passes_through_the_dataplane() {
    run_through_the_dataplane("conformance-0.1.16", "latest").await;
}

/// 0.2.0-alpha.12 with the fixture in 2025-only mode behind the dataplane (a 2025-era server with
/// sessions, answering 2026-07-28 requests as such servers do): the client's revision is the
/// dataplane's to speak, whatever the upstream speaks, so every scenario passes here too.
///
/// Ignored while 8 of 212 checks fail (5 of 65 scenarios): `subscriptions/listen` is not bridged
/// to a session upstream (`server-stateless`, 3 checks), `tasks/update` through a held session
/// lacks `resultType` (`tasks-dispatch-and-envelope`), tasks that ask for input
/// (`tasks-mrtr-input`, 2), and the `inputRequests` keys a 2025 server's `elicitation/create`
/// cannot name (`input-required-result-basic-elicitation`, `-multiple-input-requests`). Run it with
/// `--run-ignored all`.
#[tokio::test]
#[ignore = "bridging: 8 of 212 checks fail (subscriptions/listen, tasks through held sessions, inputRequests keys)"]
async fn conformance_suite_passes_with_a_2025_only_upstream() {
    let upstream = FixtureOptions {
        protocol: ProtocolMode::Only2025,
        ..Default::default()
    };
    run_with_upstream(upstream, "@modelcontextprotocol/conformance", "alpha12-2025-only").await;
}

async fn run_through_the_dataplane(package: &str, label: &str) {
    run_with_upstream(FixtureOptions::default(), package, label).await;
}

async fn run_with_upstream(upstream: FixtureOptions, package: &str, label: &str) {
    let world = World::start(upstream, &[("conformance", &["*"])], &[]).await;
    let token = world.token("conformance-runner", "conformance");
    run_suite(package, label, &world.url(), &world.dataplane.url, &token).await;
}
