//! Building the bus, rate limiter, quota state and change notifier of one process from its
//! configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use gatehouse_core::config::{Config, ConfigError};

use crate::bus::{
    EventConsumer, EventPublisher, MAX_BLOCK, RedisConsumer, SpoolSlot, StreamTarget, local_bus,
    spawn_publisher, spool_consumer,
};
use crate::link::{ConnectGate, RedisLink};
use crate::notify::ChangeNotifier;
use crate::quota::QuotaState;
use crate::ratelimit::RateLimiter;
use crate::spool::Spool;

/// How long start-up waits for Redis before carrying on degraded (spooling, local limits).
const STARTUP_WAIT: Duration = Duration::from_secs(2);

/// Everything a process needs to talk to the other services at run time. Take the parts you
/// need (the fields are public so they can be moved out); keep `handle` to flush on shutdown.
pub struct Bus {
    /// Emits events (dataplane).
    pub publisher: EventPublisher,
    /// Consumes events (usage-worker). There is one per process; in single-node mode it reads
    /// the spool the publisher of the same process writes.
    pub consumer: EventConsumer,
    pub limiter: RateLimiter,
    pub quota: QuotaState,
    pub notifier: ChangeNotifier,
    pub handle: BusHandle,
}

/// Shutdown and statistics of a [`Bus`].
pub struct BusHandle {
    close: CancellationToken,
    publisher_task: Option<JoinHandle<()>>,
    gate: Option<Arc<ConnectGate>>,
    spool: Option<Arc<Spool>>,
}

impl BusHandle {
    /// Flushes what was emitted (to Redis or the spool) and stops the publisher. Call after the
    /// services that emit have stopped.
    pub async fn close(mut self) {
        self.close.cancel();
        if let Some(task) = self.publisher_task.take() {
            let _ = task.await;
        }
    }

    /// Connection attempts made to Redis by this process so far (0 without Redis).
    pub fn redis_connect_attempts(&self) -> u64 {
        self.gate.as_ref().map_or(0, |g| g.attempts())
    }

    pub fn is_redis(&self) -> bool {
        self.gate.is_some()
    }

    /// Bytes waiting in the single-node spool (Redis mode opens its spool only when needed).
    pub fn spool_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.bytes())
    }
}

impl Bus {
    /// Redis when `redis.url` is set, single-node mode (durable spool, in-process sharing)
    /// otherwise. Never waits more than a couple of seconds for Redis: if it is down the
    /// process starts degraded and reconnects in the background.
    pub async fn from_config(cfg: &Config, shutdown: CancellationToken) -> anyhow::Result<Bus> {
        let close = CancellationToken::new();
        let spool_dir = cfg.dataplane.spool_dir.clone();
        let slot = |spool| SpoolSlot {
            dir: spool_dir.clone(),
            max_bytes: cfg.dataplane.spool_max_bytes,
            segment_bytes: cfg.dataplane.spool_segment_bytes,
            spool,
        };
        match cfg.redis_url() {
            None => {
                let spool = Arc::new(
                    Spool::open(
                        &spool_dir,
                        cfg.dataplane.spool_max_bytes,
                        cfg.dataplane.spool_segment_bytes,
                    )
                    .map_err(|e| ConfigError::new("dataplane.spool_dir", e.to_string()))?,
                );
                let (publisher, task) = spawn_publisher(None, slot(Some(spool.clone())), close.clone())
                    .context("starting the event publisher")?;
                Ok(Bus {
                    publisher,
                    consumer: spool_consumer(spool.clone()),
                    limiter: RateLimiter::local(),
                    quota: QuotaState::local(),
                    notifier: ChangeNotifier::local(),
                    handle: BusHandle {
                        close,
                        publisher_task: Some(task),
                        gate: None,
                        spool: Some(spool),
                    },
                })
            }
            Some(url) => {
                let client =
                    redis::Client::open(url).map_err(|e| ConfigError::new("redis.url", e.to_string()))?;
                let gate = ConnectGate::new();
                let link = |name, timeout| {
                    RedisLink::new(
                        client.clone(),
                        name,
                        Some(timeout),
                        gate.clone(),
                        shutdown.clone(),
                    )
                };
                let publish = link("events-publish", Duration::from_secs(5));
                // Blocking reads get a connection of their own, whose timeout outlasts the block
                // (a shared connection's default 500 ms would cut XREADGROUP BLOCK short).
                let consume = link("events-consume", MAX_BLOCK + Duration::from_secs(5));
                let limits = link("ratelimit", Duration::from_millis(500));
                let quotas = link("quota", Duration::from_secs(2));
                let notify = link("notify", Duration::from_secs(2));
                let prefix = cfg.redis.key_prefix.as_str();

                let (publisher, task) = spawn_publisher(
                    Some(StreamTarget {
                        link: publish.clone(),
                        stream: cfg.redis.events_stream.clone(),
                        maxlen: cfg.redis.events_stream_maxlen,
                    }),
                    slot(None),
                    close.clone(),
                )
                .map_err(|e| ConfigError::new("dataplane.spool_dir", e.to_string()))?;
                let consumer_name = if cfg.usage_worker.consumer_name.is_empty() {
                    default_consumer_name()
                } else {
                    cfg.usage_worker.consumer_name.clone()
                };
                let consumer = RedisConsumer::consumer(
                    consume,
                    publish.clone(),
                    cfg.redis.events_stream.clone(),
                    cfg.redis.events_group.clone(),
                    consumer_name,
                    Duration::from_millis(cfg.usage_worker.claim_idle_ms),
                );
                let limiter = RateLimiter::redis(limits.clone(), prefix, shutdown.clone());
                let quota = QuotaState::redis(quotas, prefix, shutdown.clone());
                let notifier = ChangeNotifier::with_link(notify, shutdown.clone());
                // Give Redis a moment, so that a healthy start is not a degraded one.
                let (_, _, loaded) = tokio::join!(
                    publish.wait(STARTUP_WAIT),
                    limits.wait(STARTUP_WAIT),
                    quota.wait_loaded(STARTUP_WAIT)
                );
                if !loaded {
                    tracing::warn!(
                        "redis not reachable at start; continuing degraded (spooling events, local rate limits)"
                    );
                }
                Ok(Bus {
                    publisher,
                    consumer,
                    limiter,
                    quota,
                    notifier,
                    handle: BusHandle {
                        close,
                        publisher_task: Some(task),
                        gate: Some(gate),
                        spool: None,
                    },
                })
            }
        }
    }

    /// Everything in process and nothing durable (tests of code that only emits or limits).
    pub fn in_memory() -> Bus {
        let (publisher, consumer) = local_bus();
        Bus {
            publisher,
            consumer,
            limiter: RateLimiter::local(),
            quota: QuotaState::local(),
            notifier: ChangeNotifier::local(),
            handle: BusHandle {
                close: CancellationToken::new(),
                publisher_task: None,
                gate: None,
                spool: None,
            },
        }
    }
}

/// `<host name>-<pid>`: stable for a pod (whose pid is usually 1), distinct for processes
/// sharing a host.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gatehouse".to_owned());
    format!("{host}-{}", std::process::id())
}
