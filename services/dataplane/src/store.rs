//! The configuration the dataplane serves from: one snapshot per org, held in memory and swapped
//! atomically when the control plane publishes a newer version. Nothing on the request path reads
//! the database or waits on the control API.
//!
//! Snapshots are indexed once when they arrive (tools by exposed name, scopes by tool, service
//! tokens by hash, revocations by kind) and their sealed upstream credentials are opened then, so
//! a request only does hash lookups.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use time::OffsetDateTime;

use gatehouse_core::ids::{BackendId, EndpointId, OrgId, ServerId, ToolId};
use gatehouse_core::role::Role;
use gatehouse_core::secrets::Keyring;
use gatehouse_core::snapshot::{
    CallerSnapshot, EndpointSnapshot, EndpointTool, OrgSnapshot, Revocation, RevocationKind, ServerSnapshot,
    ServiceTokenSnapshot, ToolTarget,
};
use gatehouse_core::sync::MutexExt;
use gatehouse_hosted_sql::{BackendConfig, SqlTool};
use gatehouse_mcp_client::Upstream;

use crate::owners::ResourceOwners;

/// Every org the dataplane knows, by slug and by id.
#[derive(Default)]
struct Orgs {
    by_slug: HashMap<String, Arc<OrgState>>,
    by_id: HashMap<OrgId, Arc<OrgState>>,
}

/// The in-memory configuration of every org. Cheap to clone (shared).
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    orgs: ArcSwap<Orgs>,
    /// Set once the first full load succeeded: until then the dataplane refuses traffic.
    loaded: AtomicBool,
    keyring: Keyring,
    /// Serialises writers (readers never wait).
    write: std::sync::Mutex<()>,
}

impl SnapshotStore {
    pub fn new(keyring: Keyring) -> Self {
        Self {
            inner: Arc::new(StoreInner {
                orgs: ArcSwap::from_pointee(Orgs::default()),
                loaded: AtomicBool::new(false),
                keyring,
                write: std::sync::Mutex::new(()),
            }),
        }
    }

    /// Whether a full configuration has been loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire)
    }

    /// Marks the store as loaded (after the first full reconciliation).
    pub fn mark_loaded(&self) {
        self.inner.loaded.store(true, Ordering::Release);
    }

    pub fn org_by_slug(&self, slug: &str) -> Option<Arc<OrgState>> {
        self.inner.orgs.load().by_slug.get(slug).cloned()
    }

    pub fn org_by_id(&self, id: OrgId) -> Option<Arc<OrgState>> {
        self.inner.orgs.load().by_id.get(&id).cloned()
    }

    /// The version held for `org`, if any.
    pub fn version_of(&self, org: OrgId) -> Option<i64> {
        self.inner.orgs.load().by_id.get(&org).map(|o| o.snapshot.version)
    }

    /// Every org id held, with its version.
    pub fn versions(&self) -> Vec<(OrgId, i64)> {
        self.inner
            .orgs
            .load()
            .by_id
            .values()
            .map(|o| (o.snapshot.org_id, o.snapshot.version))
            .collect()
    }

    /// Installs `snapshot` unless an equal or newer version is already held. Returns whether it
    /// replaced what was there.
    pub fn install(&self, snapshot: OrgSnapshot) -> bool {
        self.install_many(std::iter::once(snapshot)) == 1
    }

    /// Installs each snapshot unless an equal or newer version of its org is already held, all
    /// in one swap; returns how many were installed. The maps of every org are copied once per
    /// call, so a full load of N orgs costs O(N), where one `install` per org would cost O(N²)
    /// (about 3.7 s for 10,000 orgs, docs/benchmarks.md, "Scale").
    pub fn install_many(&self, snapshots: impl IntoIterator<Item = OrgSnapshot>) -> usize {
        // Indexing (and opening credentials) happens outside the writer lock, and only for
        // snapshots newer than what is held (checked again under the lock).
        let held = self.inner.orgs.load();
        let states: Vec<Arc<OrgState>> = snapshots
            .into_iter()
            .filter(|s| {
                held.by_id
                    .get(&s.org_id)
                    .is_none_or(|o| o.snapshot.version < s.version)
            })
            .map(|s| Arc::new(OrgState::index(s, &self.inner.keyring)))
            .collect();
        drop(held);
        if states.is_empty() {
            return 0;
        }
        let _guard = self.inner.write.lock_or_recover();
        let current = self.inner.orgs.load();
        let mut by_slug = current.by_slug.clone();
        let mut by_id = current.by_id.clone();
        let mut installed = 0;
        for state in states {
            if let Some(held) = by_id.get(&state.snapshot.org_id) {
                if held.snapshot.version >= state.snapshot.version {
                    continue;
                }
                if held.snapshot.slug != state.snapshot.slug {
                    by_slug.remove(&held.snapshot.slug);
                }
            }
            by_slug.insert(state.snapshot.slug.clone(), state.clone());
            by_id.insert(state.snapshot.org_id, state);
            installed += 1;
        }
        if installed > 0 {
            self.inner.orgs.store(Arc::new(Orgs { by_slug, by_id }));
        }
        installed
    }

    /// Forgets an org the control plane no longer lists (deleted).
    pub fn remove(&self, org: OrgId) {
        let _guard = self.inner.write.lock_or_recover();
        let current = self.inner.orgs.load();
        if !current.by_id.contains_key(&org) {
            return;
        }
        let mut by_slug = current.by_slug.clone();
        let mut by_id = current.by_id.clone();
        if let Some(old) = by_id.remove(&org) {
            by_slug.remove(&old.snapshot.slug);
        }
        self.inner.orgs.store(Arc::new(Orgs { by_slug, by_id }));
    }
}

