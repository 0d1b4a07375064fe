//! The control API: accounts, orgs, domain servers, tools, scopes, endpoints, tokens, audit and
//! usage under `/api/v1`, the OAuth 2.1 authorization server, and the internal snapshot API the
//! dataplane reads its configuration from.

pub mod account_events;
pub mod accounts;
pub mod auth;
pub mod changes;
pub mod console;
pub mod dns;
pub mod error;
pub mod extract;
pub mod hosted;
pub mod oidc;
pub mod oidc_http;
pub mod openapi;
pub mod operator;
pub mod password;
pub mod poisoning;
pub mod resync;
pub mod routes;
pub mod seed;
pub mod state;
pub mod sync;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use tokio_util::sync::CancellationToken;
use utoipa_actix_web::{AppExt, scope};
use utoipa_swagger_ui::SwaggerUi;

use gatehouse_core::Config;
use gatehouse_core::net::TrustedProxies;
use gatehouse_db::Db;
use gatehouse_events::{ChangeNotifier, RateLimiter};
use gatehouse_http::{Draining, Readiness, observe};

use crate::extract::BodyLimit;
use crate::state::AppState;

/// What the control API needs from its surroundings.
pub struct Dependencies {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub notifier: ChangeNotifier,
    /// Rate limits shared by every replica (logins, mail requests, dynamic client registration).
    pub rate_limiter: RateLimiter,
}

/// A bound, not yet running control API: its public listener and its internal one (the snapshot
/// API for dataplanes, the JWKS, `/metrics`).
pub struct ControlApi {
    server: Server,
    internal: Server,
    state: AppState,
    addr: SocketAddr,
    internal_addr: SocketAddr,
    grace: std::time::Duration,
    oauth: gatehouse_oauth::OAuthState,
    draining: Draining,
}

