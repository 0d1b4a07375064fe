//! Open notification streams do not hold a stop: a `gatehouse dataplane` or a `gatehouse up` with
//! 100 idle GET streams stops within 2 s of SIGTERM, each stream ending with a retry hint.

use std::time::{Duration, Instant};

use serde_json::json;

use gatehouse_core::secrets::generate_signing_secret_b64;
use gatehouse_test_support::console::signed_in_owner;
use gatehouse_test_support::{TestDb, free_port};

use super::harness::{
    GRACE_SECS, Platform, ends_with_retry_hint, exited, hundred_streams, provision, sigterm,
};
use crate::ServiceProcess;
use crate::dataplane_replicas::{client_for, remove_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataplane_process_with_100_open_get_streams_stops_within_2_s() {
    let platform = Platform::start("drain").await;
    let mut dataplane = platform.dataplane("dataplane", 1).await;
    let http = client_for(platform.addr(1));
    let streams = hundred_streams(&http, &platform.url(), &platform.token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(streams.iter().all(|s| !s.is_finished()), "the streams are open");

    let signalled = Instant::now();
    sigterm(&dataplane);
    let (status, at) = exited(&mut dataplane, Duration::from_secs(40)).await;
    let took = at - signalled;
    eprintln!("gatehouse dataplane stopped {took:?} after SIGTERM with 100 idle streams");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(2),
        "stopped {took:?} after SIGTERM with 100 idle streams (grace {GRACE_SECS} s)"
    );
    for stream in streams {
        let text = stream.await.unwrap();
        assert!(
            ends_with_retry_hint(&text),
            "the stream ends with a retry hint: {text:?}"
        );
    }
    remove_dir(&platform.shared.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_up_with_100_open_get_streams_stops_within_2_s() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        slow_tool: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (checkout, data) = crate::up::scratch_checkout("drain-up");
    let signing_secret = generate_signing_secret_b64();
    let (api, dp, wk) = (free_port(), free_port(), free_port());
    let log = checkout.join("up.log");
    let child = crate::gatehouse()
        .current_dir(&checkout)
        .env("GATEHOUSE_LOCAL__DATA_DIR", &data)
        .env("GATEHOUSE_DATABASE__URL", &db.service_url)
        .env("GATEHOUSE_DATABASE__ADMIN_URL", &db.admin_url)
        .env("GATEHOUSE_SECRETS__SIGNING_SECRET", &signing_secret)
        .env("GATEHOUSE_CONTROL_API__LISTEN", format!("127.0.0.1:{api}"))
        .env(
            "GATEHOUSE_CONTROL_API__PUBLIC_URL",
            format!("http://127.0.0.1:{api}"),
        )
        .env("GATEHOUSE_DATAPLANE__LISTEN", format!("127.0.0.1:{dp}"))
        .env(
            "GATEHOUSE_DATAPLANE__PUBLIC_URL",
            format!("http://127.0.0.1:{dp}"),
        )
        .env("GATEHOUSE_USAGE_WORKER__LISTEN", format!("127.0.0.1:{wk}"))
        .env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_DATAPLANE__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_DATAPLANE__MAX_STREAMS_PER_SUBJECT", "500")
        .env("GATEHOUSE_EGRESS__ALLOW_HTTP", "true")
        .env("GATEHOUSE_EGRESS__ALLOW_PRIVATE_NETWORKS", "true")
        .env("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS", GRACE_SECS)
        .arg("up")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(checkout.join("up.err")).unwrap())
        .spawn()
        .expect("start gatehouse up");
    let mut up = ServiceProcess {
        name: "gatehouse up",
        child,
        log,
    };
    let http = reqwest::Client::new();
    for port in [api, dp, wk] {
        up.wait_ready(&http, &format!("http://127.0.0.1:{port}/readyz"))
            .await;
    }
    let owner = signed_in_owner(&db.db, "owner@drain-up.test", "drain").await;
    let token = provision(
        &format!("http://127.0.0.1:{api}"),
        &signing_secret,
        &owner,
        "drain",
        &fixture,
    )
    .await;
    let url = format!("http://127.0.0.1:{dp}/drain/main/mcp");
    // The dataplane learns of the new endpoint and token through its configuration snapshot.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let known = http
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
            .await
            .unwrap()
            .status();
        if known != 401 && known != 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dataplane never learned of the token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let streams = hundred_streams(&http, &url, &token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(streams.iter().all(|s| !s.is_finished()), "the streams are open");

    let signalled = Instant::now();
    sigterm(&up);
    let (status, at) = exited(&mut up, Duration::from_secs(40)).await;
    let took = at - signalled;
    eprintln!("gatehouse up stopped {took:?} after SIGTERM with 100 idle streams");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(2),
        "gatehouse up stopped {took:?} after SIGTERM with 100 idle streams (grace {GRACE_SECS} s)"
    );
    for stream in streams {
        let text = stream.await.unwrap();
        assert!(ends_with_retry_hint(&text), "{text:?}");
    }
    let _ = std::fs::remove_dir_all(&checkout);
}
