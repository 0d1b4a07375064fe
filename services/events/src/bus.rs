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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use redis::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::link::RedisLink;
use crate::message::BusMessage;
use crate::spool::{Spool, SpoolPosition, has_segments};

/// The field of a stream entry that carries the JSON-encoded message.
pub const STREAM_FIELD: &str = "m";
/// Messages handed to Redis or the spool in one go.
const PUBLISH_BATCH_MAX: usize = 512;
/// How long the publisher lets events gather after delivering a batch. A sender wakes a receiver
/// parked on the channel (a cross-thread wake-up costing more CPU than the event itself) for every
/// event sent to an idle channel, and none while the receiver sleeps here; under load this turns
/// one wake-up per call into one per linger. Events wait at most this much longer.
const PUBLISH_LINGER: Duration = Duration::from_millis(2);
/// XADDs per pipeline round trip.
const PIPELINE_CHUNK: usize = 256;
/// Spool chunks replayed per publisher iteration (keeps new events flowing meanwhile).
const REPLAY_CHUNKS_PER_ROUND: usize = 8;
/// Longest a consumer blocks in one XREADGROUP (its connection's timeout is longer).
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(5);

/// Producer side. Cheap to clone; `emit` never blocks and never fails the caller.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::UnboundedSender<BusMessage>,
    health: Arc<PublisherHealth>,
}

