//! Upstream sessions the dataplane holds itself, for stateless clients (2026-07-28) of session
//! upstreams (2025 era): one session per (upstream, org, endpoint, caller subject, declared client
//! capabilities), never shared between subjects, reused across calls, reopened when the upstream
//! forgets it (404), closed (DELETE) when idle for `dataplane.upstream_session_idle_secs`, and at
//! most `dataplane.max_upstream_sessions` held: opening one more closes the least recently used.
//!
//! What a held session costs is its key and the upstream's session id (a few hundred bytes), so
//! the pool's memory is bounded by the cap.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gatehouse_core::ids::{EndpointId, OrgId, ServerId};
use gatehouse_core::sync::MutexExt;

use super::wire::initialize_request;
use super::{Caller, Client, Outbound, Upstream, UpstreamError};

/// The newest session revision; an upstream may negotiate an older one.
pub const NEWEST_SESSION_VERSION: &str = "2025-11-25";

/// How many upstream sessions are held and for how long an unused one is kept.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub idle: Duration,
}

/// Whose an upstream session is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub server: ServerId,
    pub org: OrgId,
    pub endpoint: EndpointId,
    pub subject: String,
    /// A fingerprint of the capabilities the client declared: the upstream may only ask for
    /// what the session's `initialize` declared.
    pub capabilities: u64,
}

impl SessionKey {
    pub fn new<'a>(server: ServerId, caller: impl Into<Caller<'a>>, capabilities: &Value) -> Self {
        let caller = caller.into();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        capabilities.to_string().hash(&mut hasher);
        Self {
            server,
            org: caller.org,
            endpoint: caller.endpoint,
            subject: caller.subject.to_owned(),
            capabilities: hasher.finish(),
        }
    }
}

/// An upstream session held for a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSession {
    pub session_id: String,
    /// The revision the upstream negotiated.
    pub version: String,
}

struct Entry {
    held: HeldSession,
    server: Arc<Upstream>,
    tick: u64,
    last_used: Instant,
}

/// A session to close: its upstream and itself.
type Closing = (Arc<Upstream>, HeldSession);

/// The held sessions, least recently used first in `order`.
pub(super) struct SessionPool {
    metrics_prefix: &'static str,
    limits: SessionLimits,
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    entries: HashMap<SessionKey, Entry>,
    order: BTreeMap<u64, SessionKey>,
    next_tick: u64,
}

impl PoolInner {
    fn remove(&mut self, key: &SessionKey) -> Option<Closing> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.tick);
        Some((entry.server, entry.held))
    }

    /// Removes the sessions unused since `idle` before `now` (the oldest are first in `order`).
    fn expire(&mut self, now: Instant, idle: Duration, closing: &mut Vec<Closing>) {
        while let Some((_, key)) = self.order.first_key_value() {
            let stale = self
                .entries
                .get(key)
                .is_some_and(|e| now.saturating_duration_since(e.last_used) >= idle);
            if !stale {
                break;
            }
            let key = key.clone();
            closing.extend(self.remove(&key));
        }
    }
}

impl SessionPool {
    pub(super) fn new(limits: SessionLimits, metrics_prefix: &'static str) -> Self {
        Self {
            metrics_prefix,
            limits: SessionLimits {
                max_sessions: limits.max_sessions.max(1),
                idle: limits.idle,
            },
            inner: Mutex::new(PoolInner::default()),
        }
    }

    /// The session held for `key`, marked as just used; sessions idle too long are returned in
    /// `closing`.
    fn get(&self, key: &SessionKey, now: Instant, closing: &mut Vec<Closing>) -> Option<HeldSession> {
        let mut inner = self.inner.lock_or_recover();
        inner.expire(now, self.limits.idle, closing);
        let tick = inner.next_tick;
        let entry = inner.entries.get_mut(key)?;
        let old = std::mem::replace(&mut entry.tick, tick);
        entry.last_used = now;
        let held = entry.held.clone();
        inner.next_tick += 1;
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        Some(held)
    }

    /// Holds `held` for `key`; what it replaces and what the cap evicts are returned to close.
    fn insert(
        &self,
        key: SessionKey,
        held: HeldSession,
        server: Arc<Upstream>,
        now: Instant,
    ) -> Vec<Closing> {
        let mut closing = Vec::new();
        let mut inner = self.inner.lock_or_recover();
        closing.extend(inner.remove(&key));
        inner.expire(now, self.limits.idle, &mut closing);
        while inner.entries.len() >= self.limits.max_sessions {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                metrics::counter!(format!("{}_upstream_sessions_evicted_total", self.metrics_prefix))
                    .increment(1);
                closing.push((entry.server, entry.held));
            }
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.order.insert(tick, key.clone());
        inner.entries.insert(
            key,
            Entry {
                held,
                server,
                tick,
                last_used: now,
            },
        );
        metrics::gauge!(format!("{}_upstream_sessions", self.metrics_prefix)).set(inner.entries.len() as f64);
        closing
    }

