//! Which accounts an org's identity provider may create or sign in to (review finding H1): a
//! provider run by any org admin can assert any email, so a global account is created (or an
//! existing one linked) only for a domain the org proved it controls through DNS, or after the
//! address's owner followed a link mailed to it; the answer never tells whether the account
//! existed; and a password reset drops every SSO link of the account.

use gatehouse_core::ids::OrgId;
use gatehouse_test_support::dns::DnsServer;
use gatehouse_test_support::node_tools::{MailServer, OidcAccount, OidcMode, OidcProvider};
use serde_json::{Value, json};

use crate::account_support::{assert_problem, audit_actions, link_token, post_json, session_cookie_of};
use crate::helpers::{TestApp, TestUser};
use crate::sso::{Browser, account, user_count};

/// An app that reaches the test provider on loopback, sends mail to a real SMTP server and
/// resolves DNS through the test server `dns` (when given).
async fn spawn(dns: Option<&DnsServer>) -> (TestApp, MailServer) {
    let mail = MailServer::start().await;
    let smtp = mail.smtp_url();
    let nameservers = dns.map(|d| format!("[\"{}\"]", d.addr));
    let mut overrides: Vec<(&str, &str)> = vec![
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
        ("mail.smtp_url", &smtp),
    ];
    if let Some(ns) = &nameservers {
        overrides.push(("sso.dns_nameservers", ns));
    }
    (TestApp::spawn_with(&overrides).await, mail)
}

