//! Configuration-change notifications from the control plane to dataplanes.
//!
//! With Redis, changes are published on a pub/sub channel; without Redis (single-node mode, every
//! service in one process) they go through an in-process broadcast. Delivery is best effort by
//! nature (pub/sub keeps nothing): dataplanes also reconcile versions periodically, so a missed
//! message delays a change by at most one reconcile interval.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use gatehouse_core::snapshot::ConfigChange;

use crate::link::{ConnectGate, RedisLink, jittered, next_backoff};

pub const CONFIG_CHANNEL: &str = "gatehouse:config";

#[derive(Clone)]
pub struct ChangeNotifier {
    local: broadcast::Sender<ConfigChange>,
    redis: Option<RedisLink>,
}

impl ChangeNotifier {
    /// In-process delivery only (single-node mode).
    pub fn local() -> Self {
        let (local, _) = broadcast::channel(1024);
        Self { local, redis: None }
    }

    /// Publishes through Redis and relays what Redis delivers to local subscribers. Connects
    /// lazily: Redis may be down at start (readiness says so) without failing the caller.
    pub async fn redis(client: redis::Client, shutdown: CancellationToken) -> redis::RedisResult<Self> {
        let link = RedisLink::new(
            client,
            "notify",
            Some(Duration::from_secs(2)),
            ConnectGate::new(),
            shutdown.clone(),
        );
        Ok(Self::with_link(link, shutdown))
    }

    /// As [`ChangeNotifier::redis`], on a link of the caller's (sharing its connection gate).
    pub(crate) fn with_link(link: RedisLink, shutdown: CancellationToken) -> Self {
        let (local, _) = broadcast::channel(1024);
        let relay = local.clone();
        let subscriber = link.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    _ = subscriber.gate().acquire() => {}
                    _ = shutdown.cancelled() => return,
                }
                let subscribed = async {
                    let mut pubsub = subscriber.client().get_async_pubsub().await?;
                    pubsub.subscribe(CONFIG_CHANNEL).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                match tokio::select! { r = subscribed => r, _ = shutdown.cancelled() => return } {
                    Ok(mut pubsub) => {
                        backoff = Duration::from_millis(100);
                        failures = 0;
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                msg = messages.next() => match msg {
                                    Some(msg) => {
                                        match serde_json::from_slice::<ConfigChange>(msg.get_payload_bytes()) {
                                            Ok(change) => { let _ = relay.send(change); }
                                            Err(e) => tracing::warn!(error = %e, "ignoring malformed config change message"),
                                        }
                                    }
                                    None => break,
                                }
                            }
                        }
                        tracing::warn!("config change subscription lost; resubscribing");
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!(error = %e, attempts = failures, "cannot subscribe to config changes; retrying");
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(jittered(backoff)) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = next_backoff(backoff);
            }
        });
        Self {
            local,
            redis: Some(link),
        }
    }

    /// Announces a new configuration version. Never fails the caller: the change is committed and
    /// the reconcile loop will catch up if this message is lost.
    pub async fn publish(&self, change: ConfigChange) {
        match &self.redis {
            None => {
                let _ = self.local.send(change);
            }
            Some(link) => {
                let payload = serde_json::to_string(&change).expect("serialisable");
                let Some(conn) = link.wait(Duration::from_millis(250)).await else {
                    tracing::warn!(org_id = %change.org_id, "redis unreachable; config change not published, dataplanes will reconcile");
                    return;
                };
                let mut c = conn.conn.clone();
                let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(CONFIG_CHANNEL)
                    .arg(payload)
                    .query_async(&mut c)
                    .await;
                if let Err(e) = published {
                    link.failed(&conn, &e);
                    tracing::warn!(error = %e, org_id = %change.org_id, "could not publish config change; dataplanes will reconcile");
                }
            }
        }
    }

    /// Whether Redis answers (always true in single-node mode), for readiness.
    pub async fn ping(&self) -> Result<(), String> {
        match &self.redis {
            None => Ok(()),
            Some(link) => {
                let Some(conn) = link.wait(Duration::from_millis(500)).await else {
                    return Err("redis unreachable".to_owned());
                };
                let mut c = conn.conn.clone();
                match redis::cmd("PING").query_async::<String>(&mut c).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        link.failed(&conn, &e);
                        Err(format!("redis unreachable: {:?}", e.kind()))
                    }
                }
            }
        }
    }

    pub fn is_redis(&self) -> bool {
        self.redis.is_some()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ConfigChange> {
        self.local.subscribe()
    }
}
