//! Keeps the snapshot store current: a full load at start (until it succeeds, the dataplane is not
//! ready and refuses traffic), then one org at a time when the control plane announces a newer
//! version (within a second), and a full reconciliation every `snapshot_reconcile_secs` as a
//! backstop for missed announcements. A request that names what its org's snapshot lacks (an
//! endpoint, a service token) may fetch that org at once ([`Refresher`]): what the REST API just
//! created answers the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::{OrgSnapshot, OrgVersions};
use gatehouse_core::sync::MutexExt;
use gatehouse_events::ChangeNotifier;

use crate::store::{EndpointState, OrgState, SnapshotStore};

/// Fetches snapshots from the control API's internal API.
#[derive(Clone)]
pub struct SnapshotSource {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl SnapshotSource {
    pub fn new(http: reqwest::Client, control_api_url: &url::Url, internal_token: String) -> Self {
        Self {
            http,
            base: control_api_url.as_str().trim_end_matches('/').to_owned(),
            token: internal_token,
        }
    }

    async fn versions(&self) -> anyhow::Result<OrgVersions> {
        Ok(self
            .http
            .get(format!("{}/internal/v1/orgs", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn snapshot(&self, org: OrgId) -> anyhow::Result<Option<OrgSnapshot>> {
        let response = self
            .http
            .get(format!("{}/internal/v1/orgs/{org}/snapshot", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(response.error_for_status()?.json().await?))
    }
}

/// Fetches one org's snapshot when a request finds it lacking, so that a change made through the
/// REST API is served by the next request instead of within the second its announcement takes.
///
/// What callers can make it do is bounded: one fetch per org at a time (a caller that arrives
/// meanwhile waits for it, and fetches again only if it began before the caller arrived), and at
/// most [`FETCHES_PER_SECOND`] on this replica in all; past that, requests are answered from the
/// snapshot held, as without this (unknown requests cannot make the control API work harder than
/// that). A fetch waits
/// at most [`FETCH_WAIT`]; a snapshot is installed only if it is newer than the one held, and an
/// org the control API no longer knows is left to the announcement and the reconciliation.
#[derive(Clone)]
pub struct Refresher {
    store: SnapshotStore,
    source: SnapshotSource,
    inner: Arc<RefresherInner>,
}

struct RefresherInner {
    /// When each org's last successful fetch began, behind the lock that makes it one fetch at a
    /// time.
    orgs: Mutex<HashMap<OrgId, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
    /// This second's fetches: (when the second began, how many).
    budget: Mutex<(Instant, u32)>,
}

/// Most fetches a second on one replica.
pub const FETCHES_PER_SECOND: u32 = 10;
/// Longest a request waits for a fetch.
pub const FETCH_WAIT: Duration = Duration::from_secs(2);

impl Refresher {
    pub fn new(store: SnapshotStore, source: SnapshotSource) -> Self {
        Self {
            store,
            source,
            inner: Arc::new(RefresherInner {
                orgs: Mutex::new(HashMap::new()),
                budget: Mutex::new((Instant::now(), 0)),
            }),
        }
    }

    /// Fetches `org`'s snapshot unless the bounds above say no; true when a fetch that began
    /// after this call arrived has completed (the store then holds what the control API had).
    pub async fn refresh(&self, org: OrgId) -> bool {
        let arrived = Instant::now();
        let slot = {
            let mut orgs = self.inner.orgs.lock_or_recover();
            // The map stays small: slots no request holds are forgotten (the budget still bounds
            // their fetches).
            if orgs.len() >= 1024 {
                orgs.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
            orgs.entry(org).or_default().clone()
        };
        let mut last = slot.lock().await;
        if last.is_some_and(|began| began >= arrived) {
            return true;
        }
        if !self.spend() {
            return false;
        }
        let began = Instant::now();
        // An org the control API no longer knows is left to the announcement and the
        // reconciliation, which remove it.
        let fetched = match tokio::time::timeout(FETCH_WAIT, self.source.snapshot(org)).await {
            Ok(result) => fetch_into(&self.store, org, result, false),
            Err(_) => false,
        };
        if fetched {
            *last = Some(began);
        }
        fetched
    }

    /// The org and endpoint a request names. An endpoint its org's snapshot lacks may have been
    /// created since: the org's snapshot is fetched ([`Refresher::refresh`]) and looked at again.
    pub async fn endpoint(
        &self,
        org_slug: &str,
        endpoint_slug: &str,
    ) -> Option<(Arc<OrgState>, Arc<EndpointState>)> {
        let org = self.store.org_by_slug(org_slug)?;
        if let Some(endpoint) = org.endpoint(endpoint_slug) {
            return Some((org.clone(), endpoint.clone()));
        }
        self.refreshed(org.snapshot.org_id, endpoint_slug).await
    }

    /// `org` and its endpoint `endpoint_slug` as the control API has them now
    /// ([`Refresher::refresh`]); `None` when they could not be fetched or do not exist.
    pub async fn refreshed(
        &self,
        org: OrgId,
        endpoint_slug: &str,
    ) -> Option<(Arc<OrgState>, Arc<EndpointState>)> {
        if !self.refresh(org).await {
            return None;
        }
        let org = self.store.org_by_id(org)?;
        let endpoint = org.endpoint(endpoint_slug)?.clone();
        Some((org, endpoint))
    }

    fn spend(&self) -> bool {
        let mut budget = self.inner.budget.lock_or_recover();
        if budget.0.elapsed() >= Duration::from_secs(1) {
            *budget = (Instant::now(), 0);
        }
        budget.1 < FETCHES_PER_SECOND && {
            budget.1 += 1;
            true
        }
    }
}

/// Installs what fetching `org`'s snapshot gave (if newer than what is held), forgetting the
/// org when the control API no longer knows it and `remove_gone`; whether the fetch succeeded.
fn fetch_into(
    store: &SnapshotStore,
    org: OrgId,
    fetched: anyhow::Result<Option<OrgSnapshot>>,
    remove_gone: bool,
) -> bool {
    match fetched {
        Ok(Some(snapshot)) => {
            store.install(snapshot);
            true
        }
        Ok(None) => {
            if remove_gone {
                store.remove(org);
            }
            true
        }
        Err(e) => {
            tracing::warn!(org_id = %org, error = %e, "could not fetch an org snapshot");
            false
        }
    }
}

/// Fetched snapshots are installed this many at a time: one swap of the store per batch (see
/// [`SnapshotStore::install_many`]), and the snapshots of a batch are indexed before the next
/// batch is, so a full load never holds much more than one copy of the configuration.
const INSTALL_BATCH: usize = 1_000;

/// Installs fetched snapshots (each only if newer than what the store holds), in batches.
pub fn install_all(store: &SnapshotStore, snapshots: Vec<OrgSnapshot>) {
    let mut snapshots = snapshots.into_iter().peekable();
    while snapshots.peek().is_some() {
        store.install_many(snapshots.by_ref().take(INSTALL_BATCH));
    }
}

/// Loads every org whose version is newer than what the store holds, and forgets orgs that are
/// gone.
pub async fn reconcile(store: &SnapshotStore, source: &SnapshotSource) -> anyhow::Result<()> {
    let listed = source.versions().await?;
    let wanted: Vec<OrgId> = listed
        .orgs
        .iter()
        .filter(|c| store.version_of(c.org_id).is_none_or(|held| held < c.version))
        .map(|c| c.org_id)
        .collect();
    let mut fetches = futures::stream::iter(wanted.into_iter().map(|org| {
        let source = source.clone();
        async move { (org, source.snapshot(org).await) }
    }))
    .buffer_unordered(8);
    let mut failed = 0usize;
    let mut fetched = Vec::new();
    while let Some((org, result)) = fetches.next().await {
        match result {
            Ok(Some(snapshot)) => fetched.push(snapshot),
            Ok(None) => store.remove(org),
            Err(e) => {
                failed += 1;
                tracing::warn!(org_id = %org, error = %e, "could not fetch an org snapshot");
            }
        }
    }
    install_all(store, fetched);
    let listed_ids: std::collections::HashSet<OrgId> = listed.orgs.iter().map(|c| c.org_id).collect();
    for (org, _) in store.versions() {
        if !listed_ids.contains(&org) {
            store.remove(org);
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} org snapshots could not be fetched");
    }
    Ok(())
}

/// Runs until `shutdown`: initial load, change notifications, periodic reconciliation.
pub async fn run(
    store: SnapshotStore,
    source: SnapshotSource,
    notifier: ChangeNotifier,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut changes = notifier.subscribe();
    let mut backoff = Duration::from_millis(200);
    while !store.is_loaded() {
        match reconcile(&store, &source).await {
            Ok(()) => {
                store.mark_loaded();
                tracing::info!(orgs = store.versions().len(), "configuration loaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "configuration not loaded yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(e) = reconcile(&store, &source).await {
                    tracing::warn!(error = %e, "configuration reconciliation failed");
                }
            }
            change = changes.recv() => match change {
                Ok(change) => {
                    if store.version_of(change.org_id).is_none_or(|held| held < change.version) {
                        fetch_into(&store, change.org_id, source.snapshot(change.org_id).await, true);
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    if let Err(e) = reconcile(&store, &source).await {
                        tracing::warn!(error = %e, "configuration reconciliation failed");
                    }
                }
                Err(RecvError::Closed) => {
                    changes = notifier.subscribe();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use gatehouse_core::secrets::{Keyring, generate_key_b64};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A control API that knows no org (every snapshot 404), counting the requests it gets.
    async fn control_api() -> (url::Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = conn
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        (url, hits)
    }

    fn refresher(url: &url::Url) -> Refresher {
        let store = SnapshotStore::new(Keyring::parse(&format!("k={}", generate_key_b64())).unwrap());
        let source = SnapshotSource::new(reqwest::Client::new(), url, "internal".into());
        Refresher::new(store, source)
    }

    /// However many requests name what no snapshot holds, the control API gets at most
    /// `FETCHES_PER_SECOND` fetches a second from one replica, whether they name many orgs or
    /// one.
    #[tokio::test]
    async fn fetches_on_demand_are_bounded() {
        let (url, hits) = control_api().await;
        let refresher = refresher(&url);
        let started = Instant::now();
        // 100 orgs, one after the other, within a second: the budget.
        let mut fetched = 0;
        for _ in 0..100 {
            if refresher.refresh(OrgId::new()).await {
                fetched += 1;
            }
        }
        if started.elapsed() < Duration::from_secs(1) {
            assert_eq!(fetched, FETCHES_PER_SECOND as usize);
            assert_eq!(hits.load(Ordering::SeqCst), FETCHES_PER_SECOND as usize);
        }
        // One org, 50 callers at once, after the budget refilled: one fetch at a time, within the
        // budget.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = hits.load(Ordering::SeqCst);
        let org = OrgId::new();
        let answers = futures::future::join_all((0..50).map(|_| refresher.refresh(org))).await;
        assert!(answers.iter().any(|fetched| *fetched));
        let fetches = hits.load(Ordering::SeqCst) - before;
        assert!(
            (1..=FETCHES_PER_SECOND as usize).contains(&fetches),
            "{fetches} fetches for 50 callers"
        );
    }
}
