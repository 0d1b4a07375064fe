//! RFC 9700 checks at the token endpoint: PKCE, codes, refresh tokens, client authentication
//! (docs/security-checklist.md maps each row to a test).

use serde_json::Value;

use super::fixture::*;
use crate::helpers::TestApp;

/// P1: a code redeemed without its verifier yields nothing.
#[tokio::test]
async fn rfc9700_p1_code_without_verifier_refused() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@p1.test", "p1").await;
    let mut browser = Browser::new(&app);
    let (client, _pkce, code) = code_for(&app, &fx, &mut browser, "o@p1.test", None).await;
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// P2: wrong verifiers (random, 43-128 characters) yield nothing, and a code that met a wrong
/// verifier is burnt.
#[tokio::test]
async fn rfc9700_p2_wrong_verifier_refused() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@p2.test", "p2").await;
    let mut browser = Browser::new(&app);
    for len in [43usize, 64, 100, 128] {
        let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@p2.test", None).await;
        let wrong: String = gatehouse_core::secrets::random_token(96)
            .chars()
            .take(len)
            .collect();
        let (status, body) = token_request(
            &app,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &wrong),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
        let (status, _) = redeem(&app, &client, &pkce, &code).await;
        assert_eq!(status, 400, "a code must not survive a failed redemption");
    }
}

/// C4: a code is bound to its client and redirect URI.
#[tokio::test]
async fn rfc9700_c4_code_bound_to_client_and_redirect_uri() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@c4.test", "c4").await;
    let mut browser = Browser::new(&app);
    let (other, _) = register(&app, &[REDIRECT, "http://127.0.0.1:7777/elsewhere"], "none").await;
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@c4.test", None).await;
    let (status, body) = redeem(&app, &other, &pkce, &code).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (client2, pkce2, code2) = code_for(&app, &fx, &mut browser, "o@c4.test", None).await;
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client2),
            ("code", &code2),
            ("redirect_uri", "http://127.0.0.1:7777/elsewhere"),
            ("code_verifier", &pkce2.verifier),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let _ = client;
}

/// C5: an expired code is refused (codes live at most 60 s).
#[tokio::test]
async fn rfc9700_c5_expired_code_refused() {
    let app = TestApp::spawn().await;
    assert!(app.cfg.oauth.authorization_code_ttl_secs <= 60);
    let fx = setup(&app, "o@c5.test", "c5").await;
    let mut browser = Browser::new(&app);
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@c5.test", None).await;
    let mut admin = app.db.admin().await;
    sqlx::query("UPDATE oauth_authorization_codes SET expires_at = now() - interval '1 second'")
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, body) = redeem(&app, &client, &pkce, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

async fn introspect_refresh(app: &TestApp, refresh: &str) -> bool {
    // The family's state, as the database has it (introspection is for confidential clients).
    let mut admin = app.db.admin().await;
    let revoked: bool = sqlx::query_scalar(
        "SELECT f.revoked_at IS NOT NULL FROM oauth_refresh_tokens t JOIN oauth_refresh_families f
           ON f.org_id = t.org_id AND f.id = t.family_id WHERE t.token_hash = $1",
    )
    .bind(gatehouse_core::secrets::token_hash(refresh))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    !revoked
}

/// C1/C2: a replayed code is refused and what its first redemption issued is revoked, also when
/// the replay comes 30 s later.
#[tokio::test]
async fn rfc9700_c1_c2_code_replay_refused_and_grant_revoked() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@c1.test", "c1").await;
    let mut browser = Browser::new(&app);
    for delay_secs in [0, 30] {
        let mut changes = app.notifier.subscribe();
        let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@c1.test", None).await;
        let (status, first) = redeem(&app, &client, &pkce, &code).await;
        assert_eq!(status, 200);
        let refresh = first["refresh_token"].as_str().unwrap();
        if delay_secs > 0 {
            let mut admin = app.db.admin().await;
            sqlx::query(
                "UPDATE oauth_authorization_codes SET consumed_at = consumed_at - make_interval(secs => $1)",
            )
            .bind(delay_secs as f64)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        let (status, body) = redeem(&app, &client, &pkce, &code).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        assert!(
            !introspect_refresh(&app, refresh).await,
            "the first redemption's grant must be revoked"
        );
        let (status, _) = token_request(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", refresh),
            ],
        )
        .await;
        assert_eq!(status, 400);
        let claims = verifier(&app)
            .await
            .verify(first["access_token"].as_str().unwrap(), Some(&fx.resource))
            .unwrap();
        let mut admin = app.db.admin().await;
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM token_revocations WHERE kind = 'family' AND value = $1")
                .bind(claims.sid.as_deref().unwrap())
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert_eq!(rows, 1, "the dataplane must learn about the revoked family");
        let change = tokio::time::timeout(std::time::Duration::from_secs(2), changes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.org_id, fx.org_id);
    }
}

async fn grant_tokens(app: &TestApp, fx: &Fixture, browser: &mut Browser, email: &str) -> (String, Value) {
    let (client, pkce, code) = code_for(app, fx, browser, email, None).await;
    let (status, tokens) = redeem(app, &client, &pkce, &code).await;
    assert_eq!(status, 200, "{tokens}");
    (client, tokens)
}

