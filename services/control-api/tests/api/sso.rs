//! SSO against a real OpenID Connect provider (npm `oidc-provider`) started by each test: the
//! whole authorization code + PKCE flow driven over HTTP, just-in-time membership for verified
//! emails of allowed domains the org verified, and ID tokens with a wrong nonce, issuer or
//! audience refused. What the provider may do for domains the org did not verify is in
//! `sso_accounts`.

use std::collections::BTreeMap;

use gatehouse_core::ids::OrgId;
use gatehouse_test_support::node_tools::{OidcAccount, OidcMode, OidcProvider};
use serde_json::{Value, json};

use crate::account_support::{assert_problem, audit_actions, session_cookie_of};
use crate::helpers::{TestApp, TestUser};

pub(crate) fn account(email: &str, verified: bool) -> OidcAccount {
    OidcAccount {
        email: email.to_owned(),
        sub: format!("sub-{}", email.replace(['@', '.'], "-")),
        email_verified: verified,
        name: "Test Person".into(),
    }
}

fn accounts() -> Vec<OidcAccount> {
    vec![
        account("alice@acme.test", true),
        account("eve@elsewhere.test", true),
        account("unverified@acme.test", false),
        account("taken@acme.test", true),
    ]
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await
}

/// An org owned by a fresh user, with SSO configured through the API.
async fn org_with_sso(
    app: &TestApp,
    provider: &OidcProvider,
    issuer: &str,
    client_id: &str,
) -> (TestUser, String, OrgId) {
    let owner = app.user("owner@acme.test").await;
    let (slug, org) = app.org(&owner, "acme").await;
    let resp = owner
        .request(reqwest::Method::PUT, "/api/v1/orgs/acme/sso")
        .json(&json!({
            "issuer_url": issuer,
            "client_id": client_id,
            "client_secret": provider.client_secret,
            "allowed_domains": ["ACME.test"],
            "jit_role": "viewer",
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed_domains"], json!(["acme.test"]));
    verified_domain(app, org, "acme.test").await;
    assert_eq!(body["client_secret_set"], true);
    assert!(
        body.get("client_secret").is_none(),
        "the secret is never returned"
    );
    assert_eq!(body["redirect_uri"], app.url("/api/v1/sso/callback"));
    (owner, slug, org)
}

/// Records `domain` as verified by `org` (what a DNS check does; tests of the check itself are in
/// `sso_accounts`).
pub(crate) async fn verified_domain(app: &TestApp, org: OrgId, domain: &str) {
    let mut admin = app.db.admin().await;
    sqlx::query(
        "INSERT INTO org_sso_domains (org_id, domain, challenge, verified_at)
         VALUES ($1, $2, 'verified-in-the-test-setup', now())",
    )
    .bind(org)
    .bind(domain)
    .execute(&mut admin)
    .await
    .unwrap();
}

/// A browser: follows redirects by hand, keeping each host's cookies.
pub(crate) struct Browser {
    http: reqwest::Client,
    jars: BTreeMap<String, BTreeMap<String, String>>,
    /// Sends a browser's navigation `Accept` (pages first).
    pages: bool,
}

impl Browser {
    pub(crate) fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jars: BTreeMap::new(),
            pages: false,
        }
    }

    /// Navigates as a browser does: every GET asks for a page (`Accept: text/html, …`).
    pub(crate) fn pages(mut self) -> Self {
        self.pages = true;
        self
    }

    pub(crate) async fn get(&mut self, url: &str) -> reqwest::Response {
        let parsed = url::Url::parse(url).unwrap();
        let origin = parsed.origin().ascii_serialization();
        let jar = self.jars.entry(origin).or_default();
        let mut req = self.http.get(url);
        if self.pages {
            req = req.header(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            );
        }
        if !jar.is_empty() {
            let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", cookie.join("; "));
        }
        let resp = req.send().await.unwrap();
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                let expired = set.to_ascii_lowercase().contains("max-age=0") || v.is_empty();
                if expired {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        resp
    }

    /// Posts a form to `url` with this origin's cookies.
    pub(crate) async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let origin = url::Url::parse(url).unwrap().origin().ascii_serialization();
        let jar = self.jars.entry(origin).or_default();
        let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.http
            .post(url)
            .header("cookie", cookie.join("; "))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Starts an SSO login at Gatehouse, logs in at the provider as `login_hint`, and returns
    /// Gatehouse's answer to the callback.
    pub(crate) async fn sso_login(
        &mut self,
        app: &TestApp,
        slug: &str,
        return_to: &str,
        login_hint: &str,
    ) -> reqwest::Response {
        let start = app.url(&format!(
            "/api/v1/sso/{slug}/start?return_to={}",
            urlencode(return_to)
        ));
        let resp = self.get(&start).await;
        assert_eq!(resp.status(), 302, "start: {}", resp.text().await.unwrap());
        let mut location = location(&resp, &start);
        location.push_str(&format!("&login_hint={}", urlencode(login_hint)));
        let callback_prefix = app.url("/api/v1/sso/callback");
        for _ in 0..10 {
            if location.starts_with(&callback_prefix) {
                return self.get(&location).await;
            }
            let resp = self.get(&location).await;
            assert!(
                resp.status().is_redirection(),
                "the provider answered {} at {location}: {}",
                resp.status(),
                resp.text().await.unwrap()
            );
            location = self::location(&resp, &location);
        }
        panic!("the provider never redirected back to Gatehouse");
    }
}

pub(crate) fn location(resp: &reqwest::Response, base: &str) -> String {
    let raw = resp
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap();
    url::Url::parse(base).unwrap().join(raw).unwrap().to_string()
}

pub(crate) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) async fn user_count(app: &TestApp, email: &str) -> i64 {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn sso_login_provisions_members_of_allowed_domains() {
    let app = spawn().await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &accounts()).await;
    let (_, slug, org) = org_with_sso(&app, &provider, &provider.issuer, &provider.client_id).await;

    let mut browser = Browser::new();
    let resp = browser
        .sso_login(
            &app,
            &slug,
            "/oauth/authorize?client_id=x&state=y",
            "alice@acme.test",
        )
        .await;
    assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
    assert_eq!(resp.headers()["location"], "/oauth/authorize?client_id=x&state=y");
    let token = session_cookie_of(&resp).expect("a console session");
    let alice_cookie = format!("gatehouse_session={token}");
    let session: Value = app
        .http
        .get(app.url("/api/v1/session"))
        .header("cookie", &alice_cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["user"]["email"], "alice@acme.test");
    assert_eq!(session["auth_method"], "sso");
    assert_eq!(session["user"]["has_password"], false);
    let orgs: Vec<Value> = app
        .http
        .get(app.url("/api/v1/orgs"))
        .header("cookie", &alice_cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["slug"], "acme");
    assert_eq!(orgs[0]["role"], "viewer", "the org's JIT role");

    // A second login finds the linked identity: no second user, no second membership.
    let resp = Browser::new()
        .sso_login(&app, &slug, "/", "alice@acme.test")
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(user_count(&app, "alice@acme.test").await, 1);
    let actions = audit_actions(&app, org).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "member.added").count(),
        1,
        "{actions:?}"
    );
    assert!(actions.contains(&"sso.configured".to_owned()), "{actions:?}");
    assert!(actions.contains(&"sso.identity_linked".to_owned()), "{actions:?}");
    assert_eq!(
        actions.iter().filter(|a| *a == "user.login").count(),
        2,
        "{actions:?}"
    );
}

