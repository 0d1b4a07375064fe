//! Caller attributes: names an org defines (e.g. `customer_id`) and the values an admin sets on
//! each member and each service token. A hosted SQL backend's policies read a caller's values with
//! `gatehouse.claim(name)`: the dataplane's snapshot carries them, and every change is published.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::{ServiceTokenId, UserId};
use gatehouse_core::role::Role;
use gatehouse_db::TenantTx;
use gatehouse_db::repos::caller_attributes::{self, AttributeRow};
use gatehouse_db::repos::{memberships, service_tokens};

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;
use crate::validate;

/// Most attributes a member or service token carries.
const MAX_VALUES: usize = 32;
/// Longest attribute value, in characters.
const MAX_VALUE_CHARS: usize = 1000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_attributes)
        .service(define_attribute)
        .service(remove_attribute)
        .service(get_member_attributes)
        .service(set_member_attributes)
        .service(get_service_token_attributes)
        .service(set_service_token_attributes);
}

/// An attribute the org defined.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttributeOut {
    pub name: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<AttributeRow> for AttributeOut {
    fn from(row: AttributeRow) -> Self {
        Self {
            name: row.name,
            description: row.description,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeIn {
    /// Lower-case letters, digits and `_`, starting with a letter (at most 63): the name policies
    /// pass to `gatehouse.claim()`.
    pub name: String,
    /// What the attribute holds, e.g. "The customer this caller acts for".
    #[serde(default)]
    pub description: String,
}

/// A member's or service token's attribute values, by attribute name.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeValues {
    pub attributes: BTreeMap<String, String>,
}

fn attribute_name(value: &str) -> Result<(), ApiError> {
    let mut chars = value.chars();
    let well_formed = value.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            "must be 1 to 63 lower-case letters, digits and _, starting with a letter",
        ))
    }
}

/// Checks `values` (sizes, characters, every name defined by the org).
async fn check_values(tx: &mut TenantTx, values: &BTreeMap<String, String>) -> ApiResult<()> {
    if values.len() > MAX_VALUES {
        return Err(ApiError::invalid(
            "attributes",
            format!("at most {MAX_VALUES} attributes"),
        ));
    }
    for value in values.values() {
        let chars = value.chars().count();
        if chars == 0 || chars > MAX_VALUE_CHARS || value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "attributes",
                format!("values must be 1 to {MAX_VALUE_CHARS} characters, without control characters"),
            ));
        }
    }
    let undefined = caller_attributes::undefined(tx, values).await?;
    if !undefined.is_empty() {
        return Err(ApiError::invalid(
            "attributes",
            format!("not defined by the org: {}", undefined.join(", ")),
        ));
    }
    Ok(())
}

/// The attributes the org defined.
#[utoipa::path(
    operation_id = "attributes.list",
    tag = "orgs",
    params(("org" = String, Path, description = "Org slug")),
    responses((status = 200, body = Vec<AttributeOut>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/attributes")]
pub async fn list_attributes(state: web::Data<AppState>, member: OrgMember) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let mut tx = member.begin(&state).await?;
    let rows = caller_attributes::list(&mut tx).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(AttributeOut::from).collect::<Vec<_>>()))
}

/// Define a caller attribute (or change the description of one). Audited.
#[utoipa::path(
    operation_id = "attributes.define",
    tag = "orgs",
    params(("org" = String, Path, description = "Org slug")),
    request_body = AttributeIn,
    responses((status = 200, body = AttributeOut), (status = 400, body = Problem), (status = 403, body = Problem))
)]
#[post("/orgs/{org}/attributes")]
pub async fn define_attribute(
    state: web::Data<AppState>,
    member: OrgMember,
    body: ValidJson<AttributeIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    attribute_name(&body.name)?;
    let description = validate::description("description", &body.description)?;
    if description.chars().count() > 500 {
        return Err(ApiError::invalid("description", "must be at most 500 characters"));
    }
    let mut tx = member.begin(&state).await?;
    let created = caller_attributes::define(&mut tx, &body.name, &description).await?;
    let row = caller_attributes::list(&mut tx)
        .await?
        .into_iter()
        .find(|a| a.name == body.name)
        .ok_or(ApiError::NotFound("attribute"))?;
    let event =
        changes::event(&member, "attribute.defined").details(json!({"name": body.name, "created": created}));
    changes::commit_audited(tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(AttributeOut::from(row)))
}