/// What readiness needs to know about a publisher.
#[derive(Debug, Default)]
pub(crate) struct PublisherHealth {
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

// ---------------------------------------------------------------------------------------------
// Publisher task (Redis and spool transports)

/// Where the stream lives.
#[derive(Clone)]
pub(crate) struct StreamTarget {
    pub link: RedisLink,
    pub stream: String,
    pub maxlen: usize,
}

/// The spool, opened when first needed (a Redis-mode process that never loses Redis never
/// touches the disk).
pub(crate) struct SpoolSlot {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub spool: Option<Arc<Spool>>,
}

impl SpoolSlot {
    fn get(&mut self) -> std::io::Result<Arc<Spool>> {
        if let Some(spool) = &self.spool {
            return Ok(spool.clone());
        }
        let spool = Arc::new(Spool::open(&self.dir, self.max_bytes, self.segment_bytes)?);
        tracing::info!(dir = %self.dir.display(), bytes = spool.bytes(), "event spool opened");
        self.spool = Some(spool.clone());
        Ok(spool)
    }
}

pub(crate) struct PublisherTask {
    rx: mpsc::UnboundedReceiver<BusMessage>,
    health: Arc<PublisherHealth>,
    target: Option<StreamTarget>,
    spool: SpoolSlot,
    /// Messages neither Redis nor the spool took yet (kept, never dropped).
    backlog: VecDeque<BusMessage>,
    replay_cursor: Option<SpoolPosition>,
    last_stuck_log: Option<Instant>,
}

/// Builds a publisher whose task delivers to `target` (Redis), or only to the spool when
/// `target` is `None`. In Redis mode an existing spool left by an earlier run is opened at once,
/// so that it gets replayed.
pub(crate) fn spawn_publisher(
    target: Option<StreamTarget>,
    mut spool: SpoolSlot,
    close: CancellationToken,
) -> std::io::Result<(EventPublisher, tokio::task::JoinHandle<()>)> {
    if target.is_none() || has_segments(&spool.dir) {
        spool.get()?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let health = Arc::new(PublisherHealth::default());
    let task = PublisherTask {
        rx,
        health: health.clone(),
        target,
        spool,
        backlog: VecDeque::new(),
        replay_cursor: None,
        last_stuck_log: None,
    };
    let handle = tokio::spawn(task.run(close));
    Ok((EventPublisher { tx, health }, handle))
}

/// The spool a publisher task writes, for a single-node consumer in the same process.
pub(crate) fn spool_consumer(spool: Arc<Spool>) -> EventConsumer {
    let cursor = spool.start();
    EventConsumer {
        inner: ConsumerInner::Spool(SpoolConsumer { spool, cursor }),
    }
}

impl PublisherTask {
    async fn run(mut self, close: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                biased;
                _ = close.cancelled() => {
                    while let Ok(m) = self.rx.try_recv() {
                        self.backlog.push_back(m);
                    }
                    self.finish().await;
                    return;
                }
                received = self.rx.recv() => match received {
                    Some(m) => {
                        batch.push(m);
                        while batch.len() < PUBLISH_BATCH_MAX {
                            match self.rx.try_recv() {
                                Ok(m) => batch.push(m),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        self.finish().await;
                        return;
                    }
                },
                _ = tick.tick() => {}
            }
            if !self.backlog.is_empty() {
                let held: Vec<BusMessage> = self.backlog.drain(..).collect();
                self.deliver(held).await;
            }
            let gathered = !batch.is_empty();
            if gathered {
                self.deliver(batch).await;
            }
            self.replay_some().await;
            if let Some(target) = &self.target {
                let spooled = self.spool.spool.as_ref().is_some_and(|s| !s.is_empty());
                self.health
                    .spooling
                    .store(spooled || !target.link.is_up(), Ordering::Relaxed);
            }
            if gathered {
                tokio::select! {
                    _ = tokio::time::sleep(PUBLISH_LINGER) => {}
                    _ = close.cancelled() => {}
                }
            }
        }
    }

    /// On shutdown: everything still in memory goes to Redis or the spool, retrying briefly.
    async fn finish(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.backlog.is_empty() {
            let held: Vec<BusMessage> = self.backlog.drain(..).collect();
            self.deliver(held).await;
            if self.backlog.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !self.backlog.is_empty() {
            metrics::counter!("gatehouse_events_lost_total").increment(self.backlog.len() as u64);
            tracing::error!(
                events = self.backlog.len(),
                "shutting down with events neither Redis nor the spool accepted; they are lost"
            );
        }
    }

    async fn deliver(&mut self, messages: Vec<BusMessage>) {
        let mut rest = messages;
        if let Some(target) = &self.target {
            if let Some(conn) = target.link.get() {
                let (sent, error) = xadd_all(target, conn.clone(), &rest).await;
                metrics::counter!("gatehouse_events_published_total").increment(sent as u64);
                rest.drain(..sent);
                match error {
                    None => {}
                    Some(e) => {
                        target.link.failed(&conn, &e);
                        tracing::warn!(error = %e, events = rest.len(), "XADD failed; spooling");
                    }
                }
            }
            if !rest.is_empty() {
                self.health.spooling.store(true, Ordering::Relaxed);
            }
        }
        if rest.is_empty() {
            self.note_unstuck();
            return;
        }
        let written = match self.spool.get() {
            Ok(spool) => {
                let count = rest.len();
                let (result, back) = tokio::task::spawn_blocking(move || {
                    let result = spool.append(&rest);
                    (result, rest)
                })
                .await
                .expect("spool append task");
                rest = back;
                result.map(|()| count).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("cannot open {}: {e}", self.spool.dir.display())),
        };
        match written {
            Ok(count) => {
                metrics::counter!("gatehouse_events_spooled_total").increment(count as u64);
                self.note_unstuck();
            }
            Err(problem) => {
                self.backlog.extend(rest);
                self.health.stuck.store(self.backlog.len(), Ordering::Relaxed);
                let log_now = self
                    .last_stuck_log
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
                if log_now {
                    self.last_stuck_log = Some(Instant::now());
                    tracing::error!(
                        problem = %problem,
                        held_in_memory = self.backlog.len(),
                        "cannot spool events; keeping them in memory and retrying"
                    );
                }
            }
        }
    }

    fn note_unstuck(&mut self) {
        if self.backlog.is_empty() {
            self.health.stuck.store(0, Ordering::Relaxed);
        }
    }

    /// Redis mode: moves spooled events back into the stream while Redis answers.
    async fn replay_some(&mut self) {
        let Some(target) = &self.target else { return };
        let Some(spool) = self.spool.spool.clone() else {
            return;
        };
        if spool.is_empty() {
            return;
        }
        for _ in 0..REPLAY_CHUNKS_PER_ROUND {
            let Some(conn) = target.link.get() else { return };
            let cursor = *self.replay_cursor.get_or_insert_with(|| spool.start());
            let reader = spool.clone();
            let read = tokio::task::spawn_blocking(move || reader.read(cursor, PUBLISH_BATCH_MAX))
                .await
                .expect("spool read task");
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the event spool");
                    return;
                }
            };
            if read.messages.is_empty() && read.end == cursor {
                // Caught up with what is on disk; if the segment being written is fully
                // replayed, releasing it closes and deletes it.
                let releaser = spool.clone();
                let _ = tokio::task::spawn_blocking(move || releaser.release(cursor)).await;
                return;
            }
            let (sent, error) = xadd_all(target, conn.clone(), &read.messages).await;
            if let Some(e) = error {
                target.link.failed(&conn, &e);
                tracing::warn!(error = %e, "replaying the spool to Redis failed; will retry");
                return;
            }
            metrics::counter!("gatehouse_events_replayed_total").increment(sent as u64);
            self.replay_cursor = Some(read.end);
            let releaser = spool.clone();
            let released = tokio::task::spawn_blocking(move || releaser.release(read.end))
                .await
                .expect("spool release task");
            if let Err(e) = released {
                tracing::error!(error = %e, "cannot delete a replayed spool segment");
                return;
            }
            if spool.is_empty() {
                tracing::info!("event spool drained into Redis");
                return;
            }
        }
    }
}

/// XADDs `messages` in pipelined chunks. Returns how many Redis confirmed (a prefix) and the
/// error that stopped it, if any.
async fn xadd_all(
    target: &StreamTarget,
    conn: crate::link::LinkConn,
    messages: &[BusMessage],
) -> (usize, Option<redis::RedisError>) {
    let mut conn = conn.conn;
    let mut sent = 0;
    for chunk in messages.chunks(PIPELINE_CHUNK) {
        let mut pipe = redis::pipe();
        for m in chunk {
            let payload = serde_json::to_vec(m).expect("bus messages serialise");
            pipe.cmd("XADD")
                .arg(&target.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(target.maxlen)
                .arg("*")
                .arg(STREAM_FIELD)
                .arg(payload)
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            return (sent, Some(e));
        }
        sent += chunk.len();
    }
    (sent, None)
}

// ---------------------------------------------------------------------------------------------
// Spool consumer (single-node mode)

struct SpoolConsumer {
    spool: Arc<Spool>,
    cursor: SpoolPosition,
}

impl SpoolConsumer {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Batch> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.spool.appended();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (spool, cursor) = (self.spool.clone(), self.cursor);
            let read = tokio::task::spawn_blocking(move || spool.read(cursor, max)).await??;
            self.cursor = read.end;
            if !read.messages.is_empty() {
                metrics::counter!("gatehouse_events_consumed_total").increment(read.messages.len() as u64);
                return Ok(Batch {
                    messages: read.messages,
                    receipt: Receipt::Spool(read.end),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Batch::default());
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    async fn ack(&mut self, end: SpoolPosition) -> anyhow::Result<()> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.release(end)).await??;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Redis consumer group

pub(crate) struct RedisConsumer {
    /// Dedicated to this consumer: blocking reads and acknowledgements, one at a time.
    pub link: RedisLink,
    /// Anything else (readiness probes must not queue behind a blocking read).
    pub probe_link: RedisLink,
    pub stream: String,
    pub group: String,
    pub name: String,
    pub claim_idle: Duration,
    pub claim_every: Duration,
    /// Re-reading our own pending entries (after start or a lost connection) from this id.
    pending_cursor: Option<String>,
    group_ready: bool,
    claim_cursor: String,
    next_claim: Instant,
    next_cleanup: Instant,
}

/// One entry read from the stream: its id and the payload, if the entry still exists.
struct Entry {
    id: String,
    payload: Option<Vec<u8>>,
}

impl RedisConsumer {
    pub fn consumer(
        link: RedisLink,
        probe_link: RedisLink,
        stream: String,
        group: String,
        name: String,
        claim_idle: Duration,
    ) -> EventConsumer {
        EventConsumer {
            inner: ConsumerInner::Redis(Box::new(RedisConsumer {
                link,
                probe_link,
                stream,
                group,
                name,
                claim_idle,
                claim_every: (claim_idle / 3).max(Duration::from_millis(500)),
                pending_cursor: Some("0".to_owned()),
                group_ready: false,
                claim_cursor: "0-0".to_owned(),
                next_claim: Instant::now(),
                next_cleanup: Instant::now() + Duration::from_secs(60),
            })),
        }
    }

    async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Batch> {
        let Some(conn) = self.link.wait(wait.min(MAX_BLOCK)).await else {
            anyhow::bail!("redis unreachable");
        };
        match self.read(conn.conn.clone(), max, wait).await {
            Ok(batch) => Ok(batch),
            Err(e) => {
                self.link.failed(&conn, &e);
                if e.code() == Some("NOGROUP") {
                    self.group_ready = false;
                }
                // Whatever was delivered to us and not acknowledged comes back this way.
                self.pending_cursor = Some("0".to_owned());
                Err(anyhow::anyhow!("reading the event stream: {e}"))
            }
        }
    }

    async fn read(
        &mut self,
        mut conn: redis::aio::MultiplexedConnection,
        max: usize,
        wait: Duration,
    ) -> redis::RedisResult<Batch> {
        if !self.group_ready {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&self.stream)
                .arg(&self.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {
                    tracing::info!(stream = %self.stream, group = %self.group, "consumer group created")
                }
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
            self.group_ready = true;
        }

        // 1. Our own pending entries (delivered before a restart or a lost connection).
        if let Some(cursor) = self.pending_cursor.clone() {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(max)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&cursor)
                .query_async(&mut conn)
                .await?;
            let entries = parse_read_reply(reply);
            match entries.last() {
                None => self.pending_cursor = None,
                Some(last) => {
                    self.pending_cursor = Some(last.id.clone());
                    return self.decode_batch(&mut conn, entries).await;
                }
            }
        }

        // 2. Entries a dead consumer left pending for too long.
        let now = Instant::now();
        if now >= self.next_claim {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.name)
                .arg(self.claim_idle.as_millis() as u64)
                .arg(&self.claim_cursor)
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await?;
            let (next, entries) = parse_autoclaim_reply(reply);
            if next == "0-0" {
                self.claim_cursor = "0-0".to_owned();
                self.next_claim = now + self.claim_every;
            } else {
                self.claim_cursor = next;
            }
            if !entries.is_empty() {
                metrics::counter!("gatehouse_events_claimed_total").increment(entries.len() as u64);
                tracing::info!(
                    entries = entries.len(),
                    "claimed entries left pending by another consumer"
                );
                return self.decode_batch(&mut conn, entries).await;
            }
        }
        if now >= self.next_cleanup {
            self.next_cleanup = now + Duration::from_secs(600);
            self.forget_idle_consumers(&mut conn).await;
        }

        // 3. New entries.
        let block = wait.min(MAX_BLOCK);
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let entries = parse_read_reply(reply);
        self.decode_batch(&mut conn, entries).await
    }

    /// Decodes entries. Entries that no longer exist (trimmed) or cannot be decoded are
    /// acknowledged at once; undecodable ones are copied to `<stream>:dead` first.
    async fn decode_batch(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        entries: Vec<Entry>,
    ) -> redis::RedisResult<Batch> {
        let mut messages = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        let mut discard = Vec::new();
        let mut dead = Vec::new();
        for entry in entries {
            match entry.payload {
                None => discard.push(entry.id),
                Some(payload) => match serde_json::from_slice::<BusMessage>(&payload) {
                    Ok(m) => {
                        messages.push(m);
                        ids.push(entry.id);
                    }
                    Err(e) => {
                        tracing::error!(id = %entry.id, error = %e, "undecodable event; moved to the dead-letter stream");
                        dead.push((entry.id, payload));
                    }
                },
            }
        }
        if !discard.is_empty() {
            tracing::warn!(
                entries = discard.len(),
                "pending entries were trimmed from the stream before being processed"
            );
            metrics::counter!("gatehouse_events_trimmed_total").increment(discard.len() as u64);
        }
        if !dead.is_empty() || !discard.is_empty() {
            let mut pipe = redis::pipe();
            for (id, payload) in &dead {
                pipe.cmd("XADD")
                    .arg(format!("{}:dead", self.stream))
                    .arg("*")
                    .arg("id")
                    .arg(id)
                    .arg(STREAM_FIELD)
                    .arg(payload.as_slice())
                    .ignore();
            }
            let gone: Vec<&String> = dead.iter().map(|(id, _)| id).chain(discard.iter()).collect();
            pipe.cmd("XACK")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&gone)
                .ignore();
            pipe.query_async::<()>(conn).await?;
            metrics::counter!("gatehouse_events_dead_lettered_total").increment(dead.len() as u64);
        }
        metrics::counter!("gatehouse_events_consumed_total").increment(messages.len() as u64);
        Ok(Batch {
            messages,
            receipt: if ids.is_empty() {
                Receipt::None
            } else {
                Receipt::Redis(ids)
            },
        })
    }

    async fn ack(&mut self, ids: Vec<String>) -> anyhow::Result<()> {
        let Some(conn) = self.link.get() else {
            self.pending_cursor = Some("0".to_owned());
            anyhow::bail!("redis unreachable; the batch stays pending and will be redelivered");
        };
        let mut c = conn.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&ids)
            .ignore();
        // Acknowledged entries are of no further use; the stream keeps only the backlog.
        pipe.cmd("XDEL").arg(&self.stream).arg(&ids).ignore();
        if let Err(e) = pipe.query_async::<()>(&mut c).await {
            self.link.failed(&conn, &e);
            self.pending_cursor = Some("0".to_owned());
            anyhow::bail!("acknowledging events: {e}");
        }
        Ok(())
    }

