//! Control API integration tests: one binary, one module per area.

mod helpers;
mod oauth;
mod smoke;