#[tokio::test]
async fn sso_refuses_other_domains_and_unverified_emails_and_links_existing_accounts() {
    let app = spawn().await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &accounts()).await;
    let (_, slug, _) = org_with_sso(&app, &provider, &provider.issuer, &provider.client_id).await;
    app.user("taken@acme.test").await;

    let resp = Browser::new()
        .sso_login(&app, &slug, "/", "eve@elsewhere.test")
        .await;
    assert!(session_cookie_of(&resp).is_none());
    assert_problem(resp, 403, Some("forbidden")).await;
    assert_eq!(user_count(&app, "eve@elsewhere.test").await, 0);

    let resp = Browser::new()
        .sso_login(&app, &slug, "/", "unverified@acme.test")
        .await;
    assert_problem(resp, 403, Some("forbidden")).await;
    assert_eq!(user_count(&app, "unverified@acme.test").await, 0);

    // An existing account with an address of a domain the org verified is linked and signed in.
    let resp = Browser::new()
        .sso_login(&app, &slug, "/", "taken@acme.test")
        .await;
    assert_eq!(resp.status(), 302);
    assert!(session_cookie_of(&resp).is_some());
    assert_eq!(user_count(&app, "taken@acme.test").await, 1);
}

/// Starts a provider in `mode`, configures the org for it, logs in, and expects a refusal that
/// mentions `reason`, with no session and no user created.
async fn refused(mode: OidcMode, reason: &str) {
    let app = spawn().await;
    let provider = OidcProvider::start(mode, &app.url("/api/v1/sso/callback"), &accounts()).await;
    let (issuer, client_id) = match mode {
        OidcMode::WrongIssuer => (format!("{}/other", provider.issuer), provider.client_id.clone()),
        OidcMode::WrongAudience => (provider.issuer.clone(), format!("{}-alias", provider.client_id)),
        _ => (provider.issuer.clone(), provider.client_id.clone()),
    };
    let (_, slug, _) = org_with_sso(&app, &provider, &issuer, &client_id).await;
    let resp = Browser::new()
        .sso_login(&app, &slug, "/", "alice@acme.test")
        .await;
    assert!(
        session_cookie_of(&resp).is_none(),
        "no session for a refused ID token"
    );
    let body = assert_problem(resp, 400, Some("bad_request")).await;
    let detail = body["detail"].as_str().unwrap().to_ascii_lowercase();
    assert!(detail.contains("id token"), "{detail}");
    assert!(detail.contains(reason), "expected {reason:?} in {detail}");
    eprintln!("refused as expected: {detail}");
    assert_eq!(user_count(&app, "alice@acme.test").await, 0);
}

