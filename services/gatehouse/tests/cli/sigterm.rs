//! SIGTERM during a slow request: a real `gatehouse control-api` process is syncing a domain
//! server whose upstream takes 3 s to answer when SIGTERM arrives. The request still gets its
//! answer, and the process exits cleanly within the grace period.

use std::process::Stdio;
use std::time::{Duration, Instant};

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::ids::ServerId;
use gatehouse_core::secrets::{DerivedKeys, generate_key_b64, generate_signing_secret_b64};
use gatehouse_db::repos::servers::{self, NewServer, StoredAuth};
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_test_support::console::signed_in_owner;
use gatehouse_test_support::{TestDb, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gatehouse;

/// An upstream that reads a request, waits `delay`, then answers with an error (any answer will
/// do: the point is that it is slow).
async fn slow_upstream(delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn sigterm_during_a_slow_request_lets_it_finish_then_exits() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let signing_secret = generate_signing_secret_b64();
    let keys = DerivedKeys::derive(&signing_secret).unwrap();
    let upstream_port = slow_upstream(Duration::from_secs(3)).await;

    // A signed-in owner of an org with one server on the slow upstream.
    let owner = signed_in_owner(&db.db, "owner@sigterm.test", "sigterm").await;
    let token = owner.session_token;
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(owner.org_id))
        .await
        .unwrap();
    let server_id = ServerId::new();
    let url = format!("http://127.0.0.1:{upstream_port}/mcp");
    servers::create(
        &mut tx,
        &NewServer {
            id: server_id,
            slug: "slow",
            name: "Slow",
            url: &url,
            transport: gatehouse_core::upstream::UpstreamTransport::StreamableHttp,
            auth: StoredAuth::none(),
            send_caller_assertion: false,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = gatehouse()
        .env("GATEHOUSE_MODE", "local")
        .env("GATEHOUSE_DATABASE__URL", &db.service_url)
        .env("GATEHOUSE_CONTROL_API__LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_CONTROL_API__PUBLIC_URL", &base)
        .env(
            "GATEHOUSE_SECRETS__ENCRYPTION_KEYS",
            format!("k1={}", generate_key_b64()),
        )
        .env("GATEHOUSE_SECRETS__SIGNING_SECRET", &signing_secret)
        .env(
            "GATEHOUSE_SECRETS__DATAPLANE_SECRET",
            generate_signing_secret_b64(),
        )
        .env("GATEHOUSE_EGRESS__ALLOW_HTTP", "true")
        .env("GATEHOUSE_EGRESS__ALLOW_HOSTS", "[\"127.0.0.1\"]")
        .env("GATEHOUSE_EGRESS__REQUEST_TIMEOUT_MS", "10000")
        .env("GATEHOUSE_CONTROL_API__RESYNC_INTERVAL_SECS", "0")
        .env("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS", "8")
        .env(
            "GATEHOUSE_MAIL__FILE_DIR",
            std::env::temp_dir().join(format!("gh-sigterm-mail-{port}")),
        )
        .arg("control-api")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "control-api did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The slow request: a sync that waits on the upstream for 3 s.
    let request = {
        let http = http.clone();
        let cookie = format!("{}={token}", session_cookie_name(true));
        let csrf = csrf_token(&keys.cookie, &token);
        let url = format!("{base}/api/v1/orgs/sigterm/servers/{server_id}/sync");
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http
                .post(url)
                .header("cookie", cookie)
                .header(CSRF_HEADER, csrf)
                .send()
                .await;
            (response, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();

    let (response, took) = request.await.unwrap();
    let response = response.expect("the in-flight request gets an answer after SIGTERM");
    assert!(
        took >= Duration::from_secs(3),
        "it waited for the slow upstream ({took:?})"
    );
    // The upstream answered 503, so the sync reports an upstream error: a complete, well-formed answer.
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );

    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(8),
            "still running after the 8 s grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    // Once it has exited, nothing listens.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}
