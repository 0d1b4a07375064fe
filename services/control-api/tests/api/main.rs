//! Control API integration tests: one binary, one module per area.

mod generated;
mod helpers;
mod oauth;
mod route_table;
mod servers;
mod smoke;
mod world;
