//! The audit trail: append-only, hash-chained per org.
//!
//! `entry_hash = SHA-256(prev_hash || seq (8 bytes, big endian) || canonical JSON of the entry)`.
//! Appending locks the org's chain head, so each chain has one writer at a time; events whose id
//! is already recorded are skipped (redelivery), so a replay never forks the chain. The control
//! plane appends in the same transaction as the change it records.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use gatehouse_core::canonical::to_canonical_string;
use gatehouse_core::ids::{EventId, OrgId, UserId};
use sqlx::PgConnection;

use crate::error::DbResult;
use crate::tenant::{GlobalTx, TenantTx};

/// The hash before the first entry of every chain.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSource {
    Control,
    Data,
}

impl AuditSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSource::Control => "control",
            AuditSource::Data => "data",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ServiceToken,
    OauthClient,
    System,
    Anonymous,
    /// A platform operator (operator API or `gatehouse admin`).
    Operator,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::ServiceToken => "service_token",
            ActorType::OauthClient => "oauth_client",
            ActorType::System => "system",
            ActorType::Anonymous => "anonymous",
            ActorType::Operator => "operator",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Denied,
    Error,
    RateLimited,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Error => "error",
            AuditOutcome::RateLimited => "rate_limited",
        }
    }
}

/// Who did something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorType,
    pub id: Option<String>,
    pub label: Option<String>,
}

impl Actor {
    /// A platform operator, named by `label` (what the operator said they are, e.g. an email).
    pub fn operator(label: &str) -> Self {
        Self {
            kind: ActorType::Operator,
            id: None,
            label: Some(label.to_owned()),
        }
    }

    pub fn system(label: &str) -> Self {
        Self {
            kind: ActorType::System,
            id: None,
            label: Some(label.to_owned()),
        }
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    pub id: EventId,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub source: AuditSource,
    pub actor: Actor,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: AuditOutcome,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub details: Value,
}

impl NewAuditEvent {
    /// A control-plane event by `actor`, now.
    pub fn control(actor: Actor, action: impl Into<String>) -> Self {
        Self {
            id: EventId::new(),
            occurred_at: OffsetDateTime::now_utc(),
            source: AuditSource::Control,
            actor,
            action: action.into(),
            target_type: None,
            target_id: None,
            outcome: AuditOutcome::Success,
            ip: None,
            user_agent: None,
            details: json!({}),
        }
    }

    pub fn target(mut self, kind: &str, id: impl ToString) -> Self {
        self.target_type = Some(kind.to_owned());
        self.target_id = Some(id.to_string());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn client(mut self, ip: Option<IpAddr>, user_agent: Option<String>) -> Self {
        self.ip = ip;
        self.user_agent = user_agent;
        self
    }
}

/// A recorded event, as read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: NewAuditEvent,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub prev_hash: Vec<u8>,
    pub entry_hash: Vec<u8>,
}

/// PostgreSQL keeps microseconds; hash exactly what is stored.
pub(crate) fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1000)
        .expect("valid nanosecond")
}

/// The canonical content of an entry (everything but its position and hashes).
fn entry_content(org_id: &str, e: &NewAuditEvent) -> String {
    to_canonical_string(&json!({
        "org_id": org_id,
        "id": e.id.to_string(),
        "occurred_at": to_micros(e.occurred_at).format(&Rfc3339).expect("formats"),
        "source": e.source.as_str(),
        "actor_type": e.actor.kind.as_str(),
        "actor_id": e.actor.id,
        "actor_label": e.actor.label,
        "action": e.action,
        "target_type": e.target_type,
        "target_id": e.target_id,
        "outcome": e.outcome.as_str(),
        "ip": e.ip.map(|ip| ip.to_string()),
        "user_agent": e.user_agent,
        "details": e.details,
    }))
}

/// The hash of entry `seq` following `prev_hash`.
pub fn entry_hash(prev_hash: &[u8], seq: i64, org_id: &str, event: &NewAuditEvent) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(seq.to_be_bytes());
    hasher.update(entry_content(org_id, event).as_bytes());
    hasher.finalize().to_vec()
}