async fn refresh(app: &TestApp, client: &str, rt: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", client),
        ("refresh_token", rt),
    ];
    form.extend_from_slice(extra);
    token_request(app, &form).await
}

/// R1/R2: every refresh rotates; presenting a rotated token revokes the whole family.
#[tokio::test]
async fn rfc9700_r1_r2_refresh_rotation_and_reuse_revokes_family() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@r1.test", "r1").await;
    let mut browser = Browser::new(&app);
    let (client, t0) = grant_tokens(&app, &fx, &mut browser, "o@r1.test").await;
    let rt1 = t0["refresh_token"].as_str().unwrap().to_owned();
    let (status, t1) = refresh(&app, &client, &rt1, &[]).await;
    assert_eq!(status, 200);
    let rt2 = t1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let mut changes = app.notifier.subscribe();
    let (status, body) = refresh(&app, &client, &rt1, &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = refresh(&app, &client, &rt2, &[]).await;
    assert_eq!(status, 400, "the newest token dies with its family");
    tokio::time::timeout(std::time::Duration::from_secs(2), changes.recv())
        .await
        .unwrap()
        .unwrap();
    let mut admin = app.db.admin().await;
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'oauth.refresh_reuse_detected'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

/// R3: a grace period (when configured) covers only the immediate predecessor of the newest
/// token; an older one revokes the family.
#[tokio::test]
async fn rfc9700_r3_grace_only_for_predecessor() {
    let app = TestApp::spawn_with(&[("oauth.refresh_reuse_grace_secs", "5")]).await;
    let fx = setup(&app, "o@r3.test", "r3").await;
    let mut browser = Browser::new(&app);
    let (client, t0) = grant_tokens(&app, &fx, &mut browser, "o@r3.test").await;
    let rt1 = t0["refresh_token"].as_str().unwrap().to_owned();
    let (_, t1) = refresh(&app, &client, &rt1, &[]).await;
    let rt2 = t1["refresh_token"].as_str().unwrap().to_owned();
    // The predecessor of the newest token, retried within grace (a lost response): accepted.
    let (status, t2) = refresh(&app, &client, &rt1, &[]).await;
    assert_eq!(status, 200, "{t2}");
    let rt3 = t2["refresh_token"].as_str().unwrap().to_owned();
    let (status, t3) = refresh(&app, &client, &rt3, &[]).await;
    assert_eq!(status, 200);
    let rt4 = t3["refresh_token"].as_str().unwrap().to_owned();
    // rt2 is two generations behind now: reuse.
    let (status, _) = refresh(&app, &client, &rt2, &[]).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&app, &client, &rt4, &[]).await;
    assert_eq!(status, 400, "family revoked");
}

/// R5: a refresh token is bound to its client.
#[tokio::test]
async fn rfc9700_r5_refresh_token_bound_to_client() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@r5.test", "r5").await;
    let mut browser = Browser::new(&app);
    let (client, t0) = grant_tokens(&app, &fx, &mut browser, "o@r5.test").await;
    let (other, _) = register(&app, &[REDIRECT], "none").await;
    let rt = t0["refresh_token"].as_str().unwrap();
    let (status, body) = refresh(&app, &other, rt, &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = refresh(&app, &client, rt, &[]).await;
    assert_eq!(status, 200, "the rightful client still refreshes");
}

/// R6: a refresh asking a wider scope gets `invalid_scope`, another resource `invalid_target`.
#[tokio::test]
async fn rfc9700_r6_refresh_bound_to_scope_and_resource() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@r6.test", "r6").await;
    let mut browser = Browser::new(&app);
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@r6.test", Some("orders:read")).await;
    let (_, t0) = redeem(&app, &client, &pkce, &code).await;
    let rt = t0["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh(&app, &client, &rt, &[("scope", "orders:read orders:write")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let other = app.cfg.endpoint_url("r6", "other");
    let (status, body) = refresh(&app, &client, &rt, &[("resource", &other)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    let (status, body) = refresh(
        &app,
        &client,
        &rt,
        &[("scope", "orders:read"), ("resource", &fx.resource)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// G3: a confidential client with a wrong secret is refused with 401.
#[tokio::test]
async fn rfc9700_g3_confidential_client_wrong_secret_refused() {
    let app = TestApp::spawn().await;
    let (client, secret) = register(&app, &["https://app.example/cb"], "client_secret_basic").await;
    let secret = secret.expect("confidential client gets a secret");
    for (id, pw) in [
        (client.as_str(), "ghcs_wrong"),
        (client.as_str(), ""),
        ("ghd_unknown", secret.as_str()),
    ] {
        let resp = app
            .http
            .post(app.url("/oauth/token"))
            .basic_auth(id, Some(pw))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "ghr_x")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{id}");
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
    // The right secret authenticates (and then fails on the bogus refresh token, as it should).
    let resp = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "ghr_x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

/// Access tokens are short-lived (≤ 15 min by default, at most an hour by configuration).
#[tokio::test]
async fn rfc9700_access_token_lifetime_is_short() {
    let app = TestApp::spawn().await;
    assert!(app.cfg.oauth.access_token_ttl_secs <= 900);
    let bad = crate::helpers::test_config(&app.db, &[("oauth.access_token_ttl_secs", "7200")]);
    assert!(bad.validate(gatehouse_core::Component::ControlApi).is_err());
}
