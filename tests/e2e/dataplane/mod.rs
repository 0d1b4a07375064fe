//! The dataplane against the real control API: configuration flows from the REST API through the
//! internal snapshot API and change notifications into the dataplane within a second.
//!
//! Shared here: a console user driving the REST API (`Admin`), provisioning an upstream server
//! with approved tools and scopes in one call, tokens from the authorization server, and waiting.

mod config_sync;
mod sdk_clients;
mod tokens;

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

impl Admin {
    /// Registers an upstream server (`server`: the body of `POST /servers`), approves every tool
    /// `grants` names and creates one scope per grant (scope name, tool names granted); returns
    /// the server's id.
    async fn provision(&self, org: &str, server: Value, grants: &[(&str, &[&str])]) -> String {
        let created = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org}/servers"),
                Some(server),
            )
            .await;
        let server_id = created["server"]["id"].as_str().unwrap().to_owned();
        let tools = self
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/orgs/{org}/servers/{server_id}/tools"),
                None,
            )
            .await;
        let find = |name: &str| {
            tools
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("{name} not listed: {tools}"))
                .clone()
        };
        let mut approved: Vec<&str> = Vec::new();
        for name in grants.iter().flat_map(|(_, names)| names.iter()) {
            if approved.contains(name) {
                continue;
            }
            let tool = find(name);
            self.send(
                reqwest::Method::POST,
                &format!(
                    "/api/v1/orgs/{org}/tools/{}/approve",
                    tool["id"].as_str().unwrap()
                ),
                Some(json!({"definition_hash": tool["definition_hash"]})),
            )
            .await;
            approved.push(name);
        }
        for (scope, names) in grants {
            let tool_ids: Vec<Value> = names.iter().map(|name| find(name)["id"].clone()).collect();
            self.send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org}/scopes"),
                Some(json!({"name": scope, "tool_ids": tool_ids})),
            )
            .await;
        }
        server_id
    }

    /// Creates endpoint `slug` over one server; returns the endpoint as the API describes it.
    async fn create_endpoint(&self, org: &str, slug: &str, name: &str, server_id: &str) -> Value {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{org}/endpoints"),
            Some(json!({"slug": slug, "name": name, "servers": [{"server_id": server_id}]})),
        )
        .await
    }
}

/// The platform, allowed to reach upstreams on loopback over plain HTTP (the fixtures).
async fn platform_reaching_loopback() -> Platform {
    Platform::start_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await
}

/// The protected resource metadata URL of an endpoint (served once the dataplane has it).
fn metadata_url(platform: &Platform, org: &str, endpoint: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/{org}/{endpoint}/mcp",
        platform.dataplane
    )
}

/// An access token from the authorization server for a service client (client credentials).
async fn client_credentials_token(
    platform: &Platform,
    client: &Value,
    resource: &str,
    scope: Option<&str>,
) -> String {
    let mut form = vec![("grant_type", "client_credentials"), ("resource", resource)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let issued: Value = platform
        .http
        .post(client["token_endpoint"].as_str().unwrap())
        .basic_auth(
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str(),
        )
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    issued["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{issued}"))
        .to_owned()
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

/// Waits until `GET url` answers `status`; returns how long that took.
async fn wait_for_status(platform: &Platform, url: &str, status: u16, limit: Duration) -> Duration {
    wait_for(limit, || async {
        platform.http.get(url).send().await.unwrap().status() == status
    })
    .await
}
