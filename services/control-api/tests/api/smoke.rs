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

/// The web console, embedded at build time, is served at `/`: any app route gets `index.html`
/// with a CSP that allows no inline script, its hashed scripts are cached for good, and paths
/// under `/api` stay problem documents.
#[tokio::test]
async fn the_console_is_served_at_the_root_and_the_api_stays_under_api() {
    let app = TestApp::spawn().await;
    let page = app.http.get(app.url("/orgs/acme/members")).send().await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "the console is built into this binary (needs Node.js)"
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap();
    assert_eq!(script_src.trim(), "script-src 'self'", "{csp}");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains("<div id=\"root\"></div>"), "{html}");
    assert!(!html.contains("<script>"), "inline script in {html}");
    let script = html
        .split("src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .find(|src| src.starts_with("/assets/") && src.ends_with(".js"))
        .expect("an entry script under /assets/");
    let js = app
        .http
        .get(app.url(script))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let api = app
        .http
        .get(app.url("/api/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(api.headers()["content-type"], "application/problem+json");
}
