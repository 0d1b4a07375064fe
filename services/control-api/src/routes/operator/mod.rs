//! The operator API under `/api/operator`: plans (create, change, retire) and orgs (list, inspect
//! usage, change plan, suspend, resume), guarded by the operator token ([`Operator`]). Every
//! action is appended to the platform audit trail and, when it affects orgs, to each affected
//! org's own trail, in the transaction of the change. Org changes bump the org's configuration
//! version and are published to dataplanes after the commit (a suspension reaches every
//! dataplane through the same change notifications as any configuration change).
//!
//! [`plans`] holds the plan routes, [`orgs`] the org routes, [`trail`] the platform audit trail.

mod orgs;
mod plans;
mod trail;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_db::NewAuditEvent;

use crate::operator::Operator;

use self::orgs::*;
use self::plans::*;
use self::trail::*;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_plans)
        .service(create_plan)
        .service(get_plan)
        .service(update_plan)
        .service(retire_plan)
        .service(list_orgs)
        .service(get_org)
        .service(set_org_plan)
        .service(suspend_org)
        .service(resume_org)
        .service(list_platform_audit);
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// An operator event, with the request's IP and user agent.
pub(super) fn event(operator: &Operator, action: &str) -> NewAuditEvent {
    NewAuditEvent::control(operator.actor(), action)
        .client(operator.client.ip, operator.client.user_agent.clone())
}
