//! Usage alert emails: when an org's billable calls in the current period reach 80% and 100% of
//! its plan's allowance (the hard limit if the plan has one, the included calls otherwise), its
//! owners and admins (with a verified address) get one email per threshold and period.
//!
//! The threshold is recorded (`usage_alerts_sent`) in the transaction during which the mail is
//! sent: a failed send rolls it back, so the alert is tried again with the org's next usage; a
//! crash between sending and committing may send it twice, never zero times once usage grows.

use std::collections::BTreeSet;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use gatehouse_core::ids::OrgId;
use gatehouse_db::repos::invoices::{self, PlanRow};
use gatehouse_db::repos::{orgs, usage};
use gatehouse_db::{Db, DbError, OrgScope, TenantTx};
use gatehouse_mail::{Mail, MailError, Mailer};

use crate::billing::Period;

/// Percentages of the allowance that trigger an email.
pub const THRESHOLDS_PCT: [u32; 2] = [80, 100];

/// The calls alerts are measured against: the hard limit when the plan has one, else the
/// included calls; `None` when neither is positive (nothing to warn about).
pub fn allowance(plan: &PlanRow) -> Option<i64> {
    plan.hard_limit_calls
        .filter(|l| *l > 0)
        .or(Some(plan.included_calls).filter(|i| *i > 0))
}

/// The thresholds `calls` has reached, lowest first.
pub fn reached(allowance: i64, calls: i64) -> Vec<u32> {
    THRESHOLDS_PCT
        .into_iter()
        .filter(|pct| i128::from(calls) * 100 >= i128::from(allowance) * i128::from(*pct))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("sending the usage alert failed: {0}")]
    Mail(#[from] MailError),
}

/// Sends usage alerts.
#[derive(Clone)]
pub struct Alerts {
    pub db: Db,
    pub mailer: Mailer,
    /// The console's base URL (the control API's public URL); the email links to the org's usage.
    pub console_url: String,
}

impl Alerts {
    /// Mails the org's owners and admins if a threshold was reached this period and not mailed
    /// yet (one email for the highest new threshold; lower ones reached at the same time are
    /// recorded as sent). Returns the threshold mailed, if any.
    pub async fn check_org(&self, org: OrgId, now: OffsetDateTime) -> Result<Option<u32>, AlertError> {
        let mut tx = TenantTx::begin(&self.db, &OrgScope::authorized(org)).await?;
        let plan = invoices::plan_of_org(&mut tx).await?;
        let Some(allowance) = allowance(&plan) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let period = Period::containing(now);
        let calls = usage::period_calls(&mut tx, period.start).await?;
        let mut newly = Vec::new();
        for pct in reached(allowance, calls) {
            if usage::claim_alert(&mut tx, period.start, pct as i32).await? {
                newly.push(pct);
            }
        }
        let Some(&percent) = newly.last() else {
            tx.rollback().await?;
            return Ok(None);
        };
        let org_row = orgs::get(&mut tx).await?;
        let recipients = usage::alert_recipients(&mut tx).await?;
        let mail = Mail::UsageAlert {
            org_name: org_row.name.clone(),
            percent,
            used_calls: calls.max(0) as u64,
            included_calls: allowance as u64,
            period: period.label(),
            link: format!(
                "{}/orgs/{}/usage",
                self.console_url.trim_end_matches('/'),
                org_row.slug
            ),
        };
        for recipient in &recipients {
            self.mailer.send(&recipient.email, &mail).await?;
        }
        tx.commit().await?;
        metrics::counter!("gatehouse_worker_usage_alerts_total").increment(1);
        tracing::info!(org_id = %org, percent, recipients = recipients.len(), "usage alert sent");
        Ok(Some(percent))
    }

    /// Checks every org whose usage grew, as they are announced, until `stop`.
    pub async fn run(self, mut grew: mpsc::UnboundedReceiver<OrgId>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                org = grew.recv() => match org {
                    Some(org) => org,
                    None => return,
                },
                _ = stop.cancelled() => return,
            };
            // Coalesce a burst of batches into one check per org.
            let mut orgs = BTreeSet::from([first]);
            tokio::time::sleep(Duration::from_millis(200)).await;
            while let Ok(org) = grew.try_recv() {
                orgs.insert(org);
            }
            for org in orgs {
                if let Err(e) = self.check_org(org, OffsetDateTime::now_utc()).await {
                    tracing::warn!(org_id = %org, error = %e, "usage alert not sent; retried with the org's next usage");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(included: i64, hard: Option<i64>) -> PlanRow {
        PlanRow {
            id: "p".into(),
            name: "P".into(),
            monthly_fee_cents: 0,
            included_calls: included,
            overage_cents_per_1000_calls: 0,
            hard_limit_calls: hard,
        }
    }

    #[test]
    fn thresholds_of_the_hard_limit_or_the_included_calls() {
        assert_eq!(allowance(&plan(1000, Some(500))), Some(500));
        assert_eq!(allowance(&plan(1000, None)), Some(1000));
        assert_eq!(allowance(&plan(0, None)), None);
        assert_eq!(reached(10, 7), Vec::<u32>::new());
        assert_eq!(reached(10, 8), vec![80]);
        assert_eq!(reached(10, 10), vec![80, 100]);
        assert_eq!(reached(3, 2), Vec::<u32>::new(), "2/3 is 66%");
        assert_eq!(reached(i64::MAX, i64::MAX), vec![80, 100], "no overflow");
    }
}
