//! Monthly invoices from plans.
//!
//! A period is a calendar month in UTC. It is invoiced once it is closed and its lateness window
//! (`usage_worker.lateness_secs`) has passed: the invoice counts the billable calls of raw usage
//! events that occurred in the month and were recorded before the cutoff (period end + lateness).
//! Events recorded after a cutoff appear on the next invoice as a correction line. Both counts
//! depend only on immutable raw events, so recomputing a closed period always gives the same
//! lines, and creating an invoice twice is a no-op (one per org and period).

use std::time::Duration;

use time::{Date, Month, OffsetDateTime, Time};

use gatehouse_core::ids::{InvoiceId, OrgId};
use gatehouse_db::repos::invoices::{self, InvoiceLine, PlanRow};
use gatehouse_db::repos::usage;
use gatehouse_db::{Db, DbError, GlobalTx, OrgScope, TenantTx};

/// After the cutoff, how long to wait before invoicing, so that transactions that recorded
/// events just before the cutoff have committed.
const SETTLE: Duration = Duration::from_secs(600);
/// How far back a worker that was down looks for periods still to invoice.
const LOOKBACK_PERIODS: usize = 3;

/// A billing period: `[start, end)`, both first days of a month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub start: Date,
    pub end: Date,
}

impl Period {
    pub fn containing(at: OffsetDateTime) -> Period {
        Period::starting(usage::period_start_of(at))
    }

    fn starting(start: Date) -> Period {
        let (year, month) = match start.month() {
            Month::December => (start.year() + 1, Month::January),
            m => (start.year(), m.next()),
        };
        Period {
            start,
            end: Date::from_calendar_date(year, month, 1).expect("valid first day"),
        }
    }

    pub fn next(self) -> Period {
        Period::starting(self.end)
    }

    pub fn previous(self) -> Period {
        let (year, month) = match self.start.month() {
            Month::January => (self.start.year() - 1, Month::December),
            m => (self.start.year(), m.previous()),
        };
        Period::starting(Date::from_calendar_date(year, month, 1).expect("valid first day"))
    }

    pub fn start_at(self) -> OffsetDateTime {
        self.start.with_time(Time::MIDNIGHT).assume_utc()
    }

    pub fn end_at(self) -> OffsetDateTime {
        self.end.with_time(Time::MIDNIGHT).assume_utc()
    }

    /// Events recorded up to this instant count in this period's invoice.
    pub fn cutoff(self, lateness: Duration) -> OffsetDateTime {
        self.end_at() + lateness
    }

    /// "November 2026".
    pub fn label(self) -> String {
        format!("{} {}", self.start.month(), self.start.year())
    }
}

/// What is billed for a period, from raw events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodUsage {
    /// Billable calls of the period recorded before its cutoff.
    pub calls: i64,
    /// Billable calls of the previous period as its own invoice counted them.
    pub previous_invoiced: i64,
    /// Calls of earlier periods recorded after the previous cutoff and before this one.
    pub late: i64,
}

/// Overage in cents for `calls` billable calls under `plan`, rounded half up to the cent.
fn overage_cents(plan: &PlanRow, calls: i64) -> i64 {
    let over = (calls - plan.included_calls).max(0);
    (over * plan.overage_cents_per_1000_calls + 500) / 1000
}

/// The lines of a period's invoice. Prices: the monthly fee; included calls at no charge;
/// calls beyond the included ones at `overage_cents_per_1000_calls` (so one call costs that
/// many thousandths of a cent), rounded half up to the cent per line.
pub fn lines(plan: &PlanRow, period: Period, usage: PeriodUsage) -> Vec<InvoiceLine> {
    let mut lines = vec![
        InvoiceLine {
            line_no: 1,
            description: format!("{} plan, {}", plan.name, period.label()),
            quantity: 1,
            unit_price_millicents: plan.monthly_fee_cents * 1000,
            amount_cents: plan.monthly_fee_cents,
        },
        InvoiceLine {
            line_no: 2,
            description: format!("Calls included in the plan (up to {})", plan.included_calls),
            quantity: usage.calls.min(plan.included_calls),
            unit_price_millicents: 0,
            amount_cents: 0,
        },
    ];
    let over = (usage.calls - plan.included_calls).max(0);
    if over > 0 {
        lines.push(InvoiceLine {
            line_no: 3,
            description: format!("Calls beyond the {} included", plan.included_calls),
            quantity: over,
            unit_price_millicents: plan.overage_cents_per_1000_calls,
            amount_cents: overage_cents(plan, usage.calls),
        });
    }
    if usage.late > 0 {
        lines.push(InvoiceLine {
            line_no: lines.len() as i32 + 1,
            description: format!(
                "Correction: calls of {} recorded after its invoice",
                period.previous().label()
            ),
            quantity: usage.late,
            unit_price_millicents: plan.overage_cents_per_1000_calls,
            amount_cents: overage_cents(plan, usage.previous_invoiced + usage.late)
                - overage_cents(plan, usage.previous_invoiced),
        });
    }
    lines
}

/// Counts a period's billable usage from the raw events.
pub async fn period_usage(
    tx: &mut TenantTx,
    period: Period,
    lateness: Duration,
) -> Result<PeriodUsage, DbError> {
    let previous = period.previous();
    let cutoff = period.cutoff(lateness);
    let previous_cutoff = previous.cutoff(lateness);
    Ok(PeriodUsage {
        calls: usage::billable_calls(tx, period.start_at(), period.end_at(), None, cutoff).await?,
        previous_invoiced: usage::billable_calls(
            tx,
            previous.start_at(),
            previous.end_at(),
            None,
            previous_cutoff,
        )
        .await?,
        late: usage::billable_calls(
            tx,
            OffsetDateTime::UNIX_EPOCH,
            period.start_at(),
            Some(previous_cutoff),
            cutoff,
        )
        .await?,
    })
}