    /// Forgets `key`'s session if it is still `session_id` (the upstream no longer knows it).
    fn forget(&self, key: &SessionKey, session_id: &str) {
        let mut inner = self.inner.lock_or_recover();
        if inner
            .entries
            .get(key)
            .is_some_and(|e| e.held.session_id == session_id)
        {
            inner.remove(key);
        }
    }

    fn take_idle(&self, now: Instant) -> Vec<Closing> {
        let mut closing = Vec::new();
        let mut inner = self.inner.lock_or_recover();
        inner.expire(now, self.limits.idle, &mut closing);
        metrics::gauge!(format!("{}_upstream_sessions", self.metrics_prefix)).set(inner.entries.len() as f64);
        closing
    }

    fn take_all(&self) -> Vec<Closing> {
        let mut inner = self.inner.lock_or_recover();
        inner.order.clear();
        let closing = inner.entries.drain().map(|(_, e)| (e.server, e.held)).collect();
        metrics::gauge!(format!("{}_upstream_sessions", self.metrics_prefix)).set(0.0);
        closing
    }

    pub(super) fn len(&self) -> usize {
        self.inner.lock_or_recover().entries.len()
    }
}

/// Who the dataplane says it is when it opens a session on a client's behalf: the client's own
/// name and capabilities (from its request's `_meta`), so the upstream may ask it for sampling,
/// elicitation or roots.
pub struct ClientHello<'a> {
    pub capabilities: &'a Value,
    pub client_info: Option<&'a Value>,
}

impl Client {
    /// The session held for `key` with `server`, opened (`initialize`, then
    /// `notifications/initialized`) when there is none.
    pub async fn held_session(
        &self,
        server: &Arc<Upstream>,
        key: &SessionKey,
        hello: &ClientHello<'_>,
        caller: Caller<'_>,
    ) -> Result<HeldSession, UpstreamError> {
        let mut closing = Vec::new();
        let held = self.inner.sessions.get(key, Instant::now(), &mut closing);
        self.close_sessions(closing);
        if let Some(held) = held {
            return Ok(held);
        }
        let (held, _) = self.open_session(server, hello, Some(caller)).await?;
        let closing = self
            .inner
            .sessions
            .insert(key.clone(), held.clone(), server.clone(), Instant::now());
        self.close_sessions(closing);
        Ok(held)
    }

    /// Forgets the session held for `key` when it is `session_id` (the upstream answered 404).
    pub fn forget_session(&self, key: &SessionKey, session_id: &str) {
        self.inner.sessions.forget(key, session_id);
    }

    /// How many upstream sessions are held.
    pub fn held_sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Closes the sessions unused for longer than the idle limit.
    pub async fn close_idle_sessions(&self) {
        let closing = self.inner.sessions.take_idle(Instant::now());
        self.delete_all(closing).await;
    }

    /// Closes (DELETE) every held upstream session, for shutdown.
    pub async fn close_all(&self) {
        let closing = self.inner.sessions.take_all();
        self.delete_all(closing).await;
    }

    fn close_sessions(&self, closing: Vec<Closing>) {
        if closing.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.delete_all(closing).await });
    }

    async fn delete_all(&self, closing: Vec<Closing>) {
        let deletes = closing
            .iter()
            .map(|(server, held)| self.delete_session(server, &held.version, &held.session_id));
        futures::future::join_all(deletes).await;
    }

    /// A session of the client's own with a session upstream (its GET stream to listen to, for
    /// one): `None` when the upstream keeps no sessions. The caller ends it with
    /// [`Client::delete_session`].
    pub async fn own_session(&self, upstream: &Upstream) -> Result<Option<HeldSession>, UpstreamError> {
        let capabilities = json!({});
        let hello = ClientHello {
            capabilities: &capabilities,
            client_info: None,
        };
        let (session_id, version, _) = self.initialize(upstream, &hello, None).await?;
        Ok(session_id.map(|session_id| HeldSession { session_id, version }))
    }

    /// Opens a session with a session upstream: `initialize` with `hello`, then
    /// `notifications/initialized`. Returns the session and the `initialize` result.
    pub async fn open_session(
        &self,
        upstream: &Upstream,
        hello: &ClientHello<'_>,
        caller: Option<Caller<'_>>,
    ) -> Result<(HeldSession, Value), UpstreamError> {
        let (session_id, version, result) = self.initialize(upstream, hello, caller).await?;
        let Some(session_id) = session_id else {
            return Err(UpstreamError::Unavailable(
                "initialize answered without a session".into(),
            ));
        };
        Ok((HeldSession { session_id, version }, result))
    }

    /// `initialize` with `hello`, then `notifications/initialized`: the session id the upstream
    /// minted (`None`: a server that keeps no sessions), the revision it negotiated and the
    /// `initialize` result.
    pub(super) async fn initialize(
        &self,
        upstream: &Upstream,
        hello: &ClientHello<'_>,
        caller: Option<Caller<'_>>,
    ) -> Result<(Option<String>, String, Value), UpstreamError> {
        let id = json!("gatehouse-initialize");
        let initialize = initialize_request(
            &id,
            NEWEST_SESSION_VERSION,
            &session_capabilities(hello.capabilities),
            hello.client_info,
        );
        let out = Outbound {
            caller,
            ..Outbound::message(upstream, &initialize)
        };
        let (answer, session_id) = self.request(out, &id).await?;
        let Some(result) = answer.get("result").cloned() else {
            return Err(UpstreamError::Unavailable("initialize refused upstream".into()));
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(NEWEST_SESSION_VERSION)
            .to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(Outbound {
            protocol_version: Some(&version),
            session_id: session_id.as_deref(),
            caller,
            ..Outbound::message(upstream, &initialized)
        })
        .await?;
        if session_id.is_some() {
            metrics::counter!(self.metric("upstream_sessions_opened_total")).increment(1);
        }
        Ok((session_id, version, result))
    }
}

