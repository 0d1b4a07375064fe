//! The platform audit trail: every operator action, append-only and hash-chained like an org's
//! trail (the chain of the pseudo-org `platform`, same entry hash). Global: no tenant reads it.

use sqlx::Row;

use gatehouse_core::ids::OrgId;

use crate::error::DbResult;
use crate::repos::audit::{AuditRecord, GENESIS_HASH, NewAuditEvent, entry_hash, record_from_row, to_micros};
use crate::tenant::GlobalTx;

/// The name the platform chain is hashed under (where an org's chain uses its id).
pub const PLATFORM_CHAIN: &str = "platform";

/// A platform trail entry: the event and the org it affected, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformRecord {
    pub record: AuditRecord,
    pub org_id: Option<OrgId>,
}

/// Appends `event` (about `org`, if any) to the platform chain, in the caller's transaction.
/// Holds the chain head's row lock until the transaction ends.
pub async fn append(tx: &mut GlobalTx, org: Option<OrgId>, event: &NewAuditEvent) -> DbResult<i64> {
    let conn = tx.conn();
    sqlx::query(
        "INSERT INTO platform_audit_chain_head (singleton, seq, entry_hash) VALUES (true, 0, $1)
         ON CONFLICT (singleton) DO NOTHING",
    )
    .bind(&GENESIS_HASH[..])
    .execute(&mut *conn)
    .await?;
    let (seq, prev): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, entry_hash FROM platform_audit_chain_head WHERE singleton FOR UPDATE")
            .fetch_one(&mut *conn)
            .await?;
    let seq = seq + 1;
    let hash = entry_hash(&prev, seq, PLATFORM_CHAIN, event);
    sqlx::query(
        "INSERT INTO platform_audit_events (seq, id, occurred_at, actor_type, actor_id, actor_label, action,
                                            target_type, target_id, affected_org_id, outcome, ip, user_agent, details,
                                            prev_hash, entry_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(seq)
    .bind(event.id.into_uuid())
    .bind(to_micros(event.occurred_at))
    .bind(event.actor.kind.as_str())
    .bind(&event.actor.id)
    .bind(&event.actor.label)
    .bind(&event.action)
    .bind(&event.target_type)
    .bind(&event.target_id)
    .bind(org)
    .bind(event.outcome.as_str())
    .bind(event.ip.map(sqlx::types::ipnet::IpNet::from))
    .bind(&event.user_agent)
    .bind(&event.details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE platform_audit_chain_head SET seq = $1, entry_hash = $2, updated_at = now() WHERE singleton",
    )
    .bind(seq)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

/// Reads the platform trail in chain order, after `after_seq`, optionally only about `org`.
pub async fn list(
    tx: &mut GlobalTx,
    after_seq: Option<i64>,
    org: Option<OrgId>,
    limit: i64,
) -> DbResult<Vec<PlatformRecord>> {
    let rows = sqlx::query(
        "SELECT seq, id, occurred_at, recorded_at, 'control' AS source, actor_type, actor_id, actor_label,
                action, target_type, target_id, outcome, host(ip) AS ip, user_agent, details, prev_hash,
                entry_hash, affected_org_id
           FROM platform_audit_events
          WHERE ($1::bigint IS NULL OR seq > $1)
            AND ($2::uuid IS NULL OR affected_org_id = $2)
          ORDER BY seq
          LIMIT $3",
    )
    .bind(after_seq)
    .bind(org)
    .bind(limit.clamp(1, 1000))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|row| {
            let org_id: Option<OrgId> = row.try_get("affected_org_id")?;
            Ok(PlatformRecord {
                record: record_from_row(row)?,
                org_id,
            })
        })
        .collect()
}

/// Recomputes the platform chain from genesis; the first sequence number that does not verify.
pub async fn first_broken_seq(tx: &mut GlobalTx) -> DbResult<Option<i64>> {
    let mut prev = GENESIS_HASH.to_vec();
    let mut expected = 1i64;
    let mut after = None;
    loop {
        let page = list(tx, after, None, 1000).await?;
        if page.is_empty() {
            return Ok(None);
        }
        for entry in &page {
            let r = &entry.record;
            if r.seq != expected
                || r.prev_hash != prev
                || entry_hash(&prev, r.seq, PLATFORM_CHAIN, &r.event) != r.entry_hash
            {
                return Ok(Some(r.seq));
            }
            prev = r.entry_hash.clone();
            expected += 1;
        }
        after = page.last().map(|e| e.record.seq);
    }
}
