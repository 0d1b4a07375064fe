#![allow(dead_code)] // shared by test modules; not every test uses every helper
//! A dataplane on a free port with snapshots the test builds, an authorization server stand-in
//! that only serves a JWKS with a test signing key (until the real AS is in main, final
//! acceptance tests run in tests/e2e against the real one), and real upstreams (mcp-fixture).
//!
//! - `issuer`: the test authorization server (signing key, JWKS, tokens);
//! - `dataplane`: a running dataplane (`TestDataplane`) and the secrets instances share;
//! - `snapshot`: org snapshots built by the test (`OrgSpec`, `ServerSpec`);
//! - `client`: a raw MCP client (`RawClient`) and response parsing (JSON or SSE);
//! - `world`: all of the above wired up with one fixture upstream (`World`).

mod client;
mod dataplane;
mod issuer;
mod snapshot;
mod world;

pub use client::*;
pub use dataplane::*;
pub use issuer::*;
pub use snapshot::*;
pub use world::*;
