//! The dataplane: one governed MCP endpoint per tenant endpoint, at
//! `{public URL}/{org}/{endpoint}/mcp`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use tokio_util::sync::CancellationToken;

use gatehouse_core::Config;
use gatehouse_events::ChangeNotifier;
use gatehouse_http::{Draining, Readiness, observe};

/// What the dataplane needs from its surroundings.
pub struct Dependencies {
    pub cfg: Arc<Config>,
    pub notifier: ChangeNotifier,
}

pub struct Dataplane {
    server: Server,
    addr: SocketAddr,
    grace: Duration,
    draining: Draining,
}

impl Dataplane {
    pub fn build(deps: Dependencies) -> anyhow::Result<Self> {
        let cfg = deps.cfg.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()?;
        let control_api_health = cfg.dataplane.control_api_url.join("healthz")?;
        let mut readiness = Readiness::new().with("control_api", move || {
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
        let readiness = web::Data::new(readiness);
        let grace = cfg.grace_period();
        let draining = Draining::new();
        let draining_data = web::Data::new(draining.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(readiness.clone())
                .app_data(draining_data.clone())
                .configure(gatehouse_http::ops::configure)
                .wrap(middleware::from_fn(
                    gatehouse_http::close_connections_when_draining,
                ))
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
            addr,
            grace,
            draining,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        gatehouse_http::run_until_stopped(self.server, shutdown, self.grace, self.draining).await
    }
}
