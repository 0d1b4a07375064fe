//! The actix-web pieces every Gatehouse service shares:
//! - [`ops`]: `/healthz`, `/readyz` (with named dependency checks) and `/metrics` (internal
//!   listeners only);
//! - [`observe`]: request ids, tracing spans (joined to an incoming `traceparent`) and HTTP metrics;
//! - [`serve`]: binding, and draining on shutdown within the configured grace period.

pub mod observe;
pub mod ops;
pub mod serve;

pub use ops::{Readiness, ReadinessCheck};
pub use serve::{Draining, bind, drain_requests, run_both_until_stopped, run_until_stopped};

/// Where a request came from, for the audit trail and per-address limits.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn of(req: &actix_web::HttpRequest) -> Self {
        Self {
            ip: client_ip(req),
            user_agent: req
                .headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
        }
    }
}

impl actix_web::FromRequest for ClientInfo {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(ClientInfo::of(req)))
    }
}

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
