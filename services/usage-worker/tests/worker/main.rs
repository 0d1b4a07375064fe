//! Usage-worker tests: real PostgreSQL (a fresh database per test), real Redis (private servers
//! for anything that kills or stops it), the real bus.

mod alerts;
mod billing;
mod chaos;
mod drift;
mod helpers;
mod quota;
mod replay;
mod retention;
mod service;
mod tokens;
