//! A populated org for the API-wide generated tests: members of every role, one domain server
//! (pointing at a real MCP fixture), one approved tool, one scope granting it, one endpoint
//! exposing it. Built through the repositories so the tests do not depend on the routes they
//! exercise.

use serde_json::{Value, json};

use gatehouse_core::canonical::tool_definition_hash;
use gatehouse_core::ids::{
    EndpointId, InvoiceId, OrgId, ScopeId, ServerId, ServiceClientId, ServiceTokenId, ToolId,
};
use gatehouse_core::role::Role;
use gatehouse_db::repos::endpoints::{self, EndpointServer};
use gatehouse_db::repos::invoices;
use gatehouse_db::repos::scopes;
use gatehouse_db::repos::servers::{self, NewServer, StoredAuth};
use gatehouse_db::repos::tools::{self, Observed};
use gatehouse_db::{OrgScope, TenantTx};

use crate::helpers::{TestApp, TestUser};

/// One user per role, plus a signed-in user who belongs to no org of the world.
pub struct Cast {
    pub owner: TestUser,
    pub admin: TestUser,
    pub developer: TestUser,
    pub viewer: TestUser,
    pub outsider: TestUser,
}

impl Cast {
    pub async fn new(app: &TestApp) -> Cast {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Cast {
            owner: app.user(&format!("owner-{tag}@example.com")).await,
            admin: app.user(&format!("admin-{tag}@example.com")).await,
            developer: app.user(&format!("dev-{tag}@example.com")).await,
            viewer: app.user(&format!("viewer-{tag}@example.com")).await,
            outsider: app.user(&format!("outsider-{tag}@example.com")).await,
        }
    }

    /// The user acting with `role` (`None`: the outsider).
    pub fn as_role(&self, role: Option<Role>) -> &TestUser {
        match role {
            Some(Role::Owner) => &self.owner,
            Some(Role::Admin) => &self.admin,
            Some(Role::Developer) => &self.developer,
            Some(Role::Viewer) => &self.viewer,
            None => &self.outsider,
        }
    }
}

pub struct World {
    pub slug: String,
    /// A backend: the test database itself, reached as the services' role (which owns nothing
    /// and cannot bypass row-level security), with the `gatehouse` schema installed.
    pub backend_id: gatehouse_core::ids::BackendId,
    pub backend_dsn: String,
    /// An approved SQL tool of the backend, exposed at the endpoint.
    pub sql_tool_id: ToolId,
    pub org_id: OrgId,
    pub server_id: ServerId,
    pub tool_id: ToolId,
    pub tool_hash: String,
    pub scope_id: ScopeId,
    pub endpoint_id: EndpointId,
    pub service_token_id: ServiceTokenId,
    pub service_client_id: ServiceClientId,
    /// A member other than the owner (the last of `members`), for member routes.
    pub member_id: Option<gatehouse_core::ids::UserId>,
    /// A pending invitation.
    pub invitation_id: gatehouse_core::ids::InvitationId,
    pub invoice_id: InvoiceId,
    /// An email domain the org has added for SSO (not verified).
    pub domain: String,
    /// A caller attribute the org defined (a name of its own, so another org has no such one).
    pub attribute: String,
}

