#![allow(dead_code)]
//! A dataplane on a free port with snapshots the test builds, an authorization server stand-in
//! that only serves a JWKS with a test signing key (until the real AS is in main, final
//! acceptance tests run in tests/e2e against the real one), and real upstreams (mcp-fixture).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use gatehouse_core::canonical::tool_definition_hash;
use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::{EndpointId, OrgId, ServerId, ServiceTokenId, ToolId};
use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64};
use gatehouse_core::snapshot::*;
use gatehouse_dataplane::store::SnapshotStore;
use gatehouse_events::{BusMessage, EventConsumer, QuotaState};
use gatehouse_test_support::free_port;

const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The signing key of the test authorization server and the JWKS it publishes.
pub struct Issuer {
    pub url: String,
    pub key: EncodingKey,
    pub kid: String,
    pub public_jwk: Jwk,
    shutdown: CancellationToken,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Issuer {
    pub async fn start() -> Issuer {
        let mut seed = [0u8; 32];
        rand_fill(&mut seed);
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let kid = format!("test-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some(kid.clone());
        let set = web::Data::new(JwkSet {
            keys: vec![jwk.clone()],
        });
        let port = free_port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(set.clone())
                .route(
                    "/healthz",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route(
                    "/.well-known/jwks.json",
                    web::get().to(|set: web::Data<JwkSet>| async move { HttpResponse::Ok().json(&**set) }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", port))
        .unwrap()
        .run();
        let handle = server.handle();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(server);
        tokio::spawn(async move {
            stop.cancelled().await;
            handle.stop(false).await;
        });
        Issuer {
            url: format!("http://127.0.0.1:{port}"),
            key,
            kid,
            public_jwk: jwk,
            shutdown,
        }
    }

    /// A token as the authorization server issues it, with `claims` merged over the defaults.
    pub fn token(
        &self,
        endpoint: &EndpointSnapshot,
        org: OrgId,
        sub: &str,
        scope: &str,
        overrides: Value,
    ) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.url,
            "sub": sub,
            "aud": endpoint.resource_url,
            "client_id": "test-client",
            "scope": scope,
            "org_id": org.to_string(),
            "endpoint_id": endpoint.id.to_string(),
            "jti": uuid::Uuid::now_v7().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "sid": format!("family-{sub}"),
            "gh_kind": "user",
        });
        if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rand_fill(buf: &mut [u8]) {
    let id = uuid::Uuid::new_v4();
    let id2 = uuid::Uuid::new_v4();
    let bytes: Vec<u8> = id.as_bytes().iter().chain(id2.as_bytes()).copied().collect();
    buf.copy_from_slice(&bytes[..buf.len()]);
}

/// A running dataplane.
pub struct TestDataplane {
    pub url: String,
    pub cfg: Arc<Config>,
    pub store: SnapshotStore,
    pub events: tokio::sync::Mutex<EventConsumer>,
    pub quota: QuotaState,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestDataplane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Shared {
    pub encryption_keys: String,
    pub signing_secret: String,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            encryption_keys: format!("test-1={}", generate_key_b64()),
            signing_secret: generate_signing_secret_b64(),
        }
    }
}

impl TestDataplane {
    pub async fn start(issuer: &Issuer, shared: &Shared, extra: &[(&str, &str)]) -> TestDataplane {
        Self::start_at(issuer, shared, free_port(), extra).await
    }

    /// Starts on `port`; the public URL is fixed by `public_port` (two instances can share one).
    pub async fn start_at(
        issuer: &Issuer,
        shared: &Shared,
        port: u16,
        extra: &[(&str, &str)],
    ) -> TestDataplane {
        gatehouse_test_support::init();
        let url = format!("http://127.0.0.1:{port}");
        let mut overrides: Vec<(String, String)> = vec![
            ("mode".into(), "local".into()),
            ("dataplane.listen".into(), format!("127.0.0.1:{port}")),
            ("dataplane.public_url".into(), url.clone()),
            ("dataplane.control_api_url".into(), issuer.url.clone()),
            ("control_api.public_url".into(), issuer.url.clone()),
            ("dataplane.workers".into(), "2".into()),
            ("dataplane.upstream_timeout_ms".into(), "10000".into()),
            // The upstreams of these tests are plain-http servers on loopback.
            ("egress.allow_http".into(), "true".into()),
            ("egress.allow_private_networks".into(), "true".into()),
            ("secrets.encryption_keys".into(), shared.encryption_keys.clone()),
            ("secrets.signing_secret".into(), shared.signing_secret.clone()),
            ("shutdown.grace_period_secs".into(), "1".into()),
        ];
        for (k, v) in extra {
            overrides.push(((*k).into(), (*v).into()));
        }
        let cfg = Arc::new(
            Config::load(&Sources {
                files: vec![],
                overrides,
            })
            .expect("valid test config"),
        );
        let (events, consumer) = gatehouse_events::local_bus();
        let quota = QuotaState::local();
        let dataplane = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
            cfg: cfg.clone(),
            notifier: gatehouse_events::ChangeNotifier::local(),
            events,
            limiter: gatehouse_events::RateLimiter::local(),
            quota: quota.clone(),
        })
        .expect("build dataplane");
        let store = dataplane.store();
        let shutdown = CancellationToken::new();
        tokio::spawn(dataplane.run_until_stopped(shutdown.clone()));
        TestDataplane {
            url,
            cfg,
            store,
            events: tokio::sync::Mutex::new(consumer),
            quota,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    /// Installs snapshots and declares the configuration loaded.
    pub fn load(&self, snapshots: &[OrgSnapshot]) {
        for s in snapshots {
            self.store.install(s.clone());
        }
        self.store.mark_loaded();
    }

    pub fn endpoint_url(&self, org: &str, endpoint: &str) -> String {
        format!("{}/{org}/{endpoint}/mcp", self.url)
    }

    /// Every event emitted so far (waits briefly for stragglers).
    pub async fn drain_events(&self) -> Vec<BusMessage> {
        let mut consumer = self.events.lock().await;
        let mut all = Vec::new();
        loop {
            let batch = consumer
                .next_batch(1000, Duration::from_millis(200))
                .await
                .unwrap();
            if batch.messages.is_empty() {
                break;
            }
            all.extend(batch.messages);
        }
        all
    }
}

/// The fixture's current tool definitions (initialize + tools/list, 2025-11-25).
pub async fn upstream_tools(url: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let init = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .send()
        .await
        .unwrap();
    let session = init
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = init.bytes().await;
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = &session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}))
        .send()
        .await
        .unwrap();
    let messages = read_messages(resp).await.1;
    let reply = messages
        .into_iter()
        .find(|m| m.get("id") == Some(&json!(2)))
        .expect("tools/list answered");
    reply["result"]["tools"].as_array().unwrap().clone()
}

