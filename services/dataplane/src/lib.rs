//! The dataplane: one governed MCP endpoint per tenant endpoint, at
//! `{public URL}/{org}/{endpoint}/mcp`.
//!
//! - [`store`] holds every org's configuration snapshot in memory; [`loader`] keeps it current
//!   from the control API (no database on the request path; no snapshot → not ready, no traffic).
//! - [`auth`] verifies bearer tokens locally; [`resource`] is the RFC 9728 side.
//! - [`mcp`] speaks Streamable HTTP (2026-07-28 and the 2025 session revisions), authorizes on
//!   the body, and relays to upstreams through [`upstream`] with the server's own credential.
//! - [`owners`] remembers which upstream owns which resource URI at endpoints with several.
//! - [`pins`] withholds tools whose upstream definition drifted from the approved pin.
//! - [`task_owners`] remembers who created each task, so that only they are served it.
//! - [`events`] records every call; rate limits and quotas come from `gatehouse_events`.

pub mod assertion;
pub mod auth;
pub mod elicitations;
pub mod events;
pub mod headers;
pub mod jsonrpc;
pub mod loader;
pub mod mcp;
pub mod owners;
pub mod pins;
pub mod redact;
pub mod resource;
pub mod session;
pub mod state;
pub mod store;
pub mod stream_slots;
pub mod task_owners;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, middleware, web};
use tokio_util::sync::CancellationToken;

use gatehouse_core::Config;
use gatehouse_core::net::TrustedProxies;
use gatehouse_core::secrets::hmac_sha256;
use gatehouse_events::{ChangeNotifier, EventPublisher, QuotaState, RateLimiter};
use gatehouse_http::{Draining, Readiness, observe};

use crate::state::AppState;
use crate::store::SnapshotStore;

/// What the dataplane needs from its surroundings.
pub struct Dependencies {
    pub cfg: Arc<Config>,
    pub notifier: ChangeNotifier,
    /// Where call and drift events go (never blocks).
    pub events: EventPublisher,
    /// Rate limits shared by every replica.
    pub limiter: RateLimiter,
    /// Which orgs are over quota.
    pub quota: QuotaState,
}

pub struct Dataplane {
    server: Server,
    /// `/metrics` and health checks, on `dataplane.internal_listen`.
    internal: Server,
    addr: SocketAddr,
    internal_addr: SocketAddr,
    grace: Duration,
    store: SnapshotStore,
    /// The upstream client (its held upstream sessions are closed with `close_all` at shutdown).
    upstreams: upstream::Upstreams,
    loader: Option<(loader::SnapshotSource, ChangeNotifier, Duration)>,
    background: CancellationToken,
    draining: Draining,
}

