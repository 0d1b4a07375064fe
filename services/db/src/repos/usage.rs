//! Usage metering: raw usage events (deduplicated by id), their minute rollups and per-period
//! totals, which are maintained from exactly the rows inserted, so that rollups always equal the
//! sum of the distinct raw events.

use serde::Serialize;
use time::{Date, OffsetDateTime};

use gatehouse_core::ids::{EndpointId, EventId, ServerId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

/// The endpoint id rollups use for events that reached no endpoint (the column is part of the
/// primary key, so it cannot be NULL).
pub const NO_ENDPOINT: uuid::Uuid = uuid::Uuid::nil();

/// One raw usage event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewUsageEvent {
    pub id: EventId,
    /// The producing dataplane instance.
    pub source: String,
    pub occurred_at: OffsetDateTime,
    pub endpoint_id: Option<EndpointId>,
    pub server_id: Option<ServerId>,
    pub tool: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// `success`, `error`, `denied`, `rate_limited` or `over_quota`.
    pub outcome: &'static str,
    pub latency_ms: i32,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// Billable calls this event counts for (0 for what is not billed).
    pub units: i64,
    pub args_hash: Option<String>,
}

/// Records `events`, skipping ids already recorded, and adds the inserted rows (and only them)
/// to the minute rollups and the period totals, all in one statement. Returns how many rows
/// were inserted.
pub async fn record(tx: &mut TenantTx, events: &[NewUsageEvent]) -> DbResult<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let org_id = tx.org_id();
    let mut c = Columns::default();
    for e in events {
        c.id.push(e.id.into_uuid());
        c.source.push(e.source.as_str());
        c.occurred_at.push(e.occurred_at);
        c.endpoint_id.push(e.endpoint_id.map(|id| id.into_uuid()));
        c.server_id.push(e.server_id.map(|id| id.into_uuid()));
        c.tool.push(e.tool.as_deref());
        c.subject.push(e.subject.as_deref());
        c.client_id.push(e.client_id.as_deref());
        c.outcome.push(e.outcome);
        c.latency_ms.push(e.latency_ms);
        c.bytes_in.push(e.bytes_in);
        c.bytes_out.push(e.bytes_out);
        c.units.push(e.units);
        c.args_hash.push(e.args_hash.as_deref());
    }
    let inserted: i64 = sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::timestamptz[], $5::uuid[], $6::uuid[], $7::text[],
                                  $8::text[], $9::text[], $10::text[], $11::int[], $12::bigint[], $13::bigint[],
                                  $14::bigint[], $15::text[])
                 AS t(id, source, occurred_at, endpoint_id, server_id, tool, subject, client_id, outcome,
                      latency_ms, bytes_in, bytes_out, units, args_hash)
         ),
         inserted AS (
             INSERT INTO usage_events (org_id, id, source, occurred_at, endpoint_id, server_id, tool, subject,
                                       client_id, outcome, latency_ms, bytes_in, bytes_out, units, args_hash)
             SELECT $1, id, source, occurred_at, endpoint_id, server_id, tool, subject, client_id, outcome,
                    latency_ms, bytes_in, bytes_out, units, args_hash
               FROM input
             ON CONFLICT (org_id, id) DO NOTHING
             RETURNING occurred_at, endpoint_id, tool, outcome, latency_ms, bytes_in, bytes_out, units
         ),
         rollups AS (
             INSERT INTO usage_rollups AS r (org_id, bucket_start, endpoint_id, tool, calls, errors, denied,
                                             rate_limited, units, bytes_in, bytes_out, latency_ms_sum)
             SELECT $1, date_trunc('minute', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                    COALESCE(endpoint_id, $16), COALESCE(tool, ''),
                    count(*), count(*) FILTER (WHERE outcome = 'error'),
                    count(*) FILTER (WHERE outcome IN ('denied', 'over_quota')),
                    count(*) FILTER (WHERE outcome = 'rate_limited'),
                    sum(units), sum(bytes_in), sum(bytes_out), sum(latency_ms)
               FROM inserted
              GROUP BY 2, 3, 4
             ON CONFLICT (org_id, bucket_start, endpoint_id, tool) DO UPDATE
                SET calls = r.calls + EXCLUDED.calls,
                    errors = r.errors + EXCLUDED.errors,
                    denied = r.denied + EXCLUDED.denied,
                    rate_limited = r.rate_limited + EXCLUDED.rate_limited,
                    units = r.units + EXCLUDED.units,
                    bytes_in = r.bytes_in + EXCLUDED.bytes_in,
                    bytes_out = r.bytes_out + EXCLUDED.bytes_out,
                    latency_ms_sum = r.latency_ms_sum + EXCLUDED.latency_ms_sum
         ),
         totals AS (
             INSERT INTO usage_period_totals AS p (org_id, period_start, calls, events)
             SELECT $1, date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, sum(units), count(*)
               FROM inserted
              GROUP BY 2
             ON CONFLICT (org_id, period_start) DO UPDATE
                SET calls = p.calls + EXCLUDED.calls,
                    events = p.events + EXCLUDED.events,
                    updated_at = now()
         )
         SELECT count(*) FROM inserted",
    )
    .bind(org_id)
    .bind(&c.id)
    .bind(&c.source)
    .bind(&c.occurred_at)
    .bind(&c.endpoint_id)
    .bind(&c.server_id)
    .bind(&c.tool)
    .bind(&c.subject)
    .bind(&c.client_id)
    .bind(&c.outcome)
    .bind(&c.latency_ms)
    .bind(&c.bytes_in)
    .bind(&c.bytes_out)
    .bind(&c.units)
    .bind(&c.args_hash)
    .bind(NO_ENDPOINT)
    .fetch_one(tx.conn())
    .await?;
    Ok(inserted as u64)
}

