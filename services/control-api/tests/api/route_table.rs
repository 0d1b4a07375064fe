//! The one table of who may call what, and a valid example request per operation. The generated
//! tests (role matrix, cross-tenant, bad input) read every operation from the OpenAPI document
//! and look it up here: an operation without an entry fails them, so a new route is covered or
//! the build is red.

use serde_json::{Value, json};

use gatehouse_core::role::Role;

use crate::world::World;

/// Who may call an operation. `Public` and `SignedIn` are for routes outside an org (sessions,
/// sign-up) that other areas add.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user.
    SignedIn,
    /// A member of the org in the path with at least this role; anyone else gets 404.
    Member(Role),
}

use Access::*;
use Role::*;

/// Minimum access per operation id (also documented in docs/permissions.md).
pub const ROUTES: &[(&str, Access)] = &[
    // domain servers and tools
    ("servers.list", Member(Viewer)),
    ("servers.get", Member(Viewer)),
    ("servers.tools", Member(Viewer)),
    ("servers.create", Member(Admin)),
    ("servers.update", Member(Admin)),
    ("servers.delete", Member(Admin)),
    ("servers.sync", Member(Developer)),
    ("servers.tools.decide", Member(Admin)),
    ("tools.list", Member(Viewer)),
    ("tools.get", Member(Viewer)),
    ("tools.approve", Member(Admin)),
    ("tools.reject", Member(Admin)),
    // backends and hosted SQL tools
    ("backends.list", Member(Viewer)),
    ("backends.get", Member(Viewer)),
    ("backends.reference_tables.list", Member(Viewer)),
    ("backends.tools.list", Member(Viewer)),
    ("backends.tools.get", Member(Viewer)),
    ("endpoints.backends.get", Member(Viewer)),
    ("backends.test", Member(Developer)),
    ("backends.tools.create", Member(Developer)),
    ("backends.tools.update", Member(Developer)),
    ("backends.tools.delete", Member(Developer)),
    ("backends.tools.inspect", Member(Developer)),
    ("backends.create", Member(Admin)),
    ("backends.update", Member(Admin)),
    ("backends.delete", Member(Admin)),
    ("backends.setup_sql", Member(Admin)),
    ("backends.reference_tables.mark", Member(Admin)),
    ("backends.reference_tables.unmark", Member(Admin)),
    ("endpoints.backends.set", Member(Admin)),
    // scopes and grants
    ("scopes.list", Member(Viewer)),
    ("scopes.get", Member(Viewer)),
    ("scopes.create", Member(Admin)),
    ("scopes.update", Member(Admin)),
    ("scopes.set_tools", Member(Admin)),
    ("scopes.delete", Member(Admin)),
    // endpoints
    ("endpoints.list", Member(Viewer)),
    ("endpoints.get", Member(Viewer)),
    ("endpoints.client_config", Member(Viewer)),
    ("endpoints.create", Member(Admin)),
    ("endpoints.update", Member(Admin)),
    ("endpoints.playground", Member(Viewer)),
    ("endpoints.set_servers", Member(Admin)),
    ("endpoints.delete", Member(Admin)),
    // sessions and accounts (not about an org)
    ("session.signup", Public),
    ("session.verify_email", Public),
    ("session.login", Public),
    ("session.request_password_reset", Public),
    ("session.confirm_password_reset", Public),
    ("session.get", SignedIn),
    ("session.logout", SignedIn),
    ("account.change_password", SignedIn),
    ("account.delete", SignedIn),
    ("orgs.create", SignedIn),
    ("orgs.list", SignedIn),
    ("invitations.accept", SignedIn),
    ("sso.start", Public),
    ("sso.callback", Public),
    ("sso.confirm_page", Public),
    ("sso.confirm", Public),
    // orgs, members, invitations, SSO
    ("orgs.get", Member(Viewer)),
    ("orgs.get_settings", Member(Viewer)),
    ("members.list", Member(Viewer)),
    ("members.leave", Member(Viewer)),
    ("orgs.update", Member(Admin)),
    ("orgs.update_settings", Member(Admin)),
    ("members.change_role", Member(Admin)),
    ("members.remove", Member(Admin)),
    ("invitations.create", Member(Admin)),
    ("invitations.list", Member(Admin)),
    ("invitations.revoke", Member(Admin)),
    ("sso.get", Member(Admin)),
    ("sso.put", Member(Admin)),
    ("sso.delete", Member(Admin)),
    ("sso.set_enforcement", Member(Admin)),
    ("sso_domains.list", Member(Admin)),
    ("sso_domains.add", Member(Admin)),
    ("sso_domains.verify", Member(Admin)),
    ("sso_domains.remove", Member(Admin)),
    ("members.transfer_ownership", Member(Owner)),
    ("orgs.delete", Member(Owner)),
    ("attributes.list", Member(Viewer)),
    ("attributes.define", Member(Admin)),
    ("attributes.remove", Member(Admin)),
    ("attributes.member.get", Member(Admin)),
    ("attributes.member.set", Member(Admin)),
    ("attributes.service_token.get", Member(Admin)),
    ("attributes.service_token.set", Member(Admin)),
    // audit
    ("audit.list", Member(Admin)),
    ("audit.export", Member(Admin)),
    ("audit.verify", Member(Admin)),
    // usage and invoices
    ("usage.get", Member(Viewer)),
    ("usage.current", Member(Viewer)),
    ("invoices.list", Member(Admin)),
    ("invoices.get", Member(Admin)),
    // service tokens and clients, OAuth consents and grants
    ("service_tokens.list", Member(Admin)),
    ("service_tokens.create", Member(Admin)),
    ("service_tokens.revoke", Member(Admin)),
    ("service_clients.list", Member(Admin)),
    ("service_clients.create", Member(Admin)),
    ("service_clients.revoke", Member(Admin)),
    ("oauth_consents.list", Member(Viewer)),
    ("oauth_consents.revoke", Member(Viewer)),
    ("oauth_grants.list", Member(Admin)),
    ("oauth_grants.revoke", Member(Admin)),
];