impl Dataplane {
    pub fn build(deps: Dependencies) -> anyhow::Result<Self> {
        let cfg = deps.cfg.clone();
        // Everything this process holds: keys derived from `secrets.dataplane_secret`. The
        // platform's keys (credentials at rest, console sessions) are never read here.
        let keys = cfg.dataplane_keys()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let store = SnapshotStore::new(keys.snapshot.clone());
        let public_url = cfg.dataplane.public_url.as_str().trim_end_matches('/').to_owned();
        // The caller-assertion key: its own derivation from the session key's root, one purpose.
        let assertion_seed = hmac_sha256(&keys.mcp_session, b"gatehouse/caller-assertion/ed25519-seed/v1");
        let signer = assertion::AssertionSigner::new(assertion_seed, public_url.clone())?;
        let egress = gatehouse_egress::Egress::from_config(&cfg.egress)?;
        let reply_key = hmac_sha256(
            &keys.mcp_session,
            b"gatehouse/http-sse-reply-route/aes-256-gcm/v1",
        );
        let upstreams = upstream::Upstreams::new(
            egress.clone(),
            Duration::from_millis(cfg.dataplane.upstream_timeout_ms.max(1)),
            cfg.dataplane.max_upstream_message_bytes,
            signer,
            &reply_key,
            upstream::SessionLimits {
                max_sessions: cfg.dataplane.max_upstream_sessions,
                idle: Duration::from_secs(cfg.dataplane.upstream_session_idle_secs.max(1)),
            },
        )?;
        let background = CancellationToken::new();
        let reconcile = Duration::from_secs(cfg.dataplane.snapshot_reconcile_secs.max(1));
        let pins = pins::Pins::new(
            upstreams.clone(),
            deps.events.clone(),
            store.clone(),
            reconcile,
            cfg.dataplane.max_pin_check_bytes,
            background.clone(),
        );
        let control = cfg
            .dataplane
            .control_api_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let verifier = auth::TokenVerifier::new(
            cfg.issuer(),
            format!("{control}/.well-known/jwks.json"),
            http.clone(),
        );
        let tasks = match cfg.redis_url() {
            Some(url) => {
                let client = redis::Client::open(url)?;
                let link = gatehouse_events::link::RedisLink::new(
                    client,
                    "task-owners",
                    Some(Duration::from_secs(2)),
                    gatehouse_events::link::ConnectGate::new(),
                    background.clone(),
                );
                task_owners::TaskOwners::redis(link, &cfg.redis.key_prefix)
            }
            None => task_owners::TaskOwners::local(),
        };
        let hosted_sql = gatehouse_hosted_sql::HostedSql::new((&cfg.hosted_sql).into());
        tokio::spawn(close_idle_backend_pools(hosted_sql.clone(), background.clone()));
        let draining = Draining::new().refusing_with(refuse_while_draining);
        // Upstream sessions held for stateless clients end with the replica (a DELETE each).
        let held = upstreams.clone();
        draining.on_close(move || async move { held.close_all().await });
        tokio::spawn(close_idle_upstream_sessions(
            upstreams.clone(),
            background.clone(),
        ));
        let ended_sessions = session::EndedSessions::default();
        tokio::spawn(
            ended_sessions
                .clone()
                .follow(deps.notifier.subscribe_session_ends(), background.clone()),
        );
        let state_upstreams = upstreams.clone();
        let source = loader::SnapshotSource::new(
            http.clone(),
            &cfg.dataplane.control_api_url,
            keys.internal_token.clone(),
        );
        let state = AppState {
            store: store.clone(),
            refresher: loader::Refresher::new(store.clone(), source.clone()),
            verifier,
            sessions: session::SessionCodec::new(&keys.mcp_session),
            ended_sessions: ended_sessions.clone(),
            notifier: deps.notifier.clone(),
            upstreams,
            origins: headers::OriginPolicy::new(&cfg.dataplane.public_url, &cfg.dataplane.allowed_origins),
            events: deps.events.clone(),
            limiter: deps.limiter.clone(),
            quota: deps.quota.clone(),
            pins,
            tasks,
            hosted_sql,
            elicitations: Default::default(),
            egress,
            issuer: cfg.issuer(),
            public_url,
            max_json_depth: cfg.dataplane.max_json_depth,
            batches: state::BatchLimits {
                max_messages: cfg.dataplane.max_batch_messages,
                max_answer_bytes: cfg.dataplane.max_batch_answer_bytes,
                timeout: Duration::from_millis(cfg.dataplane.batch_timeout_ms),
            },
            streams: stream_slots::StreamSlots::new(cfg.dataplane.max_streams_per_subject, draining.token()),
            redactor: cfg.dataplane.redact_secrets.then(redact::Redactor::new),
            inputs: mcp::InputRequests::default(),
            source: format!("dataplane-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]).into(),
            drain: draining.clone(),
        };

        let control_api_health = cfg.dataplane.control_api_url.join("healthz")?;
        let ready_store = store.clone();
        let mut readiness = Readiness::new()
            .with("configuration", move || {
                let loaded = ready_store.is_loaded();
                async move {
                    if loaded {
                        Ok(())
                    } else {
                        Err("no configuration snapshot loaded yet".to_owned())
                    }
                }
            })
            .with("control_api", move || {
                let http = http.clone();
                let url = control_api_health.clone();
                async move {
                    match http.get(url).send().await {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("control API answered {}", r.status().as_u16())),
                        Err(_) => Err("control API unreachable".to_owned()),
                    }
                }
            });
        if deps.notifier.is_redis() {
            let notifier = deps.notifier.clone();
            readiness = readiness.with("redis", move || {
                let notifier = notifier.clone();
                async move { notifier.ping().await }
            });
        }
        let listener = gatehouse_http::bind(cfg.dataplane.listen, "dataplane.listen")?;
        let addr = listener.local_addr()?;
        let internal_listener =
            gatehouse_http::bind(cfg.dataplane.internal_listen, "dataplane.internal_listen")?;
        let internal_addr = internal_listener.local_addr()?;
        let readiness = web::Data::new(readiness);
        let max_body = cfg.dataplane.max_body_bytes;
        let grace = cfg.grace_period();
        let draining_data = web::Data::new(draining.clone());
        let proxies = web::Data::new(
            TrustedProxies::parse(&cfg.dataplane.trusted_proxies).map_err(anyhow::Error::msg)?,
        );
        let internal = {
            let readiness = readiness.clone();
            let draining_data = draining_data.clone();
            HttpServer::new(move || {
                App::new()
                    .app_data(readiness.clone())
                    .app_data(draining_data.clone())
                    .configure(gatehouse_http::ops::configure_internal)
                    .wrap(middleware::from_fn(gatehouse_http::drain_requests))
                    .wrap(observe::tracing_logger())
            })
            .disable_signals()
            .workers(1)
            .shutdown_timeout(grace.as_secs())
            .listen(internal_listener)?
            .run()
        };
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(readiness.clone())
                .app_data(proxies.clone())
                .app_data(worker_state(&state))
                .app_data(draining_data.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(gatehouse_http::ops::configure_public)
                .configure(configure)
                .wrap(middleware::from_fn(gatehouse_http::drain_requests))
                .wrap(middleware::from_fn(observe::request_metrics))
                .wrap(observe::tracing_logger())
        })
        .disable_signals()
        .tcp_nodelay(true)
        .shutdown_timeout(grace.as_secs())
        .listen(listener)?;
        if cfg.dataplane.workers > 0 {
            server = server.workers(cfg.dataplane.workers);
        }
        Ok(Self {
            server: server.run(),
            internal,
            addr,
            internal_addr,
            grace,
            store,
            upstreams: state_upstreams,
            loader: Some((source, deps.notifier, reconcile)),
            background,
            draining,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the internal listener (`/metrics`, health checks) is bound.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The upstream client shared by every worker: its held upstream sessions
    /// ([`upstream::Upstreams::held_sessions`], [`upstream::Upstreams::close_all`]).
    pub fn upstreams(&self) -> upstream::Upstreams {
        self.upstreams.clone()
    }

    /// The configuration store (tests install snapshots directly).
    pub fn store(&self) -> SnapshotStore {
        self.store.clone()
    }

    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        if let Some((source, notifier, every)) = self.loader.take() {
            tokio::spawn(loader::run(
                self.store.clone(),
                source,
                notifier,
                every,
                self.background.clone(),
            ));
        }
        let background = self.background.clone();
        let result = gatehouse_http::run_both_until_stopped(
            [self.server, self.internal],
            shutdown,
            self.grace,
            self.draining,
        )
        .await;
        background.cancel();
        result
    }
}

/// The answer to an MCP request that arrives while this replica drains: 503 (with `Retry-After`,
/// added by the drain) and a JSON-RPC error saying to retry, which another replica will take.
fn refuse_while_draining() -> HttpResponse {
    let secs = gatehouse_http::serve::RETRY_AFTER_SECS;
    HttpResponse::ServiceUnavailable()
        .content_type("application/json")
        .body(
            jsonrpc::error_body(
                None,
                jsonrpc::SERVER_ERROR,
                &format!("Service unavailable: this replica is shutting down; retry after {secs} s"),
                Some(serde_json::json!({"retryAfterSeconds": secs})),
            )
            .to_string(),
        )
}

/// Closes hosted SQL pools unused for the runtime's `idle_close_after`, every minute.
async fn close_idle_backend_pools(hosted_sql: gatehouse_hosted_sql::HostedSql, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let closed = hosted_sql.close_idle();
                if closed > 0 {
                    tracing::debug!(closed, "idle hosted SQL pools closed");
                }
            }
        }
    }
}

