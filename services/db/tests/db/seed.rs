//! Seeds one org with a row in every tenant table, through a `TenantTx` as the services' role (so
//! seeding itself proves that tenant writes work under row-level security). Each row's text
//! columns embed the org id where they can, so a leaked row is recognisable.

use gatehouse_core::ids::{OrgId, UserId};
use gatehouse_db::repos::{audit, orgs, users};
use gatehouse_db::{Actor, Db, GlobalTx, NewAuditEvent, OrgScope, TenantTx};
use serde_json::json;
use sqlx::AssertSqlSafe;

/// The tables this seeder fills. The isolation test fails if the catalog has a tenant table
/// missing here, so new tenant tables must be added (and so covered) when they are created.
pub const SEEDED_TABLES: &[&str] = &[
    "audit_chain_heads",
    "audit_events",
    "backend_reference_tables",
    "backends",
    "caller_attributes",
    "domain_servers",
    "endpoint_backends",
    "endpoint_servers",
    "endpoint_tools",
    "endpoints",
    "invitations",
    "invoice_lines",
    "invoices",
    "member_attribute_values",
    "memberships",
    "oauth_authorization_codes",
    "oauth_consents",
    "oauth_refresh_families",
    "oauth_refresh_tokens",
    "org_settings",
    "org_sso_domains",
    "org_sso_providers",
    "scope_grants",
    "scopes",
    "service_clients",
    "service_token_attribute_values",
    "service_tokens",
    "sso_identities",
    "sso_pending_links",
    "token_revocations",
    "tools",
    "usage_alerts_sent",
    "usage_events",
    "usage_period_totals",
    "usage_rollups",
];

pub struct SeededOrg {
    pub id: OrgId,
    #[allow(dead_code)] // kept for tests that act as the owner
    pub owner: UserId,
}

