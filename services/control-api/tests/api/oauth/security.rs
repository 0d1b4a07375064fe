//! RFC 9700 and MCP authorization checks at the authorization endpoint (docs/security-checklist.md
//! maps each row to a test; the token endpoint's are in security_token.rs).

use serde_json::Value;

use super::fixture::*;
use crate::helpers::TestApp;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A1: an unregistered redirect URI gets an error page at the AS, never a redirect.
#[tokio::test]
async fn rfc9700_a1_unregistered_redirect_uri_shows_error_page() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@a1.test", "a1").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    for evil in ["https://evil.example/cb", "http://127.0.0.1:7777/other", ""] {
        let resp = get(
            &app,
            &authorize_path(&client, evil, &pkce.challenge, &fx.resource, None, "s"),
        )
        .await;
        assert_eq!(resp.status(), 400, "{evil}");
        assert!(location(&resp).is_none(), "redirected for {evil}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        assert!(resp.text().await.unwrap().contains("Invalid redirect URI") || evil.is_empty());
    }
    // An unknown client too.
    let resp = get(
        &app,
        &authorize_path("ghd_nope", REDIRECT, &pkce.challenge, &fx.resource, None, "s"),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(location(&resp).is_none());
}

/// A3: for a registered loopback IP literal only the port may vary; `localhost` is not
/// `127.0.0.1` and gets no port allowance.
#[tokio::test]
async fn rfc9700_a3_loopback_port_may_vary_only_for_ip_literals() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@a3.test", "a3").await;
    let (client, _) = register(&app, &["http://127.0.0.1/cb", "http://localhost:3000/cb"], "none").await;
    let mut browser = Browser::signed_in(&app, &fx.owner);
    let pkce = Pkce::new();
    // First consent, then each candidate.
    let loc = browser
        .authorize(
            &authorize_path(
                &client,
                "http://127.0.0.1:54321/cb",
                &pkce.challenge,
                &fx.resource,
                None,
                "s",
            ),
            "",
        )
        .await;
    assert!(loc.starts_with("http://127.0.0.1:54321/cb?"), "{loc}");
    for (uri, accepted) in [
        ("http://127.0.0.1/cb", true),
        ("http://127.0.0.1:1/cb", true),
        ("http://127.0.0.1:65535/cb", true),
        ("http://localhost:3000/cb", true),
        ("http://localhost:3001/cb", false),
        ("http://localhost/cb", false),
        ("http://localhost:54321/cb", false),
        ("http://127.0.0.1:54321/cb/", false),
        ("http://127.0.0.1:054321/cb", false),
        ("http://127.0.0.2:54321/cb", false),
        ("http://[::1]:54321/cb", false),
        ("https://127.0.0.1:54321/cb", false),
    ] {
        let resp = browser
            .get(&authorize_path(
                &client,
                uri,
                &pkce.challenge,
                &fx.resource,
                None,
                "s",
            ))
            .await;
        if accepted {
            assert_eq!(resp.status(), 302, "{uri}");
            assert!(location(&resp).unwrap().starts_with(&format!("{uri}?")), "{uri}");
        } else {
            assert_eq!(resp.status(), 400, "{uri} must be refused");
            assert!(location(&resp).is_none());
        }
    }
}