/// Appends `events` to the org's chain, skipping ids already recorded. Returns how many were
/// inserted. Holds the chain head's row lock until the transaction ends.
pub async fn append(tx: &mut TenantTx, events: &[NewAuditEvent]) -> DbResult<usize> {
    let org_id = tx.org_id();
    append_in(tx.conn(), org_id, events).await
}

/// Appends `events` to the chain of every org `user` belongs to, in the caller's global
/// transaction: for account-level changes (login, password change, account deletion) that each
/// of the user's orgs should see. The tenant context is set per org from the user's own
/// memberships and cleared again before returning. Returns the number of orgs written to.
pub async fn append_to_user_orgs(
    tx: &mut GlobalTx,
    user: UserId,
    events: &[NewAuditEvent],
) -> DbResult<usize> {
    let orgs: Vec<OrgId> = crate::repos::memberships::orgs_of_user_in(tx.conn(), user)
        .await?
        .into_iter()
        .map(|(org, _)| org)
        .collect();
    append_to_orgs(tx, &orgs, events).await?;
    Ok(orgs.len())
}

/// Appends `events` to the chain of each of `orgs`, in the caller's global transaction (the
/// tenant context is set per org and cleared again before returning). The caller has
/// established why each org must see the events.
pub async fn append_to_orgs(tx: &mut GlobalTx, orgs: &[OrgId], events: &[NewAuditEvent]) -> DbResult<()> {
    let conn = tx.conn();
    for org in orgs {
        sqlx::query("SELECT set_config('app.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *conn)
            .await?;
        append_in(&mut *conn, *org, events).await?;
    }
    sqlx::query("SELECT set_config('app.org_id', '', true)")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Appends to `org_id`'s chain on a connection whose transaction is confined to that org.
async fn append_in(conn: &mut PgConnection, org_id: OrgId, events: &[NewAuditEvent]) -> DbResult<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let org = org_id.to_string();
    sqlx::query(
        "INSERT INTO audit_chain_heads (org_id, seq, entry_hash) VALUES ($1, 0, $2)
         ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(org_id)
    .bind(&GENESIS_HASH[..])
    .execute(&mut *conn)
    .await?;
    let (mut seq, mut prev): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, entry_hash FROM audit_chain_heads WHERE org_id = $1 FOR UPDATE")
            .bind(org_id)
            .fetch_one(&mut *conn)
            .await?;

    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id.into_uuid()).collect();
    let existing: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM audit_events WHERE org_id = $1 AND id = ANY($2)")
            .bind(org_id)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut seen: std::collections::HashSet<uuid::Uuid> = existing.into_iter().collect();

    let mut cols = AuditColumns::default();
    for event in events {
        // Skip redeliveries and duplicates within the batch.
        if !seen.insert(event.id.into_uuid()) {
            continue;
        }
        seq += 1;
        let hash = entry_hash(&prev, seq, &org, event);
        cols.push(seq, event, &prev, &hash);
        prev = hash;
    }
    let inserted = cols.seq.len();
    if inserted == 0 {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO audit_events (org_id, seq, id, occurred_at, source, actor_type, actor_id, actor_label,
                                   action, target_type, target_id, outcome, ip, user_agent, details,
                                   prev_hash, entry_hash)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                                  $13::inet[], $14::text[], $15::jsonb[], $16::bytea[], $17::bytea[])",
    )
    .bind(org_id)
    .bind(&cols.seq)
    .bind(&cols.id)
    .bind(&cols.occurred_at)
    .bind(&cols.source)
    .bind(&cols.actor_type)
    .bind(&cols.actor_id)
    .bind(&cols.actor_label)
    .bind(&cols.action)
    .bind(&cols.target_type)
    .bind(&cols.target_id)
    .bind(&cols.outcome)
    .bind(&cols.ip)
    .bind(&cols.user_agent)
    .bind(&cols.details)
    .bind(&cols.prev_hash)
    .bind(&cols.entry_hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE audit_chain_heads SET seq = $2, entry_hash = $3, updated_at = now() WHERE org_id = $1",
    )
    .bind(org_id)
    .bind(seq)
    .bind(&prev)
    .execute(&mut *conn)
    .await?;
    Ok(inserted)
}