/// A fresh org owned by `owner`, with `members` added, populated as described above.
pub async fn world(
    app: &TestApp,
    owner: &TestUser,
    members: &[(&TestUser, Role)],
    upstream_url: &str,
) -> World {
    let slug = format!("w{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (slug, org_id) = app.org(owner, &slug).await;
    for (user, role) in members {
        app.add_member(org_id, user, *role).await;
    }
    let scope = OrgScope::authorized(org_id);
    let mut tx = TenantTx::begin(&app.db.db, &scope).await.unwrap();
    let server_id = ServerId::new();
    servers::create(
        &mut tx,
        &NewServer {
            id: server_id,
            slug: "orders",
            name: "Orders",
            url: upstream_url,
            transport: gatehouse_core::upstream::UpstreamTransport::StreamableHttp,
            auth: StoredAuth::none(),
            send_caller_assertion: false,
        },
    )
    .await
    .unwrap();
    let definition = json!({
        "name": "get_order",
        "description": "Returns an order by id.",
        "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}
    });
    let hash = tool_definition_hash(&definition);
    let (tool, _) = tools::observe(
        &mut tx,
        server_id,
        &Observed {
            name: "get_order",
            definition: &definition,
            hash: &hex::decode(&hash).unwrap(),
            flags: &json!([]),
        },
    )
    .await
    .unwrap();
    tools::approve(&mut tx, tool.id, None, owner.id)
        .await
        .unwrap()
        .unwrap();
    let scope_id = scopes::create(&mut tx, "orders:read", "Read orders", "viewer")
        .await
        .unwrap();
    scopes::set_grants(&mut tx, scope_id, &[tool.id]).await.unwrap();
    let endpoint = endpoints::create(&mut tx, "support", "Support", "", &json!({}))
        .await
        .unwrap();
    endpoints::set_servers(
        &mut tx,
        endpoint.id,
        &[EndpointServer {
            server_id,
            all_tools: true,
            tool_ids: vec![],
        }],
    )
    .await
    .unwrap();
    let attribute = format!("attr_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    gatehouse_db::repos::caller_attributes::define(&mut tx, &attribute, "an example")
        .await
        .unwrap();
    let service_token_id = ServiceTokenId::new();
    gatehouse_db::repos::service_tokens::create(
        &mut tx,
        &gatehouse_db::repos::service_tokens::NewServiceToken {
            id: service_token_id,
            endpoint_id: endpoint.id,
            name: "ci",
            token_prefix: "ghs_example",
            token_hash: &gatehouse_core::secrets::token_hash(&uuid::Uuid::new_v4().to_string()),
            scopes: &["orders:read".to_owned()],
            created_by: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let service_client_id = ServiceClientId::new();
    gatehouse_db::repos::oauth_service_clients::create(
        &mut tx,
        &gatehouse_db::repos::oauth_service_clients::NewServiceClient {
            id: service_client_id,
            client_id: &gatehouse_oauth::tokens::service_client_id(org_id, service_client_id),
            name: "bot",
            secret_hash: &gatehouse_core::secrets::token_hash(&uuid::Uuid::new_v4().to_string()),
            endpoint_id: endpoint.id,
            scopes: &["orders:read".to_owned()],
            created_by: None,
        },
    )
    .await
    .unwrap();
    let invitation = gatehouse_db::repos::invitations::create(
        &mut tx,
        "invitee@example.com",
        Role::Viewer,
        &gatehouse_core::secrets::token_hash(&uuid::Uuid::new_v4().to_string()),
        owner.id,
        time::Duration::days(1),
    )
    .await
    .unwrap();
    // SSO configured but disabled: its routes have something to read and delete, and starting a
    // login does not try to reach a provider.
    gatehouse_db::repos::sso::upsert(
        &mut tx,
        &gatehouse_db::repos::sso::SsoProviderConfig {
            issuer_url: "https://idp.example.com",
            client_id: "gatehouse",
            client_secret_enc: &app.keyring().seal(b"secret", "test"),
            allowed_domains: &["example.com".to_owned()],
            jit_role: Role::Viewer,
            enabled: false,
        },
    )
    .await
    .unwrap();
    // An email domain of the org (pending verification), unique to this world.
    let domain = format!("{slug}.example.com");
    gatehouse_db::repos::sso_domains::add(&mut tx, &domain, "world-challenge-value")
        .await
        .unwrap()
        .expect("a new domain");
    let (backend_id, sql_tool) = hosted_backend(app, &mut tx, org_id, owner.id).await;
    let invoice_id = invoices::create_final(
        &mut tx,
        time::macros::date!(2026 - 10 - 01),
        time::macros::date!(2026 - 11 - 01),
        "free",
        &[invoices::InvoiceLine {
            line_no: 1,
            description: "Free plan, October 2026".into(),
            quantity: 1,
            unit_price_millicents: 0,
            amount_cents: 0,
        }],
    )
    .await
    .unwrap()
    .expect("a new invoice");
    tx.commit().await.unwrap();
    World {
        backend_id,
        backend_dsn: app.db.service_url.clone(),
        sql_tool_id: sql_tool.id,
        member_id: members.last().map(|(u, _)| u.id),
        invitation_id: invitation.id,
        slug,
        org_id,
        server_id,
        tool_id: tool.id,
        tool_hash: hash,
        scope_id,
        endpoint_id: endpoint.id,
        invoice_id,
        service_token_id,
        service_client_id,
        domain,
        attribute,
    }
}

/// A world whose members are the whole cast.
pub async fn world_for(app: &TestApp, cast: &Cast, upstream_url: &str) -> World {
    world(
        app,
        &cast.owner,
        &[
            (&cast.admin, Role::Admin),
            (&cast.developer, Role::Developer),
            (&cast.viewer, Role::Viewer),
        ],
        upstream_url,
    )
    .await
}

impl World {
    /// The value of a path parameter for this world. A parameter no test knows how to fill
    /// fails loudly, so a new route cannot slip past the generated tests.
    pub fn path_param(&self, name: &str, route: &str) -> String {
        match name {
            "org" => self.slug.clone(),
            "server_id" => self.server_id.to_string(),
            "tool_id" if route.contains("/backends/") => self.sql_tool_id.to_string(),
            "tool_id" => self.tool_id.to_string(),
            "backend_id" => self.backend_id.to_string(),
            "schema" => "public".to_owned(),
            "table" => "plans".to_owned(),
            "scope_id" => self.scope_id.to_string(),
            "endpoint_id" => self.endpoint_id.to_string(),
            "service_token_id" => self.service_token_id.to_string(),
            "service_client_id" => self.service_client_id.to_string(),
            "user_id" => self
                .member_id
                .unwrap_or_else(|| panic!("route {route}: this world has no member besides the owner"))
                .to_string(),
            "invitation_id" => self.invitation_id.to_string(),
            "invoice_id" => self.invoice_id.to_string(),
            "domain" => self.domain.clone(),
            "attribute" => self.attribute.clone(),
            other => panic!(
                "route {route}: no value for path parameter {{{other}}}; teach World::path_param \
                 (services/control-api/tests/api/world.rs) how to fill it"
            ),
        }
    }

    /// `path` with every `{param}` filled.
    pub fn fill(&self, path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').expect("balanced braces") + open;
            out.push_str(&rest[..open]);
            out.push_str(&self.path_param(&rest[open + 1..close], path));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Every tenant table's rows of `org`, as canonical text (for before/after comparisons).
pub async fn dump_org(app: &TestApp, org: OrgId) -> Vec<(String, String)> {
    let mut admin = app.db.admin().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.table_name::text FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema
          WHERE c.table_schema = 'public' AND c.column_name = 'org_id' AND t.table_type = 'BASE TABLE'
          ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(string_agg(r::text, E'\\n' ORDER BY r::text), '') FROM \"{table}\" r WHERE org_id = $1"
        )))
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        out.push((table, rows));
    }
    out
}

/// A problem+json body, asserted to be one.
pub async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/problem+json"),
        "expected problem+json, got {content_type:?} with status {status}: {body}"
    );
    (
        status,
        serde_json::from_str(&body).expect("problem+json body is JSON"),
    )
}