/// One org's snapshot with the indexes the request path needs. The snapshot's endpoints, servers,
/// service tokens and revocations are moved into those indexes, not copied: with 100,000 tools
/// held, a second copy of every definition cost about half the dataplane's memory
/// (docs/benchmarks.md, "Scale").
pub struct OrgState {
    /// The org-wide settings of the snapshot.
    pub snapshot: OrgSettings,
    endpoints: HashMap<String, Arc<EndpointState>>,
    pub servers: HashMap<ServerId, Arc<ServerState>>,
    /// Hosted SQL backends, opened (connection string and context key unsealed) when the
    /// snapshot arrived; an `Err` says why one cannot be used.
    backends: HashMap<BackendId, Arc<Result<BackendConfig, String>>>,
    /// Hosted SQL tools of the org's endpoints, validated again by the runtime's parser when the
    /// snapshot arrived.
    sql_tools: HashMap<ToolId, Arc<Result<SqlTool, String>>>,
    revoked: HashMap<RevocationKind, HashMap<String, Revocation>>,
    service_tokens: HashMap<String, ServiceTokenSnapshot>,
    /// Callers' emails and attribute values, by subject (for hosted SQL caller contexts).
    callers: HashMap<String, CallerSnapshot>,
}

/// What an org's snapshot says of the org as a whole.
#[derive(Clone, Debug)]
pub struct OrgSettings {
    pub org_id: OrgId,
    pub slug: String,
    /// Newer replaces older.
    pub version: i64,
    /// Record tool-call arguments in audit events (otherwise only their hash).
    pub log_tool_arguments: bool,
    /// Suspended by an operator: every request to the org's endpoints is refused.
    pub suspended: bool,
}

