//! The abuse corpus: malformed, oversized, deeply nested and mixed-era bodies against every
//! dataplane route (the fuzz target `fuzz/fuzz_targets/mcp_request.rs` covers the parser and the
//! header checks alone). Nothing panics, every answer is an error of the right kind (a JSON-RPC
//! error object with the expected code on the MCP endpoint, an HTTP error elsewhere, never a
//! 5xx), and the dataplane's memory stays bounded.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use mcp_fixture::FixtureOptions;

use crate::harness::*;

/// Panics seen on the dataplane's threads (actix workers and its runtime) since the hook was
/// installed, with their messages.
fn dataplane_panics() -> Arc<Mutex<Vec<String>>> {
    static PANICS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    PANICS
        .get_or_init(|| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let record = seen.clone();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let thread = std::thread::current().name().unwrap_or("").to_owned();
                if thread.starts_with("actix") || thread.starts_with("tokio") {
                    record
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("{thread}: {info}"));
                }
                previous(info);
            }));
            seen
        })
        .clone()
}

/// How a request is sent to the MCP endpoint.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A token, the right content type and accept, no session, no version header.
    Bare,
    /// In a 2025-03-26 session (batches allowed).
    Session,
    /// In a 2025-11-25 session (no batches).
    NewerSession,
    /// `MCP-Protocol-Version: 2026-07-28`, no session.
    Modern,
}

/// What the answer must be: its HTTP status and, on the MCP endpoint, the JSON-RPC error code of
/// its body (`None`: any JSON-RPC error; the HTTP status alone for non-JSON answers).
struct Expect {
    status: &'static [u16],
    code: Option<i64>,
}

const PARSE: Expect = Expect {
    status: &[400],
    code: Some(-32700),
};
const INVALID: Expect = Expect {
    status: &[400],
    code: Some(-32600),
};
/// A JSON-RPC error, in a 200 answer or a 4xx.
const RPC_ERROR: Expect = Expect {
    status: &[200, 400, 404],
    code: None,
};

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn batch_of(n: usize, message: &str) -> String {
    format!("[{}]", vec![message; n].join(","))
}

