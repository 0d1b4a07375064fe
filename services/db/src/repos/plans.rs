//! Billing plans as operators manage them (global). Plans are created, changed and retired, never
//! deleted: orgs and invoices refer to them.

use serde_json::Value;
use time::OffsetDateTime;

use crate::error::DbResult;
use crate::tenant::GlobalTx;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct PlanRecord {
    pub id: String,
    pub name: String,
    pub monthly_fee_cents: i64,
    pub included_calls: i64,
    pub overage_cents_per_1000_calls: i64,
    pub hard_limit_calls: Option<i64>,
    pub rate_limit_defaults: Value,
    pub retention_days: Option<i32>,
    pub seats: Option<i32>,
    pub retired_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Everything an operator sets on a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanFields {
    pub name: String,
    pub monthly_fee_cents: i64,
    pub included_calls: i64,
    pub overage_cents_per_1000_calls: i64,
    pub hard_limit_calls: Option<i64>,
    pub rate_limit_defaults: Value,
    pub retention_days: Option<i32>,
    pub seats: Option<i32>,
}

impl PlanRecord {
    pub fn fields(&self) -> PlanFields {
        PlanFields {
            name: self.name.clone(),
            monthly_fee_cents: self.monthly_fee_cents,
            included_calls: self.included_calls,
            overage_cents_per_1000_calls: self.overage_cents_per_1000_calls,
            hard_limit_calls: self.hard_limit_calls,
            rate_limit_defaults: self.rate_limit_defaults.clone(),
            retention_days: self.retention_days,
            seats: self.seats,
        }
    }
}

const COLUMNS: &str = "id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls, hard_limit_calls, \
                       rate_limit_defaults, retention_days, seats, retired_at, created_at, updated_at";

/// Every plan, retired ones included, by id.
pub async fn list(tx: &mut GlobalTx) -> DbResult<Vec<PlanRecord>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plans ORDER BY id"
    )))
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut GlobalTx, id: &str) -> DbResult<Option<PlanRecord>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plans WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// Creates a plan; a taken id is `DbError::Conflict { constraint: "plans_pkey" }`.
pub async fn create(tx: &mut GlobalTx, id: &str, f: &PlanFields) -> DbResult<PlanRecord> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO plans (id, name, monthly_fee_cents, included_calls, overage_cents_per_1000_calls,
                            hard_limit_calls, rate_limit_defaults, retention_days, seats)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&f.name)
    .bind(f.monthly_fee_cents)
    .bind(f.included_calls)
    .bind(f.overage_cents_per_1000_calls)
    .bind(f.hard_limit_calls)
    .bind(&f.rate_limit_defaults)
    .bind(f.retention_days)
    .bind(f.seats)
    .fetch_one(tx.conn())
    .await?)
}

/// Replaces a plan's settings; `None` when there is no such plan.
pub async fn update(tx: &mut GlobalTx, id: &str, f: &PlanFields) -> DbResult<Option<PlanRecord>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE plans SET name = $2, monthly_fee_cents = $3, included_calls = $4,
                          overage_cents_per_1000_calls = $5, hard_limit_calls = $6,
                          rate_limit_defaults = $7, retention_days = $8, seats = $9, updated_at = now()
          WHERE id = $1
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&f.name)
    .bind(f.monthly_fee_cents)
    .bind(f.included_calls)
    .bind(f.overage_cents_per_1000_calls)
    .bind(f.hard_limit_calls)
    .bind(&f.rate_limit_defaults)
    .bind(f.retention_days)
    .bind(f.seats)
    .fetch_optional(tx.conn())
    .await?)
}

/// Retires a plan (idempotent: the first retirement time is kept); `None` when there is no such
/// plan.
pub async fn retire(tx: &mut GlobalTx, id: &str) -> DbResult<Option<PlanRecord>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE plans SET retired_at = COALESCE(retired_at, now()), updated_at = now()
          WHERE id = $1
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// The ids of the orgs on `plan` (for publishing a changed plan to dataplanes).
pub async fn orgs_on(tx: &mut GlobalTx, plan: &str) -> DbResult<Vec<gatehouse_core::ids::OrgId>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM orgs WHERE plan_id = $1 ORDER BY id")
            .bind(plan)
            .fetch_all(tx.conn())
            .await?,
    )
}

/// The ids of the orgs whose plan sets a retention (`retention_days`), for the retention sweep.
pub async fn orgs_with_retention(tx: &mut GlobalTx) -> DbResult<Vec<gatehouse_core::ids::OrgId>> {
    Ok(sqlx::query_scalar(
        "SELECT o.id FROM orgs o JOIN plans p ON p.id = o.plan_id
          WHERE p.retention_days IS NOT NULL ORDER BY o.id",
    )
    .fetch_all(tx.conn())
    .await?)
}
