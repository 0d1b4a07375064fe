//! The platform operator: whoever presents the operator token (`Authorization: Bearer <token>`)
//! on the operator API (`/api/operator`). The services know only the token's SHA-256
//! (`operator.token_sha256`); the presented token is hashed and compared in constant time. No
//! tenant credential is looked at: a session cookie, a service token or an OAuth access token is
//! refused like any wrong token, so no tenant role can reach these routes.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use gatehouse_core::secrets::{constant_time_eq, token_hash};
use gatehouse_db::Actor;

use crate::auth::ClientInfo;
use crate::error::ApiError;
use crate::state::AppState;

/// Header naming the person acting with the operator token, recorded as the audit actor's label
/// (the token is shared by every operator of an install). Optional; `operator` when absent.
pub const OPERATOR_NAME_HEADER: &str = "x-gatehouse-operator";

/// A request authenticated with the operator token.
#[derive(Clone, Debug)]
pub struct Operator {
    /// Who says they act (the [`OPERATOR_NAME_HEADER`]), for the audit trails.
    pub name: String,
    pub client: ClientInfo,
}

impl Operator {
    pub fn actor(&self) -> Actor {
        Actor::operator(&self.name)
    }
}

fn authenticate(req: &HttpRequest) -> Result<Operator, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing from app data")))?;
    // Without a configured hash nothing matches: the operator API is closed.
    let expected = state.cfg.operator.token_hash().ok_or(ApiError::Unauthenticated)?;
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or(ApiError::Unauthenticated)?;
    if !constant_time_eq(&token_hash(presented), &expected) {
        return Err(ApiError::Unauthenticated);
    }
    let name = req
        .headers()
        .get(OPERATOR_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    Ok(Operator {
        name,
        client: ClientInfo::of(req),
    })
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}
