//! The authorization server's login page offers the org's SSO (when configured): the provider
//! signs the member in (a real `oidc-provider`), Gatehouse brings the browser back to the
//! authorization request, and the flow goes on to consent and a code.

use std::collections::BTreeMap;

use gatehouse_test_support::node_tools::{OidcAccount, OidcMode, OidcProvider};
use serde_json::json;

use super::fixture::*;
use crate::helpers::TestApp;

/// A browser keeping each origin's cookies and following redirects by hand.
struct MultiOriginBrowser {
    http: reqwest::Client,
    jars: BTreeMap<String, BTreeMap<String, String>>,
}

impl MultiOriginBrowser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jars: BTreeMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> reqwest::Response {
        let origin = url::Url::parse(url).unwrap().origin().ascii_serialization();
        let jar = self.jars.entry(origin).or_default();
        let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let resp = req.header("cookie", cookie.join("; ")).send().await.unwrap();
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            if let Some((k, v)) = set.split(';').next().unwrap().split_once('=') {
                if v.is_empty() || set.to_ascii_lowercase().contains("max-age=0") {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        resp
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let req = self.http.get(url);
        self.send(req, url).await
    }

    async fn post_form(&mut self, url: &str, fields: &[(String, String)]) -> reqwest::Response {
        let req = self.http.post(url).form(fields);
        self.send(req, url).await
    }
}

fn join(base: &str, location: &str) -> String {
    url::Url::parse(base).unwrap().join(location).unwrap().to_string()
}

#[tokio::test]
async fn sso_sign_in_leads_back_to_consent_and_a_code() {
    let app = TestApp::spawn_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await;
    let provider = OidcProvider::start(
        OidcMode::Normal,
        &app.url("/api/v1/sso/callback"),
        &[OidcAccount {
            email: "alice@ssoorg.test".into(),
            sub: "alice-sub".into(),
            email_verified: true,
            name: "Alice".into(),
        }],
    )
    .await;
    let fx = setup(&app, "owner@ssoorg.test", "ssoorg").await;
    let resp = fx
        .owner
        .request(reqwest::Method::PUT, &format!("/api/v1/orgs/{}/sso", fx.org_slug))
        .json(&json!({
            "issuer_url": provider.issuer,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "allowed_domains": ["ssoorg.test"],
            "jit_role": "developer",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    crate::sso::verified_domain(&app, fx.org_id, "ssoorg.test").await;

    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let mut browser = MultiOriginBrowser::new();
    let start = app.url(&authorize_path(
        &client,
        REDIRECT,
        &pkce.challenge,
        &fx.resource,
        Some("orders:read"),
        "sso",
    ));
    let page = browser.get(&start).await.text().await.unwrap();
    let sso_href = page
        .split("<a href=\"")
        .find(|p| p.starts_with("/api/v1/sso/"))
        .and_then(|p| p.split('"').next())
        .expect("the login page offers the org's SSO")
        .replace("&amp;", "&");
    // Through the provider (its login is driven by `login_hint`) and back.
    let mut url = app.url(&sso_href);
    let mut resp = browser.get(&url).await;
    let mut hinted = false;
    for _ in 0..15 {
        if !resp.status().is_redirection() {
            break;
        }
        let mut next = join(&url, resp.headers()["location"].to_str().unwrap());
        if !hinted && next.starts_with(&provider.issuer) {
            next.push_str("&login_hint=alice%40ssoorg.test");
            hinted = true;
        }
        if next.starts_with(REDIRECT) {
            url = next;
            break;
        }
        url = next;
        resp = browser.get(&url).await;
    }
    // Back at /authorize with a console session: the consent page.
    assert!(url.starts_with(&app.url("/authorize?")), "SSO returned to {url}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("alice@ssoorg.test"), "signed in as the SSO user");
    let (action, mut fields) = form(&html);
    fields.push(("decision".into(), "approve".into()));
    let done = browser.post_form(&app.url(&action), &fields).await;
    let location = done.headers()["location"].to_str().unwrap().to_owned();
    let q = query_of(&location);
    assert_eq!(q["state"], "sso");
    let (status, tokens) = redeem(&app, &client, &pkce, &q["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    let claims = verifier(&app)
        .await
        .verify(tokens["access_token"].as_str().unwrap(), Some(&fx.resource))
        .unwrap();
    assert_eq!(claims.scope, "orders:read");
}
