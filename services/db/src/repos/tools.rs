//! Tools of domain servers, their pinned (approved) definitions and the approval state machine.
//!
//! `definition` is the latest definition seen upstream; `approved_definition`/`approved_hash` are
//! what an admin approved, and only a tool in `approved` (whose latest definition equals the
//! approved one) is ever served. [`observe`] applies what a sync (or a dataplane drift report)
//! saw: a new tool waits in `pending`; a tool whose definition drifted from its approved pin goes
//! to `changed` (withheld); drifting back to the pin restores `approved`; a rejected tool stays
//! rejected until its definition changes; a tool no longer offered becomes `removed`.

use serde_json::Value;
use time::OffsetDateTime;

use gatehouse_core::ids::{BackendId, ServerId, ToolId, UserId};

use crate::error::{DbError, DbResult};
use crate::tenant::TenantTx;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Pending,
    Approved,
    Changed,
    Rejected,
    Removed,
}

impl ToolStatus {
    pub const ALL: [ToolStatus; 5] = [
        ToolStatus::Pending,
        ToolStatus::Approved,
        ToolStatus::Changed,
        ToolStatus::Rejected,
        ToolStatus::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolStatus::Pending => "pending",
            ToolStatus::Approved => "approved",
            ToolStatus::Changed => "changed",
            ToolStatus::Rejected => "rejected",
            ToolStatus::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Waiting for an admin's decision.
    pub fn awaits_decision(self) -> bool {
        matches!(self, ToolStatus::Pending | ToolStatus::Changed)
    }
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ToolRow {
    pub id: ToolId,
    pub server_id: Option<ServerId>,
    /// Set for hosted SQL tools (see `repos::backends`).
    pub backend_id: Option<BackendId>,
    pub name: String,
    pub definition: Value,
    pub definition_hash: Vec<u8>,
    pub approved_definition: Option<Value>,
    pub approved_hash: Option<Vec<u8>>,
    #[sqlx(try_from = "String")]
    pub status: StatusColumn,
    pub flags: Value,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<OffsetDateTime>,
    pub first_seen_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The `status` column, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusColumn(pub ToolStatus);

impl TryFrom<String> for StatusColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ToolStatus::parse(&s)
            .map(StatusColumn)
            .ok_or_else(|| format!("unknown tool status {s:?}"))
    }
}

impl ToolRow {
    pub fn status(&self) -> ToolStatus {
        self.status.0
    }
}

const COLUMNS: &str = "id, server_id, backend_id, name, definition, definition_hash, approved_definition, approved_hash, \
                       status, flags, decided_by, decided_at, first_seen_at, last_seen_at, updated_at";

/// What one observation did to a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// First seen: pending.
    New,
    /// Same definition, same status.
    Unchanged,
    /// Definition and/or status changed.
    Updated { from: ToolStatus, to: ToolStatus },
}

/// The status a tool moves to when `observed_hash` is seen.
pub fn next_status(
    current: ToolStatus,
    current_hash: &[u8],
    approved_hash: Option<&[u8]>,
    observed_hash: &[u8],
) -> ToolStatus {
    match current {
        ToolStatus::Rejected if current_hash == observed_hash => ToolStatus::Rejected,
        ToolStatus::Rejected => ToolStatus::Pending,
        _ if approved_hash == Some(observed_hash) => ToolStatus::Approved,
        _ if approved_hash.is_some() => ToolStatus::Changed,
        _ => ToolStatus::Pending,
    }
}

/// A tool definition as seen upstream.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub name: &'a str,
    pub definition: &'a Value,
    pub hash: &'a [u8],
    pub flags: &'a Value,
}

