//! The MCP endpoint, `{public URL}/{org}/{endpoint}/mcp`: Streamable HTTP on the stateless wire
//! (2026-07-28) and the session wire (the 2025 revisions), bridged to whatever each upstream
//! speaks. `README.md` beside this file describes its layers, its decisions and the bridge; each
//! module's `//!` line says what it holds.

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
mod session_listen;
mod sql;
mod tasks;
mod tools;
mod upstream_calls;
mod wire;

#[cfg(test)]
mod layering;

pub use self::input::InputRequests;
pub use self::wire::{delete, get, post};
