//! The REST API under `/api/v1`, one module per resource, each exposing `configure`.

use utoipa_actix_web::service_config::ServiceConfig;

pub mod oauth_grants;
pub mod service_clients;
pub mod service_tokens;

/// Mounts every resource's routes (registered with `.service(...)` so OpenAPI collects them).
pub fn configure(cfg: &mut ServiceConfig) {
    service_tokens::configure(cfg);
    service_clients::configure(cfg);
    oauth_grants::configure(cfg);
}
