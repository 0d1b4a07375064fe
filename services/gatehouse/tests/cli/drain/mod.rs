//! Draining real processes on SIGTERM (docs/operations.md, "Shutdown"): open notification streams
//! do not hold a `gatehouse dataplane` or a `gatehouse up`; a slow call in flight finishes and the
//! process stops right after it, refusing new requests meanwhile with a retryable answer; clients
//! of both revisions carry on at a second replica; a rolling restart of two dataplanes under load
//! fails no call and loses no event.
//!
//! `harness` starts the processes and speaks MCP to them; the tests are grouped by what they prove:
//! `streams` (open streams do not hold a stop), `in_flight` (a slow call finishes first),
//! `reconnect` (clients carry on at a second replica), `rolling_restart` (a restart under load).

mod harness;
mod in_flight;
mod reconnect;
mod rolling_restart;
mod streams;
