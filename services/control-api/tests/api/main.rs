//! Control API integration tests: one binary, one module per area.

mod account_support;
mod accounts;
mod audit_export;
mod audit_verify;
mod bad_input;
mod generated;
mod helpers;
mod oauth;
mod operator;
mod org_deletion;
mod org_roles;
mod plan_terms;
mod route_table;
mod servers;
mod smoke;
mod sso;
mod sso_accounts;
mod sso_policy;
mod usage;
mod world;
