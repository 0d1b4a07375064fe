//! Role enforcement and tenant isolation over every org route, generated from one route table:
//! each role against each route (allowed iff the role is high enough, and a refusal changes
//! nothing), and a member of another org against each route (404, nothing changes).

use gatehouse_core::ids::{InvitationId, OrgId};
use gatehouse_core::role::Role;
use gatehouse_db::repos::{invitations, sso};
use gatehouse_db::{OrgScope, TenantTx};
use gatehouse_test_support::node_tools::{OidcMode, OidcProvider};
use reqwest::Method;
use serde_json::{Value, json};

use crate::account_support::{assert_problem, org_state};
use crate::helpers::{TestApp, TestUser};

/// One org set up for a case: its owner, one member of each other role, a developer to act on,
/// a pending invitation and an SSO configuration.
struct Fixture {
    slug: String,
    org: OrgId,
    target: TestUser,
    invitation: InvitationId,
    issuer: String,
    client_id: String,
}

struct Route {
    name: &'static str,
    method: Method,
    path: fn(&Fixture) -> String,
    body: fn(&Fixture) -> Option<Value>,
    /// The lowest role allowed.
    min: Role,
    status: u16,
    /// A different answer for the owner (the only owner cannot leave).
    owner_status: Option<u16>,
}

fn routes() -> Vec<Route> {
    fn none(_: &Fixture) -> Option<Value> {
        None
    }
    vec![
        Route {
            name: "get org",
            method: Method::GET,
            path: |f| format!("/api/v1/orgs/{}", f.slug),
            body: none,
            min: Role::Viewer,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "rename org",
            method: Method::PATCH,
            path: |f| format!("/api/v1/orgs/{}", f.slug),
            body: |_| Some(json!({"name": "Renamed"})),
            min: Role::Admin,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "get settings",
            method: Method::GET,
            path: |f| format!("/api/v1/orgs/{}/settings", f.slug),
            body: none,
            min: Role::Viewer,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "update settings",
            method: Method::PATCH,
            path: |f| format!("/api/v1/orgs/{}/settings", f.slug),
            body: |_| Some(json!({"log_tool_arguments": true})),
            min: Role::Admin,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "list members",
            method: Method::GET,
            path: |f| format!("/api/v1/orgs/{}/members", f.slug),
            body: none,
            min: Role::Viewer,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "change role",
            method: Method::PATCH,
            path: |f| format!("/api/v1/orgs/{}/members/{}", f.slug, f.target.id),
            body: |_| Some(json!({"role": "viewer"})),
            min: Role::Admin,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "remove member",
            method: Method::DELETE,
            path: |f| format!("/api/v1/orgs/{}/members/{}", f.slug, f.target.id),
            body: none,
            min: Role::Admin,
            status: 204,
            owner_status: None,
        },
        Route {
            name: "leave",
            method: Method::POST,
            path: |f| format!("/api/v1/orgs/{}/leave", f.slug),
            body: none,
            min: Role::Viewer,
            status: 204,
            owner_status: Some(409),
        },
        Route {
            name: "transfer ownership",
            method: Method::POST,
            path: |f| format!("/api/v1/orgs/{}/transfer-ownership", f.slug),
            body: |f| Some(json!({"user_id": f.target.id})),
            min: Role::Owner,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "invite",
            method: Method::POST,
            path: |f| format!("/api/v1/orgs/{}/invitations", f.slug),
            body: |_| Some(json!({"email": "newcomer@acme.test", "role": "viewer"})),
            min: Role::Admin,
            status: 201,
            owner_status: None,
        },
        Route {
            name: "list invitations",
            method: Method::GET,
            path: |f| format!("/api/v1/orgs/{}/invitations", f.slug),
            body: none,
            min: Role::Admin,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "revoke invitation",
            method: Method::DELETE,
            path: |f| format!("/api/v1/orgs/{}/invitations/{}", f.slug, f.invitation),
            body: none,
            min: Role::Admin,
            status: 204,
            owner_status: None,
        },
        Route {
            name: "get sso",
            method: Method::GET,
            path: |f| format!("/api/v1/orgs/{}/sso", f.slug),
            body: none,
            min: Role::Admin,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "configure sso",
            method: Method::PUT,
            path: |f| format!("/api/v1/orgs/{}/sso", f.slug),
            body: |f| {
                Some(
                    json!({"issuer_url": f.issuer, "client_id": f.client_id, "allowed_domains": ["acme.test"], "jit_role": "viewer"}),
                )
            },
            min: Role::Admin,
            status: 200,
            owner_status: None,
        },
        Route {
            name: "remove sso",
            method: Method::DELETE,
            path: |f| format!("/api/v1/orgs/{}/sso", f.slug),
            body: none,
            min: Role::Admin,
            status: 204,
            owner_status: None,
        },
    ]
}

struct People {
    owner: TestUser,
    admin: TestUser,
    developer: TestUser,
    viewer: TestUser,
    target: TestUser,
}

impl People {
    async fn new(app: &TestApp) -> Self {
        Self {
            owner: app.user("owner@acme.test").await,
            admin: app.user("admin@acme.test").await,
            developer: app.user("developer@acme.test").await,
            viewer: app.user("viewer@acme.test").await,
            target: app.user("target@acme.test").await,
        }
    }

    fn with_role(&self, role: Role) -> &TestUser {
        match role {
            Role::Owner => &self.owner,
            Role::Admin => &self.admin,
            Role::Developer => &self.developer,
            Role::Viewer => &self.viewer,
        }
    }
}

