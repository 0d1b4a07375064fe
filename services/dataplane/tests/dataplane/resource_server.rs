//! The resource-server side: metadata, challenges, token verification.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use gatehouse_core::snapshot::{Revocation, RevocationKind};
use mcp_fixture::FixtureOptions;

use crate::harness::*;

#[tokio::test]
async fn protected_resource_metadata_and_challenges() {
    let world = World::start(
        FixtureOptions::default(),
        &[("fx:read", &["test_simple_text"]), ("fx:all", &["*"])],
        &[],
    )
    .await;
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/{}/main/mcp",
        world.dataplane.url, world.org.slug
    );
    let prm: Value = reqwest::get(&prm_url).await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], json!(world.url()));
    assert_eq!(prm["authorization_servers"], json!([world.issuer.url]));
    assert_eq!(prm["scopes_supported"], json!(["fx:all", "fx:read"]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    let missing = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/{}/nope/mcp",
        world.dataplane.url, world.org.slug
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);

    let anonymous = RawClient::new(&world.url(), None, "2025-11-25");
    let answer = anonymous.call(1, "tools/list", json!({})).await;
    assert_eq!(answer.status, 401);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"fx:all fx:read\""), "{challenge}");
    assert!(
        !challenge.contains("error="),
        "no error for a missing token: {challenge}"
    );

    let garbage = RawClient::new(&world.url(), Some("not-a-token".into()), "2025-11-25");
    let answer = garbage.call(1, "tools/list", json!({})).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    // A token whose scopes grant nothing here: 403 naming the scopes that would.
    let useless = world.client("u1", "other:scope", "2025-11-25");
    let answer = useless.call(1, "tools/list", json!({})).await;
    assert_eq!(answer.status, 403);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"fx:all fx:read\""), "{challenge}");
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn forged_and_misdirected_tokens_are_refused() {
    let mut world = World::start(FixtureOptions::default(), &[("fx:all", &["*"])], &[]).await;
    // A second endpoint of the same org: its tokens must not open the first.
    let other = world.org.add_endpoint(
        &world.dataplane.url.clone(),
        "other",
        &[&world.server],
        false,
        &[("fx:all", &["*"])],
    );
    world.republish();
    let endpoint = world.endpoint().clone();
    let org = world.org.org_id;
    let now = now();
    let good = world.token("alice", "fx:all");
    assert_eq!(
        RawClient::new(&world.url(), Some(good.clone()), "2025-11-25")
            .call(1, "ping", json!({}))
            .await
            .status,
        400,
        "a valid token passes auth (and then needs a session)"
    );

    let claims = |over: Value| {
        let mut c = json!({"iss": world.issuer.url, "sub": "alice", "aud": endpoint.resource_url, "scope": "fx:all",
            "org_id": org.to_string(), "endpoint_id": endpoint.id.to_string(), "jti": "j1", "iat": now, "nbf": now, "exp": now + 600, "client_id": "c"});
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let signed = |header: Header, c: Value| jsonwebtoken::encode(&header, &c, &world.issuer.key).unwrap();
    let mut at = Header::new(Algorithm::EdDSA);
    at.typ = Some("at+jwt".into());
    at.kid = Some(world.issuer.kid.clone());

    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": world.issuer.kid})),
        b64(&claims(json!({})))
    );
    let public_x = match &world.issuer.public_jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x.clone(),
        _ => unreachable!(),
    };
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(world.issuer.kid.clone());
    let hs256_with_public_key = jsonwebtoken::encode(
        &hs,
        &claims(json!({})),
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    let mut unknown_kid = at.clone();
    unknown_kid.kid = Some("no-such-key".into());
    let mut plain_jwt = at.clone();
    plain_jwt.typ = Some("JWT".into());
    let other_endpoint = &world.org.endpoints[other];
    let cases: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("HS256 with the public key", hs256_with_public_key),
        ("unknown kid", signed(unknown_kid, claims(json!({})))),
        (
            "expired",
            signed(
                at.clone(),
                claims(json!({"exp": now - 3600, "iat": now - 4000, "nbf": now - 4000})),
            ),
        ),
        (
            "nbf in the future",
            signed(at.clone(), claims(json!({"nbf": now + 3600}))),
        ),
        (
            "wrong issuer",
            signed(at.clone(), claims(json!({"iss": "https://evil.example"}))),
        ),
        (
            "token for endpoint B at A",
            world
                .issuer
                .token(other_endpoint, org, "alice", "fx:all", json!({})),
        ),
        ("typ JWT", signed(plain_jwt, claims(json!({})))),
        ("tampered payload", {
            let t = good.clone();
            let parts: Vec<&str> = t.split('.').collect();
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&claims(json!({"scope": "fx:all admin"}))),
                parts[2]
            )
        }),
        (
            "no exp",
            signed(at.clone(), {
                let mut c = claims(json!({}));
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
    ];
    for (case, token) in cases {
        let client = RawClient::new(&world.url(), Some(token), "2025-11-25");
        let answer = client.call(1, "tools/list", json!({})).await;
        assert_eq!(answer.status, 401, "{case} must be refused");
        assert!(
            answer.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{case}"
        );
    }
}

#[tokio::test]
async fn revocations_take_effect_with_the_next_snapshot() {
    let mut world = World::start(FixtureOptions::default(), &[("fx:all", &["*"])], &[]).await;
    let mut alice = world.client("alice", "fx:all", "2025-11-25");
    alice.initialize().await;
    assert_eq!(alice.call(1, "tools/list", json!({})).await.status, 200);
    let bob = world.client("bob", "fx:all", "2026-07-28");
    assert_eq!(bob.call(1, "tools/list", json!({})).await.status, 200);
    // Revoke alice's refresh family: her (cached) access token stops working at once.
    world.org.revocations.push(Revocation {
        kind: RevocationKind::Family,
        value: "family-alice".into(),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        issued_before: None,
    });
    world.republish();
    let answer = alice.call(2, "tools/list", json!({})).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("revoked")
    );
    assert_eq!(
        bob.call(2, "tools/list", json!({})).await.status,
        200,
        "others are unaffected"
    );
    // By user id, for tokens issued up to a time: bob's token was issued before the cutoff,
    // carol's after it.
    let carol = world.client("carol", "fx:all", "2026-07-28");
    let now = time::OffsetDateTime::now_utc();
    world.org.revocations.push(Revocation {
        kind: RevocationKind::User,
        value: "bob".into(),
        expires_at: now + time::Duration::hours(1),
        issued_before: Some(now + time::Duration::seconds(1)),
    });
    world.org.revocations.push(Revocation {
        kind: RevocationKind::User,
        value: "carol".into(),
        expires_at: now + time::Duration::hours(1),
        issued_before: Some(now - time::Duration::minutes(5)),
    });
    world.republish();
    assert_eq!(bob.call(3, "tools/list", json!({})).await.status, 401);
    assert_eq!(
        carol.call(1, "tools/list", json!({})).await.status,
        200,
        "a token issued after the user's revocation works"
    );
}

