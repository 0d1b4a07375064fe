//! Running SQL tools: one small pool per backend, each call in its own transaction with the
//! caller's signed context, typed parameters, a statement timeout and a row cap.
//!
//! A call, on one pooled connection:
//! 1. `BEGIN … READ ONLY` (read tools) or `READ WRITE`;
//! 2. `SET LOCAL` statement and idle-in-transaction timeouts and the backend's `search_path`,
//!    then `SELECT gatehouse.binding()` (one round trip);
//! 3. `SELECT set_config('gatehouse.context', $1, true)` with the context signed for this
//!    transaction (a bind parameter: it never appears in statement text or logs);
//! 4. for writes: the idempotency key (`gatehouse.idempotency_begin`) and the confirmation
//!    (`gatehouse.confirmation_use`);
//! 5. the tool's statement as an unnamed prepared statement (extended protocol: one statement,
//!    parameters bound typed), reading at most the row cap;
//! 6. for writes with a key: `gatehouse.idempotency_finish` with the result; `COMMIT`.
//!
//! Everything is transaction-local, so a transaction-mode pooler (PgBouncer) in front of the
//! backend is fine. A call dropped half-way rolls back (sqlx queues the rollback and the pool
//! tests the connection before reuse); every released connection is reset with `DISCARD ALL`.

mod pools;

use std::time::Duration;

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, Either, Row};

use self::pools::{BackendPool, Pools};
use crate::backend::BackendConfig;
use crate::confirm::{self, ConfirmationRequest, Confirmed};
use crate::context::{CONTEXT_SETTING, CallerContext};
use crate::pgtypes::{self, SqlType};
use crate::result::{ErrorKind, ResultColumn, ToolError, ToolResult};
use crate::statement::Access;
use crate::tool::SqlTool;
pub use gatehouse_core::breaker::BreakerSettings;
use gatehouse_core::sync::MutexExt;

/// How the runtime sizes and guards its pools.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Connections per backend pool.
    pub pool_size: u32,
    /// How long a call waits for a pooled connection (or a new one) before failing.
    pub acquire_timeout: Duration,
    /// A pool unused this long is closed.
    pub idle_close_after: Duration,
    /// `idle_in_transaction_session_timeout` of every call's transaction.
    pub idle_in_transaction_timeout: Duration,
    /// Added to the backend's statement timeout to bound a whole call.
    pub call_margin: Duration,
    pub breaker: BreakerSettings,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            pool_size: 4,
            acquire_timeout: Duration::from_secs(3),
            idle_close_after: Duration::from_secs(300),
            idle_in_transaction_timeout: Duration::from_secs(10),
            call_margin: Duration::from_secs(5),
            breaker: BreakerSettings::default(),
        }
    }
}

impl From<&gatehouse_core::config::HostedSqlConfig> for RuntimeConfig {
    /// The runtime as the `[hosted_sql]` settings configure it.
    fn from(cfg: &gatehouse_core::config::HostedSqlConfig) -> Self {
        Self {
            pool_size: cfg.pool_size,
            acquire_timeout: Duration::from_millis(cfg.acquire_timeout_ms),
            idle_close_after: Duration::from_secs(cfg.idle_close_after_secs),
            idle_in_transaction_timeout: Duration::from_millis(cfg.idle_in_transaction_timeout_ms),
            call_margin: Duration::from_millis(cfg.call_margin_ms),
            breaker: BreakerSettings {
                threshold: cfg.breaker_threshold,
                open_for: Duration::from_secs(cfg.breaker_open_secs),
            },
        }
    }
}

/// How a call is made beyond its arguments.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// For write tools: a retried call with the same key (same caller and tool) returns the first
    /// result and changes nothing. At most 200 characters.
    pub idempotency_key: Option<String>,
    /// For destructive tools: the token of a [`ConfirmationRequest`] for this exact call.
    pub confirmation: Option<String>,
}

/// What a call produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The statement ran (or, with an idempotency key seen before, its first result).
    Done(Box<Done>),
    /// A destructive tool needs the caller's confirmation first; nothing ran.
    ConfirmationRequired(ConfirmationRequest),
}

/// A completed call.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    pub result: ToolResult,
    /// The confirmation this call spent (hex nonce), for the audit trail.
    pub confirmed: Option<String>,
}

/// The hosted SQL runtime: share one per process (it is cheap to clone).
#[derive(Clone)]
pub struct HostedSql {
    pools: Pools,
    cfg: RuntimeConfig,
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

impl HostedSql {
    pub fn new(cfg: RuntimeConfig) -> Self {
        Self {
            pools: Pools::new(cfg.clone()),
            cfg,
        }
    }

    /// Closes pools unused for `idle_close_after`; returns how many. Call it periodically (e.g.
    /// every minute).
    pub fn close_idle(&self) -> usize {
        self.pools.close_idle()
    }

    /// Backends with an open pool.
    pub fn open_pools(&self) -> usize {
        self.pools.len()
    }