/// Records that `server` offers `observed` now.
pub async fn observe(
    tx: &mut TenantTx,
    server: ServerId,
    observed: &Observed<'_>,
) -> DbResult<(ToolRow, Transition)> {
    let org_id = tx.org_id();
    let existing: Option<ToolRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tools WHERE org_id = $1 AND server_id = $2 AND name = $3 FOR UPDATE"
    )))
    .bind(org_id)
    .bind(server)
    .bind(observed.name)
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = existing else {
        let row: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tools (id, org_id, kind, server_id, name, definition, definition_hash, flags)
             VALUES ($1, $2, 'upstream', $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(ToolId::new())
        .bind(org_id)
        .bind(server)
        .bind(observed.name)
        .bind(observed.definition)
        .bind(observed.hash)
        .bind(observed.flags)
        .fetch_one(tx.conn())
        .await?;
        return Ok((row, Transition::New));
    };
    let from = row.status();
    let to = next_status(
        from,
        &row.definition_hash,
        row.approved_hash.as_deref(),
        observed.hash,
    );
    let same_definition = row.definition_hash == observed.hash && row.definition == *observed.definition;
    if same_definition && from == to && row.flags == *observed.flags {
        let row: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tools SET last_seen_at = now() WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        )))
        .bind(org_id)
        .bind(row.id)
        .fetch_one(tx.conn())
        .await?;
        return Ok((row, Transition::Unchanged));
    }
    let updated: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tools
            SET definition = $3, definition_hash = $4, flags = $5, status = $6,
                last_seen_at = now(), updated_at = now()
          WHERE org_id = $1 AND id = $2
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(row.id)
    .bind(observed.definition)
    .bind(observed.hash)
    .bind(observed.flags)
    .bind(to.as_str())
    .fetch_one(tx.conn())
    .await?;
    let transition = if from == to && same_definition {
        Transition::Unchanged
    } else {
        Transition::Updated { from, to }
    };
    Ok((updated, transition))
}

/// Records where each tool stood in the server's complete listing (`listed`, in the server's
/// order; position 1 is the first). Returns whether an *approved* tool moved, which changes what
/// endpoints list and so must reach the dataplane. Tools not in `listed` keep their last position
/// (they are being marked removed, and a removed tool is never listed).
pub async fn record_upstream_order(tx: &mut TenantTx, server: ServerId, listed: &[&str]) -> DbResult<bool> {
    let org_id = tx.org_id();
    let approved_moved: i64 = sqlx::query_scalar(
        "WITH listed AS (
              SELECT name, ord::integer AS position FROM unnest($3::text[]) WITH ORDINALITY AS l(name, ord)
         ), moved AS (
              UPDATE tools t SET upstream_position = listed.position
                FROM listed
               WHERE t.org_id = $1 AND t.server_id = $2 AND t.name = listed.name
                 AND t.upstream_position IS DISTINCT FROM listed.position
           RETURNING t.status
         )
         SELECT count(*) FROM moved WHERE status = 'approved'",
    )
    .bind(org_id)
    .bind(server)
    .bind(listed)
    .fetch_one(tx.conn())
    .await?;
    Ok(approved_moved > 0)
}

/// Marks the server's tools that were not seen in a complete listing as `removed`; returns them
/// with the status they had.
pub async fn mark_removed_except(
    tx: &mut TenantTx,
    server: ServerId,
    seen_names: &[&str],
) -> DbResult<Vec<(ToolRow, ToolStatus)>> {
    let org_id = tx.org_id();
    let before: Vec<ToolRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tools
          WHERE org_id = $1 AND server_id = $2 AND status <> 'removed' AND NOT (name = ANY($3))
          FOR UPDATE"
    )))
    .bind(org_id)
    .bind(server)
    .bind(seen_names)
    .fetch_all(tx.conn())
    .await?;
    let mut out = Vec::with_capacity(before.len());
    for row in before {
        let from = row.status();
        let updated: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tools SET status = 'removed', updated_at = now()
              WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        )))
        .bind(org_id)
        .bind(row.id)
        .fetch_one(tx.conn())
        .await?;
        out.push((updated, from));
    }
    Ok(out)
}

/// Filters for listing tools.
#[derive(Clone, Debug, Default)]
pub struct ToolFilter {
    pub server: Option<ServerId>,
    pub status: Option<ToolStatus>,
}

