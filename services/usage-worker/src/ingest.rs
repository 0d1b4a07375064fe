//! Writing a batch of bus messages: per org, one transaction that appends the audit events,
//! records the usage events with their rollups, and withholds drifted tools. Every write is
//! idempotent on the message id, so a redelivered batch changes nothing.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use gatehouse_core::ids::{OrgId, ServiceTokenId};
use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::repos::usage::NewUsageEvent;
use gatehouse_db::repos::{audit, drift, orgs, service_tokens, usage};
use gatehouse_db::{
    Actor, ActorType, AuditOutcome, AuditSource, Db, DbError, NewAuditEvent, OrgScope, TenantTx,
};
use gatehouse_events::{BusMessage, CallEvent, CallOutcome, SubjectKind, ToolDrift};

/// What one org's part of a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgWrite {
    pub audit_inserted: usize,
    pub usage_inserted: u64,
    /// Set when a drifted tool was withheld: the org's new configuration version, to publish.
    pub config_change: Option<ConfigChange>,
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchWrite {
    pub orgs: BTreeMap<OrgId, OrgWrite>,
    /// Orgs whose messages were dropped because the org no longer exists.
    pub dropped_orgs: Vec<OrgId>,
}

impl BatchWrite {
    pub fn usage_inserted(&self) -> u64 {
        self.orgs.values().map(|w| w.usage_inserted).sum()
    }

    pub fn audit_inserted(&self) -> usize {
        self.orgs.values().map(|w| w.audit_inserted).sum()
    }
}

