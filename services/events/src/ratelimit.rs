//! Rate limiting with GCRA (the generic cell rate algorithm): a limit of `per_minute` requests
//! with `burst` extra requests allowed at once. Each key stores one timestamp, the "theoretical
//! arrival time" (TAT); a request is allowed when `TAT - burst_tolerance <= now`.
//!
//! With Redis, every replica shares each key's TAT: one Lua script reads Redis's own clock,
//! checks and advances the TAT atomically, and lets the key expire once it carries no state.
//! When Redis does not answer (connection lost, no reply within 500 ms), checks fall back at
//! once to an in-process limiter with the limit divided by the number of replicas seen recently
//! (each replica registers itself in Redis while it limits), and return to Redis as soon as the
//! connection is back. docs/operations.md, "Rate limiting when Redis is down", states the
//! resulting bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use gatehouse_core::snapshot::Limit;
use gatehouse_core::sync::MutexExt;

use crate::link::RedisLink;

/// The answer to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// When refused: how long until one request would be allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// The request was admitted (and counted).
    pub const ADMITTED: Decision = Decision {
        allowed: true,
        retry_after: Duration::ZERO,
    };
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

/// The share of `limit` one of `replicas` replicas enforces on its own: the rate divided and
/// rounded up (never below one per minute), the burst divided and rounded down.
pub fn local_share(limit: Limit, replicas: u32) -> Limit {
    let n = replicas.max(1);
    Limit {
        per_minute: limit.per_minute.div_ceil(n).max(1),
        burst: limit.burst / n,
    }
}

/// GCRA in Redis over one or more keys, all or nothing. `KEYS[i]`: a key; `ARGV[2i-1]`: its
/// emission interval (µs); `ARGV[2i]`: its burst tolerance (µs). The request is counted against
/// every key only if every key admits it. Returns {allowed (0/1), retry after (µs): the longest
/// wait among the keys that refused}. Redis's clock is the one clock every replica shares; a key
/// expires when its TAT is in the past (it then carries no state).
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local wait = 0
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local allow_at = tat - tonumber(ARGV[2 * i])
  if allow_at > now and allow_at - now > wait then wait = allow_at - now end
  tats[i] = tat
end
if wait > 0 then return {0, wait} end
for i = 1, #KEYS do
  local new_tat = tats[i] + tonumber(ARGV[2 * i - 1])
  redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return {1, 0}
"#;

/// Registers a replica and returns how many were seen within the window. `KEYS[1]`: the registry
/// (a sorted set scored by last heartbeat, Redis time in ms); `ARGV[1]`: this replica;
/// `ARGV[2]`: window (ms).
const HEARTBEAT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"#;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const REPLICA_WINDOW: Duration = Duration::from_secs(10);

/// Limits shared by every caller in the process (and, with Redis, by every replica).
#[derive(Clone, Default)]
pub struct RateLimiter {
    local: Arc<Mutex<LocalState>>,
    shared: Option<Arc<Shared>>,
    /// The connection this handle's checks try first: an HTTP worker's own
    /// ([`RateLimiter::for_worker`]). While it is not up, checks go through `shared.link`.
    own_link: Option<RedisLink>,
}

struct Shared {
    link: RedisLink,
    key_prefix: String,
    registry_key: String,
    instance: String,
    gcra: redis::Script,
    heartbeat: redis::Script,
    /// Replicas seen at the last heartbeat (what the local fallback divides by).
    replicas: AtomicU32,
    /// Set by the first check: only processes that actually limit count as replicas.
    active: AtomicBool,
    falling_back: AtomicBool,
    wake_heartbeat: tokio::sync::Notify,
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

    /// Limits shared through Redis (keys under `key_prefix`), with the local fallback.
    pub(crate) fn redis(link: RedisLink, key_prefix: &str, shutdown: CancellationToken) -> Self {
        let shared = Arc::new(Shared {
            link,
            key_prefix: format!("{key_prefix}rl:"),
            registry_key: format!("{key_prefix}rl-replicas"),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            gcra: redis::Script::new(GCRA_SCRIPT),
            heartbeat: redis::Script::new(HEARTBEAT_SCRIPT),
            replicas: AtomicU32::new(1),
            active: AtomicBool::new(false),
            falling_back: AtomicBool::new(false),
            wake_heartbeat: tokio::sync::Notify::new(),
        });
        tokio::spawn(heartbeat_loop(shared.clone(), shutdown));
        Self {
            local: Arc::default(),
            shared: Some(shared),
            own_link: None,
        }
    }

