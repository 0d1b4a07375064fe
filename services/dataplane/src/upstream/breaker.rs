//! The per-upstream circuit breaker: after repeated failures an upstream fails fast for a while.

use std::time::{Duration, Instant};

use gatehouse_core::ids::ServerId;
use gatehouse_core::sync::MutexExt;

use super::Upstreams;

/// Consecutive failures that open a breaker, and how long it stays open.
pub(super) const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Upstreams {
    pub(super) fn breaker_open(&self, server: ServerId) -> bool {
        let breakers = self.inner.breakers.lock_or_recover();
        breakers
            .get(&server)
            .and_then(|b| b.open_until)
            .is_some_and(|until| until > Instant::now())
    }

    pub(super) fn record(&self, server: ServerId, ok: bool) {
        let mut breakers = self.inner.breakers.lock_or_recover();
        let breaker = breakers.entry(server).or_default();
        if ok {
            *breaker = Breaker::default();
        } else {
            breaker.failures += 1;
            if breaker.failures >= BREAKER_THRESHOLD {
                breaker.open_until = Some(Instant::now() + BREAKER_OPEN_FOR);
                breaker.failures = 0;
                metrics::counter!("gatehouse_dataplane_breaker_opened_total").increment(1);
                tracing::warn!(server_id = %server, "circuit breaker opened for upstream");
            }
        }
    }
}
