//! Which orgs are over quota. The usage-worker decides and publishes; dataplanes refuse calls of
//! orgs in the set.
//!
//! With Redis the set lives in Redis (`<prefix>quota:over`, so a dataplane starting cold loads
//! it) and every change is announced on `<prefix>quota` (so every dataplane applies it within
//! moments). Each process keeps its own copy, so `is_over` never waits on the network: it is
//! reloaded whenever the subscription is (re)established and every 30 s as a backstop for lost
//! messages. A change made while Redis is unreachable is kept and written once it answers.
//! Without Redis (single-node mode) the one in-process set is shared by the worker and the
//! dataplane directly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::OrgId;
use gatehouse_core::sync::{MutexExt, RwLockExt};

use crate::link::{RedisLink, jittered, next_backoff};

const RELOAD_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
pub struct QuotaState {
    over: Arc<RwLock<HashSet<OrgId>>>,
    shared: Option<Arc<SharedQuota>>,
}

struct SharedQuota {
    link: RedisLink,
    set_key: String,
    channel: String,
    /// Changes not yet written to Redis (last one per org wins).
    unsynced: Mutex<HashMap<OrgId, bool>>,
    wake: Notify,
    /// True once the set was loaded from Redis.
    loaded: watch::Sender<bool>,
}

/// What travels on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct QuotaChange {
    org_id: OrgId,
    over: bool,
}

impl QuotaState {
    /// In-process state (single-node mode).
    pub fn local() -> Self {
        Self::default()
    }

    /// State shared through Redis under `key_prefix`; loads the current set and follows changes
    /// until `shutdown`.
    pub(crate) fn redis(link: RedisLink, key_prefix: &str, shutdown: CancellationToken) -> Self {
        let state = Self {
            over: Arc::default(),
            shared: Some(Arc::new(SharedQuota {
                link,
                set_key: format!("{key_prefix}quota:over"),
                channel: format!("{key_prefix}quota"),
                unsynced: Mutex::default(),
                wake: Notify::new(),
                loaded: watch::channel(false).0,
            })),
        };
        tokio::spawn(state.clone().follow(shutdown));
        state
    }