#[derive(Default)]
struct AuditColumns {
    seq: Vec<i64>,
    id: Vec<uuid::Uuid>,
    occurred_at: Vec<OffsetDateTime>,
    source: Vec<&'static str>,
    actor_type: Vec<&'static str>,
    actor_id: Vec<Option<String>>,
    actor_label: Vec<Option<String>>,
    action: Vec<String>,
    target_type: Vec<Option<String>>,
    target_id: Vec<Option<String>>,
    outcome: Vec<&'static str>,
    ip: Vec<Option<sqlx::types::ipnet::IpNet>>,
    user_agent: Vec<Option<String>>,
    details: Vec<Value>,
    prev_hash: Vec<Vec<u8>>,
    entry_hash: Vec<Vec<u8>>,
}

impl AuditColumns {
    fn push(&mut self, seq: i64, e: &NewAuditEvent, prev: &[u8], hash: &[u8]) {
        self.seq.push(seq);
        self.id.push(e.id.into_uuid());
        self.occurred_at.push(to_micros(e.occurred_at));
        self.source.push(e.source.as_str());
        self.actor_type.push(e.actor.kind.as_str());
        self.actor_id.push(e.actor.id.clone());
        self.actor_label.push(e.actor.label.clone());
        self.action.push(e.action.clone());
        self.target_type.push(e.target_type.clone());
        self.target_id.push(e.target_id.clone());
        self.outcome.push(e.outcome.as_str());
        self.ip.push(e.ip.map(sqlx::types::ipnet::IpNet::from));
        self.user_agent.push(e.user_agent.clone());
        self.details.push(e.details.clone());
        self.prev_hash.push(prev.to_vec());
        self.entry_hash.push(hash.to_vec());
    }
}

/// Filters for reading the trail.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub after_seq: Option<i64>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub action_prefix: Option<String>,
    pub actor_id: Option<String>,
    pub outcome: Option<AuditOutcome>,
    pub limit: i64,
}

/// Reads the trail in chain order.
pub async fn list(tx: &mut TenantTx, q: &AuditQuery) -> DbResult<Vec<AuditRecord>> {
    let org_id = tx.org_id();
    let rows = sqlx::query(
        "SELECT seq, id, occurred_at, recorded_at, source, actor_type, actor_id, actor_label, action,
                target_type, target_id, outcome, host(ip) AS ip, user_agent, details, prev_hash, entry_hash
           FROM audit_events
          WHERE org_id = $1
            AND ($2::bigint IS NULL OR seq > $2)
            AND ($3::timestamptz IS NULL OR occurred_at >= $3)
            AND ($4::timestamptz IS NULL OR occurred_at < $4)
            AND ($5::text IS NULL OR starts_with(action, $5))
            AND ($6::text IS NULL OR actor_id = $6)
            AND ($7::text IS NULL OR outcome = $7)
          ORDER BY seq
          LIMIT $8",
    )
    .bind(org_id)
    .bind(q.after_seq)
    .bind(q.from)
    .bind(q.to)
    .bind(&q.action_prefix)
    .bind(&q.actor_id)
    .bind(q.outcome.map(|o| o.as_str()))
    .bind(q.limit.clamp(1, 10_000))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(record_from_row).collect()
}

pub(crate) fn record_from_row(row: sqlx::postgres::PgRow) -> DbResult<AuditRecord> {
    let parse_enum = |s: String| -> Value { Value::String(s) };
    let source: AuditSource = serde_json::from_value(parse_enum(row.try_get("source")?)).map_err(decode)?;
    let kind: ActorType = serde_json::from_value(parse_enum(row.try_get("actor_type")?)).map_err(decode)?;
    let outcome: AuditOutcome =
        serde_json::from_value(parse_enum(row.try_get("outcome")?)).map_err(decode)?;
    let ip: Option<String> = row.try_get("ip")?;
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: row.try_get("prev_hash")?,
        entry_hash: row.try_get("entry_hash")?,
        event: NewAuditEvent {
            id: EventId::from_uuid(row.try_get("id")?),
            occurred_at: row.try_get("occurred_at")?,
            source,
            actor: Actor {
                kind,
                id: row.try_get("actor_id")?,
                label: row.try_get("actor_label")?,
            },
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            outcome,
            ip: ip.and_then(|s| s.parse().ok()),
            user_agent: row.try_get("user_agent")?,
            details: row.try_get("details")?,
        },
    })
}

