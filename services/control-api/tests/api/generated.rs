//! API-wide tests generated from the OpenAPI document: the committed document matches the code,
//! every operation's minimum role holds for every role, no operation taking an id reaches
//! another org's resource, and no malformed request gets anything but a 4xx problem+json.

use proptest::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use gatehouse_core::role::Role;

use crate::helpers::{TestApp, TestUser};
use crate::route_table::{self, Access, Operation, access, example_body, operations, resolve};
use crate::world::{Cast, World, dump_org, problem, world, world_for};

const ROLES: [Option<Role>; 5] = [
    Some(Role::Viewer),
    Some(Role::Developer),
    Some(Role::Admin),
    Some(Role::Owner),
    None,
];

/// An app whose SSRF guard lets it reach fixtures on 127.0.0.1 (and nothing else private).
pub async fn app_reaching_loopback() -> TestApp {
    TestApp::spawn_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_hosts", "[\"127.0.0.1\"]"),
    ])
    .await
}

pub async fn fixture() -> mcp_fixture::FixtureHandle {
    mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        session_mode: mcp_fixture::SessionMode::Stateless,
        response_format: mcp_fixture::ResponseFormat::Json,
        ..Default::default()
    })
    .await
    .expect("start the MCP fixture")
}

async fn send(
    user: Option<&TestUser>,
    app: &TestApp,
    op: &Operation,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = match user {
        Some(u) => u.request(op.method.clone(), path),
        None => app.http.request(op.method.clone(), app.url(path)),
    };
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.unwrap()
}

#[test]
fn committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .expect("services/control-api/openapi.json exists");
    let generated = gatehouse_control_api::openapi::document_json();
    assert!(
        committed == generated,
        "services/control-api/openapi.json is out of date; regenerate it with \
         `cargo run -p gatehouse -- openapi > services/control-api/openapi.json`"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(
        !generated.contains("/internal/"),
        "the internal API must not be in the public document"
    );
}

#[test]
fn every_operation_has_a_minimum_role_and_an_example() {
    let doc = route_table::document();
    let ops = operations(&doc);
    assert!(
        ops.len() >= 25,
        "expected the whole API, found {} operations",
        ops.len()
    );
    route_table::assert_table_covers(&ops);
    let placeholder = World {
        slug: "x".into(),
        backend_id: Default::default(),
        backend_dsn: "postgres://x@h/d".into(),
        sql_tool_id: Default::default(),
        org_id: Default::default(),
        server_id: Default::default(),
        tool_id: Default::default(),
        tool_hash: "0".repeat(64),
        scope_id: Default::default(),
        endpoint_id: Default::default(),
        service_token_id: Default::default(),
        service_client_id: Default::default(),
        member_id: None,
        invitation_id: Default::default(),
        invoice_id: Default::default(),
        domain: "x.example.com".into(),
        attribute: "attr_x".into(),
    };
    let missing: Vec<String> = ops
        .iter()
        .filter(|op| {
            op.body_schema.is_some() && example_body(&op.id, &placeholder, "http://x", None).is_none()
        })
        .map(Operation::label)
        .collect();
    assert!(
        missing.is_empty(),
        "these operations take a JSON body but have no example in route_table::example_body:\n  {}",
        missing.join("\n  ")
    );
}

/// Operations whose query string is written by a third party and must tolerate parameters it
/// adds: the OIDC callback receives the identity provider's redirect, which may carry extension
/// parameters (`iss`, `session_state`, ...; RFC 6749 §3.1.2 and OIDC Session Management).
const THIRD_PARTY_QUERY: &[&str] = &["sso.callback"];