impl OrgState {
    fn index(snapshot: OrgSnapshot, keyring: &Keyring) -> Self {
        let OrgSnapshot {
            org_id,
            slug,
            version,
            log_tool_arguments,
            // Enforced by the usage worker, which publishes the over-quota state.
            hard_limit_calls: _,
            suspended,
            endpoints,
            servers,
            backends,
            revocations,
            service_tokens,
            callers,
        } = snapshot;
        let servers = servers
            .into_iter()
            .map(|s| (s.id, Arc::new(ServerState::open(org_id, s, keyring))))
            .collect();
        let backends: HashMap<BackendId, Arc<Result<BackendConfig, String>>> = backends
            .iter()
            .map(|b| {
                let opened = BackendConfig::from_snapshot(org_id, b, keyring).map_err(|e| e.0);
                if let Err(e) = &opened {
                    tracing::warn!(org_id = %org_id, backend_id = %b.id, error = %e, "backend cannot be opened");
                }
                (b.id, Arc::new(opened))
            })
            .collect();
        let sql_tools = sql_tools(&endpoints, &backends);
        let endpoints = endpoints
            .into_iter()
            .map(|e| (e.slug.clone(), Arc::new(EndpointState::index(org_id, e))))
            .collect();
        let mut revoked: HashMap<RevocationKind, HashMap<String, Revocation>> = HashMap::new();
        for r in revocations {
            match revoked.entry(r.kind).or_default().entry(r.value.clone()) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(r);
                }
                // Several rows for one value: the widest of them (latest expiry, latest cutoff,
                // or no cutoff at all).
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    let kept = slot.get_mut();
                    kept.expires_at = kept.expires_at.max(r.expires_at);
                    kept.issued_before = match (kept.issued_before, r.issued_before) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
            }
        }
        let service_tokens = service_tokens
            .into_iter()
            .map(|t| (t.token_hash.to_ascii_lowercase(), t))
            .collect();
        let callers = callers.into_iter().map(|c| (c.subject.clone(), c)).collect();
        Self {
            snapshot: OrgSettings {
                org_id,
                slug,
                version,
                log_tool_arguments,
                suspended,
            },
            endpoints,
            servers,
            backends,
            sql_tools,
            revoked,
            service_tokens,
            callers,
        }
    }

    /// The email and attribute values the snapshot has for `subject` (a user id, or
    /// `service_token:<id>`), if any.
    pub fn caller(&self, subject: &str) -> Option<&CallerSnapshot> {
        self.callers.get(subject)
    }

    /// A hosted SQL tool ready to run, with its backend; `Err` says why it cannot run (for the
    /// log, never for the caller).
    pub fn sql_tool(&self, tool: ToolId, backend: BackendId) -> Result<(&BackendConfig, &SqlTool), &str> {
        let backend = match self.backends.get(&backend).map(|b| b.as_ref()) {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(e),
            None => return Err("the tool's backend is not in the snapshot"),
        };
        match self.sql_tools.get(&tool).map(|t| t.as_ref()) {
            Some(Ok(t)) => Ok((backend, t)),
            Some(Err(e)) => Err(e),
            None => Err("the tool is not a hosted SQL tool of this org"),
        }
    }

    pub fn endpoint(&self, slug: &str) -> Option<&Arc<EndpointState>> {
        self.endpoints.get(slug)
    }

    /// Every endpoint of the org, in no particular order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<EndpointState>> {
        self.endpoints.values()
    }

    /// Whether `value` of `kind` is revoked (and the revocation still in force).
    pub fn is_revoked(&self, kind: RevocationKind, value: &str) -> bool {
        self.revokes(kind, value, None)
    }

    /// Whether a token issued at `issued_at` (unix seconds) whose `kind` claim is `value` is
    /// revoked: the revocation is in force and catches tokens issued then.
    pub fn revokes(&self, kind: RevocationKind, value: &str, issued_at: Option<u64>) -> bool {
        self.revoked
            .get(&kind)
            .and_then(|m| m.get(value))
            .is_some_and(|r| r.expires_at > OffsetDateTime::now_utc() && r.catches(issued_at))
    }

    pub fn service_token(&self, hash_hex: &str) -> Option<&ServiceTokenSnapshot> {
        self.service_tokens.get(hash_hex)
    }
}

/// The hosted SQL tools of `endpoints`, each validated again with its backend's function allowlist
/// (once per tool, however many endpoints expose it).
fn sql_tools(
    endpoints: &[EndpointSnapshot],
    backends: &HashMap<BackendId, Arc<Result<BackendConfig, String>>>,
) -> HashMap<ToolId, Arc<Result<SqlTool, String>>> {
    let mut out = HashMap::new();
    for tool in endpoints.iter().flat_map(|e| &e.tools) {
        let ToolTarget::Sql(target) = &tool.target else {
            continue;
        };
        out.entry(tool.tool_id).or_insert_with(|| {
            let built = match backends.get(&target.backend_id).map(|b| b.as_ref()) {
                Some(Ok(backend)) => SqlTool::from_snapshot(
                    tool.tool_id,
                    &tool.approved_hash,
                    target,
                    &backend.allowed_functions,
                ),
                Some(Err(_)) => Err("the tool's backend cannot be opened".to_owned()),
                None => Err("the tool's backend is not in the snapshot".to_owned()),
            };
            if let Err(e) = &built {
                tracing::warn!(tool_id = %tool.tool_id, error = %e, "hosted SQL tool cannot run");
            }
            Arc::new(built)
        });
    }
    out
}

