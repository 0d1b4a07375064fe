//! The dataplane as benchmarked in docs/benchmarks.md: a release dataplane in its own process with
//! token verification, authorization, rate limits (checked, not hit) and events (emitted and
//! drained in process) all on, in front of `echo_upstream`. It prints the endpoint URL, a valid
//! access token and its pid, then serves until killed. With `--jwt-micro`, it measures JWT
//! verification instead and exits. With `--tenants N --tools-per-tenant M`, N other orgs (one
//! server, one endpoint, M approved tools, two scopes and two service tokens each) are loaded
//! beside the benchmark's own first, the way the loader installs them, and the load is measured
//! (`scale_*` lines; see `bench/ab.sh`). With `--redis URL`, events, rate limits, quota state
//! and change notifications go through Redis as in a production deployment (`bench/ab.sh`).
//! With `--endpoint SLUG=URL` (repeatable), a server and an endpoint `SLUG` in front of the MCP
//! server at URL are added, exposing every tool that server lists, and their URL and token are
//! printed too (`url_SLUG=`, `token_SLUG=`; `bench/bridging.sh`).
//!
//! `cargo run --release -p gatehouse-dataplane --example bench_dataplane -- --upstream http://127.0.0.1:18090/mcp --listen 127.0.0.1:18091`

/// The allocator the `gatehouse` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use gatehouse_core::canonical::tool_definition_hash;
use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::{EndpointId, OrgId, ServerId, ToolId};
use gatehouse_core::secrets::{DataplaneKeys, generate_signing_secret_b64};
use gatehouse_core::snapshot::*;
use gatehouse_core::upstream::UpstreamTransport;

const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// Every value of a repeatable option.
fn args(name: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

/// The tools an MCP server lists, read as a 2025-11-25 client when it opens a session and as a
/// 2026-07-28 client when it does not (a stateless-only server refuses `initialize`).
async fn upstream_tools(url: &str) -> anyhow::Result<Vec<Value>> {
    let http = reqwest::Client::new();
    let init = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}}),
        )
        .send()
        .await?;
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    init.bytes().await?;
    let mut request = http
        .post(url)
        .header("accept", "application/json, text/event-stream");
    let mut params = json!({});
    match &session {
        Some(session) => {
            request = request
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-session-id", session);
        }
        None => {
            request = request
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list");
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
    }
    let body = request
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": params}))
        .send()
        .await?
        .text()
        .await?;
    // A JSON answer, or the SSE event carrying it (after a priming event with no data).
    let answer: Value = std::iter::once(body.as_str())
        .chain(body.lines().filter_map(|line| line.strip_prefix("data:")))
        .find_map(|json| serde_json::from_str::<Value>(json.trim()).ok())
        .ok_or_else(|| anyhow::anyhow!("{url} answered tools/list with {body}"))?;
    if let Some(session) = &session {
        http.delete(url)
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", session)
            .send()
            .await?;
    }
    answer["result"]["tools"]
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{url} listed no tools: {answer}"))
}

/// An endpoint `slug` exposing `tools` of `server` under their own names, all granted by the
/// `bench` scope, with limits high enough never to refuse.
/// An upstream of the benchmark's org, on loopback, with no credential.
fn bench_server(id: ServerId, slug: &str, url: &str) -> ServerSnapshot {
    ServerSnapshot {
        id,
        slug: slug.into(),
        url: url.into(),
        transport: UpstreamTransport::StreamableHttp,
        auth: UpstreamAuth::None,
        send_caller_assertion: false,
    }
}

fn bench_endpoint(slug: &str, public_url: &str, server_id: ServerId, tools: Vec<Value>) -> EndpointSnapshot {
    let limit = Limit {
        per_minute: 100_000_000,
        burst: 1_000_000,
    };
    let tools: Vec<EndpointTool> = tools
        .into_iter()
        .map(|tool| {
            let name = tool["name"].as_str().unwrap_or_default().to_owned();
            EndpointTool {
                tool_id: ToolId::new(),
                exposed_name: name.clone(),
                target: ToolTarget::Upstream {
                    server_id,
                    upstream_name: name,
                },
                approved_hash: tool_definition_hash(&tool),
                approved_definition: tool,
            }
        })
        .collect();
    EndpointSnapshot {
        id: EndpointId::new(),
        slug: slug.into(),
        name: slug.into(),
        resource_url: format!("{public_url}/bench/{slug}/mcp"),
        rate_limits: RateLimits {
            per_org: Some(limit),
            per_subject: Some(limit),
            per_tool: tools.iter().map(|t| (t.exposed_name.clone(), limit)).collect(),
        },
        scopes: vec![ScopeSnapshot {
            name: "bench".into(),
            tool_ids: tools.iter().map(|t| t.tool_id).collect(),
            min_role: Some(gatehouse_core::role::Role::Viewer),
        }],
        tools,
        prompts: None,
        resources: None,
        extra_methods: vec![],
        publish_scopes: false,
    }
}