    /// Waits up to `timeout` until the set has been loaded from Redis (a cold-started dataplane
    /// should not serve an over-quota org for long). Always true in single-node mode.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let Some(shared) = &self.shared else { return true };
        let mut loaded = shared.loaded.subscribe();
        tokio::time::timeout(timeout, loaded.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn is_over(&self, org: OrgId) -> bool {
        self.over.read_or_recover().contains(&org)
    }

    /// The orgs currently over quota.
    pub fn over_orgs(&self) -> Vec<OrgId> {
        self.over.read_or_recover().iter().copied().collect()
    }

    /// Marks `org` as over (or back under) quota, here at once and, with Redis, for every
    /// process (now, or as soon as Redis answers).
    pub async fn set(&self, org: OrgId, over: bool) {
        self.apply(org, over);
        if let Some(shared) = &self.shared {
            shared.unsynced.lock_or_recover().insert(org, over);
            if !self.flush().await {
                shared.wake.notify_one();
            }
        }
    }

    fn apply(&self, org: OrgId, over: bool) {
        let mut set = self.over.write_or_recover();
        if over {
            set.insert(org);
        } else {
            set.remove(&org);
        }
    }

    /// Writes pending changes to Redis; true when nothing is left pending.
    async fn flush(&self) -> bool {
        let Some(shared) = &self.shared else { return true };
        let pending: Vec<(OrgId, bool)> = shared
            .unsynced
            .lock_or_recover()
            .iter()
            .map(|(o, v)| (*o, *v))
            .collect();
        if pending.is_empty() {
            return true;
        }
        let Some(conn) = shared.link.get() else {
            return false;
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (org, over) in &pending {
            let command = if *over { "SADD" } else { "SREM" };
            pipe.cmd(command)
                .arg(&shared.set_key)
                .arg(org.to_string())
                .ignore();
            let change = serde_json::to_string(&QuotaChange {
                org_id: *org,
                over: *over,
            })
            .expect("serialisable");
            pipe.cmd("PUBLISH").arg(&shared.channel).arg(change).ignore();
        }
        let mut c = conn.conn.clone();
        match pipe.query_async::<()>(&mut c).await {
            Ok(()) => {
                let mut unsynced = shared.unsynced.lock_or_recover();
                for (org, over) in pending {
                    if unsynced.get(&org) == Some(&over) {
                        unsynced.remove(&org);
                    }
                }
                unsynced.is_empty()
            }
            Err(e) => {
                shared.link.failed(&conn, &e);
                tracing::warn!(error = %e, "cannot publish quota changes yet; will retry");
                false
            }
        }
    }

    /// Replaces the local set with Redis's, keeping changes not yet written there.
    async fn reload(&self) -> bool {
        let Some(shared) = &self.shared else { return true };
        let Some(conn) = shared.link.get() else {
            return false;
        };
        let mut c = conn.conn.clone();
        let members: redis::RedisResult<Vec<String>> = redis::cmd("SMEMBERS")
            .arg(&shared.set_key)
            .query_async(&mut c)
            .await;
        match members {
            Ok(members) => {
                let mut loaded: HashSet<OrgId> = members.iter().filter_map(|m| m.parse().ok()).collect();
                for (org, over) in shared.unsynced.lock_or_recover().iter() {
                    if *over {
                        loaded.insert(*org);
                    } else {
                        loaded.remove(org);
                    }
                }
                metrics::gauge!("gatehouse_quota_orgs_over").set(loaded.len() as f64);
                *self.over.write_or_recover() = loaded;
                shared.loaded.send_replace(true);
                true
            }
            Err(e) => {
                shared.link.failed(&conn, &e);
                false
            }
        }
    }

    /// Subscribes to changes (resubscribing with backoff), reloads the set on every
    /// subscription and periodically, and flushes pending writes.
    async fn follow(self, shutdown: CancellationToken) {
        let shared = self.shared.clone().expect("redis quota state");
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = shared.link.gate().acquire() => {}
                _ = shutdown.cancelled() => return,
            }
            let subscribed = async {
                let mut pubsub = shared.link.client().get_async_pubsub().await?;
                pubsub.subscribe(&shared.channel).await?;
                redis::RedisResult::Ok(pubsub)
            };
            let subscribed = tokio::select! {
                r = subscribed => r,
                _ = shutdown.cancelled() => return,
            };
            match subscribed {
                Ok(mut pubsub) => {
                    backoff = Duration::from_millis(100);
                    failures = 0;
                    // Subscribed first, then loaded: nothing published in between is missed.
                    shared.link.wait(Duration::from_secs(2)).await;
                    self.flush().await;
                    self.reload().await;
                    let mut messages = pubsub.on_message();
                    let mut reload = tokio::time::interval(RELOAD_EVERY);
                    reload.reset();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            msg = messages.next() => match msg {
                                Some(msg) => match serde_json::from_slice::<QuotaChange>(msg.get_payload_bytes()) {
                                    Ok(change) => {
                                        let pending = shared.unsynced.lock_or_recover().contains_key(&change.org_id);
                                        if !pending {
                                            self.apply(change.org_id, change.over);
                                        }
                                    }
                                    Err(e) => tracing::warn!(error = %e, "ignoring malformed quota message"),
                                },
                                None => break,
                            },
                            _ = reload.tick() => {
                                self.flush().await;
                                self.reload().await;
                            }
                            _ = shared.wake.notified() => {
                                if !self.flush().await {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    shared.wake.notify_one();
                                }
                            }
                        }
                    }
                    tracing::warn!("quota subscription lost; resubscribing");
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, attempts = failures, "cannot subscribe to quota changes; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(jittered(backoff)) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = next_backoff(backoff);
        }
    }
}