#[tokio::test]
async fn sso_refuses_an_id_token_with_a_wrong_nonce() {
    refused(OidcMode::WrongNonce, "nonce").await;
}

#[tokio::test]
async fn sso_refuses_an_id_token_from_another_issuer() {
    refused(OidcMode::WrongIssuer, "issuer").await;
}

#[tokio::test]
async fn sso_refuses_an_id_token_for_another_audience() {
    refused(OidcMode::WrongAudience, "audience").await;
}

#[tokio::test]
async fn sso_state_and_return_to_are_checked() {
    let app = spawn().await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &accounts()).await;
    let (_, slug, _) = org_with_sso(&app, &provider, &provider.issuer, &provider.client_id).await;
    for bad in ["https://evil.example/", "//evil.example/x", "/\\evil.example"] {
        let resp = app
            .http
            .get(app.url(&format!("/api/v1/sso/{slug}/start?return_to={}", urlencode(bad))))
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 400, Some("invalid_field")).await;
        assert_eq!(body["field"], "return_to");
    }
    // A callback without the browser's state cookie, or with another state, is refused.
    let resp = app
        .http
        .get(app.url("/api/v1/sso/callback?code=abc&state=xyz"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, Some("bad_request")).await;
    let mut browser = Browser::new();
    let start = app.url(&format!("/api/v1/sso/{slug}/start"));
    let resp = browser.get(&start).await;
    assert_eq!(resp.status(), 302);
    let resp = browser
        .get(&app.url("/api/v1/sso/callback?code=abc&state=forged"))
        .await;
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "state");
    // Unknown org and an org without SSO look the same.
    let resp = app
        .http
        .get(app.url("/api/v1/sso/no-such-org/start"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, Some("not_found")).await;
}

#[tokio::test]
async fn configuring_sso_with_a_bad_issuer_is_refused() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@acme.test").await;
    app.org(&owner, "acme").await;
    // Loopback is not allowed by the default egress policy.
    let resp = owner
        .request(reqwest::Method::PUT, "/api/v1/orgs/acme/sso")
        .json(&json!({"issuer_url": "https://127.0.0.1:9/", "client_id": "c", "client_secret": "s"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "issuer_url");
    let resp = owner
        .request(reqwest::Method::PUT, "/api/v1/orgs/acme/sso")
        .json(&json!({"issuer_url": "http://example.com/", "client_id": "c", "client_secret": "s"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "issuer_url");
    let mut admin = app.db.admin().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM org_sso_providers")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
