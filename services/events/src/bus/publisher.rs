//! The publisher task behind an [`EventPublisher`] (Redis and spool transports): batches emitted
//! messages, `XADD`s them to the stream or appends them to the spool while Redis is unreachable,
//! and replays the spool into the stream once Redis answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{EventPublisher, PublisherHealth, STREAM_FIELD};
use crate::link::RedisLink;
use crate::message::BusMessage;
use crate::spool::{Spool, SpoolPosition, has_segments};

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

struct PublisherTask {
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
