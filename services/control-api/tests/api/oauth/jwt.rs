//! Access-token verification abuse (T1, T2) with our own verifier over the published JWKS, and
//! key rotation while tokens are validated (T3).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_oauth::jwt::{AccessTokenClaims, SubjectKind, VerifyError};
use gatehouse_oauth::{AccessTokenVerifier, SigningKeys};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use super::fixture::*;
use crate::helpers::TestApp;

fn claims(app: &TestApp, fx: &Fixture, iat_offset: i64) -> AccessTokenClaims {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + iat_offset;
    AccessTokenClaims {
        iss: app.cfg.issuer(),
        sub: fx.owner.id.to_string(),
        aud: fx.resource.clone(),
        client_id: "ghd_test".into(),
        scope: "orders:read".into(),
        org_id: fx.org_id.to_string(),
        endpoint_id: fx.endpoint_id.to_string(),
        jti: uuid::Uuid::now_v7().to_string(),
        iat: now,
        nbf: now,
        exp: now + 600,
        sid: None,
        gh_kind: SubjectKind::User,
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Signs with the server's own keys (the store the token endpoint uses).
fn signer(app: &TestApp) -> SigningKeys {
    SigningKeys::new(&app.cfg, app.db.db.clone(), Arc::new(app.cfg.keyring().unwrap()))
}

/// T1 + T2: wrong audience, `alg` abuse, unknown or missing `kid`, wrong `typ`, expired,
/// not yet valid, wrong issuer: all refused; the genuine token passes.
#[tokio::test]
async fn rfc9700_t1_t2_jwt_audience_alg_kid_typ_and_lifetime_abuse() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@t2.test", "t2").await;
    let keys = signer(&app);
    let good = keys.sign("at+jwt", &claims(&app, &fx, 0)).await.unwrap();
    let verifier = verifier(&app).await;
    verifier
        .verify(&good, Some(&fx.resource))
        .expect("the genuine token verifies");

    // T1: a token for endpoint A is refused at endpoint B (and at another org's endpoint).
    for other in [
        app.cfg.endpoint_url(&fx.org_slug, "other"),
        app.cfg.endpoint_url("another-org", "mcp"),
    ] {
        assert!(
            matches!(verifier.verify(&good, Some(&other)), Err(VerifyError::Invalid(_))),
            "{other}"
        );
    }

    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let kid = key["kid"].as_str().unwrap();
    let body = b64(&serde_json::to_value(claims(&app, &fx, 0)).unwrap());
    let mut forged: Vec<(&str, String)> = Vec::new();
    // alg none.
    forged.push((
        "alg none",
        format!(
            "{}.{body}.",
            b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}))
        ),
    ));
    // HS256 keyed with the public key (the classic confusion).
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            alg: jsonwebtoken::Algorithm::HS256,
            typ: Some("at+jwt".into()),
            kid: Some(kid.into()),
            ..Default::default()
        },
        &claims(&app, &fx, 0),
        &jsonwebtoken::EncodingKey::from_secret(key["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    forged.push(("HS256 with the public key", hs));
    // The genuine signature under a header that lies.
    let sig = good.rsplit('.').next().unwrap();
    for (what, header) in [
        (
            "ES256 header on an EdDSA key",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
        ),
        (
            "unknown kid",
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "not-a-key"}),
        ),
        ("no kid", json!({"alg": "EdDSA", "typ": "at+jwt"})),
        ("typ JWT", json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})),
        ("no typ", json!({"alg": "EdDSA", "kid": kid})),
    ] {
        forged.push((what, format!("{}.{body}.{sig}", b64(&header))));
    }
    // Signed by us, but with the wrong type, lifetime or issuer.
    forged.push((
        "typ JWT, signed",
        keys.sign("JWT", &claims(&app, &fx, 0)).await.unwrap(),
    ));
    forged.push((
        "expired",
        keys.sign("at+jwt", &claims(&app, &fx, -3600)).await.unwrap(),
    ));
    let mut future = claims(&app, &fx, 0);
    future.nbf += 600;
    forged.push(("not yet valid", keys.sign("at+jwt", &future).await.unwrap()));
    let mut wrong_iss = claims(&app, &fx, 0);
    wrong_iss.iss = "https://evil.example".into();
    forged.push(("wrong issuer", keys.sign("at+jwt", &wrong_iss).await.unwrap()));
    // Tampered claims under a genuine signature.
    let mut tampered = claims(&app, &fx, 0);
    tampered.scope = "orders:admin".into();
    let parts: Vec<&str> = good.split('.').collect();
    forged.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_value(tampered).unwrap()),
            parts[2]
        ),
    ));
    forged.push(("garbage", "not.a.jwt".into()));

    for (what, token) in &forged {
        assert!(
            verifier.verify(token, Some(&fx.resource)).is_err(),
            "{what} was accepted"
        );
    }
}

