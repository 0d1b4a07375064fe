//! Revoking grants. Every revocation, wherever it starts (reuse detection, RFC 7009, an admin,
//! a user withdrawing consent), goes through here: the families are marked revoked, rows for the
//! dataplane are inserted into `token_revocations` until the affected access tokens expire anyway,
//! the event is audited, and the org's configuration version is bumped. The caller commits and
//! then calls [`publish`].

use serde_json::json;
use time::OffsetDateTime;

use gatehouse_core::Config;
use gatehouse_core::ids::{EndpointId, OrgId, RefreshFamilyId, UserId};
use gatehouse_core::snapshot::{ConfigChange, RevocationKind};
use gatehouse_db::repos::oauth_refresh::{self, FamilyFilter};
use gatehouse_db::repos::{audit, oauth_codes, oauth_consents, oauth_revocations, orgs};
use gatehouse_db::{Actor, DbResult, NewAuditEvent, TenantTx};
use gatehouse_events::ChangeNotifier;

use crate::keys::EXPIRY_LEEWAY_SECS;

/// When every access token issued until now has expired.
pub fn access_tokens_expired_by(cfg: &Config) -> OffsetDateTime {
    OffsetDateTime::now_utc()
        + time::Duration::seconds(cfg.oauth.access_token_ttl_secs as i64 + EXPIRY_LEEWAY_SECS)
}

/// What to revoke.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub family: Option<RefreshFamilyId>,
    pub user: Option<UserId>,
    pub client_id: Option<String>,
    pub endpoint: Option<EndpointId>,
    /// Also withdraw the remembered consents of the selection (so the next authorization asks
    /// again). Only meaningful with user and/or client.
    pub consents: bool,
    /// Every grant except those of the org's owners (the org starts enforcing SSO).
    pub except_owners: bool,
}

/// The outcome, to report and to publish.
#[derive(Clone, Debug, Default)]
pub struct Revoked {
    pub families: Vec<RefreshFamilyId>,
    pub consents: u64,
    /// The new configuration version, when anything changed.
    pub version: Option<i64>,
}

/// Revokes the live grants (refresh families) matching `sel`, in the caller's transaction.
pub async fn revoke(
    tx: &mut TenantTx,
    cfg: &Config,
    sel: &Selection,
    reason: &str,
    actor: Actor,
) -> DbResult<Revoked> {
    let families = oauth_refresh::revoke_families(
        tx,
        &FamilyFilter {
            id: sel.family,
            user_id: sel.user,
            client_id: sel.client_id.as_deref(),
            endpoint_id: sel.endpoint,
            except_owners: sel.except_owners,
        },
        reason,
    )
    .await?;
    let consents = if sel.consents {
        oauth_consents::revoke(tx, sel.user, sel.client_id.as_deref(), sel.endpoint).await?
    } else {
        0
    };
    if families.is_empty() && consents == 0 {
        return Ok(Revoked::default());
    }
    let values: Vec<String> = families.iter().map(ToString::to_string).collect();
    oauth_revocations::delete_expired(tx).await?;
    oauth_revocations::insert(tx, RevocationKind::Family, &values, access_tokens_expired_by(cfg)).await?;
    audit::append(
        tx,
        &[
            NewAuditEvent::control(actor, "oauth.grants_revoked").details(json!({
                "reason": reason,
                "families": values,
                "consents_withdrawn": consents,
                "user_id": sel.user.map(|u| u.to_string()),
                "client_id": sel.client_id,
                "endpoint_id": sel.endpoint.map(|e| e.to_string()),
            })),
        ],
    )
    .await?;
    let version = orgs::bump_config_version(tx).await?;
    Ok(Revoked {
        families,
        consents,
        version: Some(version),
    })
}

/// Inserts revocation rows of another kind (`jti`, `client`, `user`) valid until `expires_at`,
/// audits and bumps the configuration version; returns the new version.
pub async fn revoke_tokens(
    tx: &mut TenantTx,
    kind: RevocationKind,
    values: &[String],
    expires_at: OffsetDateTime,
    reason: &str,
    actor: Actor,
) -> DbResult<i64> {
    oauth_revocations::delete_expired(tx).await?;
    oauth_revocations::insert(tx, kind, values, expires_at).await?;
    audit::append(
        tx,
        &[
            NewAuditEvent::control(actor, "oauth.tokens_revoked").details(json!({
                "reason": reason,
                "kind": kind,
                "values": values,
            })),
        ],
    )
    .await?;
    orgs::bump_config_version(tx).await
}

/// Ends what `user` could do through OAuth in the org of `tx`, for account and membership
/// events (removal, leaving, demotion, password change or reset, account deletion): codes not
/// yet redeemed are withdrawn (first, so that a redemption in flight finishes and its grant is
/// seen), every grant is revoked (and with `consents`, the remembered consents withdrawn), and a
/// `user` revocation catches the access tokens issued until now at the dataplane (tokens the
/// user obtains afterwards work). Returns the new configuration version to publish.
pub async fn revoke_user_access(
    tx: &mut TenantTx,
    cfg: &Config,
    user: UserId,
    consents: bool,
    reason: &str,
    actor: Actor,
) -> DbResult<i64> {
    oauth_codes::withdraw_unredeemed(tx, Some(user), false).await?;
    revoke(
        tx,
        cfg,
        &Selection {
            user: Some(user),
            consents,
            ..Default::default()
        },
        reason,
        actor.clone(),
    )
    .await?;
    revoke_tokens(
        tx,
        RevocationKind::User,
        &[user.to_string()],
        access_tokens_expired_by(cfg),
        reason,
        actor,
    )
    .await
}

/// Announces a committed change to dataplanes.
pub async fn publish(notifier: &ChangeNotifier, org_id: OrgId, version: Option<i64>) {
    if let Some(version) = version {
        notifier.publish(ConfigChange { org_id, version }).await;
    }
}
