//! Plans: list, create, inspect, change and retire; each action audited on the platform trail
//! and the trail of every org on the plan.

use actix_web::{HttpResponse, get, patch, post, web};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use gatehouse_core::snapshot::RateLimits;
use gatehouse_db::repos::plans::{PlanFields, PlanRecord};
use gatehouse_db::repos::{audit, plans, platform_audit};
use gatehouse_db::{GlobalTx, NewAuditEvent};

use super::{event, rfc3339};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::operator::Operator;
use crate::state::AppState;

/// Largest accepted amounts (well inside `bigint`, far beyond any real plan).
const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
const MAX_RETENTION_DAYS: i32 = 36_500;
const MAX_SEATS: i32 = 1_000_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanAdminOut {
    pub id: String,
    pub name: String,
    pub monthly_fee_cents: i64,
    pub included_calls: i64,
    pub overage_cents_per_1000_calls: i64,
    /// Calls per month beyond which calls are refused (where `billing.enforce_hard_limits`);
    /// `null`: no hard cap.
    pub hard_limit_calls: Option<i64>,
    /// The rate limits endpoints created in an org on this plan start with.
    pub rate_limit_defaults: RateLimits,
    /// Days the plan keeps an org's audit trail and usage; `null`: no limit.
    pub retention_days: Option<i32>,
    /// Members an org on this plan may have; `null`: unlimited.
    pub seats: Option<i32>,
    /// Retired plans keep their orgs; no org can be moved onto them.
    pub retired: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

fn plan_out(p: &PlanRecord) -> PlanAdminOut {
    PlanAdminOut {
        id: p.id.clone(),
        name: p.name.clone(),
        monthly_fee_cents: p.monthly_fee_cents,
        included_calls: p.included_calls,
        overage_cents_per_1000_calls: p.overage_cents_per_1000_calls,
        hard_limit_calls: p.hard_limit_calls,
        rate_limit_defaults: serde_json::from_value(p.rate_limit_defaults.clone()).unwrap_or_default(),
        retention_days: p.retention_days,
        seats: p.seats,
        retired: p.retired_at.is_some(),
        retired_at: p.retired_at.map(rfc3339),
        updated_at: rfc3339(p.updated_at),
    }
}

/// The audit view of a plan (what `before`/`after` show).
fn plan_view(p: &PlanRecord) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "monthly_fee_cents": p.monthly_fee_cents,
        "included_calls": p.included_calls,
        "overage_cents_per_1000_calls": p.overage_cents_per_1000_calls,
        "hard_limit_calls": p.hard_limit_calls,
        "rate_limit_defaults": p.rate_limit_defaults,
        "retention_days": p.retention_days,
        "seats": p.seats,
        "retired": p.retired_at.is_some(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanIn {
    /// Immutable id: lower-case letters, digits, `-` and `_`, 1–64 characters.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub monthly_fee_cents: i64,
    pub included_calls: i64,
    #[serde(default)]
    pub overage_cents_per_1000_calls: i64,
    /// Absent or `null`: no hard cap.
    #[serde(default)]
    pub hard_limit_calls: Option<i64>,
    /// Per-org and per-subject limits only (per-tool limits belong to an endpoint).
    #[serde(default)]
    pub rate_limit_defaults: RateLimits,
    #[serde(default)]
    pub retention_days: Option<i32>,
    #[serde(default)]
    pub seats: Option<i32>,
}

/// `null` clears a nullable setting; an absent field keeps it.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    pub name: Option<String>,
    pub monthly_fee_cents: Option<i64>,
    pub included_calls: Option<i64>,
    pub overage_cents_per_1000_calls: Option<i64>,
    /// `null` removes the hard cap.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub hard_limit_calls: Option<Option<i64>>,
    pub rate_limit_defaults: Option<RateLimits>,
    /// `null`: no retention limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub retention_days: Option<Option<i32>>,
    /// `null`: unlimited seats.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub seats: Option<Option<i32>>,
}

fn plan_id(field: &str, id: &str) -> ApiResult<()> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !id.starts_with(['-', '_'])
        && !id.ends_with(['-', '_']);
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1 to 64 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit",
        ))
    }
}

