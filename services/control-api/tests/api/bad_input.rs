//! Bad input to every account, org and SSO route with a body: wrong types, missing and unknown
//! fields, invalid UTF-8, oversize bodies, wrong content types and malformed path ids all get a
//! 4xx problem+json naming the field, never a 500.

use reqwest::Method;
use serde_json::{Value, json};

use crate::account_support::assert_problem;
use crate::helpers::{TestApp, TestUser};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Bool,
    List,
    Role,
    Uuid,
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

struct BodyRoute {
    method: Method,
    path: String,
    signed_in: bool,
    fields: Vec<Field>,
}

fn sample(kind: Kind) -> Value {
    match kind {
        Kind::Str => json!("valid text value"),
        Kind::Bool => json!(true),
        Kind::List => json!(["acme.test"]),
        Kind::Role => json!("viewer"),
        Kind::Uuid => json!("0190a0a0-0000-7000-8000-000000000000"),
    }
}

fn wrong(kind: Kind) -> Value {
    match kind {
        Kind::Str | Kind::Role | Kind::Uuid => json!(12345),
        Kind::Bool => json!("yes"),
        Kind::List => json!("not a list"),
    }
}

fn routes(target: &TestUser) -> Vec<BodyRoute> {
    use Kind::*;
    let route = |method: Method, path: &str, signed_in: bool, fields: Vec<Field>| BodyRoute {
        method,
        path: path.to_owned(),
        signed_in,
        fields,
    };
    vec![
        route(
            Method::POST,
            "/api/v1/signup",
            false,
            vec![req("email", Str), req("password", Str), opt("display_name", Str)],
        ),
        route(
            Method::POST,
            "/api/v1/account/verify-email",
            false,
            vec![req("token", Str)],
        ),
        route(
            Method::POST,
            "/api/v1/session",
            false,
            vec![req("email", Str), req("password", Str)],
        ),
        route(
            Method::POST,
            "/api/v1/password-reset",
            false,
            vec![req("email", Str)],
        ),
        route(
            Method::POST,
            "/api/v1/password-reset/confirm",
            false,
            vec![req("token", Str), req("new_password", Str)],
        ),
        route(
            Method::POST,
            "/api/v1/account/password",
            true,
            vec![req("current_password", Str), req("new_password", Str)],
        ),
        route(
            Method::DELETE,
            "/api/v1/account",
            true,
            vec![opt("password", Str)],
        ),
        route(
            Method::POST,
            "/api/v1/orgs",
            true,
            vec![req("slug", Str), req("name", Str)],
        ),
        route(Method::PATCH, "/api/v1/orgs/acme", true, vec![opt("name", Str)]),
        route(
            Method::PATCH,
            "/api/v1/orgs/acme/settings",
            true,
            vec![opt("log_tool_arguments", Bool)],
        ),
        route(
            Method::PATCH,
            &format!("/api/v1/orgs/acme/members/{}", target.id),
            true,
            vec![req("role", Role)],
        ),
        route(
            Method::POST,
            "/api/v1/orgs/acme/transfer-ownership",
            true,
            vec![req("user_id", Uuid)],
        ),
        route(
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            true,
            vec![req("email", Str), req("role", Role)],
        ),
        route(
            Method::POST,
            "/api/v1/invitations/accept",
            true,
            vec![req("token", Str)],
        ),
        route(
            Method::PUT,
            "/api/v1/orgs/acme/sso",
            true,
            vec![
                req("issuer_url", Str),
                req("client_id", Str),
                opt("client_secret", Str),
                opt("allowed_domains", List),
                opt("jit_role", Role),
                opt("enabled", Bool),
            ],
        ),
    ]
}

fn request(app: &TestApp, user: &TestUser, route: &BodyRoute) -> reqwest::RequestBuilder {
    if route.signed_in {
        user.request(route.method.clone(), &route.path)
    } else {
        app.http.request(route.method.clone(), app.url(&route.path))
    }
}

fn valid_body(route: &BodyRoute) -> serde_json::Map<String, Value> {
    route
        .fields
        .iter()
        .map(|f| (f.name.to_owned(), sample(f.kind)))
        .collect()
}

#[tokio::test]
async fn bad_bodies_get_problems_naming_the_field() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@acme.test").await;
    let target = app.user("target@acme.test").await;
    let (_, org) = app.org(&owner, "acme").await;
    app.add_member(org, &target, gatehouse_core::role::Role::Developer)
        .await;
    let mut checked = 0;
    for route in routes(&target) {
        let what = format!("{} {}", route.method, route.path);
        for field in &route.fields {
            let mut body = valid_body(&route);
            body.insert(field.name.to_owned(), wrong(field.kind));
            let resp = request(&app, &owner, &route).json(&body).send().await.unwrap();
            let problem = assert_problem(resp, 400, Some("invalid_field")).await;
            assert_eq!(
                problem["field"], field.name,
                "{what}: wrong type of {}",
                field.name
            );
            if field.required {
                let mut body = valid_body(&route);
                body.remove(field.name);
                let resp = request(&app, &owner, &route).json(&body).send().await.unwrap();
                let problem = assert_problem(resp, 400, Some("invalid_field")).await;
                assert_eq!(problem["field"], field.name, "{what}: missing {}", field.name);
            }
            checked += 1;
        }
        let mut body = valid_body(&route);
        body.insert("zzz_unknown".into(), json!(1));
        let resp = request(&app, &owner, &route).json(&body).send().await.unwrap();
        let problem = assert_problem(resp, 400, Some("invalid_field")).await;
        assert_eq!(problem["field"], "zzz_unknown", "{what}: unknown field");

        let resp = request(&app, &owner, &route)
            .header("content-type", "application/json")
            .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 400, Some("bad_request")).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("UTF-8"),
            "{what}: {problem}"
        );

        let resp = request(&app, &owner, &route)
            .header("content-type", "application/json")
            .body(format!("{{\"email\": \"{}\"}}", "a".repeat(300 * 1024)))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 413, Some("payload_too_large")).await;

        let resp = request(&app, &owner, &route)
            .header("content-type", "text/plain")
            .body("email=x")
            .send()
            .await
            .unwrap();
        assert_problem(resp, 415, Some("unsupported_media_type")).await;

        let resp = request(&app, &owner, &route)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400, Some("bad_request")).await;

        let resp = request(&app, &owner, &route)
            .json(&json!([1, 2]))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{what}: a JSON array answered {status}"
        );
    }
    assert!(checked >= 25, "only {checked} fields checked");

    // Malformed ids in paths name the path.
    for (method, path) in [
        (Method::PATCH, "/api/v1/orgs/acme/members/not-a-uuid"),
        (Method::DELETE, "/api/v1/orgs/acme/members/42"),
        (Method::DELETE, "/api/v1/orgs/acme/invitations/zzz"),
    ] {
        let resp = owner
            .request(method.clone(), path)
            .json(&json!({"role": "viewer"}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 400, Some("invalid_field")).await;
        assert_eq!(problem["field"], "path", "{method} {path}");
    }
    // Unknown query parameters on the SSO start are refused too.
    let resp = app
        .http
        .get(app.url("/api/v1/sso/acme/start?return_to=/&evil=1"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "unknown query parameter answered {status}"
    );
}
