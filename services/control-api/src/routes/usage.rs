//! Usage and invoices: what an org's endpoints were used for (viewer and up), and what it was
//! billed (admin and up).

use std::collections::HashMap;

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{EndpointId, InvoiceId};
use gatehouse_core::role::Role;
use gatehouse_db::repos::usage::{Grouping, NO_ENDPOINT, UsageSummaryRow};
use gatehouse_db::repos::{endpoints, invoices, usage};

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidQuery;
use crate::state::AppState;

/// The longest range one usage query may cover.
const MAX_RANGE_DAYS: i64 = 400;
const DEFAULT_RANGE_DAYS: i64 = 30;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_usage)
        .service(get_current_usage)
        .service(list_invoices)
        .service(get_invoice);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start of the range (inclusive): an RFC 3339 time or a date (UTC midnight). Default: 30
    /// days before `to`.
    pub from: Option<String>,
    /// End of the range (exclusive): an RFC 3339 time or a date (UTC midnight). Default: now.
    pub to: Option<String>,
    /// Comma-separated dimensions among `day` (UTC), `endpoint`, `tool`. Default: `day`. Empty
    /// (`group_by=`): one row for the whole range.
    pub group_by: Option<String>,
}

/// One group of usage; dimensions not grouped by are absent.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRowOut {
    /// The UTC day (`YYYY-MM-DD`), when grouped by day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// When grouped by endpoint; `null` for requests that reached no endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<Option<EndpointId>>,
    /// The endpoint's slug, when grouped by endpoint and it still exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The exposed tool name (`server__tool`), when grouped by tool; empty for requests that
    /// named no tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UsageCounts {
    /// Every MCP request recorded (billable or not).
    pub requests: i64,
    /// Billable calls: tool calls forwarded to their server.
    pub calls: i64,
    /// Requests that failed upstream.
    pub errors: i64,
    /// Requests refused by authorization or because the org was over quota.
    pub denied: i64,
    /// Requests refused by a rate limit.
    pub rate_limited: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// Mean latency in milliseconds (0 without requests).
    pub avg_latency_ms: f64,
}

