//! Request headers the dataplane checks before acting: `Origin` and `Host` (DNS-rebinding
//! defence), and the 2026-07-28 standard headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`,
//! SEP-2243), which must agree with the body — policy is decided on the body, never on a header.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use url::Url;

pub const MCP_METHOD: &str = "mcp-method";
pub const MCP_NAME: &str = "mcp-name";
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";
pub const MCP_SESSION_ID: &str = "mcp-session-id";
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const LAST_EVENT_ID: &str = "last-event-id";
const B64_PREFIX: &str = "=?base64?";
const B64_SUFFIX: &str = "?=";

/// A header as the checks see it: name (lowercase) and raw bytes.
pub type RawHeaders<'a> = Vec<(&'a str, &'a [u8])>;

/// Origins and hosts the dataplane answers to.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    /// `scheme://host[:port]` values, normalised.
    origins: Vec<String>,
    /// `host[:port]` authorities, normalised (default ports dropped).
    hosts: Vec<String>,
}

impl OriginPolicy {
    pub fn new(public_url: &Url, extra_origins: &[String]) -> Self {
        let mut origins = vec![origin_of(public_url)];
        let mut hosts = vec![authority_of(public_url)];
        for extra in extra_origins {
            if let Ok(url) = Url::parse(extra) {
                origins.push(origin_of(&url));
                hosts.push(authority_of(&url));
            }
        }
        Self { origins, hosts }
    }

    /// `Ok` when the request may proceed: `Origin`, if present, is one of ours, and `Host` names us.
    pub fn check(&self, origin: Option<&[u8]>, host: Option<&[u8]>) -> Result<(), &'static str> {
        if let Some(origin) = origin {
            let origin = std::str::from_utf8(origin).map_err(|_| "Origin is not allowed")?;
            let allowed = Url::parse(origin)
                .ok()
                .map(|u| origin_of(&u))
                .is_some_and(|o| self.origins.contains(&o));
            if !allowed {
                return Err("Origin is not allowed");
            }
        }
        let host = host.ok_or("Host header is required")?;
        let host = std::str::from_utf8(host).map_err(|_| "Host is not allowed")?;
        // What well-behaved clients send: exactly one of our (normalised) authorities. Equal
        // text normalises to the same authority, so the URL parse below is only for the rest.
        if self
            .hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
        {
            return Ok(());
        }
        let normalised = Url::parse(&format!("http://{host}"))
            .ok()
            .filter(|u| u.path() == "/" && u.username().is_empty())
            .map(|u| authority_of(&u));
        // Compare ignoring the scheme's default port: the public URL may be https behind a proxy.
        match normalised {
            Some(h) if self.hosts.iter().any(|allowed| same_authority(allowed, &h)) => Ok(()),
            _ => Err("Host is not allowed"),
        }
    }
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization().to_ascii_lowercase()
}

fn authority_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn same_authority(allowed: &str, got: &str) -> bool {
    allowed == got || allowed.split(':').next() == Some(got) && !allowed.contains(':')
}

/// Methods whose `Mcp-Name` comes from `params.name`, `params.uri` or `params.taskId`.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The value `Mcp-Name` must carry for `message`, if any.
pub fn expected_name<'a>(
    method: &str,
    params: Option<&'a serde_json::Map<String, Value>>,
) -> Option<&'a str> {
    params?.get(name_key(method)?)?.as_str()
}

/// Decodes a header value, unwrapping the `=?base64?…?=` sentinel. Values must be visible ASCII
/// or spaces/tabs inside; anything else is refused.
pub fn decode_value(raw: &[u8]) -> Result<String, String> {
    // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
    let start = raw
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    let raw = &raw[start..end];
    if raw
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f || b >= 0x80)
    {
        return Err("header value contains characters that are not allowed".into());
    }
    let text = std::str::from_utf8(raw).map_err(|_| "header value is not ASCII".to_owned())?;
    match text
        .strip_prefix(B64_PREFIX)
        .and_then(|t| t.strip_suffix(B64_SUFFIX))
    {
        Some(inner) => {
            let bytes = STANDARD
                .decode(inner)
                .map_err(|_| "header value is not valid Base64".to_owned())?;
            String::from_utf8(bytes).map_err(|_| "header value is not valid UTF-8".to_owned())
        }
        None => Ok(text.to_owned()),
    }
}

/// Encodes a value for a header, wrapping it in the Base64 sentinel when it is not header-safe.
pub fn encode_value(value: &str) -> String {
    let needs_b64 = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.chars().any(|c| (c as u32) < 0x20 || (c as u32) > 0x7e)
        || (value.starts_with(B64_PREFIX) && value.ends_with(B64_SUFFIX));
    if needs_b64 {
        format!("{B64_PREFIX}{}{B64_SUFFIX}", STANDARD.encode(value))
    } else {
        value.to_owned()
    }
}

fn single<'a>(headers: &RawHeaders<'a>, name: &str) -> Result<Option<&'a [u8]>, String> {
    let mut found = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v);
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("duplicate {name} header"));
    }
    Ok(first)
}

