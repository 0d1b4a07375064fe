//! Committing a change the way every change must be committed: its audit event in the same
//! transaction, and, when it affects the dataplane, a configuration-version bump in that
//! transaction and a published `ConfigChange` after the commit.

use serde_json::Value;

use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::repos::{audit, orgs};
use gatehouse_db::{NewAuditEvent, TenantTx};

use crate::auth::{ClientInfo, OrgMember};
use crate::error::ApiResult;
use crate::state::AppState;

/// Who acts in an org, for work that is not tied to one request: a member through the API, or
/// Gatehouse itself (scheduled re-syncs).
#[derive(Clone, Debug)]
pub struct Acting {
    pub scope: gatehouse_db::OrgScope,
    pub actor: gatehouse_db::Actor,
    pub client: ClientInfo,
}

impl Acting {
    /// Gatehouse acting on its own in an org (the caller has established which org and why).
    pub fn system(scope: gatehouse_db::OrgScope, label: &str) -> Self {
        Self {
            scope,
            actor: gatehouse_db::Actor::system(label),
            client: ClientInfo::default(),
        }
    }

    pub async fn begin(&self, state: &AppState) -> ApiResult<TenantTx> {
        Ok(TenantTx::begin(&state.db, &self.scope).await?)
    }

    pub fn event(&self, action: &str) -> NewAuditEvent {
        NewAuditEvent::control(self.actor.clone(), action)
            .client(self.client.ip, self.client.user_agent.clone())
    }
}

impl From<&OrgMember> for Acting {
    fn from(member: &OrgMember) -> Self {
        Self {
            scope: member.scope,
            actor: member.actor(),
            client: member.current.client.clone(),
        }
    }
}

/// An audit event for an action by `member`, with the request's IP and user agent.
pub fn event(member: &OrgMember, action: &str) -> NewAuditEvent {
    Acting::from(member).event(action)
}

/// `{before, after}` details for an audit event; either side may be `null`.
pub fn before_after(before: Option<Value>, after: Option<Value>) -> Value {
    serde_json::json!({ "before": before, "after": after })
}

/// Appends `events`, bumps the org's configuration version, commits, then publishes the new
/// version to dataplanes. Returns the version.
pub async fn commit_config_change(
    state: &AppState,
    mut tx: TenantTx,
    events: &[NewAuditEvent],
) -> ApiResult<i64> {
    audit::append(&mut tx, events).await?;
    let version = orgs::bump_config_version(&mut tx).await?;
    let org_id = tx.org_id();
    tx.commit().await?;
    state.notifier.publish(ConfigChange { org_id, version }).await;
    Ok(version)
}

/// Appends `events` and commits (changes that do not affect the dataplane).
pub async fn commit_audited(mut tx: TenantTx, events: &[NewAuditEvent]) -> ApiResult<()> {
    audit::append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}
