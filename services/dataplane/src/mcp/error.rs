//! The MCP endpoint's one error type. Handlers return [`McpError`]; the wire edge renders it once
//! (`wire::render`), as a JSON-RPC error object with the request's id and the HTTP status
//! [`McpError::status`] gives for the client's wire. JSON-RPC codes map to HTTP statuses in one
//! table, [`protocol_status`], which the stateless wire also applies to upstreams' errors.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use gatehouse_events::CallOutcome;

use crate::events::CallRecord;
use crate::jsonrpc;

use super::context::ClientWire;

/// The JSON-RPC error for a request that needs a capability the client did not declare.
pub(super) const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;

/// Why the endpoint refuses a request. The first group refuses the HTTP request itself (its
/// status is the same on both wires); [`McpError::Protocol`] is a JSON-RPC error answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum McpError {
    /// The Origin or Host header is not allowed.
    #[error("Forbidden: {0}")]
    OriginRefused(String),
    /// The first configuration snapshot has not been loaded.
    #[error("configuration not loaded yet")]
    NotReady,
    #[error("Not Found: no such endpoint")]
    EndpointNotFound,
    #[error(
        "Forbidden: this organization is suspended; its endpoints refuse calls until the platform operator resumes it"
    )]
    OrgSuspended,
    /// No valid bearer token; `challenge` is the `WWW-Authenticate` value.
    #[error("Unauthorized: {description}")]
    Unauthorized { description: String, challenge: String },
    /// The token lacks a scope; `challenge` is the `WWW-Authenticate` value naming it.
    #[error("{message}")]
    InsufficientScope { message: String, challenge: String },
    #[error("Rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A billable request of an org over its quota.
    #[error("Quota exceeded: this organization has used its call allowance for the billing period")]
    OverQuota,
    /// The caller holds all the notification streams it may hold.
    #[error(
        "Too many open streams: a caller may hold {max} notification streams open at once; close one first"
    )]
    TooManyStreams { max: usize },
    #[error("Unsupported Media Type: Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    NotAcceptable(&'static str),
    /// GET or DELETE without a session (`Allow: POST`).
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// A request the wire refuses as malformed: 400 whichever its code.
    #[error("{message}")]
    BadRequest {
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// A session, or a call waiting for the client's answer, that is not (or no longer) here.
    #[error("{0}")]
    NotFound(String),
    /// The client's answer to an upstream's request could not be delivered.
    #[error("Upstream server unavailable")]
    BadGateway,
    /// A JSON-RPC error answer; its HTTP status is the wire's ([`protocol_status`]).
    #[error("{message}")]
    Protocol {
        code: i64,
        message: String,
        data: Option<Value>,
        /// How the call is recorded: refused by policy (`Denied`) or failed (`Error`).
        denied: bool,
    },
}

impl McpError {
    /// A JSON-RPC error answer (recorded as an error).
    pub(super) fn protocol(code: i64, message: impl Into<String>) -> Self {
        McpError::Protocol {
            code,
            message: message.into(),
            data: None,
            denied: false,
        }
    }

    /// A JSON-RPC error answer with `data`.
    pub(super) fn protocol_with(code: i64, message: impl Into<String>, data: Value) -> Self {
        McpError::Protocol {
            code,
            message: message.into(),
            data: Some(data),
            denied: false,
        }
    }

    /// A JSON-RPC error answer to a request refused by policy (recorded as denied).
    pub(super) fn denied(code: i64, message: impl Into<String>) -> Self {
        McpError::Protocol {
            code,
            message: message.into(),
            data: None,
            denied: true,
        }
    }

