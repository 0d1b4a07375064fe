//! The HTTP shape of JSON-RPC errors and answers (the wire edge's rendering).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use crate::jsonrpc;

pub(super) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::to_vec(body).expect("json"))
}

pub(super) fn rpc_error(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> HttpResponse {
    json_response(status, &jsonrpc::error_body(id, code, message, data))
}

pub(super) fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("allow", "POST"))
        .content_type("application/json")
        .body(
            serde_json::to_vec(&jsonrpc::error_body(
                None,
                jsonrpc::INVALID_REQUEST,
                "Method Not Allowed",
                None,
            ))
            .expect("json"),
        )
}

pub(super) fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn relay_json_error(value: &Value) -> HttpResponse {
    json_response(stateless_status(value), value)
}

/// The HTTP status a 2026-07-28 answer carries: its protocol errors have their own.
pub(super) fn stateless_status(value: &Value) -> StatusCode {
    let code = value
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match code {
        jsonrpc::UNSUPPORTED_PROTOCOL_VERSION | jsonrpc::HEADER_MISMATCH | -32021 => StatusCode::BAD_REQUEST,
        jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}
