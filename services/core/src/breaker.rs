//! A circuit breaker's state: after `threshold` consecutive failures to reach a dependency (an
//! upstream server, a hosted SQL backend), calls fail fast for `open_for` instead of each waiting
//! for a timeout. The state holds no lock: each holder keeps it under its own (one per backend
//! pool, a map per upstream) and reports an opening in its own metrics and logs.

use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
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

/// One dependency's breaker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Whether calls should fail fast now.
    pub fn is_open(&self) -> bool {
        self.open_until.is_some_and(|until| until > Instant::now())
    }

    /// Records a call's outcome: a success closes the breaker and forgets earlier failures.
    /// Returns true when this failure opened it.
    pub fn record(&mut self, ok: bool, settings: &BreakerSettings) -> bool {
        if ok {
            *self = Breaker::default();
            return false;
        }
        self.failures += 1;
        if self.failures < settings.threshold {
            return false;
        }
        self.open_until = Some(Instant::now() + settings.open_for);
        self.failures = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_success() {
        let settings = BreakerSettings {
            threshold: 2,
            open_for: Duration::from_secs(60),
        };
        let mut b = Breaker::default();
        assert!(!b.record(false, &settings));
        b.record(true, &settings);
        assert!(!b.record(false, &settings));
        assert!(!b.is_open(), "failures must be consecutive");
        assert!(b.record(false, &settings), "the threshold-th failure opens it");
        assert!(b.is_open());
        b.record(true, &settings);
        assert!(!b.is_open());
    }
}
