//! The REST API under `/api/v1`, one module per resource, each exposing `configure`; the
//! operator API (`operator`) is mounted on its own under `/api/operator`.

pub mod account;
pub mod invitations;
pub mod members;
pub mod orgs;
pub mod session;
pub mod sso;

use utoipa_actix_web::service_config::ServiceConfig;

pub mod attributes;
pub mod audit;
pub mod backends;
pub mod endpoints;
pub mod internal;
pub mod oauth_grants;
pub mod operator;
pub mod playground;
pub mod scopes;
pub mod servers;
pub mod service_clients;
pub mod service_tokens;
pub mod sql_tools;
pub mod tools;
pub mod usage;

/// Mounts every resource's routes (registered with `.service(...)` so OpenAPI collects them).
pub fn configure(cfg: &mut ServiceConfig) {
    servers::configure(cfg);
    tools::configure(cfg);
    scopes::configure(cfg);
    endpoints::configure(cfg);
    playground::configure(cfg);
    backends::configure(cfg);
    sql_tools::configure(cfg);
    audit::configure(cfg);
    session::configure(cfg);
    account::configure(cfg);
    orgs::configure(cfg);
    members::configure(cfg);
    attributes::configure(cfg);
    invitations::configure(cfg);
    sso::configure(cfg);
    usage::configure(cfg);
    service_tokens::configure(cfg);
    service_clients::configure(cfg);
    oauth_grants::configure(cfg);
}