    /// Removes consumers that have been idle for a day and hold nothing (names of processes
    /// that are gone).
    async fn forget_idle_consumers(&self, conn: &mut redis::aio::MultiplexedConnection) {
        let info: redis::RedisResult<redis::streams::StreamInfoConsumersReply> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await;
        let Ok(info) = info else { return };
        for consumer in info.consumers {
            if consumer.name != self.name && consumer.pending == 0 && consumer.idle > 86_400_000 {
                let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&consumer.name)
                    .query_async(conn)
                    .await;
            }
        }
    }
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[id, [field, value, ...] | nil]` entries.
fn parse_entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else {
                return None;
            };
            if parts.is_empty() {
                return None;
            }
            let fields = if parts.len() > 1 {
                parts.remove(1)
            } else {
                Value::Nil
            };
            let id = value_to_string(&parts[0])?;
            let payload = match fields {
                Value::Array(kv) => kv.chunks(2).find_map(|pair| match pair {
                    [Value::BulkString(k), Value::BulkString(v)] if k == STREAM_FIELD.as_bytes() => {
                        Some(v.clone())
                    }
                    _ => None,
                }),
                _ => None,
            };
            // An entry with fields but without ours is as unusable as a deleted one.
            Some(Entry { id, payload })
        })
        .collect()
}

/// XREADGROUP reply: nil, or `[[stream, entries]]` (RESP2) / `{stream: entries}` (RESP3).
fn parse_read_reply(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => parse_entries(kv.remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// XAUTOCLAIM reply: `[next-id, entries, deleted-ids]`; deleted ids are returned as entries
/// without payload so they get acknowledged.
fn parse_autoclaim_reply(v: Value) -> (String, Vec<Entry>) {
    let Value::Array(mut parts) = v else {
        return ("0-0".to_owned(), Vec::new());
    };
    let next = parts
        .first()
        .and_then(value_to_string)
        .unwrap_or_else(|| "0-0".to_owned());
    let mut entries = if parts.len() > 1 {
        parse_entries(std::mem::replace(&mut parts[1], Value::Nil))
    } else {
        Vec::new()
    };
    if let Some(Value::Array(deleted)) = parts.get(2) {
        entries.extend(
            deleted
                .iter()
                .filter_map(value_to_string)
                .map(|id| Entry { id, payload: None }),
        );
    }
    (next, entries)
}
