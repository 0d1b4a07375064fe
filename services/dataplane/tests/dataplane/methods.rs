//! What reaches an upstream besides tool calls: methods Gatehouse does not understand are refused
//! unless the endpoint opts in, tasks are served only to the subject that created them (and only
//! while it may still call the tool), `Mcp-Param-*` headers pass only as the approved schema
//! declares them and never over a credential, and challenges name only the scopes to start with.

use serde_json::{Value, json};

use gatehouse_core::snapshot::{OrgSnapshot, UpstreamAuth};
use mcp_fixture::FixtureOptions;

use crate::harness::*;

fn error_code(answer: &Answer, id: i64) -> Option<i64> {
    answer.response(id)["error"]["code"].as_i64()
}

/// Changes the endpoint of `world` through the snapshot's JSON (as the control plane publishes
/// it) and installs it as the next version.
fn republish_with(world: &mut World, change: impl FnOnce(&mut Value)) {
    world.org.version += 1;
    let mut snapshot = serde_json::to_value(world.org.snapshot()).unwrap();
    change(&mut snapshot["endpoints"][0]);
    let snapshot: OrgSnapshot = serde_json::from_value(snapshot).unwrap();
    world.dataplane.store.install(snapshot);
}

/// How many requests the upstream received since `before` (an index into its record) whose body
/// is as long as `body`: the dataplane forwards a message as it came, so a forwarded `body` is
/// one of them (and the session's own traffic, such as `notifications/initialized`, is not).
fn forwarded_since(world: &World, before: usize, body: &Value) -> usize {
    let length = serde_json::to_vec(body).unwrap().len().to_string();
    world.fixture.headers_snapshot()[before..]
        .iter()
        .filter(|headers| headers.iter().any(|(n, v)| n == "content-length" && *v == length))
        .count()
}

/// A method no MCP revision defines is answered -32601 by the dataplane and never reaches the
/// upstream, in both eras; an endpoint that lists it (exactly, or by a `prefix/*`) forwards it.
#[tokio::test]
async fn methods_gatehouse_does_not_understand_are_not_forwarded() {
    let mut world = World::recording().await;
    for version in ["2025-11-25", "2026-07-28"] {
        let mut client = world.client("alice", "fx:all", version);
        client.handshake().await;
        for (id, method) in [(1, "acme/export_everything"), (2, "tools/secret_admin")] {
            let before = world.fixture.headers_snapshot().len();
            let body = client.request(id, method, json!({}));
            let answer = client.send(&body).await;
            assert_eq!(
                error_code(&answer, id),
                Some(-32601),
                "{version} {method}: {:?}",
                answer.messages
            );
            assert_eq!(
                answer.response(id)["error"]["message"],
                format!("Method not found: {method}"),
                "{version}: answered by the dataplane"
            );
            assert_eq!(
                forwarded_since(&world, before, &body),
                0,
                "{version}: {method} reached the upstream"
            );
        }
    }
    republish_with(&mut world, |endpoint| {
        endpoint["extra_methods"] = json!(["acme/*", "vendor/ping"]);
    });
    for version in ["2025-11-25", "2026-07-28"] {
        let mut client = world.client("alice", "fx:all", version);
        client.handshake().await;
        for (id, method) in [(3, "acme/export_everything"), (4, "vendor/ping")] {
            let before = world.fixture.headers_snapshot().len();
            let body = client.request(id, method, json!({}));
            let answer = client.send(&body).await;
            // The fixture does not know them either: its own -32601 answers.
            assert_eq!(
                error_code(&answer, id),
                Some(-32601),
                "{version}: {:?}",
                answer.messages
            );
            assert_eq!(
                forwarded_since(&world, before, &body),
                1,
                "{version}: {method} was forwarded"
            );
        }
        let before = world.fixture.headers_snapshot().len();
        let body = client.request(5, "vendor/other", json!({}));
        let answer = client.send(&body).await;
        assert_eq!(error_code(&answer, 5), Some(-32601), "{:?}", answer.messages);
        assert_eq!(
            forwarded_since(&world, before, &body),
            0,
            "{version}: only the listed methods pass"
        );
    }
}

/// The task id in a `tools/call` answer that created one (either revision's shape).
fn created_task(answer: &Answer, id: i64) -> String {
    let result = &answer.response(id)["result"];
    result["taskId"]
        .as_str()
        .or(result["task"]["taskId"].as_str())
        .unwrap_or_else(|| panic!("no task in {:?}", answer.messages))
        .to_owned()
}

