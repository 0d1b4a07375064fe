//! The event bus: dataplanes emit [`BusMessage`]s without ever blocking a call; usage-workers
//! consume them in batches and acknowledge after their database transaction commits
//! (at-least-once delivery; consumers write idempotently on the message id).
//!
//! Single-node mode (no Redis, every service in one process) delivers through an in-process
//! channel.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::message::BusMessage;

/// Producer side. Cheap to clone; `emit` never blocks and never fails the caller.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::UnboundedSender<BusMessage>,
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
}

/// Consumer side.
pub struct EventConsumer {
    rx: mpsc::UnboundedReceiver<BusMessage>,
}

/// Messages handed to a consumer; acknowledge them once their effects are committed.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<BusMessage>,
}

impl EventConsumer {
    /// Up to `max` messages, waiting at most `wait` for the first one. Empty when none came.
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Batch> {
        let mut messages = Vec::new();
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(first)) => messages.push(first),
            Ok(None) => anyhow::bail!("event bus closed"),
            Err(_) => return Ok(Batch::default()),
        }
        while messages.len() < max {
            match self.rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        Ok(Batch { messages })
    }

    /// Acknowledges a batch whose effects are committed.
    pub async fn ack(&mut self, _batch: Batch) -> anyhow::Result<()> {
        Ok(())
    }
}

/// An in-process bus (single-node mode).
pub fn local_bus() -> (EventPublisher, EventConsumer) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EventPublisher { tx }, EventConsumer { rx })
}
