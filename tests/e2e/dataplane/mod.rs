//! The dataplane against the real control API: configuration flows from the REST API through the
//! internal snapshot API and change notifications into the dataplane within a second.
//!
//! Shared here: a console user driving the REST API (`Admin`), provisioning an upstream server
//! with approved tools and scopes in one call, tokens from the authorization server, and waiting.

mod bridging_matrix;
mod config_sync;
mod conformance;
mod hosted_sql;
mod org_deletion;
mod playground;
mod sdk_clients;
mod suspension;
mod tokens;

use std::time::{Duration, Instant};

use serde_json::Value;

use gatehouse_control_api::auth::{CSRF_HEADER, csrf_token, session_cookie_name};
use gatehouse_core::ids::OrgId;
use gatehouse_test_support::console::{ConsoleClient, signed_in_owner};

use crate::platform::Platform;

/// A signed-in console user (made through the repositories) and their org.
struct Admin;

impl Admin {
    async fn create(platform: &Platform, email: &str, org_slug: &str) -> (ConsoleClient, OrgId) {
        let owner = signed_in_owner(&platform.db.db, email, org_slug).await;
        let admin = ConsoleClient {
            http: platform.http.clone(),
            base: platform.control_api.clone(),
            cookie: format!("{}={}", session_cookie_name(true), owner.session_token),
            csrf: (
                CSRF_HEADER,
                csrf_token(&platform.cfg.derived_keys().unwrap().cookie, &owner.session_token),
            ),
        };
        (admin, owner.org_id)
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
    let issued: Value = client_credentials_request(platform, client, &form)
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

/// The client credentials token request of `client` (as the REST API describes it) with `form`.
fn client_credentials_request(
    platform: &Platform,
    client: &Value,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    platform
        .http
        .post(client["token_endpoint"].as_str().unwrap())
        .basic_auth(
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str(),
        )
        .form(form)
}

/// A service client of `endpoint` (as the REST API describes it) granted `scopes`, and an access
/// token for it from the authorization server, returned once the dataplane serves the endpoint:
/// the endpoint's resource URL and the token.
async fn service_client_token(
    platform: &Platform,
    admin: &ConsoleClient,
    org: &str,
    endpoint: &Value,
    scopes: &[&str],
) -> (String, String) {
    let client = admin
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{org}/service-clients"),
            Some(serde_json::json!({"name": "e2e", "endpoint_id": endpoint["id"], "scopes": scopes})),
        )
        .await;
    let slug = endpoint["slug"].as_str().expect("endpoint slug");
    let resource = format!("{}/{org}/{slug}/mcp", platform.dataplane);
    let token = client_credentials_token(platform, &client, &resource, None).await;
    wait_for_status(
        platform,
        &metadata_url(platform, org, slug),
        200,
        Duration::from_secs(2),
    )
    .await;
    (resource, token)
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
