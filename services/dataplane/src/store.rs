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
use secrecy::SecretString;
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, OrgId, ServerId, ToolId};
use gatehouse_core::secrets::Keyring;
use gatehouse_core::snapshot::{
    EndpointSnapshot, EndpointTool, OrgSnapshot, RevocationKind, ServerSnapshot, ServiceTokenSnapshot,
    ToolTarget, UpstreamAuth, server_credential_context,
};

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
        let state = Arc::new(OrgState::index(snapshot, &self.inner.keyring));
        let _guard = self.inner.write.lock().expect("store writer lock");
        let current = self.inner.orgs.load();
        if let Some(existing) = current.by_id.get(&state.snapshot.org_id)
            && existing.snapshot.version >= state.snapshot.version
        {
            return false;
        }
        let mut by_slug = current.by_slug.clone();
        let mut by_id = current.by_id.clone();
        if let Some(old) = by_id.get(&state.snapshot.org_id)
            && old.snapshot.slug != state.snapshot.slug
        {
            by_slug.remove(&old.snapshot.slug);
        }
        by_slug.insert(state.snapshot.slug.clone(), state.clone());
        by_id.insert(state.snapshot.org_id, state);
        self.inner.orgs.store(Arc::new(Orgs { by_slug, by_id }));
        true
    }

    /// Forgets an org the control plane no longer lists (deleted).
    pub fn remove(&self, org: OrgId) {
        let _guard = self.inner.write.lock().expect("store writer lock");
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

/// One org's snapshot with the indexes the request path needs.
pub struct OrgState {
    pub snapshot: OrgSnapshot,
    endpoints: HashMap<String, Arc<EndpointState>>,
    pub servers: HashMap<ServerId, Arc<ServerState>>,
    revoked: HashMap<RevocationKind, HashMap<String, OffsetDateTime>>,
    service_tokens: HashMap<String, ServiceTokenSnapshot>,
}

impl OrgState {
    fn index(snapshot: OrgSnapshot, keyring: &Keyring) -> Self {
        let servers = snapshot
            .servers
            .iter()
            .map(|s| {
                (
                    s.id,
                    Arc::new(ServerState::open(snapshot.org_id, s.clone(), keyring)),
                )
            })
            .collect();
        let endpoints = snapshot
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.slug.clone(),
                    Arc::new(EndpointState::index(snapshot.org_id, e.clone())),
                )
            })
            .collect();
        let mut revoked: HashMap<RevocationKind, HashMap<String, OffsetDateTime>> = HashMap::new();
        for r in &snapshot.revocations {
            revoked
                .entry(r.kind)
                .or_default()
                .insert(r.value.clone(), r.expires_at);
        }
        let service_tokens = snapshot
            .service_tokens
            .iter()
            .map(|t| (t.token_hash.to_ascii_lowercase(), t.clone()))
            .collect();
        Self {
            snapshot,
            endpoints,
            servers,
            revoked,
            service_tokens,
        }
    }

    pub fn endpoint(&self, slug: &str) -> Option<&Arc<EndpointState>> {
        self.endpoints.get(slug)
    }

    /// Whether `value` of `kind` is revoked (and the revocation still in force).
    pub fn is_revoked(&self, kind: RevocationKind, value: &str) -> bool {
        self.revoked
            .get(&kind)
            .and_then(|m| m.get(value))
            .is_some_and(|until| *until > OffsetDateTime::now_utc())
    }

    pub fn service_token(&self, hash_hex: &str) -> Option<&ServiceTokenSnapshot> {
        self.service_tokens.get(hash_hex)
    }
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
            server_ids,
            resource_owners: ResourceOwners::default(),
        }
    }

    pub fn id(&self) -> EndpointId {
        self.snapshot.id
    }

    pub fn tool(&self, exposed_name: &str) -> Option<&EndpointTool> {
        self.tools_by_name
            .get(exposed_name)
            .map(|&i| &self.snapshot.tools[i])
    }

    /// The scopes that grant `tool` here.
    pub fn scopes_granting(&self, tool: ToolId) -> &[String] {
        self.grants.get(&tool).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether a caller holding `scopes` may use `tool`.
    pub fn may_call(&self, tool: ToolId, scopes: &HashSet<String>) -> bool {
        self.scopes_granting(tool).iter().any(|s| scopes.contains(s))
    }

    /// The tool whose upstream identity is (`server`, `upstream_name`), if exposed here.
    pub fn tool_by_upstream(&self, server: ServerId, upstream_name: &str) -> Option<&EndpointTool> {
        self.snapshot.tools.iter().find(|t| {
            matches!(&t.target, ToolTarget::Upstream { server_id, upstream_name: n } if *server_id == server && n == upstream_name)
        })
    }
}

/// An upstream server with its credential opened.
pub struct ServerState {
    pub org_id: OrgId,
    pub snapshot: ServerSnapshot,
    pub credential: Result<UpstreamCredential, String>,
    /// `snapshot.url`, parsed once per snapshot rather than on every call (`None`: invalid).
    pub url: Option<url::Url>,
}

/// A server's own credential, opened from the snapshot. Never logged (`Debug` redacts).
pub enum UpstreamCredential {
    None,
    Bearer(SecretString),
    Header {
        name: String,
        value: SecretString,
    },
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        scope: Option<String>,
    },
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamCredential::None => "None",
            UpstreamCredential::Bearer(_) => "Bearer([REDACTED])",
            UpstreamCredential::Header { .. } => "Header([REDACTED])",
            UpstreamCredential::OauthClientCredentials { .. } => "OauthClientCredentials([REDACTED])",
        })
    }
}

impl ServerState {
    fn open(org_id: OrgId, snapshot: ServerSnapshot, keyring: &Keyring) -> Self {
        let context = server_credential_context(org_id, snapshot.id);
        let open = |sealed: &gatehouse_core::snapshot::Sealed| -> Result<SecretString, String> {
            let bytes = keyring
                .open(&sealed.0, &context)
                .map_err(|e| format!("credential cannot be opened: {e}"))?;
            String::from_utf8(bytes)
                .map(SecretString::from)
                .map_err(|_| "credential is not UTF-8".to_owned())
        };
        let credential = match &snapshot.auth {
            UpstreamAuth::None => Ok(UpstreamCredential::None),
            UpstreamAuth::Bearer { token } => open(token).map(UpstreamCredential::Bearer),
            UpstreamAuth::Header { name, value } => open(value).map(|value| UpstreamCredential::Header {
                name: name.clone(),
                value,
            }),
            UpstreamAuth::OauthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => open(client_secret).map(|client_secret| UpstreamCredential::OauthClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret,
                scope: scope.clone(),
            }),
        };
        if let Err(problem) = &credential {
            tracing::error!(org_id = %org_id, server_id = %snapshot.id, problem, "upstream credential unusable");
        }
        Self {
            org_id,
            url: url::Url::parse(&snapshot.url).ok(),
            snapshot,
            credential,
        }
    }
}