#[tokio::test]
async fn service_tokens() {
    let mut world = World::start(
        FixtureOptions::default(),
        &[("fx:read", &["test_simple_text"])],
        &[],
    )
    .await;
    let token = world.org.add_service_token(0, &["fx:read"]);
    world.republish();
    let ci = RawClient::new(&world.url(), Some(token.clone()), "2026-07-28");
    assert_eq!(ci.tool_names().await, vec!["test_simple_text".to_owned()]);
    let answer = ci
        .call(
            2,
            "tools/call",
            json!({"name": "test_simple_text", "arguments": {}}),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.response(2)["result"]["content"].is_array(),
        "{:?}",
        answer.messages
    );
    // A token of another org, or a guessed one, is refused.
    let forged = format!("ghs_{}_{}", world.org.org_id.as_uuid().simple(), "x".repeat(43));
    assert_eq!(
        RawClient::new(&world.url(), Some(forged), "2026-07-28")
            .call(1, "tools/list", json!({}))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn foreign_origin_or_host_is_refused() {
    let world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.allowed_origins", "[\"http://localhost:5173\"]")],
    )
    .await;
    let client = world.client("alice", "fx:all", "2026-07-28");
    let body = client.request(1, "tools/list", json!({}));
    let allowed = client
        .builder(&body)
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let own = client
        .builder(&body)
        .header("origin", world.dataplane.url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    for origin in [
        "https://evil.example",
        "null",
        "http://localhost:5174",
        "http://127.0.0.1.evil.example",
    ] {
        let r = client
            .builder(&body)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "Origin {origin}");
    }
    for host in ["evil.example.com", "localhost:1", "127.0.0.1"] {
        let r = client.builder(&body).header("host", host).send().await.unwrap();
        assert_eq!(r.status(), 403, "Host {host}");
    }
}