pub fn access(operation_id: &str) -> Option<Access> {
    ROUTES.iter().find(|(id, _)| *id == operation_id).map(|(_, a)| *a)
}

/// The password of every user `TestApp::user` creates.
pub const TEST_PASSWORD: &str = "test-password-1";

/// A valid request body for the operation in `world`, sent by `caller` (`None`: the operation
/// takes no body). An operation whose OpenAPI entry has a request body but which is missing here
/// fails the tests.
pub fn example_body(
    operation_id: &str,
    world: &World,
    upstream_url: &str,
    caller: Option<&str>,
) -> Option<Value> {
    let email = caller.unwrap_or("someone@example.com");
    Some(match operation_id {
        "session.signup" => json!({"email": "new-user@example.com", "password": "a long enough password"}),
        "session.verify_email" => json!({"token": "not-a-valid-token"}),
        "session.login" => json!({"email": email, "password": TEST_PASSWORD}),
        "session.request_password_reset" => json!({"email": email}),
        "session.confirm_password_reset" => {
            json!({"token": "not-a-valid-token", "new_password": "another long password"})
        }
        "account.change_password" => {
            json!({"current_password": TEST_PASSWORD, "new_password": "another long password"})
        }
        "account.delete" => json!({"password": TEST_PASSWORD}),
        "orgs.create" => {
            json!({"slug": format!("new-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), "name": "New org"})
        }
        "invitations.accept" => json!({"token": "not-a-valid-token"}),
        "orgs.update" => json!({"name": "Renamed"}),
        "orgs.update_settings" => json!({"log_tool_arguments": true}),
        "orgs.delete" => json!({"confirm": world.slug}),
        "members.change_role" => json!({"role": "developer"}),
        "members.transfer_ownership" => json!({"user_id": world.member_id}),
        "invitations.create" => json!({"email": "colleague@example.com", "role": "developer"}),
        // Arguments that are not an object: every member gets as far as validation (the test app
        // runs no dataplane to call; tests/e2e/dataplane/playground.rs calls through a real one).
        "endpoints.playground" => {
            json!({"method": "tools/call", "params": {"name": "orders__get_order", "arguments": "not-an-object"}})
        }
        "attributes.define" => json!({"name": "customer_id", "description": "The customer"}),
        "attributes.member.set" | "attributes.service_token.set" => {
            json!({"attributes": {(world.attribute.clone()): "c-17"}})
        }
        "sso.put" => json!({
            "issuer_url": "https://idp.invalid",
            "client_id": "gatehouse",
            "client_secret": "secret",
            "allowed_domains": ["example.com"]
        }),
        "sso.set_enforcement" => json!({"enforced": false}),
        "sso_domains.add" => json!({"domain": "new-domain.example.com"}),
        "servers.create" => json!({
            "slug": "catalog",
            "name": "Catalog",
            "url": upstream_url,
            "auth": {"kind": "bearer", "token": "example-upstream-token"}
        }),
        "servers.update" => json!({"name": "Orders (renamed)"}),
        "backends.create" => json!({
            "slug": "ledger",
            "name": "Ledger",
            "dsn": world.backend_dsn,
            "tls_mode": "disable"
        }),
        "backends.update" => json!({"name": "Warehouse (renamed)", "max_rows": 50}),
        "backends.reference_tables.mark" => json!({"schema": "public", "table": "orgs"}),
        "backends.tools.create" => json!({
            "name": "count_endpoints",
            "description": "How many endpoints the caller's org has.",
            "sql": "SELECT count(*) AS n FROM endpoints",
            "access": "read"
        }),
        "backends.tools.update" => json!({"description": "An endpoint of the caller's org, by slug."}),
        "endpoints.backends.set" => {
            json!({"backends": [{"backend_id": world.backend_id, "tool_ids": [world.sql_tool_id]}]})
        }
        "servers.tools.decide" => json!({"decision": "approve", "tool_ids": [world.tool_id]}),
        "tools.approve" => json!({"definition_hash": world.tool_hash}),
        "scopes.create" => json!({
            "name": "orders:write",
            "description": "Change orders",
            "min_role": "developer",
            "tool_ids": [world.tool_id]
        }),
        "scopes.update" => json!({"description": "Read any order", "min_role": "developer"}),
        "scopes.set_tools" => json!({"tool_ids": [world.tool_id]}),
        "endpoints.create" => json!({
            "slug": "agents",
            "name": "Agents",
            "description": "For CI agents",
            "rate_limits": {"per_org": {"per_minute": 600, "burst": 60}},
            "servers": [{"server_id": world.server_id}]
        }),
        "endpoints.update" => {
            json!({"name": "Support desk", "rate_limits": {"per_subject": {"per_minute": 60}}})
        }
        "endpoints.set_servers" => {
            json!({"servers": [{"server_id": world.server_id, "tool_ids": [world.tool_id]}]})
        }
        "service_tokens.create" => {
            json!({"name": "nightly CI", "endpoint_id": world.endpoint_id, "scopes": ["orders:read"]})
        }
        "service_clients.create" => {
            json!({"name": "billing bot", "endpoint_id": world.endpoint_id, "scopes": ["orders:read"]})
        }
        "oauth_consents.revoke" => json!({"client_id": "ghd_example"}),
        "oauth_grants.revoke" => json!({"client_id": "ghd_example"}),
        _ => return None,
    })
}

/// One operation of the OpenAPI document.
#[derive(Clone, Debug)]
pub struct Operation {
    pub method: reqwest::Method,
    /// The full path template, e.g. `/api/v1/orgs/{org}/servers/{server_id}`.
    pub path: String,
    pub id: String,
    /// The request body's JSON schema (`$ref`s unresolved), if it has one.
    pub body_schema: Option<Value>,
    /// Query parameters: (name, schema).
    pub query: Vec<(String, Value)>,
}

impl Operation {
    pub fn path_params(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').unwrap() + open;
            out.push(rest[open + 1..close].to_owned());
            rest = &rest[close + 1..];
        }
        out
    }

    pub fn label(&self) -> String {
        format!("{} {} ({})", self.method, self.path, self.id)
    }
}

/// The committed API's document, as the running code generates it.
pub fn document() -> Value {
    serde_json::from_str(&gatehouse_control_api::openapi::document_json()).unwrap()
}

pub fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        // The operator API takes no tenant credential at all: `operator.rs` covers it.
        if path.starts_with("/api/operator") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let method = match method.as_str() {
                "get" => reqwest::Method::GET,
                "post" => reqwest::Method::POST,
                "put" => reqwest::Method::PUT,
                "patch" => reqwest::Method::PATCH,
                "delete" => reqwest::Method::DELETE,
                _ => continue,
            };
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
                .to_owned();
            let body_schema = op
                .pointer("/requestBody/content/application~1json/schema")
                .cloned();
            let query = op["parameters"]
                .as_array()
                .map(|params| {
                    params
                        .iter()
                        .filter(|p| p["in"] == "query")
                        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["schema"].clone()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Operation {
                method,
                path: path.clone(),
                id,
                body_schema,
                query,
            });
        }
    }
    out
}

/// Fails with every operation the table does not cover (and every stale entry).
pub fn assert_table_covers(ops: &[Operation]) {
    let missing: Vec<String> = ops
        .iter()
        .filter(|op| access(&op.id).is_none())
        .map(Operation::label)
        .collect();
    assert!(
        missing.is_empty(),
        "these operations have no minimum role in services/control-api/tests/api/route_table.rs \
         (ROUTES) — add one (and to docs/permissions.md):\n  {}",
        missing.join("\n  ")
    );
    let stale: Vec<&str> = ROUTES
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !ops.iter().any(|op| op.id == *id))
        .collect();
    assert!(
        stale.is_empty(),
        "ROUTES names operations that no longer exist: {stale:?}"
    );
}

/// Resolves `$ref` against the document's components.
pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer).unwrap_or_else(|| panic!("unresolvable {r}")),
            )
        }
        None => schema,
    }
}