/// Parses a response body into JSON-RPC messages (JSON or SSE).
pub async fn read_messages(resp: reqwest::Response) -> (u16, Vec<Value>) {
    let status = resp.status().as_u16();
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    if sse {
        (status, sse_messages(&text))
    } else {
        (
            status,
            serde_json::from_str::<Value>(&text)
                .map(|v| vec![v])
                .unwrap_or_default(),
        )
    }
}

pub fn sse_messages(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|frame| {
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                .collect();
            let joined = data.join("\n");
            serde_json::from_str(&joined).ok()
        })
        .collect()
}

/// One upstream server of an endpoint.
pub struct ServerSpec {
    pub id: ServerId,
    pub slug: String,
    pub url: String,
    pub tools: Vec<Value>,
    pub auth: UpstreamAuth,
    pub send_caller_assertion: bool,
}

impl ServerSpec {
    pub async fn fixture(slug: &str, url: &str) -> ServerSpec {
        ServerSpec {
            id: ServerId::new(),
            slug: slug.into(),
            url: url.into(),
            tools: upstream_tools(url).await,
            auth: UpstreamAuth::None,
            send_caller_assertion: false,
        }
    }
}

/// Builds an org snapshot: one endpoint over `servers`, tools exposed under `<slug>__<name>` when
/// `namespaced`, and `scopes` (name → exposed tool names; `*` for all).
pub struct OrgSpec {
    pub org_id: OrgId,
    pub slug: String,
    pub version: i64,
    pub endpoints: Vec<EndpointSnapshot>,
    pub servers: Vec<ServerSnapshot>,
    pub revocations: Vec<Revocation>,
    pub service_tokens: Vec<ServiceTokenSnapshot>,
    pub log_tool_arguments: bool,
}

impl OrgSpec {
    pub fn new(slug: &str) -> Self {
        Self {
            org_id: OrgId::new(),
            slug: slug.into(),
            version: 1,
            endpoints: vec![],
            servers: vec![],
            revocations: vec![],
            service_tokens: vec![],
            log_tool_arguments: false,
        }
    }

