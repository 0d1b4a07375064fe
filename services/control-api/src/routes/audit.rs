//! The org's audit trail: query (filters, pagination by sequence number), export as JSON Lines,
//! and verification of the hash chain.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use futures::{StreamExt, TryStreamExt};
use gatehouse_core::role::Role;
use gatehouse_db::repos::audit::{self, AuditQuery, AuditRecord, SeqRange};
use gatehouse_db::{AuditOutcome, TenantTx};

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidQuery;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_audit)
        .service(export_audit)
        .service(verify_audit);
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Rows read per database round trip while exporting.
const EXPORT_PAGE: i64 = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeParam {
    Success,
    Denied,
    Error,
    RateLimited,
}

impl From<OutcomeParam> for AuditOutcome {
    fn from(o: OutcomeParam) -> Self {
        match o {
            OutcomeParam::Success => AuditOutcome::Success,
            OutcomeParam::Denied => AuditOutcome::Denied,
            OutcomeParam::Error => AuditOutcome::Error,
            OutcomeParam::RateLimited => AuditOutcome::RateLimited,
        }
    }
}

/// Filters of the audit trail. Times are RFC 3339.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Events that occurred at or after this instant.
    pub from: Option<String>,
    /// Events that occurred before this instant.
    pub to: Option<String>,
    /// Actions starting with this prefix, e.g. `tool.` or `server.create`.
    pub action: Option<String>,
    /// Events by this actor id (a user id, a service token id, an OAuth client id).
    pub actor: Option<String>,
    #[param(inline)]
    pub outcome: Option<OutcomeParam>,
    /// Events after this sequence number (pagination: pass the previous page's `next_after_seq`).
    pub after_seq: Option<i64>,
    /// Page size, 1 to 1000 (default 100). Ignored by the export.
    pub limit: Option<i64>,
}

fn parse_time(field: &str, raw: &Option<String>) -> ApiResult<Option<OffsetDateTime>> {
    raw.as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                ApiError::invalid(
                    field,
                    "must be an RFC 3339 date-time such as 2026-11-22T10:00:00Z",
                )
            })
        })
        .transpose()
}

impl AuditParams {
    fn query(&self, limit: i64) -> ApiResult<AuditQuery> {
        if self.after_seq.is_some_and(|s| s < 0) {
            return Err(ApiError::invalid("after_seq", "must not be negative"));
        }
        if self.action.as_ref().is_some_and(|a| a.len() > 200) {
            return Err(ApiError::invalid("action", "must be at most 200 characters"));
        }
        if self.actor.as_ref().is_some_and(|a| a.len() > 200) {
            return Err(ApiError::invalid("actor", "must be at most 200 characters"));
        }
        Ok(AuditQuery {
            after_seq: self.after_seq,
            from: parse_time("from", &self.from)?,
            to: parse_time("to", &self.to)?,
            action_prefix: self.action.clone().filter(|a| !a.is_empty()),
            actor_id: self.actor.clone().filter(|a| !a.is_empty()),
            outcome: self.outcome.map(Into::into),
            limit,
        })
    }
}

