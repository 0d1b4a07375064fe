//! The dataplane as an OAuth protected resource (RFC 9728): metadata for each endpoint and the
//! `WWW-Authenticate` challenges that point clients at it.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::state::AppState;
use crate::store::EndpointState;

/// Where an endpoint's metadata lives: path-inserted under `/.well-known/oauth-protected-resource`.
pub fn metadata_url(public_url: &str, org: &str, endpoint: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/{org}/{endpoint}/mcp",
        public_url.trim_end_matches('/')
    )
}

/// `GET /.well-known/oauth-protected-resource/{org}/{endpoint}/mcp`.
pub async fn protected_resource_metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Err(problem) = state.origins.check(
        req.headers().get("origin").map(|v| v.as_bytes()),
        req.headers().get("host").map(|v| v.as_bytes()),
    ) {
        return HttpResponse::Forbidden().json(json!({"error": "forbidden", "error_description": problem}));
    }
    if !state.store.is_loaded() {
        return not_ready();
    }
    let (org_slug, endpoint_slug) = path.into_inner();
    let Some((_, endpoint)) = state.refresher.endpoint(&org_slug, &endpoint_slug).await else {
        return not_found();
    };
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .insert_header(("access-control-allow-origin", "*"))
        .json(json!({
            "resource": endpoint.snapshot.resource_url,
            "authorization_servers": [state.issuer],
            "scopes_supported": endpoint.scopes_published,
            "bearer_methods_supported": ["header"],
            "resource_name": endpoint.snapshot.name,
        }))
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "not_found", "error_description": "no such endpoint"}))
}

pub fn not_ready() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("retry-after", "1"))
        .json(json!({"error": "unavailable", "error_description": "configuration not loaded yet"}))
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The `WWW-Authenticate` value for a missing or invalid token: it names the scopes a caller can
/// start with ([`EndpointState::scopes_published`]), never every scope of the endpoint.
pub fn challenge(metadata_url: &str, endpoint: &EndpointState, error: Option<&str>) -> String {
    let mut value = String::from("Bearer ");
    if let Some(description) = error {
        value.push_str(&format!(
            "error=\"invalid_token\", error_description=\"{}\", ",
            quote(description)
        ));
    }
    value.push_str(&format!("resource_metadata=\"{}\"", quote(metadata_url)));
    if !endpoint.scopes_published.is_empty() {
        value.push_str(&format!(
            ", scope=\"{}\"",
            quote(&endpoint.scopes_published.join(" "))
        ));
    }
    value
}

/// The `WWW-Authenticate` value for a token that lacks `scopes`. Like [`challenge`], it names
/// only those of `scopes` a caller can start with ([`EndpointState::scopes_published`]): a step-up
/// challenge never tells a caller the name of a scope its role could not be granted (unless the
/// endpoint publishes its scopes). With none to name, the challenge carries no `scope`.
pub fn insufficient_scope(
    metadata_url: &str,
    endpoint: &EndpointState,
    scopes: &[String],
    description: &str,
) -> String {
    let named = nameable(endpoint, scopes);
    let mut value = String::from("Bearer error=\"insufficient_scope\", ");
    if !named.is_empty() {
        value.push_str(&format!("scope=\"{}\", ", quote(&named.join(" "))));
    }
    value.push_str(&format!(
        "resource_metadata=\"{}\", error_description=\"{}\"",
        quote(metadata_url),
        quote(description)
    ));
    value
}

/// Those of `scopes` that may be named to any caller of the endpoint.
pub fn nameable<'a>(endpoint: &EndpointState, scopes: &'a [String]) -> Vec<&'a str> {
    scopes
        .iter()
        .filter(|s| endpoint.scopes_published.contains(s))
        .map(String::as_str)
        .collect()
}