/// Closes the upstream sessions held for stateless clients that went unused too long.
async fn close_idle_upstream_sessions(upstreams: upstream::Upstreams, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(30));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => upstreams.close_idle_sessions().await,
        }
    }
}

/// One HTTP worker's copy of the shared state, sending to upstreams through a connection pool of
/// its own (see [`upstream::Upstreams::with_own_pool`]) and checking rate limits through a Redis
/// connection of its own ([`RateLimiter::for_worker`]): a call's I/O stays on the worker's thread.
/// Should that pool fail to build, the worker shares the process-wide pool: slower, never wrong.
fn worker_state(state: &AppState) -> web::Data<AppState> {
    let mut own = state.clone();
    own.limiter = state.limiter.for_worker();
    match state.upstreams.with_own_pool() {
        Ok(upstreams) => own.upstreams = upstreams,
        Err(e) => tracing::warn!(error = %e, "worker shares the process-wide upstream pool"),
    }
    web::Data::new(own)
}

/// Mounts the MCP endpoints and the protected-resource metadata.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/oauth-protected-resource/{org}/{endpoint}/mcp",
        web::get().to(resource::protected_resource_metadata),
    )
    .route(assertion::JWKS_PATH, web::get().to(caller_assertion_jwks))
    .service(
        web::resource("/{org}/{endpoint}/mcp")
            .route(web::post().to(mcp::post))
            .route(web::get().to(mcp::get))
            .route(web::delete().to(mcp::delete))
            .default_service(web::to(|| async {
                HttpResponse::MethodNotAllowed()
                    .insert_header(("allow", "GET, POST, DELETE"))
                    .finish()
            })),
    );
}

async fn caller_assertion_jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.upstreams.signer().jwks())
}