    /// Runs `tool` for `caller` with `arguments` on `backend`.
    pub async fn run(
        &self,
        backend: &BackendConfig,
        tool: &SqlTool,
        caller: &CallerContext,
        arguments: &Map<String, Value>,
        options: &CallOptions,
    ) -> Result<Outcome, ToolError> {
        if tool.backend_id != backend.id {
            return Err(ToolError::new(
                ErrorKind::Misconfigured,
                "the tool belongs to another backend",
            ));
        }
        let ordered = check_arguments(tool, arguments)?;
        let args_hash = gatehouse_core::canonical::canonical_hash(&Value::Object(arguments.clone()));
        if let Some(key) = &options.idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.contains('\0'))
        {
            return Err(ToolError::new(
                ErrorKind::InvalidArguments,
                format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} characters"),
            ));
        }
        let confirmed = if tool.destructive {
            match &options.confirmation {
                None => {
                    let text =
                        gatehouse_core::canonical::to_canonical_string(&Value::Object(arguments.clone()));
                    let shown: String = text.chars().take(500).collect();
                    return Ok(Outcome::ConfirmationRequired(confirm::request(
                        &backend.context_key,
                        caller,
                        tool,
                        &args_hash,
                        &shown,
                    )));
                }
                Some(token) => Some(confirm::verify(
                    &backend.context_key,
                    token,
                    caller,
                    tool,
                    &args_hash,
                )?),
            }
        } else {
            None
        };
        let pool = self.pools.get(backend)?;
        if pool.breaker.lock_or_recover().is_open() {
            return Err(ToolError::new(
                ErrorKind::Unavailable,
                "the backend is unavailable (too many recent failures); try again shortly",
            ));
        }
        let deadline = backend.statement_timeout + self.cfg.call_margin;
        let call = Call {
            backend,
            tool,
            caller,
            ordered: &ordered,
            args_hash: &args_hash,
            idempotency_key: if tool.access == Access::Write {
                options.idempotency_key.as_deref()
            } else {
                None
            },
            confirmed: confirmed.as_ref(),
            cfg: &self.cfg,
        };
        let outcome = match tokio::time::timeout(deadline, call.run(&pool)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Backend("the backend did not answer in time".into())),
        };
        match outcome {
            Ok(result) => {
                pool.breaker.lock_or_recover().record(true, &self.cfg.breaker);
                Ok(Outcome::Done(Box::new(Done {
                    result,
                    confirmed: confirmed.map(|c| hex::encode(c.nonce)),
                })))
            }
            Err(Failure::Backend(why)) => {
                if pool.breaker.lock_or_recover().record(false, &self.cfg.breaker) {
                    metrics::counter!("gatehouse_hosted_sql_breaker_opened_total").increment(1);
                }
                tracing::warn!(backend_id = %backend.id, error = %why, "hosted SQL backend failure");
                Err(ToolError::new(
                    ErrorKind::Unavailable,
                    format!("the backend is unavailable: {why}"),
                ))
            }
            Err(Failure::Tool(e)) => {
                pool.breaker.lock_or_recover().record(true, &self.cfg.breaker);
                Err(e)
            }
        }
    }
}

/// Checks the arguments against the tool's parameters (every one present, nothing else) and
/// returns them in position order.
fn check_arguments<'a>(
    tool: &SqlTool,
    arguments: &'a Map<String, Value>,
) -> Result<Vec<&'a Value>, ToolError> {
    if let Some(unknown) = arguments
        .keys()
        .find(|k| !tool.params.iter().any(|p| &p.name == *k))
    {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ToolError::new(
            ErrorKind::InvalidArguments,
            format!("unknown argument `{}`", shown.escape_debug()),
        ));
    }
    tool.params
        .iter()
        .map(|p| {
            arguments.get(&p.name).ok_or_else(|| {
                ToolError::new(
                    ErrorKind::InvalidArguments,
                    format!("argument `{}` is required", p.name),
                )
            })
        })
        .collect()
}

/// Why a call failed: the backend (counts against its breaker) or the call itself.
enum Failure {
    Backend(String),
    Tool(ToolError),
}

impl From<ToolError> for Failure {
    fn from(e: ToolError) -> Self {
        Failure::Tool(e)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        crate::runtime::pools::classify(e)
    }
}

struct Call<'a> {
    backend: &'a BackendConfig,
    tool: &'a SqlTool,
    caller: &'a CallerContext,
    ordered: &'a [&'a Value],
    args_hash: &'a str,
    idempotency_key: Option<&'a str>,
    confirmed: Option<&'a Confirmed>,
    cfg: &'a RuntimeConfig,
}