impl ControlApi {
    pub fn build(deps: Dependencies) -> anyhow::Result<Self> {
        let cfg = deps.cfg.clone();
        let egress = gatehouse_egress::Egress::from_config(&cfg.egress)?;
        let state = AppState {
            keyring: Arc::new(cfg.keyring()?),
            keys: Arc::new(cfg.derived_keys()?),
            dataplane: Arc::new(cfg.dataplane_keys()?),
            cfg: cfg.clone(),
            db: deps.db.clone(),
            notifier: deps.notifier.clone(),
            mcp: sync::mcp_client(&egress)?,
            egress,
            rate_limiter: deps.rate_limiter.clone(),
            mailer: gatehouse_mail::Mailer::from_config(&cfg.mail, cfg.is_local())?,
            oidc_http: oidc_http::OidcHttp::new(&cfg.egress)?,
            dns: dns::TxtResolver::new(
                cfg.sso.nameservers().map_err(anyhow::Error::msg)?,
                std::time::Duration::from_millis(cfg.sso.dns_timeout_ms),
            ),
            dataplane_http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_millis(
                    cfg.dataplane.upstream_timeout_ms.saturating_add(5000),
                ))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        };
        let oauth = gatehouse_oauth::OAuthState::new(
            cfg.clone(),
            deps.db.clone(),
            state.keyring.clone(),
            state.keys.clone(),
            deps.notifier.clone(),
            deps.rate_limiter.clone(),
            gatehouse_oauth::Accounts {
                verify_password: Arc::new(|password, stored| Box::pin(password::verify(password, stored))),
                session_cookie: auth::session_cookie_name(cfg.is_local()),
            },
        )?;
        let readiness = {
            let db = deps.db.clone();
            let notifier = deps.notifier.clone();
            let mut readiness = Readiness::new().with("database", move || {
                let db = db.clone();
                async move { db.ping().await.map_err(|e| database_reason(&e)) }
            });
            if notifier.is_redis() {
                readiness = readiness.with("redis", move || {
                    let notifier = notifier.clone();
                    async move { notifier.ping().await }
                });
            }
            readiness
        };
        let listener = gatehouse_http::bind(cfg.control_api.listen, "control_api.listen")?;
        let addr = listener.local_addr()?;
        let internal_listener =
            gatehouse_http::bind(cfg.control_api.internal_listen, "control_api.internal_listen")?;
        let internal_addr = internal_listener.local_addr()?;
        let app_state = state.clone();
        let state = web::Data::new(state);
        let oauth_data = web::Data::new(oauth.clone());
        let readiness = web::Data::new(readiness);
        let body_limit = BodyLimit(cfg.control_api.max_body_bytes);
        let grace = cfg.grace_period();
        // Requests arriving while draining: the API's own 503 (the client retries after `Retry-After`).
        let draining = Draining::new()
            .refusing_with(|| actix_web::ResponseError::error_response(&error::ApiError::Unavailable));
        let draining_data = web::Data::new(draining.clone());
        let console = web::Data::new(console::Console::embedded(&cfg));
        if !console.is_built() {
            tracing::warn!(
                reason = console::BUILD_NOTE,
                "the web console is not part of this build"
            );
        }
        let proxies = web::Data::new(
            TrustedProxies::parse(&cfg.control_api.trusted_proxies).map_err(anyhow::Error::msg)?,
        );
        let internal = {
            let state = state.clone();
            let oauth_data = oauth_data.clone();
            let readiness = readiness.clone();
            let draining_data = draining_data.clone();
            HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .app_data(oauth_data.clone())
                    .app_data(readiness.clone())
                    .app_data(draining_data.clone())
                    .configure(gatehouse_http::ops::configure_internal)
                    .configure(routes::internal::configure)
                    .configure(gatehouse_oauth::configure_jwks)
                    .wrap(middleware::from_fn(gatehouse_http::drain_requests))
                    .wrap(middleware::from_fn(observe::request_metrics))
                    .wrap(observe::tracing_logger())
            })
            .disable_signals()
            .tcp_nodelay(true)
            // Dataplanes' snapshot reads and metric scrapes: light, asynchronous work.
            .workers(2)
            .shutdown_timeout(grace.as_secs())
            .listen(internal_listener)?
            .run()
        };
        let mut server = HttpServer::new(move || {
            let (app, api) = App::new()
                .into_utoipa_app()
                .openapi(openapi::ApiDoc::openapi_base())
                .app_data(state.clone())
                .app_data(readiness.clone())
                .app_data(draining_data.clone())
                .app_data(proxies.clone())
                .app_data(body_limit)
                .app_data(web::Data::new(body_limit))
                .app_data(extract::path_config())
                .app_data(extract::query_config())
                .service(scope::scope("/api/v1").configure(routes::configure))
                .service(scope::scope("/api/operator").configure(routes::operator::configure))
                .split_for_parts();
            app.configure(gatehouse_http::ops::configure_public)
                .app_data(oauth_data.clone())
                .configure(gatehouse_oauth::configure)
                .route("/api/openapi.json", web::get().to(openapi_json))
                .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/docs/openapi.json", api))
                .app_data(console.clone())
                .default_service(web::to(console::serve))
                .wrap(middleware::from_fn(gatehouse_http::drain_requests))
                .wrap(middleware::from_fn(observe::request_metrics))
                .wrap(observe::tracing_logger())
        })
        .disable_signals()
        .tcp_nodelay(true)
        .shutdown_timeout(grace.as_secs())
        .listen(listener)?;
        if cfg.control_api.workers > 0 {
            server = server.workers(cfg.control_api.workers);
        }
        Ok(Self {
            server: server.run(),
            internal,
            state: app_state,
            addr,
            internal_addr,
            grace,
            oauth,
            draining,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the internal listener (snapshot API, JWKS, `/metrics`) is bound.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The authorization server's state (signing keys, for `gatehouse signing-keys`).
    pub fn oauth(&self) -> &gatehouse_oauth::OAuthState {
        &self.oauth
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Signing keys: the first is created and due rotations are scheduled by this loop.
        tokio::spawn(self.oauth.signing.clone().maintain_until(shutdown.clone()));
        let resync = tokio::spawn(resync::run(self.state, shutdown.child_token()));
        let result = gatehouse_http::run_both_until_stopped(
            [self.server, self.internal],
            shutdown.clone(),
            self.grace,
            self.draining,
        )
        .await;
        shutdown.cancel();
        let _ = resync.await;
        result
    }
}

/// Readiness text for a database error, without connection details.
fn database_reason(err: &gatehouse_db::DbError) -> String {
    if err.is_unavailable() {
        "database unreachable".to_owned()
    } else {
        "database check failed".to_owned()
    }
}

/// The committed OpenAPI document, served as JSON.
async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::document_json())
}
