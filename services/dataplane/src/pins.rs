//! Rug-pull defence: the dataplane serves only approved tool definitions (from the snapshot), and
//! watches what upstreams actually advertise. When an upstream's `tools/list` shows a definition
//! whose pin (canonical hash) differs from the approved one, that tool is withheld — neither
//! listed nor callable — until an admin approves the new definition (a new snapshot whose
//! `approved_hash` matches), and a `ToolDrift` event records it.
//!
//! Upstreams are checked on first use, whenever a client lists tools (at most every
//! `RECHECK_AFTER`), when the upstream announces `notifications/tools/list_changed` (a watcher
//! keeps a session with a GET stream open for that), and periodically.
//!
//! A check reads at most `dataplane.max_pin_check_bytes` of tool definitions from an upstream
//! (each answer also within `dataplane.max_upstream_message_bytes`); a list larger than that
//! withholds the server's pinned tools until a check fits. Definitions are hashed before the
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
use crate::upstream::{Outbound, UpstreamError, Upstreams};

/// A client's `tools/list` re-checks an upstream at most this often.
const RECHECK_AFTER: Duration = Duration::from_secs(2);
const WATCH_VERSION: &str = "2025-11-25";
/// What a pinned tool is observed as when its upstream's list was too large to check: matches
/// no approved hash, so the tool is withheld until a check fits.
const UNCHECKED: &str = "unchecked:tool-list-too-large";

/// What one check read from an upstream.
enum Listing {
    Tools(Vec<Value>),
    /// The tool definitions exceeded `dataplane.max_pin_check_bytes`; reading stopped there.
    TooLarge,
}

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

    /// Fetches the upstream's tool list and compares every pinned tool of the org.
    pub async fn check(&self, org: &OrgState, server: &ServerState) -> Result<(), UpstreamError> {
        let tools = self.list_upstream_tools(server).await;
        self.inner
            .last_check
            .lock_or_recover()
            .insert(server.snapshot.id, Instant::now());
        match tools? {
            Listing::Tools(tools) => self.compare(org, server.snapshot.id, Some(&tools)),
            Listing::TooLarge => {
                tracing::warn!(org_id = %org.snapshot.org_id, server_id = %server.snapshot.id, "the upstream's tool list exceeds dataplane.max_pin_check_bytes; withholding its tools");
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

    /// `tools/list` on the upstream in a short session of its own (all pages, at most
    /// `dataplane.max_pin_check_bytes` of tool definitions in all).
    async fn list_upstream_tools(&self, server: &ServerState) -> Result<Listing, UpstreamError> {
        let session = self.open_session(server).await?;
        let listed = self.list_tools_in(server, session.as_deref()).await;
        // The check's session ends with it: nothing accumulates upstream.
        if let Some(s) = &session {
            self.inner
                .upstreams
                .delete_session(server, WATCH_VERSION, s)
                .await;
        }
        listed
    }

    async fn list_tools_in(
        &self,
        server: &ServerState,
        session: Option<&str>,
    ) -> Result<Listing, UpstreamError> {
        let mut tools = Vec::new();
        let mut read = 0usize;
        let mut cursor: Option<Value> = None;
        for page in 0..50 {
            let mut params = json!({});
            if let Some(c) = &cursor {
                params["cursor"] = c.clone();
            }
            let id = json!(format!("gatehouse-pins-{page}"));
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let (reply, _) = self
                .inner
                .upstreams
                .request(
                    Outbound {
                        server,
                        body: serde_json::to_vec(&body).expect("json").into(),
                        protocol_version: Some(WATCH_VERSION),
                        session_id: session,
                        mcp_headers: vec![],
                        caller: None,
                        client_capabilities: None,
                    },
                    &id,
                )
                .await?;
            let result = reply
                .get("result")
                .ok_or_else(|| UpstreamError::Unavailable("tools/list failed upstream".into()))?;
            if let Some(list) = result.get("tools").and_then(Value::as_array) {
                read = read.saturating_add(json_size(list));
                if read > self.inner.max_check_bytes {
                    return Ok(Listing::TooLarge);
                }
                tools.extend(list.iter().cloned());
            }
            cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
        }
        Ok(Listing::Tools(tools))
    }

    /// Initializes a 2025-11-25 session with the upstream; `None` when it keeps no sessions.
    async fn open_session(&self, server: &ServerState) -> Result<Option<String>, UpstreamError> {
        let id = json!("gatehouse-pins-init");
        let init = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
            "protocolVersion": WATCH_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "gatehouse-pin-watcher", "version": env!("CARGO_PKG_VERSION")},
        }});
        let (reply, session) = self
            .inner
            .upstreams
            .request(
                Outbound {
                    server,
                    body: serde_json::to_vec(&init).expect("json").into(),
                    protocol_version: None,
                    session_id: None,
                    mcp_headers: vec![],
                    caller: None,
                    client_capabilities: None,
                },
                &id,
            )
            .await?;
        if reply.get("result").is_none() {
            return Err(UpstreamError::Unavailable("initialize failed upstream".into()));
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let _ = self
            .inner
            .upstreams
            .post(Outbound {
                server,
                body: serde_json::to_vec(&initialized).expect("json").into(),
                protocol_version: Some(WATCH_VERSION),
                session_id: session.as_deref(),
                mcp_headers: vec![],
                caller: None,
                client_capabilities: None,
            })
            .await;
        Ok(session)
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
            let session = self.open_session(&server).await.unwrap_or_default();
            let stream = match &session {
                Some(s) => self
                    .inner
                    .upstreams
                    .get_stream(&server, WATCH_VERSION, Some(s), None, None)
                    .await
                    .ok()
                    .flatten(),
                None => None,
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
                            self.inner.upstreams.delete_session(&server, WATCH_VERSION, s).await;
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

/// The size of `value` as JSON, without building the text.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a value that cannot be serialised counts as nothing.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
