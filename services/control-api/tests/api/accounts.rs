//! Accounts end to end, with mail delivered to a real SMTP server: sign-up, verification, login,
//! orgs and invitations; password reset and change; account deletion; no user enumeration; login
//! rate limits.

use std::time::Duration;

use gatehouse_core::ids::OrgId;
use serde_json::{Value, json};

use crate::account_support::*;

#[tokio::test]
async fn sign_up_verify_log_in_create_org_invite_and_accept() {
    let (app, mail) = spawn_with_mail(&[]).await;
    let alice = "alice@acme.test";

    let resp = post_json(
        &app,
        "/api/v1/signup",
        json!({"email": "Alice@Acme.test", "password": PASSWORD, "display_name": "Alice"}),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let verification = mail.wait_for_nth(alice, 1).await;
    assert!(
        verification.subject().contains("Verify your email"),
        "{}",
        verification.subject()
    );
    assert!(
        verification.raw.contains("Content-Type: text/html"),
        "the mail has an HTML part"
    );
    let token = link_token(&verification, "/verify-email");

    // Not verified yet: the right password is told so, a wrong one learns nothing.
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": alice, "password": PASSWORD}),
    )
    .await;
    assert_problem(resp, 403, Some("email_not_verified")).await;
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": alice, "password": "wrong password"}),
    )
    .await;
    assert_problem(resp, 401, Some("invalid_credentials")).await;

    let resp = post_json(&app, "/api/v1/account/verify-email", json!({"token": token})).await;
    assert_eq!(resp.status(), 200);
    let resp = post_json(&app, "/api/v1/account/verify-email", json!({"token": token})).await;
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "token", "a verification link works once");

    // Log in: the cookie is HttpOnly and SameSite; the CSRF token comes back in the body.
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": alice, "password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    let first_token = session_cookie_of(&resp).unwrap();
    let owner = log_in(&app, alice, PASSWORD).await;
    assert_ne!(
        owner.cookie,
        format!("gatehouse_session={first_token}"),
        "every login makes a new session"
    );
    let session: Value = owner
        .get("/api/v1/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["user"]["email"], alice);
    assert_eq!(session["user"]["display_name"], "Alice");
    assert_eq!(session["csrf_token"], owner.csrf.as_str());

    // Writes need the CSRF header.
    let resp = app
        .http
        .post(app.url("/api/v1/orgs"))
        .header("cookie", &owner.cookie)
        .json(&json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, Some("csrf")).await;
    let resp = owner
        .post("/api/v1/orgs")
        .json(&json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let org: Value = resp.json().await.unwrap();
    assert_eq!(org["role"], "owner");
    let org_id: OrgId = org["id"].as_str().unwrap().parse().unwrap();
    let resp = owner
        .post("/api/v1/orgs")
        .json(&json!({"slug": "acme", "name": "Other"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, Some("slug_taken")).await;

    // Invite Bob, who signs up and accepts.
    let bob = "bob@acme.test";
    let resp = owner
        .post("/api/v1/orgs/acme/invitations")
        .json(&json!({"email": bob, "role": "developer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let invitation = mail.wait_for_nth(bob, 1).await;
    assert!(invitation.subject().contains("Acme"), "{}", invitation.subject());
    let invite_token = link_token(&invitation, "/invitations/accept");
    assert!(
        invite_token.starts_with(&org_id.as_uuid().simple().to_string()),
        "the token names the org"
    );

    sign_up_and_verify(&app, &mail, bob).await;
    let bob_user = log_in(&app, bob, PASSWORD).await;
    // Someone else signed in cannot use Bob's invitation.
    let carol = app.user("carol@acme.test").await;
    let resp = carol
        .post("/api/v1/invitations/accept")
        .json(&json!({"token": invite_token}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, Some("forbidden")).await;
    let resp = bob_user
        .post("/api/v1/invitations/accept")
        .json(&json!({"token": invite_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let joined: Value = resp.json().await.unwrap();
    assert_eq!(joined["slug"], "acme");
    assert_eq!(joined["role"], "developer");
    let resp = bob_user
        .post("/api/v1/invitations/accept")
        .json(&json!({"token": invite_token}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, Some("not_found")).await;

    let members: Vec<Value> = owner
        .get("/api/v1/orgs/acme/members")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![(alice.into(), "owner".into()), (bob.into(), "developer".into())]
    );
    let mine: Vec<Value> = bob_user
        .get("/api/v1/orgs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["role"], "developer");

    // Account events now reach the org's trail too.
    log_in(&app, bob, PASSWORD).await;
    let actions = audit_actions(&app, org_id).await;
    for expected in ["org.created", "invitation.created", "member.added", "user.login"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    let mut admin = app.db.admin().await;
    let (ip, actor): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT host(ip), actor_label FROM audit_events WHERE org_id = $1 AND action = 'member.added'",
    )
    .bind(org_id)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(actor.as_deref(), Some(bob));

    // Logout ends the session.
    let resp = owner
        .request(reqwest::Method::DELETE, "/api/v1/session")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = owner.get("/api/v1/session").send().await.unwrap();
    assert_problem(resp, 401, Some("unauthenticated")).await;
}

#[tokio::test]
async fn session_cookie_is_secure_outside_local_mode() {
    let (app, mail) = spawn_with_mail(&[("mode", "production")]).await;
    sign_up_and_verify(&app, &mail, "dora@acme.test").await;
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": "dora@acme.test", "password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.starts_with("__Host-gatehouse_session="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
}

#[tokio::test]
async fn password_reset_link_is_single_use_and_ends_sessions() {
    let (app, mail) = spawn_with_mail(&[]).await;
    let email = "erin@acme.test";
    sign_up_and_verify(&app, &mail, email).await;
    let session = log_in(&app, email, PASSWORD).await;

    let resp = post_json(&app, "/api/v1/password-reset", json!({"email": email})).await;
    assert_eq!(resp.status(), 202);
    let reset = mail.wait_for_nth(email, 2).await;
    assert!(reset.subject().contains("Reset"), "{}", reset.subject());
    let token = link_token(&reset, "/reset-password");

    let resp = post_json(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "short"}),
    )
    .await;
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "new_password");
    let resp = post_json(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "a brand new password"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post_json(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "yet another password"}),
    )
    .await;
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "token");

    assert_eq!(
        session.get("/api/v1/session").send().await.unwrap().status(),
        401,
        "reset ends every session"
    );
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(resp, 401, Some("invalid_credentials")).await;
    log_in(&app, email, "a brand new password").await;
}

#[tokio::test]
async fn password_reset_link_expires() {
    let (app, mail) = spawn_with_mail(&[("accounts.reset_ttl_secs", "1")]).await;
    let email = "frank@acme.test";
    sign_up_and_verify(&app, &mail, email).await;
    post_json(&app, "/api/v1/password-reset", json!({"email": email})).await;
    let token = link_token(&mail.wait_for_nth(email, 2).await, "/reset-password");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = post_json(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "a brand new password"}),
    )
    .await;
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "token");
    log_in(&app, email, PASSWORD).await;
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions() {
    let (app, mail) = spawn_with_mail(&[]).await;
    let email = "gina@acme.test";
    sign_up_and_verify(&app, &mail, email).await;
    let here = log_in(&app, email, PASSWORD).await;
    let elsewhere = log_in(&app, email, PASSWORD).await;

    let resp = here
        .post("/api/v1/account/password")
        .json(&json!({"current_password": "not it at all", "new_password": "the new password"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 400, Some("invalid_field")).await;
    assert_eq!(body["field"], "current_password");

    let resp = here
        .post("/api/v1/account/password")
        .json(&json!({"current_password": PASSWORD, "new_password": "the new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        here.get("/api/v1/session").send().await.unwrap().status(),
        200,
        "this session stays"
    );
    assert_eq!(
        elsewhere.get("/api/v1/session").send().await.unwrap().status(),
        401,
        "other sessions end"
    );
    log_in(&app, email, "the new password").await;
}

#[tokio::test]
async fn deleting_an_account_is_refused_for_the_sole_owner() {
    let (app, mail) = spawn_with_mail(&[]).await;
    let email = "hank@acme.test";
    sign_up_and_verify(&app, &mail, email).await;
    let hank = log_in(&app, email, PASSWORD).await;
    let resp = hank
        .post("/api/v1/orgs")
        .json(&json!({"slug": "hanks", "name": "Hank's"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let resp = hank
        .request(reqwest::Method::DELETE, "/api/v1/account")
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 409, Some("sole_owner")).await;
    assert!(body["detail"].as_str().unwrap().contains("hanks"), "{body}");

    // Hand the org over, then deletion works.
    let ivy = app.user("ivy@acme.test").await;
    let (_, org_id) = {
        let mut global = gatehouse_db::GlobalTx::begin(&app.db.db).await.unwrap();
        let org = gatehouse_db::repos::orgs::find_by_slug(&mut global, "hanks")
            .await
            .unwrap()
            .unwrap();
        global.commit().await.unwrap();
        ((), org.id)
    };
    app.add_member(org_id, &ivy, gatehouse_core::role::Role::Viewer)
        .await;
    let resp = hank
        .post("/api/v1/orgs/hanks/transfer-ownership")
        .json(&json!({"user_id": ivy.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = hank
        .request(reqwest::Method::DELETE, "/api/v1/account")
        .json(&json!({"password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, Some("invalid_field")).await;
    let resp = hank
        .request(reqwest::Method::DELETE, "/api/v1/account")
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(hank.get("/api/v1/session").send().await.unwrap().status(), 401);
    let mut admin = app.db.admin().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let owners: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'owner'")
            .bind(org_id)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(owners, vec![*ivy.id.as_uuid()]);
    let actions = audit_actions(&app, org_id).await;
    assert!(
        actions.contains(&"org.ownership_transferred".to_owned()),
        "{actions:?}"
    );
    assert!(actions.contains(&"user.deleted".to_owned()), "{actions:?}");
}

async fn status_and_body(resp: reqwest::Response) -> (u16, String) {
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn sign_up_login_and_reset_do_not_reveal_accounts() {
    let (app, mail) = spawn_with_mail(&[]).await;
    let known = "known@acme.test";
    sign_up_and_verify(&app, &mail, known).await;
    let unknown = "nobody@acme.test";

    let a = status_and_body(
        post_json(
            &app,
            "/api/v1/signup",
            json!({"email": known, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    let b = status_and_body(
        post_json(
            &app,
            "/api/v1/signup",
            json!({"email": unknown, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(a, b, "sign-up answers alike");
    assert_eq!(a.0, 202);
    // The existing account is told by mail, not by the response.
    let notice = mail.wait_for_nth(known, 2).await;
    assert!(notice.text.contains("already has an account"), "{}", notice.text);

    let a = status_and_body(
        post_json(
            &app,
            "/api/v1/session",
            json!({"email": known, "password": "wrong password"}),
        )
        .await,
    )
    .await;
    let b = status_and_body(
        post_json(
            &app,
            "/api/v1/session",
            json!({"email": "ghost@acme.test", "password": "wrong password"}),
        )
        .await,
    )
    .await;
    assert_eq!(a, b, "login answers alike");
    assert_eq!(a.0, 401);

    let a = status_and_body(post_json(&app, "/api/v1/password-reset", json!({"email": known})).await).await;
    let b = status_and_body(
        post_json(
            &app,
            "/api/v1/password-reset",
            json!({"email": "ghost@acme.test"}),
        )
        .await,
    )
    .await;
    assert_eq!(a, b, "reset answers alike");
    assert_eq!(a.0, 202);
    mail.wait_for_nth(known, 3).await;
    assert!(
        mail.mails_to("ghost@acme.test").is_empty(),
        "no mail to an unknown address"
    );
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let (app, mail) = spawn_with_mail(&[
        ("accounts.login_per_account_per_minute", "2"),
        ("accounts.login_per_account_burst", "1"),
        ("accounts.login_per_ip_per_minute", "1000"),
        ("accounts.login_per_ip_burst", "1000"),
    ])
    .await;
    let email = "jill@acme.test";
    sign_up_and_verify(&app, &mail, email).await;
    for _ in 0..2 {
        let resp = post_json(
            &app,
            "/api/v1/session",
            json!({"email": email, "password": "wrong password"}),
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_problem(resp, 429, Some("rate_limited")).await;
    // The same for an unknown account (no enumeration through the limit).
    for _ in 0..2 {
        post_json(
            &app,
            "/api/v1/session",
            json!({"email": "ghost@acme.test", "password": "x"}),
        )
        .await;
    }
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": "ghost@acme.test", "password": "x"}),
    )
    .await;
    assert_problem(resp, 429, Some("rate_limited")).await;
    // Other accounts are not affected.
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": "other@acme.test", "password": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn login_is_rate_limited_per_ip() {
    let (app, _mail) = spawn_with_mail(&[
        ("accounts.login_per_account_per_minute", "1000"),
        ("accounts.login_per_account_burst", "1000"),
        ("accounts.login_per_ip_per_minute", "3"),
        ("accounts.login_per_ip_burst", "2"),
    ])
    .await;
    for i in 0..3 {
        let resp = post_json(
            &app,
            "/api/v1/session",
            json!({"email": format!("u{i}@acme.test"), "password": "x"}),
        )
        .await;
        assert_eq!(resp.status(), 401, "attempt {i}");
    }
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": "u9@acme.test", "password": "x"}),
    )
    .await;
    assert!(resp.headers().get("retry-after").is_some());
    assert_problem(resp, 429, Some("rate_limited")).await;
}

/// Behind a declared proxy, each client's address (from `X-Forwarded-For`) has its own sign-in
/// budget; a client cannot pick a fresh address by writing one before the proxy's.
#[tokio::test]
async fn login_limits_count_the_client_behind_a_trusted_proxy() {
    let (app, _mail) = spawn_with_mail(&[
        ("accounts.login_per_account_per_minute", "1000"),
        ("accounts.login_per_account_burst", "1000"),
        ("accounts.login_per_ip_per_minute", "3"),
        ("accounts.login_per_ip_burst", "2"),
        ("control_api.trusted_proxies", r#"["127.0.0.1"]"#),
    ])
    .await;
    let attempt = |forwarded_for: &'static str, i: usize| {
        app.http
            .post(app.url("/api/v1/session"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"email": format!("u{i}@acme.test"), "password": "x"}))
            .send()
    };
    for i in 0..3 {
        let resp = attempt("203.0.113.7", i).await.unwrap();
        assert_eq!(resp.status(), 401, "attempt {i}");
    }
    let limited = attempt("203.0.113.7", 3).await.unwrap();
    assert_problem(limited, 429, Some("rate_limited")).await;
    // Forging an earlier hop changes nothing: the proxy's hop is the client.
    let forged = attempt("198.51.100.99, 203.0.113.7", 4).await.unwrap();
    assert_problem(forged, 429, Some("rate_limited")).await;
    // Another client behind the same proxy has its own budget.
    let other = attempt("203.0.113.8", 5).await.unwrap();
    assert_eq!(other.status(), 401);
}