#[derive(Default)]
struct Columns<'a> {
    id: Vec<uuid::Uuid>,
    source: Vec<&'a str>,
    occurred_at: Vec<OffsetDateTime>,
    endpoint_id: Vec<Option<uuid::Uuid>>,
    server_id: Vec<Option<uuid::Uuid>>,
    tool: Vec<Option<&'a str>>,
    subject: Vec<Option<&'a str>>,
    client_id: Vec<Option<&'a str>>,
    outcome: Vec<&'static str>,
    latency_ms: Vec<i32>,
    bytes_in: Vec<i64>,
    bytes_out: Vec<i64>,
    units: Vec<i64>,
    args_hash: Vec<Option<&'a str>>,
}

/// The first day of the billing period (calendar month, UTC) containing `at`.
pub fn period_start_of(at: OffsetDateTime) -> Date {
    let utc = at.to_offset(time::UtcOffset::UTC).date();
    utc.replace_day(1).expect("day 1 exists")
}

/// Billable calls recorded so far in the period starting on `period_start`.
pub async fn period_calls(tx: &mut TenantTx, period_start: Date) -> DbResult<i64> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT COALESCE((SELECT calls FROM usage_period_totals WHERE org_id = $1 AND period_start = $2), 0)",
    )
    .bind(org_id)
    .bind(period_start)
    .fetch_one(tx.conn())
    .await?)
}

/// Billable calls of raw events that occurred in `[from, to)` and were recorded in
/// `(recorded_after, recorded_until]` (the basis of invoices: raw events, not rollups).
pub async fn billable_calls(
    tx: &mut TenantTx,
    from: OffsetDateTime,
    to: OffsetDateTime,
    recorded_after: Option<OffsetDateTime>,
    recorded_until: OffsetDateTime,
) -> DbResult<i64> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(units), 0)::bigint FROM usage_events
          WHERE org_id = $1 AND occurred_at >= $2 AND occurred_at < $3
            AND ($4::timestamptz IS NULL OR recorded_at > $4) AND recorded_at <= $5",
    )
    .bind(org_id)
    .bind(from)
    .bind(to)
    .bind(recorded_after)
    .bind(recorded_until)
    .fetch_one(tx.conn())
    .await?)
}

/// How to group a usage summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grouping {
    pub by_day: bool,
    pub by_endpoint: bool,
    pub by_tool: bool,
}

/// One group of a usage summary; the dimensions not grouped by are `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UsageSummaryRow {
    pub day: Option<Date>,
    pub endpoint_id: Option<uuid::Uuid>,
    pub tool: Option<String>,
    /// Every recorded request.
    pub requests: i64,
    /// Billable calls.
    pub calls: i64,
    pub errors: i64,
    pub denied: i64,
    pub rate_limited: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub latency_ms_sum: i64,
}

/// Sums the minute rollups with `bucket_start` in `[from, to)`, grouped as asked (days are UTC).
pub async fn summarize(
    tx: &mut TenantTx,
    from: OffsetDateTime,
    to: OffsetDateTime,
    grouping: Grouping,
) -> DbResult<Vec<UsageSummaryRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT CASE WHEN $4 THEN (bucket_start AT TIME ZONE 'UTC')::date END AS day,
                CASE WHEN $5 THEN endpoint_id END AS endpoint_id,
                CASE WHEN $6 THEN tool END AS tool,
                sum(calls)::bigint AS requests, sum(units)::bigint AS calls, sum(errors)::bigint AS errors,
                sum(denied)::bigint AS denied, sum(rate_limited)::bigint AS rate_limited,
                sum(bytes_in)::bigint AS bytes_in, sum(bytes_out)::bigint AS bytes_out,
                sum(latency_ms_sum)::bigint AS latency_ms_sum
           FROM usage_rollups
          WHERE org_id = $1 AND bucket_start >= $2 AND bucket_start < $3
          GROUP BY 1, 2, 3
          ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3 NULLS FIRST
          LIMIT 10000",
    )
    .bind(org_id)
    .bind(from)
    .bind(to)
    .bind(grouping.by_day)
    .bind(grouping.by_endpoint)
    .bind(grouping.by_tool)
    .fetch_all(tx.conn())
    .await?)
}

/// A member to notify about usage (owners and admins with a verified address).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRecipient {
    pub email: String,
    pub display_name: String,
}

pub async fn alert_recipients(tx: &mut TenantTx) -> DbResult<Vec<AlertRecipient>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(
        "SELECT u.email, u.display_name FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 AND m.role IN ('owner', 'admin') AND u.email_verified_at IS NOT NULL
          ORDER BY u.email",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

/// Records that the `threshold_pct` alert of the period was sent; false if it already was.
/// Call in the transaction that sends it, so a failed send is retried.
pub async fn claim_alert(tx: &mut TenantTx, period_start: Date, threshold_pct: i32) -> DbResult<bool> {
    let org_id = tx.org_id();
    let inserted = sqlx::query(
        "INSERT INTO usage_alerts_sent (org_id, period_start, threshold_pct) VALUES ($1, $2, $3)
         ON CONFLICT (org_id, period_start, threshold_pct) DO NOTHING",
    )
    .bind(org_id)
    .bind(period_start)
    .bind(threshold_pct)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