    /// The same limits (same keys, same local fallback, same replica count) for one HTTP worker:
    /// its checks go through a Redis connection made on the worker's own runtime, so that a check
    /// does not hand its round trip to another thread and back (see [`RedisLink::sibling`]). To be
    /// called on that worker. In-process limits are returned as they are.
    pub fn for_worker(&self) -> Self {
        let mut own = self.clone();
        if let Some(shared) = &self.shared {
            own.own_link = Some(shared.link.sibling("ratelimit-worker"));
        }
        own
    }

    /// Checks and, if allowed, counts one request against `key` under `limit`.
    pub async fn check(&self, key: &str, limit: Limit) -> Decision {
        self.check_all(&[(key, limit)]).await
    }

    /// Checks one request against several limits at once (e.g. the org's and the caller's): it
    /// is counted against every key only if every key admits it, so a request one limit refuses
    /// uses none of the others' budget. With Redis this is one round trip, whatever the number
    /// of keys (several keys in one script: a Redis Cluster is not supported).
    pub async fn check_all(&self, checks: &[(&str, Limit)]) -> Decision {
        if checks.is_empty() {
            return Decision::ADMITTED;
        }
        let Some(shared) = &self.shared else {
            return self.check_local(checks, Instant::now());
        };
        if !shared.active.swap(true, Ordering::Relaxed) {
            shared.wake_heartbeat.notify_one();
        }
        let connection = match self.own_link.as_ref().and_then(|own| Some((own, own.get()?))) {
            Some(own) => Some(own),
            None => shared.link.get().map(|conn| (&shared.link, conn)),
        };
        if let Some((link, conn)) = connection {
            let mut c = conn.conn.clone();
            let mut invocation = shared.gcra.prepare_invoke();
            for (key, limit) in checks {
                let gcra = Gcra::of(*limit);
                invocation
                    .key(format!("{}{key}", shared.key_prefix))
                    .arg(gcra.emission_interval.as_micros() as u64)
                    .arg(gcra.burst_tolerance.as_micros() as u64);
            }
            let answer: redis::RedisResult<(i64, i64)> = invocation.invoke_async(&mut c).await;
            match answer {
                Ok((allowed, retry_us)) => {
                    if shared.falling_back.swap(false, Ordering::Relaxed) {
                        tracing::info!("rate limits shared through Redis again");
                        metrics::gauge!("gatehouse_ratelimit_local_fallback").set(0.0);
                    }
                    return Decision {
                        allowed: allowed == 1,
                        retry_after: Duration::from_micros(retry_us.max(0) as u64),
                    };
                }
                Err(e) => link.failed(&conn, &e),
            }
        }
        if !shared.falling_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                replicas = shared.replicas.load(Ordering::Relaxed),
                "redis unreachable; enforcing rate limits locally (limit / replicas)"
            );
            metrics::gauge!("gatehouse_ratelimit_local_fallback").set(1.0);
        }
        metrics::counter!("gatehouse_ratelimit_local_checks_total").increment(1);
        let replicas = shared.replicas.load(Ordering::Relaxed);
        let shares: Vec<(&str, Limit)> = checks
            .iter()
            .map(|(key, limit)| (*key, local_share(*limit, replicas)))
            .collect();
        self.check_local(&shares, Instant::now())
    }

    /// Whether checks currently go through Redis (false in single-node mode or while falling
    /// back).
    pub fn is_shared(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.link.is_up() && !s.falling_back.load(Ordering::Relaxed))
    }

    /// Replicas the local fallback divides limits by.
    pub fn replicas(&self) -> u32 {
        self.shared
            .as_ref()
            .map_or(1, |s| s.replicas.load(Ordering::Relaxed).max(1))
    }

    /// The in-process GCRA over `checks`, all or nothing, as the Redis script does it.
    fn check_local(&self, checks: &[(&str, Limit)], now: Instant) -> Decision {
        let mut state = self.local.lock_or_recover();
        state.checks_since_sweep += 1;
        if state.checks_since_sweep >= 10_000 {
            state.checks_since_sweep = 0;
            // Keys whose TAT is in the past carry no state worth keeping.
            state.tat.retain(|_, tat| *tat > now);
        }
        let mut wait = Duration::ZERO;
        let mut next = Vec::with_capacity(checks.len());
        for (key, limit) in checks {
            let gcra = Gcra::of(*limit);
            let tat = state.tat.get(*key).copied().unwrap_or(now).max(now);
            let allow_at = tat.checked_sub(gcra.burst_tolerance).unwrap_or(now);
            wait = wait.max(allow_at.saturating_duration_since(now));
            next.push(tat + gcra.emission_interval);
        }
        if wait > Duration::ZERO {
            return Decision {
                allowed: false,
                retry_after: wait,
            };
        }
        for ((key, _), tat) in checks.iter().zip(next) {
            state.tat.insert((*key).to_owned(), tat);
        }
        Decision::ADMITTED
    }
}

