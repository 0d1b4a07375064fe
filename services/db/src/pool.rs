//! The connection pool of the services' role, and the checks that this role is safe to use.

use std::str::FromStr;
use std::time::Duration;

use gatehouse_core::config::DatabaseConfig;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::error::{DbError, DbResult};

/// The platform database as the services see it: a pool of connections as the services' role.
/// The pool is private to this crate; the rest of the code reaches tenant rows only through a
/// [`crate::TenantTx`], which sets the tenant for the transaction.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: PgPool,
}

impl Db {
    /// Connects lazily: the pool opens connections on first use, so a service can start (and
    /// report not-ready) while PostgreSQL is down.
    pub fn connect_lazy(cfg: &DatabaseConfig) -> DbResult<Self> {
        let options = PgConnectOptions::from_str(cfg.url.expose_secret())
            .map_err(DbError::Other)?
            .application_name("gatehouse")
            .options([("statement_timeout", cfg.statement_timeout_ms.to_string())])
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .min_connections(cfg.min_connections)
            .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
            // No reset hook is needed: the tenant is set with set_config(..., true), which ends
            // with its transaction, and sqlx rolls back a transaction dropped mid-way before the
            // connection is reused (the isolation tests probe for stale tenants at checkout).
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Connects and verifies the role (for services at start).
    pub async fn connect(cfg: &DatabaseConfig) -> DbResult<Self> {
        let db = Self::connect_lazy(cfg)?;
        db.ping().await?;
        Ok(db)
    }

    /// Round trip to the database, bounded by the pool's acquire timeout.
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Refuses to run as a role that could defeat row-level security, directly or through a role
    /// it belongs to (membership counts whether or not it is inherited: `SET ROLE` reaches it):
    /// - a superuser or a role with BYPASSRLS;
    /// - the predefined roles that read or write past the grants (`pg_read_all_data`,
    ///   `pg_write_all_data`) or reach the server's files and programs;
    /// - an owner of the database (`pg_database_owner`), of the `public` schema, or of a table,
    ///   view, sequence or function in it (owners bypass RLS unless it is forced, and can disable
    ///   it or replace what they own).
    pub async fn verify_service_role(&self) -> Result<(), UnsafeRole> {
        type Inspection = (String, bool, bool, Vec<String>, Vec<String>, bool, Vec<String>);
        let (name, superuser, bypass, powerful, predefined, owns_schema, owned): Inspection = sqlx::query_as(
            "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
                        ARRAY(SELECT o.rolname::text FROM pg_roles o
                               WHERE o.oid <> r.oid AND (o.rolsuper OR o.rolbypassrls)
                                 AND pg_has_role(r.oid, o.oid, 'MEMBER') ORDER BY 1),
                        ARRAY(SELECT p.rolname::text FROM pg_roles p
                               WHERE p.rolname IN ('pg_read_all_data', 'pg_write_all_data',
                                                   'pg_read_server_files', 'pg_write_server_files',
                                                   'pg_execute_server_program', 'pg_database_owner')
                                 AND pg_has_role(r.oid, p.oid, 'MEMBER') ORDER BY 1),
                        COALESCE((SELECT pg_has_role(r.oid, n.nspowner, 'MEMBER')
                                    FROM pg_namespace n WHERE n.nspname = 'public'), false),
                        ARRAY(SELECT owned.name FROM (
                                SELECT c.relname::text AS name FROM pg_class c
                                 WHERE c.relnamespace = 'public'::regnamespace
                                   AND pg_has_role(r.oid, c.relowner, 'MEMBER')
                                UNION ALL
                                SELECT f.proname::text FROM pg_proc f
                                 WHERE f.pronamespace = 'public'::regnamespace
                                   AND pg_has_role(r.oid, f.proowner, 'MEMBER')) owned
                              ORDER BY 1)
                   FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| UnsafeRole(format!("could not inspect the database role: {e}")))?;
        let fix = "services must use a role without these powers (`gatehouse migrate` creates \
                   it from database.url)";
        if superuser {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, a superuser; {fix}"
            )));
        }
        if bypass {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, which has BYPASSRLS; {fix}"
            )));
        }
        if !powerful.is_empty() {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, a member of {} (superuser or BYPASSRLS); {fix}",
                powerful.join(", ")
            )));
        }
        if !predefined.is_empty() {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, a member of {}, which reach(es) data past its \
                 grants or the database's ownership; {fix}",
                predefined.join(", ")
            )));
        }
        if owns_schema {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, which owns the public schema (directly or \
                 through a role it belongs to); the schema must be owned by the migration role \
                 (database.admin_url)"
            )));
        }
        if !owned.is_empty() {
            let shown: Vec<&str> = owned.iter().take(5).map(String::as_str).collect();
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, which owns {} object(s) of the schema ({}{}), \
                 directly or through a role it belongs to; the schema must be owned by the \
                 migration role (database.admin_url)",
                owned.len(),
                shown.join(", "),
                if owned.len() > shown.len() { ", ..." } else { "" }
            )));
        }
        Ok(())
    }

    /// Closes every connection (shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Pool statistics for metrics.
    pub fn pool_size(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnsafeRole(pub String);
