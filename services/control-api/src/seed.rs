//! The demo org seeded by `gatehouse up` on first run: an admin user, the `demo` org and its
//! `demo` endpoint, so that a newcomer can log in and look around at once. The org is on the
//! `self_hosted` plan (no fee, no hard cap): a local install is not billed.

use serde_json::json;

use gatehouse_core::ids::OrgId;
use gatehouse_core::secrets::random_token;
use gatehouse_db::repos::{audit, endpoints, orgs, users};
use gatehouse_db::{Actor, Db, GlobalTx, NewAuditEvent, OrgScope, TenantTx};

pub const DEMO_EMAIL: &str = "admin@demo.gatehouse.localhost";
pub const DEMO_ORG: &str = "demo";
pub const DEMO_ENDPOINT: &str = "demo";
/// The plan the demo org is on: no fee and no hard cap.
pub const DEMO_PLAN: &str = "self_hosted";

/// The demo login, printed by `gatehouse up`.
#[derive(Clone, Debug)]
pub struct DemoLogin {
    pub email: String,
    pub password: String,
    pub org_slug: String,
    pub endpoint_slug: String,
}

/// Creates the demo user, org and endpoint unless the user exists. Returns the login when it was
/// created now (the password is shown once, then kept by the caller).
pub async fn seed_demo(db: &Db) -> anyhow::Result<Option<DemoLogin>> {
    let mut global = GlobalTx::begin(db).await?;
    if users::find_by_email(&mut global, DEMO_EMAIL).await?.is_some() {
        return Ok(None);
    }
    let password = random_token(12);
    let hash = crate::password::hash(password.clone()).await?;
    let user = users::create(&mut global, DEMO_EMAIL, Some(&hash), "Demo Admin", true).await?;
    global.commit().await?;

    // The org is being created by us, so acting in it is authorized.
    let scope = OrgScope::authorized(OrgId::new());
    let mut tx = TenantTx::begin(db, &scope).await?;
    orgs::create_with_owner(&mut tx, DEMO_ORG, "Demo", user.id).await?;
    let org = orgs::set_plan(&mut tx, DEMO_PLAN).await?;
    let endpoint = endpoints::create(
        &mut tx,
        DEMO_ENDPOINT,
        "Demo endpoint",
        "Seeded by gatehouse up. Register a domain server and add it here.",
        &json!({}),
    )
    .await?;
    let actor = Actor::system("gatehouse up");
    audit::append(
        &mut tx,
        &[
            NewAuditEvent::control(actor.clone(), "org.created")
                .target("org", org.id)
                .details(json!({"slug": org.slug, "plan": org.plan_id, "seeded": true})),
            NewAuditEvent::control(actor, "endpoint.created")
                .target("endpoint", endpoint.id)
                .details(json!({"slug": endpoint.slug, "seeded": true})),
        ],
    )
    .await?;
    orgs::bump_config_version(&mut tx).await?;
    tx.commit().await?;
    Ok(Some(DemoLogin {
        email: DEMO_EMAIL.to_owned(),
        password,
        org_slug: DEMO_ORG.to_owned(),
        endpoint_slug: DEMO_ENDPOINT.to_owned(),
    }))
}
