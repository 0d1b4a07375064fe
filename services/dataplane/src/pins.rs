//! Rug-pull defence: the dataplane serves only approved tool definitions (from the snapshot), and
//! watches what upstreams actually advertise. When an upstream's `tools/list` shows a definition
//! whose pin (canonical hash) differs from the approved one, that tool is withheld — neither
//! listed nor callable — until an admin approves the new definition (a new snapshot whose
//! `approved_hash` matches), and a `ToolDrift` event records it.
//!
//! Upstreams are checked on first use, whenever a client lists tools (at most every
//! `RECHECK_AFTER`), when an upstream announces `notifications/tools/list_changed` (a watcher
//! keeps a session with a GET stream open for that with a session upstream, a
//! `subscriptions/listen` stream with a stateless one), and periodically. A check lists the
//! tools in the revision the upstream speaks (the MCP client's pager: a stateless 2026-07-28
//! server statelessly, a session server in a short session of its own).
//!
//! A check reads at most `dataplane.max_pin_check_bytes` of tool definitions from an upstream
//! (each answer also within `dataplane.max_upstream_message_bytes`); a list larger than that, or
//! one that does not end within the pager's page limit, withholds the server's pinned tools until
//! a check fits. Definitions are hashed before the
//! shared pin map is locked, and only to record the outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use gatehouse_core::canonical::tool_definition_hash;
use gatehouse_core::ids::{EventId, ServerId};
use gatehouse_core::snapshot::{EndpointTool, ToolTarget};
use gatehouse_core::sync::{MutexExt, RwLockExt};
use gatehouse_events::{BusMessage, EventPublisher, ToolDrift};

use crate::store::{OrgState, ServerState, SnapshotStore};
use crate::upstream::{Listing, ToolLimits, UpstreamError, Upstreams, Wire};

/// A client's `tools/list` re-checks an upstream at most this often.
const RECHECK_AFTER: Duration = Duration::from_secs(2);
/// What a pinned tool is observed as when its upstream's list was too large to check: matches
/// no approved hash, so the tool is withheld until a check fits.
const UNCHECKED: &str = "unchecked:tool-list-too-large";

#[derive(Clone)]
pub struct Pins {
    inner: Arc<Inner>,
}

struct Inner {
    /// (server, upstream tool name) → the hash the upstream serves now, when it differs from
    /// what some approval pinned.
    observed: RwLock<HashMap<(ServerId, String), String>>,
    last_check: Mutex<HashMap<ServerId, Instant>>,
    watched: Mutex<HashSet<ServerId>>,
    reported: Mutex<HashSet<(ServerId, String, String)>>,
    upstreams: Upstreams,
    events: EventPublisher,
    store: SnapshotStore,
    shutdown: CancellationToken,
    every: Duration,
    /// Largest total of the tool definitions one check reads from an upstream (all pages).
    max_check_bytes: usize,
}

