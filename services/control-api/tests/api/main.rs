//! Control API integration tests: one binary, one module per area.

mod account_support;
mod accounts;
mod bad_input;
mod helpers;
mod org_roles;
mod smoke;
mod sso;
