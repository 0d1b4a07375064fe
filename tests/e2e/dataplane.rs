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

/// Posts one MCP request to the dataplane and returns (status, response message or body).
async fn mcp(
    platform: &Platform,
    url: &str,
    token: &str,
    version: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Value, Option<String>) {
    let mut req = platform
        .http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if version >= "2026-07-28" {
        req = req
            .header("mcp-protocol-version", version)
            .header("mcp-method", body["method"].as_str().unwrap());
        if let Some(name) = body["params"]["name"].as_str() {
            req = req.header("mcp-name", name);
        }
    } else if let Some(s) = session {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", version);
    }
    let response = req.json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let value = if sse {
        text.split("\n\n")
            .filter_map(|f| {
                let data: Vec<&str> = f.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                serde_json::from_str::<Value>(&data.join("\n")).ok()
            })
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, value, session)
}

fn request(version: &str, id: i64, method: &str, mut params: Value) -> Value {
    if version >= "2026-07-28" {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Tokens issued by the real authorization server (client credentials) and service tokens from the
/// REST API, through the real dataplane: scopes decide what is listed and callable, tokens are
/// bound to their endpoint, revocation takes effect within a second, and no token reaches the
/// upstream.
#[tokio::test]
async fn tokens_from_the_authorization_server_through_the_dataplane() {
    let platform = Platform::start_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (admin, _) = Admin::create(&platform, "owner@example.com", "acme").await;
    let created = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/servers",
            Some(json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "bearer", "token": "upstream-own-credential"}})),
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
    let find = |name: &str| {
        tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    let (text, image) = (find("test_simple_text"), find("test_image_content"));
    for tool in [&text, &image] {
        admin
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/acme/tools/{}/approve", tool["id"].as_str().unwrap()),
                Some(json!({"definition_hash": tool["definition_hash"]})),
            )
            .await;
    }
    admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/scopes",
            Some(json!({"name": "support:text", "tool_ids": [text["id"]]})),
        )
        .await;
    admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/scopes",
            Some(json!({"name": "support:media", "tool_ids": [image["id"]]})),
        )
        .await;
    let mut endpoint_ids = Vec::new();
    for slug in ["support", "other"] {
        let e = admin
            .send(
                reqwest::Method::POST,
                "/api/v1/orgs/acme/endpoints",
                Some(json!({"slug": slug, "name": slug, "servers": [{"server_id": server_id}]})),
            )
            .await;
        endpoint_ids.push(e["id"].as_str().unwrap().to_owned());
    }
    let client = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/service-clients",
            Some(json!({"name": "ci", "endpoint_id": endpoint_ids[0], "scopes": ["support:text"]})),
        )
        .await;
    let service_token = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/acme/service-tokens",
            Some(json!({"name": "nightly", "endpoint_id": endpoint_ids[0], "scopes": ["support:media"]})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let resource = format!("{}/acme/support/mcp", platform.dataplane);
    let other = format!("{}/acme/other/mcp", platform.dataplane);
    let issued: Value = platform
        .http
        .post(client["token_endpoint"].as_str().unwrap())
        .basic_auth(
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource.as_str()),
            ("scope", "support:text"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = issued["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{issued}"))
        .to_owned();
    // The endpoint is served once its snapshot arrived.
    wait_for(Duration::from_secs(2), || async {
        platform
            .http
            .get(format!(
                "{}/.well-known/oauth-protected-resource/acme/support/mcp",
                platform.dataplane
            ))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;

    for version in ["2025-11-25", "2026-07-28"] {
        for (token, granted, refused) in [
            (&jwt, "test_simple_text", "test_image_content"),
            (&service_token, "test_image_content", "test_simple_text"),
        ] {
            let mut session = None;
            if version < "2026-07-28" {
                let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}});
                let (status, _, s) = mcp(&platform, &resource, token, version, None, init).await;
                assert_eq!(status, 200, "{version} initialize");
                session = s;
                mcp(
                    &platform,
                    &resource,
                    token,
                    version,
                    session.as_deref(),
                    json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
                )
                .await;
            }
            let (status, listed, _) = mcp(
                &platform,
                &resource,
                token,
                version,
                session.as_deref(),
                request(version, 1, "tools/list", json!({})),
            )
            .await;
            assert_eq!(status, 200, "{version}: {listed}");
            let names: Vec<&str> = listed["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                vec![format!("fx__{granted}")],
                "{version}: only the granted tool"
            );
            let (_, called, _) = mcp(
                &platform,
                &resource,
                token,
                version,
                session.as_deref(),
                request(
                    version,
                    2,
                    "tools/call",
                    json!({"name": format!("fx__{granted}"), "arguments": {}}),
                ),
            )
            .await;
            assert!(called["result"]["content"].is_array(), "{version}: {called}");
            let (_, denied, _) = mcp(
                &platform,
                &resource,
                token,
                version,
                session.as_deref(),
                request(
                    version,
                    3,
                    "tools/call",
                    json!({"name": format!("fx__{refused}"), "arguments": {}}),
                ),
            )
            .await;
            assert_eq!(denied["error"]["code"], -32602, "{version}: {denied}");
        }
    }
    // A token for one endpoint does not open another, even of the same org.
    for token in [&jwt, &service_token] {
        let (status, _, _) = mcp(
            &platform,
            &other,
            token,
            "2026-07-28",
            None,
            request("2026-07-28", 1, "tools/list", json!({})),
        )
        .await;
        assert_eq!(status, 401);
    }

    // Revoking the service client stops its tokens within a second.
    let revoked_at = Instant::now();
    let response = platform
        .http
        .delete(format!(
            "{}/api/v1/orgs/acme/service-clients/{}",
            platform.control_api,
            client["id"].as_str().unwrap()
        ))
        .header("cookie", &admin.cookie)
        .header(CSRF_HEADER, &admin.csrf)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    wait_for(Duration::from_secs(1), || async {
        mcp(
            &platform,
            &resource,
            &jwt,
            "2026-07-28",
            None,
            request("2026-07-28", 9, "tools/list", json!({})),
        )
        .await
        .0 == 401
    })
    .await;
    eprintln!(
        "revocation honoured {:?} after the REST call",
        revoked_at.elapsed()
    );

    // The upstream saw its own credential and never a client token.
    let seen = fixture.headers_snapshot();
    assert!(
        seen.iter()
            .flatten()
            .any(|(k, v)| k == "authorization" && v == "Bearer upstream-own-credential")
    );
    for (name, value) in seen.iter().flatten() {
        assert!(
            !value.contains(&jwt) && !value.contains(&service_token),
            "a client token reached the upstream in {name}"
        );
    }
}

