//! The dataplane against the real control API: configuration flows from the REST API through the
//! internal snapshot API and change notifications into the dataplane within a second.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::ids::OrgId;
use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_db::repos::{orgs, sessions, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};

use crate::platform::Platform;

/// A signed-in console user (made through the repositories) and their org.
struct Admin {
    cookie: String,
    csrf: String,
    base: String,
    http: reqwest::Client,
}

impl Admin {
    async fn create(platform: &Platform, email: &str, org_slug: &str) -> (Admin, OrgId) {
        let mut tx = GlobalTx::begin(&platform.db.db).await.unwrap();
        let user = users::create(&mut tx, email, None, "Admin", true).await.unwrap();
        let token = random_token(32);
        sessions::create(&mut tx, user.id, &token_hash(&token), "password", None, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let scope = OrgScope::authorized(OrgId::new());
        let mut tx = TenantTx::begin(&platform.db.db, &scope).await.unwrap();
        let org = orgs::create_with_owner(&mut tx, org_slug, org_slug, user.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let admin = Admin {
            csrf: csrf_token(&platform.cfg.derived_keys().unwrap().cookie, &token),
            cookie: format!("{}={token}", session_cookie_name(true)),
            base: platform.control_api.clone(),
            http: platform.http.clone(),
        };
        (admin, org.id)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if method != reqwest::Method::GET {
            req = req.header(CSRF_HEADER, &self.csrf);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }
}

async fn wait_for<F, Fut>(limit: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if probe().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn endpoint_configuration_reaches_the_dataplane_within_a_second() {
    let platform = Platform::start_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions::default())
        .await
        .unwrap();
    let (admin, _org_id) = Admin::create(&platform, "admin@example.com", "acme").await;
    let created = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/servers",
            Some(
                json!({"slug": "fixture", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
            ),
        )
        .await;
    let server_id = created["server"]["id"].as_str().unwrap().to_owned();
    let tools = admin
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/orgs/acme/servers/{server_id}/tools"),
            None,
        )
        .await;
    let simple = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "test_simple_text")
        .unwrap()
        .clone();
    admin
        .send(
            reqwest::Method::POST,
            &format!(
                "/api/v1/orgs/acme/tools/{}/approve",
                simple["id"].as_str().unwrap()
            ),
            Some(json!({"definition_hash": simple["definition_hash"]})),
        )
        .await;
    admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/scopes",
            Some(json!({"name": "support:read", "tool_ids": [simple["id"]]})),
        )
        .await;
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/acme/support/mcp",
        platform.dataplane
    );
    assert_eq!(
        platform.http.get(&prm_url).send().await.unwrap().status(),
        404,
        "no endpoint yet"
    );

    admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/endpoints",
            Some(json!({"slug": "support", "name": "Support", "servers": [{"server_id": server_id}]})),
        )
        .await;
    let took = wait_for(Duration::from_secs(1), || async {
        platform.http.get(&prm_url).send().await.unwrap().status() == 200
    })
    .await;
    eprintln!("endpoint served by the dataplane {took:?} after it was created");
    let prm: Value = platform
        .http
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resource = format!("{}/acme/support/mcp", platform.dataplane);
    assert_eq!(prm["resource"], json!(resource));
    assert_eq!(prm["authorization_servers"], json!([platform.cfg.issuer()]));
    assert_eq!(prm["scopes_supported"], json!(["support:read"]));

    // The endpoint challenges unauthenticated callers, pointing at that metadata.
    let response = platform
        .http
        .post(&resource)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"support:read\""), "{challenge}");

    // Deleting the endpoint withdraws it just as fast.
    let endpoints = admin
        .send(reqwest::Method::GET, "/api/v1/orgs/acme/endpoints", None)
        .await;
    let list = endpoints
        .as_array()
        .or_else(|| endpoints["items"].as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(id) = list
        .iter()
        .find(|e| e["slug"] == "support")
        .and_then(|e| e["id"].as_str())
    {
        let response = platform
            .http
            .delete(format!(
                "{}/api/v1/orgs/acme/endpoints/{id}",
                platform.control_api
            ))
            .header("cookie", &admin.cookie)
            .header(CSRF_HEADER, &admin.csrf)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        wait_for(Duration::from_secs(1), || async {
            platform.http.get(&prm_url).send().await.unwrap().status() == 404
        })
        .await;
    }
}
