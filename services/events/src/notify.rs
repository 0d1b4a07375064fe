//! Configuration-change notifications from the control plane to dataplanes.
//!
//! With Redis, changes are published on a pub/sub channel; without Redis (single-node mode, every
//! service in one process) they go through an in-process broadcast. Delivery is best effort by
//! nature (pub/sub keeps nothing): dataplanes also reconcile versions periodically, so a missed
//! message delays a change by at most one reconcile interval.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use gatehouse_core::snapshot::ConfigChange;
use gatehouse_core::sync::MutexExt;

use crate::link::{ConnectGate, RedisLink, jittered, next_backoff};

pub const CONFIG_CHANNEL: &str = "gatehouse:config";
/// Sessions ended with DELETE on one dataplane: the SHA-256 of the session id, hex-encoded (never
/// the id itself), so every replica refuses the session for what it answers on its own.
pub const SESSION_END_CHANNEL: &str = "gatehouse:session-ended";
/// The same session ends, kept (sorted by when the ids expire) for replicas that were not
/// listening when one was announced: every (re)subscription reads what is still current.
pub const SESSION_END_SET: &str = "gatehouse:sessions-ended";
/// Bound on [`SESSION_END_SET`]: the oldest ends beyond it are dropped.
const SESSION_END_SET_MAX: isize = 100_000;
/// Bound on the session ends waiting in memory for Redis to come back.
const PENDING_ENDS_MAX: usize = 10_000;

/// The SHA-256 of an ended session's id, as published on [`SESSION_END_CHANNEL`].
pub type SessionKey = [u8; 32];

#[derive(Clone)]
pub struct ChangeNotifier {
    local: broadcast::Sender<ConfigChange>,
    ended_sessions: broadcast::Sender<SessionKey>,
    redis: Option<RedisLink>,
    /// Session ends that could not be stored while Redis was unreachable, retried until stored.
    pending_ends: Arc<PendingEnds>,
}

/// Session ends (key, expiry) waiting for Redis.
#[derive(Default)]
struct PendingEnds {
    ends: Mutex<Vec<(SessionKey, i64)>>,
    added: Notify,
}

impl PendingEnds {
    fn push(&self, key: SessionKey, expires_at: i64) {
        let mut ends = self.ends.lock_or_recover();
        if ends.len() >= PENDING_ENDS_MAX {
            // The end that would expire first is the least useful to keep.
            if let Some(first) = (0..ends.len()).min_by_key(|&i| ends[i].1) {
                ends.swap_remove(first);
            }
            tracing::warn!(
                kept = PENDING_ENDS_MAX,
                "too many session ends waiting for redis; dropped the one expiring first"
            );
        }
        ends.push((key, expires_at));
        drop(ends);
        self.added.notify_one();
    }

    /// Takes what is waiting, without what has expired meanwhile.
    fn take(&self, now: i64) -> Vec<(SessionKey, i64)> {
        let mut ends = std::mem::take(&mut *self.ends.lock_or_recover());
        ends.retain(|(_, expires_at)| *expires_at > now);
        ends
    }

    fn put_back(&self, mut failed: Vec<(SessionKey, i64)>) {
        let mut ends = self.ends.lock_or_recover();
        failed.append(&mut ends);
        failed.truncate(PENDING_ENDS_MAX);
        *ends = failed;
    }
}

