//! The platform audit trail: every operator action, in chain order, with the first entry that
//! does not verify.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use gatehouse_core::ids::OrgId;
use gatehouse_db::GlobalTx;
use gatehouse_db::repos::{orgs, platform_audit};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidQuery;
use crate::operator::Operator;
use crate::routes::audit::{AuditEventOut, event_out};
use crate::state::AppState;

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
