//! Rate limiting with GCRA (the generic cell rate algorithm): a limit of `per_minute` requests
//! with `burst` extra requests allowed at once. Each key stores one timestamp, the "theoretical
//! arrival time" (TAT); a request is allowed when `TAT - burst_tolerance <= now`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_core::snapshot::Limit;

/// The answer to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// When refused: how long until one request would be allowed.
    pub retry_after: Duration,
}

/// GCRA parameters of a limit.
#[derive(Clone, Copy, Debug)]
pub struct Gcra {
    /// Time between two requests at the sustained rate.
    pub emission_interval: Duration,
    /// How far ahead of now the TAT may run: `burst` extra requests.
    pub burst_tolerance: Duration,
}

impl Gcra {
    pub fn of(limit: Limit) -> Self {
        let per_minute = limit.per_minute.max(1);
        let emission_interval = Duration::from_nanos(60_000_000_000 / per_minute as u64);
        Self {
            emission_interval,
            burst_tolerance: emission_interval * limit.burst,
        }
    }
}

/// Limits shared by every caller in the process.
#[derive(Clone, Default)]
pub struct RateLimiter {
    local: Arc<Mutex<LocalState>>,
}

#[derive(Default)]
struct LocalState {
    tat: HashMap<String, Instant>,
    checks_since_sweep: u32,
}

impl RateLimiter {
    /// In-process limits (single-node mode).
    pub fn local() -> Self {
        Self::default()
    }

    /// Checks and, if allowed, counts one request against `key` under `limit`.
    pub async fn check(&self, key: &str, limit: Limit) -> Decision {
        self.check_local(key, limit, Instant::now())
    }

    fn check_local(&self, key: &str, limit: Limit, now: Instant) -> Decision {
        let gcra = Gcra::of(limit);
        let mut state = self.local.lock().expect("rate limiter lock");
        state.checks_since_sweep += 1;
        if state.checks_since_sweep >= 10_000 {
            state.checks_since_sweep = 0;
            // Keys whose TAT is in the past carry no state worth keeping.
            state.tat.retain(|_, tat| *tat > now);
        }
        let tat = state.tat.get(key).copied().unwrap_or(now).max(now);
        let allow_at = tat.checked_sub(gcra.burst_tolerance).unwrap_or(now);
        if allow_at <= now {
            state.tat.insert(key.to_owned(), tat + gcra.emission_interval);
            Decision {
                allowed: true,
                retry_after: Duration::ZERO,
            }
        } else {
            Decision {
                allowed: false,
                retry_after: allow_at - now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_burst_then_sustained_rate() {
        let limiter = RateLimiter::local();
        let limit = Limit {
            per_minute: 60,
            burst: 4,
        };
        let start = Instant::now();
        // burst + 1 at once (the first request plus `burst` extra).
        let admitted = (0..20)
            .filter(|_| limiter.check_local("k", limit, start).allowed)
            .count();
        assert_eq!(admitted, 5);
        let refused = limiter.check_local("k", limit, start);
        assert!(!refused.allowed);
        assert!(
            refused.retry_after > Duration::from_millis(900) && refused.retry_after <= Duration::from_secs(1)
        );
        // One more per second afterwards.
        assert!(
            limiter
                .check_local("k", limit, start + Duration::from_secs(1))
                .allowed
        );
        assert!(
            !limiter
                .check_local("k", limit, start + Duration::from_secs(1))
                .allowed
        );
    }

    #[test]
    fn keys_are_independent() {
        let limiter = RateLimiter::local();
        let limit = Limit {
            per_minute: 1,
            burst: 0,
        };
        let now = Instant::now();
        assert!(limiter.check_local("a", limit, now).allowed);
        assert!(limiter.check_local("b", limit, now).allowed);
        assert!(!limiter.check_local("a", limit, now).allowed);
    }
}
