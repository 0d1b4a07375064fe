//! Client ID Metadata Documents: the client id is an https URL; the document is fetched through
//! the SSRF guard, validated, cached per its HTTP caching headers, and named on the consent page.

use gatehouse_test_support::tls::{Document, HttpsServer, TestCa};
use serde_json::json;

use super::fixture::*;
use crate::helpers::TestApp;

async fn app_trusting(ca: &TestCa) -> TestApp {
    let ca_file = ca.ca_pem.display().to_string();
    TestApp::spawn_with(&[
        ("egress.allow_private_networks", "true"),
        ("oauth.metadata_document_ca_file", &ca_file),
    ])
    .await
}

#[tokio::test]
async fn metadata_document_clients_authorize_and_are_cached() {
    let ca = TestCa::new();
    let docs = HttpsServer::start(&ca).await;
    let app = app_trusting(&ca).await;
    let fx = setup(&app, "o@cimd.test", "cimd").await;
    let client_id = docs.url("/oauth/client.json");
    docs.put(
        "/oauth/client.json",
        Document {
            headers: vec![("cache-control".into(), "public, max-age=3600".into())],
            body: json!({"client_id": client_id, "client_name": "Doc Client", "redirect_uris": [REDIRECT]})
                .to_string(),
        },
    );
    let meta: serde_json::Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let pkce = Pkce::new();
    let mut browser = Browser::signed_in(&app, &fx.owner);
    let page = browser
        .get(&authorize_path(
            &client_id,
            REDIRECT,
            &pkce.challenge,
            &fx.resource,
            None,
            "s",
        ))
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Doc Client") && html.contains("metadata document"),
        "the consent page names the client"
    );
    assert!(
        html.contains("only redirects to this computer"),
        "localhost-only redirects are flagged"
    );
    let location = browser
        .authorize(
            &authorize_path(&client_id, REDIRECT, &pkce.challenge, &fx.resource, None, "s"),
            "",
        )
        .await;
    let (status, tokens) = token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &query_of(&location)["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let claims = verifier(&app)
        .await
        .verify(tokens["access_token"].as_str().unwrap(), Some(&fx.resource))
        .unwrap();
    assert_eq!(claims.client_id, client_id);
    // Fetched once: the cache (max-age=3600) served the token request and the second authorize.
    assert_eq!(docs.hits("/oauth/client.json"), 1);
}

#[tokio::test]
async fn invalid_metadata_documents_are_refused_without_redirect() {
    let ca = TestCa::new();
    let docs = HttpsServer::start(&ca).await;
    let app = app_trusting(&ca).await;
    let fx = setup(&app, "o@cimd2.test", "cimd2").await;
    let pkce = Pkce::new();
    let cases = [
        (
            "/wrong-id.json",
            json!({"client_id": "https://elsewhere.example/c.json", "redirect_uris": [REDIRECT]}),
        ),
        (
            "/secret.json",
            json!({"client_id": docs.url("/secret.json"), "client_secret": "x", "redirect_uris": [REDIRECT]}),
        ),
        (
            "/http-redirect.json",
            json!({"client_id": docs.url("/http-redirect.json"), "redirect_uris": ["http://evil.example/cb"]}),
        ),
    ];
    for (path, body) in &cases {
        docs.put(
            path,
            Document {
                headers: vec![],
                body: body.to_string(),
            },
        );
    }
    for (path, _) in &cases {
        let resp = app
            .http
            .get(app.url(&authorize_path(
                &docs.url(path),
                REDIRECT,
                &pkce.challenge,
                &fx.resource,
                None,
                "s",
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert!(resp.headers().get("location").is_none());
    }
    // Missing document, and plain http client ids.
    for client_id in [
        docs.url("/missing.json"),
        format!("http://127.0.0.1:{}/c.json", docs.port),
    ] {
        let resp = app
            .http
            .get(app.url(&authorize_path(
                &client_id,
                REDIRECT,
                &pkce.challenge,
                &fx.resource,
                None,
                "s",
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{client_id}");
    }
}

/// The SSRF guard applies: without the private-network allowance a loopback document is never
/// fetched.
#[tokio::test]
async fn metadata_documents_go_through_the_ssrf_guard() {
    let ca = TestCa::new();
    let docs = HttpsServer::start(&ca).await;
    let ca_file = ca.ca_pem.display().to_string();
    let app = TestApp::spawn_with(&[("oauth.metadata_document_ca_file", &ca_file)]).await;
    let fx = setup(&app, "o@cimd3.test", "cimd3").await;
    let client_id = docs.url("/c.json");
    docs.put(
        "/c.json",
        Document {
            headers: vec![],
            body: json!({"client_id": client_id, "redirect_uris": [REDIRECT]}).to_string(),
        },
    );
    let resp = app
        .http
        .get(app.url(&authorize_path(
            &client_id,
            REDIRECT,
            &Pkce::new().challenge,
            &fx.resource,
            None,
            "s",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        docs.hits("/c.json"),
        0,
        "a loopback destination must not be contacted"
    );
}

/// Metadata document fetches are rate-limited per client IP like dynamic registration, against
/// the same allowance: past it, no document is fetched (429 with `Retry-After`), and neither a
/// further fetch nor a dynamic registration is admitted. A cached document is not a fetch.
#[tokio::test]
async fn metadata_document_fetches_are_rate_limited_like_registration() {
    let ca = TestCa::new();
    let docs = HttpsServer::start(&ca).await;
    let ca_file = ca.ca_pem.display().to_string();
    let app = TestApp::spawn_with(&[
        ("egress.allow_private_networks", "true"),
        ("oauth.metadata_document_ca_file", &ca_file),
        ("oauth.dynamic_registration_per_hour", "3"),
    ])
    .await;
    let fx = setup(&app, "o@cimd4.test", "cimd4").await;
    let pkce = Pkce::new();
    let authorize = |client_id: String| {
        let path = authorize_path(&client_id, REDIRECT, &pkce.challenge, &fx.resource, None, "s");
        let request = app.http.get(app.url(&path));
        async move { request.send().await.unwrap() }
    };
    let paths: Vec<String> = (0..5).map(|i| format!("/client-{i}.json")).collect();
    for path in &paths {
        docs.put(
            path,
            Document {
                headers: vec![("cache-control".into(), "max-age=3600".into())],
                body: json!({"client_id": docs.url(path), "redirect_uris": [REDIRECT]}).to_string(),
            },
        );
    }
    for path in &paths[..3] {
        let resp = authorize(docs.url(path)).await;
        assert_eq!(resp.status(), 200, "{path} is within the allowance");
        assert_eq!(docs.hits(path), 1);
    }
    // Cached: served without a fetch, so not counted.
    assert_eq!(authorize(docs.url(&paths[0])).await.status(), 200);
    let resp = authorize(docs.url(&paths[3])).await;
    assert_eq!(resp.status(), 429, "a fourth fetch within the hour is refused");
    assert!(resp.headers().contains_key("retry-after"));
    assert!(resp.headers().get("location").is_none());
    assert_eq!(docs.hits(&paths[3]), 0, "the refused document is never fetched");
    // The token endpoint resolves clients the same way.
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &docs.url(&paths[4])),
            ("code", "x"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(docs.hits(&paths[4]), 0);
    // One allowance: dynamic registration from the same address is spent too.
    let resp = app
        .http
        .post(app.url("/oauth/register"))
        .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
}