/// Remove a caller attribute and every member's and token's value of it. Audited; published.
#[utoipa::path(
    operation_id = "attributes.remove",
    tag = "orgs",
    params(("org" = String, Path, description = "Org slug"), ("attribute" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/attributes/{attribute}")]
pub async fn remove_attribute(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, name) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    if !caller_attributes::remove(&mut tx, &name).await? {
        return Err(ApiError::NotFound("attribute"));
    }
    let event = changes::event(&member, "attribute.removed").details(json!({"name": name}));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A member's attribute values.
#[utoipa::path(
    operation_id = "attributes.member.get",
    tag = "orgs",
    params(("org" = String, Path, description = "Org slug"), ("user_id" = String, Path, format = Uuid)),
    responses((status = 200, body = AttributeValues), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/members/{user_id}/attributes")]
pub async fn get_member_attributes(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, UserId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, user) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    if !memberships::list(&mut tx)
        .await?
        .iter()
        .any(|m| m.user_id == user)
    {
        return Err(ApiError::NotFound("member"));
    }
    let attributes = caller_attributes::member_values(&mut tx, user).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(AttributeValues { attributes }))
}

/// Replace a member's attribute values (every name defined by the org). Audited; published.
#[utoipa::path(
    operation_id = "attributes.member.set",
    tag = "orgs",
    params(("org" = String, Path, description = "Org slug"), ("user_id" = String, Path, format = Uuid)),
    request_body = AttributeValues,
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[put("/orgs/{org}/members/{user_id}/attributes")]
pub async fn set_member_attributes(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, UserId)>,
    body: ValidJson<AttributeValues>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, user) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    memberships::get_for_update(&mut tx, user)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    check_values(&mut tx, &body.attributes).await?;
    caller_attributes::set_member_values(&mut tx, user, &body.attributes).await?;
    let event = changes::event(&member, "member.attributes_set")
        .target("user", user)
        .details(json!({"attributes": body.attributes}));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A service token's attribute values.
#[utoipa::path(
    operation_id = "attributes.service_token.get",
    tag = "tokens",
    params(("org" = String, Path, description = "Org slug"), ("service_token_id" = String, Path, format = Uuid)),
    responses((status = 200, body = AttributeValues), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/service-tokens/{service_token_id}/attributes")]
pub async fn get_service_token_attributes(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServiceTokenId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, token) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    if !service_tokens::list(&mut tx).await?.iter().any(|t| t.id == token) {
        return Err(ApiError::NotFound("service token"));
    }
    let attributes = caller_attributes::service_token_values(&mut tx, token).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(AttributeValues { attributes }))
}

/// Replace a live service token's attribute values (every name defined by the org). Audited;
/// published.
#[utoipa::path(
    operation_id = "attributes.service_token.set",
    tag = "tokens",
    params(("org" = String, Path, description = "Org slug"), ("service_token_id" = String, Path, format = Uuid)),
    request_body = AttributeValues,
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[put("/orgs/{org}/service-tokens/{service_token_id}/attributes")]
pub async fn set_service_token_attributes(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, ServiceTokenId)>,
    body: ValidJson<AttributeValues>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, token) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let live = service_tokens::list(&mut tx)
        .await?
        .into_iter()
        .any(|t| t.id == token && t.revoked_at.is_none());
    if !live {
        return Err(ApiError::NotFound("service token"));
    }
    check_values(&mut tx, &body.attributes).await?;
    caller_attributes::set_service_token_values(&mut tx, token, &body.attributes).await?;
    let event = changes::event(&member, "service_token.attributes_set")
        .target("service_token", token)
        .details(json!({"attributes": body.attributes}));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}
