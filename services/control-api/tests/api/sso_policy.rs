//! Org policy around SSO: an org can require it (password sessions are refused at the org, its
//! members cannot sign in with a password, owners keep an audited break-glass), the provider's
//! client secret only opens in its own org, and every read of the provider's responses is
//! bounded in size and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::ids::OrgId;
use gatehouse_core::role::Role;
use gatehouse_test_support::dns::DnsServer;
use gatehouse_test_support::node_tools::{OidcMode, OidcProvider};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::account_support::{assert_problem, audit_actions, post_json, session_cookie_of};
use crate::helpers::{TestApp, TestUser};
use crate::oauth::fixture::{self, Browser as AsBrowser};
use crate::sso::{Browser, account, location};

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ];
    overrides.extend_from_slice(extra);
    TestApp::spawn_with(&overrides).await
}

async fn configure_sso(owner: &TestUser, slug: &str, provider: &OidcProvider, domain: &str) {
    let resp = owner
        .request(reqwest::Method::PUT, &format!("/api/v1/orgs/{slug}/sso"))
        .json(&json!({
            "issuer_url": provider.issuer,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "allowed_domains": [domain],
            "jit_role": "developer",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn set_enforced(user: &TestUser, slug: &str, enforced: bool) -> reqwest::Response {
    user.request(
        reqwest::Method::PUT,
        &format!("/api/v1/orgs/{slug}/sso/enforcement"),
    )
    .json(&json!({"enforced": enforced}))
    .send()
    .await
    .unwrap()
}

/// While an org enforces SSO its members cannot sign in with a password (the error names SSO
/// and where to start it), a password session already open is refused at the org's routes but
/// not at another org's, the owner's password login is an audited break-glass, and an SSO login
/// through the org's own provider reaches it.
#[tokio::test]
async fn an_sso_enforcing_org_refuses_password_sessions_except_the_owners() {
    let dns = DnsServer::start().await;
    let ns = format!("[\"{}\"]", dns.addr);
    let app = spawn(&[("sso.dns_nameservers", &ns)]).await;
    let provider = OidcProvider::start(
        OidcMode::Normal,
        &app.url("/api/v1/sso/callback"),
        &[account("dev@acme.test", true)],
    )
    .await;
    let owner = app.user("owner@acme.test").await;
    let (_, acme) = app.org(&owner, "acme").await;
    configure_sso(&owner, "acme", &provider, "acme.test").await;
    let dev = app.user("dev@acme.test").await;
    app.add_member(acme, &dev, Role::Developer).await;
    let other_owner = app.user("owner@beta.test").await;
    let (_, beta) = app.org(&other_owner, "beta").await;
    app.add_member(beta, &dev, Role::Developer).await;

    // An admin may not lock themselves out; the owner may switch it on.
    let resp = set_enforced(&owner, "acme", true).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["enforced"], true, "{body}");

    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": "dev@acme.test", "password": "test-password-1"}),
    )
    .await;
    assert!(session_cookie_of(&resp).is_none());
    let problem = assert_problem(resp, 403, Some("sso_required")).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("single sign-on"), "{detail}");
    assert!(detail.contains("/api/v1/sso/acme/start"), "{detail}");

    // The session the developer already had: refused at acme, still fine at beta.
    let resp = dev.get("/api/v1/orgs/acme/members").send().await.unwrap();
    assert_problem(resp, 403, Some("sso_required")).await;
    let resp = dev.get("/api/v1/orgs/beta/members").send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // The owner's break-glass: a password login, audited in the org.
    let resp = post_json(
        &app,
        "/api/v1/session",
        json!({"email": "owner@acme.test", "password": "test-password-1"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = owner.get("/api/v1/orgs/acme/members").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let actions = audit_actions(&app, acme).await;
    assert!(
        actions.iter().any(|a| a == "sso.break_glass_login"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "sso.enforcement_changed"),
        "{actions:?}"
    );

    // SSO through acme's provider (its domain verified) reaches acme.
    let added: Value = owner
        .post("/api/v1/orgs/acme/sso/domains")
        .json(&json!({"domain": "acme.test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    dns.add_txt(
        added["txt_name"].as_str().unwrap(),
        added["txt_value"].as_str().unwrap(),
    );
    let verified: Value = owner
        .post("/api/v1/orgs/acme/sso/domains/acme.test/verify")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["verified"], true, "{verified}");
    let resp = Browser::new().sso_login(&app, "acme", "/", "dev@acme.test").await;
    let token = session_cookie_of(&resp).expect("an SSO session");
    let resp = app
        .http
        .get(app.url("/api/v1/orgs/acme/members"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // SSO cannot be switched off or removed while it is enforced.
    let resp = owner
        .request(reqwest::Method::DELETE, "/api/v1/orgs/acme/sso")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, Some("sso_enforced")).await;
    let resp = set_enforced(&owner, "acme", false).await;
    assert_eq!(resp.status(), 200);
    let resp = dev.get("/api/v1/orgs/acme/members").send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "enforcement off: the password session works again"
    );
}

/// An admin whose own session did not come through the org's SSO cannot switch enforcement on
/// (they would lock themselves out); SSO must be configured first.
#[tokio::test]
async fn enforcement_needs_sso_and_an_admin_signed_in_through_it() {
    let app = spawn(&[]).await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &[]).await;
    let owner = app.user("owner@acme.test").await;
    let (_, acme) = app.org(&owner, "acme").await;
    let resp = set_enforced(&owner, "acme", true).await;
    assert_problem(resp, 409, Some("sso_not_configured")).await;
    configure_sso(&owner, "acme", &provider, "acme.test").await;
    let admin = app.user("admin@acme.test").await;
    app.add_member(acme, &admin, Role::Admin).await;
    let resp = set_enforced(&admin, "acme", true).await;
    assert_problem(resp, 409, Some("sso_session_required")).await;
}

/// Switching enforcement on revokes the grants members obtained with password sessions, and the
/// authorization server then sends a member with a password session back to the org's SSO
/// instead of the consent page; the owner is let through.
#[tokio::test]
async fn enforcement_applies_to_oauth_grants_and_the_authorization_server() {
    let app = spawn(&[]).await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &[]).await;
    let fx = fixture::setup(&app, "owner@sso-org.test", "sso-org").await;
    let dev = fx.member(&app, "dev@sso-org.test", Role::Developer).await;
    configure_sso(&fx.owner, "sso-org", &provider, "sso-org.test").await;
    let mut browser = AsBrowser::signed_in(&app, &dev);
    let (client_id, pkce, code) = fixture::code_for(&app, &fx, &mut browser, &dev.email, None).await;
    let (status, tokens) = fixture::token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", fixture::REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");

    let resp = set_enforced(&fx.owner, "sso-org", true).await;
    assert_eq!(resp.status(), 200);
    let (status, body) = fixture::token_request(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    let pkce = fixture::Pkce::new();
    let path = fixture::authorize_path(
        &client_id,
        fixture::REDIRECT,
        &pkce.challenge,
        &fx.resource,
        None,
        "st",
    );
    let resp = browser.get(&path).await;
    let status = resp.status();
    let html = resp.text().await.unwrap();
    assert!(!status.is_redirection(), "no code: {status}");
    assert!(html.contains("single sign-on"), "{html}");
    assert!(html.contains("/api/v1/sso/sso-org/start"), "{html}");
    assert!(!html.contains("/authorize/consent"), "a consent form: {html}");

    let mut owner_browser = AsBrowser::signed_in(&app, &fx.owner);
    let location = owner_browser.authorize(&path, &fx.owner.email).await;
    assert!(location.contains("code="), "{location}");
}

/// The provider's client secret is sealed with its org: copied into another org's row (by
/// someone with write access to the database) it does not open there.
#[tokio::test]
async fn the_sso_client_secret_is_bound_to_its_org() {
    let app = spawn(&[]).await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &[]).await;
    let a = app.user("a@a.test").await;
    let (_, org_a) = app.org(&a, "org-a").await;
    configure_sso(&a, "org-a", &provider, "a.test").await;
    let b = app.user("b@b.test").await;
    let (_, org_b) = app.org(&b, "org-b").await;
    copy_provider(&app, org_a, org_b).await;
    let resp = Browser::new().get(&app.url("/api/v1/sso/org-a/start")).await;
    assert_eq!(resp.status(), 302, "the original still works");
    let resp = Browser::new().get(&app.url("/api/v1/sso/org-b/start")).await;
    assert_ne!(
        resp.status(),
        302,
        "a secret copied into another org opened there"
    );
    assert!(resp.status().is_server_error(), "{}", resp.status());
}

async fn copy_provider(app: &TestApp, from: OrgId, to: OrgId) {
    let mut admin = app.db.admin().await;
    sqlx::query(
        "INSERT INTO org_sso_providers (org_id, issuer_url, client_id, client_secret_enc, allowed_domains, jit_role, enabled)
         SELECT $2, issuer_url, client_id, client_secret_enc, allowed_domains, jit_role, enabled
           FROM org_sso_providers WHERE org_id = $1",
    )
    .bind(from)
    .bind(to)
    .execute(&mut admin)
    .await
    .unwrap();
}

/// A value sealed before secrets were bound to their org (constant context) opens once, is
/// re-sealed with the org, and from then on only the org-bound form opens.
#[tokio::test]
async fn a_secret_sealed_before_org_binding_is_resealed_on_first_use() {
    let app = spawn(&[]).await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &[]).await;
    let a = app.user("a@a.test").await;
    let (_, org) = app.org(&a, "org-a").await;
    configure_sso(&a, "org-a", &provider, "a.test").await;
    let legacy = app.keyring().seal(
        provider.client_secret.as_bytes(),
        "org_sso_providers.client_secret",
    );
    let mut admin = app.db.admin().await;
    sqlx::query(
        "UPDATE org_sso_providers SET client_secret_enc = $2, client_secret_org_bound = false WHERE org_id = $1",
    )
    .bind(org)
    .bind(&legacy)
    .execute(&mut admin)
    .await
    .unwrap();
    let resp = Browser::new().get(&app.url("/api/v1/sso/org-a/start")).await;
    assert_eq!(resp.status(), 302);
    let (stored, bound): (Vec<u8>, bool) = sqlx::query_as(
        "SELECT client_secret_enc, client_secret_org_bound FROM org_sso_providers WHERE org_id = $1",
    )
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(bound);
    assert_ne!(stored, legacy);
    let opened = app
        .keyring()
        .open(&stored, &format!("org_sso_providers.client_secret:{org}"))
        .expect("re-sealed with the org");
    assert_eq!(opened, provider.client_secret.as_bytes());
    // The legacy path opens legacy values only: an org-bound value marked legacy stays shut.
    sqlx::query("UPDATE org_sso_providers SET client_secret_org_bound = false WHERE org_id = $1")
        .bind(org)
        .execute(&mut admin)
        .await
        .unwrap();
    let resp = Browser::new().get(&app.url("/api/v1/sso/org-a/start")).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
}

/// How a fake identity provider answers one path.
#[derive(Clone, Copy)]
enum Answer {
    Json(&'static str),
    /// A discovery document naming this server's own endpoints.
    Discovery,
    /// A body that never ends (64 KiB chunks as fast as the client reads).
    Endless,
    /// A body that never ends, one byte every 100 ms.
    Trickle,
}

/// Which answer a fake provider gives for a request path.
type Route = fn(&str) -> Answer;

/// A provider speaking plain HTTP/1.1 on loopback; counts the body bytes it managed to send.
struct FakeIdp {
    issuer: String,
    sent: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeIdp {
    async fn start(route: Route) -> FakeIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let (iss, counter) = (issuer.clone(), sent.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (iss, counter) = (iss.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                        if stream.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let answer = route(path.split('?').next().unwrap_or("/"));
                    let body = match answer {
                        Answer::Json(s) => s.to_owned(),
                        Answer::Discovery => json!({
                            "issuer": iss,
                            "authorization_endpoint": format!("{iss}/authorize"),
                            "token_endpoint": format!("{iss}/token"),
                            "jwks_uri": format!("{iss}/jwks"),
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        })
                        .to_string(),
                        Answer::Endless | Answer::Trickle => String::new(),
                    };
                    if matches!(answer, Answer::Json(_) | Answer::Discovery) {
                        let _ = stream
                            .write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                        return;
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let (chunk, pause) = match answer {
                        Answer::Trickle => (b" ".to_vec(), Duration::from_millis(100)),
                        _ => (vec![b' '; 65536], Duration::ZERO),
                    };
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    if stream.write_all(b"{\"x\":\"").await.is_err() {
                        return;
                    }
                    while stream.write_all(&framed).await.is_ok() {
                        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                });
            }
        });
        FakeIdp {
            issuer,
            sent,
            _task: task,
        }
    }
}

/// Configures SSO for `issuer` and returns the response and how long it took.
async fn put_sso(owner: &TestUser, slug: &str, issuer: &str) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let resp = owner
        .request(reqwest::Method::PUT, &format!("/api/v1/orgs/{slug}/sso"))
        .json(&json!({"issuer_url": issuer, "client_id": "c", "client_secret": "s", "allowed_domains": []}))
        .send()
        .await
        .unwrap();
    (resp, started.elapsed())
}

