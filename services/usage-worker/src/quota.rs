//! Quota enforcement: an org whose billable calls in the current period reach its plan's hard
//! limit is marked over quota (dataplanes then refuse its calls); a new period or a plan change
//! brings it back under. An install that does not enforce hard limits
//! (`billing.enforce_hard_limits = false`) never marks an org over quota.

use time::OffsetDateTime;

use gatehouse_core::config::BillingConfig;
use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::{invoices, usage};
use gatehouse_db::{Db, DbError, OrgScope, TenantTx};
use gatehouse_events::QuotaState;

/// Whether plans' hard limits apply on this install (`billing.enforce_hard_limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardLimits {
    Enforced,
    Ignored,
}

impl HardLimits {
    pub fn of(cfg: &BillingConfig) -> Self {
        if cfg.enforce_hard_limits {
            HardLimits::Enforced
        } else {
            HardLimits::Ignored
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaStatus {
    pub calls: i64,
    pub hard_limit: Option<i64>,
    pub over: bool,
}

/// The org's standing in the period containing `now`.
pub async fn status(
    db: &Db,
    org: OrgId,
    now: OffsetDateTime,
    limits: HardLimits,
) -> Result<QuotaStatus, DbError> {
    let mut tx = TenantTx::begin(db, &OrgScope::authorized(org)).await?;
    let plan = invoices::plan_of_org(&mut tx).await?;
    let calls = usage::period_calls(&mut tx, usage::period_start_of(now)).await?;
    tx.commit().await?;
    Ok(QuotaStatus {
        calls,
        hard_limit: plan.hard_limit_calls,
        over: limits == HardLimits::Enforced && plan.hard_limit_calls.is_some_and(|limit| calls >= limit),
    })
}

/// Recomputes the org's standing and publishes it if it changed.
pub async fn enforce(
    db: &Db,
    quota: &QuotaState,
    org: OrgId,
    now: OffsetDateTime,
    limits: HardLimits,
) -> Result<QuotaStatus, DbError> {
    let status = status(db, org, now, limits).await?;
    if status.over != quota.is_over(org) {
        if status.over {
            tracing::info!(org_id = %org, calls = status.calls, limit = ?status.hard_limit, "org over quota");
        } else {
            tracing::info!(org_id = %org, calls = status.calls, limit = ?status.hard_limit, "org back under quota");
        }
        quota.set(org, status.over).await;
    }
    Ok(status)
}

/// Re-checks every org marked over quota (a new period started, or its plan changed). Returns
/// how many were cleared.
pub async fn sweep_once(
    db: &Db,
    quota: &QuotaState,
    now: OffsetDateTime,
    limits: HardLimits,
) -> Result<usize, DbError> {
    let mut cleared = 0;
    for org in quota.over_orgs() {
        match enforce(db, quota, org, now, limits).await {
            Ok(status) if !status.over => cleared += 1,
            Ok(_) => {}
            // A deleted org has nothing to enforce.
            Err(DbError::NotFound) => {
                quota.set(org, false).await;
                cleared += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cleared)
}