fn decode(e: serde_json::Error) -> crate::error::DbError {
    crate::error::DbError::Other(sqlx::Error::Decode(Box::new(e)))
}

/// The result of verifying a chain, or a range of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainVerification {
    pub entries: i64,
    /// The first sequence number whose content, link or position does not verify.
    pub first_broken_seq: Option<i64>,
    /// The chain head disagrees with the last entry (entries deleted from the tail). Checked
    /// only when the range reaches the head.
    pub head_mismatch: bool,
    /// Entries up to this sequence number were removed by the plan's retention (0: none); the
    /// kept chain is verified from the hash the last removed entry had.
    pub pruned_through_seq: i64,
    /// The range verified: the first sequence number checked (after what retention removed)
    /// and the last one (at most the chain head's). `to_seq < from_seq`: nothing to check.
    pub from_seq: i64,
    pub to_seq: i64,
}

/// The part of a chain to verify, by sequence number, both ends inclusive; `None`: from the
/// first kept entry, to the chain head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqRange {
    pub from_seq: Option<i64>,
    pub to_seq: Option<i64>,
}

/// The head of the org's chain: (last seq, its hash, pruned through seq, the hash it had).
type ChainHead = (i64, Vec<u8>, i64, Option<Vec<u8>>);

/// Recomputes the org's whole chain: from genesis, or from where retention pruning left it.
pub async fn verify_chain(tx: &mut TenantTx) -> DbResult<ChainVerification> {
    verify_chain_range(tx, SeqRange::default()).await
}

/// Recomputes part of the org's chain. The range starts from the stored hash of the entry
/// before it (the genesis hash, or the hash retention kept, when it starts at the first kept
/// entry; entries retention removed are skipped): an entry whose link to that hash, content or
/// position does not verify is the first broken one, and so is the first entry missing inside
/// the range. A range that reaches the head also checks the head against its last entry.
pub async fn verify_chain_range(tx: &mut TenantTx, range: SeqRange) -> DbResult<ChainVerification> {
    let org = tx.org_id().to_string();
    let head = chain_head(tx).await?;
    let (pruned_through_seq, pruned_anchor) = match &head {
        Some((_, _, through, Some(hash))) if *through > 0 => (*through, hash.clone()),
        _ => (0, GENESIS_HASH.to_vec()),
    };
    let from_seq = range.from_seq.unwrap_or(1).max(pruned_through_seq + 1);
    // The whole chain is read to its end, including what is appended while it is read (see
    // below); a range with either bound ends at the head as it was when verification started.
    let start_head = head.as_ref().map(|h| (h.0, h.1.clone()));
    let head_seq = start_head.as_ref().map_or(0, |h| h.0);
    let bounded_to = (range.from_seq.is_some() || range.to_seq.is_some())
        .then(|| range.to_seq.unwrap_or(head_seq).min(head_seq));
    // The hash the range's first entry must link to. `None`: the entry before it is missing,
    // so the first entry's link cannot verify.
    let anchor = if from_seq == pruned_through_seq + 1 {
        Some(pruned_anchor)
    } else {
        stored_hash(tx, from_seq - 1).await?
    };
    let mut prev = anchor;
    let mut expected_seq = from_seq;
    let mut entries = 0i64;
    let mut first_broken = None;
    let mut after = from_seq - 1;
    let mut last_head = start_head.as_ref().map(|h| h.0);
    let end_head = 'read: loop {
        if bounded_to.is_some_and(|to| after >= to) {
            break 'read start_head;
        }
        let page = list(
            tx,
            &AuditQuery {
                after_seq: Some(after),
                // A range reads no further than its end.
                limit: bounded_to.map_or(5000, |to| (to - after).clamp(1, 5000)),
                ..Default::default()
            },
        )
        .await?;
        if page.is_empty() {
            if bounded_to.is_some() {
                break 'read start_head;
            }
            // The head is compared once every entry has been read. Entries appended meanwhile
            // (each moves the head) are read and verified too, rather than taken for a head that
            // disagrees with the last entry. A head that stays put while naming another seq or
            // hash than the last entry (a truncated tail, a rewritten head) is a mismatch.
            let now = chain_head(tx).await?;
            let moved = now.as_ref().map(|h| h.0) != last_head;
            match now {
                Some((seq, ..)) if seq > after && moved => {
                    last_head = Some(seq);
                    continue;
                }
                _ => break 'read now.map(|h| (h.0, h.1)),
            }
        }
        for record in &page {
            if bounded_to.is_some_and(|to| record.seq > to) {
                break 'read start_head;
            }
            entries += 1;
            let linked = prev.as_deref() == Some(record.prev_hash.as_slice());
            let recomputed = entry_hash(&record.prev_hash, record.seq, &org, &record.event);
            if first_broken.is_none()
                && (record.seq != expected_seq || !linked || record.entry_hash != recomputed)
            {
                first_broken = Some(record.seq);
            }
            prev = Some(record.entry_hash.clone());
            expected_seq = record.seq + 1;
            after = record.seq;
        }
    };
    let to_seq = bounded_to.unwrap_or(expected_seq - 1);
    let reaches_head = to_seq >= head_seq || bounded_to.is_none();
    let head_mismatch = if from_seq > to_seq && bounded_to.is_some() {
        false
    } else if reaches_head {
        match end_head {
            Some((seq, hash)) => seq != expected_seq - 1 || Some(hash) != prev,
            None => entries != 0,
        }
    } else {
        // Entries missing at the end of a range that stops before the head: the first of them
        // is the first broken link (at the head, the head check reports a missing tail).
        if first_broken.is_none() && expected_seq <= to_seq {
            first_broken = Some(expected_seq);
        }
        false
    };
    Ok(ChainVerification {
        entries,
        first_broken_seq: first_broken,
        head_mismatch,
        pruned_through_seq,
        from_seq,
        to_seq,
    })
}

