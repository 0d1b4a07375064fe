//! The per-upstream circuit breaker ([`gatehouse_core::breaker`]): after repeated failures an
//! upstream fails fast for a while.

use gatehouse_core::breaker::BreakerSettings;
use gatehouse_core::ids::ServerId;
use gatehouse_core::sync::MutexExt;

use super::Client;

/// Consecutive failures that open an upstream's breaker, and how long it stays open.
pub(super) const SETTINGS: BreakerSettings = BreakerSettings {
    threshold: 5,
    open_for: std::time::Duration::from_secs(10),
};

impl Client {
    pub(super) fn breaker_open(&self, server: ServerId) -> bool {
        let breakers = self.inner.breakers.lock_or_recover();
        breakers.get(&server).is_some_and(|b| b.is_open())
    }

    pub(super) fn record(&self, server: ServerId, ok: bool) {
        let mut breakers = self.inner.breakers.lock_or_recover();
        if breakers.entry(server).or_default().record(ok, &SETTINGS) {
            metrics::counter!(self.metric("breaker_opened_total")).increment(1);
            tracing::warn!(server_id = %server, "circuit breaker opened for upstream");
        }
    }
}
