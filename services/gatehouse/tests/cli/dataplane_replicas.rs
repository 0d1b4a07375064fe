//! Two `gatehouse dataplane` processes behind no load balancer: the public name resolves to both
//! (as DNS round robin would), each process listening on the same port of its own loopback
//! address. A session started on one continues on the other, stays bound to its subject there,
//! and a DELETE on either ends it on both. Configuration comes from a real `gatehouse control-api`
//! process over the internal snapshot API and Redis notifications. The dataplanes hold only the
//! dataplane secret (no platform key), and still send the server's sealed credential upstream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::secrets::{DerivedKeys, generate_key_b64, generate_signing_secret_b64, random_token};
use gatehouse_test_support::console::{ConsoleClient, signed_in_owner};
use gatehouse_test_support::{TestDb, free_port};

use crate::{ServiceProcess, gatehouse};

/// The name both dataplanes serve under.
pub(crate) const PUBLIC_HOST: &str = "mcp.replicas.test";

/// Settings every process of this platform shares.
pub(crate) struct Shared {
    pub(crate) db_url: String,
    pub(crate) redis: String,
    pub(crate) namespace: String,
    pub(crate) encryption_keys: String,
    pub(crate) signing_secret: String,
    pub(crate) dataplane_secret: String,
    pub(crate) control_api: String,

    /// The control API's internal listener, where dataplanes read snapshots and the JWKS.
    pub(crate) control_api_internal: String,
    pub(crate) public_url: String,
    pub(crate) dir: PathBuf,
}

impl Shared {
    /// A platform on `db_url` with fresh secrets and Redis namespace (`test:{tag}:…`): the
    /// control API on `api_port` (internal listener on `internal_port`), dataplanes serving
    /// `PUBLIC_HOST` on `dp_port`, logs under `dir`.
    pub(crate) fn new(
        db_url: &str,
        tag: &str,
        api_port: u16,
        internal_port: u16,
        dp_port: u16,
        dir: PathBuf,
    ) -> Self {
        Shared {
            db_url: db_url.to_owned(),
            redis: gatehouse_test_support::redis_url(),
            namespace: format!("test:{tag}:{}:", random_token(8)),
            encryption_keys: format!("k1={}", generate_key_b64()),
            signing_secret: generate_signing_secret_b64(),
            dataplane_secret: generate_signing_secret_b64(),
            control_api: format!("http://127.0.0.1:{api_port}"),
            control_api_internal: format!("http://127.0.0.1:{internal_port}"),
            public_url: format!("http://{PUBLIC_HOST}:{dp_port}"),
            dir,
        }
    }

    /// Starts `gatehouse {subcommand}`; `name` labels its log files.
    pub(crate) fn spawn(
        &self,
        name: &'static str,
        subcommand: &str,
        extra: &[(&str, String)],
    ) -> ServiceProcess {
        let log = self.dir.join(format!("{name}.log"));
        let mut cmd = gatehouse();
        cmd.env("GATEHOUSE_MODE", "local")
            .env("GATEHOUSE_DATABASE__URL", &self.db_url)
            .env("GATEHOUSE_REDIS__URL", &self.redis)
            .env("GATEHOUSE_REDIS__KEY_PREFIX", &self.namespace)
            .env(
                "GATEHOUSE_REDIS__EVENTS_STREAM",
                format!("{}events", self.namespace),
            )
            .env("GATEHOUSE_SECRETS__DATAPLANE_SECRET", &self.dataplane_secret)
            .env("GATEHOUSE_CONTROL_API__PUBLIC_URL", &self.control_api)
            .env("GATEHOUSE_DATAPLANE__CONTROL_API_URL", &self.control_api_internal)
            .env("GATEHOUSE_DATAPLANE__PUBLIC_URL", &self.public_url)
            .env("GATEHOUSE_EGRESS__ALLOW_HTTP", "true")
            .env("GATEHOUSE_EGRESS__ALLOW_PRIVATE_NETWORKS", "true")
            .env("GATEHOUSE_CONTROL_API__RESYNC_INTERVAL_SECS", "0")
            .env("GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS", "2")
            .env("GATEHOUSE_MAIL__FILE_DIR", self.dir.join("mail"))
            .env("GATEHOUSE_TELEMETRY__LOG_FORMAT", "pretty");
        // The platform's keys go to the control API only; a dataplane refuses them.
        if subcommand != "dataplane" {
            cmd.env("GATEHOUSE_SECRETS__ENCRYPTION_KEYS", &self.encryption_keys)
                .env("GATEHOUSE_SECRETS__SIGNING_SECRET", &self.signing_secret);
        }
        for (key, value) in extra {
            cmd.env(key, value);
        }
        let child = cmd
            .arg(subcommand)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .expect("start gatehouse");
        ServiceProcess { name, child, log }
    }

    pub(crate) fn spawn_dataplane(&self, name: &'static str, listen: SocketAddr) -> ServiceProcess {
        self.spawn(
            name,
            "dataplane",
            &[
                ("GATEHOUSE_DATAPLANE__LISTEN", listen.to_string()),
                ("GATEHOUSE_DATAPLANE__INTERNAL_LISTEN", "127.0.0.1:0".to_owned()),
                (
                    "GATEHOUSE_DATAPLANE__SPOOL_DIR",
                    self.dir.join(format!("{name}-spool")).display().to_string(),
                ),
            ],
        )
    }
}

