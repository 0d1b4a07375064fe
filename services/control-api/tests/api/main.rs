//! Control API integration tests: one binary, one module per area.

mod generated;
mod helpers;
mod route_table;
mod servers;
mod smoke;
mod usage;
mod world;