/// Writes `messages`, one transaction per org. Fails (for a retry of the whole batch, which is
/// harmless) if any org's transaction fails, except for orgs that no longer exist, whose
/// messages are dropped with an error log.
pub async fn write_batch(db: &Db, messages: &[BusMessage]) -> Result<BatchWrite, DbError> {
    let mut by_org: BTreeMap<OrgId, Vec<&BusMessage>> = BTreeMap::new();
    for m in messages {
        by_org.entry(m.org_id()).or_default().push(m);
    }
    let mut result = BatchWrite::default();
    for (org, messages) in by_org {
        match write_org(db, org, &messages).await {
            Ok(write) => {
                result.orgs.insert(org, write);
            }
            Err(DbError::InvalidReference { constraint }) if !org_exists(db, org).await? => {
                metrics::counter!("gatehouse_worker_events_dropped_total").increment(messages.len() as u64);
                tracing::error!(
                    org_id = %org,
                    events = messages.len(),
                    constraint = %constraint,
                    "events of an org that no longer exists; dropped"
                );
                result.dropped_orgs.push(org);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(result)
}

async fn org_exists(db: &Db, org: OrgId) -> Result<bool, DbError> {
    let mut tx = TenantTx::begin(db, &OrgScope::authorized(org)).await?;
    let found = match orgs::get(&mut tx).await {
        Ok(_) => true,
        Err(DbError::NotFound) => false,
        Err(e) => return Err(e),
    };
    tx.rollback().await?;
    Ok(found)
}

async fn write_org(db: &Db, org: OrgId, messages: &[&BusMessage]) -> Result<OrgWrite, DbError> {
    // The events come from an authenticated dataplane that resolved the org itself.
    let mut tx = TenantTx::begin(db, &OrgScope::authorized(org)).await?;
    let mut audit_events = Vec::with_capacity(messages.len());
    let mut usage_events = Vec::with_capacity(messages.len());
    let mut withheld = 0usize;
    // The latest use of each service token in this batch (its `last_used_at`).
    let mut token_uses: std::collections::HashMap<ServiceTokenId, time::OffsetDateTime> = Default::default();
    for m in messages {
        match m {
            BusMessage::Call(call) => {
                audit_events.push(audit_of_call(call));
                usage_events.push(usage_of_call(call));
                if call.subject_kind == SubjectKind::ServiceToken
                    && let Some(id) = call
                        .subject
                        .strip_prefix("service_token:")
                        .and_then(|id| id.parse::<ServiceTokenId>().ok())
                {
                    let latest = token_uses.entry(id).or_insert(call.occurred_at);
                    *latest = (*latest).max(call.occurred_at);
                }
            }
            BusMessage::ToolDrift(d) => {
                if let Some(event) = withhold_drifted(&mut tx, d).await? {
                    audit_events.push(event);
                    withheld += 1;
                }
            }
        }
    }
    let audit_inserted = audit::append(&mut tx, &audit_events).await?;
    let usage_inserted = usage::record(&mut tx, &usage_events).await?;
    for (token, at) in token_uses {
        service_tokens::touch_last_used(&mut tx, token, at).await?;
    }
    let config_change = if withheld > 0 {
        Some(ConfigChange {
            org_id: org,
            version: orgs::bump_config_version(&mut tx).await?,
        })
    } else {
        None
    };
    tx.commit().await?;
    Ok(OrgWrite {
        audit_inserted,
        usage_inserted,
        config_change,
    })
}

/// Withholds the drifted tool if its approved pin is the one the dataplane compared against;
/// returns the audit event to record when it did.
async fn withhold_drifted(tx: &mut TenantTx, d: &ToolDrift) -> Result<Option<NewAuditEvent>, DbError> {
    let (Ok(approved), Ok(observed)) = (hex::decode(&d.approved_hash), hex::decode(&d.observed_hash)) else {
        tracing::error!(id = %d.id, "tool drift report with malformed hashes; ignored");
        return Ok(None);
    };
    let definition = sanitize_value(d.observed_definition.clone());
    let Some(tool_id) = drift::withhold_if_pinned(
        tx,
        d.server_id,
        &sanitize(&d.tool_name),
        &approved,
        &observed,
        &definition,
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(NewAuditEvent {
        id: d.id,
        occurred_at: d.occurred_at,
        source: AuditSource::Data,
        actor: Actor::system("dataplane"),
        action: "tool.drift_detected".to_owned(),
        target_type: Some("tool".to_owned()),
        target_id: Some(tool_id.to_string()),
        outcome: AuditOutcome::Success,
        ip: None,
        user_agent: None,
        details: json!({
            "server_id": d.server_id.to_string(),
            "tool": sanitize(&d.tool_name),
            "approved_hash": d.approved_hash,
            "observed_hash": d.observed_hash,
            "observed_definition": definition,
            "status": "changed",
        }),
    }))
}

/// The audit action of a call: `tool.*` for tool calls, `mcp.*` for every other request.
pub fn action_of(call: &CallEvent) -> String {
    let tool_call = call.method == "tools/call";
    let verb = match (call.outcome, tool_call) {
        (CallOutcome::Success | CallOutcome::Error, true) => "call",
        (CallOutcome::Success | CallOutcome::Error, false) => "request",
        (CallOutcome::Denied, _) => "denied",
        (CallOutcome::RateLimited, _) => "rate_limited",
        (CallOutcome::OverQuota, _) => "over_quota",
    };
    format!("{}.{verb}", if tool_call { "tool" } else { "mcp" })
}

/// Billable calls of an event ([`CallEvent::billable_units`]): a call of a billable method
/// (`tools/call`) that reached its upstream (answered or failed there) counts one; requests
/// refused by the gateway and protocol traffic (`tools/list`, ...) are free.
pub fn units_of(call: &CallEvent) -> i64 {
    call.billable_units()
}

fn outcome_str(outcome: CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Success => "success",
        CallOutcome::Error => "error",
        CallOutcome::Denied => "denied",
        CallOutcome::RateLimited => "rate_limited",
        CallOutcome::OverQuota => "over_quota",
    }
}

pub fn audit_of_call(call: &CallEvent) -> NewAuditEvent {
    let kind = match call.subject_kind {
        SubjectKind::User => ActorType::User,
        SubjectKind::ServiceToken => ActorType::ServiceToken,
        SubjectKind::OauthClient => ActorType::OauthClient,
        SubjectKind::Anonymous => ActorType::Anonymous,
    };
    let subject = sanitize(&call.subject);
    let (target_type, target_id) = match (&call.tool, call.endpoint_id) {
        (Some(tool), _) => (Some("tool".to_owned()), Some(sanitize(tool))),
        (None, Some(endpoint)) => (Some("endpoint".to_owned()), Some(endpoint.to_string())),
        (None, None) => (None, None),
    };
    let mut details = Map::new();
    details.insert("method".into(), json!(sanitize(&call.method)));
    if let Some(tool) = &call.tool {
        details.insert("tool".into(), json!(sanitize(tool)));
    }
    if let Some(endpoint) = call.endpoint_id {
        details.insert("endpoint_id".into(), json!(endpoint.to_string()));
    }
    if let Some(server) = call.server_id {
        details.insert("server_id".into(), json!(server.to_string()));
    }
    details.insert("latency_ms".into(), json!(call.latency_ms));
    details.insert("bytes_in".into(), json!(call.bytes_in));
    details.insert("bytes_out".into(), json!(call.bytes_out));
    if let Some(code) = call.error_code {
        details.insert("error_code".into(), json!(code));
    }
    if let Some(hash) = &call.args_hash {
        details.insert("args_hash".into(), json!(sanitize(hash)));
    }
    if let Some(arguments) = &call.arguments {
        details.insert("arguments".into(), sanitize_value(arguments.clone()));
    }
    if let Some(confirmation) = &call.confirmation {
        details.insert(
            "confirmation".into(),
            json!({
                "method": sanitize(&confirmation.method),
                "by": sanitize(&confirmation.by),
                "nonce": confirmation.nonce.as_deref().map(sanitize),
                "decision": sanitize(&confirmation.decision),
            }),
        );
    }
    if call.outcome == CallOutcome::OverQuota {
        details.insert("reason".into(), json!("over_quota"));
    }
    details.insert("dataplane".into(), json!(sanitize(&call.source)));
    NewAuditEvent {
        id: call.id,
        occurred_at: call.occurred_at,
        source: AuditSource::Data,
        actor: Actor {
            kind,
            id: (!subject.is_empty() && kind != ActorType::Anonymous).then_some(subject),
            label: call.client_id.as_deref().map(sanitize),
        },
        action: action_of(call),
        target_type,
        target_id,
        outcome: match call.outcome {
            CallOutcome::Success => AuditOutcome::Success,
            CallOutcome::Error => AuditOutcome::Error,
            CallOutcome::Denied | CallOutcome::OverQuota => AuditOutcome::Denied,
            CallOutcome::RateLimited => AuditOutcome::RateLimited,
        },
        ip: call.ip,
        user_agent: call.user_agent.as_deref().map(sanitize),
        details: Value::Object(details),
    }
}

pub fn usage_of_call(call: &CallEvent) -> NewUsageEvent {
    NewUsageEvent {
        id: call.id,
        source: sanitize(&call.source),
        occurred_at: call.occurred_at,
        endpoint_id: call.endpoint_id,
        server_id: call.server_id,
        tool: call.tool.as_deref().map(sanitize),
        subject: Some(sanitize(&call.subject)).filter(|s| !s.is_empty()),
        client_id: call.client_id.as_deref().map(sanitize),
        outcome: outcome_str(call.outcome),
        latency_ms: i32::try_from(call.latency_ms).unwrap_or(i32::MAX),
        bytes_in: i64::try_from(call.bytes_in).unwrap_or(i64::MAX),
        bytes_out: i64::try_from(call.bytes_out).unwrap_or(i64::MAX),
        units: units_of(call),
        args_hash: call.args_hash.as_deref().map(sanitize),
    }
}

/// PostgreSQL text and jsonb cannot hold NUL; a message carrying one must not block the
/// pipeline, so NUL becomes U+FFFD.
fn sanitize(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

fn sanitize_value(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(sanitize(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(sanitize_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (sanitize(&k), sanitize_value(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::ids::{EndpointId, EventId};

    fn call(method: &str, outcome: CallOutcome) -> CallEvent {
        CallEvent {
            id: EventId::new(),
            org_id: OrgId::new(),
            occurred_at: time::OffsetDateTime::now_utc(),
            source: "dp-1".into(),
            endpoint_id: Some(EndpointId::new()),
            server_id: None,
            method: method.into(),
            tool: Some("orders__get".into()),
            subject: "user\0x".into(),
            subject_kind: SubjectKind::User,
            client_id: None,
            outcome,
            error_code: None,
            latency_ms: 5,
            bytes_in: 1,
            bytes_out: 2,
            args_hash: Some("ab".into()),
            arguments: None,
            ip: None,
            user_agent: None,
            confirmation: None,
        }
    }

    #[test]
    fn actions_units_and_outcomes() {
        let c = call("tools/call", CallOutcome::Success);
        assert_eq!(action_of(&c), "tool.call");
        assert_eq!(units_of(&c), 1);
        assert_eq!(units_of(&call("tools/call", CallOutcome::Error)), 1);
        let denied = call("tools/call", CallOutcome::Denied);
        assert_eq!((action_of(&denied), units_of(&denied)), ("tool.denied".into(), 0));
        let limited = call("tools/call", CallOutcome::RateLimited);
        assert_eq!(action_of(&limited), "tool.rate_limited");
        assert_eq!(audit_of_call(&limited).outcome, AuditOutcome::RateLimited);
        let over = call("tools/call", CallOutcome::OverQuota);
        assert_eq!(
            (action_of(&over), audit_of_call(&over).outcome),
            ("tool.over_quota".into(), AuditOutcome::Denied)
        );
        let list = call("tools/list", CallOutcome::Success);
        assert_eq!((action_of(&list), units_of(&list)), ("mcp.request".into(), 0));
    }

    #[test]
    fn details_carry_arguments_only_when_present_and_never_nul() {
        let mut c = call("tools/call", CallOutcome::Success);
        let e = audit_of_call(&c);
        assert!(e.details.get("arguments").is_none());
        assert_eq!(e.details["args_hash"], "ab");
        assert_eq!(e.actor.id.as_deref(), Some("user\u{FFFD}x"));
        c.arguments = Some(json!({"q": "a\0b"}));
        let e = audit_of_call(&c);
        assert_eq!(e.details["arguments"]["q"], "a\u{FFFD}b");
    }
}
