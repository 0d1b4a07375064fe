//! Clients carry on at a second replica when the one they used drains: a 2025-11-25 client resumes
//! its GET stream, a 2026-07-28 client subscribes again, and the TypeScript SDK does so by itself
//! behind a TCP load balancer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{
    Platform, ends_with_retry_hint, exited, last_event_id, listen, modern_request, open_get_stream, session,
    sigterm,
};
use crate::dataplane_replicas::{client_for, post, remove_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_each_revision_carry_on_at_a_second_replica() {
    let platform = Platform::start("drain").await;
    let mut a = platform.dataplane("dataplane-a", 1).await;
    let _b = platform.dataplane("dataplane-b", 2).await;
    let (via_a, via_b) = (client_for(platform.addr(1)), client_for(platform.addr(2)));
    let url = platform.url();
    let token = &platform.token;

    // A 2025 session with its GET stream open on A, and a 2026-07-28 subscription there.
    let session = session(&via_a, &url, token).await;
    let stream = open_get_stream(&via_a, &url, token, &session, None).await;
    let subscription = listen(&via_a, &url, token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&a);
    let (status, _) = exited(&mut a, Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}");

    // The 2025 client: its stream ended with a retry hint; it resumes at B from the last event
    // id it saw, and its session goes on there.
    let text = stream.await.unwrap();
    assert!(ends_with_retry_hint(&text), "{text:?}");
    let resumed = open_get_stream(&via_b, &url, token, &session, last_event_id(&text).as_deref()).await;
    let (status, _, called) = post(
        &via_b,
        &url,
        token,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "fx__test_simple_text", "arguments": {}}}),
    )
    .await;
    assert_eq!(status, 200, "{called}");
    assert!(called["result"]["content"].is_array(), "{called}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!resumed.is_finished(), "the resumed stream stays open at B");
    resumed.abort();

    // The 2026-07-28 client: its subscription ended (that revision does not resume streams); it
    // subscribes again at B, which acknowledges, and calls there.
    let text = subscription.await.unwrap();
    assert!(
        text.contains("notifications/subscriptions/acknowledged"),
        "{text:?}"
    );
    let again = listen(&via_b, &url, token).await;
    let called = modern_request(
        &via_b,
        &url,
        token,
        10,
        "tools/call",
        json!({"name": "fx__test_simple_text", "arguments": {}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(called.status(), 200);
    assert!(!again.is_finished(), "the new subscription stays open at B");
    again.abort();
    remove_dir(&platform.shared.dir);
}

/// A TCP load balancer in front of the replicas: each new connection goes to the current target.
/// It counts, per target, the GET requests that went through it.
struct Proxy {
    port: u16,
    target: Arc<std::sync::Mutex<SocketAddr>>,
    gets: Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, usize>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            target: Arc::new(std::sync::Mutex::new(target)),
            gets: Arc::default(),
        };
        let (current, gets) = (proxy.target.clone(), proxy.gets.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = *current.lock().unwrap();
                let gets = gets.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = client_read.read(&mut buf).await {
                            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            let gets_here = buf[..n].windows(4).filter(|w| w == b"GET ").count();
                            *gets.lock().unwrap().entry(target).or_default() += gets_here;
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        proxy
    }

    fn gets_at(&self, target: SocketAddr) -> usize {
        self.gets.lock().unwrap().get(&target).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_resumes_its_get_stream_at_a_second_replica_and_goes_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let platform = Platform::start("drain").await;
    let proxy = Proxy::start(platform.addr(1)).await;
    // The dataplanes also answer to the balancer's address.
    let allowed = vec![(
        "GATEHOUSE_DATAPLANE__ALLOWED_ORIGINS",
        format!("[\"http://127.0.0.1:{}\"]", proxy.port),
    )];
    let mut a = platform.dataplane_with("dataplane-a", 1, &allowed).await;
    let _b = platform.dataplane_with("dataplane-b", 2, &allowed).await;

    let clients = gatehouse_test_support::node_tools::clients_dir();
    let mut sdk = tokio::process::Command::new(gatehouse_test_support::sdk_servers::node())
        .current_dir(&clients)
        .arg("drain/ts-reconnect.mjs")
        .arg(format!("http://127.0.0.1:{}/drain/main/mcp", proxy.port))
        .arg(&platform.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = sdk.stdin.take().unwrap();
    let mut out = tokio::io::BufReader::new(sdk.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .expect("the SDK connects within 20 s")
        .unwrap();
    assert_eq!(line.as_deref(), Some("connected"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.gets_at(platform.addr(1)) == 0 {
        assert!(Instant::now() < deadline, "the SDK did not open its GET stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A leaves the balancer and drains.
    *proxy.target.lock().unwrap() = platform.addr(2);
    sigterm(&a);
    let signalled = Instant::now();
    let (status, at) = exited(&mut a, Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        at - signalled < Duration::from_secs(2),
        "A stopped after {:?}",
        at - signalled
    );

    // The SDK resumes its stream at B (after the retry the stream ended with) and calls there.
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.gets_at(platform.addr(2)) == 0 {
        assert!(
            Instant::now() < deadline,
            "the SDK did not resume its GET stream at B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stdin.write_all(b"call\n").await.unwrap();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(15), out.next_line())
            .await
            .expect("an answer within 15 s")
            .unwrap()
            .expect("the SDK goes on");
        let value: Value = serde_json::from_str(&line).unwrap();
        printed.push(value.clone());
        if value.get("transportError").is_none() {
            break;
        }
    }
    assert_eq!(printed.last().unwrap()["ok"], true, "{printed:?}");
    assert!(
        printed.iter().all(|p| p.get("transportError").is_none()),
        "the transport reported errors: {printed:?}"
    );
    stdin.write_all(b"close\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), sdk.wait()).await;
    remove_dir(&platform.shared.dir);
}
