//! `GET /orgs/{org}/audit/verify` with a range: the bounds are validated at their fields, and the
//! answer says which range was verified (the chain's own cases are in the db tests).

use reqwest::Method;
use serde_json::Value;

use crate::account_support::assert_problem;
use crate::helpers::TestApp;

#[tokio::test]
async fn verify_takes_a_validated_range_and_reports_it() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@ranges.test").await;
    app.org(&owner, "ranges").await;
    // A few entries: each settings change is one.
    for value in [true, false, true, false] {
        let changed = owner
            .request(Method::PATCH, "/api/v1/orgs/ranges/settings")
            .json(&serde_json::json!({"log_tool_arguments": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);
    }
    let verify = |query: &str| {
        owner
            .get(&format!("/api/v1/orgs/ranges/audit/verify{query}"))
            .send()
    };

    let whole: Value = verify("").await.unwrap().json().await.unwrap();
    assert_eq!(whole["valid"], true, "{whole}");
    assert_eq!(
        (whole["from_seq"].as_i64(), whole["to_seq"].as_i64()),
        (Some(1), whole["entries"].as_i64())
    );
    let range: Value = verify("?from_seq=2&to_seq=3")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &range["valid"],
            &range["entries"],
            &range["from_seq"],
            &range["to_seq"]
        ),
        (
            &Value::Bool(true),
            &Value::from(2),
            &Value::from(2),
            &Value::from(3)
        ),
        "{range}"
    );
    let open_end: Value = verify("?from_seq=3").await.unwrap().json().await.unwrap();
    assert_eq!(open_end["to_seq"], whole["to_seq"], "{open_end}");

    for (query, field) in [
        ("?from_seq=0", "from_seq"),
        ("?to_seq=-1", "to_seq"),
        ("?from_seq=3&to_seq=2", "to_seq"),
        ("?from_seq=abc", "from_seq"),
    ] {
        let body = assert_problem(verify(query).await.unwrap(), 400, None).await;
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let unknown = verify("?since=1").await.unwrap();
    assert_eq!(unknown.status(), 400);
}