/// A client whose resolver sends the public name to one replica's address.
pub(crate) fn client_for(replica: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve(PUBLIC_HOST, replica)
        .build()
        .unwrap()
}

pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let is_sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let message = if is_sse {
        // The answer is the last `data:` line carrying a JSON-RPC response.
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .rfind(|m| m.get("id").is_some())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, session, message)
}

pub(crate) fn loopback_pair_port() -> u16 {
    // A port free on 127.0.0.1 that is also free on 127.0.0.2.
    loop {
        let port = free_port();
        if std::net::TcpListener::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_one_dataplane_process_continues_on_another() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gatehouse-replicas-{}", random_token(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let api_port = free_port();
    let internal_port = free_port();
    let dp_port = loopback_pair_port();
    let shared = Shared::new(
        &db.service_url,
        "replicas",
        api_port,
        internal_port,
        dp_port,
        dir.clone(),
    );
    let http = reqwest::Client::new();

    // The org's owner, signed in.
    let owner = signed_in_owner(&db.db, "owner@replicas.test", "replicas").await;

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
    let keys = DerivedKeys::derive(&shared.signing_secret).unwrap();
    let admin = ConsoleClient {
        http: http.clone(),
        base: shared.control_api.clone(),
        cookie: format!("{}={}", session_cookie_name(true), owner.session_token),
        csrf: (CSRF_HEADER, csrf_token(&keys.cookie, &owner.session_token)),
    };

    // A server on the fixture, one approved tool, a scope granting it, an endpoint, and two
    // service tokens for two different subjects.
    let server_id = admin
        .provision(
            "replicas",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url(),
                   "auth": {"kind": "bearer", "token": "sealed-upstream-credential"}}),
            &[("fx:text", &["test_simple_text"])],
        )
        .await;
    let endpoint = admin
        .create_endpoint("replicas", "main", "Main", &server_id)
        .await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for name in ["agent-one", "agent-two"] {
        let created = admin
            .send(
                reqwest::Method::POST,
                "/api/v1/orgs/replicas/service-tokens",
                Some(json!({"name": name, "endpoint_id": endpoint_id, "scopes": ["fx:text"]})),
            )
            .await;
        tokens.push(created["secret"].as_str().unwrap().to_owned());
    }

    // Two dataplane processes, started after the configuration exists (cold start from the
    // snapshot API), on the same port of two loopback addresses.
    let addr_a: SocketAddr = format!("127.0.0.1:{dp_port}").parse().unwrap();
    let addr_b: SocketAddr = format!("127.0.0.2:{dp_port}").parse().unwrap();
    let mut dataplane_a = shared.spawn_dataplane("dataplane-a", addr_a);
    let mut dataplane_b = shared.spawn_dataplane("dataplane-b", addr_b);
    dataplane_a
        .wait_ready(&http, &format!("http://{addr_a}/readyz"))
        .await;
    dataplane_b
        .wait_ready(&http, &format!("http://{addr_b}/readyz"))
        .await;
    let (via_a, via_b) = (client_for(addr_a), client_for(addr_b));
    let url = format!("{}/replicas/main/mcp", shared.public_url);

    // initialize on A.
    let (status, session, answer) = post(
        &via_a,
        &url,
        &tokens[0],
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "replica-test", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["protocolVersion"], "2025-11-25", "{answer}");
    let session = session.expect("initialize mints a session id");
    let (status, _, _) = post(
        &via_b,
        &url,
        &tokens[0],
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);

    // The session continues on B: list and call.
    let (status, _, listed) = post(
        &via_b,
        &url,
        &tokens[0],
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["fx__test_simple_text"], "namespaced by server");
    let (status, _, called) = post(
        &via_b,
        &url,
        &tokens[0],
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "fx__test_simple_text", "arguments": {}}}),
    )
    .await;
    assert_eq!(status, 200, "{called}");
    assert!(called["result"]["content"].is_array(), "{called}");
    let calls_after_b = fixture.tool_calls();
    assert_eq!(calls_after_b, 1, "the call reached the upstream once");
    // The dataplane opened the credential sealed in its snapshot (with its own secret's key).
    assert!(
        fixture
            .headers_snapshot()
            .iter()
            .flatten()
            .any(|(k, v)| k == "authorization" && v == "Bearer sealed-upstream-credential"),
        "the upstream got the server's credential"
    );

    // Another subject presenting the session id: not found, on either replica.
    for via in [&via_a, &via_b] {
        let (status, _, refused) = post(
            via,
            &url,
            &tokens[1],
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}}),
        )
        .await;
        assert_eq!(status, 404, "{refused}");
    }

    // DELETE on B ends the session on A too, for requests A answers itself.
    let deleted = via_b
        .delete(&url)
        .bearer_auth(&tokens[0])
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(deleted.status().as_u16(), 200 | 204),
        "{}",
        deleted.status()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, answer) = post(
            &via_a,
            &url,
            &tokens[0],
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}}),
        )
        .await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the session still answers on A 5 s after DELETE on B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fixture.tool_calls(), calls_after_b, "nothing more was called");

    drop(dataplane_a);
    drop(dataplane_b);
    drop(control);
    remove_dir(&dir);
}
