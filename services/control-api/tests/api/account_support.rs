//! Helpers for the account, org and SSO tests: an app wired to a real SMTP server, sign-up and
//! login through the API, and database assertions.

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_test_support::node_tools::{MailServer, ReceivedMail};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser};

pub const PASSWORD: &str = "correct horse battery staple";

/// A control API whose mail goes to a real SMTP server started for the test.
pub async fn spawn_with_mail(extra: &[(&str, &str)]) -> (TestApp, MailServer) {
    let mail = MailServer::start().await;
    let smtp = mail.smtp_url();
    let mut overrides: Vec<(&str, &str)> = vec![("mail.smtp_url", &smtp)];
    overrides.extend_from_slice(extra);
    let app = TestApp::spawn_with(&overrides).await;
    (app, mail)
}

/// The session token a response sets, if any.
pub fn session_cookie_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gatehouse_session=") || c.starts_with("__Host-gatehouse_session="))
        .and_then(|c| c.split(';').next())
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The `token` query parameter of a link.
pub fn token_of(link: &str) -> String {
    url::Url::parse(link)
        .expect("link is a URL")
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("link has a token")
}

/// The link in `mail` whose path contains `path`, and its token.
pub fn link_token(mail: &ReceivedMail, path: &str) -> String {
    let link = mail
        .link_containing(path)
        .unwrap_or_else(|| panic!("no {path} link in mail {:?}:\n{}", mail.subject(), mail.text));
    token_of(&link)
}

pub async fn post_json(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url(path)).json(&body).send().await.unwrap()
}

/// Signs up, follows the verification link from the mail, and returns the number of mails the
/// address had received before.
pub async fn sign_up_and_verify(app: &TestApp, mail: &MailServer, email: &str) {
    let before = mail.mails_to(email).len();
    let resp = post_json(
        app,
        "/api/v1/signup",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let message = mail.wait_for_nth(email, before + 1).await;
    let token = link_token(&message, "/verify-email");
    let resp = post_json(app, "/api/v1/account/verify-email", json!({"token": token})).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Logs in through the API and returns the signed-in user.
pub async fn log_in(app: &TestApp, email: &str, password: &str) -> TestUser {
    let resp = post_json(
        app,
        "/api/v1/session",
        json!({"email": email, "password": password}),
    )
    .await;
    let status = resp.status();
    let token = session_cookie_of(&resp);
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "login of {email}: {body}");
    let token = token.expect("login sets the session cookie");
    let id: UserId = body["user"]["id"].as_str().unwrap().parse().unwrap();
    app.signed_in(email, id, &token, body["csrf_token"].as_str().unwrap())
}

/// The audit actions recorded for `org`, in chain order (read as the schema owner).
pub async fn audit_actions(app: &TestApp, org: OrgId) -> Vec<String> {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar("SELECT action FROM audit_events WHERE org_id = $1 ORDER BY seq")
        .bind(org)
        .fetch_all(&mut admin)
        .await
        .unwrap()
}

/// Everything an org owns in the tables these routes write, as one JSON value, to prove that a
/// refused request changed nothing.
pub async fn org_state(app: &TestApp, org: OrgId) -> Value {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar(
        "SELECT json_build_object(
            'org', (SELECT row_to_json(o) FROM orgs o WHERE id = $1),
            'settings', (SELECT row_to_json(s) FROM org_settings s WHERE org_id = $1),
            'members', (SELECT coalesce(json_agg(m ORDER BY user_id), '[]') FROM memberships m WHERE org_id = $1),
            'invitations', (SELECT coalesce(json_agg(i ORDER BY id), '[]') FROM
                              (SELECT id, email, role, accepted_at, revoked_at FROM invitations WHERE org_id = $1) i),
            'sso', (SELECT row_to_json(p) FROM (SELECT issuer_url, client_id, allowed_domains, jit_role, enabled,
                                                       updated_at FROM org_sso_providers WHERE org_id = $1) p),
            'audit', (SELECT count(*) FROM audit_events WHERE org_id = $1))::text",
    )
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .map(|s: String| serde_json::from_str(&s).unwrap())
    .unwrap()
}

/// Asserts a problem+json response with `status` (and `code` when given); returns the body.
pub async fn assert_problem(resp: reqwest::Response, status: u16, code: Option<&str>) -> Value {
    let got = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "unexpected status; body {body}");
    assert_eq!(ctype, "application/problem+json", "body {body}");
    if let Some(code) = code {
        assert_eq!(body["code"], code, "body {body}");
    }
    body
}
