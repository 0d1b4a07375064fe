//! Scheduled re-sync of domain servers. Every `control_api.resync_interval_secs`, each server's
//! tools are listed again, so a definition that drifts upstream (a rug pull) is withheld and
//! audited within one interval even when nobody syncs by hand and no client is listing tools.
//! Replicas share the work: a server is claimed by moving its due time forward in one UPDATE.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use gatehouse_db::repos::{orgs, servers};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};

use crate::changes::Acting;
use crate::state::AppState;
use crate::sync;

/// Runs scheduled syncs until `shutdown`. Does nothing when the interval is 0.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let interval = state.cfg.control_api.resync_interval_secs;
    if interval == 0 {
        return;
    }
    // Look for due servers a few times per interval (at most every minute, at least every second).
    let tick = Duration::from_secs((interval / 4).clamp(1, 60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if let Err(e) = sync_due(&state, interval, &shutdown).await {
            tracing::warn!(error = %e, "scheduled server sync pass failed; retrying next tick");
        }
    }
}

/// One pass over every org: claims and syncs its due servers.
async fn sync_due(state: &AppState, interval: u64, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let mut global = GlobalTx::begin(&state.db).await?;
    let org_ids = orgs::list_all_ids(&mut global).await?;
    global.commit().await?;
    for (org_id, _) in org_ids {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        // Gatehouse acts on its own here: the org is one it hosts, the work is its own schedule.
        let scope = OrgScope::authorized(org_id);
        let mut tx = TenantTx::begin(&state.db, &scope).await?;
        let due = servers::claim_due_for_sync(&mut tx, interval).await?;
        tx.commit().await?;
        let acting = Acting::system(scope, "scheduled sync");
        for server_id in due {
            match sync::sync_server(state, &acting, server_id).await {
                Ok((_, report)) => {
                    metrics::counter!("gatehouse_scheduled_syncs_total", "outcome" => if report.error.is_some() { "error" } else { "ok" })
                        .increment(1);
                    if !report.changed.is_empty() {
                        tracing::warn!(%org_id, %server_id, changed = ?report.changed, "tool definitions drifted upstream; withheld until re-approved");
                    }
                }
                Err(e) => tracing::warn!(%org_id, %server_id, error = %e, "scheduled sync failed"),
            }
        }
    }
    Ok(())
}