fn amount(field: &str, value: i64) -> ApiResult<()> {
    if (0..=MAX_AMOUNT).contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("must be between 0 and {MAX_AMOUNT}"),
        ))
    }
}

/// A plan's settings as proposed by a request (a new plan, or a patch applied to a plan).
struct Proposed<'a> {
    name: &'a str,
    monthly_fee_cents: i64,
    included_calls: i64,
    overage: i64,
    hard_limit_calls: Option<i64>,
    rate_limit_defaults: &'a RateLimits,
    retention_days: Option<i32>,
    seats: Option<i32>,
}

/// Checks every setting of a plan and returns its stored form.
fn checked_fields(p: Proposed<'_>) -> ApiResult<PlanFields> {
    let Proposed {
        name,
        monthly_fee_cents,
        included_calls,
        overage,
        hard_limit_calls,
        rate_limit_defaults,
        retention_days,
        seats,
    } = p;
    let name = crate::validate::name("name", name)?;
    amount("monthly_fee_cents", monthly_fee_cents)?;
    amount("included_calls", included_calls)?;
    amount("overage_cents_per_1000_calls", overage)?;
    if let Some(hard) = hard_limit_calls {
        amount("hard_limit_calls", hard)?;
    }
    if !rate_limit_defaults.per_tool.is_empty() {
        return Err(ApiError::invalid(
            "rate_limit_defaults.per_tool",
            "per-tool limits belong to an endpoint, not to a plan",
        ));
    }
    crate::routes::endpoints::check_rate_limits(rate_limit_defaults)
        .map_err(|e| prefix_field(e, "rate_limit_defaults."))?;
    if let Some(days) = retention_days
        && !(1..=MAX_RETENTION_DAYS).contains(&days)
    {
        return Err(ApiError::invalid(
            "retention_days",
            format!("must be between 1 and {MAX_RETENTION_DAYS}, or null"),
        ));
    }
    if let Some(n) = seats
        && !(1..=MAX_SEATS).contains(&n)
    {
        return Err(ApiError::invalid(
            "seats",
            format!("must be between 1 and {MAX_SEATS}, or null"),
        ));
    }
    Ok(PlanFields {
        name,
        monthly_fee_cents,
        included_calls,
        overage_cents_per_1000_calls: overage,
        hard_limit_calls,
        rate_limit_defaults: serde_json::to_value(rate_limit_defaults)
            .map_err(|e| ApiError::Internal(e.into()))?,
        retention_days,
        seats,
    })
}

/// The endpoint checks name `rate_limits.…`; here the same limits are `rate_limit_defaults.…`.
fn prefix_field(e: ApiError, prefix: &str) -> ApiError {
    match e {
        ApiError::InvalidField { field, message } => ApiError::InvalidField {
            field: format!("{prefix}{}", field.trim_start_matches("rate_limits.")),
            message,
        },
        other => other,
    }
}