/// A4: http redirect URIs other than loopback are refused at registration; web clients get
/// https only; native clients may use loopback and private-use schemes.
#[tokio::test]
async fn rfc9700_a4_non_loopback_http_redirect_refused_at_registration() {
    let app = TestApp::spawn().await;
    let cases: &[(Value, u16)] = &[
        (
            serde_json::json!({"redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none"}),
            400,
        ),
        (
            serde_json::json!({"redirect_uris": ["http://app.example/cb"], "application_type": "native", "token_endpoint_auth_method": "none"}),
            400,
        ),
        (
            serde_json::json!({"redirect_uris": ["http://127.0.0.1/cb"], "application_type": "web", "token_endpoint_auth_method": "none"}),
            400,
        ),
        (
            serde_json::json!({"redirect_uris": ["cursor://anysphere/cb"], "application_type": "web", "token_endpoint_auth_method": "none"}),
            400,
        ),
        (
            serde_json::json!({"redirect_uris": ["javascript://x/%0aalert(1)"], "application_type": "native", "token_endpoint_auth_method": "none"}),
            400,
        ),
        (
            serde_json::json!({"redirect_uris": ["https://app.example/cb#x"], "token_endpoint_auth_method": "none"}),
            400,
        ),
        (
            serde_json::json!({"redirect_uris": ["http://127.0.0.1/cb"], "application_type": "native", "token_endpoint_auth_method": "none"}),
            201,
        ),
        (
            serde_json::json!({"redirect_uris": ["http://localhost:8080/cb"], "token_endpoint_auth_method": "none"}),
            201,
        ),
        (
            serde_json::json!({"redirect_uris": ["cursor://anysphere/cb"], "application_type": "native", "token_endpoint_auth_method": "none"}),
            201,
        ),
        (
            serde_json::json!({"redirect_uris": ["https://app.example/cb"], "application_type": "web"}),
            201,
        ),
    ];
    for (body, expected) in cases {
        let resp = app
            .http
            .post(app.url("/oauth/register"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let out: Value = resp.json().await.unwrap();
        assert_eq!(status, *expected, "{body} -> {out}");
        if *expected == 400 {
            assert_eq!(out["error"], "invalid_redirect_uri", "{out}");
        }
    }
}

/// A5: there is no open redirector: the only redirects are to a validated client redirect URI or
/// back to `/authorize`; a tampered request in the login form is validated before anything.
#[tokio::test]
async fn rfc9700_a5_no_open_redirector() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@a5.test", "a5").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let mut browser = Browser::new(&app);
    let page = browser
        .get(&authorize_path(
            &client,
            REDIRECT,
            &pkce.challenge,
            &fx.resource,
            None,
            "s",
        ))
        .await;
    let (_, mut fields) = form(&page.text().await.unwrap());
    let q = fields.iter_mut().find(|(k, _)| k == "q").unwrap();
    q.1 = authorize_path(
        &client,
        "https://evil.example/cb",
        &pkce.challenge,
        &fx.resource,
        None,
        "s",
    )
    .trim_start_matches("/authorize?")
    .to_owned();
    fields.push(("email".into(), "o@a5.test".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let resp = browser.post_form("/authorize/login", &fields).await;
    assert_eq!(resp.status(), 400);
    assert!(location(&resp).is_none());
    // Every redirect the endpoint produced so far was to the registered URI or to /authorize.
    for path in [
        "/authorize?redirect_uri=https://evil.example/",
        "/authorize/login?next=https://evil.example/",
    ] {
        let resp = get(&app, path).await;
        assert!(location(&resp).is_none(), "{path}");
    }
}

async fn authorize_error(app: &TestApp, path: &str) -> std::collections::HashMap<String, String> {
    let resp = get(app, path).await;
    assert_eq!(resp.status(), 302, "{path}");
    let loc = location(&resp).unwrap();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    query_of(&loc)
}

/// P3/P5: an authorization request without a code challenge (public client without PKCE, or a
/// later downgrade attempt) gets no code at all.
#[tokio::test]
async fn rfc9700_p3_p5_authorization_without_pkce_refused() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@p3.test", "p3").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let path = authorize_path(&client, REDIRECT, "x", &fx.resource, None, "s");
    for strip in ["code_challenge", "code_challenge_method", "both"] {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(path.trim_start_matches("/authorize?").as_bytes())
                .into_owned()
                .filter(|(k, _)| !(k == strip || (strip == "both" && k.starts_with("code_challenge"))))
                .collect();
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let err = authorize_error(&app, &format!("/authorize?{q}")).await;
        assert_eq!(err["error"], "invalid_request", "{strip}");
        assert!(!err.contains_key("code"));
        assert_eq!(err["iss"], app.cfg.issuer());
        assert_eq!(err["state"], "s");
    }
}

/// P4: `code_challenge_method=plain` is refused.
#[tokio::test]
async fn rfc9700_p4_plain_challenge_method_refused() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@p4.test", "p4").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let path =
        authorize_path(&client, REDIRECT, &pkce.challenge, &fx.resource, None, "s").replace("S256", "plain");
    let err = authorize_error(&app, &path).await;
    assert_eq!(err["error"], "invalid_request");
    assert!(err["error_description"].contains("S256"));
}

/// P6: the metadata advertises S256 and nothing else.
#[tokio::test]
async fn rfc9700_p6_metadata_advertises_s256_only() {
    let app = TestApp::spawn().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let meta: Value = get(&app, path).await.json().await.unwrap();
        assert_eq!(
            meta["code_challenge_methods_supported"],
            serde_json::json!(["S256"]),
            "{path}"
        );
        assert_eq!(meta["response_types_supported"], serde_json::json!(["code"]));
        assert!(
            !meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&Value::from("password"))
        );
    }
}