    pub fn add_server(&mut self, spec: &ServerSpec, keyring_spec: &str) {
        let keyring = gatehouse_core::secrets::Keyring::parse(keyring_spec).unwrap();
        let seal = |plain: &str| {
            Sealed(keyring.seal(plain.as_bytes(), &server_credential_context(self.org_id, spec.id)))
        };
        let auth = match &spec.auth {
            UpstreamAuth::Bearer { token } => UpstreamAuth::Bearer {
                token: seal(std::str::from_utf8(&token.0).unwrap()),
            },
            UpstreamAuth::OauthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => UpstreamAuth::OauthClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: seal(std::str::from_utf8(&client_secret.0).unwrap()),
                scope: scope.clone(),
            },
            other => other.clone(),
        };
        self.servers.push(ServerSnapshot {
            id: spec.id,
            slug: spec.slug.clone(),
            url: spec.url.clone(),
            transport: UpstreamTransport::StreamableHttp,
            auth,
            send_caller_assertion: spec.send_caller_assertion,
        });
    }

    /// Adds an endpoint exposing `servers`' tools; returns its index.
    pub fn add_endpoint(
        &mut self,
        public_url: &str,
        slug: &str,
        servers: &[&ServerSpec],
        namespaced: bool,
        scopes: &[(&str, &[&str])],
    ) -> usize {
        let mut tools = Vec::new();
        for server in servers {
            for definition in &server.tools {
                let name = definition["name"].as_str().unwrap();
                let exposed = if namespaced {
                    namespaced_tool_name(&server.slug, name)
                } else {
                    name.to_owned()
                };
                tools.push(EndpointTool {
                    tool_id: ToolId::new(),
                    exposed_name: exposed,
                    target: ToolTarget::Upstream {
                        server_id: server.id,
                        upstream_name: name.to_owned(),
                    },
                    approved_definition: definition.clone(),
                    approved_hash: tool_definition_hash(definition),
                });
            }
        }
        // Kept in the upstreams' order (deterministic); the conformance suite calls the first
        // listed tool without arguments, and the fixture lists such a tool first.
        let scopes = scopes
            .iter()
            .map(|(name, grants)| ScopeSnapshot {
                name: (*name).into(),
                tool_ids: tools
                    .iter()
                    .filter(|t| grants.contains(&"*") || grants.contains(&t.exposed_name.as_str()))
                    .map(|t| t.tool_id)
                    .collect(),
            })
            .collect();
        self.endpoints.push(EndpointSnapshot {
            id: EndpointId::new(),
            slug: slug.into(),
            name: format!("Endpoint {slug}"),
            resource_url: format!("{}/{}/{slug}/mcp", public_url.trim_end_matches('/'), self.slug),
            rate_limits: RateLimits::default(),
            tools,
            scopes,
            prompts: Some(CapabilityGrant { scope: None }),
            resources: Some(CapabilityGrant { scope: None }),
        });
        self.endpoints.len() - 1
    }

    pub fn add_service_token(&mut self, endpoint: usize, scopes: &[&str]) -> String {
        let secret = gatehouse_core::secrets::random_token(32);
        let token = format!("ghs_{}_{secret}", self.org_id.as_uuid().simple());
        self.service_tokens.push(ServiceTokenSnapshot {
            id: ServiceTokenId::new(),
            endpoint_id: self.endpoints[endpoint].id,
            token_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())),
            name: "ci".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
        });
        token
    }

    pub fn snapshot(&self) -> OrgSnapshot {
        OrgSnapshot {
            org_id: self.org_id,
            slug: self.slug.clone(),
            version: self.version,
            log_tool_arguments: self.log_tool_arguments,
            hard_limit_calls: None,
            endpoints: self.endpoints.clone(),
            servers: self.servers.clone(),
            backends: vec![],
            revocations: self.revocations.clone(),
            service_tokens: self.service_tokens.clone(),
        }
    }
}

/// A minimal MCP client speaking raw HTTP, so tests control every header.
#[derive(Clone)]
pub struct RawClient {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub version: String,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub messages: Vec<Value>,
}

impl Answer {
    /// The response message to request `id`.
    pub fn response(&self, id: i64) -> &Value {
        self.messages
            .iter()
            .find(|m| m.get("id") == Some(&json!(id)) && m.get("method").is_none())
            .unwrap_or_else(|| {
                panic!(
                    "no response to {id} in {:?} (status {})",
                    self.messages, self.status
                )
            })
    }
}

