//! Gatehouse core: the types and helpers every service shares, with no web framework in sight.
//!
//! - [`ids`]: typed identifiers; [`role`]: member roles.
//! - [`config`]: layered, validated configuration.
//! - [`secrets`]: sealing credentials at rest, derived keys, tokens and their hashes.
//! - [`telemetry`]: logs, traces, metrics; [`shutdown`]: signal handling.
//! - [`canonical`]: canonical JSON and tool-definition pins; [`html`]: HTML escaping.
//! - [`snapshot`]: the control-plane → dataplane configuration contract.
//! - [`upstream`]: the typed model of an upstream server (transport, credential kind).
//! - [`sealed`]: values handed out sealed, to come back intact and unread.
//! - [`sync`]: locks on shared state that survive a panic elsewhere.

pub mod breaker;
pub mod canonical;
pub mod config;
pub mod html;
pub mod ids;
pub mod net;
pub mod reference;
pub mod role;
pub mod sealed;
pub mod secrets;
pub mod shutdown;
pub mod snapshot;
pub mod sync;
pub mod telemetry;
pub mod upstream;

pub use config::{Component, Config, ConfigError, Mode};
pub use ids::*;
pub use role::Role;

/// Installs the process-wide rustls crypto provider. Two providers (ring and aws-lc-rs) are compiled
/// into the binary through different dependencies, so rustls cannot pick one by itself; anything
/// that builds a rustls config without naming a provider (redis TLS, for one) would panic. Call
/// first thing in every `main`.
pub fn install_crypto_provider() {
    let _ = rustls_provider::install();
}

mod rustls_provider {
    pub fn install() -> Result<(), ()> {
        rustls::crypto::aws_lc_rs::default_provider()
            .install_default()
            .map_err(|_| ())
    }
}
