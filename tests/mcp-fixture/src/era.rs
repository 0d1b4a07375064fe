//! The revisions a fixture speaks ([`ProtocolMode`]).
//!
//! 2026-07-28 only is rmcp's own stateless-only configuration (see `spawn_fixture` and
//! [`supported_versions`]), plus one answer rmcp gives differently from the specification:
//! it refuses `initialize` with `-32022` on HTTP 200, where the 2026-07-28 transport asks
//! for 400 (`UnsupportedProtocolVersionError`, naming the supported versions, which is
//! what a modern-only server SHOULD answer a legacy client). [`gate`] answers 400.
//!
//! 2025 only needs more than a shorter version list: rmcp is a
//! dual-era server and would answer 2026-07-28 traffic with modern errors (`-32022`) that
//! tell a client it reached a modern server. A 2025-era server answers such traffic the
//! way its session layer answers any request it does not expect. [`gate`]
//! reproduces the answers of the official TypeScript SDK's Streamable HTTP example server
//! (`examples/server/simpleStreamableHttp` with `StreamableHTTPServerTransport`, SDK 1.x),
//! which is what most 2025-era servers are built on:
//!
//! | request | answer |
//! | --- | --- |
//! | POST without `Mcp-Session-Id` that is not `initialize` (every 2026-07-28 request) | 400 `{"code": -32000, "message": "Bad Request: No valid session ID provided"}`, `id: null` |
//! | POST in a session with an `MCP-Protocol-Version` it does not know | 400 `-32000 Bad Request: Unsupported protocol version: <v> (supported versions: …)` |
//! | `server/discover`, `subscriptions/listen` in a session | `-32601 Method not found` |
//! | GET or DELETE without `Mcp-Session-Id` | 400 `Missing session ID` |
//! | `initialize` asking for 2026-07-28 | answered with 2025-11-25 (rmcp's negotiation) |
//!
//! A 2025-era server never looks at the `io.modelcontextprotocol/*` keys of a request's
//! `_meta`; rmcp would route a request carrying them past the session, so the gate removes
//! them from requests it lets through.

use std::borrow::Cow;
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming};
use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};

use crate::ProtocolMode;

/// The revisions a fixture in `mode` supports (`ServerHandler::supported_protocol_versions`).
pub(crate) fn supported_versions(mode: ProtocolMode) -> Cow<'static, [ProtocolVersion]> {
    match mode {
        ProtocolMode::Both => Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS),
        ProtocolMode::Only2026 => Cow::Owned(vec![ProtocolVersion::V_2026_07_28]),
        ProtocolMode::Only2025 => Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25)),
    }
}

/// The versions a 2025-era TypeScript SDK server lists in its refusal, newest first.
const SESSION_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Methods that only exist from 2026-07-28 on.
const MODERN_ONLY_METHODS: [&str; 2] = ["server/discover", "subscriptions/listen"];
/// The `_meta` keys that carry a 2026-07-28 request's protocol version, client and capabilities.
const MODERN_META_KEYS: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
];
/// Larger request bodies are refused (a test server; rmcp's own limit is larger still).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// What the 2025-only gate decided about a request.
pub(crate) enum Gate {
    /// Answer this instead of serving the request.
    Answer(Response<Body>),
    /// Serve this request (its body possibly rewritten).
    Serve(Request<Full<Bytes>>),
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::from(body.to_string()).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::from(text).boxed());
    *response.status_mut() = status;
    response
}

fn bad_request(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"jsonrpc": "2.0", "error": {"code": -32000, "message": message}, "id": null}),
    )
}

/// Decides how a fixture in `mode` treats `request` before rmcp sees it (see the module
/// documentation).
pub(crate) async fn gate(mode: ProtocolMode, request: Request<Incoming>) -> Gate {
    match mode {
        ProtocolMode::Both => {
            let (parts, body) = request.into_parts();
            match Limited::new(body, MAX_BODY_BYTES).collect().await {
                Ok(collected) => Gate::Serve(Request::from_parts(parts, Full::new(collected.to_bytes()))),
                Err(_) => Gate::Answer(text_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large")),
            }
        }
        ProtocolMode::Only2026 => modern_only_gate(request).await,
        ProtocolMode::Only2025 => session_era_gate(request).await,
    }
}

async fn modern_only_gate(request: Request<Incoming>) -> Gate {
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Gate::Answer(text_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large")),
    };
    if parts.method == http::Method::POST
        && let Ok(message) = serde_json::from_slice::<Value>(&bytes)
        && message.get("method").and_then(Value::as_str) == Some("initialize")
    {
        let requested = message
            .pointer("/params/protocolVersion")
            .cloned()
            .unwrap_or(Value::Null);
        return Gate::Answer(json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "jsonrpc": "2.0",
                "id": message.get("id").cloned().unwrap_or(Value::Null),
                "error": {
                    "code": -32022,
                    "message": "Unsupported protocol version",
                    "data": {"supported": ["2026-07-28"], "requested": requested},
                },
            }),
        ));
    }
    Gate::Serve(Request::from_parts(parts, Full::new(bytes)))
}

async fn session_era_gate(request: Request<Incoming>) -> Gate {
    let has_session = request.headers().contains_key("mcp-session-id");
    let method = request.method().clone();
    let (parts, body) = request.into_parts();
    if method != http::Method::POST {
        if !has_session && (method == http::Method::GET || method == http::Method::DELETE) {
            return Gate::Answer(text_response(StatusCode::BAD_REQUEST, "Missing session ID"));
        }
        return Gate::Serve(Request::from_parts(parts, Full::new(Bytes::new())));
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Gate::Answer(text_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large")),
    };
    // Unparseable bodies are rmcp's to refuse.
    let Ok(mut message) = serde_json::from_slice::<Value>(&bytes) else {
        return Gate::Serve(Request::from_parts(parts, Full::new(bytes)));
    };
    let rpc_method = message.get("method").and_then(Value::as_str).map(str::to_owned);
    if rpc_method.as_deref() == Some("initialize") && !has_session {
        return Gate::Serve(Request::from_parts(parts, Full::new(bytes)));
    }
    if !has_session {
        return Gate::Answer(bad_request("Bad Request: No valid session ID provided"));
    }
    if let Some(version) = parts
        .headers
        .get("mcp-protocol-version")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        && !SESSION_VERSIONS.contains(&version.as_str())
    {
        return Gate::Answer(bad_request(&format!(
            "Bad Request: Unsupported protocol version: {version} (supported versions: {})",
            SESSION_VERSIONS.join(", ")
        )));
    }
    if let Some(method) = rpc_method.as_deref()
        && MODERN_ONLY_METHODS.contains(&method)
        && let Some(id) = message.get("id")
    {
        return Gate::Answer(json_response(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}}),
        ));
    }
    let meta = message
        .get_mut("params")
        .and_then(|params| params.get_mut("_meta"))
        .and_then(Value::as_object_mut);
    let Some(meta) = meta.filter(|meta| MODERN_META_KEYS.iter().any(|key| meta.contains_key(*key))) else {
        return Gate::Serve(Request::from_parts(parts, Full::new(bytes)));
    };
    for key in MODERN_META_KEYS {
        meta.remove(key);
    }
    let mut parts = parts;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Gate::Serve(Request::from_parts(
        parts,
        Full::new(Bytes::from(message.to_string())),
    ))
}