impl RawClient {
    pub fn new(url: &str, token: Option<String>, version: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            token,
            session: None,
            version: version.into(),
        }
    }

    pub fn modern(&self) -> bool {
        self.version.as_str() >= "2026-07-28"
    }

    /// A request body; modern requests carry the version in `_meta`.
    pub fn request(&self, id: i64, method: &str, mut params: Value) -> Value {
        if self.modern() {
            if !params.is_object() {
                params = json!({});
            }
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.version,
                "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    pub fn builder(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            b = b.header("mcp-session-id", s);
        }
        if self.modern() || self.session.is_some() {
            b = b.header("mcp-protocol-version", &self.version);
        }
        if self.modern()
            && let Some(method) = body.get("method").and_then(Value::as_str)
        {
            b = b.header("mcp-method", method);
            let name = body["params"]
                .get("name")
                .or(body["params"].get("uri"))
                .and_then(Value::as_str);
            if let Some(name) = name
                && matches!(method, "tools/call" | "prompts/get" | "resources/read")
            {
                b = b.header("mcp-name", name);
            }
        }
        b.body(serde_json::to_vec(body).unwrap())
    }

    pub async fn send(&self, body: &Value) -> Answer {
        let resp = self.builder(body).send().await.unwrap();
        let headers = resp.headers().clone();
        let (status, messages) = read_messages(resp).await;
        Answer {
            status,
            headers,
            messages,
        }
    }

    pub async fn call(&self, id: i64, method: &str, params: Value) -> Answer {
        self.send(&self.request(id, method, params)).await
    }

    /// initialize + notifications/initialized (legacy revisions).
    pub async fn initialize(&mut self) -> Value {
        let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": self.version,
            "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
            "clientInfo": {"name": "raw-test", "version": "1"}}});
        let answer = self.send(&body).await;
        assert_eq!(answer.status, 200, "initialize: {:?}", answer.messages);
        self.session = Some(answer.headers["mcp-session-id"].to_str().unwrap().to_owned());
        let note = self
            .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(note.status, 202);
        answer.response(0).clone()
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let answer = self.call(900, "tools/list", json!({})).await;
        assert_eq!(answer.status, 200, "tools/list: {:?}", answer.messages);
        let mut names: Vec<String> = answer.response(900)["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }
}

/// A fixture + dataplane + org with one endpoint exposing the fixture's tools un-namespaced and a
/// scope `all` granting everything.
pub struct World {
    pub issuer: Issuer,
    pub shared: Shared,
    pub dataplane: TestDataplane,
    pub fixture: mcp_fixture::FixtureHandle,
    pub server: ServerSpec,
    pub org: OrgSpec,
}

impl World {
    pub async fn start(
        options: mcp_fixture::FixtureOptions,
        scopes: &[(&str, &[&str])],
        extra: &[(&str, &str)],
    ) -> World {
        let issuer = Issuer::start().await;
        let shared = Shared::new();
        let dataplane = TestDataplane::start(&issuer, &shared, extra).await;
        let fixture = mcp_fixture::spawn_fixture(options).await.unwrap();
        let server = ServerSpec::fixture("fx", fixture.url()).await;
        let mut org = OrgSpec::new(&format!(
            "org-{}",
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        ));
        org.add_server(&server, &shared.encryption_keys);
        org.add_endpoint(&dataplane.url, "main", &[&server], false, scopes);
        dataplane.load(&[org.snapshot()]);
        World {
            issuer,
            shared,
            dataplane,
            fixture,
            server,
            org,
        }
    }

    pub fn endpoint(&self) -> &EndpointSnapshot {
        &self.org.endpoints[0]
    }

    pub fn url(&self) -> String {
        self.dataplane.endpoint_url(&self.org.slug, "main")
    }

    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.issuer
            .token(self.endpoint(), self.org.org_id, sub, scope, json!({}))
    }

    pub fn client(&self, sub: &str, scope: &str, version: &str) -> RawClient {
        RawClient::new(&self.url(), Some(self.token(sub, scope)), version)
    }

    /// Publishes a changed snapshot (next version).
    pub fn republish(&mut self) {
        self.org.version += 1;
        self.dataplane.store.install(self.org.snapshot());
    }
}
