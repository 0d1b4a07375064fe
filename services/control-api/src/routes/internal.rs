//! The internal API the dataplane reads its configuration from: every org's configuration
//! version, and one org's snapshot. Authenticated with `Authorization: Bearer <internal token>`
//! (derived from `secrets.dataplane_secret`, shared by the control API and the dataplanes),
//! compared in constant time. Not part of the public OpenAPI document.
//!
//! A snapshot's credentials are re-sealed for the dataplane ([`OrgSnapshot::reseal`]): opened
//! with the platform keyring, sealed with the snapshot key of the dataplane secret, so a
//! dataplane never needs the keys that protect the platform database.

use actix_web::{HttpRequest, HttpResponse, web};

use gatehouse_core::ids::OrgId;
use gatehouse_core::secrets::token_hash;
use gatehouse_core::snapshot::{OrgSnapshot, OrgVersions};
use gatehouse_db::repos::{orgs, snapshot};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Mounted on the app itself (outside `/api/v1`, outside the OpenAPI document).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/internal/v1")
            .route("/orgs", web::get().to(org_versions))
            .route("/orgs/{org_id}/snapshot", web::get().to(org_snapshot)),
    );
}

/// Constant-time check of the bearer token against the internal token.
fn authenticate(state: &AppState, req: &HttpRequest) -> ApiResult<()> {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or_default();
    // Comparing fixed-length digests keeps the comparison independent of where the strings
    // differ and of their lengths.
    let a = token_hash(presented);
    let b = token_hash(&state.dataplane.internal_token);
    let same = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 && a.len() == b.len();
    if presented.is_empty() || !same {
        return Err(ApiError::Unauthenticated);
    }
    Ok(())
}

/// `GET /internal/v1/orgs`: every org with its configuration version.
async fn org_versions(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    authenticate(&state, &req)?;
    let mut global = GlobalTx::begin(&state.db).await?;
    let ids = orgs::list_all_ids(&mut global).await?;
    global.commit().await?;
    let mut out = Vec::with_capacity(ids.len());
    for (org_id, _) in ids {
        // The internal token authorizes the dataplane to read every org's configuration.
        let scope = OrgScope::authorized(org_id);
        let mut tx = TenantTx::begin(&state.db, &scope).await?;
        out.push(snapshot::org_version(&mut tx).await?);
        tx.commit().await?;
    }
    Ok(HttpResponse::Ok().json(OrgVersions { orgs: out }))
}

/// `GET /internal/v1/orgs/{org_id}/snapshot`: the org's configuration snapshot.
async fn org_snapshot(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<OrgId>,
) -> ApiResult<HttpResponse> {
    authenticate(&state, &req)?;
    let org_id = path.into_inner();
    let scope = OrgScope::authorized(org_id);
    let mut tx = TenantTx::begin_consistent_read(&state.db, &scope).await?;
    let exists: bool = orgs::get(&mut tx).await.map(|_| true).or_else(|e| match e {
        gatehouse_db::DbError::NotFound => Ok(false),
        other => Err(other),
    })?;
    if !exists {
        return Err(ApiError::NotFound("org"));
    }
    let cfg = state.cfg.clone();
    let mut snap: OrgSnapshot =
        snapshot::build(&mut tx, |org, endpoint| cfg.endpoint_url(org, endpoint)).await?;
    tx.commit().await?;
    for problem in snap.reseal(&state.keyring, &state.dataplane.snapshot) {
        // The dataplane reports the server or backend unusable; the cause is logged here, where
        // the keys at rest are.
        tracing::error!(org_id = %org_id, problem, "sealed value cannot be opened for the snapshot");
    }
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(snap))
}