/// Keeps this replica registered (once it limits anything) and learns how many there are.
async fn heartbeat_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        if shared.active.load(Ordering::Relaxed)
            && let Some(conn) = shared.link.get()
        {
            let mut c = conn.conn.clone();
            let seen: redis::RedisResult<u32> = shared
                .heartbeat
                .key(&shared.registry_key)
                .arg(&shared.instance)
                .arg(REPLICA_WINDOW.as_millis() as u64)
                .invoke_async(&mut c)
                .await;
            match seen {
                Ok(n) => {
                    shared.replicas.store(n.max(1), Ordering::Relaxed);
                    metrics::gauge!("gatehouse_ratelimit_replicas").set(n as f64);
                }
                Err(e) => shared.link.failed(&conn, &e),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = shared.wake_heartbeat.notified() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Leave the registry so the others' share grows without waiting for the window.
    if shared.active.load(Ordering::Relaxed)
        && let Some(conn) = shared.link.get()
    {
        let mut c = conn.conn.clone();
        let _: redis::RedisResult<i64> = redis::cmd("ZREM")
            .arg(&shared.registry_key)
            .arg(&shared.instance)
            .query_async(&mut c)
            .await;
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
            .filter(|_| limiter.check_local(&[("k", limit)], start).allowed)
            .count();
        assert_eq!(admitted, 5);
        let refused = limiter.check_local(&[("k", limit)], start);
        assert!(!refused.allowed);
        assert!(
            refused.retry_after > Duration::from_millis(900) && refused.retry_after <= Duration::from_secs(1)
        );
        // One more per second afterwards.
        assert!(
            limiter
                .check_local(&[("k", limit)], start + Duration::from_secs(1))
                .allowed
        );
        assert!(
            !limiter
                .check_local(&[("k", limit)], start + Duration::from_secs(1))
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
        assert!(limiter.check_local(&[("a", limit)], now).allowed);
        assert!(limiter.check_local(&[("b", limit)], now).allowed);
        assert!(!limiter.check_local(&[("a", limit)], now).allowed);
    }

    #[test]
    fn several_limits_admit_all_or_nothing() {
        let limiter = RateLimiter::local();
        let org = Limit {
            per_minute: 60,
            burst: 9,
        };
        let subject = Limit {
            per_minute: 60,
            burst: 1,
        };
        let now = Instant::now();
        let both = |now| limiter.check_local(&[("org", org), ("sub", subject)], now);
        assert!(both(now).allowed);
        assert!(both(now).allowed);
        // The subject's burst is spent: refused, and the org's budget is left untouched.
        let refused = both(now);
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::from_millis(900));
        let org_alone = (0..20)
            .filter(|_| limiter.check_local(&[("org", org)], now).allowed)
            .count();
        assert_eq!(org_alone, 8, "10 at once, of which the two admitted together");
        // Now the org refuses too: the longest wait of the two is what the caller is told.
        let refused = both(now);
        assert!(!refused.allowed);
        assert!(
            refused.retry_after > Duration::from_millis(900) && refused.retry_after <= Duration::from_secs(1)
        );
        assert!(both(now + Duration::from_secs(1)).allowed);
    }

    #[tokio::test]
    async fn no_limit_admits() {
        let limiter = RateLimiter::local();
        let decision = limiter.check_all(&[]).await;
        assert!(decision.allowed);
    }

    #[test]
    fn local_share_divides_rate_up_and_burst_down() {
        let limit = Limit {
            per_minute: 601,
            burst: 5,
        };
        assert_eq!(local_share(limit, 1), limit);
        assert_eq!(
            local_share(limit, 2),
            Limit {
                per_minute: 301,
                burst: 2
            }
        );
        assert_eq!(
            local_share(
                Limit {
                    per_minute: 1,
                    burst: 0
                },
                4
            )
            .per_minute,
            1
        );
        assert_eq!(local_share(limit, 0), limit);
    }
}
