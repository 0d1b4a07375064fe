//! Keeps the snapshot store current: a full load at start (until it succeeds, the dataplane is not
//! ready and refuses traffic), then one org at a time when the control plane announces a newer
//! version (within a second), and a full reconciliation every `snapshot_reconcile_secs` as a
//! backstop for missed announcements.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::{OrgSnapshot, OrgVersions};
use gatehouse_events::ChangeNotifier;

use crate::store::SnapshotStore;

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
                        match source.snapshot(change.org_id).await {
                            Ok(Some(snapshot)) => { store.install(snapshot); }
                            Ok(None) => store.remove(change.org_id),
                            Err(e) => tracing::warn!(org_id = %change.org_id, error = %e, "could not fetch a changed snapshot"),
                        }
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
