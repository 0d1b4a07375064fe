//! The internal API the dataplane reads snapshots from: only the internal token opens it.

use gatehouse_core::snapshot::OrgVersions;

use crate::helpers::TestApp;

#[tokio::test]
async fn internal_api_requires_the_internal_token() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@example.com").await;
    let (_, org_id) = app.org(&owner, "acme").await;
    let token = app.cfg.derived_keys().unwrap().internal_token;
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
    let token = app.cfg.derived_keys().unwrap().internal_token;
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