impl UsageCounts {
    fn of(r: &UsageSummaryRow) -> Self {
        Self {
            requests: r.requests,
            calls: r.calls,
            errors: r.errors,
            denied: r.denied,
            rate_limited: r.rate_limited,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            avg_latency_ms: if r.requests > 0 {
                r.latency_ms_sum as f64 / r.requests as f64
            } else {
                0.0
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageOut {
    /// RFC 3339.
    pub from: String,
    /// RFC 3339.
    pub to: String,
    pub group_by: Vec<String>,
    pub rows: Vec<UsageRowOut>,
    pub totals: UsageCounts,
}

/// Usage of the org's endpoints over a range, from per-minute rollups.
#[utoipa::path(
    tag = "usage",
    operation_id = "usage.get",
    params(("org" = String, Path, description = "Org slug"), UsageQuery),
    responses(
        (status = 200, description = "Usage grouped as asked", body = UsageOut),
        (status = 400, description = "Invalid range or grouping", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org (or not a member)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orgs/{org}/usage")]
pub async fn get_usage(
    state: web::Data<AppState>,
    member: OrgMember,
    query: ValidQuery<UsageQuery>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let to = match &query.to {
        Some(t) => parse_instant("to", t)?,
        None => OffsetDateTime::now_utc(),
    };
    let from = match &query.from {
        Some(f) => parse_instant("from", f)?,
        None => to - time::Duration::days(DEFAULT_RANGE_DAYS),
    };
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if to - from > time::Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::invalid(
            "from",
            format!("the range may cover at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let (grouping, group_by) = parse_grouping(query.group_by.as_deref().unwrap_or("day"))?;

    let mut tx = member.begin(&state).await?;
    let rows = usage::summarize(&mut tx, from, to, grouping).await?;
    let slugs: HashMap<EndpointId, String> = if grouping.by_endpoint {
        endpoints::list(&mut tx)
            .await?
            .into_iter()
            .map(|e| (e.id, e.slug))
            .collect()
    } else {
        HashMap::new()
    };
    tx.commit().await?;

    let mut totals = UsageSummaryRow {
        day: None,
        endpoint_id: None,
        tool: None,
        requests: 0,
        calls: 0,
        errors: 0,
        denied: 0,
        rate_limited: 0,
        bytes_in: 0,
        bytes_out: 0,
        latency_ms_sum: 0,
    };
    let rows = rows
        .iter()
        .map(|r| {
            totals.requests += r.requests;
            totals.calls += r.calls;
            totals.errors += r.errors;
            totals.denied += r.denied;
            totals.rate_limited += r.rate_limited;
            totals.bytes_in += r.bytes_in;
            totals.bytes_out += r.bytes_out;
            totals.latency_ms_sum += r.latency_ms_sum;
            let endpoint_id = grouping.by_endpoint.then(|| {
                r.endpoint_id
                    .filter(|id| *id != NO_ENDPOINT)
                    .map(EndpointId::from_uuid)
            });
            UsageRowOut {
                day: r.day.map(format_date),
                endpoint: endpoint_id.flatten().and_then(|id| slugs.get(&id).cloned()),
                endpoint_id,
                tool: r.tool.clone(),
                counts: UsageCounts::of(r),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(UsageOut {
        from: from.format(&Rfc3339).map_err(|e| ApiError::Internal(e.into()))?,
        to: to.format(&Rfc3339).map_err(|e| ApiError::Internal(e.into()))?,
        group_by,
        rows,
        totals: UsageCounts::of(&totals),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanOut {
    pub id: String,
    pub name: String,
    pub monthly_fee_cents: i64,
    pub included_calls: i64,
    pub overage_cents_per_1000_calls: i64,
    /// Calls per period beyond which calls are refused; absent: no hard cap.
    pub hard_limit_calls: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentUsageOut {
    /// First day of the current billing period (calendar month, UTC), `YYYY-MM-DD`.
    pub period_start: String,
    /// First day after it.
    pub period_end: String,
    pub plan: PlanOut,
    /// Billable calls recorded so far this period.
    pub calls: i64,
    /// Whether calls are refused because the hard limit is reached (never on an install that
    /// does not enforce hard limits, `billing.enforce_hard_limits`).
    pub over_quota: bool,
}

/// The current billing period: plan, calls so far, and whether the hard limit is reached.
#[utoipa::path(
    tag = "usage",
    operation_id = "usage.current",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, description = "The current period", body = CurrentUsageOut),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org (or not a member)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orgs/{org}/usage/current")]
pub async fn get_current_usage(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let period_start = usage::period_start_of(OffsetDateTime::now_utc());
    let period_end = next_month(period_start);
    let mut tx = member.begin(&state).await?;
    let plan = invoices::plan_of_org(&mut tx).await?;
    let calls = usage::period_calls(&mut tx, period_start).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(CurrentUsageOut {
        period_start: format_date(period_start),
        period_end: format_date(period_end),
        over_quota: over_quota(&state, plan.hard_limit_calls, calls),
        calls,
        plan: PlanOut {
            id: plan.id,
            name: plan.name,
            monthly_fee_cents: plan.monthly_fee_cents,
            included_calls: plan.included_calls,
            overage_cents_per_1000_calls: plan.overage_cents_per_1000_calls,
            hard_limit_calls: plan.hard_limit_calls,
        },
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceOut {
    pub id: InvoiceId,
    /// `YYYY-MM-DD`, first day of the period.
    pub period_start: String,
    /// `YYYY-MM-DD`, first day after the period.
    pub period_end: String,
    pub plan_id: String,
    /// `draft` or `final`.
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub finalized_at: Option<String>,
}

impl InvoiceOut {
    pub(crate) fn of(row: invoices::InvoiceRow) -> ApiResult<Self> {
        let rfc3339 = |t: OffsetDateTime| t.format(&Rfc3339).map_err(|e| ApiError::Internal(e.into()));
        Ok(Self {
            id: row.id,
            period_start: format_date(row.period_start),
            period_end: format_date(row.period_end),
            plan_id: row.plan_id,
            status: row.status,
            currency: row.currency,
            total_cents: row.total_cents,
            created_at: rfc3339(row.created_at)?,
            finalized_at: row.finalized_at.map(rfc3339).transpose()?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceLineOut {
    pub line_no: i32,
    pub description: String,
    pub quantity: i64,
    /// Price of one unit in thousandths of a cent.
    pub unit_price_millicents: i64,
    pub amount_cents: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceDetailOut {
    #[serde(flatten)]
    pub invoice: InvoiceOut,
    pub lines: Vec<InvoiceLineOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceListOut {
    /// Newest period first.
    pub invoices: Vec<InvoiceOut>,
}

/// The org's invoices, newest first.
#[utoipa::path(
    tag = "usage",
    operation_id = "invoices.list",
    params(("org" = String, Path, description = "Org slug")),
    responses(
        (status = 200, description = "Invoices", body = InvoiceListOut),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Requires the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org (or not a member)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orgs/{org}/invoices")]
pub async fn list_invoices(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let mut tx = member.begin(&state).await?;
    let rows = invoices::list(&mut tx, 120).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(InvoiceListOut {
        invoices: rows.into_iter().map(InvoiceOut::of).collect::<ApiResult<_>>()?,
    }))
}

/// One invoice with its lines.
#[utoipa::path(
    tag = "usage",
    operation_id = "invoices.get",
    params(
        ("org" = String, Path, description = "Org slug"),
        ("invoice_id" = InvoiceId, Path, description = "Invoice id"),
    ),
    responses(
        (status = 200, description = "The invoice", body = InvoiceDetailOut),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Requires the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such invoice in this org", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orgs/{org}/invoices/{invoice_id}")]
pub async fn get_invoice(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, InvoiceId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, invoice_id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let invoice = invoices::find(&mut tx, invoice_id)
        .await?
        .ok_or(ApiError::NotFound("invoice"))?;
    let lines = invoices::lines(&mut tx, invoice_id).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(InvoiceDetailOut {
        invoice: InvoiceOut::of(invoice)?,
        lines: lines
            .into_iter()
            .map(|l| InvoiceLineOut {
                line_no: l.line_no,
                description: l.description,
                quantity: l.quantity,
                unit_price_millicents: l.unit_price_millicents,
                amount_cents: l.amount_cents,
            })
            .collect(),
    }))
}

fn parse_instant(field: &str, value: &str) -> ApiResult<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value, &date_format)
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)",
            )
        })
}

fn parse_grouping(value: &str) -> ApiResult<(Grouping, Vec<String>)> {
    let mut grouping = Grouping::default();
    let mut names = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let flag = match part {
            "day" => &mut grouping.by_day,
            "endpoint" => &mut grouping.by_endpoint,
            "tool" => &mut grouping.by_tool,
            _ => {
                return Err(ApiError::invalid(
                    "group_by",
                    format!("unknown dimension `{part}`; use day, endpoint and/or tool"),
                ));
            }
        };
        if !*flag {
            *flag = true;
            names.push(part.to_owned());
        }
    }
    Ok((grouping, names))
}

/// Whether an org with `calls` billable calls this period is refused by its plan's hard cap on
/// this install (`billing.enforce_hard_limits`).
pub(crate) fn over_quota(state: &AppState, hard_limit_calls: Option<i64>, calls: i64) -> bool {
    state.cfg.billing.enforce_hard_limits && hard_limit_calls.is_some_and(|limit| calls >= limit)
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn next_month(first: Date) -> Date {
    let (year, month) = match first.month() {
        time::Month::December => (first.year() + 1, time::Month::January),
        m => (first.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).expect("valid first day")
}