/// An endpoint with its tools indexed by exposed name and the scopes that grant each tool.
pub struct EndpointState {
    pub org_id: OrgId,
    pub snapshot: EndpointSnapshot,
    tools_by_name: HashMap<String, usize>,
    /// Tool → the scopes (names) that grant it.
    grants: HashMap<ToolId, Vec<String>>,
    /// The scopes worth asking for at this endpoint (those granting anything), sorted.
    pub scopes_supported: Vec<String>,
    /// What 401 challenges and the protected-resource metadata name: the scopes a caller can
    /// start with (those of `scopes_supported` any member may hold), or all of them when the
    /// endpoint publishes its scopes. Sorted.
    pub scopes_published: Vec<String>,
    /// The upstream servers this endpoint reaches, in a stable order (first use in `tools`).
    pub server_ids: Vec<ServerId>,
    /// Which of those servers owns which resource URI (learned; used with several servers).
    pub resource_owners: ResourceOwners,
}

impl EndpointState {
    fn index(org_id: OrgId, snapshot: EndpointSnapshot) -> Self {
        let tools_by_name = snapshot
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.exposed_name.clone(), i))
            .collect();
        let endpoint_tools: HashSet<ToolId> = snapshot.tools.iter().map(|t| t.tool_id).collect();
        let mut grants: HashMap<ToolId, Vec<String>> = HashMap::new();
        let mut supported = BTreeSet::new();
        for scope in &snapshot.scopes {
            for tool in &scope.tool_ids {
                if endpoint_tools.contains(tool) {
                    grants.entry(*tool).or_default().push(scope.name.clone());
                    supported.insert(scope.name.clone());
                }
            }
        }
        for grant in [&snapshot.prompts, &snapshot.resources].into_iter().flatten() {
            if let Some(scope) = &grant.scope {
                supported.insert(scope.clone());
            }
        }
        let scopes_published = supported
            .iter()
            .filter(|name| {
                snapshot.publish_scopes
                    || snapshot
                        .scopes
                        .iter()
                        .any(|s| &s.name == *name && s.min_role == Some(Role::Viewer))
            })
            .cloned()
            .collect();
        let mut server_ids = Vec::new();
        for tool in &snapshot.tools {
            if let ToolTarget::Upstream { server_id, .. } = &tool.target
                && !server_ids.contains(server_id)
            {
                server_ids.push(*server_id);
            }
        }
        Self {
            org_id,
            snapshot,
            tools_by_name,
            grants,
            scopes_supported: supported.into_iter().collect(),
            scopes_published,
            server_ids,
            resource_owners: ResourceOwners::default(),
        }
    }

    pub fn id(&self) -> EndpointId {
        self.snapshot.id
    }

    pub fn tool(&self, exposed_name: &str) -> Option<&EndpointTool> {
        self.tool_index(exposed_name).map(|i| &self.snapshot.tools[i])
    }

    /// Where the tool `exposed_name` is in `snapshot.tools`.
    pub fn tool_index(&self, exposed_name: &str) -> Option<usize> {
        self.tools_by_name.get(exposed_name).copied()
    }

    /// The scopes that grant `tool` here.
    pub fn scopes_granting(&self, tool: ToolId) -> &[String] {
        self.grants.get(&tool).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether a caller holding `scopes` may use `tool`.
    pub fn may_call(&self, tool: ToolId, scopes: &HashSet<String>) -> bool {
        self.scopes_granting(tool).iter().any(|s| scopes.contains(s))
    }
}

/// An upstream server with its credential opened.
pub struct ServerState {
    pub org_id: OrgId,
    pub snapshot: ServerSnapshot,
    /// The server as the MCP client speaks to it: its URL (parsed once per snapshot), transport
    /// and opened credential.
    pub upstream: Arc<Upstream>,
}

