//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, every server
//! scenario, `--suite all`) run through the dataplane against the fixture upstream. The suite
//! sends no Authorization header; a preload (`tests/clients/conformance/inject-token.mjs`) adds a
//! valid token to its requests. Results are kept in docs/conformance.md.

use gatehouse_test_support::conformance::run_suite_expecting;
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
/// dataplane's to speak, whatever the upstream speaks.
///
/// 2 of 271 checks cannot pass through any bridge, and are expected to fail (and nothing else):
/// both ask the 2026-07-28 `input_required` result for what a 2025 server's `elicitation/create`
/// (a request on the call's stream) never states. `sep-2322-elicitation-incomplete` wants the
/// `inputRequests` key `user_name`, a name the tool chose and the 2025 request does not carry
/// (the dataplane names it `input-1`); `sep-2322-multiple-inputs-incomplete` wants all three
/// requests in one result, while the 2025 tool awaits each answer before it sends the next
/// request, so each is a round of its own (a round ends at the upstream's first request).
#[tokio::test]
async fn conformance_suite_passes_with_a_2025_only_upstream() {
    let upstream = FixtureOptions {
        protocol: ProtocolMode::Only2025,
        ..Default::default()
    };
    run_with_upstream(
        upstream,
        "@modelcontextprotocol/conformance",
        "alpha12-2025-only",
        NOT_MAPPABLE_FROM_2025,
    )
    .await;
}

/// The checks a 2025-only upstream cannot satisfy through any bridge (see above).
const NOT_MAPPABLE_FROM_2025: &[&str] = &[
    "sep-2322-elicitation-incomplete",
    "sep-2322-multiple-inputs-incomplete",
];

async fn run_through_the_dataplane(package: &str, label: &str) {
    run_with_upstream(FixtureOptions::default(), package, label, &[]).await;
}

async fn run_with_upstream(upstream: FixtureOptions, package: &str, label: &str, not_mappable: &[&str]) {
    let world = World::start(upstream, &[("conformance", &["*"])], &[]).await;
    let token = world.token("conformance-runner", "conformance");
    run_suite_expecting(
        package,
        label,
        &world.url(),
        &world.dataplane.url,
        &token,
        not_mappable,
    )
    .await;
}
