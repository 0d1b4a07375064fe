//! A console user for tests that drive the control API's REST API: an org owner with a live
//! session made through the repositories (no sign-up round trip), and a client that sends their
//! cookie and CSRF header, plus the provisioning sequence most dataplane tests start with.

use serde_json::{Value, json};

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_core::secrets::{random_token, token_hash};
use gatehouse_db::repos::{orgs, sessions, users};
use gatehouse_db::{Db, GlobalTx, OrgScope, TenantTx};

/// An org owner with a live console session.
pub struct SignedInOwner {
    pub user_id: UserId,
    pub org_id: OrgId,
    /// The session token (the cookie's value; also what the CSRF token is derived from).
    pub session_token: String,
}

/// Creates a verified user `email`, a console session for them, and org `org_slug` they own.
pub async fn signed_in_owner(db: &Db, email: &str, org_slug: &str) -> SignedInOwner {
    let mut tx = GlobalTx::begin(db).await.unwrap();
    let user = users::create(&mut tx, email, None, "Owner", true).await.unwrap();
    let session_token = random_token(32);
    sessions::create(
        &mut tx,
        user.id,
        &token_hash(&session_token),
        "password",
        None,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(db, &OrgScope::authorized(OrgId::new()))
        .await
        .unwrap();
    let org = orgs::create_with_owner(&mut tx, org_slug, org_slug, user.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    SignedInOwner {
        user_id: user.id,
        org_id: org.id,
        session_token,
    }
}

/// A signed-in console user talking to the REST API at `base`.
pub struct ConsoleClient {
    pub http: reqwest::Client,
    pub base: String,
    /// `name=value` of the session cookie.
    pub cookie: String,
    /// The CSRF header cookie-authenticated writes carry: (header name, token).
    pub csrf: (&'static str, String),
}

impl ConsoleClient {
    /// Sends `method path` (path from the API root, e.g. `/api/v1/orgs/acme/servers`) and returns
    /// the JSON answer; fails the test unless the status is a success.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_send(method, path, body)
            .await
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`ConsoleClient::send`], returning a failure (status and answer) instead of failing the test.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if method != reqwest::Method::GET {
            req = req.header(self.csrf.0, &self.csrf.1);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {value}"));
        }
        Ok(value)
    }

    /// Registers an upstream server (`server`: the body of `POST /servers`), approves every tool
    /// `grants` names and creates one scope per grant (scope name, tool names granted; `"*"`
    /// grants every tool the server lists); returns the server's id.
    pub async fn provision(&self, org: &str, server: Value, grants: &[(&str, &[&str])]) -> String {
        self.try_provision(org, server, grants)
            .await
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`ConsoleClient::provision`], returning what failed (a refused request, a tool the sync did
    /// not list, with the sync's error) instead of failing the test.
    pub async fn try_provision(
        &self,
        org: &str,
        server: Value,
        grants: &[(&str, &[&str])],
    ) -> Result<String, String> {
        let created = self
            .try_send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org}/servers"),
                Some(server),
            )
            .await?;
        let server_id = created["server"]["id"]
            .as_str()
            .ok_or_else(|| format!("no server id in {created}"))?
            .to_owned();
        let tools = self
            .try_send(
                reqwest::Method::GET,
                &format!("/api/v1/orgs/{org}/servers/{server_id}/tools"),
                None,
            )
            .await?;
        let listed: &[Value] = tools.as_array().map(Vec::as_slice).unwrap_or_default();
        let find = |name: &str| {
            listed
                .iter()
                .find(|t| t["name"] == name)
                .cloned()
                .ok_or_else(|| format!("{name} not listed (sync: {}): {tools}", created["sync"]))
        };
        let all: Vec<&str> = listed.iter().filter_map(|t| t["name"].as_str()).collect();
        if all.is_empty() {
            return Err(format!("the server lists no tool (sync: {})", created["sync"]));
        }
        let grants: Vec<(&str, Vec<&str>)> = grants
            .iter()
            .map(|(scope, names)| {
                let names = if names.contains(&"*") {
                    all.clone()
                } else {
                    names.to_vec()
                };
                (*scope, names)
            })
            .collect();
        let mut approved: Vec<&str> = Vec::new();
        for name in grants.iter().flat_map(|(_, names)| names.iter()) {
            if approved.contains(name) {
                continue;
            }
            let tool = find(name)?;
            self.try_send(
                reqwest::Method::POST,
                &format!(
                    "/api/v1/orgs/{org}/tools/{}/approve",
                    tool["id"].as_str().unwrap_or_default()
                ),
                Some(json!({"definition_hash": tool["definition_hash"]})),
            )
            .await?;
            approved.push(name);
        }
        for (scope, names) in &grants {
            let mut tool_ids = Vec::new();
            for name in names {
                tool_ids.push(find(name)?["id"].clone());
            }
            self.try_send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org}/scopes"),
                Some(json!({"name": scope, "tool_ids": tool_ids})),
            )
            .await?;
        }
        Ok(server_id)
    }

    /// Creates endpoint `slug` over one server; returns the endpoint as the API describes it.
    pub async fn create_endpoint(&self, org: &str, slug: &str, name: &str, server_id: &str) -> Value {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{org}/endpoints"),
            Some(json!({"slug": slug, "name": name, "servers": [{"server_id": server_id}]})),
        )
        .await
    }
}
