#![allow(dead_code)] // helpers shared by the OAuth test modules
//! Shared set-up for the authorization server tests: an org with an endpoint whose tools are
//! granted by scopes, registered clients, PKCE, and a browser that fills in the login and consent
//! forms over HTTP.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::ids::{EndpointId, OrgId};
use gatehouse_core::role::Role;
use gatehouse_core::secrets::random_token;
use gatehouse_db::repos::endpoints;
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_oauth::AccessTokenVerifier;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, TestUser};

pub const PASSWORD: &str = "test-password-1";

pub struct Fixture {
    pub owner: TestUser,
    pub org_slug: String,
    pub org_id: OrgId,
    pub endpoint_id: EndpointId,
    pub resource: String,
}

/// Scopes of the fixture's endpoint: name, minimum role, tools granted.
pub const SCOPES: &[(&str, &str, &[&str])] = &[
    ("orders:read", "viewer", &["get_order"]),
    ("orders:write", "developer", &["cancel_order"]),
    ("orders:admin", "admin", &["get_order", "cancel_order"]),
    ("billing:read", "viewer", &["get_invoice"]),
];

/// An org `slug` owned by `owner_email`, with endpoint `mcp` over a server `orders` whose tools
/// `get_order` and `cancel_order` are approved; `get_invoice` belongs to a server not exposed at
/// the endpoint, so `billing:read` grants nothing there.
pub async fn setup(app: &TestApp, owner_email: &str, slug: &str) -> Fixture {
    let owner = app.user(owner_email).await;
    let (org_slug, org_id) = app.org(&owner, slug).await;
    let mut tx = TenantTx::begin(&app.db.db, &OrgScope::authorized(org_id))
        .await
        .unwrap();
    let endpoint = endpoints::create(&mut tx, "mcp", "Orders MCP", "", &json!({}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut admin = app.db.admin().await;
    let mut tool_ids: HashMap<&str, uuid::Uuid> = HashMap::new();
    for (server_slug, tools, exposed) in [
        ("orders", &["get_order", "cancel_order"][..], true),
        ("billing", &["get_invoice"][..], false),
    ] {
        let server = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO domain_servers (id, org_id, slug, name, url) VALUES ($1, $2, $3, $3, 'https://upstream.example/mcp')")
            .bind(server)
            .bind(org_id)
            .bind(server_slug)
            .execute(&mut admin)
            .await
            .unwrap();
        for tool in tools {
            let id = uuid::Uuid::now_v7();
            let def = json!({"name": tool, "inputSchema": {"type": "object"}});
            sqlx::query(
                "INSERT INTO tools (id, org_id, kind, server_id, name, definition, definition_hash, approved_definition, approved_hash, status)
                 VALUES ($1, $2, 'upstream', $3, $4, $5, '\\x01', $5, '\\x01', 'approved')",
            )
            .bind(id)
            .bind(org_id)
            .bind(server)
            .bind(tool)
            .bind(&def)
            .execute(&mut admin)
            .await
            .unwrap();
            tool_ids.insert(tool, id);
        }
        if exposed {
            sqlx::query("INSERT INTO endpoint_servers (org_id, endpoint_id, server_id) VALUES ($1, $2, $3)")
                .bind(org_id)
                .bind(endpoint.id)
                .bind(server)
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
    for (name, min_role, tools) in SCOPES {
        let scope = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO scopes (id, org_id, name, description, min_role) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(org_id)
        .bind(name)
        .bind(format!("Scope {name}"))
        .bind(min_role)
        .execute(&mut admin)
        .await
        .unwrap();
        for tool in *tools {
            sqlx::query("INSERT INTO scope_grants (org_id, scope_id, tool_id) VALUES ($1, $2, $3)")
                .bind(org_id)
                .bind(scope)
                .bind(tool_ids[tool])
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
    Fixture {
        resource: app.cfg.endpoint_url(&org_slug, "mcp"),
        owner,
        org_slug,
        org_id,
        endpoint_id: endpoint.id,
    }
}

impl Fixture {
    /// A member of the org with `role`.
    pub async fn member(&self, app: &TestApp, email: &str, role: Role) -> TestUser {
        let user = app.user(email).await;
        app.add_member(self.org_id, &user, role).await;
        user
    }
}

/// A client registered dynamically. Returns its client id (and secret if confidential).
pub async fn register(app: &TestApp, redirect_uris: &[&str], auth_method: &str) -> (String, Option<String>) {
    let resp = app
        .http
        .post(app.url("/oauth/register"))
        .json(&json!({
            "client_name": "Test Client",
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": auth_method,
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "registration refused: {}",
        resp.text().await.unwrap()
    );
    let body: Value = resp.json().await.unwrap();
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().map(str::to_owned),
    )
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = random_token(48);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

/// An authorization request URL (path and query).
pub fn authorize_path(
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    resource: &str,
    scope: Option<&str>,
    state: &str,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", resource)
        .append_pair("state", state);
    if let Some(s) = scope {
        q.append_pair("scope", s);
    }
    format!("/authorize?{}", q.finish())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The first form of a page: its action and fields (hidden inputs).
pub fn form(html: &str) -> (String, Vec<(String, String)>) {
    let start = html.find("<form").expect("page has a form");
    let end = html[start..]
        .find("</form>")
        .map(|e| start + e)
        .expect("form closes");
    let f = &html[start..end];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let i = tag.find(&key)? + key.len();
        let j = tag[i..].find('"')? + i;
        Some(unescape(&tag[i..j]))
    };
    let action = attr(&f[..f.find('>').unwrap()], "action").expect("form action");
    let mut fields = Vec::new();
    let mut rest = f;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').unwrap() + i;
        let tag = &rest[i..tag_end];
        if attr(tag, "type").as_deref() == Some("hidden") {
            fields.push((attr(tag, "name").unwrap(), attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[tag_end..];
    }
    (action, fields)
}

/// A browser: keeps cookies, fills in forms, never follows a redirect off the server.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookies: HashMap::new(),
        }
    }

    /// A browser already signed in as `user` (its console session cookie).
    pub fn signed_in(app: &TestApp, user: &TestUser) -> Self {
        let mut b = Self::new(app);
        let (name, value) = user.cookie.split_once('=').unwrap();
        b.cookies.insert(name.to_owned(), value.to_owned());
        b
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    pub async fn get(&mut self, path_or_url: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let resp = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(&resp);
        resp
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(String, String)]) -> reqwest::Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.absorb(&resp);
        resp
    }

    /// Runs the authorization request at `path` to its end: signs in with `email` if asked,
    /// approves consent if asked, and returns the final redirect off the server.
    pub async fn authorize(&mut self, path: &str, email: &str) -> String {
        let mut resp = self.get(path).await;
        for _ in 0..6 {
            match resp.status().as_u16() {
                302 | 303 => {
                    let location = resp.headers()["location"].to_str().unwrap().to_owned();
                    if location.starts_with('/') {
                        resp = self.get(&location).await;
                        continue;
                    }
                    return location;
                }
                200 => {
                    let html = resp.text().await.unwrap();
                    let (action, mut fields) = form(&html);
                    if action == "/authorize/login" {
                        fields.push(("email".into(), email.into()));
                        fields.push(("password".into(), PASSWORD.into()));
                    } else {
                        assert_eq!(action, "/authorize/consent");
                        fields.push(("decision".into(), "approve".into()));
                    }
                    resp = self.post_form(&action, &fields).await;
                }
                other => panic!(
                    "authorization stopped with {other}: {}",
                    resp.text().await.unwrap()
                ),
            }
        }
        panic!("authorization did not finish");
    }
}

/// The query parameters of a redirect.
pub fn query_of(location: &str) -> HashMap<String, String> {
    let q = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A verifier over the currently published JWKS.
pub async fn verifier(app: &TestApp) -> AccessTokenVerifier {
    let jwks = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    AccessTokenVerifier::new(&jwks, &app.cfg.issuer())
}

pub const REDIRECT: &str = "http://127.0.0.1:7777/callback";

/// Everything up to a code: registers a public client, authorizes as `email`, returns
/// (client_id, pkce, code).
pub async fn code_for(
    app: &TestApp,
    fx: &Fixture,
    browser: &mut Browser,
    email: &str,
    scope: Option<&str>,
) -> (String, Pkce, String) {
    let (client_id, _) = register(app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let location = browser
        .authorize(
            &authorize_path(&client_id, REDIRECT, &pkce.challenge, &fx.resource, scope, "st"),
            email,
        )
        .await;
    let q = query_of(&location);
    assert!(location.starts_with(REDIRECT), "{location}");
    let code = q
        .get("code")
        .unwrap_or_else(|| panic!("no code in {location}"))
        .clone();
    (client_id, pkce, code)
}

pub async fn redeem(app: &TestApp, client_id: &str, pkce: &Pkce, code: &str) -> (u16, Value) {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await
}