impl Call<'_> {
    async fn run(&self, pool: &BackendPool) -> Result<ToolResult, Failure> {
        pool.check_role().await?;
        let mut conn = pool.acquire().await?;
        let begin = match self.tool.access {
            Access::Read => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
            Access::Write => "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE",
        };
        let mut tx = conn.begin_with(begin).await?;
        let setup = format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL idle_in_transaction_session_timeout = {}; \
             SET LOCAL search_path = {}; SELECT gatehouse.binding()",
            self.backend.statement_timeout.as_millis().max(1),
            self.cfg.idle_in_transaction_timeout.as_millis().max(1),
            self.backend.search_path_sql(),
        );
        let rows = sqlx::raw_sql(AssertSqlSafe(setup)).fetch_all(&mut *tx).await?;
        let binding: String = rows
            .last()
            .and_then(|r| r.try_get::<String, _>(0).ok())
            .ok_or_else(|| {
                Failure::Tool(ToolError::new(
                    ErrorKind::Misconfigured,
                    "the gatehouse schema is not installed on the backend",
                ))
            })?;
        let signed = self
            .backend
            .context_key
            .sign(self.caller, &self.tool.name, &binding)
            .map_err(|e| ToolError::new(ErrorKind::InvalidArguments, e.to_string()))?;
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(CONTEXT_SETTING)
            .bind(signed)
            .persistent(false)
            .execute(&mut *tx)
            .await?;

        if let Some(key) = self.idempotency_key {
            let earlier: Option<sqlx::types::Json<Value>> =
                sqlx::query_scalar("SELECT gatehouse.idempotency_begin($1, $2)")
                    .bind(key)
                    .bind(hex::decode(self.args_hash).unwrap_or_default())
                    .persistent(false)
                    .fetch_one(&mut *tx)
                    .await?;
            if let Some(earlier) = earlier {
                tx.rollback().await?;
                let mut result: ToolResult = serde_json::from_value(
                    earlier.0.get("result").cloned().unwrap_or(Value::Null),
                )
                .map_err(|_| {
                    ToolError::new(
                        ErrorKind::Refused,
                        "the stored result of this idempotency key is unreadable",
                    )
                })?;
                result.replayed = true;
                return Ok(result);
            }
        }
        if let Some(confirmed) = self.confirmed {
            sqlx::query("SELECT gatehouse.confirmation_use($1, $2)")
                .bind(&confirmed.nonce)
                .bind(confirmed.expires_at)
                .persistent(false)
                .execute(&mut *tx)
                .await?;
        }

        let mut query = sqlx::query(AssertSqlSafe(self.tool.sql.clone())).persistent(false);
        for (param, value) in self.tool.params.iter().zip(self.ordered) {
            query = pgtypes::bind(query, &param.ty, value).map_err(|e| {
                ToolError::new(
                    ErrorKind::InvalidArguments,
                    format!("argument `{}` {}", param.name, e.0),
                )
            })?;
        }
        let cap = self.backend.max_rows;
        let mut rows: Vec<Map<String, Value>> = Vec::new();
        let mut truncated = false;
        let mut rows_affected = 0u64;
        {
            let mut stream = tx.fetch_many(query);
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(done) => rows_affected += done.rows_affected(),
                    Either::Right(row) => {
                        if rows.len() == cap {
                            truncated = true;
                            continue;
                        }
                        rows.push(self.row_json(&row)?);
                    }
                }
            }
        }
        let write = self.tool.access == Access::Write;
        if write && (truncated || rows_affected > cap as u64) {
            tx.rollback().await?;
            return Err(Failure::Tool(ToolError::new(
                ErrorKind::Refused,
                format!(
                    "the statement would change more than {cap} rows (the backend's row cap); nothing was changed"
                ),
            )));
        }
        let result = ToolResult {
            columns: self
                .tool
                .columns
                .iter()
                .map(|c| ResultColumn {
                    name: c.name.clone(),
                    ty: c.ty.display(),
                })
                .collect(),
            row_count: rows.len(),
            rows,
            rows_affected: write.then_some(rows_affected),
            truncated,
            replayed: false,
        };
        if let Some(key) = self.idempotency_key {
            sqlx::query("SELECT gatehouse.idempotency_finish($1, $2)")
                .bind(key)
                .bind(sqlx::types::Json(&result))
                .persistent(false)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(result)
    }

    /// A row as JSON, checking its columns are the ones the tool was approved with.
    fn row_json(&self, row: &PgRow) -> Result<Map<String, Value>, Failure> {
        let changed = || {
            Failure::Tool(ToolError::new(
                ErrorKind::Misconfigured,
                "the backend's result columns no longer match the approved tool; validate the tool again",
            ))
        };
        let columns = row.columns();
        if columns.len() != self.tool.columns.len() {
            return Err(changed());
        }
        let mut out = Map::new();
        for (i, (column, expected)) in columns.iter().zip(&self.tool.columns).enumerate() {
            use sqlx::Column;
            let actual = SqlType::from_type_info(column.type_info()).map_err(|_| changed())?;
            if column.name() != expected.name || actual != expected.ty {
                return Err(changed());
            }
            let value = pgtypes::decode(row, i, &expected.ty)
                .map_err(|e| Failure::Tool(ToolError::new(ErrorKind::Refused, e.0)))?;
            out.insert(expected.name.clone(), value);
        }
        Ok(out)
    }
}

use sqlx::Executor as _;