/// Discovery and the JWKS: an endless body is cut off at the size cap, a trickling one at the
/// request timeout, and neither is buffered whole.
#[tokio::test]
async fn oidc_discovery_and_jwks_reads_are_bounded() {
    let app = spawn(&[("egress.request_timeout_ms", "2000")]).await;
    let owner = app.user("owner@acme.test").await;
    app.org(&owner, "acme").await;
    let cases: [(&str, Route); 3] = [
        ("endless discovery document", |_| Answer::Endless),
        ("endless JWKS", |p| {
            if p == "/jwks" {
                Answer::Endless
            } else {
                Answer::Discovery
            }
        }),
        ("trickling discovery document", |_| Answer::Trickle),
    ];
    for (what, route) in cases {
        let idp = FakeIdp::start(route).await;
        let (resp, took) = put_sso(&owner, "acme", &idp.issuer).await;
        let body = assert_problem(resp, 400, Some("invalid_field")).await;
        assert_eq!(body["field"], "issuer_url", "{what}: {body}");
        assert!(took < Duration::from_secs(6), "{what}: took {took:?}");
        let sent = idp.sent.load(Ordering::Relaxed);
        assert!(sent < 32 << 20, "{what}: the provider sent {sent} bytes");
        eprintln!("{what}: refused after {took:?}, {sent} body bytes sent");
    }
}

