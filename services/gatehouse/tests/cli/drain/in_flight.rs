//! A slow call in flight when SIGTERM arrives completes, new requests meanwhile are refused with a
//! retryable answer, and the dataplane stops right after the call's answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{GRACE_SECS, LEGACY, Platform, exited, session, sigterm};
use crate::dataplane_replicas::{client_for, post, remove_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_in_flight_completes_and_the_dataplane_stops_right_after_it() {
    let platform = Platform::start("drain").await;
    let mut dataplane = platform.dataplane("dataplane", 1).await;
    let addr = platform.addr(1);
    let http = client_for(addr);
    let url = platform.url();
    let session = session(&http, &url, &platform.token).await;
    let call = {
        let (http, url, token, session) =
            (http.clone(), url.clone(), platform.token.clone(), session.clone());
        tokio::spawn(async move {
            let answer = post(
                &http,
                &url,
                &token,
                Some(&session),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "fx__test_slow_cancellable", "arguments": {"seconds": 3}}}),
            )
            .await;
            (answer, Instant::now())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while platform.fixture.slow_calls_started() == 0 {
        assert!(Instant::now() < deadline, "the slow call did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    sigterm(&dataplane);

    // Readiness fails and new requests are refused, retryably, while the call runs.
    let fresh = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let ready = fresh.get(format!("http://{addr}/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness still {} after 1 s",
            ready.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = client_for(addr)
        .post(&url)
        .bearer_auth(&platform.token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", LEGACY)
        .header("mcp-session-id", &session)
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32000, "{error}");
    assert_eq!(error["error"]["data"]["retryAfterSeconds"], 1, "{error}");

    let ((status, _, answer), answered_at) = call.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"]["content"].is_array(), "{answer}");
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(platform.fixture.slow_calls_abandoned(), 0);
    let (exit, at) = exited(&mut dataplane, Duration::from_secs(40)).await;
    assert!(exit.success(), "exit status {exit}");
    let after_answer = at.saturating_duration_since(answered_at);
    eprintln!(
        "stopped {after_answer:?} after the slow call's answer, {:?} after SIGTERM",
        at - signalled
    );
    assert!(
        after_answer < Duration::from_secs(1),
        "stopped {after_answer:?} after the call's answer ({:?} after SIGTERM, grace {GRACE_SECS} s)",
        at - signalled
    );
    remove_dir(&platform.shared.dir);
}
