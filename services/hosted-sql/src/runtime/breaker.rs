//! A backend's circuit breaker: after consecutive failures to reach it, calls fail fast for a
//! while instead of each waiting for a connection timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BreakerSettings {
    /// Consecutive backend failures that open the breaker.
    pub threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.open_until.is_some_and(|until| until > Instant::now())
    }

    pub(crate) fn record(&self, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            *state = State::default();
            return;
        }
        state.failures += 1;
        if state.failures >= self.settings.threshold {
            state.open_until = Some(Instant::now() + self.settings.open_for);
            state.failures = 0;
            metrics::counter!("gatehouse_hosted_sql_breaker_opened_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_success() {
        let b = Breaker::new(BreakerSettings {
            threshold: 2,
            open_for: Duration::from_secs(60),
        });
        b.record(false);
        b.record(true);
        b.record(false);
        assert!(!b.is_open(), "failures must be consecutive");
        b.record(false);
        assert!(b.is_open());
        b.record(true);
        assert!(!b.is_open());
    }
}
