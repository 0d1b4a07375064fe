//! Dataplane tests: a real dataplane on a free port, real upstream MCP servers (mcp-fixture),
//! snapshots built by the test, tokens signed by a test key published as JWKS.

/// The abuse corpus: malformed, oversized, nested and mixed-era bodies on every route.
mod abuse;
/// Batches bounded in messages, answer bytes and time; per-message limits and quota; streams.
mod batches;
/// Bridging revisions: stateless clients of session upstreams and the other way round.
mod bridging;
/// The official MCP conformance suite through the dataplane.
mod conformance;
/// Drift (rug pull): a changed tool definition is withheld and reported.
mod drift;
/// Test support: authorization server stand-in, dataplane, snapshots, raw MCP client, `World`.
mod harness;
/// `Mcp-*` headers that disagree with the body are refused before reaching the upstream.
mod header_validation;
/// Upstreams on the deprecated HTTP+SSE transport.
mod legacy_transport;
/// Methods not understood, tasks bound to their creator, `Mcp-Param-*` headers, published scopes.
mod methods;
/// What upstreams send back: secrets redacted.
mod outputs;
/// Scopes, rate limits, quotas and the events every call leaves behind.
mod policy;
/// The resource-server side: metadata, challenges, token verification.
mod resource_server;
/// Sessions in both eras, across instances, and with the official TypeScript SDK client.
mod sessions;
/// A call's response stream: server→client requests relayed; closing it cancels upstream.
mod streams;
/// What tenants' servers answer (token lifetimes, sizes) cannot hurt other tenants.
mod tenant_values;
/// Kinds of upstreams: aggregation and routing, the server's own credential.
mod upstreams;