impl ServerState {
    fn open(org_id: OrgId, snapshot: ServerSnapshot, keyring: &Keyring) -> Self {
        let upstream = Upstream::of_snapshot(org_id, &snapshot, keyring);
        if let Err(problem) = &upstream.credential {
            tracing::error!(org_id = %org_id, server_id = %snapshot.id, problem, "upstream credential unusable");
        }
        Self {
            org_id,
            snapshot,
            upstream: Arc::new(upstream),
        }
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_core::ids::ServiceTokenId;
    use gatehouse_core::secrets::generate_key_b64;
    use gatehouse_core::snapshot::{RateLimits, Revocation, UpstreamAuth};
    use gatehouse_core::upstream::UpstreamTransport;

    use super::*;

    fn store() -> SnapshotStore {
        SnapshotStore::new(Keyring::parse(&format!("k={}", generate_key_b64())).unwrap())
    }

    fn org(org_id: OrgId, slug: &str, version: i64) -> OrgSnapshot {
        let endpoint_id = EndpointId::new();
        OrgSnapshot {
            org_id,
            slug: slug.into(),
            version,
            log_tool_arguments: false,
            hard_limit_calls: None,
            suspended: false,
            endpoints: vec![EndpointSnapshot {
                id: endpoint_id,
                slug: format!("ep-v{version}"),
                name: "Endpoint".into(),
                resource_url: format!("https://mcp.example.com/{slug}/ep/mcp"),
                rate_limits: RateLimits::default(),
                tools: vec![],
                scopes: vec![],
                prompts: None,
                resources: None,
                extra_methods: vec![],
                publish_scopes: false,
            }],
            servers: vec![ServerSnapshot {
                id: ServerId::new(),
                slug: "orders".into(),
                url: "https://orders.example.com/mcp".into(),
                transport: UpstreamTransport::StreamableHttp,
                auth: UpstreamAuth::None,
                send_caller_assertion: false,
            }],
            backends: vec![],
            revocations: vec![Revocation {
                kind: RevocationKind::Jti,
                value: format!("jti-v{version}"),
                expires_at: OffsetDateTime::now_utc() + time::Duration::hours(1),
                issued_before: None,
            }],
            service_tokens: vec![ServiceTokenSnapshot {
                id: ServiceTokenId::new(),
                endpoint_id,
                token_hash: format!("AB{version:02}"),
                name: "ci".into(),
                scopes: vec![],
                expires_at: None,
            }],
            callers: vec![],
        }
    }

    #[test]
    fn a_batch_installs_every_org_with_its_parts_indexed() {
        let store = store();
        let ids: Vec<OrgId> = (0..50).map(|_| OrgId::new()).collect();
        let installed = store.install_many(
            ids.iter()
                .enumerate()
                .map(|(i, id)| org(*id, &format!("org-{i}"), 1)),
        );
        assert_eq!(installed, 50);
        for (i, id) in ids.iter().enumerate() {
            let by_slug = store.org_by_slug(&format!("org-{i}")).expect("by slug");
            let by_id = store.org_by_id(*id).expect("by id");
            assert!(Arc::ptr_eq(&by_slug, &by_id));
            assert!(by_slug.endpoint("ep-v1").is_some());
            assert_eq!(by_slug.endpoints().count(), 1);
            assert_eq!(by_slug.servers.len(), 1);
            assert!(by_slug.is_revoked(RevocationKind::Jti, "jti-v1"));
            assert!(!by_slug.is_revoked(RevocationKind::Jti, "jti-v2"));
            // Token hashes are matched in lower case, as the verifier computes them.
            assert!(by_slug.service_token("ab01").is_some());
        }
        assert_eq!(store.versions().len(), 50);
    }

    #[test]
    fn only_newer_versions_replace_and_the_newest_of_a_batch_wins() {
        let store = store();
        let id = OrgId::new();
        assert!(store.install(org(id, "acme", 2)));
        assert!(
            !store.install(org(id, "acme", 2)),
            "an equal version is not installed again"
        );
        assert!(
            !store.install(org(id, "acme", 1)),
            "an older version never replaces a newer one"
        );
        assert_eq!(store.version_of(id), Some(2));
        // Within one batch, in any order, the newest version is what stays.
        let installed = store.install_many([org(id, "acme", 5), org(id, "acme", 3), org(id, "acme", 4)]);
        assert_eq!(installed, 1, "3 and 4 are older than 5, installed first");
        assert_eq!(store.version_of(id), Some(5));
        let installed = store.install_many([org(id, "acme", 6), org(id, "acme", 7)]);
        assert_eq!(installed, 2);
        let held = store.org_by_slug("acme").unwrap();
        assert_eq!(held.snapshot.version, 7);
        assert!(held.endpoint("ep-v7").is_some() && held.endpoint("ep-v6").is_none());
        assert_eq!(store.install_many([]), 0);
    }

    #[test]
    fn a_renamed_org_is_found_by_its_new_slug_only() {
        let store = store();
        let id = OrgId::new();
        store.install(org(id, "old-name", 1));
        store.install_many([org(OrgId::new(), "other", 1), org(id, "new-name", 2)]);
        assert!(store.org_by_slug("old-name").is_none());
        assert_eq!(store.org_by_slug("new-name").unwrap().snapshot.org_id, id);
        assert!(store.org_by_slug("other").is_some());
        store.remove(id);
        assert!(store.org_by_slug("new-name").is_none() && store.org_by_id(id).is_none());
    }
}
