//! Header validation (2026-07-28): the `Mcp-*` headers must match the body; a mismatch is refused
//! before anything is forwarded upstream.

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn header_body_mismatches_are_rejected_and_never_forwarded() {
    let world = World::recording().await;
    let client = world.client("alice", "fx:all", "2026-07-28");
    let call = client.tool_call(1, "test_simple_text", json!({}));
    let routed = client.tool_call(2, "test_routed_by_header", json!({"region": "eu-west"}));
    let forwarded_before = world.fixture.headers_snapshot().len();
    let calls_before = world.fixture.tool_calls();
    type Case<'a> = (&'a str, &'a Value, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "method mismatch",
            &call,
            vec![("mcp-method", "tools/list")],
            vec!["mcp-method"],
        ),
        ("method missing", &call, vec![], vec!["mcp-method"]),
        (
            "name mismatch",
            &call,
            vec![("mcp-name", "test_error_handling")],
            vec!["mcp-name"],
        ),
        ("name missing", &call, vec![], vec!["mcp-name"]),
        (
            "name bad base64",
            &call,
            vec![("mcp-name", "=?base64?!!!?=")],
            vec!["mcp-name"],
        ),
        (
            "name base64 of another",
            &call,
            vec![("mcp-name", "=?base64?dGVzdF9lcnJvcl9oYW5kbGluZw==?=")],
            vec!["mcp-name"],
        ),
        (
            "version header mismatch",
            &call,
            vec![("mcp-protocol-version", "2025-11-25")],
            vec!["mcp-protocol-version"],
        ),
        (
            "param mismatch",
            &routed,
            vec![("mcp-param-region", "us-east")],
            vec![],
        ),
        ("param missing", &routed, vec![], vec!["mcp-param-region"]),
    ];
    for (case, body, set, remove) in cases {
        // The headers a correct client sends (the client's own), then the case's changes.
        let mut request = client.builder(body).build().unwrap();
        let headers = request.headers_mut();
        if body["params"]["name"] == "test_routed_by_header" {
            headers.insert("mcp-param-region", "eu-west".parse().unwrap());
        }
        for name in remove {
            headers.remove(name);
        }
        for (k, v) in set {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let r = client.http.execute(request).await.unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"]["code"], -32020, "{case}: {answer}");
    }
    // Raw bytes that are not header-safe (CR/LF inside, non-ASCII) never pass either.
    for raw in [&b"test_simple_text\xff"[..], "tést_simple_text".as_bytes()] {
        let mut b = client.builder(&call);
        b = b.header("mcp-name", reqwest::header::HeaderValue::from_bytes(raw).unwrap());
        let r = b.send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
    assert_eq!(world.fixture.tool_calls(), calls_before, "nothing was forwarded");
    assert_eq!(
        world.fixture.headers_snapshot().len(),
        forwarded_before,
        "no request reached the upstream"
    );
    // The matching request goes through.
    let answer = client.send(&call).await;
    assert_eq!(answer.status, 200, "{:?}", answer.messages);
}