/// `x-mcp-header` annotations of a tool's input schema: (property path, header suffix).
pub fn param_annotations(input_schema: &Value) -> Vec<(Vec<String>, String)> {
    fn walk(props: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        let Some(Value::Object(props)) = props else { return };
        for (name, schema) in props {
            path.push(name.clone());
            if let Some(Value::String(header)) = schema.get("x-mcp-header")
                && !header.is_empty()
            {
                out.push((path.clone(), header.to_ascii_lowercase()));
            }
            walk(schema.get("properties"), path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(input_schema.get("properties"), &mut Vec::new(), &mut out);
    out
}

fn primitive(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Validates the SEP-2243 headers of a 2026-07-28 request against its body. `tool_schema` is the
/// approved input schema of the called tool (for `Mcp-Param-*`). `Err` carries the reason for a
/// `-32020` answer.
pub fn validate_standard(
    headers: &RawHeaders<'_>,
    method: &str,
    params: Option<&serde_json::Map<String, Value>>,
    tool_schema: Option<&Value>,
) -> Result<(), String> {
    match single(headers, MCP_METHOD)? {
        None => return Err("missing required Mcp-Method header".into()),
        Some(raw) => {
            let value = decode_value(raw)?;
            if value != method {
                return Err(format!(
                    "Mcp-Method header `{value}` does not match body method `{method}`"
                ));
            }
        }
    }
    let expected = expected_name(method, params);
    match (single(headers, MCP_NAME)?, expected) {
        (None, Some(_)) => return Err(format!("missing required Mcp-Name header for `{method}`")),
        (Some(raw), Some(expected)) => {
            let value = decode_value(raw)?;
            if value != expected {
                return Err(format!(
                    "Mcp-Name header `{value}` does not match body value `{expected}`"
                ));
            }
        }
        (Some(raw), None) => {
            decode_value(raw)?;
        }
        (None, None) => {}
    }
    // Every Mcp-Param-* must at least be well formed, even those we do not know.
    for (name, raw) in headers.iter().filter(|(n, _)| n.starts_with(MCP_PARAM_PREFIX)) {
        decode_value(raw).map_err(|e| format!("{name}: {e}"))?;
    }
    if method == "tools/call"
        && let Some(schema) = tool_schema
    {
        let arguments = params.and_then(|p| p.get("arguments"));
        for (path, header) in param_annotations(schema) {
            let full = format!("{MCP_PARAM_PREFIX}{header}");
            let header_value = single(headers, &full)?;
            let body_value = arguments
                .and_then(|a| path.iter().try_fold(a, |v, k| v.get(k)))
                .filter(|v| !v.is_null())
                .and_then(primitive);
            let prop = path.join(".");
            match (header_value, body_value) {
                (None, None) => {}
                (Some(_), None) => return Err(format!("unexpected {full} header for absent `{prop}`")),
                (None, Some(_)) => return Err(format!("missing {full} header for `{prop}`")),
                (Some(raw), Some(expected)) => {
                    let value = decode_value(raw)?;
                    if value != expected {
                        return Err(format!(
                            "{full} header `{value}` does not match body value `{expected}`"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn origin_and_host() {
        let policy = OriginPolicy::new(
            &Url::parse("https://mcp.example.com").unwrap(),
            &["http://localhost:3000".to_owned()],
        );
        assert!(policy.check(None, Some(b"mcp.example.com")).is_ok());
        assert!(
            policy
                .check(Some(b"https://mcp.example.com"), Some(b"mcp.example.com"))
                .is_ok()
        );
        assert!(
            policy
                .check(Some(b"http://localhost:3000"), Some(b"mcp.example.com"))
                .is_ok()
        );
        assert!(
            policy
                .check(Some(b"https://evil.example"), Some(b"mcp.example.com"))
                .is_err()
        );
        assert!(policy.check(None, Some(b"evil.example.com")).is_err());
        assert!(policy.check(None, None).is_err());
        let local = OriginPolicy::new(&Url::parse("http://127.0.0.1:8081").unwrap(), &[]);
        assert!(local.check(None, Some(b"127.0.0.1:8081")).is_ok());
        assert!(local.check(None, Some(b"127.0.0.1:9999")).is_err());
        assert!(local.check(Some(b"null"), Some(b"127.0.0.1:8081")).is_err());
    }

    #[test]
    fn sentinel_round_trip() {
        for v in ["plain", " lead", "ünïcode", "line\nbreak", "=?base64?eA==?="] {
            assert_eq!(decode_value(encode_value(v).as_bytes()).unwrap(), v);
        }
        assert!(decode_value(b"a\r\nb").is_err());
        assert_eq!(decode_value(b"  padded\t").unwrap(), "padded");
        assert!(decode_value("ü".as_bytes()).is_err());
        assert!(decode_value(b"=?base64?!!?=").is_err());
    }

    #[test]
    fn standard_headers_match_body() {
        let params = json!({"name": "t", "arguments": {"region": "eu"}});
        let params = params.as_object();
        let schema = json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
        let ok: RawHeaders = vec![
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"t"),
            ("mcp-param-region", b"eu"),
        ];
        assert!(validate_standard(&ok, "tools/call", params, Some(&schema)).is_ok());
        let wrong_name: RawHeaders = vec![
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"u"),
            ("mcp-param-region", b"eu"),
        ];
        assert!(validate_standard(&wrong_name, "tools/call", params, Some(&schema)).is_err());
        let missing_param: RawHeaders = vec![("mcp-method", b"tools/call"), ("mcp-name", b"t")];
        assert!(validate_standard(&missing_param, "tools/call", params, Some(&schema)).is_err());
        let dup: RawHeaders = vec![
            ("mcp-method", b"tools/call"),
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"t"),
        ];
        assert!(validate_standard(&dup, "tools/call", params, None).is_err());
        let wrong_method: RawHeaders = vec![("mcp-method", b"tools/list")];
        assert!(validate_standard(&wrong_method, "tools/call", params, None).is_err());
    }
}
