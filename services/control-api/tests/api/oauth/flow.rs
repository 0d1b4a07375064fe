//! The whole authorization code flow with a Rust client, by hand: discovery, dynamic
//! registration, PKCE, login and consent through the HTML forms, token, refresh.

use gatehouse_oauth::jwt::SubjectKind;
use serde_json::Value;

use super::fixture::*;
use crate::helpers::TestApp;

#[tokio::test]
async fn authorization_code_flow_with_a_rust_client() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "owner@flow.test", "flow").await;

    // Discovery.
    let meta: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], app.cfg.issuer());
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    let oidc: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc, meta);

    // Registration, authorization through the forms.
    let (client_id, secret) = register(&app, &[REDIRECT], "none").await;
    assert!(secret.is_none());
    let pkce = Pkce::new();
    let mut browser = Browser::new(&app);
    let location = browser
        .authorize(
            &authorize_path(
                &client_id,
                REDIRECT,
                &pkce.challenge,
                &fx.resource,
                Some("orders:read orders:write"),
                "xyz",
            ),
            "owner@flow.test",
        )
        .await;
    let q = query_of(&location);
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], app.cfg.issuer());

    // Token.
    let (status, tokens) = redeem(&app, &client_id, &pkce, &q["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "orders:read orders:write");
    let access = tokens["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(header.kid.is_some());
    let claims = verifier(&app)
        .await
        .verify(access, Some(&fx.resource))
        .expect("valid access token");
    assert_eq!(claims.iss, app.cfg.issuer());
    assert_eq!(claims.sub, fx.owner.id.to_string());
    assert_eq!(claims.aud, fx.resource);
    assert_eq!(claims.client_id, client_id);
    assert_eq!(claims.org_id, fx.org_id.to_string());
    assert_eq!(claims.endpoint_id, fx.endpoint_id.to_string());
    assert_eq!(claims.gh_kind, SubjectKind::User);
    assert!(claims.sid.is_some());
    assert_eq!(
        claims.exp - claims.iat,
        app.cfg.oauth.access_token_ttl_secs as i64
    );
    assert_eq!(uuid::Uuid::parse_str(&claims.jti).unwrap().get_version_num(), 7);
    let raw: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            access.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut keys: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "aud",
            "client_id",
            "endpoint_id",
            "exp",
            "gh_kind",
            "iat",
            "iss",
            "jti",
            "nbf",
            "org_id",
            "scope",
            "sid",
            "sub"
        ],
        "the claim set is the contract with the dataplane"
    );

    // Refresh: rotation, same grant.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = token_request(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["refresh_token"], tokens["refresh_token"]);
    let again = verifier(&app)
        .await
        .verify(refreshed["access_token"].as_str().unwrap(), Some(&fx.resource))
        .unwrap();
    assert_eq!(again.sid, claims.sid);

    // Consent is remembered: a second authorization goes straight back with a code.
    let pkce2 = Pkce::new();
    let first = browser
        .get(&authorize_path(
            &client_id,
            REDIRECT,
            &pkce2.challenge,
            &fx.resource,
            Some("orders:read"),
            "s2",
        ))
        .await;
    assert_eq!(first.status(), 302);
    let loc = first.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with(REDIRECT) && query_of(loc).contains_key("code"),
        "{loc}"
    );

    // The audit trail records the consent and the grant.
    let mut admin = app.db.admin().await;
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE org_id = $1 ORDER BY seq")
            .bind(fx.org_id)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(
        actions.contains(&"oauth.consent_granted".to_owned()),
        "{actions:?}"
    );
    assert!(actions.contains(&"oauth.grant_created".to_owned()), "{actions:?}");
}
