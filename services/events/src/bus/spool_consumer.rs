//! The single-node consumer: reads the spool the publisher task of the same process writes, and
//! releases what the worker acknowledged.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Batch, ConsumerInner, EventConsumer, Receipt};
use crate::spool::{Spool, SpoolPosition};

/// The spool a publisher task writes, for a single-node consumer in the same process.
pub(crate) fn spool_consumer(spool: Arc<Spool>) -> EventConsumer {
    let cursor = spool.start();
    EventConsumer {
        inner: ConsumerInner::Spool(SpoolConsumer { spool, cursor }),
    }
}

pub(super) struct SpoolConsumer {
    spool: Arc<Spool>,
    cursor: SpoolPosition,
}

impl SpoolConsumer {
    pub(super) async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Batch> {
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

    pub(super) async fn ack(&mut self, end: SpoolPosition) -> anyhow::Result<()> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.release(end)).await??;
        Ok(())
    }
}
