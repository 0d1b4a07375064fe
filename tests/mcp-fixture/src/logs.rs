//! Which log messages a client has asked to receive.
//!
//! A 2025-era session chooses its minimum level with `logging/setLevel`. From
//! 2026-07-28 there is no session to remember it in: each request names its
//! own level in `_meta["io.modelcontextprotocol/logLevel"]`, and a request that
//! names none gets no log messages at all.

#![allow(deprecated)] // logging is deprecated by SEP-2577 but still part of the suite.

use rmcp::{RoleServer, model::LoggingLevel, service::RequestContext};

use crate::inputs::uses_input_required_results;

fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Whether a message at `level` may be sent while serving `context`.
///
/// `session_level` is what the session set with `logging/setLevel`; a session
/// that never set one receives everything.
pub(crate) fn allows(
    context: &RequestContext<RoleServer>,
    session_level: Option<LoggingLevel>,
    level: LoggingLevel,
) -> bool {
    let threshold = if uses_input_required_results(context) {
        context.meta.log_level()
    } else {
        Some(session_level.unwrap_or(LoggingLevel::Debug))
    };
    threshold.is_some_and(|threshold| severity(level) >= severity(threshold))
}
