//! One small pool per backend (replaced when the backend's configuration changes, closed when
//! idle), the check that a backend is fit to run tools, and how database errors become safe
//! tool errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gatehouse_core::ids::BackendId;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPoolOptions, Postgres};
use sqlx::{Executor, PgPool};

use super::{Failure, RuntimeConfig};
use crate::backend::BackendConfig;
use crate::install::SCHEMA_VERSION;
use crate::result::{ErrorKind, ToolError};
use gatehouse_core::breaker::Breaker;

pub(crate) struct BackendPool {
    fingerprint: [u8; 32],
    pool: PgPool,
    /// The backend's circuit breaker (settings: `RuntimeConfig::breaker`).
    pub(crate) breaker: std::sync::Mutex<Breaker>,
    last_used: Mutex<Instant>,
    /// Set once the backend passed [`BackendPool::check_role`].
    checked: tokio::sync::OnceCell<()>,
}

#[derive(Clone)]
pub(crate) struct Pools {
    cfg: RuntimeConfig,
    map: Arc<Mutex<HashMap<BackendId, Arc<BackendPool>>>>,
}

fn close_in_background(pool: PgPool) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { pool.close().await });
    }
}

impl Pools {
    pub(crate) fn new(cfg: RuntimeConfig) -> Self {
        Self {
            cfg,
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BackendId, Arc<BackendPool>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The pool of `backend`, made on first use (connections open lazily).
    pub(crate) fn get(&self, backend: &BackendConfig) -> Result<Arc<BackendPool>, ToolError> {
        let mut map = self.lock();
        if let Some(pool) = map.get(&backend.id)
            && &pool.fingerprint == backend.fingerprint()
        {
            *pool.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(pool.clone());
        }
        let options = backend
            .connect_options()
            .map_err(|e| ToolError::new(ErrorKind::Misconfigured, e.0))?;
        let pool = PgPoolOptions::new()
            .max_connections(self.cfg.pool_size.max(1))
            .min_connections(0)
            .acquire_timeout(self.cfg.acquire_timeout)
            .idle_timeout(Some(
                self.cfg.idle_close_after.min(std::time::Duration::from_secs(60)),
            ))
            .test_before_acquire(false)
            // Nothing a call did survives it: every released connection is reset.
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("DISCARD ALL").await?;
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        let entry = Arc::new(BackendPool {
            fingerprint: *backend.fingerprint(),
            pool,
            breaker: std::sync::Mutex::new(Breaker::default()),
            last_used: Mutex::new(Instant::now()),
            checked: tokio::sync::OnceCell::new(),
        });
        if let Some(old) = map.insert(backend.id, entry.clone()) {
            close_in_background(old.pool.clone());
        }
        metrics::gauge!("gatehouse_hosted_sql_pools").set(map.len() as f64);
        Ok(entry)
    }

    pub(crate) fn close_idle(&self) -> usize {
        let mut map = self.lock();
        let before = map.len();
        let idle_after = self.cfg.idle_close_after;
        map.retain(|_, pool| {
            let idle = pool.last_used.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= idle_after;
            if idle {
                close_in_background(pool.pool.clone());
            }
            !idle
        });
        metrics::gauge!("gatehouse_hosted_sql_pools").set(map.len() as f64);
        before - map.len()
    }
}

impl BackendPool {
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Postgres>, Failure> {
        self.pool.acquire().await.map_err(Failure::from)
    }

    /// Refuses a backend whose tool role can bypass row-level security (itself or through a role
    /// it belongs to) or that lacks the `gatehouse` schema this runtime expects. Checked once per
    /// pool; a refusal is checked again on the next call.
    pub(crate) async fn check_role(&self) -> Result<(), Failure> {
        self.checked
            .get_or_try_init(|| async {
                let mut conn = self.acquire().await?;
                // In a transaction: through a transaction-mode pooler, an unnamed statement
                // outside one may be prepared on one server connection and run on another.
                let mut conn = sqlx::Connection::begin_with(&mut *conn, "BEGIN READ ONLY").await?;
                let (bypass, installed): (bool, bool) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM pg_roles r
                                     WHERE (r.rolsuper OR r.rolbypassrls)
                                       AND pg_has_role(current_user, r.oid, 'MEMBER')),
                            to_regclass('gatehouse.schema_version') IS NOT NULL",
                )
                .persistent(false)
                .fetch_one(&mut *conn)
                .await?;
                if bypass {
                    return Err(Failure::Tool(ToolError::new(
                        ErrorKind::Misconfigured,
                        "the backend's tool role can bypass row-level security; Gatehouse runs no tool with it",
                    )));
                }
                let version: i32 = if installed {
                    sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM gatehouse.schema_version")
                        .persistent(false)
                        .fetch_one(&mut *conn)
                        .await?
                } else {
                    0
                };
                if version < SCHEMA_VERSION {
                    return Err(Failure::Tool(ToolError::new(
                        ErrorKind::Misconfigured,
                        format!(
                            "the backend's gatehouse schema is at version {version}, version {SCHEMA_VERSION} is needed; run the setup script"
                        ),
                    )));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

/// SQLSTATE classes that mean the backend (not the statement) is in trouble.
fn backend_trouble(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || code.starts_with("XX")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57P04" | "57P05")
}

/// Turns a database error into what the caller may see: a fixed sentence per kind of failure,
/// never the connection string, the backend's internals, or row data.
pub(crate) fn classify(error: sqlx::Error) -> Failure {
    let backend = |why: &str| Failure::Backend(why.to_owned());
    let refused = |kind: ErrorKind, message: String, code: Option<&str>| {
        Failure::Tool(ToolError {
            kind,
            message,
            sqlstate: code.map(str::to_owned),
        })
    };
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message();
            let ours = message.strip_prefix("gatehouse: ");
            let c = Some(code.as_str());
            match code.as_str() {
                _ if backend_trouble(&code) => backend("the backend closed the connection or is overloaded"),
                "57014" => refused(
                    ErrorKind::Timeout,
                    "the statement ran longer than the backend's statement timeout and was cancelled".into(),
                    c,
                ),
                "25P03" => refused(
                    ErrorKind::Timeout,
                    "the call's transaction was idle too long".into(),
                    c,
                ),
                "28000" => refused(
                    ErrorKind::Refused,
                    format!(
                        "the backend refused the caller context: {}",
                        ours.unwrap_or("invalid")
                    ),
                    c,
                ),
                "22023" if ours.is_some_and(|m| m.contains("idempotency")) => refused(
                    ErrorKind::IdempotencyConflict,
                    ours.unwrap_or_default().to_owned(),
                    c,
                ),
                "22023" if ours.is_some_and(|m| m.contains("confirmation")) => refused(
                    ErrorKind::Confirmation,
                    "this confirmation was already used; ask again".into(),
                    c,
                ),
                "42501" if message.contains("row-level security") => refused(
                    ErrorKind::Refused,
                    "the row is outside what this caller may write (row-level security)".into(),
                    c,
                ),
                "42501" => refused(
                    ErrorKind::Refused,
                    "permission denied: the backend's tool role may not do this".into(),
                    c,
                ),
                "25006" => refused(ErrorKind::Refused, "a read tool cannot change data".into(), c),
                "23505" => refused(ErrorKind::Refused, "a row with this key already exists".into(), c),
                "23503" => refused(
                    ErrorKind::Refused,
                    "the row refers to a row that does not exist or is not visible to this caller".into(),
                    c,
                ),
                "23502" => refused(
                    ErrorKind::Refused,
                    "a required value is missing (NOT NULL)".into(),
                    c,
                ),
                "23514" => refused(ErrorKind::Refused, "a check constraint refused the row".into(), c),
                "40001" | "40P01" => refused(
                    ErrorKind::Refused,
                    "the backend aborted the call because of a conflicting call; retry it".into(),
                    c,
                ),
                code if code.starts_with("22") => {
                    // Data exceptions describe the caller's own values (bad input syntax, out of
                    // range): useful, and nobody else's.
                    let shown: String = message.chars().take(200).collect();
                    refused(
                        ErrorKind::Refused,
                        format!("the backend refused a value: {shown}"),
                        c,
                    )
                }
                code if code.starts_with("42") => refused(
                    ErrorKind::Refused,
                    format!(
                        "the backend cannot run this tool's statement as approved (SQLSTATE {code}); validate the tool again"
                    ),
                    c,
                ),
                code => refused(
                    ErrorKind::Refused,
                    format!("the backend refused the statement (SQLSTATE {code})"),
                    c,
                ),
            }
        }
        sqlx::Error::PoolTimedOut => backend("no connection to the backend became available in time"),
        sqlx::Error::PoolClosed => backend("the backend's pool was closed"),
        // rustls reports a refused certificate as invalid data on the stream.
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            backend("the TLS connection to the backend failed (its certificate was not accepted)")
        }
        sqlx::Error::Io(_) => backend("the connection to the backend failed"),
        sqlx::Error::Tls(_) => backend("the TLS connection to the backend failed"),
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            backend("the connection to the backend broke")
        }
        sqlx::Error::Configuration(_) => backend("the backend's connection settings are invalid"),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => {
            Failure::Tool(ToolError::new(
                ErrorKind::Refused,
                "a value from the backend could not be read",
            ))
        }
        _ => backend("the backend call failed"),
    }
}
