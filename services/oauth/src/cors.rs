//! CORS for the endpoints browser-based MCP clients call directly (metadata, JWKS, token,
//! registration, revocation). They take no cookies, so any origin may read them. `/authorize`
//! and its login and consent pages get no CORS headers at all.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};

pub fn allow_any_origin(response: &mut actix_web::HttpResponseBuilder) {
    response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")));
}

/// The answer to a CORS preflight on one of those endpoints.
pub async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization, content-type, mcp-protocol-version",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}
