//! The actix-web pieces every Gatehouse service shares:
//! - [`ops`]: `/healthz`, `/readyz` (with named dependency checks) and `/metrics`;
//! - [`observe`]: request ids, tracing spans (joined to an incoming `traceparent`) and HTTP metrics;
//! - [`serve`]: binding and graceful shutdown within the configured grace period.

pub mod observe;
pub mod ops;
pub mod serve;

pub use ops::{Readiness, ReadinessCheck};
pub use serve::{Draining, bind, close_connections_when_draining, run_until_stopped};