/// The stored hash of one entry, if it exists.
async fn stored_hash(tx: &mut TenantTx, seq: i64) -> DbResult<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT entry_hash FROM audit_events WHERE org_id = $1 AND seq = $2")
            .bind(tx.org_id())
            .bind(seq)
            .fetch_optional(tx.conn())
            .await?,
    )
}

async fn chain_head(tx: &mut TenantTx) -> DbResult<Option<ChainHead>> {
    Ok(sqlx::query_as(
        "SELECT seq, entry_hash, pruned_through_seq, pruned_through_hash FROM audit_chain_heads WHERE org_id = $1",
    )
    .bind(tx.org_id())
    .fetch_optional(tx.conn())
    .await?)
}

/// What one retention pass removed from an org (see [`apply_retention`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Audit entries removed (the oldest, as a prefix of the chain).
    pub audit_entries: i64,
    /// The kept chain now starts after this sequence number.
    pub through_seq: i64,
    /// Raw usage events and minute rollups removed (of periods already invoiced).
    pub usage_rows: i64,
}

/// Removes what the org's plan no longer keeps (`retention_days`): at most `max_entries` audit
/// entries, and usage rows of invoiced periods older than the cutoff. When entries went, an
/// `audit.pruned` entry in the org's own trail says which. Plans without retention keep everything.
pub async fn apply_retention(tx: &mut TenantTx, max_entries: i32) -> DbResult<Pruned> {
    let (audit_entries, through_seq, usage_rows): (i64, i64, i64) =
        sqlx::query_as("SELECT * FROM gatehouse_apply_retention($1)")
            .bind(max_entries)
            .fetch_one(tx.conn())
            .await?;
    let pruned = Pruned {
        audit_entries,
        through_seq,
        usage_rows,
    };
    if audit_entries > 0 {
        let event = NewAuditEvent::control(Actor::system("retention"), "audit.pruned").details(json!({
            "entries": audit_entries,
            "through_seq": through_seq,
            "reason": "the plan's retention_days",
        }));
        append(tx, &[event]).await?;
    }
    Ok(pruned)
}
