//! The drain tests' harness: a control API with one provisioned org, dataplane processes with a
//! long grace period, MCP sessions and streams against them, and SIGTERM with the wait for exit.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::secrets::{DerivedKeys, random_token};
use gatehouse_test_support::console::{ConsoleClient, signed_in_owner};
use gatehouse_test_support::{TestDb, free_port};

use crate::ServiceProcess;
use crate::dataplane_replicas::{Shared, loopback_pair_port, post};

/// The grace period every process here gets: far longer than any stop the tests accept.
pub(super) const GRACE_SECS: &str = "30";
pub(super) const LEGACY: &str = "2025-11-25";
pub(super) const MODERN: &str = "2026-07-28";

/// A control API process with one org whose endpoint `main` reaches an MCP fixture, and a
/// service token for it.
pub(super) struct Platform {
    pub(super) db: TestDb,
    pub(super) fixture: mcp_fixture::FixtureHandle,
    pub(super) shared: Shared,
    _control: ServiceProcess,
    pub(super) token: String,
    pub(super) org_id: gatehouse_core::ids::OrgId,
    pub(super) dp_port: u16,
}

/// Settings of every dataplane here: a long grace period, room for 100 streams of one caller.
pub(super) fn dataplane_env(listen: SocketAddr, shared: &Shared, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GATEHOUSE_DATAPLANE__LISTEN", listen.to_string()),
        ("GATEHOUSE_DATAPLANE__INTERNAL_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "GATEHOUSE_DATAPLANE__SPOOL_DIR",
            shared.dir.join(format!("{name}-spool")).display().to_string(),
        ),
        ("GATEHOUSE_DATAPLANE__MAX_STREAMS_PER_SUBJECT", "500".to_owned()),
        ("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS", GRACE_SECS.to_owned()),
    ]
}

impl Platform {
    pub(super) async fn start(org: &str) -> Self {
        gatehouse_test_support::init();
        let db = TestDb::new().await;
        let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
            slow_tool: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = std::env::temp_dir().join(format!("gatehouse-drain-{}", random_token(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let (api_port, internal_port, dp_port) = (free_port(), free_port(), loopback_pair_port());
        let shared = Shared::new(&db.service_url, "drain", api_port, internal_port, dp_port, dir);
        let http = reqwest::Client::new();
        let owner = signed_in_owner(&db.db, &format!("owner@{org}.test"), org).await;
        let mut control = shared.spawn(
            "control-api",
            "control-api",
            &[
                ("GATEHOUSE_CONTROL_API__LISTEN", format!("127.0.0.1:{api_port}")),
                (
                    "GATEHOUSE_CONTROL_API__INTERNAL_LISTEN",
                    format!("127.0.0.1:{internal_port}"),
                ),
            ],
        );
        control
            .wait_ready(&http, &format!("{}/readyz", shared.control_api))
            .await;
        let token = provision(&shared.control_api, &shared.signing_secret, &owner, org, &fixture).await;
        Self {
            db,
            fixture,
            shared,
            _control: control,
            token,
            org_id: owner.org_id,
            dp_port,
        }
    }

    /// The dataplane replica on `127.0.0.{n}`.
    pub(super) fn addr(&self, n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], self.dp_port))
    }

    pub(super) async fn dataplane(&self, name: &'static str, n: u8) -> ServiceProcess {
        self.dataplane_with(name, n, &[]).await
    }

