//! Which backends an endpoint combines (all their approved tools, or a selection).

use actix_web::{HttpResponse, get, put, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use gatehouse_core::ids::{BackendId, EndpointId, ToolId};
use gatehouse_core::role::Role;
use gatehouse_db::repos::backends::{self, EndpointBackend};
use gatehouse_db::repos::endpoints;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

/// A backend combined into an endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBackendIo {
    #[schema(value_type = String, format = Uuid)]
    pub backend_id: BackendId,
    /// Expose only these tools of the backend; absent (or null) exposes all its approved tools.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub tool_ids: Option<Vec<ToolId>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBackendsIn {
    /// The complete selection (replaces the current one).
    pub backends: Vec<EndpointBackendIo>,
}

async fn endpoint_backends_out(
    tx: &mut gatehouse_db::TenantTx,
    endpoint: EndpointId,
) -> ApiResult<Vec<EndpointBackendIo>> {
    Ok(backends::endpoint_backends(tx, endpoint)
        .await?
        .into_iter()
        .map(|row| EndpointBackendIo {
            backend_id: row.backend_id,
            tool_ids: (!row.all_tools).then_some(row.tool_ids),
        })
        .collect())
}

/// The backends an endpoint combines.
#[utoipa::path(
    operation_id = "endpoints.backends.get",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Vec<EndpointBackendIo>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/endpoints/{endpoint_id}/backends")]
pub async fn get_endpoint_backends(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, endpoint) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    endpoints::get(&mut tx, endpoint)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let out = endpoint_backends_out(&mut tx, endpoint).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Choose the backends whose approved SQL tools an endpoint exposes (`<backend slug>__<tool>`),
/// all of them or a selection.
#[utoipa::path(
    operation_id = "endpoints.backends.set",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    request_body = EndpointBackendsIn,
    responses(
        (status = 200, body = Vec<EndpointBackendIo>),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
#[put("/orgs/{org}/endpoints/{endpoint_id}/backends")]
pub async fn set_endpoint_backends(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
    body: ValidJson<EndpointBackendsIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, endpoint) = path.into_inner();
    let body = body.0;
    if body.backends.len() > 100 {
        return Err(ApiError::invalid("backends", "must list at most 100 backends"));
    }
    let mut tx = member.begin(&state).await?;
    endpoints::get(&mut tx, endpoint)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let mut rows = Vec::new();
    for (i, b) in body.backends.iter().enumerate() {
        if body.backends[..i].iter().any(|o| o.backend_id == b.backend_id) {
            return Err(ApiError::invalid(
                "backends",
                format!("{} is listed twice", b.backend_id),
            ));
        }
        backends::get(&mut tx, b.backend_id).await?.ok_or_else(|| {
            ApiError::invalid(
                "backends",
                format!("{} is not a backend of this org", b.backend_id),
            )
        })?;
        if let Some(ids) = &b.tool_ids {
            let of_backend: Vec<ToolId> = backends::list_tools(&mut tx, b.backend_id)
                .await?
                .iter()
                .map(|t| t.id)
                .collect();
            if let Some(missing) = ids.iter().find(|id| !of_backend.contains(id)) {
                return Err(ApiError::invalid(
                    "backends",
                    format!("{missing} is not a tool of backend {}", b.backend_id),
                ));
            }
        }
        rows.push(EndpointBackend {
            backend_id: b.backend_id,
            all_tools: b.tool_ids.is_none(),
            tool_ids: b.tool_ids.clone().unwrap_or_default(),
        });
    }
    backends::set_endpoint_backends(&mut tx, endpoint, &rows).await?;
    let out = endpoint_backends_out(&mut tx, endpoint).await?;
    let event = changes::event(&member, "endpoint.backends")
        .target("endpoint", endpoint)
        .details(json!({"backends": out}));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::Ok().json(out))
}
