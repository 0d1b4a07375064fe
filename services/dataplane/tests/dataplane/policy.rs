//! Authorization, rate limits, quotas and the events every call leaves behind.

use std::collections::BTreeSet;

use serde_json::json;

use gatehouse_core::snapshot::Limit;
use gatehouse_events::{BusMessage, CallOutcome};
use mcp_fixture::FixtureOptions;

use crate::harness::*;

/// Every (scope set, tool) pair, on list and on call, in both eras: allowed iff granted.
#[tokio::test]
async fn scope_tool_matrix_is_exhaustive() {
    let tools = ["test_simple_text", "test_image_content", "test_audio_content"];
    let scopes: [(&str, &[&str]); 3] = [
        ("text", &["test_simple_text"]),
        ("media", &["test_image_content", "test_audio_content"]),
        ("audio", &["test_audio_content"]),
    ];
    let world = World::start(FixtureOptions::default(), &scopes, &[]).await;
    let all_exposed: BTreeSet<String> = world
        .endpoint()
        .tools
        .iter()
        .map(|t| t.exposed_name.clone())
        .collect();
    // Every subset of the scopes (2^3), plus a token holding an unrelated scope only.
    for mask in 0..(1u32 << scopes.len()) {
        let held: Vec<&str> = scopes
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| s.0)
            .collect();
        let granted: BTreeSet<String> = scopes
            .iter()
            .filter(|s| held.contains(&s.0))
            .flat_map(|s| s.1.iter().map(|t| (*t).to_owned()))
            .collect();
        let scope_string = if held.is_empty() {
            "unrelated".to_owned()
        } else {
            held.join(" ")
        };
        for version in ["2025-11-25", "2026-07-28"] {
            let mut client = world.client(&format!("user-{mask}"), &scope_string, version);
            if held.is_empty() {
                // Nothing granted: a step-up challenge, on every method.
                assert_eq!(client.call(1, "tools/list", json!({})).await.status, 403);
                continue;
            }
            if !client.modern() {
                client.initialize().await;
            }
            let listed: BTreeSet<String> = client.tool_names().await.into_iter().collect();
            assert_eq!(listed, granted, "{version} scopes {held:?}: listed = granted");
            for tool in all_exposed
                .iter()
                .filter(|t| tools.contains(&t.as_str()) || !granted.contains(*t))
                .take(6)
            {
                let answer = client
                    .call(2, "tools/call", json!({"name": tool, "arguments": {}}))
                    .await;
                let response = answer.response(2);
                if granted.contains(tool) {
                    assert!(
                        response["result"].is_object(),
                        "{version} {held:?} may call {tool}: {response}"
                    );
                } else {
                    assert_eq!(
                        response["error"]["code"], -32602,
                        "{version} {held:?} may not call {tool}"
                    );
                    assert_eq!(
                        response["error"]["message"],
                        format!("Unknown tool: {tool}"),
                        "looks unknown"
                    );
                }
            }
        }
    }
    let unknown = world
        .client("u", "text", "2026-07-28")
        .call(3, "tools/call", json!({"name": "no_such_tool", "arguments": {}}))
        .await;
    assert_eq!(
        unknown.response(3)["error"]["message"],
        "Unknown tool: no_such_tool"
    );
}

