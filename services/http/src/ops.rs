//! Operational endpoints, identical on every service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::serve::Draining;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named dependency check: `Ok` when reachable, `Err(reason)` otherwise. The reason is shown
/// on `/readyz`, so it must not carry secrets.
pub type ReadinessCheck = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// The dependency checks behind `/readyz`. Each check is bounded by a timeout, so a hung
/// dependency reads as not ready rather than hanging the probe.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, ReadinessCheck)>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check named `name` (e.g. "database", "redis").
    pub fn with<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(check()))));
        self
    }

    /// Runs every check concurrently; returns whether all passed and each one's status.
    pub async fn evaluate(&self) -> (bool, Map<String, Value>) {
        let results = futures::future::join_all(self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
            };
            (*name, outcome)
        }))
        .await;
        let mut ready = true;
        let mut checks = Map::new();
        for (name, outcome) in results {
            let status = match outcome {
                Ok(()) => Value::String("ok".into()),
                Err(reason) => {
                    ready = false;
                    Value::String(reason)
                }
            };
            checks.insert(name.to_owned(), status);
        }
        (ready, checks)
    }
}

/// Liveness path, on every service.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness path, on every service.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus metrics path, on every service.
pub const METRICS_PATH: &str = "/metrics";

/// Mounts `/healthz` and `/readyz`, for a public listener (which answers 404 for `/metrics`).
/// `Readiness` must be in app data.
pub fn configure_public(cfg: &mut web::ServiceConfig) {
    cfg.route(HEALTHZ_PATH, web::get().to(healthz))
        .route(READYZ_PATH, web::get().to(readyz));
}

/// Mounts `/healthz`, `/readyz` and `/metrics`, for an internal listener (one that is not
/// reachable from the public network). `Readiness` must be in app data.
pub fn configure_internal(cfg: &mut web::ServiceConfig) {
    configure_public(cfg);
    cfg.route(METRICS_PATH, web::get().to(metrics_text));
}

/// Alive: the process answers. Never checks dependencies (a restart would not fix them).
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({"status": "alive"}))
}

/// Ready: every dependency reachable; 503 naming what is not. Once the service drains (see
/// [`crate::serve`]), 503 at once, so that load balancers stop sending it requests.
async fn readyz(readiness: web::Data<Readiness>, draining: Option<web::Data<Draining>>) -> HttpResponse {
    if draining.is_some_and(|d| d.is_draining()) {
        return HttpResponse::ServiceUnavailable()
            .insert_header(("cache-control", "no-store"))
            .json(json!({"status": "draining", "checks": {}}));
    }
    let (ready, checks) = readiness.evaluate().await;
    let body = json!({"status": if ready { "ready" } else { "not_ready" }, "checks": checks});
    if ready {
        HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("cache-control", "no-store"))
            .json(body)
    }
}

/// Prometheus text exposition of the process's metrics.
async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(gatehouse_core::telemetry::prometheus().render())
}
