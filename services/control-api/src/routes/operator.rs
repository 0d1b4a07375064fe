//! The operator API under `/api/operator`: plans (create, change, retire) and orgs (list, inspect
//! usage, change plan, suspend, resume), guarded by the operator token ([`Operator`]). Every
//! action is appended to the platform audit trail and, when it affects orgs, to each affected
//! org's own trail, in the transaction of the change. Org changes bump the org's configuration
//! version and are published to dataplanes after the commit (a suspension reaches every
//! dataplane through the same change notifications as any configuration change).

use actix_web::{HttpResponse, get, patch, post, put, web};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::{ConfigChange, RateLimits};
use gatehouse_db::repos::orgs::OrgAdminRow;
use gatehouse_db::repos::plans::{PlanFields, PlanRecord};
use gatehouse_db::repos::{audit, invoices, orgs, plans, platform_audit, usage};
use gatehouse_db::{GlobalTx, NewAuditEvent, OrgScope, TenantTx};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ValidJson, ValidQuery};
use crate::operator::Operator;
use crate::routes::audit::{AuditEventOut, event_out};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_plans)
        .service(create_plan)
        .service(get_plan)
        .service(update_plan)
        .service(retire_plan)
        .service(list_orgs)
        .service(get_org)
        .service(set_org_plan)
        .service(suspend_org)
        .service(resume_org)
        .service(list_platform_audit);
}

/// Largest accepted amounts (well inside `bigint`, far beyond any real plan).
const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
const MAX_RETENTION_DAYS: i32 = 36_500;
const MAX_SEATS: i32 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Plans

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

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
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
    super::endpoints::check_rate_limits(rate_limit_defaults)
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

