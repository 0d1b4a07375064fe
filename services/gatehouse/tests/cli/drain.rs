//! Draining real processes on SIGTERM (docs/operations.md, "Shutdown"): open notification streams
//! do not hold a `gatehouse dataplane` or a `gatehouse up`; a slow call in flight finishes and the
//! process stops right after it, refusing new requests meanwhile with a retryable answer; clients
//! of both revisions carry on at a second replica; a rolling restart of two dataplanes under load
//! fails no call and loses no event.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::secrets::{DerivedKeys, generate_key_b64, generate_signing_secret_b64, random_token};
use gatehouse_test_support::console::{ConsoleClient, signed_in_owner};
use gatehouse_test_support::{TestDb, free_port};

use crate::ServiceProcess;
use crate::dataplane_replicas::{PUBLIC_HOST, Shared, client_for, loopback_pair_port, post, remove_dir};

/// The grace period every process here gets: far longer than any stop the tests accept.
const GRACE_SECS: &str = "30";
const LEGACY: &str = "2025-11-25";
const MODERN: &str = "2026-07-28";

/// A control API process with one org whose endpoint `main` reaches an MCP fixture, and a
/// service token for it.
struct Platform {
    db: TestDb,
    fixture: mcp_fixture::FixtureHandle,
    shared: Shared,
    _control: ServiceProcess,
    token: String,
    org_id: gatehouse_core::ids::OrgId,
    dp_port: u16,
}

/// Settings of every dataplane here: a long grace period, room for 100 streams of one caller.
fn dataplane_env(listen: SocketAddr, shared: &Shared, name: &str) -> Vec<(&'static str, String)> {
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
    async fn start(org: &str) -> Self {
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
        let shared = Shared {
            db_url: db.service_url.clone(),
            redis: gatehouse_test_support::redis_url(),
            namespace: format!("test:drain:{}:", random_token(8)),
            encryption_keys: format!("k1={}", generate_key_b64()),
            signing_secret: generate_signing_secret_b64(),
            dataplane_secret: generate_signing_secret_b64(),
            control_api: format!("http://127.0.0.1:{api_port}"),
            control_api_internal: format!("http://127.0.0.1:{internal_port}"),
            public_url: format!("http://{PUBLIC_HOST}:{dp_port}"),
            dir,
        };
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
    fn addr(&self, n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], self.dp_port))
    }

    async fn dataplane(&self, name: &'static str, n: u8) -> ServiceProcess {
        self.dataplane_with(name, n, &[]).await
    }

    /// [`Platform::dataplane`] with settings of its own.
    async fn dataplane_with(
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

    fn url(&self) -> String {
        format!("{}/{}/main/mcp", self.shared.public_url, "drain")
    }
}

