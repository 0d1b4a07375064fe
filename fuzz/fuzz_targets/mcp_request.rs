//! Fuzzes what the dataplane does with an untrusted MCP request before anything is forwarded:
//! body parsing within the depth limit, message classification, the SEP-2243 header/body
//! validation (with `x-mcp-header` schemas), header value decoding and the Origin/Host check.
//! The modules are the dataplane's own source files, compiled here without the service around
//! them. Invariants: no input panics, a header that validates really matches the body, and no
//! batch larger than the limit is parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../services/dataplane/src/jsonrpc.rs"]
mod jsonrpc;

#[allow(dead_code)]
#[path = "../../services/dataplane/src/headers.rs"]
mod headers;

fuzz_target!(|data: &[u8]| {
    // Layout: [n][n header bytes][body]. Header bytes are split on '\n' into "name:value" pairs.
    let Some((&n, rest)) = data.split_first() else { return };
    let n = (n as usize).min(rest.len());
    let (header_bytes, body) = rest.split_at(n);
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for line in header_bytes.split(|b| *b == b'\n') {
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
            pairs.push((name, line[colon + 1..].to_vec()));
        }
    }
    let raw: headers::RawHeaders = pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();

    for (_, value) in &raw {
        let _ = headers::decode_value(value);
        if let Ok(text) = std::str::from_utf8(value) {
            let encoded = headers::encode_value(text);
            // What we encode, we decode back exactly (whitespace at the edges is Base64-wrapped).
            let decoded = headers::decode_value(encoded.as_bytes()).expect("own encoding decodes");
            assert_eq!(decoded, text);
        }
    }
    let policy = headers::OriginPolicy::new(&url::Url::parse("https://mcp.example.com").unwrap(), &[]);
    let origin = raw.iter().find(|(n, _)| *n == "origin").map(|(_, v)| *v);
    let host = raw.iter().find(|(n, _)| *n == "host").map(|(_, v)| *v);
    let _ = policy.check(origin, host);

    let Ok(parsed) = jsonrpc::parse_body(body, 64, 32) else { return };
    let messages = match parsed {
        jsonrpc::Body::Single(m) => vec![m],
        jsonrpc::Body::Batch(ms) => {
            // The batch limit is counted before parsing: nothing larger is ever parsed.
            assert!(ms.len() <= 32, "a batch of {} messages passed the limit of 32", ms.len());
            ms
        }
    };
    for message in messages {
        let _ = message.meta_protocol_version();
        let schema = message
            .params()
            .and_then(|p| p.get("schema"))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let _ = headers::param_annotations(&schema);
        if headers::validate_standard(&raw, message.method(), message.params(), Some(&schema)).is_ok() {
            // Accepted: the method header must name the body's method exactly.
            let method_header = raw.iter().find(|(n, _)| *n == headers::MCP_METHOD).map(|(_, v)| *v).unwrap();
            assert_eq!(headers::decode_value(method_header).unwrap(), message.method());
            if let Some(expected) = headers::expected_name(message.method(), message.params()) {
                let name_header = raw.iter().find(|(n, _)| *n == headers::MCP_NAME).map(|(_, v)| *v).unwrap();
                assert_eq!(headers::decode_value(name_header).unwrap(), expected);
            }
        }
    }
});
