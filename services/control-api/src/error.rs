//! The REST API's one error type, mapped once to `application/problem+json` (RFC 9457).
//!
//! Every problem has a stable `code` (listed in [`ApiError::code`]), a human `title` and `detail`,
//! and, for invalid input, the offending `field`. Server errors are opaque: the cause chain is
//! logged with the request id, the client sees only that id.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use gatehouse_db::DbError;

/// Base URI of problem types; `{PROBLEM_BASE}{code}` is documented in docs/api.md.
pub const PROBLEM_BASE: &str = "https://gatehouse.dev/problems/";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The resource does not exist or belongs to another org (indistinguishable by design).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A field of the request is missing or invalid.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The request as a whole is malformed (not JSON, wrong content type...).
    #[error("{0}")]
    BadRequest(String),
    /// The change conflicts with existing state (duplicate slug, last owner...).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// The change would send a stored (write-only) credential somewhere new: the request must
    /// supply it again in `field`.
    #[error("{detail}")]
    CredentialRequired { field: &'static str, detail: String },
    /// Not signed in, or the session expired.
    #[error("authentication required")]
    Unauthenticated,
    /// Login refused: the same answer whether or not the account exists.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password was right but the email address is not verified yet.
    #[error("verify your email address first: follow the link we sent (sign up again to get a new one)")]
    EmailNotVerified,
    /// Signed in, but the role does not allow this (only ever for the caller's own org).
    #[error("{0}")]
    Forbidden(String),
    /// The org requires single sign-on and this login or session did not come through its
    /// identity provider.
    #[error("the org {org} requires single sign-on: sign in through its identity provider at {login_url}")]
    SsoRequired { org: String, login_url: String },
    /// A cookie-authenticated write without a valid CSRF token.
    #[error("missing or invalid CSRF token")]
    Csrf,
    #[error("request body too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type: send application/json")]
    UnsupportedMediaType,
    #[error("too many requests; retry after {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (the database) is down: writes fail closed.
    #[error("service temporarily unavailable")]
    Unavailable,
    /// A tenant-supplied URL was refused or could not be fetched.
    #[error("{0}")]
    Upstream(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// What the problem's `detail` says: the error itself, except an internal one, which is
    /// logged here and never shown.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                "an internal error occurred; quote the x-request-id response header when reporting it"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict { code, .. } => code,
            ApiError::CredentialRequired { .. } => "credential_required",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::EmailNotVerified => "email_not_verified",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::SsoRequired { .. } => "sso_required",
            ApiError::Csrf => "csrf",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "Not found",
            ApiError::InvalidField { .. } => "Invalid request field",
            ApiError::BadRequest(_) => "Bad request",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::CredentialRequired { .. } => "Credential required",
            ApiError::Unauthenticated => "Authentication required",
            ApiError::InvalidCredentials => "Invalid credentials",
            ApiError::EmailNotVerified => "Email not verified",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::SsoRequired { .. } => "Single sign-on required",
            ApiError::Csrf => "CSRF check failed",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::Unavailable => "Service unavailable",
            ApiError::Upstream(_) => "Upstream error",
            ApiError::Internal(_) => "Internal server error",
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::NotFound => ApiError::NotFound("resource"),
            DbError::Conflict { constraint } => ApiError::conflict("conflict", conflict_detail(&constraint)),
            // A reference to a row that is not in this org reads as "not found".
            DbError::InvalidReference { .. } => ApiError::NotFound("referenced resource"),
            // The plan's seat limit, enforced by a trigger on every way a member is added.
            DbError::CheckViolation { constraint } if constraint == "memberships_seats" => {
                ApiError::conflict(
                    "seats_exhausted",
                    "every seat of the org's plan is taken: remove a member, or ask the operator for a plan with more seats",
                )
            }
            DbError::CheckViolation { constraint } => {
                ApiError::BadRequest(format!("a value violates the constraint {constraint}"))
            }
            DbError::Refused => ApiError::NotFound("resource"),
            DbError::Unavailable(e) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            DbError::Other(e) => ApiError::Internal(anyhow::Error::new(e)),
        }
    }
}

/// Human text for unique-constraint violations, by constraint name.
fn conflict_detail(constraint: &str) -> String {
    match constraint {
        "orgs_slug_key" => "an org with this slug already exists".into(),
        "users_email_key" => "an account with this email already exists".into(),
        c if c.ends_with("_slug_key") => "this slug is already taken in the org".into(),
        c if c.ends_with("_name_key") => "this name is already taken in the org".into(),
        c => format!("conflicts with an existing resource ({c})"),
    }
}

/// The problem document (RFC 9457) returned for every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// The request field at fault, as a dotted path, for invalid input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidField { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::CredentialRequired { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthenticated | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::EmailNotVerified => StatusCode::FORBIDDEN,
            ApiError::Forbidden(_) | ApiError::SsoRequired { .. } | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = self.detail();
        let problem = Problem {
            kind: format!("{PROBLEM_BASE}{}", self.code()),
            title: self.title().to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
            field: match self {
                ApiError::InvalidField { field, .. } => Some(field.clone()),
                ApiError::CredentialRequired { field, .. } => Some((*field).to_owned()),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let ApiError::Unauthenticated = self {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Cookie")));
        }
        response.body(serde_json::to_string(&problem).expect("problem serialises"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
