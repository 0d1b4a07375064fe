//! Tenant-scoped transactions: the only way to reach tenant rows.
//!
//! A [`TenantTx`] sets `app.org_id` with `set_config(..., true)` at its start, so every statement
//! in it is confined to one org by row-level security, and the setting ends with the transaction
//! (safe with pooled connections and transaction-mode poolers). It can only be created from an
//! [`OrgScope`], and an `OrgScope` only through [`OrgScope::authorized`], which callers use after
//! they have established that the principal may act in the org. Repository functions for tenant
//! tables take `&mut TenantTx`; there is no way to hand them a bare pool.

use sqlx::{PgConnection, Postgres, Transaction};

use gatehouse_core::ids::{OrgId, UserId};

use crate::error::DbResult;
use crate::pool::Db;

/// Permission to act within one org. Cheap to copy around once obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrgScope {
    org_id: OrgId,
}

impl OrgScope {
    /// Grants access to `org_id`'s rows. Call only where the caller's right to act in this org has
    /// been established: the membership extractor, the token validator, the event consumer (whose
    /// events come from an authenticated dataplane), or code creating the org. Grep for it.
    pub fn authorized(org_id: OrgId) -> Self {
        Self { org_id }
    }

    pub fn org_id(&self) -> OrgId {
        self.org_id
    }
}

/// A transaction confined to one org.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    org_id: OrgId,
}

impl TenantTx {
    pub async fn begin(db: &Db, scope: &OrgScope) -> DbResult<Self> {
        let mut tx = db.pool.begin().await?;
        sqlx::query("SELECT set_config('app.org_id', $1, true)")
            .bind(scope.org_id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(Self {
            tx,
            org_id: scope.org_id,
        })
    }

    /// A read-only transaction that sees one consistent snapshot of the org (REPEATABLE READ),
    /// for building the dataplane's configuration snapshot.
    pub async fn begin_consistent_read(db: &Db, scope: &OrgScope) -> DbResult<Self> {
        let mut tx = db
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        sqlx::query("SELECT set_config('app.org_id', $1, true)")
            .bind(scope.org_id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(Self {
            tx,
            org_id: scope.org_id,
        })
    }

    /// The org every statement in this transaction is confined to.
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    /// The underlying connection, for repository functions. Statements on it remain confined to
    /// the org by row-level security.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> DbResult<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> DbResult<()> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// Ends the confinement to the org and continues the same transaction as a [`GlobalTx`]
    /// (the counterpart of [`GlobalTx::into_tenant`]).
    pub async fn into_global(mut self) -> DbResult<GlobalTx> {
        sqlx::query("SELECT set_config('app.org_id', '', true)")
            .execute(&mut *self.tx)
            .await?;
        Ok(GlobalTx { tx: self.tx })
    }
}

/// A transaction for one signed-in user's own cross-org view (the orgs they belong to). It sets
/// `app.user_id`, which only the read policy on memberships honours; tenant tables otherwise
/// return nothing in it.
pub struct UserTx {
    tx: Transaction<'static, Postgres>,
    user_id: UserId,
}

impl UserTx {
    pub async fn begin(db: &Db, user_id: UserId) -> DbResult<Self> {
        let mut tx = db.pool.begin().await?;
        sqlx::query("SELECT set_config('app.user_id', $1, true)")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(Self { tx, user_id })
    }

    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> DbResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A transaction with no tenant: global tables (users, orgs, sessions, OAuth clients, signing
/// keys, plans) only. Tenant tables return no rows and refuse writes in it.
pub struct GlobalTx {
    tx: Transaction<'static, Postgres>,
}

impl GlobalTx {
    pub async fn begin(db: &Db) -> DbResult<Self> {
        Ok(Self {
            tx: db.pool.begin().await?,
        })
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> DbResult<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Continues this transaction confined to one org, for account-level changes that must
    /// change each of a user's orgs in the same transaction as the account (password changes,
    /// account deletion). [`TenantTx::into_global`] ends the confinement again. The same rule as
    /// [`TenantTx::begin`]: the caller has established the right to act in the org.
    pub async fn into_tenant(mut self, scope: &OrgScope) -> DbResult<TenantTx> {
        sqlx::query("SELECT set_config('app.org_id', $1, true)")
            .bind(scope.org_id.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(TenantTx {
            tx: self.tx,
            org_id: scope.org_id,
        })
    }
}
