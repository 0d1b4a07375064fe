//! Orgs: list, inspect (plan, usage, seats), change plan, suspend and resume.

use actix_web::{HttpResponse, get, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::repos::orgs::OrgAdminRow;
use gatehouse_db::repos::{audit, invoices, orgs, plans, platform_audit, usage};
use gatehouse_db::{GlobalTx, NewAuditEvent, OrgScope, TenantTx};

use super::{event, rfc3339};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::operator::Operator;
use crate::state::AppState;

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
