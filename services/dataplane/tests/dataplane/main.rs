//! Dataplane tests: a real dataplane on a free port, real upstream MCP servers (mcp-fixture),
//! snapshots built by the test, tokens signed by a test key published as JWKS.

mod conformance;
mod gateway;
mod harness;
mod policy;
mod resource_server;