/// Org `slug` owned by a fresh user, with SSO through `provider` for `domains`.
async fn org_with_sso(
    app: &TestApp,
    provider: &OidcProvider,
    owner_email: &str,
    slug: &str,
    domains: &[&str],
) -> (TestUser, OrgId) {
    let owner = app.user(owner_email).await;
    let (_, org) = app.org(&owner, slug).await;
    let resp = owner
        .request(reqwest::Method::PUT, &format!("/api/v1/orgs/{slug}/sso"))
        .json(&json!({
            "issuer_url": provider.issuer,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "allowed_domains": domains,
            "jit_role": "viewer",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    (owner, org)
}

async fn provider(app: &TestApp, accounts: &[OidcAccount]) -> OidcProvider {
    OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), accounts).await
}

/// SSO links of `org`, as (subject, user email).
async fn links(app: &TestApp, org: OrgId) -> Vec<(String, String)> {
    let mut admin = app.db.admin().await;
    sqlx::query_as(
        "SELECT i.subject, u.email FROM sso_identities i JOIN users u ON u.id = i.user_id
          WHERE i.org_id = $1 ORDER BY 1",
    )
    .bind(org)
    .fetch_all(&mut admin)
    .await
    .unwrap()
}

/// The email of the session a response set.
async fn session_email(app: &TestApp, resp: &reqwest::Response) -> Option<String> {
    let token = session_cookie_of(resp)?;
    let session: Value = app
        .http
        .get(app.url("/api/v1/session"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["user"]["email"].as_str().map(str::to_owned)
}

/// Where a page's `Refresh` header (`0;url=…`) sends the browser, as an absolute URL.
fn refresh_target(resp: &reqwest::Response, base: &str) -> String {
    let raw = resp
        .headers()
        .get("refresh")
        .expect("a Refresh header")
        .to_str()
        .unwrap();
    let target = raw.split_once("url=").expect("0;url=…").1;
    url::Url::parse(base).unwrap().join(target).unwrap().to_string()
}

/// Follows the confirmation link of the last mail to `to`: opens the page, submits its form;
/// returns the final response (the redirect back to the org's SSO).
async fn follow_confirmation(app: &TestApp, mail: &MailServer, to: &str, nth: usize) -> reqwest::Response {
    let message = mail.wait_for_nth(to, nth).await;
    let token = link_token(&message, "/api/v1/sso/confirm");
    let link = message.link_containing("/api/v1/sso/confirm").unwrap();
    assert!(link.starts_with(&app.base), "{link}");
    let mut browser = Browser::new();
    let page = browser.get(&link).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<form"), "{html}");
    browser
        .post_form(&app.url("/api/v1/sso/confirm"), &[("token", &token)])
        .await
}

/// A browser navigates through SSO (it asks for pages): it comes back to the console's login
/// page with what became of the login, never to a JSON document; an API client still gets the
/// problem or the message.
#[tokio::test]
async fn a_browser_comes_back_to_the_login_page_with_what_happened() {
    let (app, mail) = spawn(None).await;
    let idp = provider(&app, &[account("ceo@victim.test", true)]).await;
    org_with_sso(&app, &idp, "owner@victim.test", "victim", &["victim.test"]).await;
    let resp = Browser::new()
        .pages()
        .sso_login(&app, "victim", "/after", "ceo@victim.test")
        .await;
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    assert_eq!(resp.headers()["location"], "/login?sso=confirm_by_mail");
    assert!(session_cookie_of(&resp).is_none());
    mail.wait_for_nth("ceo@victim.test", 1).await;

    let start = app.url("/api/v1/sso/no-such-org/start");
    let resp = Browser::new().pages().get(&start).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login?sso_error=not_found");
    let resp = Browser::new().get(&start).await;
    assert_problem(resp, 404, Some("not_found")).await;

    // A callback without this browser's login (expired, replayed) is refused the same way.
    let callback = app.url("/api/v1/sso/callback?state=x&code=y");
    let resp = Browser::new().pages().get(&callback).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login?sso_error=bad_request");
}

/// H1, reproduced: org `evil` configures its own provider for `victim.test`, which it never
/// proved it controls, and the provider asserts `ceo@victim.test`. No account, no link, no
/// session.
#[tokio::test]
async fn an_unverified_domain_creates_no_account_and_no_link() {
    let (app, _mail) = spawn(None).await;
    let idp = provider(&app, &[account("ceo@victim.test", true)]).await;
    let (_, evil) = org_with_sso(&app, &idp, "mallory@evil.test", "evil", &["victim.test"]).await;
    let resp = Browser::new()
        .sso_login(&app, "evil", "/", "ceo@victim.test")
        .await;
    assert!(
        session_cookie_of(&resp).is_none(),
        "the attacker's provider signed someone in"
    );
    assert_eq!(
        user_count(&app, "ceo@victim.test").await,
        0,
        "an account was created for an address nobody proved"
    );
    assert!(links(&app, evil).await.is_empty(), "an SSO link was created");
}

/// For a domain the org has not verified, the address's owner proves it by following a mailed
/// link; the account (and link and membership) exists only after that, and the next SSO login
/// signs them in.
#[tokio::test]
async fn the_mail_round_trip_creates_the_account_only_when_the_link_is_followed() {
    let (app, mail) = spawn(None).await;
    let idp = provider(&app, &[account("ceo@victim.test", true)]).await;
    let (_, org) = org_with_sso(&app, &idp, "owner@victim.test", "victim", &["victim.test"]).await;
    let resp = Browser::new()
        .sso_login(&app, "victim", "/after", "ceo@victim.test")
        .await;
    assert!(session_cookie_of(&resp).is_none());
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    assert_eq!(user_count(&app, "ceo@victim.test").await, 0);
    assert!(links(&app, org).await.is_empty());

    let resp = follow_confirmation(&app, &mail, "ceo@victim.test", 1).await;
    assert_eq!(resp.status(), 200);
    let back = refresh_target(&resp, &app.base);
    assert!(back.starts_with(&app.url("/api/v1/sso/victim/start")), "{back}");
    assert_eq!(user_count(&app, "ceo@victim.test").await, 1);
    assert_eq!(links(&app, org).await.len(), 1);
    // The link works once: its page and its form are refused now.
    let message = mail.wait_for_nth("ceo@victim.test", 1).await;
    let link = message.link_containing("/api/v1/sso/confirm").unwrap();
    assert_problem(Browser::new().get(&link).await, 400, Some("invalid_field")).await;
    let token = link_token(&message, "/api/v1/sso/confirm");
    let again = Browser::new()
        .post_form(&app.url("/api/v1/sso/confirm"), &[("token", &token)])
        .await;
    assert_problem(again, 400, Some("invalid_field")).await;

    let resp = Browser::new()
        .sso_login(&app, "victim", "/after", "ceo@victim.test")
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/after");
    assert_eq!(
        session_email(&app, &resp).await.as_deref(),
        Some("ceo@victim.test")
    );
    let actions = audit_actions(&app, org).await;
    for action in ["sso.link_requested", "sso.identity_linked", "member.added"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

/// The SSO answer is the same whether or not the address already has an account (it was `409
/// sso_account_exists` for existing accounts: an account-existence oracle), and an existing
/// account is linked only once its owner follows the mailed link.
#[tokio::test]
async fn sso_answers_alike_whether_or_not_the_account_exists() {
    let (app, mail) = spawn(None).await;
    let idp = provider(
        &app,
        &[
            account("taken@victim.test", true),
            account("fresh@victim.test", true),
        ],
    )
    .await;
    let (_, org) = org_with_sso(&app, &idp, "owner@victim.test", "victim", &["victim.test"]).await;
    let existing = app.user("taken@victim.test").await;
    let mut answers = Vec::new();
    for email in ["taken@victim.test", "fresh@victim.test"] {
        let resp = Browser::new().sso_login(&app, "victim", "/", email).await;
        assert!(session_cookie_of(&resp).is_none(), "{email}");
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").cloned();
        answers.push((status, ctype, resp.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1], "the answers differ");
    assert!(links(&app, org).await.is_empty());
    mail.wait_for_nth("fresh@victim.test", 1).await;

    let resp = follow_confirmation(&app, &mail, "taken@victim.test", 1).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        user_count(&app, "taken@victim.test").await,
        1,
        "no second account"
    );
    let linked = links(&app, org).await;
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].1, existing.email);
}

/// Adds `domain` to the org's SSO domains and returns the answer (the TXT record to publish).
async fn add_domain(owner: &TestUser, slug: &str, domain: &str) -> Value {
    let resp = owner
        .post(&format!("/api/v1/orgs/{slug}/sso/domains"))
        .json(&json!({"domain": domain}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

async fn verify_domain(owner: &TestUser, slug: &str, domain: &str) -> Value {
    let resp = owner
        .post(&format!("/api/v1/orgs/{slug}/sso/domains/{domain}/verify"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// A domain the org proved through DNS allows just-in-time accounts at once.
#[tokio::test]
async fn a_verified_domain_allows_just_in_time_accounts() {
    let dns = DnsServer::start().await;
    let (app, mail) = spawn(Some(&dns)).await;
    let idp = provider(&app, &[account("alice@acme.test", true)]).await;
    let (owner, org) = org_with_sso(&app, &idp, "owner@acme.test", "acme", &["acme.test"]).await;
    let added = add_domain(&owner, "acme", "acme.test").await;
    assert_eq!(added["verified"], false);
    assert_eq!(added["txt_name"], "_gatehouse-challenge.acme.test");
    dns.add_txt(
        added["txt_name"].as_str().unwrap(),
        added["txt_value"].as_str().unwrap(),
    );
    let checked = verify_domain(&owner, "acme", "acme.test").await;
    assert_eq!(checked["verified"], true, "{checked}");
    assert!(
        dns.queries()
            .contains(&"_gatehouse-challenge.acme.test".to_owned())
    );

    let resp = Browser::new()
        .sso_login(&app, "acme", "/", "alice@acme.test")
        .await;
    assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
    assert_eq!(
        session_email(&app, &resp).await.as_deref(),
        Some("alice@acme.test")
    );
    assert_eq!(links(&app, org).await.len(), 1);
    assert!(mail.mails_to("alice@acme.test").is_empty());
    let actions = audit_actions(&app, org).await;
    for action in ["sso.domain_added", "sso.domain_verified", "sso.identity_linked"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

/// The challenge is per org: a record published for one org does not verify the domain for
/// another, each org verifies with its own value, a check that finds the record gone takes the
/// verification back, and a removed domain is gone.
#[tokio::test]
async fn domain_verification_is_per_org_re_checkable_and_removable() {
    let dns = DnsServer::start().await;
    let (app, _mail) = spawn(Some(&dns)).await;
    let a = app.user("a@example.test").await;
    let b = app.user("b@example.test").await;
    app.org(&a, "org-a").await;
    let (_, org_b) = app.org(&b, "org-b").await;
    let for_a = add_domain(&a, "org-a", "shared.test").await;
    let for_b = add_domain(&b, "org-b", "shared.test").await;
    assert_ne!(for_a["txt_value"], for_b["txt_value"]);
    dns.add_txt(
        for_a["txt_name"].as_str().unwrap(),
        for_a["txt_value"].as_str().unwrap(),
    );
    assert_eq!(verify_domain(&a, "org-a", "shared.test").await["verified"], true);
    let checked = verify_domain(&b, "org-b", "shared.test").await;
    assert_eq!(checked["verified"], false, "org B used org A's record: {checked}");
    assert_eq!(checked["check"]["outcome"], "record_missing", "{checked}");
    // A long value split over several strings, served over TCP after a truncated UDP answer.
    dns.add_txt(
        for_b["txt_name"].as_str().unwrap(),
        &format!("padding={}", "x".repeat(600)),
    );
    dns.add_txt(
        for_b["txt_name"].as_str().unwrap(),
        for_b["txt_value"].as_str().unwrap(),
    );
    assert_eq!(verify_domain(&b, "org-b", "shared.test").await["verified"], true);

    // The record is gone: a new check takes the verification back.
    dns.remove(for_b["txt_name"].as_str().unwrap());
    let checked = verify_domain(&b, "org-b", "shared.test").await;
    assert_eq!(checked["verified"], false, "{checked}");
    let listed: Value = b
        .get("/api/v1/orgs/org-b/sso/domains")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let resp = b
        .request(
            reqwest::Method::DELETE,
            "/api/v1/orgs/org-b/sso/domains/shared.test",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = b
        .post("/api/v1/orgs/org-b/sso/domains/shared.test/verify")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, Some("not_found")).await;
    let actions = audit_actions(&app, org_b).await;
    for action in [
        "sso.domain_added",
        "sso.domain_verified",
        "sso.domain_unverified",
        "sso.domain_removed",
    ] {
        assert!(actions.iter().any(|x| x == action), "{action}: {actions:?}");
    }
}

/// A password reset removes every SSO link of the account, so a provider that once linked the
/// address (rightly or not) no longer signs in as it.
#[tokio::test]
async fn a_password_reset_removes_the_accounts_sso_links() {
    let (app, mail) = spawn(None).await;
    let idp = provider(&app, &[account("ceo@victim.test", true)]).await;
    let (_, evil) = org_with_sso(&app, &idp, "mallory@evil.test", "evil", &["victim.test"]).await;
    let victim = app.user("ceo@victim.test").await;
    // A link and membership as the vulnerable JIT path left them.
    let mut admin = app.db.admin().await;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'viewer')")
        .bind(evil)
        .bind(victim.id)
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sso_identities (org_id, issuer, subject, user_id) VALUES ($1, $2, $3, $4)")
        .bind(evil)
        .bind(&idp.issuer)
        .bind(account("ceo@victim.test", true).sub)
        .bind(victim.id)
        .execute(&mut admin)
        .await
        .unwrap();
    let resp = Browser::new()
        .sso_login(&app, "evil", "/", "ceo@victim.test")
        .await;
    assert_eq!(resp.status(), 302, "the planted link signs in before the reset");

    let resp = post_json(
        &app,
        "/api/v1/password-reset",
        json!({"email": "ceo@victim.test"}),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let token = link_token(&mail.wait_for_nth("ceo@victim.test", 1).await, "/reset-password");
    let resp = post_json(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "a new and long password"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        links(&app, evil).await.is_empty(),
        "the SSO link survived the reset"
    );
    let resp = Browser::new()
        .sso_login(&app, "evil", "/", "ceo@victim.test")
        .await;
    assert!(
        session_cookie_of(&resp).is_none(),
        "the provider still signs in as the account after the reset"
    );
}
