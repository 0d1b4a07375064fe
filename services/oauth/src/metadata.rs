//! Discovery: RFC 8414 authorization server metadata, the same document at the OpenID Connect
//! discovery location, and the JWKS.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::OAuthState;
use crate::error::OAuthResult;

/// The metadata document (RFC 8414 §2), also served as OIDC discovery.
pub fn document(state: &OAuthState) -> Value {
    let issuer = state.issuer();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "registration_endpoint": format!("{issuer}/oauth/register"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        // Scopes are defined per org and endpoint; each endpoint's protected resource metadata
        // lists its own.
        "scopes_supported": [],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "resource_indicators_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [crate::keys::alg_name(state.cfg.oauth.signing_alg)],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "service_documentation": format!("{issuer}/api/docs/"),
    })
}

fn metadata_response(state: &OAuthState) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(document(state))
}

pub async fn authorization_server(state: web::Data<OAuthState>) -> HttpResponse {
    metadata_response(&state)
}

pub async fn openid_configuration(state: web::Data<OAuthState>) -> HttpResponse {
    metadata_response(&state)
}

/// The published keys. Validators may cache the document for `jwks_max_age_secs`; a key is
/// published longer than that before it signs.
pub async fn jwks(state: web::Data<OAuthState>) -> OAuthResult<HttpResponse> {
    let doc = crate::keys::published_jwks(&state.db).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", state.cfg.oauth.jwks_max_age_secs),
        ))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .content_type("application/jwk-set+json")
        .json(doc))
}