/// Creates an org named `slug` with one or more rows in every table of [`SEEDED_TABLES`].
pub async fn seed_org(db: &Db, slug: &str) -> SeededOrg {
    let mut global = GlobalTx::begin(db).await.unwrap();
    let owner = users::create(&mut global, &format!("owner@{slug}.test"), None, slug, true)
        .await
        .unwrap();
    let client_id = format!("https://client.{slug}.test/metadata.json");
    sqlx::query(
        "INSERT INTO oauth_clients (client_id, registration_type, redirect_uris) VALUES ($1, 'metadata_document', $2)",
    )
    .bind(&client_id)
    .bind(vec![format!("https://client.{slug}.test/cb")])
    .execute(global.conn())
    .await
    .unwrap();
    global.commit().await.unwrap();

    let scope = OrgScope::authorized(OrgId::new());
    let org_id = scope.org_id();
    let mut tx = TenantTx::begin(db, &scope).await.unwrap();
    orgs::create_with_owner(&mut tx, slug, slug, owner.id)
        .await
        .unwrap();
    let statements: &[&str] = &[
        "INSERT INTO invitations (id, org_id, email, role, token_hash, expires_at)
         VALUES (gen_random_uuid(), $1, 'invitee+' || $1::text || '@x.test', 'viewer', decode(md5($1::text), 'hex'), now() + interval '1 day')",
        "INSERT INTO org_sso_providers (org_id, issuer_url, client_id, client_secret_enc)
         VALUES ($1, 'https://idp.example/' || $1::text, 'client-' || $1::text, '\\x00')",
        "INSERT INTO sso_identities (org_id, issuer, subject, user_id)
         VALUES ($1, 'https://idp.example/' || $1::text, 'sub-' || $1::text, $2)",
        "INSERT INTO org_sso_domains (org_id, domain, challenge)
         VALUES ($1, 'd' || replace($1::text, '-', '') || '.test', 'challenge-' || $1::text)",
        "INSERT INTO sso_pending_links (id, org_id, token_hash, issuer, subject, email, expires_at)
         VALUES (gen_random_uuid(), $1, decode(md5('link' || $1::text), 'hex'), 'https://idp.example/' || $1::text,
                 'sub-' || $1::text, 'pending+' || $1::text || '@x.test', now() + interval '1 day')",
        "INSERT INTO domain_servers (id, org_id, slug, name, url) VALUES (gen_random_uuid(), $1, 'orders', 'Orders ' || $1::text, 'https://orders.example/mcp')",
        "INSERT INTO backends (id, org_id, slug, name, dsn_enc) VALUES (gen_random_uuid(), $1, 'warehouse', 'WH ' || $1::text, '\\x00')",
        "INSERT INTO tools (id, org_id, kind, server_id, name, definition, definition_hash, approved_definition, approved_hash, status)
         SELECT gen_random_uuid(), $1, 'upstream', s.id, 'get_order', jsonb_build_object('name', 'get_order', 'org', $1::text),
                '\\x01', jsonb_build_object('name', 'get_order'), '\\x01', 'approved'
           FROM domain_servers s WHERE s.org_id = $1",
        "INSERT INTO tools (id, org_id, kind, backend_id, name, definition, definition_hash, sql_text, sql_access, sql_target)
         SELECT gen_random_uuid(), $1, 'sql', b.id, 'top_customers', jsonb_build_object('org', $1::text), '\\x02', 'SELECT 1',
                'read', jsonb_build_object('org', $1::text)
           FROM backends b WHERE b.org_id = $1",
        "INSERT INTO backend_reference_tables (org_id, backend_id, schema_name, table_name)
         SELECT $1, b.id, 'public', 'products_' || $1::text FROM backends b WHERE b.org_id = $1",
        "INSERT INTO scopes (id, org_id, name, description) VALUES (gen_random_uuid(), $1, 'orders:read', $1::text)",
        "INSERT INTO scope_grants (org_id, scope_id, tool_id)
         SELECT $1, s.id, t.id FROM scopes s, tools t WHERE s.org_id = $1 AND t.org_id = $1 AND t.kind = 'upstream'",
        "INSERT INTO endpoints (id, org_id, slug, name, description) VALUES (gen_random_uuid(), $1, 'support', 'Support', $1::text)",
        "INSERT INTO endpoint_servers (org_id, endpoint_id, server_id, all_tools)
         SELECT $1, e.id, s.id, false FROM endpoints e, domain_servers s WHERE e.org_id = $1 AND s.org_id = $1",
        "INSERT INTO endpoint_backends (org_id, endpoint_id, backend_id, all_tools)
         SELECT $1, e.id, b.id, false FROM endpoints e, backends b WHERE e.org_id = $1 AND b.org_id = $1",
        "INSERT INTO endpoint_tools (org_id, endpoint_id, tool_id)
         SELECT $1, e.id, t.id FROM endpoints e, tools t WHERE e.org_id = $1 AND t.org_id = $1",
        "INSERT INTO service_clients (id, org_id, client_id, name, secret_hash, endpoint_id)
         SELECT gen_random_uuid(), $1, 'svc_' || $1::text, 'CI', '\\x03', e.id FROM endpoints e WHERE e.org_id = $1",
        "INSERT INTO oauth_authorization_codes (org_id, code_hash, client_id, user_id, endpoint_id, redirect_uri, code_challenge, scopes, resource, expires_at)
         SELECT $1, decode(md5('code' || $1::text), 'hex'), $3, $2, e.id, 'https://cb', 'challenge', '{orders:read}', 'https://dp/' || $1::text, now() + interval '60 seconds'
           FROM endpoints e WHERE e.org_id = $1",
        "INSERT INTO oauth_refresh_families (id, org_id, client_id, user_id, endpoint_id, scopes, resource)
         SELECT gen_random_uuid(), $1, $3, $2, e.id, '{orders:read}', 'https://dp/' || $1::text FROM endpoints e WHERE e.org_id = $1",
        "INSERT INTO oauth_refresh_tokens (org_id, token_hash, family_id, generation, expires_at)
         SELECT $1, decode(md5('rt' || $1::text), 'hex'), f.id, 0, now() + interval '1 day' FROM oauth_refresh_families f WHERE f.org_id = $1",
        "INSERT INTO oauth_consents (org_id, user_id, client_id, endpoint_id, scopes)
         SELECT $1, $2, $3, e.id, '{orders:read}' FROM endpoints e WHERE e.org_id = $1",
        "INSERT INTO service_tokens (id, org_id, endpoint_id, name, token_prefix, token_hash)
         SELECT gen_random_uuid(), $1, e.id, 'ci ' || $1::text, 'ghs_', decode(md5('st' || $1::text), 'hex') FROM endpoints e WHERE e.org_id = $1",
        "INSERT INTO caller_attributes (org_id, name, description) VALUES ($1, 'customer_id', $1::text)",
        "INSERT INTO member_attribute_values (org_id, user_id, name, value) VALUES ($1, $2, 'customer_id', $1::text)",
        "INSERT INTO service_token_attribute_values (org_id, service_token_id, name, value)
         SELECT $1, t.id, 'customer_id', $1::text FROM service_tokens t WHERE t.org_id = $1",
        "INSERT INTO token_revocations (id, org_id, kind, value, expires_at) VALUES (gen_random_uuid(), $1, 'jti', $1::text, now() + interval '10 minutes')",
        "INSERT INTO usage_events (org_id, id, source, occurred_at, tool, subject, outcome)
         VALUES ($1, gen_random_uuid(), 'seed', now(), 'orders__get_order', $1::text, 'success')",
        "INSERT INTO usage_rollups (org_id, bucket_start, endpoint_id, tool, calls)
         SELECT $1, date_trunc('minute', now()), e.id, 'orders__get_order', 1 FROM endpoints e WHERE e.org_id = $1",
        "INSERT INTO invoices (id, org_id, period_start, period_end, plan_id) VALUES (gen_random_uuid(), $1, '2026-10-01', '2026-11-01', 'free')",
        "INSERT INTO invoice_lines (org_id, invoice_id, line_no, description, quantity, unit_price_millicents, amount_cents)
         SELECT $1, i.id, 1, 'Calls ' || $1::text, 10, 0, 0 FROM invoices i WHERE i.org_id = $1",
        "INSERT INTO usage_alerts_sent (org_id, period_start, threshold_pct) VALUES ($1, '2026-11-01', 80)",
        "INSERT INTO usage_period_totals (org_id, period_start, calls, events) VALUES ($1, '2026-11-01', 1, 1)",
    ];
    for sql in statements {
        // PostgreSQL refuses more bound parameters than placeholders.
        let mut query = sqlx::query(AssertSqlSafe(*sql)).bind(org_id);
        if sql.contains("$2") || sql.contains("$3") {
            query = query.bind(owner.id);
        }
        if sql.contains("$3") {
            query = query.bind(&client_id);
        }
        query
            .execute(tx.conn())
            .await
            .unwrap_or_else(|e| panic!("seeding failed: {e}\n{sql}"));
    }
    audit::append(
        &mut tx,
        &[NewAuditEvent::control(Actor::system("seed"), "seed.created")
            .details(json!({"org": org_id.to_string()}))],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    SeededOrg {
        id: org_id,
        owner: owner.id,
    }
}