fn echo_tool() -> Value {
    json!({
        "name": "echo",
        "description": "Echoes its text argument",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gatehouse_core::install_crypto_provider();
    let upstream = arg("--upstream", "http://127.0.0.1:18090/mcp");
    let listen = arg("--listen", "127.0.0.1:18091");
    let workers = arg("--workers", "1");
    let jwks_port = arg("--jwks-port", "18092");
    let tenants: usize = arg("--tenants", "0").parse()?;
    let tools_per_tenant: usize = arg("--tools-per-tenant", "10").parse()?;
    let issuer = format!("http://127.0.0.1:{jwks_port}");

    // The signing key of a stand-in authorization server, published as JWKS.
    let seed: [u8; 32] = *uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect::<Vec<_>>()
        .first_chunk()
        .unwrap();
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
    jwk.common.key_id = Some("bench".into());
    let set = web::Data::new(JwkSet { keys: vec![jwk] });
    let jwks = HttpServer::new(move || {
        App::new()
            .app_data(set.clone())
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/.well-known/jwks.json",
                web::get().to(|s: web::Data<JwkSet>| async move { HttpResponse::Ok().json(&**s) }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", jwks_port.parse::<u16>()?))?
    .run();
    tokio::spawn(jwks);

    let public_url = format!("http://{listen}");
    let dataplane_secret = generate_signing_secret_b64();
    let overrides: Vec<(String, String)> = vec![
        ("mode".into(), "local".into()),
        ("dataplane.listen".into(), listen.clone()),
        ("dataplane.internal_listen".into(), "127.0.0.1:0".into()),
        ("dataplane.public_url".into(), public_url.clone()),
        ("dataplane.control_api_url".into(), issuer.clone()),
        ("control_api.public_url".into(), issuer.clone()),
        ("dataplane.workers".into(), workers),
        ("egress.allow_http".into(), "true".into()),
        ("egress.allow_private_networks".into(), "true".into()),
        ("secrets.dataplane_secret".into(), dataplane_secret.clone()),
    ];
    let cfg = Arc::new(Config::load(&Sources {
        files: vec![],
        overrides: overrides.clone(),
    })?);
    // Logs, traces and metrics set up as the `gatehouse` binary sets them up (JSON logs at
    // `info`, the Prometheus recorder): what they cost per request is part of what is measured.
    let _telemetry = gatehouse_core::telemetry::init(&cfg.telemetry, "dataplane")?;
    let redis = arg("--redis", "");
    let drained = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (events, limiter, quota, notifier, _bus_handle) = if redis.is_empty() {
        let (events, mut consumer) = gatehouse_events::local_bus();
        let counter = drained.clone();
        tokio::spawn(async move {
            // Drained as the production publisher does: a batch, then a short linger so that
            // events gather without a cross-thread wake-up per call.
            while let Ok(batch) = consumer.next_batch(10_000, Duration::from_secs(3600)).await {
                counter.fetch_add(batch.messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        (
            events,
            gatehouse_events::RateLimiter::local(),
            gatehouse_events::QuotaState::local(),
            gatehouse_events::ChangeNotifier::local(),
            None,
        )
    } else {
        // The production wiring with Redis: events published to the Redis stream, rate limits
        // shared through Redis, quota state and change notifications from Redis.
        let mut overrides = overrides.clone();
        overrides.push(("redis.url".into(), redis.clone()));
        overrides.push((
            "redis.key_prefix".into(),
            format!("bench-{}:", std::process::id()),
        ));
        let spool = std::env::temp_dir().join(format!("bench-spool-{}", std::process::id()));
        overrides.push(("dataplane.spool_dir".into(), spool.display().to_string()));
        let cfg = Config::load(&Sources {
            files: vec![],
            overrides,
        })?;
        let bus = gatehouse_events::Bus::from_config(&cfg, CancellationToken::new()).await?;
        (
            bus.publisher,
            bus.limiter,
            bus.quota,
            bus.notifier,
            Some(bus.handle),
        )
    };
    let dataplane = gatehouse_dataplane::Dataplane::build(gatehouse_dataplane::Dependencies {
        cfg: cfg.clone(),
        notifier,
        events,
        limiter,
        quota,
    })?;
    let store = dataplane.store();

    let server_id = ServerId::new();
    let endpoint = bench_endpoint("echo", &public_url, server_id, vec![echo_tool()]);
    let mut endpoints = vec![endpoint.clone()];
    let mut servers = vec![bench_server(server_id, "echo", &upstream)];
    for spec in args("--endpoint") {
        let (slug, url) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--endpoint takes SLUG=URL, not {spec}"))?;
        let id = ServerId::new();
        endpoints.push(bench_endpoint(slug, &public_url, id, upstream_tools(url).await?));
        servers.push(bench_server(id, slug, url));
    }
    let org = OrgId::new();
    let snapshot = OrgSnapshot {
        org_id: org,
        slug: "bench".into(),
        version: 1,
        log_tool_arguments: false,
        hard_limit_calls: None,
        suspended: false,
        endpoints: endpoints.clone(),
        servers,
        backends: vec![],
        revocations: vec![],
        service_tokens: vec![],
        callers: vec![],
    };
    if tenants > 0 {
        // Sealed as the control API seals snapshots: with the dataplane secret's snapshot key.
        let keyring = DataplaneKeys::derive(&dataplane_secret)
            .map_err(anyhow::Error::msg)?
            .snapshot;
        load_tenants(&store, &keyring, tenants, tools_per_tenant);
    }
    store.install(snapshot);
    store.mark_loaded();

    let token_for = |endpoint: &EndpointSnapshot, jti: &str| {
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some("bench".into());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": issuer, "sub": "bench-user", "aud": endpoint.resource_url, "client_id": "bench",
            "scope": "bench", "org_id": org.to_string(), "endpoint_id": endpoint.id.to_string(), "jti": jti,
            "iat": now, "nbf": now, "exp": now + 3600, "gh_kind": "user"}),
            &key,
        )
        .unwrap()
    };
    let token = |jti: &str| token_for(&endpoint, jti);

    let shutdown = CancellationToken::new();
    tokio::spawn(dataplane.run_until_stopped(shutdown.clone()));

    if std::env::args().any(|a| a == "--jwt-micro") {
        // Verification of distinct tokens (every one a cache miss), through the verifier the
        // dataplane uses; then the cached path.
        let verifier = gatehouse_dataplane::auth::TokenVerifier::new(
            issuer.clone(),
            format!("{issuer}/.well-known/jwks.json"),
            reqwest::Client::new(),
        );
        let org_state = store.org_by_slug("bench").unwrap();
        let ep = org_state.endpoint("echo").unwrap().clone();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let warm = token("warm");
        verifier
            .authenticate(&warm, &org_state, &ep)
            .await
            .expect("valid");
        let n = 20_000;
        let tokens: Vec<String> = (0..n).map(|i| token(&format!("t{i}"))).collect();
        let started = Instant::now();
        for t in &tokens {
            verifier.authenticate(t, &org_state, &ep).await.expect("valid");
        }
        let uncached = started.elapsed() / n as u32;
        let started = Instant::now();
        for t in &tokens {
            verifier.authenticate(t, &org_state, &ep).await.expect("valid");
        }
        let cached = started.elapsed() / n as u32;
        println!("jwt_verify_uncached_us={:.1}", uncached.as_secs_f64() * 1e6);
        println!("jwt_verify_cached_us={:.2}", cached.as_secs_f64() * 1e6);
        shutdown.cancel();
        return Ok(());
    }

    println!("url={public_url}/bench/echo/mcp");
    println!("token={}", token("bench-1"));
    for more in &endpoints[1..] {
        println!("url_{}={public_url}/bench/{}/mcp", more.slug, more.slug);
        println!("token_{}={}", more.slug, token_for(more, "bench-1"));
    }
    println!("pid={}", std::process::id());
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    loop {
        ticker.tick().await;
        eprintln!(
            "events drained: {}",
            drained.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

/// Resident set size of this process, in kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One other tenant as the control plane would publish it: one server with a sealed bearer
/// credential, one endpoint exposing `tools` approved tools (namespaced, with per-tool limits on
/// a few), a read scope granting half of them and a write scope granting all, two service tokens.
fn tenant(i: usize, tools: usize, keyring: &gatehouse_core::secrets::Keyring) -> OrgSnapshot {
    let org_id = OrgId::new();
    let server_id = ServerId::new();
    let slug = format!("tenant-{i:05}");
    let endpoint_id = EndpointId::new();
    let mut endpoint_tools = Vec::with_capacity(tools);
    let mut per_tool = std::collections::BTreeMap::new();
    for t in 0..tools {
        let name = format!("lookup_record_{t}");
        let definition = json!({
            "name": name,
            "description": format!("Looks up record {t} of the {slug} orders domain by its identifier and returns its current state, owner and history."),
            "inputSchema": {"type": "object", "properties": {
                "id": {"type": "string", "description": "The record identifier"},
                "include_history": {"type": "boolean", "default": false},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100}
            }, "required": ["id"]},
            "annotations": {"readOnlyHint": true},
        });
        let exposed = format!("orders__{name}");
        if t % 5 == 0 {
            per_tool.insert(
                exposed.clone(),
                Limit {
                    per_minute: 600,
                    burst: 20,
                },
            );
        }
        endpoint_tools.push(EndpointTool {
            tool_id: ToolId::new(),
            exposed_name: exposed,
            target: ToolTarget::Upstream {
                server_id,
                upstream_name: name,
            },
            approved_hash: tool_definition_hash(&definition),
            approved_definition: definition,
        });
    }
    let all: Vec<ToolId> = endpoint_tools.iter().map(|t| t.tool_id).collect();
    let scopes = vec![
        ScopeSnapshot {
            name: "orders:read".into(),
            tool_ids: all.iter().step_by(2).copied().collect(),
            min_role: Some(gatehouse_core::role::Role::Viewer),
        },
        ScopeSnapshot {
            name: "orders:write".into(),
            tool_ids: all,
            min_role: Some(gatehouse_core::role::Role::Viewer),
        },
    ];
    let context = server_credential_context(org_id, server_id);
    let service_tokens = (0..2)
        .map(|k| ServiceTokenSnapshot {
            id: gatehouse_core::ids::ServiceTokenId::new(),
            endpoint_id,
            token_hash: hex::encode(gatehouse_core::secrets::token_hash(&format!(
                "{slug}-ci-token-{k}"
            ))),
            name: format!("ci-{k}"),
            scopes: vec!["orders:read".into()],
            expires_at: None,
        })
        .collect();
    OrgSnapshot {
        org_id,
        slug: slug.clone(),
        version: 1,
        log_tool_arguments: false,
        hard_limit_calls: None,
        suspended: false,
        endpoints: vec![EndpointSnapshot {
            id: endpoint_id,
            slug: "agents".into(),
            name: "Agents".into(),
            resource_url: format!("https://mcp.example.com/{slug}/agents/mcp"),
            rate_limits: RateLimits {
                per_org: Some(Limit {
                    per_minute: 60_000,
                    burst: 1_000,
                }),
                per_subject: Some(Limit {
                    per_minute: 600,
                    burst: 50,
                }),
                per_tool,
            },
            tools: endpoint_tools,
            scopes,
            prompts: None,
            resources: None,
            extra_methods: vec![],
            publish_scopes: false,
        }],
        servers: vec![ServerSnapshot {
            id: server_id,
            slug: "orders".into(),
            url: format!("https://orders.{slug}.example.com/mcp"),
            transport: UpstreamTransport::StreamableHttp,
            auth: UpstreamAuth::Bearer {
                token: Sealed(keyring.seal(format!("upstream-secret-{slug}").as_bytes(), &context)),
            },
            send_caller_assertion: false,
        }],
        backends: vec![],
        revocations: vec![],
        service_tokens,
        callers: vec![],
    }
}

/// Loads `n` other tenants into the store as the loader's full reconciliation does, and prints
/// what that cost: time, memory, and the time to apply one org's change with all of them held.
fn load_tenants(
    store: &gatehouse_dataplane::store::SnapshotStore,
    keyring: &gatehouse_core::secrets::Keyring,
    n: usize,
    tools: usize,
) {
    let rss_start = rss_kb();
    let snapshots: Vec<OrgSnapshot> = (0..n).map(|i| tenant(i, tools, keyring)).collect();
    let rss_generated = rss_kb();
    let json_bytes: usize = snapshots
        .iter()
        .map(|s| serde_json::to_vec(s).expect("json").len())
        .sum();
    let first = snapshots[0].clone();
    let started = Instant::now();
    gatehouse_dataplane::loader::install_all(store, snapshots);
    let load = started.elapsed();
    let rss_loaded = rss_kb();
    // One org's change, as a change notification applies it, with every other org held.
    let updates = 200;
    let started = Instant::now();
    for v in 0..updates {
        let mut next = first.clone();
        next.version = 2 + v;
        store.install(next);
    }
    let update = started.elapsed() / updates as u32;
    println!("scale_tenants={n}");
    println!("scale_tools={}", n * tools);
    println!("scale_snapshot_json_mb={:.1}", json_bytes as f64 / 1e6);
    println!("scale_full_load_ms={}", load.as_millis());
    println!("scale_one_org_change_us={:.0}", update.as_secs_f64() * 1e6);
    println!("scale_rss_start_kb={rss_start}");
    println!("scale_rss_generated_kb={rss_generated}");
    println!("scale_rss_loaded_kb={rss_loaded}");
}
