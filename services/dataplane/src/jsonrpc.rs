//! JSON-RPC at the edge: the envelope of incoming messages (only what the dataplane acts on) and
//! the error bodies it answers with. Payloads are otherwise kept as they came.

use serde_json::{Map, Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// A resource URI no upstream of the endpoint serves (the MCP specification's code).
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Generic server error (upstream unavailable, over quota, rate limited inside a batch).
pub const SERVER_ERROR: i64 = -32000;
/// 2026-07-28: a standard header does not match the body (SEP-2243).
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// The `_meta` key carrying the per-request protocol version (2026-07-28).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// A JSON-RPC error object as a response body.
pub fn error_body(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error})
}

/// What kind of JSON-RPC message a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// Whether a message is a response (a result or an error), not a request or notification. (The
/// MCP client has the same test for upstream messages; this file stays free of other crates,
/// since the fuzz targets compile it on its own.)
pub fn is_response(message: &Value) -> bool {
    message.get("method").is_none() && (message.get("result").is_some() || message.get("error").is_some())
}

/// One parsed JSON-RPC message. `value` is the whole message; the accessors read it.
#[derive(Debug, Clone)]
pub struct Message {
    pub value: Value,
    pub kind: Kind,
}

impl Message {
    /// Classifies `value`, refusing anything that is not a JSON-RPC 2.0 message.
    pub fn classify(value: Value) -> Result<Self, &'static str> {
        let obj = value.as_object().ok_or("a JSON-RPC message must be an object")?;
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err("jsonrpc must be \"2.0\"");
        }
        let kind = match (obj.get("method"), obj.get("id")) {
            (Some(Value::String(_)), Some(id)) => {
                if !valid_id(id) {
                    return Err("id must be a string or an integer");
                }
                Kind::Request
            }
            (Some(Value::String(_)), None) => Kind::Notification,
            (Some(_), _) => return Err("method must be a string"),
            (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
                if !valid_id(id) && !id.is_null() {
                    return Err("id must be a string or an integer");
                }
                Kind::Response
            }
            _ => return Err("not a request, notification or response"),
        };
        if let Some(params) = obj.get("params")
            && !params.is_object()
            && !params.is_array()
        {
            return Err("params must be an object or an array");
        }
        Ok(Self { value, kind })
    }

    pub fn method(&self) -> &str {
        self.value.get("method").and_then(Value::as_str).unwrap_or("")
    }

    pub fn id(&self) -> Option<&Value> {
        self.value.get("id")
    }

    pub fn params(&self) -> Option<&Map<String, Value>> {
        self.value.get("params").and_then(Value::as_object)
    }

    pub fn params_mut(&mut self) -> Option<&mut Map<String, Value>> {
        self.value.get_mut("params").and_then(Value::as_object_mut)
    }

    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params().and_then(|p| p.get(key)).and_then(Value::as_str)
    }

    /// `params._meta[io.modelcontextprotocol/protocolVersion]`, when present.
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.params()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str)
    }

    /// `params._meta[io.modelcontextprotocol/clientCapabilities]`, when present: what a
    /// 2026-07-28 client declared.
    pub fn meta_client_capabilities(&self) -> Option<&Value> {
        self.params()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"))
    }

    pub fn has_meta_protocol_version_key(&self) -> bool {
        self.params()
            .and_then(|p| p.get("_meta"))
            .is_some_and(|m| m.get(META_PROTOCOL_VERSION).is_some())
    }
}

fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// Whether `bytes` nests arrays/objects deeper than `max` (strings are skipped). Runs before
/// parsing, so a hostile body cannot make the parser recurse.
pub fn exceeds_depth(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether `bytes` is a JSON array (a batch) of more than `max` elements. Counts the commas
/// between top-level elements (strings skipped) and stops at the first one past `max`: runs
/// before parsing, so a huge batch costs nothing but this scan.
pub fn batch_exceeds(bytes: &[u8], max: usize) -> bool {
    let Some(start) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if bytes[start] != b'[' {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut commas = 0usize;
    for &b in &bytes[start..] {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => {
                commas += 1;
                if commas >= max {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// A parsed POST body: one message or a batch.
#[derive(Debug)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

/// Why a body could not be parsed, with the JSON-RPC code to answer.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    pub code: i64,
    pub message: String,
}

/// Parses a POST body within the batch size and depth limits (both checked before parsing).
pub fn parse_body(bytes: &[u8], max_depth: usize, max_batch: usize) -> Result<Body, BodyError> {
    if batch_exceeds(bytes, max_batch) {
        return Err(BodyError {
            code: INVALID_REQUEST,
            message: format!("Invalid Request: a batch may hold at most {max_batch} messages"),
        });
    }
    if exceeds_depth(bytes, max_depth) {
        return Err(BodyError {
            code: INVALID_REQUEST,
            message: format!("JSON nests deeper than {max_depth} levels"),
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| BodyError {
        code: PARSE_ERROR,
        message: format!("Parse error: {e}"),
    })?;
    let invalid = |m: &str| BodyError {
        code: INVALID_REQUEST,
        message: format!("Invalid Request: {m}"),
    };
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(invalid("empty batch"));
            }
            let messages = items
                .into_iter()
                .map(|v| Message::classify(v).map_err(invalid))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Body::Batch(messages))
        }
        other => Message::classify(other).map(Body::Single).map_err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit_ignores_brackets_in_strings() {
        assert!(!exceeds_depth(br#"{"a":"[[[[[[[[[[[["}"#, 2));
        assert!(exceeds_depth(br#"{"a":[[[1]]]}"#, 3));
        assert!(!exceeds_depth(br#"{"a":[[1]]}"#, 3));
        assert!(!exceeds_depth(br#"{"a":"\"[[[["}"#, 1));
    }

    #[test]
    fn batch_limit_counts_top_level_elements_only() {
        let two =
            br#"[{"jsonrpc":"2.0","method":"a","params":{"x":[1,2,3]}},{"jsonrpc":"2.0","method":"b,c"}]"#;
        assert!(!batch_exceeds(two, 2));
        assert!(batch_exceeds(two, 1));
        assert!(!batch_exceeds(br#" {"a":[1,2,3,4,5]}"#, 1), "not a batch");
        assert!(!batch_exceeds(br#"["\",\",",1]"#, 2), "commas in strings");
        assert!(!batch_exceeds(b"[]", 1));
        let many = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"ping","id":1}"#; 1000].join(",")
        );
        let refused = parse_body(many.as_bytes(), 8, 32).unwrap_err();
        assert_eq!(refused.code, INVALID_REQUEST);
        assert!(
            refused.message.contains("at most 32 messages"),
            "{}",
            refused.message
        );
        assert!(matches!(parse_body(two, 8, 2), Ok(Body::Batch(m)) if m.len() == 2));
    }

    #[test]
    fn classification() {
        let req = parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, 8, 4).unwrap();
        assert!(matches!(req, Body::Single(m) if m.kind == Kind::Request));
        let note = parse_body(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, 8, 4).unwrap();
        assert!(matches!(note, Body::Single(m) if m.kind == Kind::Notification));
        let resp = parse_body(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#, 8, 4).unwrap();
        assert!(matches!(resp, Body::Single(m) if m.kind == Kind::Response));
        assert_eq!(parse_body(b"{", 8, 4).unwrap_err().code, PARSE_ERROR);
        assert_eq!(
            parse_body(br#"{"id":1,"method":"x"}"#, 8, 4).unwrap_err().code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse_body(br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#, 8, 4)
                .unwrap_err()
                .code,
            INVALID_REQUEST
        );
        assert_eq!(parse_body(b"[]", 8, 4).unwrap_err().code, INVALID_REQUEST);
    }
}