/// M1: every authorization response carries `iss`, errors included; the metadata says so.
#[tokio::test]
async fn rfc9700_m1_iss_on_every_authorization_response() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@m1.test", "m1").await;
    let meta: Value = get(&app, "/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let mut browser = Browser::new(&app);
    // Success (through login and consent) ...
    let ok = browser
        .authorize(
            &authorize_path(&client, REDIRECT, &pkce.challenge, &fx.resource, None, "s"),
            "o@m1.test",
        )
        .await;
    assert_eq!(query_of(&ok)["iss"], app.cfg.issuer());
    // ... and every kind of error redirect.
    let base = authorize_path(&client, REDIRECT, &pkce.challenge, &fx.resource, None, "s");
    for (path, error) in [
        (
            base.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (base.replace("S256", "plain"), "invalid_request"),
        (
            authorize_path(
                &client,
                REDIRECT,
                &pkce.challenge,
                "https://elsewhere.example/mcp",
                None,
                "s",
            ),
            "invalid_target",
        ),
        (
            authorize_path(
                &client,
                REDIRECT,
                &pkce.challenge,
                &fx.resource,
                Some("nope"),
                "s",
            ),
            "invalid_scope",
        ),
        (
            format!("{base}&prompt=none").replace("state=s", "state=t"),
            "login_required",
        ),
    ] {
        let err = authorize_error(&app, &path).await;
        assert_eq!(err["error"], error, "{path}");
        assert_eq!(err["iss"], app.cfg.issuer(), "{path}");
    }
    // Denied consent, too.
    let other_pkce = Pkce::new();
    let (client2, _) = register(&app, &[REDIRECT], "none").await;
    let page = browser
        .get(&authorize_path(
            &client2,
            REDIRECT,
            &other_pkce.challenge,
            &fx.resource,
            None,
            "d",
        ))
        .await;
    let (action, mut fields) = form(&page.text().await.unwrap());
    fields.push(("decision".into(), "deny".into()));
    let resp = browser.post_form(&action, &fields).await;
    let q = query_of(resp.headers()["location"].to_str().unwrap());
    assert_eq!(
        (q["error"].as_str(), q["iss"].as_str(), q["state"].as_str()),
        ("access_denied", app.cfg.issuer().as_str(), "d")
    );
}

/// G1: ROPC and the implicit grant are refused.
#[tokio::test]
async fn rfc9700_g1_ropc_and_implicit_refused() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@g1.test", "g1").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "password"),
            ("client_id", &client),
            ("username", "o@g1.test"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let pkce = Pkce::new();
    let err = authorize_error(
        &app,
        &authorize_path(&client, REDIRECT, &pkce.challenge, &fx.resource, None, "s")
            .replace("response_type=code", "response_type=token"),
    )
    .await;
    assert_eq!(err["error"], "unsupported_response_type");
}

/// G2: no CORS on the authorization endpoint (preflight or simple request), while the token
/// endpoint allows browser clients.
#[tokio::test]
async fn rfc9700_g2_no_cors_on_authorize() {
    let app = TestApp::spawn().await;
    for method in [reqwest::Method::OPTIONS, reqwest::Method::GET] {
        let resp = app
            .http
            .request(method.clone(), app.url("/authorize?client_id=x"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{method}"
        );
        assert!(resp.headers().get("access-control-allow-credentials").is_none());
    }
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/oauth/token"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

/// X1 (confused deputy): consent is per client. A user who approved client Y is still asked
/// before client X gets a code; the consent page cannot be framed and its form is CSRF-bound.
#[tokio::test]
async fn rfc9700_x1_consent_is_per_client_and_not_frameable() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@x1.test", "x1").await;
    let mut browser = Browser::new(&app);
    let (_y, _pkce, _code) = code_for(&app, &fx, &mut browser, "o@x1.test", None).await;
    let (x, _) = register(&app, &["https://attacker.example/cb"], "none").await;
    let pkce = Pkce::new();
    let resp = browser
        .get(&authorize_path(
            &x,
            "https://attacker.example/cb",
            &pkce.challenge,
            &fx.resource,
            None,
            "s",
        ))
        .await;
    assert_eq!(resp.status(), 200, "no code without a click");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("attacker.example"), "the redirect host is shown");
    let (action, mut fields) = form(&html);
    // A forged consent (wrong CSRF token) gets nothing.
    for f in fields.iter_mut().filter(|(k, _)| k == "csrf") {
        f.1 = "forged".into();
    }
    fields.push(("decision".into(), "approve".into()));
    let forged = browser.post_form(&action, &fields).await;
    assert_eq!(forged.status(), 400);
    assert!(forged.headers().get("location").is_none());
}

/// The login form's issue time is the client's to send: any value, however absurd, is a refused
/// form, never an arithmetic overflow.
#[tokio::test]
async fn an_absurd_form_time_is_refused_without_overflow() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@formtime.test", "formtime").await;
    let (client, _) = register(&app, &[REDIRECT], "none").await;
    let pkce = Pkce::new();
    let path = authorize_path(&client, REDIRECT, &pkce.challenge, &fx.resource, None, "s");
    for absurd in [i64::MIN.to_string(), i64::MAX.to_string()] {
        let mut browser = Browser::new(&app);
        let page = browser.get(&path).await;
        let (action, mut fields) = form(&page.text().await.unwrap());
        fields.iter_mut().find(|(k, _)| k == "t").unwrap().1 = absurd.clone();
        fields.push(("email".into(), "o@formtime.test".into()));
        fields.push(("password".into(), PASSWORD.into()));
        let resp = browser.post_form(&action, &fields).await;
        assert!(location(&resp).is_none(), "t={absurd}: signed in");
        let text = resp.text().await.unwrap();
        assert!(text.contains("form expired"), "t={absurd}: {text}");
    }
    // The authorization server still serves.
    let page = Browser::new(&app).get(&path).await;
    assert_eq!(page.status(), 200);
}
