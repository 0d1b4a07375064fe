//! Tenant-neutral reference tables of a backend: relations a tool may read without row-level
//! security, marked and unmarked by an admin (audited).

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use gatehouse_core::ids::BackendId;
use gatehouse_core::role::Role;
use gatehouse_db::repos::backends;

use crate::auth::OrgMember;
use crate::changes;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

use super::identifier;

/// A relation an admin marked as tenant-neutral reference data.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceTable {
    pub schema: String,
    pub table: String,
}

/// Relations of the backend marked tenant-neutral.
#[utoipa::path(
    operation_id = "backends.reference_tables.list",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Vec<ReferenceTable>), (status = 404, body = Problem))
)]
#[get("/orgs/{org}/backends/{backend_id}/reference-tables")]
pub async fn list_reference_tables(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    backends::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    let tables = backends::reference_tables(&mut tx, id).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(
        tables
            .iter()
            .filter_map(|t| t.split_once('.'))
            .map(|(schema, table)| ReferenceTable {
                schema: schema.into(),
                table: table.into(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// Mark a relation as tenant-neutral reference data (e.g. a product catalogue): tools may then
/// read it without row-level security. Audited.
#[utoipa::path(
    operation_id = "backends.reference_tables.mark",
    tag = "backends",
    params(("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid)),
    request_body = ReferenceTable,
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[post("/orgs/{org}/backends/{backend_id}/reference-tables")]
pub async fn mark_reference_table(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId)>,
    body: ValidJson<ReferenceTable>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id) = path.into_inner();
    identifier("schema", &body.schema)?;
    identifier("table", &body.table)?;
    if body.schema == "gatehouse" {
        return Err(ApiError::invalid(
            "schema",
            "the gatehouse schema is not reference data",
        ));
    }
    let mut tx = member.begin(&state).await?;
    backends::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    if backends::mark_reference_table(&mut tx, id, &body.schema, &body.table, member.current.user.id).await? {
        let event = changes::event(&member, "backend.reference_table_marked")
            .target("backend", id)
            .details(json!({"schema": body.schema, "table": body.table}));
        changes::commit_audited(tx, &[event]).await?;
    } else {
        tx.commit().await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Remove the tenant-neutral mark. Approved tools reading the relation are withheld until
/// approved again (the gate runs again).
#[utoipa::path(
    operation_id = "backends.reference_tables.unmark",
    tag = "backends",
    params(
        ("org" = String, Path, description = "Org slug"), ("backend_id" = String, Path, format = Uuid),
        ("schema" = String, Path), ("table" = String, Path),
    ),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
#[delete("/orgs/{org}/backends/{backend_id}/reference-tables/{schema}/{table}")]
pub async fn unmark_reference_table(
    state: web::Data<AppState>,
    member: OrgMember,
    path: web::Path<(String, BackendId, String, String)>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Admin)?;
    let (_, id, schema, table) = path.into_inner();
    let mut tx = member.begin(&state).await?;
    backends::get_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("backend"))?;
    if !backends::unmark_reference_table(&mut tx, id, &schema, &table).await? {
        return Err(ApiError::NotFound("reference table"));
    }
    let withheld = backends::withhold_tools(&mut tx, id, Some(&[format!("{schema}.{table}")])).await?;
    let event = changes::event(&member, "backend.reference_table_unmarked")
        .target("backend", id)
        .details(json!({"schema": schema, "table": table, "tools_withheld": withheld}));
    changes::commit_config_change(&state, tx, &[event]).await?;
    Ok(HttpResponse::NoContent().finish())
}