/// The 2025 `initialize` capabilities for what a 2026-07-28 client declared in its `_meta`: the
/// same object (the client capabilities kept their shape, extensions included).
pub fn session_capabilities(declared: &Value) -> Value {
    if declared.is_object() {
        declared.clone()
    } else {
        json!({})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str) -> SessionKey {
        SessionKey {
            server: ServerId::new(),
            org: OrgId::new(),
            endpoint: EndpointId::new(),
            subject: subject.to_owned(),
            capabilities: 0,
        }
    }

    fn held(id: &str) -> HeldSession {
        HeldSession {
            session_id: id.to_owned(),
            version: NEWEST_SESSION_VERSION.to_owned(),
        }
    }

    fn pool(max_sessions: usize, idle_secs: u64) -> SessionPool {
        SessionPool::new(
            SessionLimits {
                max_sessions,
                idle: Duration::from_secs(idle_secs),
            },
            "gatehouse_test",
        )
    }

    fn server() -> Arc<Upstream> {
        Arc::new(crate::tests::upstream_at("http://127.0.0.1:9/mcp".into()))
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_at_the_cap() {
        let pool = pool(2, 60);
        let now = Instant::now();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        assert!(pool.insert(a.clone(), held("1"), server(), now).is_empty());
        assert!(pool.insert(b.clone(), held("2"), server(), now).is_empty());
        // `a` is used again, so `b` is the least recently used.
        assert_eq!(pool.get(&a, now, &mut vec![]), Some(held("1")));
        let evicted = pool.insert(c.clone(), held("3"), server(), now);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].1, held("2"));
        assert_eq!(pool.len(), 2);
        assert!(pool.get(&b, now, &mut vec![]).is_none());
    }

    #[test]
    fn ten_thousand_callers_never_hold_more_than_the_cap() {
        let pool = pool(100, 60);
        let now = Instant::now();
        let mut closed = 0;
        for i in 0..10_000 {
            closed += pool
                .insert(key(&format!("caller-{i}")), held(&i.to_string()), server(), now)
                .len();
            assert!(pool.len() <= 100);
        }
        assert_eq!(pool.len(), 100);
        assert_eq!(closed, 9_900, "every evicted session is handed back to be closed");
        let inner = pool.inner.lock_or_recover();
        assert_eq!(inner.order.len(), inner.entries.len());
    }

    #[test]
    fn idle_sessions_are_taken_for_closing() {
        let pool = pool(10, 60);
        let now = Instant::now();
        pool.insert(key("a"), held("1"), server(), now);
        pool.insert(key("b"), held("2"), server(), now + Duration::from_secs(30));
        let closing = pool.take_idle(now + Duration::from_secs(61));
        assert_eq!(closing.len(), 1);
        assert_eq!(closing[0].1, held("1"));
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take_all().len(), 1);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_forgotten_session_is_only_forgotten_if_still_held() {
        let pool = pool(10, 60);
        let now = Instant::now();
        let a = key("a");
        pool.insert(a.clone(), held("new"), server(), now);
        pool.forget(&a, "old");
        assert_eq!(pool.get(&a, now, &mut vec![]), Some(held("new")));
        pool.forget(&a, "new");
        assert!(pool.get(&a, now, &mut vec![]).is_none());
    }

    #[test]
    fn subjects_have_sessions_of_their_own() {
        let pool = pool(10, 60);
        let now = Instant::now();
        let alice = key("alice");
        let bob = SessionKey {
            subject: "bob".into(),
            ..alice.clone()
        };
        pool.insert(alice.clone(), held("alice's"), server(), now);
        assert!(pool.get(&bob, now, &mut vec![]).is_none());
    }
}
