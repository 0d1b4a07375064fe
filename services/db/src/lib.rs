//! Gatehouse's data layer: the connection pool of the services' role, migrations, tenant-scoped
//! transactions and the repositories. SQL lives here.
//!
//! Tenant isolation has two layers. In the types: tenant repositories take a [`TenantTx`], which
//! exists only for an [`OrgScope`]. In the database: every tenant table has row-level security
//! enabled and forced, keyed on the transaction's `app.org_id`, and the services' role can neither
//! bypass it nor own the tables.

pub mod error;
pub mod localpg;
pub mod migrate;
pub mod pool;
pub mod repos;
pub mod tenant;

pub use error::{DbError, DbResult};
pub use pool::{Db, UnsafeRole};
pub use repos::audit::{Actor, ActorType, AuditOutcome, AuditSource, NewAuditEvent};
pub use tenant::{GlobalTx, OrgScope, TenantTx, UserTx};