/// A resource server's JWKS cache: refreshed only when its max-age has passed, never on an
/// unknown `kid` (the strictest validator the publish-before-sign rule must satisfy).
struct CachingValidator {
    jwks: JwkSet,
    fetched: Instant,
    max_age: Duration,
}

impl CachingValidator {
    async fn fetch(app: &TestApp) -> (JwkSet, Duration) {
        let resp = app
            .http
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        let cc = resp.headers()["cache-control"].to_str().unwrap().to_owned();
        let max_age = cc.split("max-age=").nth(1).unwrap().parse::<u64>().unwrap();
        (resp.json().await.unwrap(), Duration::from_secs(max_age))
    }

    async fn verify(
        &mut self,
        app: &TestApp,
        token: &str,
        aud: &str,
    ) -> Result<AccessTokenClaims, VerifyError> {
        if self.fetched.elapsed() >= self.max_age {
            let (jwks, max_age) = Self::fetch(app).await;
            self.jwks = jwks;
            self.max_age = max_age;
            self.fetched = Instant::now();
        }
        AccessTokenVerifier::new(&self.jwks, &app.cfg.issuer()).verify(token, Some(aud))
    }
}

/// T3: keys rotate (on schedule and on demand) while tokens are issued and validated against the
/// published JWKS as it changes: no validation fails.
#[tokio::test]
async fn rfc9700_t3_key_rotation_while_validating_has_no_failures() {
    let app = TestApp::spawn_with(&[
        ("oauth.access_token_ttl_secs", "2"),
        ("oauth.key_rotation_secs", "5"),
        ("oauth.key_publish_lead_secs", "2"),
        ("oauth.jwks_max_age_secs", "1"),
    ])
    .await;
    let fx = setup(&app, "o@t3.test", "t3").await;
    let mut browser = Browser::new(&app);
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@t3.test", None).await;
    let (_, tokens) = redeem(&app, &client, &pkce, &code).await;
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (jwks, max_age) = CachingValidator::fetch(&app).await;
    let mut validator = CachingValidator {
        jwks,
        fetched: Instant::now(),
        max_age,
    };
    let mut kids: HashMap<String, usize> = HashMap::new();
    let (mut validated, mut failures) = (0usize, Vec::new());
    let start = Instant::now();
    let mut rotated_on_demand = false;
    while start.elapsed() < Duration::from_secs(16) {
        if !rotated_on_demand && start.elapsed() > Duration::from_secs(8) {
            signer(&app).rotate_now().await.unwrap();
            rotated_on_demand = true;
        }
        let (status, t) = token_request(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", &refresh),
            ],
        )
        .await;
        assert_eq!(status, 200, "{t}");
        refresh = t["refresh_token"].as_str().unwrap().to_owned();
        let access = t["access_token"].as_str().unwrap();
        let kid = jsonwebtoken::decode_header(access).unwrap().kid.unwrap();
        *kids.entry(kid.clone()).or_default() += 1;
        match validator.verify(&app, access, &fx.resource).await {
            Ok(_) => validated += 1,
            Err(e) => failures.push(format!("{kid}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} validations failed: {failures:?}",
        failures.len(),
        validated + failures.len()
    );
    assert!(
        kids.len() >= 3,
        "expected at least three signing keys over the run, saw {kids:?}"
    );
    assert!(validated > 50);
    for key in &CachingValidator::fetch(&app).await.0.keys {
        let raw = serde_json::to_value(key).unwrap();
        assert!(raw.get("d").is_none(), "no private material is published");
    }
    // Retired keys leave the JWKS once their tokens have expired; the signer never returns to them.
    let published = CachingValidator::fetch(&app).await.0;
    assert!(
        published.keys.len() < kids.len() + 2,
        "retired keys are dropped eventually: {}",
        published.keys.len()
    );
}

/// `oauth.signing_alg = "ES256"` signs with P-256 keys, published as EC JWKs.
#[tokio::test]
async fn es256_signing_is_selectable() {
    let app = TestApp::spawn_with(&[("oauth.signing_alg", "ES256")]).await;
    let fx = setup(&app, "o@es.test", "es").await;
    let mut browser = Browser::new(&app);
    let (client, pkce, code) = code_for(&app, &fx, &mut browser, "o@es.test", None).await;
    let (status, tokens) = redeem(&app, &client, &pkce, &code).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(access).unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private material is published"
    );
    verifier(&app)
        .await
        .verify(access, Some(&fx.resource))
        .expect("ES256 token verifies");
}