/// Task ids in the answer to `tasks/list` (`None` when it was refused).
fn listed_tasks(answer: &Answer, id: i64) -> Option<Vec<String>> {
    let tasks = answer.response(id)["result"]["tasks"].as_array()?;
    Some(
        tasks
            .iter()
            .filter_map(|t| t["taskId"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// User B cannot list, read, fetch the result of, update or cancel user A's task, in either
/// revision; A can, until A's grant of the tool is withdrawn.
#[tokio::test]
async fn tasks_are_served_only_to_their_creator() {
    let mut world = World::start(
        FixtureOptions::default(),
        &[
            ("fx:all", &["*"]),
            ("fx:tasks", &["slow_compute", "test_simple_text"]),
        ],
        &[],
    )
    .await;
    let mut tasks = Vec::new();
    for version in ["2025-11-25", "2026-07-28"] {
        let mut alice = world.client("alice", "fx:tasks", version).declaring_tasks();
        alice.handshake().await;
        let mut bob = world.client("bob", "fx:all", version).declaring_tasks();
        bob.handshake().await;
        let created = alice
            .call_tool(1, "slow_compute", json!({"seconds": 30, "label": "alice's"}))
            .await;
        let task = created_task(&created, 1);
        let mine = alice.call(2, "tasks/get", json!({"taskId": task})).await;
        assert_eq!(
            mine.response(2)["result"]["taskId"],
            task.as_str(),
            "{version}: {:?}",
            mine.messages
        );

        for (id, method, params) in [
            (10, "tasks/get", json!({"taskId": task})),
            (11, "tasks/result", json!({"taskId": task})),
            (12, "tasks/update", json!({"taskId": task, "inputResponses": {}})),
            (13, "tasks/cancel", json!({"taskId": task})),
        ] {
            let refused = bob.call(id, method, params).await;
            let error = &refused.response(id)["error"];
            assert!(error.is_object(), "{version} {method}: {:?}", refused.messages);
            assert!(
                !refused.response(id).to_string().contains("alice's"),
                "{version} {method}: {:?}",
                refused.messages
            );
        }
        let listed = bob.call(14, "tasks/list", json!({})).await;
        if let Some(ids) = listed_tasks(&listed, 14) {
            assert!(!ids.contains(&task), "{version}: bob sees {ids:?}");
        }
        // Bob's cancel did not reach it: it is still Alice's, and still working.
        let still = alice.call(3, "tasks/get", json!({"taskId": task})).await;
        assert_eq!(
            still.response(3)["result"]["status"],
            "working",
            "{version}: {:?}",
            still.messages
        );
        if !alice.modern() {
            let listed = alice.call(4, "tasks/list", json!({})).await;
            let ids = listed_tasks(&listed, 4).unwrap_or_else(|| panic!("{:?}", listed.messages));
            assert!(ids.contains(&task), "{version}: {ids:?}");
        }
        tasks.push((alice, task));
    }

    // The scope that let Alice call the tool no longer grants it: her tasks are closed to her.
    republish_with(&mut world, |endpoint| {
        let slow = endpoint["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["exposed_name"] == "slow_compute")
            .map(|t| t["tool_id"].clone())
            .unwrap();
        for scope in endpoint["scopes"].as_array_mut().unwrap() {
            if scope["name"] == "fx:tasks" {
                scope["tool_ids"].as_array_mut().unwrap().retain(|id| *id != slow);
            }
        }
    });
    for (alice, task) in &tasks {
        let answer = alice.call(5, "tasks/get", json!({"taskId": task})).await;
        assert_eq!(answer.response(5)["result"], Value::Null, "{:?}", answer.messages);
        let cancel = alice.call(6, "tasks/cancel", json!({"taskId": task})).await;
        assert_eq!(cancel.response(6)["result"], Value::Null, "{:?}", cancel.messages);
    }
}

/// The standalone GET stream of a 2025-11-25 session.
async fn notification_stream(client: &RawClient) -> MessageStream {
    let get = client
        .http
        .get(&client.url)
        .bearer_auth(client.token.clone().unwrap())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    MessageStream::new(get)
}

/// An upstream that announces a task's status to every session (the fixture does, on the 2025
/// GET streams): the announcement reaches the task's creator, not another subject's stream.
#[tokio::test]
async fn task_notifications_reach_only_the_tasks_creator() {
    let world = World::start(FixtureOptions::default(), &[("fx:all", &["*"])], &[]).await;
    let mut alice = world.client("alice", "fx:all", "2025-11-25").declaring_tasks();
    alice.handshake().await;
    let mut bob = world.client("bob", "fx:all", "2025-11-25").declaring_tasks();
    bob.handshake().await;
    let mut alices = notification_stream(&alice).await;
    let mut bobs = notification_stream(&bob).await;
    // Let both GET streams reach the upstream before the task settles.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let created = alice
        .call_tool(1, "slow_compute", json!({"seconds": 1, "label": "alice's"}))
        .await;
    let task = created_task(&created, 1);
    let is_status = |m: &Value| {
        m["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("notifications/tasks"))
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut alice_saw = None;
    while let Some(message) = alices.next(deadline).await {
        if is_status(&message) {
            alice_saw = Some(message);
            break;
        }
    }
    let alice_saw = alice_saw.unwrap_or_else(|| panic!("alice got no status: {}", alices.received));
    assert_eq!(alice_saw["params"]["taskId"], task.as_str(), "{alice_saw}");
    // Bob's stream has had as long: it carries no status of Alice's task.
    let quiet = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Some(message) = bobs.next(quiet).await {
        assert!(!is_status(&message), "bob received {message}");
    }
    assert!(!bobs.received.contains(&task), "bob's stream: {}", bobs.received);
}

/// A task created at one endpoint is not served at another endpoint of the org, even to its
/// creator holding the same scope there (ids are the upstream's: they do not name endpoints).
#[tokio::test]
async fn a_task_is_served_only_at_the_endpoint_that_created_it() {
    let mut world = World::granting_all(FixtureOptions::default()).await;
    let servers = [&world.server];
    world.org.add_endpoint(
        &world.dataplane.url,
        "other",
        &servers,
        false,
        &[("fx:all", &["*"])],
    );
    world.republish();
    let mut alice = world.client("alice", "fx:all", "2025-11-25").declaring_tasks();
    alice.handshake().await;
    let created = alice
        .call_tool(1, "slow_compute", json!({"seconds": 30, "label": "here"}))
        .await;
    let task = created_task(&created, 1);
    let other = &world.org.endpoints[1];
    let token = world
        .issuer
        .token(other, world.org.org_id, "alice", "fx:all", json!({}));
    let mut elsewhere = RawClient::new(
        &world.dataplane.endpoint_url(&world.org.slug, "other"),
        Some(token),
        "2025-11-25",
    )
    .declaring_tasks();
    elsewhere.handshake().await;
    let answer = elsewhere.call(2, "tasks/get", json!({"taskId": task})).await;
    assert!(answer.response(2)["error"].is_object(), "{:?}", answer.messages);
}

/// 2026-07-28: an `Mcp-Param-*` header the called tool's approved schema does not declare is not
/// forwarded, and a declared one never replaces the server's own credential header.
#[tokio::test]
async fn mcp_param_headers_pass_only_as_declared_and_never_over_a_credential() {
    let mut world = World::recording().await;
    // The server authenticates with a header of its own whose name a client could also send.
    world.server.auth = UpstreamAuth::Header {
        name: "Mcp-Param-Region".into(),
        value: gatehouse_core::snapshot::Sealed(b"server-secret".to_vec()),
    };
    world.org.servers.clear();
    world.org.add_server(&world.server, &world.shared.snapshot_keys);
    world.republish();
    let client = world.client("alice", "fx:all", "2026-07-28");

    let before = world.fixture.headers_snapshot().len();
    let call = client.tool_call(1, "test_simple_text", json!({}));
    let answer = Answer::read(
        client
            .builder(&call)
            .header("mcp-param-tenant", "someone-else")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.messages);
    let routed = client.tool_call(2, "test_routed_by_header", json!({"region": "eu-west"}));
    let _ = client
        .builder(&routed)
        .header("mcp-param-region", "eu-west")
        .send()
        .await
        .unwrap();
    let seen = world.fixture.headers_snapshot();
    assert!(seen.len() > before, "the calls reached the upstream");
    for request in &seen[before..] {
        for (name, value) in request {
            assert_ne!(
                name, "mcp-param-tenant",
                "an undeclared parameter header was forwarded"
            );
            if name == "mcp-param-region" {
                assert_eq!(value, "server-secret", "a client header replaced the credential");
            }
        }
    }
}

/// The 401 challenge, the 403 step-up challenge and the protected-resource metadata name only the
/// scopes any member can be granted (minimum role viewer), not every scope of the endpoint; an
/// endpoint configured to publish them names them all.
#[tokio::test]
async fn challenges_and_metadata_name_only_the_scopes_to_start_with() {
    let mut world = World::start(
        FixtureOptions::default(),
        &[("fx:read", &["test_simple_text"]), ("payroll:admin", &["*"])],
        &[],
    )
    .await;
    republish_with(&mut world, |endpoint| {
        for scope in endpoint["scopes"].as_array_mut().unwrap() {
            scope["min_role"] = json!(if scope["name"] == "fx:read" {
                "viewer"
            } else {
                "admin"
            });
        }
    });
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource/{}/main/mcp",
        world.dataplane.url, world.org.slug
    );
    let url = world.url();
    // A valid token whose scopes grant nothing here gets a 403 step-up challenge: it too names
    // only the scopes to start with.
    let useless = world.token("u1", "other:scope");
    let check = |published: &[&str]| {
        let metadata_url = metadata_url.clone();
        let url = url.clone();
        let useless = useless.clone();
        let published: Vec<String> = published.iter().map(|s| (*s).to_owned()).collect();
        async move {
            let http = reqwest::Client::new();
            let metadata: Value = http
                .get(&metadata_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(metadata["scopes_supported"], json!(published), "{metadata}");
            let anonymous = RawClient::new(&url, None, "2025-11-25");
            let answer = anonymous.call(1, "tools/list", json!({})).await;
            assert_eq!(answer.status, 401);
            let challenge = answer.headers["www-authenticate"].to_str().unwrap().to_owned();
            let refused = RawClient::new(&url, Some(useless), "2025-11-25")
                .call(1, "tools/list", json!({}))
                .await;
            assert_eq!(refused.status, 403);
            let step_up = refused.headers["www-authenticate"].to_str().unwrap().to_owned();
            assert!(step_up.contains("error=\"insufficient_scope\""), "{step_up}");
            for challenge in [&challenge, &step_up] {
                if published.is_empty() {
                    assert!(!challenge.contains("scope="), "{challenge}");
                } else {
                    assert!(
                        challenge.contains(&format!("scope=\"{}\"", published.join(" "))),
                        "{challenge}"
                    );
                }
            }
        }
    };
    check(&["fx:read"]).await;
    republish_with(&mut world, |endpoint| {
        for scope in endpoint["scopes"].as_array_mut().unwrap() {
            scope["min_role"] = json!(if scope["name"] == "fx:read" {
                "viewer"
            } else {
                "admin"
            });
        }
        endpoint["publish_scopes"] = json!(true);
    });
    check(&["fx:read", "payroll:admin"]).await;
}

/// With Redis, every replica knows who created a task: created through one dataplane, it is
/// served by another to its creator only.
#[tokio::test]
async fn replicas_share_who_created_a_task_through_redis() {
    let redis = gatehouse_test_support::redis_server::RedisServer::start();
    let url = redis.url();
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let extra = [("redis.url", url.as_str())];
    let first = TestDataplane::start(&issuer, &shared, &extra).await;
    let second = TestDataplane::start(&issuer, &shared, &extra).await;
    let fixture = mcp_fixture::spawn_fixture(FixtureOptions::default())
        .await
        .unwrap();
    let server = ServerSpec::fixture("fx", fixture.url()).await;
    let mut org = OrgSpec::new(&format!(
        "org-{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    ));
    org.add_server(&server, &shared.snapshot_keys);
    // Both replicas serve the same public URL (the token audience).
    org.add_endpoint(&first.url, "main", &[&server], false, &[("fx:all", &["*"])]);
    first.load(&[org.snapshot()]);
    second.load(&[org.snapshot()]);
    let token = |sub: &str| issuer.token(&org.endpoints[0], org.org_id, sub, "fx:all", json!({}));
    let on = |dataplane: &TestDataplane, sub: &str| {
        RawClient::new(
            &dataplane.endpoint_url(&org.slug, "main"),
            Some(token(sub)),
            "2026-07-28",
        )
        .declaring_tasks()
    };
    let created = on(&first, "alice")
        .call_tool(1, "slow_compute", json!({"seconds": 30, "label": "shared"}))
        .await;
    let task = created_task(&created, 1);
    let mine = on(&second, "alice")
        .call(2, "tasks/get", json!({"taskId": task}))
        .await;
    assert_eq!(
        mine.response(2)["result"]["taskId"],
        task.as_str(),
        "{:?}",
        mine.messages
    );
    let theirs = on(&second, "bob")
        .call(3, "tasks/get", json!({"taskId": task}))
        .await;
    assert_eq!(
        theirs.response(3)["error"]["message"],
        "Unknown task",
        "{:?}",
        theirs.messages
    );
}