/// One recorded event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEventOut {
    pub seq: i64,
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: String,
    /// `control` (a console/API change) or `data` (an MCP call).
    pub source: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub actor_label: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
    /// Hex SHA-256 chain link to the previous entry.
    pub prev_hash: String,
    /// Hex SHA-256 of this entry (see docs: `SHA-256(prev_hash || seq || canonical JSON)`).
    pub entry_hash: String,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn event_out(r: &AuditRecord) -> AuditEventOut {
    let e = &r.event;
    AuditEventOut {
        seq: r.seq,
        id: e.id.to_string(),
        occurred_at: rfc3339(e.occurred_at),
        recorded_at: rfc3339(r.recorded_at),
        source: e.source.as_str().to_owned(),
        actor_type: e.actor.kind.as_str().to_owned(),
        actor_id: e.actor.id.clone(),
        actor_label: e.actor.label.clone(),
        action: e.action.clone(),
        target_type: e.target_type.clone(),
        target_id: e.target_id.clone(),
        outcome: e.outcome.as_str().to_owned(),
        ip: e.ip.map(|ip| ip.to_string()),
        user_agent: e.user_agent.clone(),
        details: e.details.clone(),
        prev_hash: hex::encode(&r.prev_hash),
        entry_hash: hex::encode(&r.entry_hash),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventOut>,
    /// Pass as `after_seq` for the next page; absent on the last page.
    pub next_after_seq: Option<i64>,
}

/// Query the audit trail, oldest first.
#[utoipa::path(
    operation_id = "audit.list",
    tag = "audit",
    params(("org" = String, Path, description = "Org slug"), AuditParams),
    responses(
        (status = 200, body = AuditPage), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[get("/orgs/{org}/audit")]
pub async fn list_audit(
    state: web::Data<AppState>,
    member: OrgMember,
    params: ValidQuery<AuditParams>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    // One more than asked tells whether another page exists.
    let query = params.query(limit + 1)?;
    let mut tx = member.begin(&state).await?;
    let mut records = audit::list(&mut tx, &query).await?;
    tx.commit().await?;
    let more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let next_after_seq = if more { records.last().map(|r| r.seq) } else { None };
    Ok(HttpResponse::Ok().json(AuditPage {
        events: records.iter().map(event_out).collect(),
        next_after_seq,
    }))
}

/// Export the (filtered) audit trail as JSON Lines, one event per line, oldest first. The answer
/// streams: rows are read page by page in one read-only snapshot and written out as they come, so
/// a trail of any size is exported in constant memory.
#[utoipa::path(
    operation_id = "audit.export",
    tag = "audit",
    params(("org" = String, Path, description = "Org slug"), AuditParams),
    responses(
        (status = 200, content_type = "application/x-ndjson", body = String, description = "One AuditEventOut per line"),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[get("/orgs/{org}/audit/export")]
pub async fn export_audit(
    state: web::Data<AppState>,
    member: OrgMember,
    params: ValidQuery<AuditParams>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let query = params.query(EXPORT_PAGE)?;
    // One snapshot for the whole export, however long the client takes to read it.
    let tx = TenantTx::begin_consistent_read(&state.db, &member.scope).await?;
    // The first page is read before answering, so that a failing database is still a problem
    // response; once the body streams, a failure can only cut it short (and is logged).
    let (first, rest) = export_page(tx, query).await?;
    let rest = futures::stream::try_unfold(rest, |cursor| async move {
        match cursor {
            None => Ok(None),
            Some((tx, query)) => export_page(tx, query).await.map(Some),
        }
    })
    .inspect_err(|e| tracing::error!(error = %e, "audit export cut short"));
    let body = futures::stream::once(async move { Ok::<_, ApiError>(first) }).chain(rest);
    let filename = format!("audit-{}.jsonl", member.org.slug);
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(body))
}

/// Where an export continues: its transaction and the query for the next page.
type ExportCursor = Option<(TenantTx, AuditQuery)>;

/// Reads one page of the export and renders it as JSON Lines; the cursor is `None` after the last
/// page (the transaction is then committed).
async fn export_page(mut tx: TenantTx, mut query: AuditQuery) -> ApiResult<(web::Bytes, ExportCursor)> {
    let page = audit::list(&mut tx, &query).await?;
    let mut chunk = Vec::new();
    for record in &page {
        serde_json::to_writer(&mut chunk, &event_out(record)).map_err(|e| ApiError::Internal(e.into()))?;
        chunk.push(b'\n');
    }
    let cursor = match page.last() {
        Some(last) if page.len() as i64 == EXPORT_PAGE => {
            query.after_seq = Some(last.seq);
            Some((tx, query))
        }
        _ => {
            tx.commit().await?;
            None
        }
    };
    Ok((web::Bytes::from(chunk), cursor))
}

/// The part of the chain to verify, by sequence number (both ends inclusive).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// The first entry to verify (default: the first entry retention kept). Its link is checked
    /// against the stored hash of the entry before it.
    pub from_seq: Option<i64>,
    /// The last entry to verify (default: the chain head).
    pub to_seq: Option<i64>,
}

impl VerifyParams {
    fn range(&self) -> ApiResult<SeqRange> {
        if self.from_seq.is_some_and(|s| s < 1) {
            return Err(ApiError::invalid("from_seq", "must be at least 1"));
        }
        if self.to_seq.is_some_and(|s| s < 1) {
            return Err(ApiError::invalid("to_seq", "must be at least 1"));
        }
        if let (Some(from), Some(to)) = (self.from_seq, self.to_seq)
            && to < from
        {
            return Err(ApiError::invalid("to_seq", "must not be less than from_seq"));
        }
        Ok(SeqRange {
            from_seq: self.from_seq,
            to_seq: self.to_seq,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerification {
    /// True when every entry of the range verifies (and, for a range reaching the head, the
    /// chain head).
    pub valid: bool,
    /// Entries verified.
    pub entries: i64,
    /// The first sequence number whose content, link or position does not verify, or the first
    /// entry missing inside the range.
    pub first_broken_seq: Option<i64>,
    /// The chain head disagrees with the last entry (entries removed from the end). Checked
    /// only when the range reaches the head.
    pub head_mismatch: bool,
    /// Entries up to this sequence number were removed by the plan's retention (`audit.pruned`
    /// entries say when); the kept chain is verified from there. 0: nothing was removed.
    pub pruned_through_seq: i64,
    /// The range verified: `from_seq` is at least the first kept entry, `to_seq` at most the
    /// chain head. `to_seq < from_seq`: the range held nothing to verify.
    pub from_seq: i64,
    pub to_seq: i64,
}

/// Recompute the org's audit hash chain, or a range of it, and report whether it is intact and
/// where it first breaks.
#[utoipa::path(
    operation_id = "audit.verify",
    tag = "audit",
    params(("org" = String, Path, description = "Org slug"), VerifyParams),
    responses(
        (status = 200, body = AuditVerification),
        (status = 400, description = "Invalid range", body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{org}/audit/verify")]
pub async fn verify_audit(
    state: web::Data<AppState>,
    member: OrgMember,
    params: ValidQuery<VerifyParams>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let range = params.range()?;
    let mut tx = member.begin(&state).await?;
    let v = audit::verify_chain_range(&mut tx, range).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(AuditVerification {
        valid: v.first_broken_seq.is_none() && !v.head_mismatch,
        entries: v.entries,
        first_broken_seq: v.first_broken_seq,
        head_mismatch: v.head_mismatch,
        pruned_through_seq: v.pruned_through_seq,
        from_seq: v.from_seq,
        to_seq: v.to_seq,
    }))
}