/// An operator event, with the request's IP and user agent.
fn event(operator: &Operator, action: &str) -> NewAuditEvent {
    NewAuditEvent::control(operator.actor(), action)
        .client(operator.client.ip, operator.client.user_agent.clone())
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

// ---------------------------------------------------------------------------------------------
// Orgs

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgAdminOut {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub plan_id: String,
    /// A suspended org's endpoints refuse every call; its members can still sign in and export
    /// its audit trail.
    pub suspended: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub suspended_at: Option<String>,
    pub suspended_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

fn org_out(o: &OrgAdminRow) -> OrgAdminOut {
    OrgAdminOut {
        id: o.id,
        slug: o.slug.clone(),
        name: o.name.clone(),
        plan_id: o.plan_id.clone(),
        suspended: o.suspended_at.is_some(),
        suspended_at: o.suspended_at.map(rfc3339),
        suspended_reason: o.suspended_reason.clone(),
        created_at: rfc3339(o.created_at),
    }
}

fn org_view(o: &OrgAdminRow) -> Value {
    json!({
        "plan_id": o.plan_id,
        "suspended": o.suspended_at.is_some(),
        "suspended_reason": o.suspended_reason,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgUsageOut {
    /// First day of the current billing period (calendar month, UTC), `YYYY-MM-DD`.
    pub period_start: String,
    /// Billable calls recorded so far this period.
    pub calls: i64,
    pub included_calls: i64,
    pub hard_limit_calls: Option<i64>,
    /// Whether the org's calls are refused for its hard limit (never where
    /// `billing.enforce_hard_limits` is false).
    pub over_quota: bool,
    pub members: i64,
    /// The plan's seats; `null`: unlimited.
    pub seats: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgDetailOut {
    #[serde(flatten)]
    pub org: OrgAdminOut,
    pub usage: OrgUsageOut,
}

/// The org named by slug, and the permission to act in it: the operator may act in every org.
async fn find_org(state: &AppState, slug: &str) -> ApiResult<(OrgAdminRow, OrgScope)> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    let org = orgs::find_admin_by_slug(&mut tx, slug)
        .await?
        .ok_or(ApiError::NotFound("org"))?;
    tx.commit().await?;
    // The operator token was verified by the extractor: operators act in every org.
    let scope = OrgScope::authorized(org.id);
    Ok((org, scope))
}

/// Records an org action in the org's trail and the platform trail, bumps the org's configuration
/// version, commits, and publishes the change to dataplanes.
async fn commit_org_action(state: &AppState, mut tx: TenantTx, event: NewAuditEvent) -> ApiResult<()> {
    let org_id = tx.org_id();
    audit::append(&mut tx, std::slice::from_ref(&event)).await?;
    let version = orgs::bump_config_version(&mut tx).await?;
    let mut global = tx.into_global().await?;
    platform_audit::append(&mut global, Some(org_id), &event).await?;
    global.commit().await?;
    state.notifier.publish(ConfigChange { org_id, version }).await;
    Ok(())
}

/// Every org.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.orgs.list",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every org, by slug", body = [OrgAdminOut]),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orgs")]
pub async fn list_orgs(state: web::Data<AppState>, _operator: Operator) -> ApiResult<HttpResponse> {
    let mut tx = GlobalTx::begin(&state.db).await?;
    let all = orgs::list_admin(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(all.iter().map(org_out).collect::<Vec<_>>()))
}

/// One org with its plan, suspension and usage of the current period.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.orgs.get",
    security(("operator_token" = [])),
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, description = "The org", body = OrgDetailOut),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orgs/{org}")]
pub async fn get_org(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (org, scope) = find_org(&state, &path).await?;
    let period_start = usage::period_start_of(OffsetDateTime::now_utc());
    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let plan = invoices::plan_of_org(&mut tx).await?;
    let calls = usage::period_calls(&mut tx, period_start).await?;
    let members = orgs::member_count(&mut tx).await?;
    let mut global = tx.into_global().await?;
    let seats = plans::get(&mut global, &plan.id).await?.and_then(|p| p.seats);
    global.commit().await?;
    Ok(HttpResponse::Ok().json(OrgDetailOut {
        org: org_out(&org),
        usage: OrgUsageOut {
            period_start: crate::routes::usage::format_date(period_start),
            calls,
            included_calls: plan.included_calls,
            hard_limit_calls: plan.hard_limit_calls,
            over_quota: crate::routes::usage::over_quota(&state, plan.hard_limit_calls, calls),
            members,
            seats,
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPlanIn {
    /// A plan that exists and is not retired.
    pub plan_id: String,
}

/// Moves an org onto another plan. The usage-worker re-checks the org's quota against the new
/// plan on its next sweep (`usage_worker.quota_sweep_secs`) or call.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.orgs.set_plan",
    security(("operator_token" = [])),
    params(("org" = String, Path, description = "Org slug")),
    request_body = OrgPlanIn,
    responses(
        (status = 200, description = "The org on its new plan", body = OrgAdminOut),
        (status = 400, description = "No such plan", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The plan is retired (`plan_retired`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/orgs/{org}/plan")]
pub async fn set_org_plan(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
    body: ValidJson<OrgPlanIn>,
) -> ApiResult<HttpResponse> {
    let (before, scope) = find_org(&state, &path).await?;
    let mut global = GlobalTx::begin(&state.db).await?;
    let plan = plans::get(&mut global, &body.plan_id)
        .await?
        .ok_or_else(|| ApiError::invalid("plan_id", "no such plan"))?;
    global.commit().await?;
    if plan.retired_at.is_some() && plan.id != before.plan_id {
        return Err(ApiError::conflict(
            "plan_retired",
            format!("the plan {:?} is retired: no org can be moved onto it", plan.id),
        ));
    }
    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let after = orgs::set_plan(&mut tx, &plan.id).await?;
    let event = event(&operator, "org.plan.change")
        .target("org", after.id)
        .details(json!({"before": org_view(&before), "after": org_view(&after)}));
    commit_org_action(&state, tx, event).await?;
    Ok(HttpResponse::Ok().json(org_out(&after)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendIn {
    /// Why (shown to operators and recorded in the trails), at most 500 characters.
    pub reason: String,
}

/// Suspends an org: every dataplane refuses its endpoints' calls once it has the org's new
/// configuration (within about a second). Its members can still sign in, read and export its
/// audit trail.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.orgs.suspend",
    security(("operator_token" = [])),
    params(("org" = String, Path, description = "Org slug")),
    request_body = SuspendIn,
    responses(
        (status = 200, description = "Suspended", body = OrgAdminOut),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/orgs/{org}/suspend")]
pub async fn suspend_org(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
    body: ValidJson<SuspendIn>,
) -> ApiResult<HttpResponse> {
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason",
            "must be 1 to 500 characters without control characters",
        ));
    }
    let (before, scope) = find_org(&state, &path).await?;
    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let after = orgs::set_suspension(&mut tx, Some(reason)).await?;
    let event = event(&operator, "org.suspend")
        .target("org", after.id)
        .details(json!({"before": org_view(&before), "after": org_view(&after)}));
    commit_org_action(&state, tx, event).await?;
    Ok(HttpResponse::Ok().json(org_out(&after)))
}

/// Resumes a suspended org: its endpoints serve calls again (within about a second).
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.orgs.resume",
    security(("operator_token" = [])),
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, description = "Resumed", body = OrgAdminOut),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/orgs/{org}/resume")]
pub async fn resume_org(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (before, scope) = find_org(&state, &path).await?;
    let mut tx = TenantTx::begin(&state.db, &scope).await?;
    let after = orgs::set_suspension(&mut tx, None).await?;
    let event = event(&operator, "org.resume")
        .target("org", after.id)
        .details(json!({"before": org_view(&before), "after": org_view(&after)}));
    commit_org_action(&state, tx, event).await?;
    Ok(HttpResponse::Ok().json(org_out(&after)))
}

// ---------------------------------------------------------------------------------------------
// The platform trail

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlatformAuditParams {
    /// Events after this sequence number (pagination).
    pub after_seq: Option<i64>,
    /// Only events about the org with this slug.
    pub org: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformAuditEventOut {
    #[serde(flatten)]
    pub event: AuditEventOut,
    /// The org the action affected, if one.
    pub org_id: Option<OrgId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformAuditPage {
    pub events: Vec<PlatformAuditEventOut>,
    /// Pass as `after_seq` for the next page; absent on the last page.
    pub next_after_seq: Option<i64>,
    /// The first entry whose hash chain does not verify; absent when the whole chain verifies.
    pub first_broken_seq: Option<i64>,
}

/// The platform audit trail: every operator action, in order.
#[utoipa::path(
    tag = "operator",
    operation_id = "operator.audit.list",
    security(("operator_token" = [])),
    params(PlatformAuditParams),
    responses(
        (status = 200, description = "A page of the platform trail", body = PlatformAuditPage),
        (status = 401, description = "No valid operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/audit")]
pub async fn list_platform_audit(
    state: web::Data<AppState>,
    _operator: Operator,
    query: ValidQuery<PlatformAuditParams>,
) -> ApiResult<HttpResponse> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let org = match &query.org {
        Some(slug) => Some(
            orgs::find_admin_by_slug(&mut tx, slug)
                .await?
                .ok_or(ApiError::NotFound("org"))?
                .id,
        ),
        None => None,
    };
    let page = platform_audit::list(&mut tx, query.after_seq, org, limit).await?;
    let first_broken_seq = platform_audit::first_broken_seq(&mut tx).await?;
    tx.commit().await?;
    let next_after_seq = (page.len() as i64 == limit)
        .then(|| page.last().map(|e| e.record.seq))
        .flatten();
    Ok(HttpResponse::Ok().json(PlatformAuditPage {
        events: page
            .iter()
            .map(|e| PlatformAuditEventOut {
                event: event_out(&e.record),
                org_id: e.org_id,
            })
            .collect(),
        next_after_seq,
        first_broken_seq,
    }))
}
