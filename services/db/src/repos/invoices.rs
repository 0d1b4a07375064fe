//! Billing plans (global, read-only for the services) and invoices (per org, immutable once
//! written: one per org and period, so creating one twice is a no-op).

use serde::Serialize;
use time::{Date, OffsetDateTime};

use gatehouse_core::ids::InvoiceId;

use crate::error::DbResult;
use crate::tenant::TenantTx;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PlanRow {
    pub id: String,
    pub name: String,
    pub monthly_fee_cents: i64,
    pub included_calls: i64,
    pub overage_cents_per_1000_calls: i64,
    /// Calls per period beyond which calls are refused; `None`: no hard cap.
    pub hard_limit_calls: Option<i64>,
}

const PLAN_COLUMNS: &str =
    "p.id, p.name, p.monthly_fee_cents, p.included_calls, p.overage_cents_per_1000_calls, p.hard_limit_calls";

/// The plan the org of this transaction is on.
pub async fn plan_of_org(tx: &mut TenantTx) -> DbResult<PlanRow> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PLAN_COLUMNS} FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1"
    )))
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn plan(tx: &mut TenantTx, plan_id: &str) -> DbResult<Option<PlanRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PLAN_COLUMNS} FROM plans p WHERE p.id = $1"
    )))
    .bind(plan_id)
    .fetch_optional(tx.conn())
    .await?)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: InvoiceId,
    pub period_start: Date,
    pub period_end: Date,
    pub plan_id: String,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    pub created_at: OffsetDateTime,
    pub finalized_at: Option<OffsetDateTime>,
}

const INVOICE_COLUMNS: &str =
    "id, period_start, period_end, plan_id, status, currency, total_cents, created_at, finalized_at";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InvoiceLine {
    pub line_no: i32,
    pub description: String,
    pub quantity: i64,
    /// Price of one unit in thousandths of a cent.
    pub unit_price_millicents: i64,
    pub amount_cents: i64,
}

/// Newest period first.
pub async fn list(tx: &mut TenantTx, limit: i64) -> DbResult<Vec<InvoiceRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE org_id = $1 ORDER BY period_start DESC LIMIT $2"
    )))
    .bind(org_id)
    .bind(limit.clamp(1, 1000))
    .fetch_all(tx.conn())
    .await?)
}

pub async fn find(tx: &mut TenantTx, id: InvoiceId) -> DbResult<Option<InvoiceRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn find_by_period(tx: &mut TenantTx, period_start: Date) -> DbResult<Option<InvoiceRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE org_id = $1 AND period_start = $2"
    )))
    .bind(org_id)
    .bind(period_start)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn lines(tx: &mut TenantTx, id: InvoiceId) -> DbResult<Vec<InvoiceLine>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT line_no, description, quantity, unit_price_millicents, amount_cents
           FROM invoice_lines WHERE org_id = $1 AND invoice_id = $2 ORDER BY line_no",
    )
    .bind(org_id)
    .bind(id)
    .fetch_all(tx.conn())
    .await?)
}

/// Creates the final invoice of a period with its lines, unless the period already has one
/// (then returns `None` and writes nothing).
pub async fn create_final(
    tx: &mut TenantTx,
    period_start: Date,
    period_end: Date,
    plan_id: &str,
    lines: &[InvoiceLine],
) -> DbResult<Option<InvoiceId>> {
    let org_id = tx.org_id();
    let total: i64 = lines.iter().map(|l| l.amount_cents).sum();
    let id: Option<InvoiceId> = sqlx::query_scalar(
        "INSERT INTO invoices (id, org_id, period_start, period_end, plan_id, status, total_cents, finalized_at)
         VALUES ($1, $2, $3, $4, $5, 'final', $6, now())
         ON CONFLICT (org_id, period_start) DO NOTHING
         RETURNING id",
    )
    .bind(InvoiceId::new())
    .bind(org_id)
    .bind(period_start)
    .bind(period_end)
    .bind(plan_id)
    .bind(total)
    .fetch_optional(tx.conn())
    .await?;
    let Some(id) = id else { return Ok(None) };
    sqlx::query(
        "INSERT INTO invoice_lines (org_id, invoice_id, line_no, description, quantity, unit_price_millicents, amount_cents)
         SELECT $1, $2, * FROM UNNEST($3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])",
    )
    .bind(org_id)
    .bind(id)
    .bind(lines.iter().map(|l| l.line_no).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.description.as_str()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.unit_price_millicents).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.amount_cents).collect::<Vec<_>>())
    .execute(tx.conn())
    .await?;
    Ok(Some(id))
}

/// Every org with its creation time (orgs are global rows; what is billed is read per org).
pub async fn orgs_to_invoice(
    tx: &mut crate::tenant::GlobalTx,
) -> DbResult<Vec<(gatehouse_core::ids::OrgId, OffsetDateTime)>> {
    Ok(sqlx::query_as("SELECT id, created_at FROM orgs ORDER BY id")
        .fetch_all(tx.conn())
        .await?)
}
