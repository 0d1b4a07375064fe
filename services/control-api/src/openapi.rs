//! The OpenAPI 3.1 document, generated from the handlers by utoipa.

use actix_web::App;
use utoipa::OpenApi;
use utoipa_actix_web::{AppExt, scope};

use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse control API",
        description = "Accounts, orgs, domain servers, backends, tools, scopes, endpoints, tokens, audit and usage. \
                       Errors are application/problem+json (RFC 9457). Cookie-authenticated writes need \
                       the X-CSRF-Token header returned by GET /api/v1/session.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem)),
    modifiers(&OperatorToken),
    tags(
        (name = "session", description = "Sign-up, login, the current user"),
        (name = "orgs", description = "Orgs, members and invitations"),
        (name = "sso", description = "Org single sign-on (OIDC)"),
        (name = "servers", description = "Domain servers and their tools"),
        (name = "scopes", description = "Scopes and the tools they grant"),
        (name = "endpoints", description = "Governed MCP endpoints"),
        (name = "backends", description = "PostgreSQL backends and their hosted SQL tools"),
        (name = "tokens", description = "Service tokens and clients"),
        (name = "audit", description = "Audit trail"),
        (name = "usage", description = "Usage and invoices"),
        (name = "operator", description = "Platform operators: plans and orgs (operator token, `/api/operator`)"),
    )
)]
pub struct ApiDoc;

/// The operator API's credential: `Authorization: Bearer <operator token>`.
struct OperatorToken;

impl utoipa::Modify for OperatorToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token, whose SHA-256 is `operator.token_sha256`; no tenant credential is accepted",
                    ))
                    .build(),
            ),
        );
    }
}

impl ApiDoc {
    /// The base document (info, tags, shared schemas) before routes are collected.
    pub fn openapi_base() -> utoipa::openapi::OpenApi {
        <ApiDoc as OpenApi>::openapi()
    }
}

/// The complete document: the base above plus every route mounted under `/api/v1` and the
/// operator API under `/api/operator`.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .service(scope::scope("/api/v1").configure(crate::routes::configure))
        .service(scope::scope("/api/operator").configure(crate::routes::operator::configure))
        .split_for_parts();
    api
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().expect("OpenAPI document serialises");
    json.push('\n');
    json
}
