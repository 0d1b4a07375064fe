//! Account and membership events end a user's OAuth access in the orgs they affect: the refresh
//! token is refused at the token endpoint at once, and the live access token is refused at the
//! dataplane within a second (the revocation travels as a configuration change). Removal,
//! leaving, demotion, password change, password reset and account deletion are each driven
//! through the REST API against the whole platform.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::ids::UserId;
use gatehouse_core::role::Role;
use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_db::GlobalTx;
use gatehouse_db::repos::{sessions, users};
use gatehouse_test_support::console::ConsoleClient;
use gatehouse_test_support::node_tools::MailServer;

use crate::oauth_sdk::{PASSWORD, REDIRECT, Seeded, seed, through_login_and_consent, wait_for_challenge};
use crate::platform::Platform;

const MEMBER_EMAIL: &str = "member@events.test";

/// The platform, an org (owner `sdk@<slug>.test`) with an endpoint, and a developer member with
/// a password.
struct Setup {
    p: Platform,
    s: Seeded,
    slug: String,
    member: UserId,
    _mail: MailServer,
}

async fn setup(slug: &str) -> Setup {
    let mail = MailServer::start().await;
    let smtp = mail.smtp_url();
    let p = Platform::start_with(&[("mail.smtp_url", smtp.as_str())]).await;
    let s = seed(&p, slug).await;
    let hash = gatehouse_control_api::password::hash(PASSWORD.into())
        .await
        .unwrap();
    let mut g = GlobalTx::begin(&p.db.db).await.unwrap();
    let member = users::create(&mut g, MEMBER_EMAIL, Some(&hash), "Member", true)
        .await
        .unwrap();
    g.commit().await.unwrap();
    let mut admin = p.db.admin().await;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(s.org)
        .bind(member.id)
        .bind(Role::Developer.as_str())
        .execute(&mut admin)
        .await
        .unwrap();
    wait_for_challenge(&p, &s.resource).await;
    Setup {
        p,
        s,
        slug: slug.to_owned(),
        member: member.id,
        _mail: mail,
    }
}

