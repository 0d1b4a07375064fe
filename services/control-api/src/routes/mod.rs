//! The REST API under `/api/v1`, one module per resource, each exposing `configure`.

pub mod usage;

use utoipa_actix_web::service_config::ServiceConfig;

/// Mounts every resource's routes (registered with `.service(...)` so OpenAPI collects them).
pub fn configure(cfg: &mut ServiceConfig) {
    usage::configure(cfg);
}
