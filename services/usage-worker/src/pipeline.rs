//! The consume loop: take a batch from the bus, write it (retrying until it commits), then
//! acknowledge it, publish what changed and re-check the quotas of the orgs it touched.
//!
//! Delivery is at-least-once and every write is idempotent, so a crash at any point is safe: a
//! batch written but not acknowledged is delivered again and changes nothing the second time.
//! On shutdown the batch in flight is finished (written and acknowledged) before the loop stops,
//! unless the database stays down past the grace period (then it is redelivered later).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::OrgId;
use gatehouse_core::sync::MutexExt;
use gatehouse_db::Db;
use gatehouse_events::{ChangeNotifier, EventConsumer, QuotaState};

use crate::ingest;

/// How long the loop may fail before readiness reports it.
const STUCK_AFTER: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether the loop is making progress (for readiness).
#[derive(Debug, Default)]
pub struct PipelineHealth {
    failing_since: Mutex<Option<(Instant, String)>>,
}

impl PipelineHealth {
    fn failed(&self, problem: String) {
        let mut since = self.failing_since.lock_or_recover();
        match since.as_mut() {
            Some((_, p)) => *p = problem,
            None => *since = Some((Instant::now(), problem)),
        }
    }

    fn ok(&self) {
        *self.failing_since.lock_or_recover() = None;
    }

    pub fn check(&self) -> Result<(), String> {
        match &*self.failing_since.lock_or_recover() {
            Some((since, problem)) if since.elapsed() >= STUCK_AFTER => Err(format!(
                "no batch written for {}s: {problem}",
                since.elapsed().as_secs()
            )),
            _ => Ok(()),
        }
    }
}

/// What the loop works with besides its consumer.
#[derive(Clone)]
pub struct Pipeline {
    pub db: Db,
    pub notifier: ChangeNotifier,
    pub quota: QuotaState,
    /// Whether plans' hard limits apply (`billing.enforce_hard_limits`).
    pub hard_limits: crate::quota::HardLimits,
    pub batch_size: usize,
    /// How long a batch in flight may keep retrying after shutdown was requested.
    pub grace: Duration,
    pub health: Arc<PipelineHealth>,
    /// Orgs whose usage grew, for the usage-alert task.
    pub usage_grew: Option<mpsc::UnboundedSender<OrgId>>,
}

impl Pipeline {
    /// Runs until `stop` is cancelled (finishing the batch in flight).
    pub async fn run(self, mut consumer: EventConsumer, stop: CancellationToken) {
        let mut backoff = BACKOFF_START;
        while !stop.is_cancelled() {
            let batch = match consumer.next_batch(self.batch_size, Duration::from_secs(1)).await {
                Ok(batch) => batch,
                Err(e) => {
                    self.health.failed(format!("event bus: {e}"));
                    tracing::warn!(error = %e, "cannot read events; retrying");
                    sleep_or_stop(&mut backoff, &stop).await;
                    continue;
                }
            };
            backoff = BACKOFF_START;
            if batch.messages.is_empty() {
                if !batch.is_empty() {
                    let _ = consumer.ack(batch).await;
                }
                self.health.ok();
                continue;
            }
            let started = Instant::now();
            let Some(written) = self.write_until_committed(&batch.messages, &stop).await else {
                tracing::warn!(
                    events = batch.messages.len(),
                    "stopping with a batch not written; it will be redelivered"
                );
                return;
            };
            self.health.ok();
            let count = batch.messages.len();
            let oldest_event = batch
                .messages
                .iter()
                .map(|m| match m {
                    gatehouse_events::BusMessage::Call(c) => c.occurred_at,
                    gatehouse_events::BusMessage::ToolDrift(d) => d.occurred_at,
                })
                .min();
            if let Err(e) = consumer.ack(batch).await {
                // Written but not acknowledged: redelivered later and deduplicated.
                tracing::warn!(error = %e, "could not acknowledge a written batch; it will be redelivered");
            }
            metrics::counter!("gatehouse_worker_batches_total").increment(1);
            metrics::counter!("gatehouse_worker_events_total").increment(count as u64);
            metrics::counter!("gatehouse_worker_usage_events_written_total")
                .increment(written.usage_inserted());
            metrics::counter!("gatehouse_worker_audit_events_written_total")
                .increment(written.audit_inserted() as u64);
            metrics::counter!("gatehouse_worker_duplicates_total").increment(
                (count as u64).saturating_sub(written.usage_inserted().max(written.audit_inserted() as u64)),
            );
            metrics::histogram!("gatehouse_worker_batch_seconds").record(started.elapsed().as_secs_f64());
            if let Some(oldest) = oldest_event {
                // Ingest lag: from the oldest event of the batch to its commit.
                let lag = (OffsetDateTime::now_utc() - oldest).as_seconds_f64().max(0.0);
                metrics::histogram!("gatehouse_worker_lag_seconds").record(lag);
            }
            self.after_commit(&written).await;
        }
    }

    async fn write_until_committed(
        &self,
        messages: &[gatehouse_events::BusMessage],
        stop: &CancellationToken,
    ) -> Option<ingest::BatchWrite> {
        let mut backoff = BACKOFF_START;
        let mut stop_requested_at: Option<Instant> = None;
        loop {
            match ingest::write_batch(&self.db, messages).await {
                Ok(written) => return Some(written),
                Err(e) => {
                    self.health.failed(format!("database: {e}"));
                    tracing::warn!(error = %e, events = messages.len(), "writing a batch failed; retrying");
                }
            }
            if stop.is_cancelled() {
                let since = *stop_requested_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.grace {
                    return None;
                }
            }
            tokio::time::sleep(crate::jittered(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Announces configuration changes (withheld tools) and re-checks the touched orgs' quotas.
    async fn after_commit(&self, written: &ingest::BatchWrite) {
        for w in written.orgs.values() {
            if let Some(change) = &w.config_change {
                self.notifier.publish(change.clone()).await;
            }
        }
        // Every touched org, even when nothing new was inserted: a redelivery after a crash
        // between commit and this point must still get its quota enforced.
        let touched: BTreeSet<OrgId> = written.orgs.keys().copied().collect();
        let now = OffsetDateTime::now_utc();
        for org in touched {
            if let Err(e) = crate::quota::enforce(&self.db, &self.quota, org, now, self.hard_limits).await {
                tracing::warn!(org_id = %org, error = %e, "quota check failed; the sweep will retry");
            }
            if written.orgs[&org].usage_inserted > 0
                && let Some(tx) = &self.usage_grew
            {
                let _ = tx.send(org);
            }
        }
    }
}

async fn sleep_or_stop(backoff: &mut Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(crate::jittered(*backoff)) => {}
        _ = stop.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}
