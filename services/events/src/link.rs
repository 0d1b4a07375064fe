//! Redis connections that fail fast and reconnect in the background.
//!
//! A [`RedisLink`] holds at most one multiplexed connection. Callers ask for it without waiting:
//! when Redis is down they get `None` at once and take their fallback (spool, local rate limit),
//! so an outage never adds latency to a request. Reconnection runs on one background task per
//! link with jittered exponential backoff, and every link of a process goes through one
//! [`ConnectGate`], which spaces connection attempts at least 100 ms apart: at most 10 attempts
//! per second per process, however many links are down (no retry storm when Redis returns).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_core::sync::MutexExt;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Minimum spacing between two connection attempts of one process.
const MIN_ATTEMPT_SPACING: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Spaces connection attempts process-wide and counts them.
#[derive(Debug)]
pub struct ConnectGate {
    next_slot: Mutex<Instant>,
    attempts: AtomicU64,
}

impl Default for ConnectGate {
    fn default() -> Self {
        Self {
            next_slot: Mutex::new(Instant::now()),
            attempts: AtomicU64::new(0),
        }
    }
}

impl ConnectGate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waits for this caller's attempt slot.
    pub async fn acquire(&self) {
        let wait = {
            let mut next = self.next_slot.lock_or_recover();
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + MIN_ATTEMPT_SPACING;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_redis_connect_attempts_total").increment(1);
    }

    /// Connection attempts made so far by every link sharing this gate.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }
}

/// A uniformly distributed number in [0, 1), for jitter (no need for a cryptographic source).
pub fn jitter_unit() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() >> 64) as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// "Equal jitter": half the backoff plus a random part of the other half.
pub fn jittered(backoff: Duration) -> Duration {
    backoff / 2 + backoff.mul_f64(jitter_unit() / 2.0)
}

pub fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}

/// Whether an error means the connection is unusable (as opposed to Redis answering with an
/// error about the command).
pub(crate) fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
        || matches!(err.kind(), ErrorKind::Client)
}

/// A connection handed out by a link, tagged with the generation it belongs to so that a failure
/// reported late does not tear down a newer connection.
#[derive(Clone)]
pub struct LinkConn {
    pub conn: MultiplexedConnection,
    generation: u64,
}

struct LinkState {
    conn: Option<MultiplexedConnection>,
    generation: u64,
    connecting: bool,
}

struct LinkInner {
    client: redis::Client,
    name: &'static str,
    response_timeout: Option<Duration>,
    gate: Arc<ConnectGate>,
    state: Mutex<LinkState>,
    up: watch::Sender<bool>,
    shutdown: CancellationToken,
}

/// One lazily (re)connected Redis connection. Cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<LinkInner>,
}

impl RedisLink {
    /// A link named `name` (in logs) whose commands time out after `response_timeout`. Starts
    /// connecting right away.
    pub fn new(
        client: redis::Client,
        name: &'static str,
        response_timeout: Option<Duration>,
        gate: Arc<ConnectGate>,
        shutdown: CancellationToken,
    ) -> Self {
        let (up, _) = watch::channel(false);
        let link = Self {
            inner: Arc::new(LinkInner {
                client,
                name,
                response_timeout,
                gate,
                state: Mutex::new(LinkState {
                    conn: None,
                    generation: 0,
                    connecting: false,
                }),
                up,
                shutdown,
            }),
        };
        link.start_connecting();
        link
    }

    /// A link of its own to the same server, with the same settings and connection gate, whose
    /// connection (and the task doing its I/O) lives on the runtime this is called on. An HTTP
    /// worker runs on a single-threaded runtime of its own: a command sent through a connection
    /// driven from another runtime costs two cross-thread wake-ups per round trip, one through a
    /// sibling made on the worker none. Starts connecting right away.
    pub fn sibling(&self, name: &'static str) -> Self {
        Self::new(
            self.inner.client.clone(),
            name,
            self.inner.response_timeout,
            self.inner.gate.clone(),
            self.inner.shutdown.clone(),
        )
    }

    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    pub fn gate(&self) -> &Arc<ConnectGate> {
        &self.inner.gate
    }

