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

    /// Refuses to run as a role that could defeat row-level security: a superuser, a role with
    /// BYPASSRLS, or a role that owns tables (owners bypass RLS unless it is forced, and could
    /// disable it).
    pub async fn verify_service_role(&self) -> Result<(), UnsafeRole> {
        let row: (String, bool, bool, i64) = sqlx::query_as(
            "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
                    (SELECT count(*) FROM pg_class c
                      WHERE c.relowner = r.oid AND c.relnamespace = 'public'::regnamespace)
               FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| UnsafeRole(format!("could not inspect the database role: {e}")))?;
        let (name, superuser, bypass, owned) = row;
        if superuser {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, a superuser; services must use a role without \
                 SUPERUSER or BYPASSRLS (`gatehouse migrate` creates it from database.url)"
            )));
        }
        if bypass {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, which has BYPASSRLS"
            )));
        }
        if owned > 0 {
            return Err(UnsafeRole(format!(
                "database.url connects as {name:?}, which owns {owned} relation(s); the schema must \
                 be owned by the migration role (database.admin_url)"
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
