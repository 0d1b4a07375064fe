//! Hosted SQL tools: tools whose implementation is one SQL statement run on a tenant's PostgreSQL
//! backend, with PostgreSQL's row-level security deciding, per caller, which rows the statement
//! sees and changes.
//!
//! - [`statement`]: the parser's validation of a tool's statement when it is defined;
//! - [`define`]: the backend's validation (types of parameters and columns, the JSON Schemas) and
//!   the inspection of what the statement touches (row-level security, roles that bypass it);
//! - [`context`]: the caller context, signed per transaction for the backend's `gatehouse` schema
//!   ([`install`] has the SQL an admin runs on the backend);
//! - [`runtime`]: running a tool for a caller ([`HostedSql::run`]), with [`confirm`] for
//!   destructive tools;
//! - [`pgtypes`]: types, binding and decoding; [`result`]: what a call returns.
//!
//! See docs/hosted-sql.md.

pub mod backend;
pub mod confirm;
pub mod context;
pub mod define;
pub mod install;
pub mod pgtypes;
pub mod result;
pub mod runtime;
pub mod statement;
pub mod tool;

pub use backend::{BackendConfig, TlsMode};
pub use context::{CallerContext, ContextKey};
pub use result::{ErrorKind, ToolError, ToolResult};
pub use runtime::{CallOptions, Done, HostedSql, Outcome, RuntimeConfig};
pub use tool::SqlTool;
