//! The official MCP SDK clients (TypeScript `@modelcontextprotocol/sdk`, Python `mcp`) and a
//! hand-written Rust client complete Gatehouse's OAuth flow headless against the running
//! platform: discovery from the dataplane's 401 → registration (Client ID Metadata Document and
//! dynamic registration) → authorization with PKCE → login and consent through the HTML forms →
//! token → refresh. The clients live in tests/clients (installed by tests/clients/setup.sh).

use std::path::PathBuf;
use std::process::Stdio;

use gatehouse_core::ids::{EndpointId, OrgId, UserId};
use gatehouse_core::snapshot::ConfigChange;
use gatehouse_db::repos::{endpoints, orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};
use gatehouse_test_support::tls::{Document, HttpsServer, TestCa};
use serde_json::{Value, json};

use crate::platform::Platform;

pub(crate) const PASSWORD: &str = "sdk-test-password";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:33418/callback";

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

pub(crate) struct Seeded {
    pub(crate) email: String,
    pub(crate) user: UserId,
    pub(crate) org: OrgId,
    pub(crate) endpoint: EndpointId,
    pub(crate) resource: String,
}

/// A user with a password, an org, and an endpoint with one approved tool granted by `orders:read`.
pub(crate) async fn seed(p: &Platform, slug: &str) -> Seeded {
    let email = format!("sdk@{slug}.test");
    let hash = gatehouse_control_api::password::hash(PASSWORD.into())
        .await
        .unwrap();
    let mut g = GlobalTx::begin(&p.db.db).await.unwrap();
    let user = users::create(&mut g, &email, Some(&hash), "SDK Tester", true)
        .await
        .unwrap();
    g.commit().await.unwrap();
    let org_id = OrgId::new();
    let mut tx = TenantTx::begin(&p.db.db, &OrgScope::authorized(org_id))
        .await
        .unwrap();
    orgs::create_with_owner(&mut tx, slug, slug, user.id)
        .await
        .unwrap();
    let endpoint = endpoints::create(&mut tx, "mcp", "SDK endpoint", "", &json!({}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut admin = p.db.admin().await;
    let (server, tool, scope) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for (sql, binds) in [
        ("INSERT INTO domain_servers (id, org_id, slug, name, url) VALUES ($1, $2, 'orders', 'orders', 'https://upstream.example/mcp')", vec![server]),
        (
            "INSERT INTO tools (id, org_id, kind, server_id, name, definition, definition_hash, approved_definition, approved_hash, status)
             VALUES ($1, $2, 'upstream', $3, 'get_order', '{\"name\":\"get_order\",\"inputSchema\":{\"type\":\"object\"}}', '\\x01',
                     '{\"name\":\"get_order\",\"inputSchema\":{\"type\":\"object\"}}', '\\x01', 'approved')",
            vec![tool, server],
        ),
        ("INSERT INTO scopes (id, org_id, name) VALUES ($1, $2, 'orders:read')", vec![scope]),
        ("INSERT INTO scope_grants (org_id, scope_id, tool_id) VALUES ($2, $1, $3)", vec![scope, tool]),
        ("INSERT INTO endpoint_servers (org_id, endpoint_id, server_id) VALUES ($2, $1, $3)", vec![endpoint.id.into_uuid(), server]),
    ] {
        let mut q = sqlx::query(sql).bind(binds[0]).bind(org_id);
        for b in &binds[1..] {
            q = q.bind(*b);
        }
        q.execute(&mut admin).await.unwrap();
    }
    let version: i64 = sqlx::query_scalar("UPDATE org_settings SET config_version = config_version + 1 WHERE org_id = $1 RETURNING config_version")
        .bind(org_id)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    p.notifier.publish(ConfigChange { org_id, version }).await;
    Seeded {
        resource: p.cfg.endpoint_url(slug, "mcp"),
        email,
        user: user.id,
        org: org_id,
        endpoint: endpoint.id,
    }
}

async fn start(ca: &TestCa, extra: &[(&str, &str)]) -> Platform {
    let ca_file = ca.ca_pem.display().to_string();
    let mut overrides = vec![
        ("egress.allow_private_networks", "true"),
        ("oauth.metadata_document_ca_file", ca_file.as_str()),
    ];
    overrides.extend_from_slice(extra);
    Platform::start_with(&overrides).await
}

/// Waits until the dataplane challenges requests to the endpoint (its snapshot is loaded).
pub(crate) async fn wait_for_challenge(p: &Platform, resource: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let resp = p
            .http
            .post(resource)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        if resp.status() == 401 && resp.headers().contains_key("www-authenticate") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dataplane never challenged {resource} (got {}); these tests need the dataplane's MCP endpoint and RFC 9728 metadata",
            resp.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Serves the SDK client's metadata document over https.
async fn metadata_document(ca: &TestCa, name: &str) -> (HttpsServer, String) {
    let docs = HttpsServer::start(ca).await;
    let url = docs.url("/oauth/client-metadata.json");
    docs.put(
        "/oauth/client-metadata.json",
        Document {
            headers: vec![("cache-control".into(), "max-age=300".into())],
            body: json!({
                "client_id": url,
                "client_name": name,
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            .to_string(),
        },
    );
    (docs, url)
}

async fn run_client(program: PathBuf, args: &[PathBuf], input: &Value) -> Value {
    let out = tokio::process::Command::new(&program)
        .args(args)
        .current_dir(clients_dir())
        .env("GATEHOUSE_FLOW", input.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run tests/clients/setup.sh",
                program.display()
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed:\n{stderr}", program.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "{} printed no result ({e}):\n{stdout}\n{stderr}",
            program.display()
        )
    })
}

fn node() -> (PathBuf, Vec<PathBuf>) {
    let dir = clients_dir();
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").is_dir(),
        "the TypeScript SDK is not installed: run tests/clients/setup.sh"
    );
    (PathBuf::from("node"), vec![dir.join("oauth_flow.mjs")])
}

fn python() -> (PathBuf, Vec<PathBuf>) {
    let dir = clients_dir();
    let py = dir.join(".venv/bin/python");
    assert!(
        py.is_file(),
        "the Python SDK is not installed: run tests/clients/setup.sh"
    );
    (py, vec![dir.join("oauth_flow.py")])
}

async fn verify(p: &Platform, s: &Seeded, access: &str) -> gatehouse_oauth::AccessTokenClaims {
    let jwks = p
        .http
        .get(format!("{}/.well-known/jwks.json", p.control_api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = gatehouse_oauth::AccessTokenVerifier::new(&jwks, &p.cfg.issuer())
        .verify(access, Some(&s.resource))
        .expect("the SDK's access token verifies for the endpoint");
    assert_eq!(claims.sub, s.user.to_string());
    assert_eq!(claims.org_id, s.org.to_string());
    assert_eq!(claims.endpoint_id, s.endpoint.to_string());
    claims
}

async fn typescript_flow(mode: &str) {
    let ca = TestCa::new();
    let p = start(&ca, &[]).await;
    let s = seed(&p, &format!("ts-{mode}")).await;
    wait_for_challenge(&p, &s.resource).await;
    let (_docs, cimd_url) = metadata_document(&ca, "Gatehouse TS SDK test").await;
    let (program, args) = node();
    let out = run_client(
        program,
        &args,
        &json!({"server_url": s.resource, "mode": mode, "email": s.email, "password": PASSWORD,
                "redirect_url": REDIRECT, "client_metadata_url": cimd_url}),
    )
    .await;
    let client_id = out["client_id"].as_str().unwrap();
    if mode == "cimd" {
        assert_eq!(
            client_id, cimd_url,
            "the SDK used its metadata document URL as client id"
        );
    } else {
        assert!(
            client_id.starts_with("ghd_"),
            "the SDK registered dynamically: {client_id}"
        );
    }
    let authz = url::Url::parse(out["authorization_url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = authz.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["resource"], s.resource);
    let callback = url::Url::parse(out["callback"].as_str().unwrap()).unwrap();
    assert!(
        callback
            .query_pairs()
            .any(|(k, v)| k == "iss" && v == p.cfg.issuer())
    );
    let first = verify(&p, &s, out["tokens"]["access_token"].as_str().unwrap()).await;
    let second = verify(&p, &s, out["refreshed"]["access_token"].as_str().unwrap()).await;
    assert_ne!(
        out["tokens"]["refresh_token"], out["refreshed"]["refresh_token"],
        "refresh rotated"
    );
    assert_eq!(first.sid, second.sid, "the refresh continued the same grant");
    assert_eq!(first.client_id, client_id);
}

async fn python_flow(mode: &str) {
    let ca = TestCa::new();
    let p = start(&ca, &[("oauth.access_token_ttl_secs", "2")]).await;
    let s = seed(&p, &format!("py-{mode}")).await;
    wait_for_challenge(&p, &s.resource).await;
    let (_docs, cimd_url) = metadata_document(&ca, "Gatehouse Python SDK test").await;
    let (program, args) = python();
    let out = run_client(
        program,
        &args,
        &json!({"server_url": s.resource, "mode": mode, "email": s.email, "password": PASSWORD,
                "redirect_url": REDIRECT, "client_metadata_url": cimd_url, "wait_for_expiry_secs": 3}),
    )
    .await;
    let client_id = out["client_id"].as_str().unwrap();
    if mode == "cimd" {
        assert_eq!(client_id, cimd_url);
    } else {
        assert!(client_id.starts_with("ghd_"), "{client_id}");
    }
    assert_ne!(
        out["first_status"], 401,
        "the SDK's token was accepted by the endpoint: {out}"
    );
    let first = verify(&p, &s, out["tokens"]["access_token"].as_str().unwrap()).await;
    assert!(
        out["token_count"].as_u64().unwrap() >= 2,
        "the SDK refreshed its expired token: {out}"
    );
    let refreshed = out["refreshed"]["access_token"].as_str().unwrap();
    let jwks = p
        .http
        .get(format!("{}/.well-known/jwks.json", p.control_api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Signature, issuer and audience with the verifier's usual leeway: the token lives 2 s, and
    // on a loaded machine more than that can pass between the SDK's refresh and this check.
    // That it was fresh when the SDK used it is `second_status` below (the endpoint accepted it).
    let second = gatehouse_oauth::AccessTokenVerifier::new(&jwks, &p.cfg.issuer())
        .verify(refreshed, Some(&s.resource))
        .expect("the refreshed token is a valid access token for the endpoint");
    assert!(
        second.iat >= first.exp,
        "the SDK refreshed after its first token expired (first exp {}, refreshed iat {})",
        first.exp,
        second.iat
    );
    assert_eq!(first.sid, second.sid);
    assert_ne!(out["second_status"], 401);
}

#[tokio::test]
async fn typescript_sdk_client_with_a_metadata_document() {
    typescript_flow("cimd").await;
}

#[tokio::test]
async fn typescript_sdk_client_with_dynamic_registration() {
    typescript_flow("dcr").await;
}

#[tokio::test]
async fn python_sdk_client_with_a_metadata_document() {
    python_flow("cimd").await;
}

#[tokio::test]
async fn python_sdk_client_with_dynamic_registration() {
    python_flow("dcr").await;
}

/// The same flow with a Rust client written by hand (reqwest): discovery from the 401's
/// `resource_metadata`, dynamic registration, PKCE, the forms, token, refresh.
#[tokio::test]
async fn rust_client_discovers_from_the_endpoint_and_authorizes() {
    use base64::Engine;
    use sha2::Digest;
    let ca = TestCa::new();
    let p = start(&ca, &[]).await;
    let s = seed(&p, "rust-client").await;
    wait_for_challenge(&p, &s.resource).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // 401 → protected resource metadata → authorization server metadata.
    let challenge = http
        .post(&s.resource)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let prm_url = www
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("resource_metadata in the challenge");
    let prm: Value = http.get(prm_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], s.resource);
    let issuer = prm["authorization_servers"][0].as_str().unwrap();
    let meta: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer);

    // Registration.
    let reg: Value = http
        .post(meta["registration_endpoint"].as_str().unwrap())
        .json(&json!({"client_name": "rust", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "application_type": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap();

    // Authorization with PKCE through the forms.
    let verifier = gatehouse_core::secrets::random_token(48);
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut authz = url::Url::parse(meta["authorization_endpoint"].as_str().unwrap()).unwrap();
    authz
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &s.resource)
        .append_pair("state", "rs");
    let callback = through_login_and_consent(&http, issuer, authz.as_str(), &s.email, PASSWORD).await;
    let cb = url::Url::parse(&callback).unwrap();
    let q: std::collections::HashMap<_, _> = cb.query_pairs().into_owned().collect();
    assert_eq!((q["state"].as_str(), q["iss"].as_str()), ("rs", issuer));

    // Token, then refresh.
    let token_url = meta["token_endpoint"].as_str().unwrap();
    let tokens: Value = http
        .post(token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("resource", &s.resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    verify(&p, &s, tokens["access_token"].as_str().unwrap()).await;
    let refreshed: Value = http
        .post(token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("resource", &s.resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    verify(&p, &s, refreshed["access_token"].as_str().unwrap()).await;
    // The endpoint accepts the token (no more challenge).
    let resp = http
        .post(&s.resource)
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"rust","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 401, "the dataplane accepts the token");
}

/// Drives an authorization request (`authz`, a URL at the authorization server `issuer`) through
/// the login and consent forms as a browser would, signing in as `email` with `password`, and
/// returns the final redirect to the client's redirect URI.
pub(crate) async fn through_login_and_consent(
    http: &reqwest::Client,
    issuer: &str,
    authz: &str,
    email: &str,
    password: &str,
) -> String {
    let mut cookies: Vec<String> = Vec::new();
    let mut resp = http.get(authz).send().await.unwrap();
    loop {
        for c in resp.headers().get_all("set-cookie") {
            cookies.push(c.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let cookie = cookies.join("; ");
        if resp.status().is_redirection() {
            let loc = resp.headers()["location"].to_str().unwrap().to_owned();
            if loc.starts_with(REDIRECT) {
                return loc;
            }
            resp = http
                .get(format!("{issuer}{loc}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            continue;
        }
        let status = resp.status();
        let page = resp.text().await.unwrap();
        assert_eq!(status, 200, "{page}");
        let action = page
            .split("action=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let mut fields: Vec<(String, String)> = page
            .split("<input type=\"hidden\" name=\"")
            .skip(1)
            .map(|f| {
                let name = f.split('"').next().unwrap().to_owned();
                let value = f
                    .split("value=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .replace("&amp;", "&")
                    .replace("&#39;", "'")
                    .replace("&quot;", "\"");
                (name, value)
            })
            .collect();
        if action == "/authorize/login" {
            fields.push(("email".into(), email.to_owned()));
            fields.push(("password".into(), password.to_owned()));
        } else {
            fields.push(("decision".into(), "approve".into()));
        }
        resp = http
            .post(format!("{issuer}{action}"))
            .header("cookie", cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
    }
}