    /// The connection if Redis is believed up; otherwise `None` at once (and a reconnect is
    /// under way).
    pub fn get(&self) -> Option<LinkConn> {
        let conn = {
            let state = self.inner.state.lock_or_recover();
            state.conn.clone().map(|conn| LinkConn {
                conn,
                generation: state.generation,
            })
        };
        if conn.is_none() {
            self.start_connecting();
        }
        conn
    }

    pub fn is_up(&self) -> bool {
        *self.inner.up.borrow()
    }

    /// Waits up to `timeout` for a connection.
    pub async fn wait(&self, timeout: Duration) -> Option<LinkConn> {
        if let Some(conn) = self.get() {
            return Some(conn);
        }
        let mut up = self.inner.up.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            loop {
                if *up.borrow_and_update() {
                    return;
                }
                tokio::select! {
                    changed = up.changed() => if changed.is_err() { return },
                    _ = self.inner.shutdown.cancelled() => return,
                }
            }
        })
        .await;
        self.get()
    }

    /// Reports a failed command. A connection-level error drops the connection (callers fall
    /// back until the background task reconnects); an error Redis answered leaves it in place.
    pub fn failed(&self, used: &LinkConn, err: &RedisError) {
        if !is_connection_error(err) {
            return;
        }
        let dropped = {
            let mut state = self.inner.state.lock_or_recover();
            if state.generation == used.generation && state.conn.is_some() {
                state.conn = None;
                true
            } else {
                false
            }
        };
        if dropped {
            self.inner.up.send_replace(false);
            tracing::warn!(link = self.inner.name, error = %err, "redis connection lost; falling back while reconnecting");
            self.start_connecting();
        }
    }

    fn start_connecting(&self) {
        {
            let mut state = self.inner.state.lock_or_recover();
            if state.conn.is_some() || state.connecting || self.inner.shutdown.is_cancelled() {
                return;
            }
            state.connecting = true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.state.lock_or_recover().connecting = false;
            return;
        };
        let inner = self.inner.clone();
        runtime.spawn(async move { connect_loop(inner).await });
    }
}

async fn connect_loop(inner: Arc<LinkInner>) {
    let mut backoff = BACKOFF_START;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(inner.response_timeout);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = inner.gate.acquire() => {}
            _ = inner.shutdown.cancelled() => break,
        }
        let attempt = tokio::select! {
            r = inner.client.get_multiplexed_async_connection_with_config(&config) => r,
            _ = inner.shutdown.cancelled() => break,
        };
        match attempt {
            Ok(conn) => {
                {
                    let mut state = inner.state.lock_or_recover();
                    state.generation += 1;
                    state.conn = Some(conn);
                    state.connecting = false;
                }
                inner.up.send_replace(true);
                if failures > 0 {
                    tracing::info!(link = inner.name, "redis connection re-established");
                }
                return;
            }
            Err(e) => {
                failures += 1;
                // One line per outage, then one every ~30 attempts: enough to see it, no flood.
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(link = inner.name, error = %e, attempts = failures, "redis unreachable");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(backoff)) => {}
            _ = inner.shutdown.cancelled() => break,
        }
        backoff = next_backoff(backoff);
    }
    inner.state.lock_or_recover().connecting = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gate_spaces_attempts_by_100ms() {
        let gate = ConnectGate::new();
        let start = Instant::now();
        for _ in 0..11 {
            gate.acquire().await;
        }
        assert_eq!(gate.attempts(), 11);
        assert!(start.elapsed() >= Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_within_half_and_full_backoff() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(800));
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        }
        assert_eq!(next_backoff(Duration::from_secs(4)), BACKOFF_MAX);
    }
}
