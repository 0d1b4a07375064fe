//! The actix-web pieces every Gatehouse service shares:
//! - [`ops`]: `/healthz`, `/readyz` (with named dependency checks) and `/metrics`;
//! - [`observe`]: request ids, tracing spans (joined to an incoming `traceparent`) and HTTP metrics;
//! - [`serve`]: binding and graceful shutdown within the configured grace period.

pub mod observe;
pub mod ops;
pub mod serve;

pub use ops::{Readiness, ReadinessCheck};
pub use serve::{Draining, bind, close_connections_when_draining, run_until_stopped};

/// The client's address: the connection's peer, or what a trusted proxy says in
/// `X-Forwarded-For` when the service registered its `TrustedProxies` as app data.
pub fn client_ip(req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<actix_web::web::Data<gatehouse_core::net::TrustedProxies>>() {
        Some(proxies) => proxies.client_ip(
            peer,
            req.headers().get_all("x-forwarded-for").map(|v| v.as_bytes()),
        ),
        None => peer,
    }
}