#[tokio::test]
async fn rate_limits_admit_rate_times_time_plus_burst_per_tenant() {
    let mut world = World::start(FixtureOptions::default(), &[("fx:all", &["*"])], &[]).await;
    world.org.endpoints[0].rate_limits.per_subject = Some(Limit {
        per_minute: 60,
        burst: 4,
    });
    world.org.endpoints[0].rate_limits.per_tool.insert(
        "test_error_handling".into(),
        Limit {
            per_minute: 60,
            burst: 1,
        },
    );
    world.republish();
    let alice = world.client("alice", "fx:all", "2026-07-28");
    let bob = world.client("bob", "fx:all", "2026-07-28");
    let started = std::time::Instant::now();
    let mut admitted = 0;
    let mut refused = None;
    for i in 0..20 {
        let answer = alice.call(i, "tools/list", json!({})).await;
        match answer.status {
            200 => admitted += 1,
            429 => refused = Some(answer),
            s => panic!("unexpected status {s}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // GCRA: the first request, `burst` more at once, then one per second.
    let expected = 5.0 + elapsed;
    assert!(
        (admitted as f64 - expected).abs() <= 1.0,
        "admitted {admitted}, expected {expected:.1} ± 1"
    );
    let refused = refused.expect("the limit refused some");
    let retry_after: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after));
    // Bob is another subject: his own budget.
    assert_eq!(bob.call(1, "tools/list", json!({})).await.status, 200);
    // Per-tool: burst 1 → two calls, then refused, for everyone.
    let statuses: Vec<u16> = futures::future::join_all((0..3).map(|i| {
        bob.call(
            10 + i,
            "tools/call",
            json!({"name": "test_error_handling", "arguments": {}}),
        )
    }))
    .await
    .into_iter()
    .map(|a| a.status)
    .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    let events = world.dataplane.drain_events().await;
    assert!(events.iter().any(
        |e| matches!(e, BusMessage::Call(c) if c.outcome == CallOutcome::RateLimited && c.subject == "alice")
    ));
}

/// A single `tools/call` is counted against the org's, the caller's and the tool's limits in one
/// check: a call the tool's limit refuses uses none of the caller's budget. A caller who may not
/// call the tool uses none of the tool's budget, which every caller shares.
#[tokio::test]
async fn a_tool_limit_is_all_or_nothing_with_the_callers_and_spent_only_by_callers_it_grants() {
    let mut world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"]), ("fx:text", &["test_simple_text"])],
        &[],
    )
    .await;
    // Slow enough that nothing comes back during the test: each caller gets 4 requests, the
    // tool 2 calls.
    world.org.endpoints[0].rate_limits.per_subject = Some(Limit {
        per_minute: 1,
        burst: 3,
    });
    world.org.endpoints[0].rate_limits.per_tool.insert(
        "test_error_handling".into(),
        Limit {
            per_minute: 1,
            burst: 1,
        },
    );
    world.republish();
    let call = json!({"name": "test_error_handling", "arguments": {}});
    // Mallory may not call it: her calls look unknown and leave the tool's budget alone.
    let mallory = world.client("mallory", "fx:text", "2026-07-28");
    for i in 0..3 {
        let answer = mallory.call(i, "tools/call", call.clone()).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.response(i)["error"]["message"],
            "Unknown tool: test_error_handling"
        );
    }
    let bob = world.client("bob", "fx:all", "2026-07-28");
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(bob.call(i, "tools/call", call.clone()).await.status);
    }
    assert_eq!(statuses, [200, 200, 429], "the tool's two calls were all Bob's");
    // The refused call used none of Bob's own budget: two of his four are left.
    let mut statuses = Vec::new();
    for i in 10..13 {
        statuses.push(bob.call(i, "tools/list", json!({})).await.status);
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn tenants_do_not_share_limits() {
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let dp = TestDataplane::start(&issuer, &shared, &[]).await;
    let fixture = mcp_fixture::spawn_fixture(FixtureOptions::default())
        .await
        .unwrap();
    let server = ServerSpec::fixture("fx", fixture.url()).await;
    let mut orgs = Vec::new();
    for slug in ["tenant-a", "tenant-b"] {
        let mut org = OrgSpec::new(slug);
        org.add_server(&server, &shared.snapshot_keys);
        org.add_endpoint(&dp.url, "main", &[&server], false, &[("all", &["*"])]);
        org.endpoints[0].rate_limits.per_org = Some(Limit {
            per_minute: 1,
            burst: 2,
        });
        orgs.push(org);
    }
    dp.load(&orgs.iter().map(|o| o.snapshot()).collect::<Vec<_>>());
    let client = |org: &OrgSpec| {
        RawClient::new(
            &dp.endpoint_url(&org.slug, "main"),
            Some(issuer.token(&org.endpoints[0], org.org_id, "same-user", "all", json!({}))),
            "2026-07-28",
        )
    };
    let a = client(&orgs[0]);
    let b = client(&orgs[1]);
    let mut a_ok = 0;
    for i in 0..6 {
        if a.call(i, "tools/list", json!({})).await.status == 200 {
            a_ok += 1;
        }
    }
    assert_eq!(a_ok, 3, "burst 2 + 1");
    for i in 0..3 {
        assert_eq!(
            b.call(i, "tools/list", json!({})).await.status,
            200,
            "tenant B has its own budget"
        );
    }
}

#[tokio::test]
async fn over_quota_refuses_calls_and_every_call_is_recorded() {
    let mut world = World::start(FixtureOptions::default(), &[("fx:all", &["*"])], &[]).await;
    world.org.log_tool_arguments = true;
    world.republish();
    let client = world.client("alice", "fx:all", "2026-07-28");
    let args = json!({"b": 2, "a": [1, {"z": true}]});
    let ok = client
        .call(
            1,
            "tools/call",
            json!({"name": "test_simple_text", "arguments": args}),
        )
        .await;
    assert!(ok.response(1)["result"].is_object());
    let denied = client
        .call(2, "tools/call", json!({"name": "nope", "arguments": {}}))
        .await;
    assert_eq!(denied.response(2)["error"]["code"], -32602);
    world.dataplane.quota.set(world.org.org_id, true).await;
    let over = client
        .call(
            3,
            "tools/call",
            json!({"name": "test_simple_text", "arguments": {}}),
        )
        .await;
    assert_eq!(over.status, 200);
    assert!(
        over.response(3)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Quota exceeded")
    );

    let calls: Vec<_> = world
        .dataplane
        .drain_events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            BusMessage::Call(c) if c.method == "tools/call" => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let success = calls.iter().find(|c| c.outcome == CallOutcome::Success).unwrap();
    assert_eq!(success.tool.as_deref(), Some("test_simple_text"));
    assert_eq!(success.subject, "alice");
    assert_eq!(success.client_id.as_deref(), Some("test-client"));
    assert_eq!(success.org_id, world.org.org_id);
    assert_eq!(success.endpoint_id, Some(world.endpoint().id));
    assert_eq!(success.server_id, Some(world.server.id));
    assert_eq!(
        success.args_hash.as_deref(),
        Some(gatehouse_core::canonical::canonical_hash(&args).as_str())
    );
    assert_eq!(
        success.arguments.as_ref(),
        Some(&args),
        "the org opted in to argument logging"
    );
    assert!(success.bytes_out > 0 && success.bytes_in > 0);
    assert_eq!(success.id.as_uuid().get_version_num(), 7);
    assert!(
        calls
            .iter()
            .any(|c| c.outcome == CallOutcome::Denied && c.tool.as_deref() == Some("nope"))
    );
    assert!(calls.iter().any(|c| c.outcome == CallOutcome::OverQuota));
}

/// The address in call events is the connection's peer; `X-Forwarded-For` counts only when the
/// peer is a declared proxy (`dataplane.trusted_proxies`), and then only its nearest hop.
#[tokio::test]
async fn events_name_the_client_behind_trusted_proxies_only() {
    async fn recorded_ip(world: &World, forwarded_for: &str) -> Option<std::net::IpAddr> {
        let client = world.client("alice", "fx:all", "2026-07-28");
        let body = client.tool_call(1, "test_simple_text", json!({}));
        let response = client
            .builder(&body)
            .header("x-forwarded-for", forwarded_for)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let events = world.dataplane.drain_events().await;
        let call = events
            .iter()
            .find_map(|e| match e {
                BusMessage::Call(c) if c.method == "tools/call" => Some(c),
                _ => None,
            })
            .expect("the call was recorded");
        call.ip
    }
    let loopback = Some(std::net::IpAddr::from([127, 0, 0, 1]));

    let direct = World::start(FixtureOptions::default(), &[("fx:all", &["*"])], &[]).await;
    assert_eq!(
        recorded_ip(&direct, "203.0.113.7").await,
        loopback,
        "no trusted proxies: the header is the client's own claim"
    );

    let proxied = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.trusted_proxies", r#"["127.0.0.0/8"]"#)],
    )
    .await;
    assert_eq!(
        recorded_ip(&proxied, "198.51.100.1, 203.0.113.7").await,
        Some(std::net::IpAddr::from([203, 0, 113, 7])),
        "the address the trusted proxy saw, not what the client wrote before it"
    );
}

