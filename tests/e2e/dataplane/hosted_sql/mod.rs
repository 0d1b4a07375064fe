//! Hosted SQL tools through the real dataplane: a backend registered and set up through the REST
//! API, its tools approved and exposed at an endpoint, then called by two callers whose rows the
//! backend's own row-level security keeps apart; a destructive tool runs only with the
//! confirmation it handed out, once.

mod attributes;
mod benchmark;
mod confirmations;
mod row_level_security;
mod support;
