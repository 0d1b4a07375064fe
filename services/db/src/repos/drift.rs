//! Tool drift reported by dataplanes: an upstream now serves a definition that differs from the
//! one an admin approved.

use gatehouse_core::ids::{ServerId, ToolId};

use crate::error::DbResult;
use crate::tenant::TenantTx;

/// Withholds the tool (status `changed`, until an admin approves the new definition) and stores
/// the definition now served — but only while its approved pin is still `approved_hash`: a
/// report about a definition that was since re-approved, or a repeated report, changes nothing.
/// Returns the tool's id when it was withheld by this call.
pub async fn withhold_if_pinned(
    tx: &mut TenantTx,
    server_id: ServerId,
    tool_name: &str,
    approved_hash: &[u8],
    observed_hash: &[u8],
    observed_definition: &serde_json::Value,
) -> DbResult<Option<ToolId>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "UPDATE tools
            SET status = 'changed', definition = $5, definition_hash = $6, last_seen_at = now(), updated_at = now()
          WHERE org_id = $1 AND server_id = $2 AND name = $3 AND status = 'approved' AND approved_hash = $4
          RETURNING id",
    )
    .bind(org_id)
    .bind(server_id)
    .bind(tool_name)
    .bind(approved_hash)
    .bind(observed_definition)
    .bind(observed_hash)
    .fetch_optional(tx.conn())
    .await?)
}