impl ChangeNotifier {
    /// In-process delivery only (single-node mode).
    pub fn local() -> Self {
        let (local, _) = broadcast::channel(1024);
        let (ended_sessions, _) = broadcast::channel(1024);
        Self {
            local,
            ended_sessions,
            redis: None,
            pending_ends: Default::default(),
        }
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
        let (ended_sessions, _) = broadcast::channel(1024);
        let relay = local.clone();
        let relay_ended = ended_sessions.clone();
        let subscriber = link.clone();
        let pending_ends: Arc<PendingEnds> = Default::default();
        let pending = pending_ends.clone();
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
                    pubsub.subscribe(&[CONFIG_CHANNEL, SESSION_END_CHANNEL]).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                match tokio::select! { r = subscribed => r, _ = shutdown.cancelled() => return } {
                    Ok(mut pubsub) => {
                        backoff = Duration::from_millis(100);
                        failures = 0;
                        // Redis is back: the ends that waited for it go first. Subscribed first,
                        // then caught up: an end announced in between is delivered twice, which
                        // is harmless; none is missed.
                        Self::store_pending_ends(&subscriber, &pending).await;
                        for key in Self::current_session_ends(&subscriber).await {
                            let _ = relay_ended.send(key);
                        }
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = pending.added.notified() => {
                                    if !Self::store_pending_ends(&subscriber, &pending).await {
                                        tokio::time::sleep(Duration::from_millis(200)).await;
                                        pending.added.notify_one();
                                    }
                                }
                                msg = messages.next() => match msg {
                                    Some(msg) if msg.get_channel_name() == SESSION_END_CHANNEL => {
                                        match decode_session_key(msg.get_payload_bytes()) {
                                            Some(key) => { let _ = relay_ended.send(key); }
                                            None => tracing::warn!("ignoring malformed session-end message"),
                                        }
                                    }
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
            ended_sessions,
            redis: Some(link),
            pending_ends,
        }
    }

    /// Stores (and announces) the session ends that waited for Redis, but those that expired
    /// meanwhile; true when none is left waiting. Called whenever the subscription is (re)made
    /// and when an end is added, so replicas learn of every end however long Redis was away.
    async fn store_pending_ends(link: &RedisLink, pending: &PendingEnds) -> bool {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ends = pending.take(now);
        if ends.is_empty() {
            return true;
        }
        match Self::store_session_ends(link, &ends, Duration::from_secs(2)).await {
            Ok(()) => {
                tracing::info!(count = ends.len(), "stored session ends that waited for redis");
                true
            }
            Err(_) => {
                pending.put_back(ends);
                false
            }
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
                if let Err(e) = Self::publish_on(link, CONFIG_CHANNEL, payload).await {
                    tracing::warn!(error = %e, org_id = %change.org_id, "could not publish config change; dataplanes will reconcile");
                }
            }
        }
    }

    /// Announces that a session ended (DELETE) to every dataplane, this one included, and keeps
    /// the end in Redis until `expires_at` (unix seconds, when the id would expire anyway) for
    /// replicas that are not listening now. If Redis cannot be reached, the end waits in memory
    /// (bounded) and is stored and announced as soon as Redis answers again; until then the other
    /// replicas forward nothing for the session (its upstream sessions are gone) and only answer
    /// what they answer on their own (ping, lists).
    pub async fn publish_session_end(&self, key: SessionKey, expires_at: i64) {
        let Some(link) = &self.redis else {
            let _ = self.ended_sessions.send(key);
            return;
        };
        if let Err(e) = Self::store_session_ends(link, &[(key, expires_at)], Duration::from_millis(250)).await
        {
            tracing::warn!(error = %e, "could not publish a session end to other dataplanes yet; retrying while redis is away");
            self.pending_ends.push(key, expires_at);
        }
    }

    /// Adds ends to [`SESSION_END_SET`] (trimming what expired and what exceeds the bound) and
    /// announces each on [`SESSION_END_CHANNEL`], in one atomic pipeline.
    async fn store_session_ends(
        link: &RedisLink,
        ends: &[(SessionKey, i64)],
        wait: Duration,
    ) -> Result<(), String> {
        let Some(conn) = link.wait(wait).await else {
            return Err("redis unreachable".to_owned());
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, expires_at) in ends {
            pipe.zadd(SESSION_END_SET, hex::encode(key), *expires_at).ignore();
        }
        pipe.zrembyscore(SESSION_END_SET, "-inf", now)
            .ignore()
            .zremrangebyrank(SESSION_END_SET, 0, -(SESSION_END_SET_MAX + 1))
            .ignore();
        for (key, _) in ends {
            pipe.publish(SESSION_END_CHANNEL, hex::encode(key)).ignore();
        }
        let mut c = conn.conn.clone();
        let stored: redis::RedisResult<()> = pipe.query_async(&mut c).await;
        stored.map_err(|e| {
            link.failed(&conn, &e);
            e.to_string()
        })
    }

    /// The session ends kept in Redis whose ids have not expired yet (empty when unreachable).
    async fn current_session_ends(link: &RedisLink) -> Vec<SessionKey> {
        let Some(conn) = link.wait(Duration::from_secs(2)).await else {
            return vec![];
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut c = conn.conn.clone();
        let members: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGEBYSCORE")
            .arg(SESSION_END_SET)
            .arg(now)
            .arg("+inf")
            .query_async(&mut c)
            .await;
        match members {
            Ok(members) => members
                .iter()
                .filter_map(|m| decode_session_key(m.as_bytes()))
                .collect(),
            Err(e) => {
                link.failed(&conn, &e);
                tracing::warn!(error = %e, "could not read the session ends kept in redis");
                vec![]
            }
        }
    }

    async fn publish_on(link: &RedisLink, channel: &str, payload: String) -> Result<(), String> {
        let Some(conn) = link.wait(Duration::from_millis(250)).await else {
            return Err("redis unreachable".to_owned());
        };
        let mut c = conn.conn.clone();
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut c)
            .await;
        published.map(drop).map_err(|e| {
            link.failed(&conn, &e);
            e.to_string()
        })
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

    /// Session ends published by any dataplane (this one included).
    pub fn subscribe_session_ends(&self) -> broadcast::Receiver<SessionKey> {
        self.ended_sessions.subscribe()
    }
}

fn decode_session_key(payload: &[u8]) -> Option<SessionKey> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(payload, &mut key).ok()?;
    Some(key)
}