/// Whether `period` may be invoiced at `now`.
pub fn is_closed(period: Period, lateness: Duration, now: OffsetDateTime) -> bool {
    period.cutoff(lateness) + SETTLE <= now
}

/// Creates the org's invoice for `period` unless it exists. Returns its id if created now.
pub async fn invoice_period(
    db: &Db,
    org: OrgId,
    period: Period,
    lateness: Duration,
) -> Result<Option<InvoiceId>, DbError> {
    let mut tx = TenantTx::begin(db, &OrgScope::authorized(org)).await?;
    if invoices::find_by_period(&mut tx, period.start).await?.is_some() {
        tx.rollback().await?;
        return Ok(None);
    }
    let plan = invoices::plan_of_org(&mut tx).await?;
    let usage = period_usage(&mut tx, period, lateness).await?;
    let lines = lines(&plan, period, usage);
    let created = invoices::create_final(&mut tx, period.start, period.end, &plan.id, &lines).await?;
    tx.commit().await?;
    if let Some(id) = created {
        tracing::info!(org_id = %org, invoice_id = %id, period = %period.label(), "invoice created");
        metrics::counter!("gatehouse_worker_invoices_created_total").increment(1);
    }
    Ok(created)
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InvoiceRun {
    pub created: usize,
    pub orgs: usize,
}

/// Invoices every closed period (up to a few months back) of every org that does not have its
/// invoice yet.
pub async fn run_once(db: &Db, lateness: Duration, now: OffsetDateTime) -> Result<InvoiceRun, DbError> {
    let mut global = GlobalTx::begin(db).await?;
    let orgs = invoices::orgs_to_invoice(&mut global).await?;
    global.commit().await?;
    let mut run = InvoiceRun {
        orgs: orgs.len(),
        ..Default::default()
    };
    let mut earliest = Period::containing(now);
    for _ in 0..LOOKBACK_PERIODS {
        earliest = earliest.previous();
    }
    for (org, created_at) in orgs {
        let mut period = Period::containing(created_at).max(earliest);
        while is_closed(period, lateness, now) {
            if invoice_period(db, org, period, lateness).await?.is_some() {
                run.created += 1;
            }
            period = period.next();
        }
    }
    Ok(run)
}

/// The stored lines of the org's invoice for `period` next to the lines recomputed from the raw
/// events now (they must be equal). `None` if the period has no invoice.
pub async fn recompute(
    db: &Db,
    org: OrgId,
    period: Period,
    lateness: Duration,
) -> Result<Option<(Vec<InvoiceLine>, Vec<InvoiceLine>)>, DbError> {
    let mut tx = TenantTx::begin(db, &OrgScope::authorized(org)).await?;
    let Some(invoice) = invoices::find_by_period(&mut tx, period.start).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let stored = invoices::lines(&mut tx, invoice.id).await?;
    let plan = invoices::plan(&mut tx, &invoice.plan_id)
        .await?
        .ok_or(DbError::NotFound)?;
    let usage = period_usage(&mut tx, period, lateness).await?;
    tx.rollback().await?;
    Ok(Some((stored, lines(&plan, period, usage))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn team() -> PlanRow {
        PlanRow {
            id: "team".into(),
            name: "Team".into(),
            monthly_fee_cents: 4900,
            included_calls: 1000,
            overage_cents_per_1000_calls: 50,
            hard_limit_calls: None,
        }
    }

    #[test]
    fn periods_are_utc_calendar_months() {
        let p = Period::containing(datetime!(2026-12-31 23:59:59 -01:00));
        assert_eq!((p.start, p.end), (date!(2027 - 01 - 01), date!(2027 - 02 - 01)));
        assert_eq!(p.previous().start, date!(2026 - 12 - 01));
        assert_eq!(p.previous().previous().next(), p.previous());
        assert_eq!(p.label(), "January 2027");
        let lateness = Duration::from_secs(86_400);
        assert_eq!(p.previous().cutoff(lateness), datetime!(2027-01-02 00:00 UTC));
        assert!(!is_closed(
            p.previous(),
            lateness,
            datetime!(2027-01-02 00:05 UTC)
        ));
        assert!(is_closed(p.previous(), lateness, datetime!(2027-01-02 00:10 UTC)));
    }

    #[test]
    fn overage_and_corrections() {
        let period = Period::containing(datetime!(2026-11-10 00:00 UTC));
        let within = lines(
            &team(),
            period,
            PeriodUsage {
                calls: 999,
                previous_invoiced: 0,
                late: 0,
            },
        );
        assert_eq!(within.len(), 2);
        assert_eq!(within[0].amount_cents, 4900);
        assert_eq!(within[1].quantity, 999);

        let over = lines(
            &team(),
            period,
            PeriodUsage {
                calls: 4_001,
                previous_invoiced: 1_000,
                late: 2_000,
            },
        );
        assert_eq!(over[2].quantity, 3_001);
        // 3,001 calls at 50 cents per 1,000: 150.05 cents, rounded to 150.
        assert_eq!(over[2].amount_cents, 150);
        assert_eq!(over[3].quantity, 2_000);
        assert_eq!(
            over[3].amount_cents, 100,
            "the late calls are all overage of the previous month"
        );
        assert!(over[3].description.contains("October 2026"));
        assert_eq!(
            over.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }
}
