//! Domain servers against real MCP servers: registration lists the tools, approval serves them,
//! a changed definition upstream is withheld (rug pull), the SSRF guard refuses internal URLs,
//! every change is audited and published, and the internal snapshot reflects it.

mod attributes;
mod credentials;
mod drift;
mod endpoints;
mod hosted_sql;
mod internal_api;
mod registration;
mod ssrf;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use gatehouse_core::ids::OrgId;
use gatehouse_core::snapshot::{ConfigChange, OrgSnapshot};

use crate::helpers::{TestApp, TestUser};

async fn register(owner: &TestUser, org: &str, body: Value) -> (u16, Value) {
    let response = owner
        .post(&format!("/api/v1/orgs/{org}/servers"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `GET path` as `user`, the body parsed as JSON (whatever the status).
async fn get_json<T: DeserializeOwned>(user: &TestUser, path: &str) -> T {
    user.get(path).send().await.unwrap().json().await.unwrap()
}

/// The tools the server's last sync listed.
async fn server_tools(owner: &TestUser, org: &str, server_id: &str) -> Vec<Value> {
    get_json(owner, &format!("/api/v1/orgs/{org}/servers/{server_id}/tools")).await
}

/// Approves a tool, pinning the definition reviewed (`definition_hash`).
async fn approve(owner: &TestUser, org: &str, tool_id: &str, definition_hash: &Value) -> reqwest::Response {
    owner
        .post(&format!("/api/v1/orgs/{org}/tools/{tool_id}/approve"))
        .json(&json!({"definition_hash": definition_hash}))
        .send()
        .await
        .unwrap()
}

/// Syncs a server by hand.
async fn sync(owner: &TestUser, org: &str, server_id: &str) -> reqwest::Response {
    owner
        .post(&format!("/api/v1/orgs/{org}/servers/{server_id}/sync"))
        .send()
        .await
        .unwrap()
}

/// Calls `tool` once on the upstream directly, as another client would (a fixture's rug pull
/// counts calls).
async fn call_upstream_once(url: &str, tool: &'static str) {
    let client = rmcp::ServiceExt::serve(
        (),
        rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned()),
    )
    .await
    .unwrap();
    client
        .peer()
        .call_tool_once(rmcp::model::CallToolRequestParams::new(tool))
        .await
        .unwrap();
    let _ = client.cancel().await;
}

/// The org's snapshot as the dataplane reads it (internal API).
async fn internal_snapshot(app: &TestApp, org_id: OrgId) -> OrgSnapshot {
    let token = app.cfg.dataplane_keys().unwrap().internal_token;
    let response = app
        .http
        .get(app.internal_url(&format!("/internal/v1/orgs/{org_id}/snapshot")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits for the next published change of `org`.
async fn next_change(rx: &mut tokio::sync::broadcast::Receiver<ConfigChange>, org: OrgId) -> ConfigChange {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let change = rx.recv().await.expect("notifier open");
            if change.org_id == org {
                return change;
            }
        }
    })
    .await
    .expect("a ConfigChange was published")
}
