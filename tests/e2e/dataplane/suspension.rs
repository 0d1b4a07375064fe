//! An operator suspends an org: every dataplane (two replicas sharing Redis) refuses its calls
//! within a second, with an error that says so; resumed, they serve it again within a second.
//! The change travels like any configuration change: a version bump published on the event bus.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_events::Bus;
use gatehouse_test_support::free_port;

use super::{Admin, service_client_token, wait_for};
use crate::platform::Platform;

/// An `initialize` through `dataplane` (base URL) at the endpoint's path: the status and the body.
pub(super) async fn initialize(
    http: &reqwest::Client,
    dataplane: &str,
    host: &str,
    path: &str,
    token: &str,
) -> (u16, Value) {
    let response = http
        .post(format!("{dataplane}{path}"))
        // Both replicas serve the one public URL (a load balancer in front keeps its Host).
        .header("host", host)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .or_else(|_| {
            // An SSE answer: the data of its one event.
            text.lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|d| serde_json::from_str(d.trim()))
                .unwrap_or(Ok(Value::Null))
        })
        .unwrap_or(Value::Null);
    (status, body)
}

fn refused_for_suspension((status, body): &(u16, Value)) -> bool {
    *status == 403 && body["error"]["data"]["reason"] == "org_suspended"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspended_org_is_refused_by_every_dataplane_within_a_second_and_resumed_as_fast() {
    let redis = gatehouse_test_support::redis_url();
    let namespace = format!("suspend-{}:", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let operator_token = random_token(32);
    let operator_hash: String = token_hash(&operator_token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let platform = Platform::start_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
        ("redis.url", &redis),
        ("redis.key_prefix", &namespace),
        ("redis.events_stream", &format!("{namespace}events")),
        ("operator.token_sha256", &operator_hash),
    ])
    .await;

    // A second dataplane replica: same control API and Redis, its own port and spool.
    let second_port = free_port();
    let mut second_cfg = (*platform.cfg).clone();
    second_cfg.dataplane.listen = format!("127.0.0.1:{second_port}").parse().unwrap();
    second_cfg.dataplane.internal_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    second_cfg.dataplane.spool_dir =
        std::env::temp_dir().join(format!("gatehouse-spool-2-{}", platform.db.name));
    let second_cfg = Arc::new(second_cfg);
    let shutdown = CancellationToken::new();
    let bus = Bus::from_config(&second_cfg, shutdown.clone()).await.unwrap();
    let second = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
        cfg: second_cfg.clone(),
        notifier: bus.notifier.clone(),
        events: bus.publisher.clone(),
        limiter: bus.limiter.clone(),
        quota: bus.quota.clone(),
    })
    .unwrap();
    tokio::spawn(second.run_until_stopped(shutdown.clone()));
    let second_url = format!("http://127.0.0.1:{second_port}");
    let dataplanes = [platform.dataplane.clone(), second_url];

    let fixture = mcp_fixture::spawn_fixture(Default::default()).await.unwrap();
    let (admin, _) = Admin::create(&platform, "owner@paused.example", "paused").await;
    let server_id = admin
        .provision(
            "paused",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
            &[("fx:all", &["*"])],
        )
        .await;
    let endpoint = admin
        .create_endpoint("paused", "tools", "Tools", &server_id)
        .await;
    let (_resource, token) = service_client_token(&platform, &admin, "paused", &endpoint, &["fx:all"]).await;
    let path = "/paused/tools/mcp";
    let host = platform.dataplane.trim_start_matches("http://");
    for dp in &dataplanes {
        wait_for(Duration::from_secs(5), || async {
            let (status, body) = initialize(&platform.http, dp, host, path, &token).await;
            assert!(status == 200 || status == 404, "{dp}: {status} {body}");
            status == 200
        })
        .await;
    }

    let operator = |method: reqwest::Method, route: &str| {
        platform
            .http
            .request(method, format!("{}/api/operator{route}", platform.control_api))
            .bearer_auth(&operator_token)
    };
    let suspended = operator(reqwest::Method::POST, "/orgs/paused/suspend")
        .json(&json!({"reason": "abuse report"}))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), 200);
    for dp in &dataplanes {
        let took = wait_for(Duration::from_secs(1), || async {
            refused_for_suspension(&initialize(&platform.http, dp, host, path, &token).await)
        })
        .await;
        eprintln!("{dp} refused the suspended org {took:?} after the suspension");
    }
    let (_, refused) = initialize(&platform.http, &dataplanes[1], host, path, &token).await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("suspended"),
        "{refused}"
    );

    let resumed = operator(reqwest::Method::POST, "/orgs/paused/resume")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    for dp in &dataplanes {
        let took = wait_for(Duration::from_secs(1), || async {
            initialize(&platform.http, dp, host, path, &token).await.0 == 200
        })
        .await;
        eprintln!("{dp} served the resumed org {took:?} after the resumption");
    }
    shutdown.cancel();
}