/// A console session for `user`, made through the repositories.
async fn console(p: &Platform, user: UserId) -> ConsoleClient {
    let token = random_token(32);
    let mut tx = GlobalTx::begin(&p.db.db).await.unwrap();
    sessions::create(&mut tx, user, &token_hash(&token), "password", None, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ConsoleClient {
        http: p.http.clone(),
        base: p.control_api.clone(),
        cookie: format!("{}={token}", session_cookie_name(true)),
        csrf: (
            CSRF_HEADER,
            csrf_token(&p.cfg.derived_keys().unwrap().cookie, &token),
        ),
    }
}

/// Tokens from the authorization code flow, signed in as `email`.
struct Tokens {
    client_id: String,
    access: String,
    refresh: String,
}

async fn authorize(p: &Platform, s: &Seeded, email: &str, password: &str) -> Tokens {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issuer = p.cfg.issuer();
    let reg: Value = http
        .post(format!("{issuer}/oauth/register"))
        .json(&json!({"client_name": "events", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "application_type": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let verifier = random_token(48);
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut authz = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    authz
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &s.resource)
        .append_pair("state", "ev");
    let callback = through_login_and_consent(&http, &issuer, authz.as_str(), email, password).await;
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens: Value = http
        .post(format!("{issuer}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("resource", &s.resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Tokens {
        client_id,
        access: tokens["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{tokens}"))
            .to_owned(),
        refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// The dataplane's status for an `initialize` with `access` (401: the token is refused).
async fn dataplane_status(p: &Platform, s: &Seeded, access: &str) -> u16 {
    p.http
        .post(&s.resource)
        .bearer_auth(access)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"events","version":"1"}}}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The token endpoint's answer to a refresh: (status, body).
async fn refresh(p: &Platform, s: &Seeded, t: &Tokens) -> (u16, Value) {
    let resp = p
        .http
        .post(format!("{}/oauth/token", p.cfg.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", t.client_id.as_str()),
            ("refresh_token", t.refresh.as_str()),
            ("resource", s.resource.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The member's tokens, checked to work at the dataplane; then `event` runs, and the access
/// token must be refused at the dataplane within a second of it and the refresh token at the
/// token endpoint. Returns how long the dataplane took.
async fn member_access_ends_after<F, Fut>(setup: &Setup, event: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (p, s) = (&setup.p, &setup.s);
    let tokens = authorize(p, s, MEMBER_EMAIL, PASSWORD).await;
    assert_ne!(
        dataplane_status(p, s, &tokens.access).await,
        401,
        "the member's token works before the event"
    );
    event().await;
    let done = Instant::now();
    loop {
        if dataplane_status(p, s, &tokens.access).await == 401 {
            break;
        }
        assert!(
            done.elapsed() < Duration::from_secs(1),
            "the dataplane still accepts the member's access token 1 s after the event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = done.elapsed();
    let (status, body) = refresh(p, s, &tokens).await;
    assert_eq!(status, 400, "the refresh token still works: {body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    took
}

#[tokio::test]
async fn a_removed_members_tokens_are_refused() {
    let setup = setup("ev-remove").await;
    let owner = console(&setup.p, setup.s.user).await;
    let took = member_access_ends_after(&setup, || async {
        owner
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/orgs/{}/members/{}", setup.slug, setup.member),
                None,
            )
            .await;
    })
    .await;
    eprintln!("removal reached the dataplane in {took:?}");
}

#[tokio::test]
async fn a_member_who_leaves_loses_their_tokens() {
    let setup = setup("ev-leave").await;
    let member = console(&setup.p, setup.member).await;
    let took = member_access_ends_after(&setup, || async {
        member
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{}/leave", setup.slug),
                None,
            )
            .await;
    })
    .await;
    eprintln!("leaving reached the dataplane in {took:?}");
}

#[tokio::test]
async fn a_demoted_members_tokens_are_refused() {
    let setup = setup("ev-demote").await;
    let owner = console(&setup.p, setup.s.user).await;
    let took = member_access_ends_after(&setup, || async {
        owner
            .send(
                reqwest::Method::PATCH,
                &format!("/api/v1/orgs/{}/members/{}", setup.slug, setup.member),
                Some(json!({"role": "viewer"})),
            )
            .await;
    })
    .await;
    eprintln!("demotion reached the dataplane in {took:?}");
}

#[tokio::test]
async fn changing_the_password_ends_oauth_access_and_new_grants_work() {
    let setup = setup("ev-password").await;
    let member = console(&setup.p, setup.member).await;
    let new_password = "a brand new password";
    let took = member_access_ends_after(&setup, || async {
        member
            .send(
                reqwest::Method::POST,
                "/api/v1/account/password",
                Some(json!({"current_password": PASSWORD, "new_password": new_password})),
            )
            .await;
    })
    .await;
    eprintln!("password change reached the dataplane in {took:?}");
    // Tokens issued after the change (in a later second) are not caught by the revocation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = authorize(&setup.p, &setup.s, MEMBER_EMAIL, new_password).await;
    assert_ne!(
        dataplane_status(&setup.p, &setup.s, &fresh.access).await,
        401,
        "a token issued after the change works"
    );
}

#[tokio::test]
async fn a_password_reset_ends_oauth_access() {
    let setup = setup("ev-reset").await;
    let p = &setup.p;
    let took = member_access_ends_after(&setup, || async {
        let resp = p
            .http
            .post(format!("{}/api/v1/password-reset", p.control_api))
            .json(&json!({"email": MEMBER_EMAIL}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let mail = setup._mail.wait_for_nth(MEMBER_EMAIL, 1).await;
        let link = mail.link_containing("/reset-password").expect("a reset link");
        let token = url::Url::parse(&link)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let resp = p
            .http
            .post(format!("{}/api/v1/password-reset/confirm", p.control_api))
            .json(&json!({"token": token, "new_password": "the reset password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    })
    .await;
    eprintln!("password reset reached the dataplane in {took:?}");
}

#[tokio::test]
async fn deleting_the_account_ends_oauth_access() {
    let setup = setup("ev-delete").await;
    let member = console(&setup.p, setup.member).await;
    let took = member_access_ends_after(&setup, || async {
        let resp = member
            .http
            .delete(format!("{}/api/v1/account", member.base))
            .header("cookie", &member.cookie)
            .header(member.csrf.0, &member.csrf.1)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());
    })
    .await;
    eprintln!("account deletion reached the dataplane in {took:?}");
}