/// A server on the fixture with its plain and slow tools approved, an endpoint `main`, and a
/// service token granted both; returns the token's secret.
async fn provision(
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
async fn session(http: &reqwest::Client, url: &str, token: &str) -> String {
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
async fn open_get_stream(
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
fn read_to_end(response: reqwest::Response) -> tokio::task::JoinHandle<String> {
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
async fn hundred_streams(
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

fn sigterm(process: &ServiceProcess) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(process.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Waits for the process to exit (at most `within`), returning its status and when it exited.
async fn exited(process: &mut ServiceProcess, within: Duration) -> (ExitStatus, Instant) {
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
fn ends_with_retry_hint(text: &str) -> bool {
    text.trim_end()
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("retry:"))
}

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

/// The `id` of the last SSE event that carried one.
fn last_event_id(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .next_back()
}

/// A 2026-07-28 request through `http`: the version in `_meta` and the headers that mirror the
/// body.
fn modern_request(
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
async fn listen(http: &reqwest::Client, url: &str, token: &str) -> tokio::task::JoinHandle<String> {
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

/// The client side of a load balancer over two replicas: round robin over the replicas in
/// rotation; a refusal while draining (503) or a refused connection is retried on the other.
struct Balancer {
    replicas: [(reqwest::Client, AtomicBool); 2],
    next: AtomicU64,
    ids: AtomicU64,
}

/// What became of the calls of the load.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    retried: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
}

impl Balancer {
    /// One `tools/call` of `tool`, retried until answered; `Err` for a failure the client cannot
    /// retry (it cannot know whether the call ran).
    async fn call(
        &self,
        url: &str,
        token: &str,
        session: &str,
        tool: &str,
        arguments: Value,
        tally: &Tally,
    ) -> Result<(), String> {
        // Ids are unique in the session, which every client shares.
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": arguments}});
        for _ in 0..100 {
            let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
            let (http, _) = [n % 2, (n + 1) % 2]
                .into_iter()
                .map(|i| &self.replicas[i])
                .find(|(_, in_rotation)| in_rotation.load(Ordering::SeqCst))
                .expect("a replica in rotation");
            let sent = http
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", LEGACY)
                .header("mcp-session-id", session)
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_connect() => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(format!("request failed: {e:?}")),
            };
            match response.status().as_u16() {
                200 => {
                    let text = response.text().await.map_err(|e| format!("answer broke: {e}"))?;
                    if !text.contains("\"content\"") || text.contains("\"isError\":true") {
                        return Err(format!("not a result: {text}"));
                    }
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                503 if response.headers().contains_key("retry-after") => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return Err(format!("{other}: {:?}", response.text().await)),
            }
        }
        Err("still refused after 100 tries".to_owned())
    }
}

/// Takes replica `i` out of rotation (as Kubernetes removes a terminating pod's endpoint while
/// `preStop` waits), drains it with SIGTERM, starts it again and puts it back once ready.
async fn restart(platform: &Platform, balancer: &Balancer, process: &mut ServiceProcess, i: usize) {
    balancer.replicas[i].1.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(process);
    let (status, _) = exited(process, Duration::from_secs(10)).await;
    assert!(status.success(), "{} exit status {status}", process.name);
    *process = platform.dataplane(process.name, i as u8 + 1).await;
    balancer.replicas[i].1.store(true, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_call_and_loses_no_event() {
    let platform = Arc::new(Platform::start("drain").await);
    let worker_port = free_port();
    let mut worker = platform.shared.spawn(
        "usage-worker",
        "usage-worker",
        &[(
            "GATEHOUSE_USAGE_WORKER__LISTEN",
            format!("127.0.0.1:{worker_port}"),
        )],
    );
    worker
        .wait_ready(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{worker_port}/readyz"),
        )
        .await;
    let mut a = platform.dataplane("dataplane-a", 1).await;
    let mut b = platform.dataplane("dataplane-b", 2).await;
    let balancer = Arc::new(Balancer {
        replicas: [
            (client_for(platform.addr(1)), AtomicBool::new(true)),
            (client_for(platform.addr(2)), AtomicBool::new(true)),
        ],
        next: AtomicU64::new(0),
        ids: AtomicU64::new(10),
    });
    let url = platform.url();
    let session = session(&balancer.replicas[0].0, &url, &platform.token).await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));

    // A fixed load: 4 clients calling one after another, every third call a slow one (0.5 s),
    // so that calls are in flight whenever a replica drains.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (platform, balancer, tally, stop, url, session) = (
                platform.clone(),
                balancer.clone(),
                tally.clone(),
                stop.clone(),
                url.clone(),
                session.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let (tool, arguments) = if (n + c).is_multiple_of(3) {
                        ("fx__test_slow_cancellable", json!({"seconds": 0.5}))
                    } else {
                        ("fx__test_simple_text", json!({}))
                    };
                    let outcome = balancer
                        .call(&url, &platform.token, &session, tool, arguments, &tally)
                        .await;
                    if let Err(failure) = outcome {
                        tally.failed.lock().unwrap().push(failure);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    restart(&platform, &balancer, &mut a, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    restart(&platform, &balancer, &mut b, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let failed = tally.failed.lock().unwrap().clone();
    eprintln!(
        "rolling restart: {} calls answered, {} refusals retried, {} failed",
        tally.answered.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        failed.len()
    );
    assert!(failed.is_empty(), "calls failed beyond retry: {failed:?}");
    let answered = tally.answered.load(Ordering::Relaxed);
    assert!(answered > 20, "the load ran ({answered} calls)");
    assert_eq!(
        platform.fixture.tool_calls(),
        answered,
        "each call reached the upstream once"
    );
    // Every call's event is stored (the usage worker reads them from Redis).
    let admin = sqlx::PgPool::connect(&platform.db.admin_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE org_id = $1 AND tool IS NOT NULL")
                .bind(platform.org_id.as_uuid())
                .fetch_one(&admin)
                .await
                .unwrap();
        if stored as u64 == answered {
            break;
        }
        assert!(
            stored as u64 <= answered,
            "more call events ({stored}) than calls ({answered})"
        );
        assert!(
            Instant::now() < deadline,
            "{stored} call events stored for {answered} calls"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin.close().await;
    drop((a, b, worker));
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