/// Installs the `gatehouse` schema in the test database (once) and registers it as a backend of
/// `org` with a fresh key, an approved SQL tool over a table protected by row-level security,
/// and `public.plans` marked as reference data. The backend is not exposed at the endpoint (that
/// would namespace the server's tools there).
async fn hosted_backend(
    app: &TestApp,
    tx: &mut TenantTx,
    org_id: OrgId,
    owner: gatehouse_core::ids::UserId,
) -> (
    gatehouse_core::ids::BackendId,
    gatehouse_db::repos::backends::SqlToolRow,
) {
    use gatehouse_core::snapshot::{backend_context_key_context, backend_dsn_context};
    use gatehouse_db::repos::backends::{self, BackendFields, SqlToolFields};
    use gatehouse_hosted_sql::{BackendConfig, ContextKey, TlsMode, install};
    use sqlx::Executor;

    let mut admin = app.db.admin().await;
    let installed: bool = sqlx::query_scalar("SELECT to_regclass('gatehouse.schema_version') IS NOT NULL")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !installed {
        admin
            .execute(sqlx::AssertSqlSafe(
                install::upgrade_script("gatehouse_test_context_owner", 0).unwrap(),
            ))
            .await
            .unwrap();
    }
    let key = ContextKey::generate();
    admin
        .execute(sqlx::AssertSqlSafe(install::key_statement(&key)))
        .await
        .unwrap();
    let id = gatehouse_core::ids::BackendId::new();
    let keyring = app.keyring();
    let dsn = app.db.service_url.clone();
    backends::create(
        tx,
        id,
        "warehouse",
        &BackendFields {
            name: "Warehouse",
            dsn_enc: &keyring.seal(dsn.as_bytes(), &backend_dsn_context(org_id, id)),
            tls_mode: "disable",
            tls_ca_pem: None,
            owner_role: "gatehouse_test_context_owner",
            allowed_schemas: &["public".to_owned()],
            allowed_functions: &[],
            statement_timeout_ms: 5000,
            max_rows: 100,
        },
        &keyring.seal(key.bytes(), &backend_context_key_context(org_id, id)),
    )
    .await
    .unwrap();
    let config = BackendConfig::new(
        org_id,
        id,
        secrecy::SecretString::from(dsn),
        TlsMode::Disable,
        None,
        key,
        vec!["public".into()],
        &[],
        std::time::Duration::from_secs(5),
        100,
    )
    .unwrap();
    let sql = "SELECT slug, name FROM endpoints WHERE slug = :slug";
    let v = gatehouse_control_api::hosted::validate(
        &config,
        "endpoint_by_slug",
        "An endpoint of the caller's org.",
        sql,
        gatehouse_hosted_sql::statement::Access::Read,
        false,
        &serde_json::Map::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("world SQL tool: {e}"));
    let tool = backends::create_tool(
        tx,
        id,
        &SqlToolFields {
            name: "endpoint_by_slug",
            sql_text: sql,
            access: "read",
            destructive: false,
            definition: &v.definition.definition,
            definition_hash: &v.hash,
            target: &v.target,
            inspection: &v.inspection,
        },
    )
    .await
    .unwrap();
    tools::approve(tx, tool.id, None, owner).await.unwrap().unwrap();
    backends::mark_reference_table(tx, id, "public", "plans", owner)
        .await
        .unwrap();
    (id, tool)
}