#[tokio::test]
async fn role_matrix_holds_for_every_operation() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let cast = Cast::new(&app).await;
    let doc = route_table::document();
    let ops = operations(&doc);
    route_table::assert_table_covers(&ops);
    let shared = world_for(&app, &cast, upstream.url()).await;
    let mut failures = Vec::new();
    for op in &ops {
        let rule = access(&op.id).unwrap();
        // Anonymous callers: 401 unless the operation is public.
        {
            let path = shared.fill(&op.path);
            // Public operations get credentials that work (logging in as the owner is harmless).
            let body = example_body(&op.id, &shared, upstream.url(), Some(&cast.owner.email));
            let response = send(None, &app, op, &path, body.as_ref()).await;
            let status = response.status().as_u16();
            let ok = match rule {
                Access::Public => status != 401 && status != 403 && status < 500,
                _ => status == 401,
            };
            if !ok {
                failures.push(format!("{} anonymous ({rule:?}): got {status}", op.label()));
            }
        }
        let min = match rule {
            Access::Member(min) => min,
            // Not about an org: every signed-in user is allowed.
            Access::Public | Access::SignedIn => {
                for _ in ROLES {
                    // A user of its own: these operations may end the session or the account.
                    let fresh = world_for(&app, &cast, upstream.url()).await;
                    let user = app
                        .user(&format!(
                            "solo-{}@example.com",
                            &uuid::Uuid::new_v4().simple().to_string()[..10]
                        ))
                        .await;
                    let path = fresh.fill(&op.path);
                    let body = example_body(&op.id, &fresh, upstream.url(), Some(&user.email));
                    let response = send(Some(&user), &app, op, &path, body.as_ref()).await;
                    let status = response.status().as_u16();
                    if status == 401 || status == 403 || status >= 500 {
                        failures.push(format!("{} signed in ({rule:?}): got {status}", op.label()));
                    }
                }
                continue;
            }
        };
        for role in ROLES {
            let fresh;
            let w = if op.method == Method::GET {
                &shared
            } else {
                fresh = world_for(&app, &cast, upstream.url()).await;
                &fresh
            };
            let path = w.fill(&op.path);
            let user = cast.as_role(role);
            let body = example_body(&op.id, w, upstream.url(), Some(&user.email));
            let response = send(Some(user), &app, op, &path, body.as_ref()).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let who = role.map_or("non-member".to_owned(), |r| r.to_string());
            let ok = match role {
                None => status == 404,
                Some(r) if r >= min => {
                    status < 400 || (status != 401 && status != 403 && status != 404 && status < 500)
                }
                Some(_) => status == 403,
            };
            if !ok {
                failures.push(format!(
                    "{} as {who} (minimum {min}): got {status}: {text}",
                    op.label()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "role matrix violations:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn another_orgs_ids_are_404_and_change_nothing() {
    let app = app_reaching_loopback().await;
    let upstream = fixture().await;
    let cast = Cast::new(&app).await;
    let doc = route_table::document();
    let ops = operations(&doc);
    let victim = world_for(&app, &cast, upstream.url()).await;
    // The attacker owns their own org: every role check passes there.
    let attacker = world(&app, &cast.outsider, &[], upstream.url()).await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for op in &ops {
        if op.path_params().iter().all(|p| p == "org") {
            continue;
        }
        let victim_before = dump_org(&app, victim.org_id).await;
        let attacker_before = dump_org(&app, attacker.org_id).await;
        // The attacker's org in the path, the victim's ids everywhere else.
        let path = victim.fill(&op.path).replacen(&victim.slug, &attacker.slug, 1);
        let body = example_body(&op.id, &victim, upstream.url(), Some(&cast.outsider.email));
        let response = send(Some(&cast.outsider), &app, op, &path, body.as_ref()).await;
        let status = response.status().as_u16();
        if status != 404 {
            let text = response.text().await.unwrap_or_default();
            failures.push(format!("{}: expected 404, got {status}: {text}", op.label()));
        }
        if dump_org(&app, victim.org_id).await != victim_before {
            failures.push(format!("{}: the victim org's data changed", op.label()));
        }
        if dump_org(&app, attacker.org_id).await != attacker_before {
            failures.push(format!("{}: the attacker org's data changed", op.label()));
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} operations take ids");
    assert!(
        failures.is_empty(),
        "cross-tenant violations:\n{}",
        failures.join("\n")
    );
}

/// The JSON types a schema allows (`None`: anything, or not determinable).
fn allowed_types(doc: &Value, schema: &Value) -> Option<Vec<String>> {
    let schema = resolve(doc, schema);
    if let Some(t) = schema.get("type") {
        return match t {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(list) => Some(
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        };
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let mut all = Vec::new();
            for option in options {
                all.extend(allowed_types(doc, option)?);
            }
            return Some(all);
        }
    }
    if let Some(first) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return allowed_types(doc, first);
    }
    None
}

fn json_type_fits(value: &Value, allowed: &[String]) -> bool {
    let has = |t: &str| allowed.iter().any(|a| a == t);
    match value {
        Value::Null => has("null"),
        Value::Bool(_) => has("boolean"),
        Value::Number(n) => has("number") || (has("integer") && (n.is_i64() || n.is_u64())),
        Value::String(_) => has("string"),
        Value::Array(_) => has("array"),
        Value::Object(_) => has("object"),
    }
}

fn field_matches(reported: &str, field: &str) -> bool {
    reported == field
        || reported.starts_with(&format!("{field}."))
        || reported.starts_with(&format!("{field}["))
}

async fn expect_field_problem(response: reqwest::Response, field: &str, what: &str) -> Result<(), String> {
    let is_problem = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !is_problem {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!(
            "{what}: expected a problem+json 400, got {status}: {text}"
        ));
    }
    let (status, body) = problem(response).await;
    if status != 400 && status != 422 {
        return Err(format!("{what}: expected 400, got {status}: {body}"));
    }
    match body["field"].as_str() {
        Some(reported) if field_matches(reported, field) => Ok(()),
        other => Err(format!(
            "{what}: expected the problem to name {field:?}, it named {other:?}: {body}"
        )),
    }
}

#[test]
fn malformed_requests_get_4xx_problem_json_naming_the_field() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, upstream, cast, w) = runtime.block_on(async {
        let app = app_reaching_loopback().await;
        let upstream = fixture().await;
        let cast = Cast::new(&app).await;
        let w = world_for(&app, &cast, upstream.url()).await;
        (app, upstream, cast, w)
    });
    let doc = route_table::document();
    let ops = operations(&doc);
    let owner = &cast.owner;
    let limit = app.cfg.control_api.max_body_bytes;
    let mut failures: Vec<String> = Vec::new();

    runtime.block_on(async {
        for op in &ops {
            let path = w.fill(&op.path);
            // Ids that are not ids.
            for param in op.path_params().into_iter().filter(|p| p != "org") {
                let bad = path.replace(&w.path_param(&param, &op.path), "not-a-uuid");
                let body = example_body(&op.id, &w, upstream.url(), None);
                let response = send(Some(owner), &app, op, &bad, body.as_ref()).await;
                let status = response.status().as_u16();
                let (_, problem_body) = problem(response).await;
                if status != 400 && status != 404 {
                    failures.push(format!(
                        "{} with {{{param}}}=not-a-uuid: got {status}: {problem_body}",
                        op.label()
                    ));
                }
            }
            // Query parameters of the wrong type, and unknown ones. A free-text parameter may
            // accept any string; it must still never fail with a 5xx.
            for (name, schema) in &op.query {
                let allowed = allowed_types(&doc, schema).unwrap_or_default();
                let resolved = resolve(&doc, schema);
                let constrained = allowed.iter().any(|t| t != "string" && t != "null")
                    || resolved.get("enum").is_some()
                    || resolved.get("format").is_some();
                let wrong = if allowed.iter().any(|t| t == "integer" || t == "number") {
                    "not-a-number".to_owned()
                } else {
                    "zz-definitely-not-valid".to_owned()
                };
                let url = format!("{path}?{name}={}", urlencode(&wrong));
                let response = send(Some(owner), &app, op, &url, None).await;
                let what = format!("{} ?{name}={wrong:?}", op.label());
                if constrained {
                    if let Err(e) = expect_field_problem(response, name, &what).await {
                        failures.push(e);
                    }
                } else if response.status().is_server_error() {
                    failures.push(format!("{what}: {}", response.status()));
                }
            }
            if !op.query.is_empty() && !THIRD_PARTY_QUERY.contains(&op.id.as_str()) {
                let url = format!("{path}?zz_unknown_param=1");
                let response = send(Some(owner), &app, op, &url, None).await;
                if let Err(e) = expect_field_problem(
                    response,
                    "zz_unknown_param",
                    &format!("{} unknown query parameter", op.label()),
                )
                .await
                {
                    failures.push(e);
                }
            }
            let Some(schema) = &op.body_schema else { continue };
            let example = example_body(&op.id, &w, upstream.url(), None).expect("example body");
            let url = app.url(&path);
            // Wrong content type.
            let response = owner
                .request(op.method.clone(), &path)
                .header("content-type", "text/plain")
                .body(example.to_string())
                .send()
                .await
                .unwrap();
            let (status, _) = problem(response).await;
            if status != 415 {
                failures.push(format!("{} text/plain: expected 415, got {status}", op.label()));
            }
            // Not UTF-8, not JSON, empty, oversize.
            for (what, bytes, expected) in [
                ("invalid UTF-8", vec![b'{', 0xff, 0xfe, b'}'], 400u16),
                ("truncated JSON", b"{\"a\":".to_vec(), 400),
                ("empty body", Vec::new(), 400),
                ("a JSON array", b"[]".to_vec(), 400),
                ("oversize", vec![b' '; limit + 1], 413),
            ] {
                let response = owner
                    .request(op.method.clone(), &path)
                    .header("content-type", "application/json")
                    .body(bytes)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = problem(response).await;
                if status != expected {
                    failures.push(format!(
                        "{} {what}: expected {expected}, got {status}: {body}",
                        op.label()
                    ));
                }
            }
            let _ = url;
            // Unknown field.
            let mut unknown = example.clone();
            unknown["zz_unknown_field"] = json!(1);
            let response = send(Some(owner), &app, op, &path, Some(&unknown)).await;
            if let Err(e) = expect_field_problem(
                response,
                "zz_unknown_field",
                &format!("{} unknown field", op.label()),
            )
            .await
            {
                failures.push(e);
            }
            // Each required field missing.
            let resolved = resolve(&doc, schema);
            for field in resolved["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let mut missing = example.clone();
                missing.as_object_mut().unwrap().remove(field);
                let response = send(Some(owner), &app, op, &path, Some(&missing)).await;
                if let Err(e) =
                    expect_field_problem(response, field, &format!("{} without {field}", op.label())).await
                {
                    failures.push(e);
                }
            }
        }
    });

    // Wrong types, generated: for a random property of a random operation, a value of a JSON type
    // its schema does not allow.
    let body_ops: Vec<&Operation> = ops.iter().filter(|op| op.body_schema.is_some()).collect();
    // (operation, property, allowed JSON types, enum values)
    type Field<'a> = (&'a Operation, String, Vec<String>, Option<Vec<Value>>);
    let mut fields: Vec<Field> = Vec::new();
    for op in &body_ops {
        let resolved = resolve(&doc, op.body_schema.as_ref().unwrap());
        for (name, prop) in resolved["properties"].as_object().into_iter().flatten() {
            if let Some(types) = allowed_types(&doc, prop) {
                let enumerated = resolve(&doc, prop).get("enum").and_then(Value::as_array).cloned();
                fields.push((op, name.clone(), types, enumerated));
            }
        }
    }
    assert!(
        fields.len() >= 20,
        "only {} typed body fields found",
        fields.len()
    );
    let config = ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (
        0..fields.len(),
        0usize..8,
        any::<i64>(),
        "[a-zA-Z0-9 _\\-]{0,24}",
        any::<bool>(),
        any::<f64>(),
    );
    let result = runner.run(&strategy, |(index, kind, int, text, flag, float)| {
        let (op, field, allowed, enumerated) = &fields[index];
        let candidates = [
            json!(text),
            json!(int),
            json!(if float.is_finite() { float + 0.5 } else { 0.5 }),
            json!(flag),
            json!([int]),
            json!({ "k": text }),
            Value::Null,
            json!(format!("zz-not-an-option-{text}")),
        ];
        let value = candidates[kind].clone();
        let fits = json_type_fits(&value, allowed);
        let valid_enum = enumerated.as_ref().is_none_or(|options| options.contains(&value));
        if fits && valid_enum {
            return Ok(()); // not a wrong value for this field
        }
        if fits && enumerated.is_none() {
            return Ok(());
        }
        let mut body = example_body(&op.id, &w, upstream.url(), None).unwrap();
        body[field.as_str()] = value.clone();
        let path = w.fill(&op.path);
        let outcome = runtime.block_on(async {
            let response = send(Some(owner), &app, op, &path, Some(&body)).await;
            expect_field_problem(response, field, &format!("{} {field}={value}", op.label())).await
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        Ok(())
    });
    if let Err(e) = result {
        failures.push(format!("generated wrong-type case failed: {e}"));
    }
    assert!(
        failures.is_empty(),
        "bad-input violations:\n{}",
        failures.join("\n")
    );
    drop(upstream);
    drop(app);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