pub async fn list(tx: &mut TenantTx, filter: &ToolFilter) -> DbResult<Vec<ToolRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tools
          WHERE org_id = $1
            AND ($2::uuid IS NULL OR server_id = $2)
            AND ($3::text IS NULL OR status = $3)
          ORDER BY name, id"
    )))
    .bind(org_id)
    .bind(filter.server)
    .bind(filter.status.map(ToolStatus::as_str))
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: ToolId) -> DbResult<Option<ToolRow>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tools WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// The ids among `ids` that are tools of this org (to validate references).
pub async fn existing_ids(tx: &mut TenantTx, ids: &[ToolId]) -> DbResult<Vec<ToolId>> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query_scalar("SELECT id FROM tools WHERE org_id = $1 AND id = ANY($2) ORDER BY id")
            .bind(org_id)
            .bind(ids)
            .fetch_all(tx.conn())
            .await?,
    )
}

/// Why a decision could not be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecisionRefused {
    /// The tool is no longer offered upstream.
    NotOffered,
    /// The definition changed since the admin looked at it.
    StaleDefinition,
}

/// Approves the tool's current definition, pinning it. With `expected_hash`, refuses if the
/// current definition is not the one the admin reviewed.
pub async fn approve(
    tx: &mut TenantTx,
    id: ToolId,
    expected_hash: Option<&[u8]>,
    by: UserId,
) -> DbResult<Result<(ToolRow, ToolStatus), DecisionRefused>> {
    let org_id = tx.org_id();
    let row: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tools WHERE org_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(DbError::NotFound)?;
    if row.status() == ToolStatus::Removed {
        return Ok(Err(DecisionRefused::NotOffered));
    }
    if expected_hash.is_some_and(|h| h != row.definition_hash.as_slice()) {
        return Ok(Err(DecisionRefused::StaleDefinition));
    }
    let from = row.status();
    let updated: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tools
            SET approved_definition = definition, approved_hash = definition_hash, status = 'approved',
                approved_sql_target = sql_target,
                decided_by = $3, decided_at = now(), updated_at = now()
          WHERE org_id = $1 AND id = $2
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(by)
    .fetch_one(tx.conn())
    .await?;
    Ok(Ok((updated, from)))
}

/// Rejects the tool: it is not served, whatever its approval history.
pub async fn reject(tx: &mut TenantTx, id: ToolId, by: UserId) -> DbResult<(ToolRow, ToolStatus)> {
    let org_id = tx.org_id();
    let from: String =
        sqlx::query_scalar("SELECT status FROM tools WHERE org_id = $1 AND id = $2 FOR UPDATE")
            .bind(org_id)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(DbError::NotFound)?;
    let updated: ToolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tools SET status = 'rejected', decided_by = $3, decided_at = now(), updated_at = now()
          WHERE org_id = $1 AND id = $2
          RETURNING {COLUMNS}"
    )))
    .bind(org_id)
    .bind(id)
    .bind(by)
    .fetch_one(tx.conn())
    .await?;
    let from = ToolStatus::parse(&from).ok_or(DbError::CheckViolation {
        constraint: "tools_status_check".into(),
    })?;
    Ok((updated, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ToolStatus::*;

    #[test]
    fn status_machine() {
        let a: &[u8] = b"a";
        let b: &[u8] = b"b";
        // New definitions wait; an approved pin decides the rest.
        assert_eq!(next_status(Pending, a, None, b), Pending);
        assert_eq!(next_status(Pending, a, None, a), Pending);
        assert_eq!(next_status(Approved, a, Some(a), a), Approved);
        assert_eq!(next_status(Approved, a, Some(a), b), Changed, "rug pull");
        assert_eq!(next_status(Changed, b, Some(a), b), Changed);
        assert_eq!(next_status(Changed, b, Some(a), a), Approved, "back to the pin");
        assert_eq!(
            next_status(Removed, a, Some(a), a),
            Approved,
            "reappears as approved"
        );
        assert_eq!(next_status(Removed, a, Some(a), b), Changed);
        assert_eq!(next_status(Removed, a, None, a), Pending);
        assert_eq!(next_status(Rejected, a, None, a), Rejected);
        assert_eq!(
            next_status(Rejected, a, Some(a), a),
            Rejected,
            "a rejection sticks"
        );
        assert_eq!(
            next_status(Rejected, a, None, b),
            Pending,
            "a new definition is reviewed"
        );
    }
}
