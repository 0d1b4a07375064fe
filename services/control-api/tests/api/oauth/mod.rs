//! The authorization server, through HTTP as clients and browsers use it.

mod admin_api;
mod checklist;
mod cimd;
pub(crate) mod fixture;
mod flow;
mod jwt;
mod mutants;
mod races;
mod security;
mod security_token;
mod sso;