/// Records a plan action in the platform trail and in the trail of every org on the plan, then
/// commits.
async fn commit_plan_action(mut tx: GlobalTx, plan: &str, event: NewAuditEvent) -> ApiResult<()> {
    let affected = plans::orgs_on(&mut tx, plan).await?;
    audit::append_to_orgs(&mut tx, &affected, std::slice::from_ref(&event)).await?;
    platform_audit::append(&mut tx, None, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// Every plan, retired ones included.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.plans.list",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every plan", body = [PlanAdminOut]),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/plans")]
pub async fn list_plans(state: web::Data<AppState>, _operator: Operator) -> ApiResult<HttpResponse> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    let all = plans::list(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(all.iter().map(plan_out).collect::<Vec<_>>()))
}

/// Creates a plan.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.plans.create",
    security(("operator_token" = [])),
    request_body = PlanIn,
    responses(
        (status = 201, description = "Created", body = PlanAdminOut),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A plan with this id exists (`plan_exists`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/plans")]
pub async fn create_plan(
    state: web::Data<AppState>,
    operator: Operator,
    body: ValidJson<PlanIn>,
) -> ApiResult<HttpResponse> {
    plan_id("id", &body.id)?;
    let fields = checked_fields(Proposed {
        name: &body.name,
        monthly_fee_cents: body.monthly_fee_cents,
        included_calls: body.included_calls,
        overage: body.overage_cents_per_1000_calls,
        hard_limit_calls: body.hard_limit_calls,
        rate_limit_defaults: &body.rate_limit_defaults,
        retention_days: body.retention_days,
        seats: body.seats,
    })?;
    let mut tx = GlobalTx::begin(&state.db).await?;
    let plan =
        plans::create(&mut tx, &body.id, &fields)
            .await
            .map_err(|e| match e.conflict_constraint() {
                Some(_) => {
                    ApiError::conflict("plan_exists", format!("a plan with the id {:?} exists", body.id))
                }
                None => e.into(),
            })?;
    let event = event(&operator, "plan.create")
        .target("plan", &plan.id)
        .details(json!({"before": null, "after": plan_view(&plan)}));
    commit_plan_action(tx, &plan.id, event).await?;
    Ok(HttpResponse::Created().json(plan_out(&plan)))
}

/// One plan.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.plans.get",
    security(("operator_token" = [])),
    params(("plan" = String, Path, description = "Plan id")),
    responses(
        (status = 200, description = "The plan", body = PlanAdminOut),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/plans/{plan}")]
pub async fn get_plan(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    let plan = plans::get(&mut tx, &path)
        .await?
        .ok_or(ApiError::NotFound("plan"))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(plan_out(&plan)))
}

/// Changes a plan's settings (absent fields are kept). Orgs on the plan see the change in their
/// audit trail; invoices already made keep what they billed.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.plans.update",
    security(("operator_token" = [])),
    params(("plan" = String, Path, description = "Plan id")),
    request_body = PlanPatch,
    responses(
        (status = 200, description = "Updated", body = PlanAdminOut),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/plans/{plan}")]
pub async fn update_plan(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
    body: ValidJson<PlanPatch>,
) -> ApiResult<HttpResponse> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    let before = plans::get(&mut tx, &path)
        .await?
        .ok_or(ApiError::NotFound("plan"))?;
    let current = before.fields();
    let current_limits: RateLimits =
        serde_json::from_value(current.rate_limit_defaults.clone()).unwrap_or_default();
    let fields = checked_fields(Proposed {
        name: body.name.as_deref().unwrap_or(&current.name),
        monthly_fee_cents: body.monthly_fee_cents.unwrap_or(current.monthly_fee_cents),
        included_calls: body.included_calls.unwrap_or(current.included_calls),
        overage: body
            .overage_cents_per_1000_calls
            .unwrap_or(current.overage_cents_per_1000_calls),
        hard_limit_calls: body.hard_limit_calls.unwrap_or(current.hard_limit_calls),
        rate_limit_defaults: body.rate_limit_defaults.as_ref().unwrap_or(&current_limits),
        retention_days: body.retention_days.unwrap_or(current.retention_days),
        seats: body.seats.unwrap_or(current.seats),
    })?;
    let after = plans::update(&mut tx, &path, &fields)
        .await?
        .ok_or(ApiError::NotFound("plan"))?;
    let event = event(&operator, "plan.update")
        .target("plan", &after.id)
        .details(json!({"before": plan_view(&before), "after": plan_view(&after)}));
    commit_plan_action(tx, &after.id, event).await?;
    Ok(HttpResponse::Ok().json(plan_out(&after)))
}

/// Retires a plan: orgs on it keep it, no org can be moved onto it. Idempotent.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.plans.retire",
    security(("operator_token" = [])),
    params(("plan" = String, Path, description = "Plan id")),
    responses(
        (status = 200, description = "Retired", body = PlanAdminOut),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/plans/{plan}/retire")]
pub async fn retire_plan(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    let before = plans::get(&mut tx, &path)
        .await?
        .ok_or(ApiError::NotFound("plan"))?;
    let after = plans::retire(&mut tx, &path)
        .await?
        .ok_or(ApiError::NotFound("plan"))?;
    let event = event(&operator, "plan.retire")
        .target("plan", &after.id)
        .details(json!({"before": plan_view(&before), "after": plan_view(&after)}));
    commit_plan_action(tx, &after.id, event).await?;
    Ok(HttpResponse::Ok().json(plan_out(&after)))
}
