//! The internal API the dataplane reads snapshots from: only the internal token opens it, and
//! the credentials it hands out are sealed for the dataplane, not with the keys at rest. What a
//! dataplane holds (its secret's keys) forges nothing the console accepts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::secrets::SealError;
use gatehouse_core::snapshot::{OrgVersions, UpstreamAuth, server_credential_context};
use serde_json::json;

use super::{internal_snapshot, register};
use crate::generated::{app_reaching_loopback, fixture};
use crate::helpers::TestApp;

#[tokio::test]
async fn snapshot_credentials_are_sealed_for_the_dataplane_only() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let owner = app.user("owner@example.com").await;
    let (org, org_id) = app.org(&owner, "sealed").await;
    let (status, created) = register(
        &owner,
        &org,
        json!({"slug": "orders", "name": "Orders", "url": upstream.url(),
               "auth": {"kind": "bearer", "token": "stored-secret"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let server_id: gatehouse_core::ids::ServerId = created["server"]["id"].as_str().unwrap().parse().unwrap();
    let context = server_credential_context(org_id, server_id);
    let platform = app.keyring();
    let dataplane = app.cfg.dataplane_keys().unwrap().snapshot;

    let snapshot = internal_snapshot(&app, org_id).await;
    let server = snapshot.servers.iter().find(|s| s.id == server_id).unwrap();
    let UpstreamAuth::Bearer { token: in_snapshot } = &server.auth else {
        panic!("a bearer credential: {:?}", server.auth)
    };
    assert_eq!(
        dataplane.open(&in_snapshot.0, &context).unwrap(),
        b"stored-secret"
    );
    assert!(matches!(
        platform.open(&in_snapshot.0, &context),
        Err(SealError::UnknownKey(_))
    ));

    let mut admin = app.db.admin().await;
    let (at_rest,): (Vec<u8>,) = sqlx::query_as("SELECT credential_enc FROM domain_servers WHERE id = $1")
        .bind(server_id)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(platform.open(&at_rest, &context).unwrap(), b"stored-secret");
    assert!(matches!(
        dataplane.open(&at_rest, &context),
        Err(SealError::UnknownKey(_))
    ));
    assert_ne!(at_rest, in_snapshot.0);
}

#[tokio::test]
async fn what_a_dataplane_holds_forges_no_console_session_or_csrf_token() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@example.com").await;
    let session_token = owner.cookie.split_once('=').unwrap().1.to_owned();
    let keys = app.cfg.dataplane_keys().unwrap();
    let create = |csrf: String, slug: &str| {
        app.http
            .post(app.url("/api/v1/orgs"))
            .header("cookie", &owner.cookie)
            .header(CSRF_HEADER, csrf)
            .json(&json!({"slug": slug, "name": slug}))
    };
    // CSRF tokens for a (stolen) session cookie, computed with every key a dataplane derives.
    for (n, key) in [
        keys.mcp_session.to_vec(),
        keys.internal_token.clone().into_bytes(),
    ]
    .into_iter()
    .enumerate()
    {
        let forged = create(csrf_token(&key, &session_token), &format!("forged-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403, "CSRF token from dataplane key {n}");
    }
    let raw = create(keys.internal_token.clone(), "forged-raw")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 403);
    // The real token (from the platform's signing secret) works: the refusals above are about
    // the key.
    let real = create(owner.csrf.clone(), "real").send().await.unwrap();
    assert_eq!(real.status(), 201, "{}", real.text().await.unwrap());

    // The internal token is no console session or API credential.
    let name = session_cookie_name(app.cfg.is_local());
    for cookie in [
        format!("{name}={}", keys.internal_token),
        format!("{name}={}", URL_SAFE_NO_PAD.encode(keys.mcp_session)),
    ] {
        let response = app
            .http
            .get(app.url("/api/v1/orgs"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let bearer = app
        .http
        .get(app.url("/api/v1/orgs"))
        .bearer_auth(&keys.internal_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
}

#[tokio::test]
async fn internal_api_requires_the_internal_token() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@example.com").await;
    let (_, org_id) = app.org(&owner, "acme").await;
    let token = app.cfg.dataplane_keys().unwrap().internal_token;
    for path in [
        "/internal/v1/orgs".to_owned(),
        format!("/internal/v1/orgs/{org_id}/snapshot"),
    ] {
        let none = app.http.get(app.internal_url(&path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let wrong = app
            .http
            .get(app.internal_url(&path))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let prefix = app
            .http
            .get(app.internal_url(&path))
            .bearer_auth(&token[..token.len() - 1])
            .send()
            .await
            .unwrap();
        assert_eq!(prefix.status(), 401, "{path}");
        // A console session is not enough either.
        let cookie = app
            .http
            .get(app.internal_url(&path))
            .header("cookie", &owner.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(cookie.status(), 401, "{path}");
        let ok = app
            .http
            .get(app.internal_url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{path}");
    }
    let versions: OrgVersions = app
        .http
        .get(app.internal_url("/internal/v1/orgs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(versions.orgs.iter().any(|c| c.org_id == org_id && c.version == 1));
    let unknown = app
        .http
        .get(app.internal_url(&format!(
            "/internal/v1/orgs/{}/snapshot",
            gatehouse_core::ids::OrgId::new()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// `/internal/*` and `/metrics` are served only by the internal listener: the public listener
/// answers 404 for them, even with the internal token; the internal listener serves them (and the
/// JWKS dataplanes verify tokens with) but none of the public API.
#[tokio::test]
async fn internal_routes_and_metrics_are_only_on_the_internal_listener() {
    let app = TestApp::spawn().await;
    let token = app.cfg.dataplane_keys().unwrap().internal_token;
    assert_ne!(app.base, app.internal);
    for path in ["/internal/v1/orgs", "/metrics"] {
        let public = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "public {path}");
        let internal = app
            .http
            .get(app.internal_url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(internal.status(), 200, "internal {path}");
    }
    for path in ["/.well-known/jwks.json", "/healthz"] {
        let internal = app.http.get(app.internal_url(path)).send().await.unwrap();
        assert_eq!(internal.status(), 200, "internal {path}");
    }
    for path in ["/api/v1/orgs", "/authorize", "/api/openapi.json"] {
        let internal = app.http.get(app.internal_url(path)).send().await.unwrap();
        assert_eq!(
            internal.status(),
            404,
            "the internal listener does not serve {path}"
        );
    }
    let public = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(public.status(), 200, "probes still reach the public listener");
}