    /// [`Platform::dataplane`] with settings of its own.
    pub(super) async fn dataplane_with(
        &self,
        name: &'static str,
        n: u8,
        extra: &[(&'static str, String)],
    ) -> ServiceProcess {
        let addr = self.addr(n);
        let mut env = dataplane_env(addr, &self.shared, name);
        env.extend(extra.iter().cloned());
        let mut process = self.shared.spawn(name, "dataplane", &env);
        process
            .wait_ready(&reqwest::Client::new(), &format!("http://{addr}/readyz"))
            .await;
        process
    }

    pub(super) fn url(&self) -> String {
        format!("{}/{}/main/mcp", self.shared.public_url, "drain")
    }
}

/// A server on the fixture with its plain and slow tools approved, an endpoint `main`, and a
/// service token granted both; returns the token's secret.
pub(super) async fn provision(
    control_api: &str,
    signing_secret: &str,
    owner: &gatehouse_test_support::console::SignedInOwner,
    org: &str,
    fixture: &mcp_fixture::FixtureHandle,
) -> String {
    let keys = DerivedKeys::derive(signing_secret).unwrap();
    let admin = ConsoleClient {
        http: reqwest::Client::new(),
        base: control_api.to_owned(),
        cookie: format!("{}={}", session_cookie_name(true), owner.session_token),
        csrf: (CSRF_HEADER, csrf_token(&keys.cookie, &owner.session_token)),
    };
    let server_id = admin
        .provision(
            org,
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
            &[("fx:calls", &["test_simple_text", "test_slow_cancellable"])],
        )
        .await;
    let endpoint = admin.create_endpoint(org, "main", "Main", &server_id).await;
    let created = admin
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{org}/service-tokens"),
            Some(json!({"name": "agent", "endpoint_id": endpoint["id"], "scopes": ["fx:calls"]})),
        )
        .await;
    created["secret"].as_str().unwrap().to_owned()
}

/// A 2025-11-25 session, initialized.
pub(super) async fn session(http: &reqwest::Client, url: &str, token: &str) -> String {
    let (status, session, answer) = post(
        http,
        url,
        token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": {"name": "drain-test", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let session = session.expect("a session id");
    let (status, _, _) = post(
        http,
        url,
        token,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    session
}

/// Opens the session's GET stream (resuming after `last_event_id`) and reads it in the
/// background; the task returns everything the stream carried once it ends.
pub(super) async fn open_get_stream(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: &str,
    last_event_id: Option<&str>,
) -> tokio::task::JoinHandle<String> {
    let mut request = http
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", LEGACY)
        .header("mcp-session-id", session);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    read_to_end(response)
}

/// Reads an SSE response in the background until it ends (a broken stream ends it too).
pub(super) fn read_to_end(response: reqwest::Response) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        let mut chunks = response.bytes_stream();
        while let Some(Ok(chunk)) = chunks.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
}

/// 100 sessions, each with its GET stream open through `http`.
pub(super) async fn hundred_streams(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Vec<tokio::task::JoinHandle<String>> {
    let sessions = futures::stream::iter(0..100)
        .map(|_| session(http, url, token))
        .buffer_unordered(10)
        .collect::<Vec<_>>()
        .await;
    let mut streams = Vec::new();
    for session in &sessions {
        streams.push(open_get_stream(http, url, token, session, None).await);
    }
    streams
}

pub(super) fn sigterm(process: &ServiceProcess) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(process.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Waits for the process to exit (at most `within`), returning its status and when it exited.
pub(super) async fn exited(process: &mut ServiceProcess, within: Duration) -> (ExitStatus, Instant) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return (status, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "{} still running {within:?} after SIGTERM",
            process.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The SSE `retry` hint a drained 2025 stream ends with.
pub(super) fn ends_with_retry_hint(text: &str) -> bool {
    text.trim_end()
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("retry:"))
}

/// The `id` of the last SSE event that carried one.
pub(super) fn last_event_id(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .next_back()
}

/// A 2026-07-28 request through `http`: the version in `_meta` and the headers that mirror the
/// body.
pub(super) fn modern_request(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: i64,
    method: &str,
    mut params: Value,
) -> reqwest::RequestBuilder {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "drain-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let mut request = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", method);
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        request = request.header("mcp-name", name);
    }
    request.json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

/// Opens `subscriptions/listen` and waits for its acknowledgement; the task reads the rest.
pub(super) async fn listen(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> tokio::task::JoinHandle<String> {
    let response = modern_request(
        http,
        url,
        token,
        9,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("notifications/subscriptions/acknowledged") {
        assert!(Instant::now() < deadline, "no acknowledgement: {text:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), chunks.next())
            .await
            .expect("an acknowledgement within 10 s")
            .expect("the stream goes on")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = chunks.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
}
