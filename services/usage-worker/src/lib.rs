//! The usage-worker: consumes dataplane events into the audit trail and usage rollups, enforces
//! quotas, produces invoices and sends usage alerts. It serves only health and metrics over HTTP.
//!
//! - [`pipeline`]: the consume loop (batches in, idempotent writes, acknowledgements);
//! - [`ingest`]: what a batch becomes in the database;
//! - [`quota`]: over-quota decisions and the periodic sweep;
//! - [`billing`]: monthly invoices;
//! - [`alerts`]: usage alert emails.

pub mod alerts;
pub mod billing;
pub mod ingest;
pub mod pipeline;
pub mod quota;
pub mod retention;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use gatehouse_core::Config;
use gatehouse_db::Db;
use gatehouse_events::{ChangeNotifier, EventConsumer, QuotaState};
use gatehouse_http::{Draining, Readiness, observe};

pub use gatehouse_events::link::jittered;

use crate::pipeline::{Pipeline, PipelineHealth};

pub struct Dependencies {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub notifier: ChangeNotifier,
    /// Where events come from (`Bus::from_config(..).consumer`).
    pub consumer: EventConsumer,
    /// Over-quota state this worker decides (shared with the dataplanes).
    pub quota: QuotaState,
}

pub struct UsageWorker {
    server: Server,
    addr: SocketAddr,
    grace: Duration,
    draining: Draining,
    cfg: Arc<Config>,
    pipeline: Pipeline,
    consumer: EventConsumer,
    alerts: Option<alerts::Alerts>,
}

impl UsageWorker {
    pub fn build(deps: Dependencies) -> anyhow::Result<Self> {
        let cfg = deps.cfg.clone();
        let health = Arc::new(PipelineHealth::default());
        let db = deps.db.clone();
        let probe = deps.consumer.probe();
        let pipeline_health = health.clone();
        let readiness = Readiness::new()
            .with("database", move || {
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
            })
            .with("bus", move || {
                let probe = probe.clone();
                async move { probe.check().await }
            })
            .with("pipeline", move || {
                let health = pipeline_health.clone();
                async move { health.check() }
            });
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
                .configure(gatehouse_http::ops::configure_internal)
                .wrap(middleware::from_fn(gatehouse_http::drain_requests))
                .wrap(middleware::from_fn(observe::request_metrics))
                .wrap(observe::tracing_logger())
        })
        .disable_signals()
        .workers(1)
        .shutdown_timeout(grace.as_secs())
        .listen(listener)?;
        let alerts = match gatehouse_mail::Mailer::from_config(&cfg.mail, cfg.is_local()) {
            Ok(mailer) => Some(alerts::Alerts {
                db: deps.db.clone(),
                mailer,
                console_url: cfg.control_api.public_url.to_string(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "usage alert emails are disabled");
                None
            }
        };
        let pipeline = Pipeline {
            db: deps.db,
            notifier: deps.notifier,
            quota: deps.quota,
            hard_limits: quota::HardLimits::of(&cfg.billing),
            batch_size: cfg.usage_worker.batch_size,
            grace,
            health,
            usage_grew: None,
        };
        Ok(Self {
            server: server.run(),
            addr,
            grace,
            draining,
            cfg,
            pipeline,
            consumer: deps.consumer,
            alerts,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves health and metrics, consumes events and runs the periodic jobs until `shutdown`;
    /// then finishes the batch in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let cfg = self.cfg.clone();
        let mut pipeline = self.pipeline.clone();
        let alerts = self.alerts.map(|alerts| {
            let (grew, rx) = tokio::sync::mpsc::unbounded_channel();
            pipeline.usage_grew = Some(grew);
            tokio::spawn(alerts.run(rx, shutdown.clone()))
        });
        let pipeline = tokio::spawn(pipeline.run(self.consumer, shutdown.clone()));
        let db = self.pipeline.db.clone();
        let lateness = Duration::from_secs(cfg.usage_worker.lateness_secs);
        let invoices = tokio::spawn(every(
            Duration::from_secs(cfg.usage_worker.invoice_interval_secs),
            shutdown.clone(),
            "invoicing",
            move || {
                let db = db.clone();
                async move {
                    let run = billing::run_once(&db, lateness, OffsetDateTime::now_utc()).await?;
                    if run.created > 0 {
                        tracing::info!(created = run.created, "invoices created");
                    }
                    Ok(())
                }
            },
        ));
        let (db, quota) = (self.pipeline.db.clone(), self.pipeline.quota.clone());
        let limits = self.pipeline.hard_limits;
        let sweep = tokio::spawn(every(
            Duration::from_secs(cfg.usage_worker.quota_sweep_secs),
            shutdown.clone(),
            "quota sweep",
            move || {
                let (db, quota) = (db.clone(), quota.clone());
                async move {
                    quota::sweep_once(&db, &quota, OffsetDateTime::now_utc(), limits).await?;
                    Ok(())
                }
            },
        ));
        let db = self.pipeline.db.clone();
        let retention = tokio::spawn(every(
            Duration::from_secs(cfg.usage_worker.retention_sweep_secs),
            shutdown.clone(),
            "retention",
            move || {
                let db = db.clone();
                async move {
                    retention::sweep_once(&db).await?;
                    Ok(())
                }
            },
        ));
        let served =
            gatehouse_http::run_until_stopped(self.server, shutdown, self.grace, self.draining).await;
        let _ = pipeline.await;
        let _ = tokio::join!(invoices, sweep, retention);
        if let Some(alerts) = alerts {
            let _ = alerts.await;
        }
        served
    }
}

/// Runs `job` now and then every `interval` (jittered by ±10%) until `stop`.
async fn every<F, Fut>(interval: Duration, stop: CancellationToken, name: &'static str, job: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), gatehouse_db::DbError>>,
{
    loop {
        if let Err(e) = job().await {
            tracing::warn!(job = name, error = %e, "periodic job failed; will retry");
        }
        let wait = interval.mul_f64(0.9 + 0.2 * gatehouse_events::link::jitter_unit());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}
