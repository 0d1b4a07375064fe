//! Members of an org and their roles (tenant table). Owner invariants (an org always keeps an
//! owner) are enforced by callers holding [`lock_owners`] for the rest of their transaction.

use serde::Serialize;
use time::OffsetDateTime;

use sqlx::PgConnection;

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_core::role::Role;

use crate::error::{DbError, DbResult};
use crate::tenant::{GlobalTx, TenantTx};

/// A member as the org sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

type RawMember = (UserId, String, String, String, OffsetDateTime);

fn from_raw((user_id, email, display_name, role, created_at): RawMember) -> DbResult<MemberRow> {
    Ok(MemberRow {
        user_id,
        email,
        display_name,
        role: parse_role(&role)?,
        created_at,
    })
}

fn parse_role(role: &str) -> DbResult<Role> {
    role.parse().map_err(|_| DbError::CheckViolation {
        constraint: "memberships_role_check".into(),
    })
}

/// Every member, owners first, then by email.
pub async fn list(tx: &mut TenantTx) -> DbResult<Vec<MemberRow>> {
    let org_id = tx.org_id();
    let rows: Vec<RawMember> = sqlx::query_as(
        "SELECT m.user_id, u.email, u.display_name, m.role, m.created_at
           FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1
          ORDER BY array_position(ARRAY['owner','admin','developer','viewer'], m.role), u.email",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(from_raw).collect()
}

/// One member, locked for update until the transaction ends.
pub async fn get_for_update(tx: &mut TenantTx, user: UserId) -> DbResult<Option<MemberRow>> {
    let org_id = tx.org_id();
    let row: Option<RawMember> = sqlx::query_as(
        "SELECT m.user_id, u.email, u.display_name, m.role, m.created_at
           FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 AND m.user_id = $2
            FOR UPDATE OF m",
    )
    .bind(org_id)
    .bind(user)
    .fetch_optional(tx.conn())
    .await?;
    row.map(from_raw).transpose()
}

/// Whether a user with this email is already a member.
pub async fn is_member_email(tx: &mut TenantTx, email: &str) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
                         WHERE m.org_id = $1 AND u.email = $2)",
    )
    .bind(org_id)
    .bind(email)
    .fetch_one(tx.conn())
    .await?)
}

/// The org's seats: members, pending (unexpired, unanswered) invitations, and the cap of the
/// org's plan (`None`: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seats {
    pub members: i64,
    pub pending_invitations: i64,
    pub cap: Option<i32>,
}

impl Seats {
    /// Whether one more invitation would promise a seat the plan does not have.
    pub fn full_for_invitation(&self) -> bool {
        self.cap
            .is_some_and(|cap| self.members + self.pending_invitations >= i64::from(cap))
    }
}

/// Counts the org's seats (see [`Seats`]).
pub async fn seats(tx: &mut TenantTx) -> DbResult<Seats> {
    let org_id = tx.org_id();
    let (members, pending_invitations, cap): (i64, i64, Option<i32>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM memberships WHERE org_id = $1),
                (SELECT count(*) FROM invitations
                  WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()),
                (SELECT p.seats FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1)",
    )
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?;
    Ok(Seats {
        members,
        pending_invitations,
        cap,
    })
}

/// Adds a member. A duplicate is a conflict on `memberships_pkey`; when every seat of the org's
/// plan is taken, a check violation on `memberships_seats` (a trigger enforces the cap).
pub async fn add(tx: &mut TenantTx, user: UserId, role: Role) -> DbResult<()> {
    let org_id = tx.org_id();
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(org_id)
        .bind(user)
        .bind(role.as_str())
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Changes a member's role; false when they are not a member.
pub async fn set_role(tx: &mut TenantTx, user: UserId, role: Role) -> DbResult<bool> {
    let org_id = tx.org_id();
    Ok(
        sqlx::query(
            "UPDATE memberships SET role = $3, updated_at = now() WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org_id)
        .bind(user)
        .bind(role.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1,
    )
}

/// Removes a member (and their SSO links to this org); false when they were not a member.
pub async fn remove(tx: &mut TenantTx, user: UserId) -> DbResult<bool> {
    let org_id = tx.org_id();
    sqlx::query("DELETE FROM sso_identities WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user)
        .execute(tx.conn())
        .await?;
    Ok(
        sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user)
            .execute(tx.conn())
            .await?
            .rows_affected()
            == 1,
    )
}

/// Locks the org's owner rows for the rest of the transaction and returns the owners' ids, so
/// that two concurrent changes cannot both remove "the other" owner.
pub async fn lock_owners(tx: &mut TenantTx) -> DbResult<Vec<UserId>> {
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'owner' ORDER BY user_id FOR UPDATE",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?)
}

/// The orgs `user` belongs to and their role in each, read in a global transaction (for
/// account-level changes that reach every org of the user).
pub async fn orgs_of_user(tx: &mut GlobalTx, user: UserId) -> DbResult<Vec<(OrgId, Role)>> {
    orgs_of_user_in(tx.conn(), user).await
}

/// [`orgs_of_user`] on a connection whose transaction has no tenant set: the user's own
/// memberships are readable through `app.user_id`, which is cleared again before returning.
pub(crate) async fn orgs_of_user_in(conn: &mut PgConnection, user: UserId) -> DbResult<Vec<(OrgId, Role)>> {
    sqlx::query("SELECT set_config('app.user_id', $1, true)")
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
    let rows: Vec<(OrgId, String)> =
        sqlx::query_as("SELECT org_id, role FROM memberships WHERE user_id = $1 ORDER BY org_id")
            .bind(user)
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("SELECT set_config('app.user_id', '', true)")
        .execute(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|(org, role)| Ok((org, parse_role(&role)?)))
        .collect()
}
