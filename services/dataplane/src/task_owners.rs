//! Who created each task (Tasks extension): `task → (org, endpoint, subject, tool)`, recorded
//! when an upstream answers a `tools/call` with a task, and consulted before any `tasks/*`
//! request or `tasks/list` item is served (see `mcp::tasks`).
//!
//! Task ids are the upstream's, so a record is keyed by the org, the endpoint and the upstream
//! server as well (the id itself is hashed: its length is the upstream's choice). With Redis the
//! records are shared by every replica (`SET … NX EX`, so the first creator keeps a task); each
//! replica also keeps the records it made in process, bounded and with the same time to live, so
//! a Redis outage does not close its own callers' tasks to them. Without a record there is no
//! task: an unknown task is refused, never forwarded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use gatehouse_core::ids::{EndpointId, OrgId, ServerId, ToolId};
use gatehouse_events::link::RedisLink;

/// How long a task stays bound to its creator (and so reachable at all).
pub const TASK_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Records kept in process per replica; past it, expired records go first, then the oldest.
const MAX_LOCAL: usize = 100_000;

/// Where a task lives: the upstream's task id at one upstream server of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub org: OrgId,
    pub endpoint: EndpointId,
    pub server: ServerId,
    /// SHA-256 of the upstream's task id, hex.
    task: String,
}

impl TaskKey {
    pub fn new(org: OrgId, endpoint: EndpointId, server: ServerId, task_id: &str) -> Self {
        Self {
            org,
            endpoint,
            server,
            task: hex::encode(Sha256::digest(task_id.as_bytes())),
        }
    }

    fn redis_key(&self, prefix: &str) -> String {
        format!(
            "{prefix}task:{}:{}:{}:{}",
            self.org, self.endpoint, self.server, self.task
        )
    }
}

/// Who created a task, and with which tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOwner {
    pub subject: String,
    pub tool: ToolId,
}

impl TaskOwner {
    fn encode(&self) -> String {
        format!("{}\n{}", self.tool, self.subject)
    }

    fn decode(value: &str) -> Option<Self> {
        let (tool, subject) = value.split_once('\n')?;
        Some(Self {
            subject: subject.to_owned(),
            tool: tool.parse().ok()?,
        })
    }
}

struct Shared {
    link: RedisLink,
    prefix: String,
}

/// The task owners. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct TaskOwners {
    local: Arc<Mutex<HashMap<TaskKey, (TaskOwner, Instant)>>>,
    shared: Option<Arc<Shared>>,
}

impl TaskOwners {
    /// In process only (single-node mode).
    pub fn local() -> Self {
        Self::default()
    }

    /// Shared through Redis (keys under `prefix`), with the in-process records as fallback.
    pub fn redis(link: RedisLink, prefix: &str) -> Self {
        Self {
            local: Arc::default(),
            shared: Some(Arc::new(Shared {
                link,
                prefix: prefix.to_owned(),
            })),
        }
    }

    /// Records that `owner` created the task at `key`; a task already recorded keeps its owner.
    pub async fn record(&self, key: TaskKey, owner: TaskOwner) {
        self.record_at(key.clone(), owner.clone(), Instant::now());
        let Some(shared) = &self.shared else { return };
        let Some(conn) = shared.link.get() else {
            tracing::warn!("redis unreachable; a task's owner is known to this replica only");
            return;
        };
        let mut c = conn.conn.clone();
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key.redis_key(&shared.prefix))
            .arg(owner.encode())
            .arg("NX")
            .arg("EX")
            .arg(TASK_TTL.as_secs())
            .query_async(&mut c)
            .await;
        if let Err(e) = set {
            shared.link.failed(&conn, &e);
            tracing::warn!(error = %e, "could not share a task's owner through redis");
        }
    }

    /// The owner of the task at `key`, if it is recorded and not expired.
    pub async fn owner(&self, key: &TaskKey) -> Option<TaskOwner> {
        if let Some(owner) = self.local_owner(key, Instant::now()) {
            return Some(owner);
        }
        let shared = self.shared.as_ref()?;
        let conn = shared.link.get()?;
        let mut c = conn.conn.clone();
        let value: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(key.redis_key(&shared.prefix))
            .query_async(&mut c)
            .await;
        match value {
            Ok(value) => value.as_deref().and_then(TaskOwner::decode),
            Err(e) => {
                shared.link.failed(&conn, &e);
                None
            }
        }
    }

    fn record_at(&self, key: TaskKey, owner: TaskOwner, now: Instant) {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, at)) = local.get(&key)
            && now.duration_since(*at) < TASK_TTL
        {
            return;
        }
        if local.len() >= MAX_LOCAL {
            local.retain(|_, (_, at)| now.duration_since(*at) < TASK_TTL);
        }
        if local.len() >= MAX_LOCAL
            && let Some(oldest) = local
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            local.remove(&oldest);
        }
        local.insert(key, (owner, now));
    }

    fn local_owner(&self, key: &TaskKey, now: Instant) -> Option<TaskOwner> {
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local
            .get(key)
            .filter(|(_, at)| now.duration_since(*at) < TASK_TTL)
            .map(|(owner, _)| owner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(subject: &str) -> TaskOwner {
        TaskOwner {
            subject: subject.into(),
            tool: ToolId::new(),
        }
    }

    #[test]
    fn the_first_creator_keeps_a_task_until_it_expires() {
        let owners = TaskOwners::local();
        let (org, endpoint, server) = (OrgId::new(), EndpointId::new(), ServerId::new());
        let key = TaskKey::new(org, endpoint, server, "t1");
        let now = Instant::now();
        let alice = owner("alice");
        owners.record_at(key.clone(), alice.clone(), now);
        owners.record_at(key.clone(), owner("bob"), now);
        assert_eq!(owners.local_owner(&key, now), Some(alice));
        assert_eq!(owners.local_owner(&key, now + TASK_TTL), None, "expired");
        // The same id elsewhere is another task.
        for other in [
            TaskKey::new(org, endpoint, ServerId::new(), "t1"),
            TaskKey::new(org, EndpointId::new(), server, "t1"),
            TaskKey::new(OrgId::new(), endpoint, server, "t1"),
        ] {
            assert_eq!(owners.local_owner(&other, now), None);
        }
    }

    #[test]
    fn the_records_are_bounded() {
        let owners = TaskOwners::local();
        let (org, endpoint, server) = (OrgId::new(), EndpointId::new(), ServerId::new());
        let start = Instant::now();
        for i in 0..MAX_LOCAL + 10 {
            let at = start + Duration::from_millis(i as u64);
            owners.record_at(
                TaskKey::new(org, endpoint, server, &i.to_string()),
                owner("a"),
                at,
            );
        }
        let held = owners.local.lock().unwrap().len();
        assert_eq!(held, MAX_LOCAL);
        let newest = TaskKey::new(org, endpoint, server, &(MAX_LOCAL + 9).to_string());
        assert!(owners.local_owner(&newest, start).is_some());
        let oldest = TaskKey::new(org, endpoint, server, "0");
        assert!(owners.local_owner(&oldest, start).is_none());
    }

    #[test]
    fn owners_survive_their_encoding() {
        let alice = owner("client:a\nb");
        assert_eq!(TaskOwner::decode(&alice.encode()), Some(alice));
        assert_eq!(TaskOwner::decode("nonsense"), None);
    }
}
