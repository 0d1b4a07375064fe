//! The usage-worker: consumes dataplane events into the audit trail and usage rollups, enforces
//! quotas and produces invoices. It serves only health and metrics over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use tokio_util::sync::CancellationToken;

use gatehouse_core::Config;
use gatehouse_db::Db;
use gatehouse_events::ChangeNotifier;
use gatehouse_http::{Draining, Readiness, observe};

pub struct Dependencies {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub notifier: ChangeNotifier,
}

pub struct UsageWorker {
    server: Server,
    addr: SocketAddr,
    grace: Duration,
    draining: Draining,
}

impl UsageWorker {
    pub fn build(deps: Dependencies) -> anyhow::Result<Self> {
        let cfg = deps.cfg.clone();
        let db = deps.db.clone();
        let mut readiness = Readiness::new().with("database", move || {
            let db = db.clone();
            async move {
                db.ping().await.map_err(|e| {
                    if e.is_unavailable() {
                        "database unreachable"
                    } else {
                        "database check failed"
                    }
                    .to_owned()
                })
            }
        });
        if deps.notifier.is_redis() {
            let notifier = deps.notifier.clone();
            readiness = readiness.with("redis", move || {
                let notifier = notifier.clone();
                async move { notifier.ping().await }
            });
        }
        let listener = gatehouse_http::bind(cfg.usage_worker.listen, "usage_worker.listen")?;
        let addr = listener.local_addr()?;
        let readiness = web::Data::new(readiness);
        let grace = cfg.grace_period();
        let draining = Draining::new();
        let draining_data = web::Data::new(draining.clone());
        let server = HttpServer::new(move || {
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
        .workers(1)
        .shutdown_timeout(grace.as_secs())
        .listen(listener)?;
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