/// `subscriptions/listen` gets from the upstream only what the caller may see: without the
/// endpoint's resource scope, no resource subscriptions or resource list changes are asked for
/// (and so none acknowledged); with it, the subscription is.
#[tokio::test]
async fn subscriptions_listen_asks_only_for_what_the_grants_allow() {
    async fn acknowledged(world: &World, scope: &str) -> serde_json::Value {
        let client = world.client("alice", scope, "2026-07-28");
        let body = client.request(
            1,
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true, "resourcesListChanged": true,
                "resourceSubscriptions": ["test://static-text"]}}),
        );
        let response = client.builder(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = MessageStream::new(response);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let ack = stream.next(deadline).await.expect("an acknowledgement");
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
        ack["params"]["notifications"].clone()
    }
    let mut world = World::granting_all(FixtureOptions::default()).await;
    world.org.endpoints[0].resources = Some(gatehouse_core::snapshot::CapabilityGrant {
        scope: Some("fx:resources".into()),
    });
    world.republish();

    let without = acknowledged(&world, "fx:all").await;
    assert_eq!(without["toolsListChanged"], true, "{without}");
    assert!(without.get("resourceSubscriptions").is_none(), "{without}");
    assert!(without.get("resourcesListChanged").is_none(), "{without}");

    let with = acknowledged(&world, "fx:all fx:resources").await;
    assert_eq!(
        with["resourceSubscriptions"],
        json!(["test://static-text"]),
        "{with}"
    );
}