async fn fixture(app: &TestApp, people: &People, provider: &OidcProvider, slug: &str) -> Fixture {
    let (slug, org) = app.org(&people.owner, slug).await;
    app.add_member(org, &people.admin, Role::Admin).await;
    app.add_member(org, &people.developer, Role::Developer).await;
    app.add_member(org, &people.viewer, Role::Viewer).await;
    app.add_member(org, &people.target, Role::Developer).await;
    let keyring = app.cfg.keyring().unwrap();
    let mut tx = TenantTx::begin(&app.db.db, &OrgScope::authorized(org))
        .await
        .unwrap();
    let invitation = invitations::create(
        &mut tx,
        "pending@acme.test",
        Role::Viewer,
        format!("hash-{slug}").as_bytes(),
        people.owner.id,
        time::Duration::days(1),
    )
    .await
    .unwrap();
    // Sealed as the control API seals it: bound to the org.
    let sealed = keyring.seal(
        provider.client_secret.as_bytes(),
        &format!("org_sso_providers.client_secret:{org}"),
    );
    sso::upsert(
        &mut tx,
        &sso::SsoProviderConfig {
            issuer_url: &provider.issuer,
            client_id: &provider.client_id,
            client_secret_enc: &sealed,
            allowed_domains: &["acme.test".to_owned()],
            jit_role: Role::Developer,
            enabled: true,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Fixture {
        slug,
        org,
        target: people.target.clone(),
        invitation: invitation.id,
        issuer: provider.issuer.clone(),
        client_id: provider.client_id.clone(),
    }
}

fn send(user: &TestUser, route: &Route, fx: &Fixture, path: String) -> reqwest::RequestBuilder {
    let req = user.request(route.method.clone(), &path);
    match (route.body)(fx) {
        Some(body) => req.json(&body),
        None => req,
    }
}

async fn spawn() -> (TestApp, OidcProvider) {
    let app = TestApp::spawn_with(&[
        ("egress.allow_http", "true"),
        ("egress.allow_private_networks", "true"),
    ])
    .await;
    let provider = OidcProvider::start(OidcMode::Normal, &app.url("/api/v1/sso/callback"), &[]).await;
    (app, provider)
}

#[tokio::test]
async fn every_role_on_every_org_route() {
    let (app, provider) = spawn().await;
    let people = People::new(&app).await;
    let mut checked = 0;
    for (i, route) in routes().iter().enumerate() {
        for role in Role::ALL {
            let fx = fixture(&app, &people, &provider, &format!("m{i}-{role}")).await;
            let before = org_state(&app, fx.org).await;
            let resp = send(people.with_role(role), route, &fx, (route.path)(&fx))
                .send()
                .await
                .unwrap();
            let after_status = resp.status().as_u16();
            let allowed = role.at_least(route.min);
            let expected = match (allowed, role) {
                (true, Role::Owner) => route.owner_status.unwrap_or(route.status),
                (true, _) => route.status,
                (false, _) => 403,
            };
            let body = resp.text().await.unwrap();
            assert_eq!(after_status, expected, "{} as {role}: {body}", route.name);
            let after = org_state(&app, fx.org).await;
            if expected >= 400 {
                assert_eq!(
                    before, after,
                    "{} as {role} was refused but changed the org",
                    route.name
                );
            } else if route.method != Method::GET {
                assert_ne!(
                    before, after,
                    "{} as {role} succeeded but changed nothing",
                    route.name
                );
                assert!(
                    after["audit"].as_i64().unwrap() > before["audit"].as_i64().unwrap(),
                    "{} as {role} wrote no audit event",
                    route.name
                );
            } else {
                assert_eq!(
                    before, after,
                    "{} as {role} is a read but changed the org",
                    route.name
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * Role::ALL.len());
}

#[tokio::test]
async fn another_orgs_member_gets_404_and_changes_nothing() {
    let (app, provider) = spawn().await;
    let people = People::new(&app).await;
    let intruder = app.user("intruder@evil.test").await;
    let (own_slug, own_org) = app.org(&intruder, "evil").await;
    for (i, route) in routes().iter().enumerate() {
        let victim = fixture(&app, &people, &provider, &format!("x{i}")).await;
        let before = org_state(&app, victim.org).await;
        // The victim org's path, as an owner of another org.
        let resp = send(&intruder, route, &victim, (route.path)(&victim))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 404, Some("not_found")).await;
        // The victim's ids through the intruder's own org.
        let own_path = (route.path)(&victim).replacen(
            &format!("/orgs/{}", victim.slug),
            &format!("/orgs/{own_slug}"),
            1,
        );
        let own_before = org_state(&app, own_org).await;
        let resp = send(&intruder, route, &victim, own_path.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ids_in_request = own_path.contains(&victim.target.id.to_string())
            || own_path.contains(&victim.invitation.to_string())
            || (route.body)(&victim).is_some_and(|b| b.to_string().contains(&victim.target.id.to_string()));
        if ids_in_request {
            assert_eq!(
                status, 404,
                "{}: another org's id through one's own org",
                route.name
            );
        }
        assert_eq!(
            before,
            org_state(&app, victim.org).await,
            "{} changed another org",
            route.name
        );
        if ids_in_request {
            assert_eq!(
                own_before,
                org_state(&app, own_org).await,
                "{} with a foreign id changed the caller's org",
                route.name
            );
        }
    }
}
