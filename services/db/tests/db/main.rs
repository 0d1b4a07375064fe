//! Data-layer tests against a real PostgreSQL: the row-level-security catalog lint, tenant
//! isolation under concurrency, and the audit hash chain.

mod audit_chain;
mod catalog;
mod isolation;
mod retention;
mod seed;
mod typed_values;