#[tokio::test]
async fn the_abuse_corpus_gets_errors_of_the_right_kind_without_panics_or_unbounded_memory() {
    let panics = dataplane_panics();
    let world = World::granting_all(FixtureOptions::default()).await;
    let mut legacy = world.client("alice", "fx:all", "2025-03-26");
    legacy.initialize().await;
    let mut newer = world.client("alice", "fx:all", "2025-11-25");
    newer.initialize().await;
    let modern = world.client("alice", "fx:all", "2026-07-28");
    let token = modern.token.clone().unwrap();
    let url = world.url();

    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let modern_ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let max_body = world.dataplane.cfg.dataplane.max_body_bytes;
    let mut invalid_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"s\":\"".to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc0]);
    invalid_utf8.extend_from_slice(b"\"}}");
    // Every body is built before memory is measured.
    let corpus: Vec<(&str, Mode, Bytes, Expect)> = vec![
        ("empty body", Mode::Bare, Bytes::new(), PARSE),
        ("truncated", Mode::Bare, Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":1,"), PARSE),
        ("garbage", Mode::Bare, Bytes::from_static(b"\x00\x01\x02 GET / HTTP/1.1"), PARSE),
        ("invalid UTF-8", Mode::Bare, Bytes::from(invalid_utf8), PARSE),
        (
            "lone surrogate",
            Mode::Bare,
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\ud800"}}"#),
            PARSE,
        ),
        (
            "number out of range",
            Mode::Bare,
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":1e999999}}"#),
            PARSE,
        ),
        ("null", Mode::Bare, Bytes::from_static(b"null"), INVALID),
        ("a string", Mode::Bare, Bytes::from_static(b"\"tools/call\""), INVALID),
        ("jsonrpc 1.0", Mode::Bare, Bytes::from_static(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), INVALID),
        ("object id", Mode::Bare, Bytes::from_static(br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#), INVALID),
        ("float id", Mode::Bare, Bytes::from_static(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#), INVALID),
        ("numeric method", Mode::Bare, Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":7}"#), INVALID),
        ("string params", Mode::Bare, Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#), INVALID),
        ("empty batch", Mode::Session, Bytes::from_static(b"[]"), INVALID),
        ("batch of numbers", Mode::Session, Bytes::from_static(b"[1,2,3]"), INVALID),
        (
            "deeply nested arrays",
            Mode::Session,
            Bytes::from(nested(100_000, "[", "]", "")),
            INVALID,
        ),
        (
            "deeply nested objects",
            Mode::Bare,
            Bytes::from(nested(50_000, "{\"a\":", "}", "1")),
            INVALID,
        ),
        (
            "deep params",
            Mode::Modern,
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{}}}}}"#,
                nested(10_000, "[", "]", "")
            )),
            INVALID,
        ),
        (
            "brackets in strings are not nesting, but a batch past the limit is refused",
            Mode::Session,
            Bytes::from(batch_of(33, r#"{"jsonrpc":"2.0","method":"x","params":{"s":"[[[[{{{{"}}"#)),
            INVALID,
        ),
        (
            "100,000-message batch",
            Mode::Session,
            Bytes::from(batch_of(100_000, ping)),
            INVALID,
        ),
        (
            "oversized body",
            Mode::Modern,
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
                "x".repeat(max_body)
            )),
            Expect {
                status: &[413],
                code: None,
            },
        ),
        // Mixed eras.
        ("batch without a session", Mode::Bare, Bytes::from(batch_of(2, ping)), INVALID),
        ("batch in a 2025-11-25 session", Mode::NewerSession, Bytes::from(batch_of(2, ping)), INVALID),
        ("2026-07-28 batch", Mode::Modern, Bytes::from(batch_of(2, modern_ping)), INVALID),
        ("session request without a session", Mode::Bare, Bytes::from_static(ping.as_bytes()), INVALID),
        (
            "initialize under a 2026-07-28 header",
            Mode::Modern,
            Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#,
            ),
            INVALID,
        ),
        (
            "initialize in a batch",
            Mode::Session,
            Bytes::from_static(
                br#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}]"#,
            ),
            Expect {
                status: &[200],
                code: Some(-32600),
            },
        ),
        (
            "2026-07-28 _meta with a 2025 version",
            Mode::Modern,
            Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-03-26"}}}"#,
            ),
            RPC_ERROR,
        ),
        (
            "2026-07-28 _meta without the headers",
            Mode::Session,
            Bytes::from_static(modern_ping.as_bytes()),
            RPC_ERROR,
        ),
        (
            "a response to a request nobody sent",
            Mode::Session,
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":"gh.9.Zm9v","result":{}}"#),
            Expect {
                status: &[400, 404, 502],
                code: None,
            },
        ),
    ];

    let base = rss_bytes();
    let mut peak = base;
    for (name, mode, body, expect) in corpus {
        let mut request = world
            .dataplane
            .http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        request = match mode {
            Mode::Bare => request,
            Mode::Session => request
                .header("mcp-session-id", legacy.session.as_ref().unwrap())
                .header("mcp-protocol-version", "2025-03-26"),
            Mode::NewerSession => request
                .header("mcp-session-id", newer.session.as_ref().unwrap())
                .header("mcp-protocol-version", "2025-11-25"),
            Mode::Modern => request.header("mcp-protocol-version", "2026-07-28"),
        };
        let response = tokio::time::timeout(Duration::from_secs(30), request.body(body).send())
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer within 30 s"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let answer = Answer::read(response).await;
        peak = peak.max(rss_bytes());
        assert!(
            expect.status.contains(&answer.status),
            "{name}: status {} ({:?})",
            answer.status,
            answer.messages
        );
        assert_rpc_error(name, &answer, expect.code);
    }

    // The other routes and methods: HTTP errors (or what the route serves), never a 5xx.
    let deep_query = format!("?{}", "a=%5B".repeat(10_000));
    let junk = Bytes::from(nested(100_000, "[", "]", ""));
    let other: Vec<(Method, String, Option<&str>, &[u16])> = vec![
        (Method::GET, url.clone(), None, &[405]),
        (Method::DELETE, url.clone(), None, &[405]),
        (Method::PUT, url.clone(), None, &[405]),
        (Method::PATCH, url.clone(), None, &[405]),
        (Method::GET, format!("{url}{deep_query}"), None, &[405]),
        (Method::POST, url.clone(), Some("not-a-token"), &[401]),
        (Method::POST, url.replace("/main/", "/nope/"), None, &[404]),
        (
            Method::POST,
            format!("{}/..%2f..%2fetc/passwd/mcp", world.dataplane.url),
            None,
            &[404],
        ),
        (
            Method::GET,
            format!(
                "{}/.well-known/oauth-protected-resource/{}/nope/mcp",
                world.dataplane.url, world.org.slug
            ),
            None,
            &[404],
        ),
        (
            Method::POST,
            format!(
                "{}/.well-known/oauth-protected-resource/{}/main/mcp",
                world.dataplane.url, world.org.slug
            ),
            None,
            &[404, 405],
        ),
        (
            Method::POST,
            format!(
                "{}/.well-known/gatehouse/caller-assertion-jwks.json",
                world.dataplane.url
            ),
            None,
            &[404, 405],
        ),
        (
            Method::POST,
            format!("{}/healthz", world.dataplane.url),
            None,
            &[404, 405],
        ),
        (
            Method::POST,
            format!("{}/readyz", world.dataplane.url),
            None,
            &[404, 405],
        ),
        (
            Method::POST,
            format!("{}/metrics", world.dataplane.url),
            None,
            &[404, 405],
        ),
        (
            Method::POST,
            format!("{}/no/such/route", world.dataplane.url),
            None,
            &[404],
        ),
    ];
    for (method, target, bearer, statuses) in other {
        let response = world
            .dataplane
            .http
            .request(method.clone(), &target)
            .bearer_auth(bearer.unwrap_or(&token))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(junk.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
        let status = response.status().as_u16();
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let text = response.text().await.unwrap_or_default();
        assert!(
            statuses.contains(&status),
            "{method} {}: status {status} ({text:.200})",
            &target[..target.len().min(120)]
        );
        if is_json && target.ends_with("/mcp") && !target.contains("/.well-known/") {
            let value: Value = serde_json::from_str(&text).unwrap();
            assert!(value["error"]["code"].is_i64(), "{method} {target}: {value}");
        }
        peak = peak.max(rss_bytes());
    }

    let grown = peak.saturating_sub(base);
    assert!(grown < 64 << 20, "RSS grew by {} MB", grown >> 20);
    // The dataplane still serves, and nothing panicked on its threads.
    let fine = modern.call(99, "tools/list", json!({})).await;
    assert!(fine.response(99)["result"]["tools"].is_array());
    let panics = panics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(panics.is_empty(), "panics on dataplane threads: {panics:#?}");
}

/// A JSON answer on the MCP endpoint is a JSON-RPC error object (or a batch of them) with the
/// expected code.
fn assert_rpc_error(name: &str, answer: &Answer, code: Option<i64>) {
    let Some(body) = answer.messages.first() else {
        assert!(
            code.is_none(),
            "{name}: expected a JSON-RPC error {code:?}, got no JSON body ({})",
            answer.status
        );
        return;
    };
    let errors: Vec<&Value> = match body.as_array() {
        Some(batch) => batch.iter().collect(),
        None => vec![body],
    };
    for error in errors {
        assert_eq!(error["jsonrpc"], "2.0", "{name}: {error}");
        let found = error["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: not a JSON-RPC error: {error}"));
        if let Some(code) = code {
            assert_eq!(found, code, "{name}: {error}");
        }
    }
}
