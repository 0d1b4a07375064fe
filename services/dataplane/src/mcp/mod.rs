//! The MCP endpoint, `{public URL}/{org}/{endpoint}/mcp`: Streamable HTTP in both eras.
//!
//! - 2026-07-28 ("modern"): POST only, no sessions; `MCP-Protocol-Version` must equal the body's
//!   `_meta` version and the SEP-2243 headers must match the body.
//! - 2025-03-26 / 2025-06-18 / 2025-11-25 ("legacy"): `initialize` opens a session whose id is
//!   sealed by [`crate::session`]; GET opens the server-to-client stream, DELETE ends the session.
//!
//! Every request: Origin/Host check → configuration loaded → endpoint → bearer token → body parsed
//! (a batch's size checked first) → rate limits and quota, per message → body checks → era checks
//! → dispatch. Nothing is answered before the rate limits count the request. Policy is decided on the body. Tool lists and
//! definitions come from the snapshot (approved pins only); calls, prompts and resources are
//! forwarded to the upstream that owns them with the server's own credential.
//!
//! Layout (private submodules; each file's `//!` line says what it holds):
//! - `mod.rs`: the `POST` handler, one message to its era's path, and the JSON-RPC error
//!   answers every path uses;
//! - `admission`: the per-request context (`Ctx`), `establish` (Origin/Host, endpoint, token, base
//!   scope), `Unadmitted::admit`/`admit_batch` (the rate limits and the quota, per message; the
//!   only way to a `Ctx`) and `open_stream` (the caller's notification streams);
//! - `get_delete`: the `GET` and `DELETE` handlers (2025 sessions only);
//! - `modern`: the stateless 2026-07-28 path (header/body checks, answer or stream);
//! - `sessions`: legacy sessions (session lookup, `initialize`, notifications, batches);
//! - `dispatch`: a request to its handler by method, and what that produces (`Answer`);
//! - `aggregate`: requests answered across all upstreams (prompt/resource/task lists,
//!   `server/discover`), with `cursor`'s composite cursors when there are several;
//! - `calls`: `tools/call` and forwarding a request to the upstream that owns it;
//! - `bridge`: how a request reaches one upstream whatever revision either side speaks (the one
//!   place that picks the upstream's wire, session and headers, and shapes its body);
//! - `input`: server→client requests across the bridge (a session upstream's request ↔ a
//!   2026-07-28 `input_required` result), and cancellation of bridged calls;
//! - `relay`: upstream replies and streams back to the client as SSE, and the client's answers
//!   to server→client requests back to their upstream.
//!
//! With several upstreams (`EndpointState::server_ids`), what is not the endpoint's own is routed
//! to the upstream that owns it: tools and prompts by their `<server slug>__` prefix; resource
//! URIs, which are never rewritten, by who listed them (`resources`, over [`crate::owners`]);
//! task ids, namespaced like tools in both directions (`tasks`); `subscriptions/listen` goes to
//! every upstream and their streams are merged (`listen`). With one upstream, requests and
//! replies pass through as they are.
//!
//! **The bridge.** The client's wire (stateless 2026-07-28, or a 2025 session) is chosen at the
//! edge; each upstream's wire is learned on first use (`upstream::Learned`). Below the edge a
//! request reaches an upstream only through `bridge::send`, which speaks the upstream's wire: a
//! stateless client's request to a session upstream goes in a session the dataplane holds for
//! that caller (`upstream::SessionKey`; capped, idle ones closed, reopened on a 404), a session
//! client's request to a stateless upstream carries the revision's headers and `_meta`. What
//! comes back is shaped for the client's wire by the relay (`bridge::StatelessShape`) and, for
//! server→client requests, by `input`. `server/discover` and `initialize` are answered by the
//! endpoint itself from what was learned (`aggregate::discover`, `sessions::initialize`).

// An `Answer` lives for one request: its size does not matter here.
#![allow(clippy::large_enum_variant)]

mod admission;
mod aggregate;
mod bridge;
mod client_stream;
mod context;
mod cursor;
mod dispatch;
mod error;
mod forward;
mod input;
mod listen;
mod outcome;
mod relay;
mod request;
mod resources;
mod sql;
mod tasks;
mod tools;
mod upstream_calls;
mod wire;

#[cfg(test)]
mod layering;

pub use self::input::InputRequests;
pub use self::wire::{delete, get, post};
