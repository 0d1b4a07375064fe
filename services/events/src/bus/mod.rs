//! The event bus: dataplanes emit [`BusMessage`]s without ever blocking a call; usage-workers
//! consume them in batches and acknowledge after their database transaction commits
//! (at-least-once delivery; consumers write idempotently on the message id).
//!
//! Three transports sit behind the same two types:
//! - **Redis** (`redis.url` set): a background task batches emitted messages and `XADD`s them
//!   (pipelined, approximate `MAXLEN` trimming) to `redis.events_stream`. While Redis is
//!   unreachable it appends them to the local disk [`Spool`] instead, and drains the spool back
//!   into the stream once Redis answers, deleting a segment only after Redis accepted all of it.
//!   Workers read through a consumer group (`XREADGROUP … BLOCK` on a connection of their own),
//!   re-read their own pending entries on start, claim entries idle for too long from dead
//!   workers (`XAUTOCLAIM`), and `XACK` (then `XDEL`) only what the caller acknowledged.
//! - **Spool** (single-node mode, `gatehouse up` without Redis): the publisher appends to the
//!   spool and the consumer of the same process reads from it; a segment is deleted once the
//!   worker acknowledged everything in it, so an accepted event survives a restart.
//! - **Memory** ([`local_bus`]): an in-process channel, for tests of code that only emits.
//!
//! [`Spool`]: crate::spool::Spool

mod publisher;
mod redis_consumer;
mod spool_consumer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::link::RedisLink;
use crate::message::BusMessage;
use crate::spool::SpoolPosition;

pub(crate) use publisher::{SpoolSlot, StreamTarget, spawn_publisher};
pub(crate) use redis_consumer::{MAX_BLOCK, RedisConsumer};
pub(crate) use spool_consumer::spool_consumer;

use spool_consumer::SpoolConsumer;

/// The field of a stream entry that carries the JSON-encoded message.
pub const STREAM_FIELD: &str = "m";

/// Producer side. Cheap to clone; `emit` never blocks and never fails the caller.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::UnboundedSender<BusMessage>,
    health: Arc<PublisherHealth>,
}

/// What readiness needs to know about a publisher.
#[derive(Debug, Default)]
struct PublisherHealth {
    /// Events held in memory because neither Redis nor the spool took them.
    stuck: AtomicUsize,
    /// Redis is unreachable and events go to the spool.
    spooling: AtomicBool,
}

impl EventPublisher {
    /// Queues `message` for delivery.
    pub fn emit(&self, message: BusMessage) {
        metrics::counter!("gatehouse_events_emitted_total").increment(1);
        if self.tx.send(message).is_err() {
            metrics::counter!("gatehouse_events_undeliverable_total").increment(1);
            tracing::error!("event bus closed; event not delivered");
        }
    }

    /// For readiness: fails while events pile up in memory because neither Redis nor the spool
    /// accepts them (spool full or unwritable). Spooling itself is healthy.
    pub fn check(&self) -> Result<(), String> {
        match self.health.stuck.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(format!(
                "{n} event(s) held in memory: the event spool is full or unwritable"
            )),
        }
    }

    /// Whether events currently go to the disk spool because Redis is unreachable.
    pub fn is_spooling(&self) -> bool {
        self.health.spooling.load(Ordering::Relaxed)
    }
}

/// Consumer side.
pub struct EventConsumer {
    inner: ConsumerInner,
}

enum ConsumerInner {
    Memory(mpsc::UnboundedReceiver<BusMessage>),
    Spool(SpoolConsumer),
    Redis(Box<RedisConsumer>),
}

/// Messages handed to a consumer; acknowledge them once their effects are committed.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<BusMessage>,
    receipt: Receipt,
}

#[derive(Debug, Default)]
enum Receipt {
    #[default]
    None,
    Spool(SpoolPosition),
    Redis(Vec<String>),
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && matches!(self.receipt, Receipt::None)
    }
}

impl EventConsumer {
    /// Up to `max` messages, waiting at most `wait` for the first one. Empty when none came.
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Batch> {
        let max = max.max(1);
        match &mut self.inner {
            ConsumerInner::Memory(rx) => {
                let mut messages = Vec::new();
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(first)) => messages.push(first),
                    Ok(None) => anyhow::bail!("event bus closed"),
                    Err(_) => return Ok(Batch::default()),
                }
                while messages.len() < max {
                    match rx.try_recv() {
                        Ok(m) => messages.push(m),
                        Err(_) => break,
                    }
                }
                Ok(Batch {
                    messages,
                    receipt: Receipt::None,
                })
            }
            ConsumerInner::Spool(c) => c.next_batch(max, wait).await,
            ConsumerInner::Redis(c) => c.next_batch(max, wait).await,
        }
    }

    /// Acknowledges a batch whose effects are committed.
    pub async fn ack(&mut self, batch: Batch) -> anyhow::Result<()> {
        let count = batch.messages.len() as u64;
        match (&mut self.inner, batch.receipt) {
            (_, Receipt::None) => {}
            (ConsumerInner::Spool(c), Receipt::Spool(end)) => c.ack(end).await?,
            (ConsumerInner::Redis(c), Receipt::Redis(ids)) => c.ack(ids).await?,
            _ => anyhow::bail!("batch acknowledged on a consumer that did not deliver it"),
        }
        metrics::counter!("gatehouse_events_acked_total").increment(count);
        Ok(())
    }

    /// A probe of the consumer's transport, for readiness.
    pub fn probe(&self) -> BusProbe {
        match &self.inner {
            ConsumerInner::Redis(c) => BusProbe {
                link: Some(c.probe_link.clone()),
            },
            _ => BusProbe { link: None },
        }
    }
}

/// Checks that the bus a consumer reads from is reachable. Cheap to clone.
#[derive(Clone)]
pub struct BusProbe {
    link: Option<RedisLink>,
}

impl BusProbe {
    pub async fn check(&self) -> Result<(), String> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let Some(mut c) = link.get() else {
            return Err("redis unreachable".to_owned());
        };
        match redis::cmd("PING").query_async::<String>(&mut c.conn).await {
            Ok(_) => Ok(()),
            Err(e) => {
                link.failed(&c, &e);
                Err(format!("redis unreachable: {:?}", e.kind()))
            }
        }
    }
}

/// An in-process bus (single-node tests): nothing survives the process.
pub fn local_bus() -> (EventPublisher, EventConsumer) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        EventPublisher {
            tx,
            health: Arc::default(),
        },
        EventConsumer {
            inner: ConsumerInner::Memory(rx),
        },
    )
}
