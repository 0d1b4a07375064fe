//! The route that sets which servers (and which of their tools) an endpoint combines.

use actix_web::{HttpResponse, put, web};
use serde_json::json;

use gatehouse_core::ids::EndpointId;
use gatehouse_core::role::Role;
use gatehouse_db::repos::endpoints;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

use super::checks::checked_selection;
use super::endpoint_out;
use super::types::{EndpointOut, EndpointServersIn};

/// Set exactly which servers (and which of their tools) the endpoint combines.
#[utoipa::path(
    operation_id = "endpoints.set_servers",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    request_body = EndpointServersIn,
    responses(
        (status = 200, body = EndpointOut), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[put("/orgs/{org}/endpoints/{endpoint_id}/servers")]
pub async fn set_endpoint_servers(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
    body: ValidJson<EndpointServersIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    let row = endpoints::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let before = endpoints::servers(&mut tx, id).await?;
    let selection = checked_selection(&mut tx, &body.servers).await?;
    if !row.namespace_tools && selection.len() > 1 {
        return Err(ApiError::invalid(
            "servers",
            "this endpoint does not namespace tool names, so it can combine only one server; set namespace_tools first",
        ));
    }
    endpoints::set_servers(&mut tx, id, &selection).await?;
    let out = endpoint_out(&state, &member, &mut tx, &row).await?;
    let event = changes::event(&member, "endpoint.servers")
        .target("endpoint", id)
        .details(changes::before_after(Some(json!(before)), Some(json!(selection))));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(out))
}