    pub(super) fn method_not_found(method: &str) -> Self {
        Self::protocol(jsonrpc::METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    pub(super) fn unavailable() -> Self {
        Self::protocol(jsonrpc::SERVER_ERROR, "Upstream server unavailable")
    }

    pub(super) fn bad_request(code: i64, message: impl Into<String>) -> Self {
        McpError::BadRequest {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The JSON-RPC error code.
    pub(super) fn code(&self) -> i64 {
        match self {
            McpError::OrgSuspended
            | McpError::RateLimited { .. }
            | McpError::OverQuota
            | McpError::TooManyStreams { .. }
            | McpError::BadGateway => jsonrpc::SERVER_ERROR,
            McpError::BadRequest { code, .. } | McpError::Protocol { code, .. } => *code,
            McpError::OriginRefused(_)
            | McpError::NotReady
            | McpError::EndpointNotFound
            | McpError::Unauthorized { .. }
            | McpError::InsufficientScope { .. }
            | McpError::UnsupportedMediaType
            | McpError::NotAcceptable(_)
            | McpError::MethodNotAllowed
            | McpError::NotFound(_) => jsonrpc::INVALID_REQUEST,
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            McpError::OrgSuspended => Some(json!({"reason": "org_suspended"})),
            McpError::RateLimited { retry_after_secs } => {
                Some(json!({"retryAfterSeconds": retry_after_secs}))
            }
            McpError::OverQuota => Some(json!({"reason": "quota_exceeded"})),
            McpError::TooManyStreams { max } => Some(json!({"maxStreams": max})),
            McpError::BadRequest { data, .. } | McpError::Protocol { data, .. } => data.clone(),
            _ => None,
        }
    }

    /// The JSON-RPC error response to request `id`.
    pub(super) fn body(&self, id: Option<&Value>) -> Value {
        jsonrpc::error_body(id, self.code(), &self.to_string(), self.data())
    }

    /// The HTTP status of the answer on `wire`.
    pub(super) fn status(&self, wire: ClientWire) -> StatusCode {
        match self {
            McpError::OriginRefused(_) | McpError::OrgSuspended | McpError::InsufficientScope { .. } => {
                StatusCode::FORBIDDEN
            }
            McpError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            McpError::EndpointNotFound | McpError::NotFound(_) => StatusCode::NOT_FOUND,
            McpError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            McpError::RateLimited { .. } | McpError::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            McpError::OverQuota => StatusCode::OK,
            McpError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            McpError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            McpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            McpError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            McpError::BadGateway => StatusCode::BAD_GATEWAY,
            McpError::Protocol { code, .. } => match wire {
                ClientWire::Stateless => protocol_status(Some(*code)),
                ClientWire::Session => StatusCode::OK,
            },
        }
    }

    /// How a call this error answers is recorded: its outcome, and the code recorded with it.
    fn recorded(&self) -> (CallOutcome, Option<i64>) {
        match self {
            McpError::Protocol {
                code, denied: false, ..
            } => (CallOutcome::Error, Some(*code)),
            McpError::Protocol {
                code, denied: true, ..
            } => (CallOutcome::Denied, Some(*code)),
            McpError::RateLimited { .. } => (CallOutcome::RateLimited, None),
            McpError::OverQuota => (CallOutcome::OverQuota, Some(jsonrpc::SERVER_ERROR)),
            // The upstream session or the upstream is gone: a failure, not a refusal.
            McpError::NotFound(_) | McpError::BadGateway => (CallOutcome::Error, None),
            _ => (CallOutcome::Denied, None),
        }
    }

    /// Finishes `record`, the call this error answers: the one place a refused call is recorded.
    pub(super) fn finish(&self, record: CallRecord) {
        let (outcome, code) = self.recorded();
        record.finish(outcome, code);
    }
}

/// The HTTP status of a JSON-RPC answer on the stateless wire, by its error code: that revision's
/// protocol errors carry their own status; results and other errors are 200. (On the session
/// wire every JSON-RPC answer is 200.)
pub(super) fn protocol_status(code: Option<i64>) -> StatusCode {
    match code {
        Some(
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION
            | jsonrpc::HEADER_MISMATCH
            | MISSING_REQUIRED_CLIENT_CAPABILITY,
        ) => StatusCode::BAD_REQUEST,
        Some(jsonrpc::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_carry_their_status_only_on_the_stateless_wire() {
        let not_found = McpError::method_not_found("x/y");
        assert_eq!(not_found.status(ClientWire::Stateless), StatusCode::NOT_FOUND);
        assert_eq!(not_found.status(ClientWire::Session), StatusCode::OK);
        let capability = McpError::protocol(MISSING_REQUIRED_CLIENT_CAPABILITY, "missing");
        assert_eq!(capability.status(ClientWire::Stateless), StatusCode::BAD_REQUEST);
        assert_eq!(
            McpError::unavailable().status(ClientWire::Stateless),
            StatusCode::OK
        );
        // A refusal of the HTTP request has the same status on both wires.
        let limited = McpError::RateLimited { retry_after_secs: 3 };
        assert_eq!(
            limited.status(ClientWire::Stateless),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(limited.status(ClientWire::Session), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn the_body_is_a_json_rpc_error_with_the_requests_id() {
        let body = McpError::RateLimited { retry_after_secs: 3 }.body(Some(&json!(7)));
        assert_eq!(
            body,
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": jsonrpc::SERVER_ERROR,
                "message": "Rate limit exceeded; retry after 3 s", "data": {"retryAfterSeconds": 3}}})
        );
        assert_eq!(crate::events::error_code_in(&body), Some(jsonrpc::SERVER_ERROR));
        assert_eq!(
            protocol_status(crate::events::error_code_in(&json!({"result": {}}))),
            StatusCode::OK
        );
    }
}
