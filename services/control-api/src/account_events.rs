//! What account events do to a user's access in every org they belong to. A password change,
//! a password reset and account deletion end the user's OAuth access in each of their orgs
//! (`gatehouse_oauth::grants::revoke_user_access`), in the same transaction as the account
//! change; a password reset also removes the account's SSO links. Membership events (removal,
//! leaving, demotion) call `revoke_user_access` for their one org from the member routes.
//! The configuration changes are published after the commit ([`publish`]).

use gatehouse_core::Config;
use gatehouse_core::ids::UserId;
use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::repos::{audit, memberships, sso};
use gatehouse_db::{Actor, DbResult, GlobalTx, NewAuditEvent, OrgScope};
use gatehouse_oauth::grants;

use crate::state::AppState;

/// Ends `user`'s OAuth access in every org they belong to, inside `tx` (which is handed back, to
/// be committed by the caller with the account change). With `unlink_sso`, the account's SSO
/// links in those orgs are removed too (audited as `sso.identities_removed`). Returns the
/// changes to publish after the commit.
pub async fn end_access_in_every_org(
    mut tx: GlobalTx,
    cfg: &Config,
    user: UserId,
    unlink_sso: bool,
    reason: &str,
    actor: Actor,
) -> DbResult<(GlobalTx, Vec<ConfigChange>)> {
    let mut changes = Vec::new();
    for (org_id, _) in memberships::orgs_of_user(&mut tx, user).await? {
        // The user's own membership is what makes this org theirs to change.
        let mut org = tx.into_tenant(&OrgScope::authorized(org_id)).await?;
        let version = grants::revoke_user_access(&mut org, cfg, user, false, reason, actor.clone()).await?;
        if unlink_sso {
            let removed = sso::unlink_user(&mut org, user).await?;
            if removed > 0 {
                let event = NewAuditEvent::control(actor.clone(), "sso.identities_removed")
                    .target("user", user)
                    .details(serde_json::json!({"reason": reason, "links": removed}));
                audit::append(&mut org, &[event]).await?;
            }
        }
        changes.push(ConfigChange { org_id, version });
        tx = org.into_global().await?;
    }
    Ok((tx, changes))
}

/// Announces committed changes to dataplanes.
pub async fn publish(state: &AppState, changes: Vec<ConfigChange>) {
    for change in changes {
        state.notifier.publish(change).await;
    }
}
