//! Retention: what an org's plan no longer keeps (`plans.retention_days`) is removed, in bounded
//! passes, by the database's own pruning function (the services cannot delete audit entries
//! themselves; see the migration `plan_retention`). Orgs on plans without retention are untouched.

use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::audit::{self, Pruned};
use gatehouse_db::{Db, DbError, GlobalTx, OrgScope, TenantTx};

/// Audit entries removed per transaction: each pass holds the org's chain head (appends wait),
/// so passes are kept short.
pub const ENTRIES_PER_PASS: i32 = 5_000;

/// What one sweep removed, over all orgs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub orgs: usize,
    pub audit_entries: i64,
    pub usage_rows: i64,
}

/// Applies every org's plan retention, until nothing more is due.
pub async fn sweep_once(db: &Db) -> Result<Sweep, DbError> {
    let mut global = GlobalTx::begin(db).await?;
    let orgs = gatehouse_db::repos::plans::orgs_with_retention(&mut global).await?;
    global.commit().await?;
    let mut sweep = Sweep::default();
    for org in orgs {
        let pruned = prune_org(db, org).await?;
        if pruned.audit_entries > 0 || pruned.usage_rows > 0 {
            sweep.orgs += 1;
            sweep.audit_entries += pruned.audit_entries;
            sweep.usage_rows += pruned.usage_rows;
            tracing::info!(
                org = %org,
                audit_entries = pruned.audit_entries,
                through_seq = pruned.through_seq,
                usage_rows = pruned.usage_rows,
                "retention applied"
            );
        }
    }
    Ok(sweep)
}

/// Prunes one org in passes of [`ENTRIES_PER_PASS`] audit entries.
pub async fn prune_org(db: &Db, org: OrgId) -> Result<Pruned, DbError> {
    let mut total = Pruned::default();
    loop {
        let mut tx = TenantTx::begin(db, &OrgScope::authorized(org)).await?;
        let pass = audit::apply_retention(&mut tx, ENTRIES_PER_PASS).await?;
        tx.commit().await?;
        total.audit_entries += pass.audit_entries;
        total.usage_rows += pass.usage_rows;
        total.through_seq = pass.through_seq;
        if pass.audit_entries < i64::from(ENTRIES_PER_PASS) {
            return Ok(total);
        }
    }
}