/// The official TypeScript and Python SDK clients list and call tools through the dataplane with
/// an access token from the authorization server, in every era the SDK supports (TypeScript
/// 1.32: 2025-11-25 sessions; Python 2.3: 2025-11-25 sessions and 2026-07-28 `server/discover`).
#[tokio::test]
async fn sdk_clients_list_and_call_with_an_authorization_server_token() {
    let clients = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients");
    let python = clients.join(".venv/bin/python");
    let node = clients.join("conformance/node_modules/.bin/node");
    assert!(
        python.exists() && node.exists(),
        "the SDK clients are not installed: run tests/clients/setup.sh"
    );
    let platform = Platform::start_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (admin, _) = Admin::create(&platform, "sdk-owner@example.com", "sdkorg").await;
    let created = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/sdkorg/servers",
            Some(json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}})),
        )
        .await;
    let server_id = created["server"]["id"].as_str().unwrap().to_owned();
    let tools = admin
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/orgs/sdkorg/servers/{server_id}/tools"),
            None,
        )
        .await;
    let text = tools
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
                "/api/v1/orgs/sdkorg/tools/{}/approve",
                text["id"].as_str().unwrap()
            ),
            Some(json!({"definition_hash": text["definition_hash"]})),
        )
        .await;
    admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/sdkorg/scopes",
            Some(json!({"name": "fx:text", "tool_ids": [text["id"]]})),
        )
        .await;
    let endpoint = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/sdkorg/endpoints",
            Some(json!({"slug": "mcp", "name": "MCP", "servers": [{"server_id": server_id}]})),
        )
        .await;
    let client = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/sdkorg/service-clients",
            Some(json!({"name": "sdk", "endpoint_id": endpoint["id"], "scopes": ["fx:text"]})),
        )
        .await;
    let resource = format!("{}/sdkorg/mcp/mcp", platform.dataplane);
    let issued: Value = platform
        .http
        .post(client["token_endpoint"].as_str().unwrap())
        .basic_auth(
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{issued}"))
        .to_owned();
    wait_for(Duration::from_secs(2), || async {
        platform
            .http
            .get(format!(
                "{}/.well-known/oauth-protected-resource/sdkorg/mcp/mcp",
                platform.dataplane
            ))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;

    let runs: Vec<(&str, std::path::PathBuf, Vec<String>)> = vec![
        (
            "typescript 2025-11-25",
            node.clone(),
            vec![
                "sdk-list-call.mjs".into(),
                resource.clone(),
                token.clone(),
                "fx__test_simple_text".into(),
            ],
        ),
        (
            "python 2025-11-25",
            python.clone(),
            vec![
                clients.join("sdk_list_call.py").display().to_string(),
                resource.clone(),
                token.clone(),
                "fx__test_simple_text".into(),
                "legacy".into(),
            ],
        ),
        (
            "python 2026-07-28",
            python.clone(),
            vec![
                clients.join("sdk_list_call.py").display().to_string(),
                resource.clone(),
                token.clone(),
                "fx__test_simple_text".into(),
                "modern".into(),
            ],
        ),
    ];
    for (name, program, args) in runs {
        let output = tokio::process::Command::new(&program)
            .current_dir(clients.join("conformance"))
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8_lossy(&output.stdout);
        let seen: Value = serde_json::from_str(line.trim().lines().last().unwrap())
            .unwrap_or_else(|_| panic!("{name}: {line}"));
        assert_eq!(seen["tools"], json!(["fx__test_simple_text"]), "{name}: {seen}");
        assert_eq!(seen["result"]["content"][0]["type"], "text", "{name}: {seen}");
    }
    for (header, value) in fixture.headers_snapshot().iter().flatten() {
        assert!(
            !value.contains(&token),
            "the client token reached the upstream in {header}"
        );
    }
}
