//! The REST API around the authorization server: service tokens, service clients (and the
//! client_credentials grant), consents and grants, with their revocation reaching the dataplane
//! (revocation rows + a published configuration change); RFC 7009 and RFC 7662; scopes.

use std::time::Duration;

use gatehouse_core::role::Role;
use gatehouse_oauth::jwt::SubjectKind;
use serde_json::{Value, json};

use super::fixture::*;
use crate::helpers::TestApp;

async fn next_change(
    rx: &mut tokio::sync::broadcast::Receiver<gatehouse_core::snapshot::ConfigChange>,
) -> gatehouse_core::snapshot::ConfigChange {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("a config change is published")
        .unwrap()
}

async fn revocations(app: &TestApp, kind: &str) -> Vec<String> {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar(
        "SELECT value FROM token_revocations WHERE kind = $1 AND expires_at > now() ORDER BY revoked_at",
    )
    .bind(kind)
    .fetch_all(&mut admin)
    .await
    .unwrap()
}

async fn config_version(app: &TestApp, org: gatehouse_core::ids::OrgId) -> i64 {
    let mut admin = app.db.admin().await;
    sqlx::query_scalar("SELECT config_version FROM org_settings WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn service_tokens_are_shown_once_stored_hashed_and_revocable() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@st.test", "st").await;
    let mut changes = app.notifier.subscribe();
    let path = format!("/api/v1/orgs/{}/service-tokens", fx.org_slug);
    let resp = fx
        .owner
        .post(&path)
        .json(&json!({"name": "nightly CI", "endpoint_id": fx.endpoint_id, "scopes": ["orders:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    let org_hex = fx.org_id.as_uuid().simple().to_string();
    assert!(secret.starts_with(&format!("ghs_{org_hex}_")), "{secret}");
    assert!(secret.len() >= 4 + 32 + 1 + 43);
    assert!(secret.starts_with(created["token_prefix"].as_str().unwrap()));
    let change = next_change(&mut changes).await;
    assert_eq!(
        (change.org_id, change.version),
        (fx.org_id, config_version(&app, fx.org_id).await)
    );

    // Stored as SHA-256 only (hex in the dataplane's snapshot).
    let mut admin = app.db.admin().await;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM service_tokens")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(stored, gatehouse_core::secrets::token_hash(secret));
    let everything: String = sqlx::query_scalar("SELECT row_to_json(t)::text FROM service_tokens t")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(
        !everything.contains(&secret[40..]),
        "the token itself is not stored"
    );

    // Listed without the secret.
    let list: Value = fx.owner.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none());
    assert_eq!(list[0]["scopes"], json!(["orders:read"]));

    // Scopes must grant something at the endpoint.
    let bad = fx
        .owner
        .post(&path)
        .json(&json!({"name": "x", "endpoint_id": fx.endpoint_id, "scopes": ["billing:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "scopes");

    // Developers may not manage tokens; other orgs do not see this one.
    let dev = fx.member(&app, "dev@st.test", Role::Developer).await;
    assert_eq!(dev.get(&path).send().await.unwrap().status(), 403);
    let stranger = app.user("stranger@st.test").await;
    assert_eq!(stranger.get(&path).send().await.unwrap().status(), 404);

    // Revocation.
    let id = created["id"].as_str().unwrap();
    let resp = fx
        .owner
        .request(reqwest::Method::DELETE, &format!("{path}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    next_change(&mut changes).await;
    let resp = fx
        .owner
        .request(reqwest::Method::DELETE, &format!("{path}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_events ORDER BY seq")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert!(
        actions.contains(&"service_token.created".into())
            && actions.contains(&"service_token.revoked".into())
    );
}

#[tokio::test]
async fn service_clients_use_client_credentials_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@sc.test", "sc").await;
    let path = format!("/api/v1/orgs/{}/service-clients", fx.org_slug);
    let created: Value = fx
        .owner
        .post(&path)
        .json(&json!({"name": "billing bot", "endpoint_id": fx.endpoint_id, "scopes": ["orders:read", "orders:write"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(client_id.starts_with(&format!("ghsc_{}_", fx.org_id.as_uuid().simple())));
    assert_eq!(created["resource"], fx.resource);

    // client_secret_basic and client_secret_post.
    let basic = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "orders:read")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    assert_eq!(basic.headers()["cache-control"], "no-store");
    let tokens: Value = basic.json().await.unwrap();
    assert!(tokens.get("refresh_token").is_none());
    let claims = verifier(&app)
        .await
        .verify(tokens["access_token"].as_str().unwrap(), Some(&fx.resource))
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str()),
        (client_id.as_str(), client_id.as_str())
    );
    assert_eq!(claims.gh_kind, SubjectKind::Client);
    assert_eq!(claims.scope, "orders:read");
    assert!(claims.sid.is_none());
    let (status, post) = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("resource", &fx.resource),
        ],
    )
    .await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(post["scope"], "orders:read orders:write");
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("scope", "orders:admin"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("resource", "https://elsewhere.example/mcp"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    // Public clients may not use client_credentials.
    let (public, _) = register(&app, &[REDIRECT], "none").await;
    let (status, body) = token_request(
        &app,
        &[("grant_type", "client_credentials"), ("client_id", &public)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // Introspection: the service client may inspect its org's tokens; a public client may not
    // introspect at all.
    let intro: Value = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], client_id);
    let resp = app
        .http
        .post(app.url("/oauth/introspect"))
        .form(&[("client_id", public.as_str()), ("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Revoking the client: no new tokens, and a `client` revocation for the dataplane.
    let mut changes = app.notifier.subscribe();
    let id = created["id"].as_str().unwrap();
    let resp = fx
        .owner
        .request(reqwest::Method::DELETE, &format!("{path}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(next_change(&mut changes).await.org_id, fx.org_id);
    assert_eq!(revocations(&app, "client").await, vec![client_id.clone()]);
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test]
async fn consents_and_grants_are_listed_and_revocable() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@cg.test", "cg").await;
    let dev = fx.member(&app, "dev@cg.test", Role::Developer).await;
    let mut browser = Browser::signed_in(&app, &dev);
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "", None).await;
    let (_, tokens) = redeem(&app, &client, &pkce, &code).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();

    let consents: Value = dev
        .get(&format!("/api/v1/orgs/{}/oauth/consents", fx.org_slug))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(consents[0]["client_id"], client);
    // A developer cannot look at another member's consents, nor list grants.
    let other = dev
        .get(&format!(
            "/api/v1/orgs/{}/oauth/consents?user_id={}",
            fx.org_slug, fx.owner.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    assert_eq!(
        dev.get(&format!("/api/v1/orgs/{}/oauth/grants", fx.org_slug))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let grants: Value = fx
        .owner
        .get(&format!(
            "/api/v1/orgs/{}/oauth/grants?user_id={}",
            fx.org_slug, dev.id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(grants.as_array().unwrap().len(), 1);

    // The member withdraws consent: the grant dies, the dataplane is told.
    let mut changes = app.notifier.subscribe();
    let out: Value = dev
        .post(&format!("/api/v1/orgs/{}/oauth/consents/revoke", fx.org_slug))
        .json(&json!({"client_id": client}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (out["revoked_grants"].as_u64(), out["consents_withdrawn"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(next_change(&mut changes).await.org_id, fx.org_id);
    assert_eq!(
        revocations(&app, "family").await,
        vec![grants[0]["id"].as_str().unwrap().to_owned()]
    );
    let (status, _) = token_request(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // And the next authorization asks again.
    let again = browser
        .get(&authorize_path(
            &client,
            REDIRECT,
            &Pkce::new().challenge,
            &fx.resource,
            None,
            "s",
        ))
        .await;
    assert_eq!(again.status(), 200, "consent is asked again");

    // An admin revokes every grant of the member.
    let (client2, pkce2, code2) = code_for(&app, &fx, &mut browser, "", None).await;
    redeem(&app, &client2, &pkce2, &code2).await;
    let out: Value = fx
        .owner
        .post(&format!("/api/v1/orgs/{}/oauth/grants/revoke", fx.org_slug))
        .json(&json!({"user_id": dev.id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["revoked_grants"], 1);
    next_change(&mut changes).await;
    assert_eq!(revocations(&app, "family").await.len(), 2);
}

/// RFC 7009: a client revokes its refresh token (the grant) and an access token (by `jti`).
#[tokio::test]
async fn rfc7009_revocation_reaches_the_dataplane() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@rv.test", "rv").await;
    let mut browser = Browser::new(&app);
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@rv.test", None).await;
    let (_, tokens) = redeem(&app, &client, &pkce, &code).await;
    let mut changes = app.notifier.subscribe();
    let access = tokens["access_token"].as_str().unwrap();
    let claims = verifier(&app).await.verify(access, Some(&fx.resource)).unwrap();
    let resp = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("client_id", client.as_str()), ("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    next_change(&mut changes).await;
    assert_eq!(revocations(&app, "jti").await, vec![claims.jti.clone()]);
    let rt = tokens["refresh_token"].as_str().unwrap();
    let resp = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("client_id", client.as_str()),
            ("token", rt),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    next_change(&mut changes).await;
    assert_eq!(
        revocations(&app, "family").await,
        vec![claims.sid.clone().unwrap()]
    );
    // Unknown tokens are fine (RFC 7009 §2.2); another client's token is left alone.
    let resp = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("client_id", client.as_str()), ("token", "nonsense")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Scopes: a scope that grants nothing at the endpoint is refused; granted scopes never exceed
/// the member's role (withheld ones are named on the consent page).
#[tokio::test]
async fn scopes_are_endpoint_bound_and_capped_by_role() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@sp.test", "sp").await;
    let viewer = fx.member(&app, "viewer@sp.test", Role::Viewer).await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let mut browser = Browser::signed_in(&app, &viewer);
    let refused = browser
        .get(&authorize_path(
            &client,
            REDIRECT,
            &pkce.challenge,
            &fx.resource,
            Some("orders:read billing:read"),
            "s",
        ))
        .await;
    let q = query_of(refused.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_scope");
    let page = browser
        .get(&authorize_path(
            &client,
            REDIRECT,
            &pkce.challenge,
            &fx.resource,
            Some("orders:read orders:write"),
            "s",
        ))
        .await;
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Not granted") && html.contains("orders:write"),
        "withheld scopes are named"
    );
    let location = browser
        .authorize(
            &authorize_path(
                &client,
                REDIRECT,
                &pkce.challenge,
                &fx.resource,
                Some("orders:read orders:write"),
                "s",
            ),
            "",
        )
        .await;
    let (status, tokens) = redeem(&app, &client, &pkce, &query_of(&location)["code"]).await;
    assert_eq!(status, 200);
    assert_eq!(tokens["scope"], "orders:read", "a viewer never gets orders:write");
    // No explicit scope: everything the role allows at the endpoint (billing:read grants nothing there).
    let (client2, pkce2, code2) =
        code_for(&app, &fx, &mut Browser::signed_in(&app, &fx.owner), "", None).await;
    let (_, owner_tokens) = redeem(&app, &client2, &pkce2, &code2).await;
    assert_eq!(owner_tokens["scope"], "orders:admin orders:read orders:write");
}

/// Dynamic registration is rate-limited per client IP.
#[tokio::test]
async fn dynamic_registration_is_rate_limited() {
    let app = TestApp::spawn_with(&[("oauth.dynamic_registration_per_hour", "3")]).await;
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    for _ in 0..3 {
        let resp = app
            .http
            .post(app.url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let resp = app
        .http
        .post(app.url("/oauth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
}

/// A user outside the endpoint's org gets `access_denied`, and nothing is issued.
#[tokio::test]
async fn non_members_are_denied() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@nm.test", "nm").await;
    let outsider = app.user("outsider@nm.test").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let mut browser = Browser::signed_in(&app, &outsider);
    let resp = browser
        .get(&authorize_path(
            &client,
            REDIRECT,
            &Pkce::new().challenge,
            &fx.resource,
            None,
            "s",
        ))
        .await;
    let q = query_of(resp.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
}