impl Pins {
    pub fn new(
        upstreams: Upstreams,
        events: EventPublisher,
        store: SnapshotStore,
        every: Duration,
        max_check_bytes: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                observed: RwLock::new(HashMap::new()),
                last_check: Mutex::new(HashMap::new()),
                watched: Mutex::new(HashSet::new()),
                reported: Mutex::new(HashSet::new()),
                upstreams,
                events,
                store,
                shutdown,
                every,
                max_check_bytes,
            }),
        }
    }

    /// Whether `tool` must be withheld: its upstream serves something other than what was approved.
    pub fn is_withheld(&self, tool: &EndpointTool) -> bool {
        let ToolTarget::Upstream {
            server_id,
            upstream_name,
        } = &tool.target
        else {
            return false;
        };
        self.inner
            .observed
            .read_or_recover()
            .get(&(*server_id, upstream_name.clone()))
            .is_some_and(|observed| observed != &tool.approved_hash)
    }

    /// Claims the next check of `server` if its last one is older than `after` (so concurrent
    /// listings trigger one check, not one each).
    fn claim_if_stale(&self, server: ServerId, after: Duration) -> bool {
        let mut checks = self.inner.last_check.lock_or_recover();
        let stale = checks.get(&server).is_none_or(|t| t.elapsed() >= after);
        if stale {
            checks.insert(server, Instant::now());
        }
        stale
    }

    /// Re-checks `servers` of `org` if their last check is older than `RECHECK_AFTER`, and makes
    /// sure a watcher listens for their change notifications.
    pub async fn refresh(&self, org: &Arc<OrgState>, servers: &[ServerId]) {
        for server in servers {
            self.watch(org.snapshot.org_id, *server);
            if self.claim_if_stale(*server, RECHECK_AFTER)
                && let Some(state) = org.servers.get(server)
            {
                let _ = self.check(org, state).await;
            }
        }
    }

    /// Fetches the upstream's tool list (in the revision it speaks) and compares every pinned
    /// tool of the org.
    pub async fn check(&self, org: &OrgState, server: &ServerState) -> Result<(), UpstreamError> {
        let limits = ToolLimits {
            max_tools: None,
            max_bytes: Some(self.inner.max_check_bytes),
        };
        let listed = self.inner.upstreams.list_tools(server, limits).await;
        self.inner
            .last_check
            .lock_or_recover()
            .insert(server.snapshot.id, Instant::now());
        match listed?.1 {
            Listing::Tools(tools) => self.compare(org, server.snapshot.id, Some(&tools)),
            // Larger than a check reads, or a list that does not end: nothing can be vouched for.
            Listing::TooLarge | Listing::TooManyTools | Listing::TooManyPages | Listing::RepeatedCursor => {
                tracing::warn!(org_id = %org.snapshot.org_id, server_id = %server.snapshot.id, "the upstream's tool list exceeds dataplane.max_pin_check_bytes or does not end; withholding its tools");
                metrics::counter!("gatehouse_dataplane_pin_check_too_large_total").increment(1);
                self.compare(org, server.snapshot.id, None);
            }
        }
        Ok(())
    }

    /// Compares what the upstream serves with every pin of the org (`None`: a list too large to
    /// check, which withholds every pinned tool of the server). The hashes are computed first;
    /// the shared maps are locked only to apply the outcome.
    fn compare(&self, org: &OrgState, server_id: ServerId, tools: Option<&[Value]>) {
        let served: HashMap<&str, &Value> = tools
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Some((t.get("name")?.as_str()?, t)))
            .collect();
        let mut hashes: HashMap<&str, String> = HashMap::new();
        // (key, approved hash, what is served now: (hash, definition)).
        let mut outcomes = Vec::new();
        for endpoint in org.endpoints() {
            for tool in &endpoint.snapshot.tools {
                let ToolTarget::Upstream {
                    server_id: s,
                    upstream_name,
                } = &tool.target
                else {
                    continue;
                };
                if *s != server_id {
                    continue;
                }
                let now_served = served.get(upstream_name.as_str()).map(|definition| {
                    let hash = hashes
                        .entry(upstream_name.as_str())
                        .or_insert_with(|| tool_definition_hash(definition))
                        .clone();
                    (hash, *definition)
                });
                outcomes.push((
                    (server_id, upstream_name.clone()),
                    &tool.approved_hash,
                    now_served,
                ));
            }
        }
        let mut drifted = Vec::new();
        {
            let mut observed = self.inner.observed.write_or_recover();
            for (key, approved, now_served) in outcomes {
                if tools.is_none() {
                    observed.insert(key, UNCHECKED.to_owned());
                    continue;
                }
                match now_served {
                    Some((hash, definition)) if hash != *approved => {
                        observed.insert(key.clone(), hash.clone());
                        drifted.push((key, approved, hash, definition));
                    }
                    // Served as approved, or no longer listed (then it cannot be called anyway;
                    // keep no state).
                    _ => {
                        observed.remove(&key);
                    }
                }
            }
        }
        for ((server_id, upstream_name), approved, hash, definition) in drifted {
            let first_time = self.inner.reported.lock_or_recover().insert((
                server_id,
                upstream_name.clone(),
                hash.clone(),
            ));
            if first_time {
                tracing::warn!(org_id = %org.snapshot.org_id, server_id = %server_id, tool = %upstream_name, "tool definition drifted from its approved pin; withholding it");
                metrics::counter!("gatehouse_dataplane_tool_drift_total").increment(1);
                self.inner.events.emit(BusMessage::ToolDrift(ToolDrift {
                    id: EventId::new(),
                    org_id: org.snapshot.org_id,
                    occurred_at: OffsetDateTime::now_utc(),
                    server_id,
                    tool_name: upstream_name,
                    approved_hash: approved.clone(),
                    observed_hash: hash,
                    observed_definition: definition.clone(),
                }));
            }
        }
    }

    /// Starts (once per server) a task that re-checks the server when it announces a tool list
    /// change, and every reconcile interval.
    pub fn watch(&self, org: gatehouse_core::ids::OrgId, server: ServerId) {
        if !self.inner.watched.lock_or_recover().insert(server) {
            return;
        }
        let pins = self.clone();
        tokio::spawn(async move {
            pins.watch_loop(org, server).await;
            pins.inner.watched.lock_or_recover().remove(&server);
        });
    }

    async fn watch_loop(&self, org_id: gatehouse_core::ids::OrgId, server_id: ServerId) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(org) = self.inner.store.org_by_id(org_id) else {
                return;
            };
            let Some(server) = org.servers.get(&server_id).cloned() else {
                return;
            };
            // A session upstream announces changes on its session's GET stream, a stateless one
            // (2026-07-28) on a `subscriptions/listen` stream; either is also checked on every
            // tick and whenever a client lists tools.
            let learned = self.inner.upstreams.learned(&server, None).await;
            let session = match &learned {
                Ok(learned) if learned.wire == Wire::Session => self
                    .inner
                    .upstreams
                    .own_session(&server)
                    .await
                    .unwrap_or_default(),
                _ => None,
            };
            let stream = match (&learned, &session) {
                (_, Some(s)) => self
                    .inner
                    .upstreams
                    .get_stream(&server, &s.version, Some(&s.session_id), None, None)
                    .await
                    .ok()
                    .flatten(),
                (Ok(learned), None) if learned.wire == Wire::Stateless => self
                    .inner
                    .upstreams
                    .listen(&server, json!({"toolsListChanged": true}))
                    .await
                    .ok()
                    .flatten(),
                _ => None,
            };
            let _ = self.check(&org, &server).await;
            let mut ticker = tokio::time::interval(self.inner.every.max(Duration::from_secs(1)));
            ticker.tick().await;
            let mut stream = stream;
            loop {
                let changed = async {
                    match stream.as_mut() {
                        Some(s) => loop {
                            match s.next().await {
                                Some(Ok(event)) => {
                                    if event
                                        .data
                                        .as_deref()
                                        .is_some_and(|d| d.contains("notifications/tools/list_changed"))
                                    {
                                        return true;
                                    }
                                }
                                _ => return false,
                            }
                        },
                        None => std::future::pending::<bool>().await,
                    }
                };
                tokio::select! {
                    _ = self.inner.shutdown.cancelled() => {
                        if let Some(s) = &session {
                            self.inner.upstreams.delete_session(&server, &s.version, &s.session_id).await;
                        }
                        return;
                    }
                    _ = ticker.tick() => {
                        let Some(org) = self.inner.store.org_by_id(org_id) else { return };
                        if !org.servers.contains_key(&server_id) { return; }
                        let _ = self.check(&org, &server).await;
                    }
                    still_open = changed => {
                        if still_open {
                            let Some(org) = self.inner.store.org_by_id(org_id) else { return };
                            let _ = self.check(&org, &server).await;
                        } else {
                            break;
                        }
                    }
                }
            }
            // The stream ended (upstream restarted or dropped the session): start over.
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// A list_changed notification seen on a client's stream: re-check soon.
    pub fn upstream_changed(&self, org: Arc<OrgState>, server: ServerId) {
        let pins = self.clone();
        tokio::spawn(async move {
            if let Some(state) = org.servers.get(&server) {
                let _ = pins.check(&org, state).await;
            }
        });
    }
}