/// The token endpoint's answer during the callback: an endless body ends the login quickly.
#[tokio::test]
async fn the_token_endpoint_read_is_bounded() {
    let app = spawn(&[("egress.request_timeout_ms", "2000")]).await;
    let owner = app.user("owner@acme.test").await;
    app.org(&owner, "acme").await;
    let idp = FakeIdp::start(|p| match p {
        "/token" => Answer::Endless,
        "/jwks" => Answer::Json(r#"{"keys":[]}"#),
        _ => Answer::Discovery,
    })
    .await;
    let (resp, _) = put_sso(&owner, "acme", &idp.issuer).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let mut browser = Browser::new();
    let resp = browser.get(&app.url("/api/v1/sso/acme/start")).await;
    assert_eq!(resp.status(), 302);
    let to_idp = location(&resp, &app.base);
    let state = url::Url::parse(&to_idp)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let started = Instant::now();
    let resp = browser
        .get(&app.url(&format!("/api/v1/sso/callback?code=abc&state={state}")))
        .await;
    let took = started.elapsed();
    assert!(session_cookie_of(&resp).is_none());
    assert!(resp.status().is_client_error() || resp.status().is_server_error());
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let sent = idp.sent.load(Ordering::Relaxed);
    assert!(sent < 32 << 20, "the provider sent {sent} bytes");
    eprintln!("token endpoint: refused after {took:?}, {sent} body bytes sent");
}
