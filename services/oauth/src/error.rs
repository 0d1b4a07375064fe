//! The authorization server's error edge: RFC 6749 §5.2 `{error, error_description}` bodies for
//! the JSON endpoints, and a plain HTML page for authorization errors that must not redirect.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use gatehouse_db::DbError;

/// An error of the token, registration, revocation or introspection endpoints.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed. `basic` says the client tried HTTP Basic (answered 401 with a
    /// challenge, RFC 6749 §5.2).
    #[error("{message}")]
    InvalidClient { message: String, basic: bool },
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    /// RFC 8707: the resource is not one this server issues tokens for.
    #[error("{0}")]
    InvalidTarget(String),
    /// RFC 7591: a redirect URI is not acceptable.
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// RFC 7591: some other client metadata is not acceptable.
    #[error("{0}")]
    InvalidClientMetadata(String),
    #[error("too many requests; retry after {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the authorization server is temporarily unavailable")]
    TemporarilyUnavailable,
    #[error("internal error")]
    ServerError(#[from] anyhow::Error),
}

impl OAuthError {
    pub fn invalid_client(message: impl Into<String>) -> Self {
        OAuthError::InvalidClient {
            message: message.into(),
            basic: false,
        }
    }

    /// The RFC 6749 / 7591 / 8707 error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            OAuthError::InvalidClientMetadata(_) => "invalid_client_metadata",
            // Not an RFC 6749 code; clients treat unknown codes as errors, and 429 says it all.
            OAuthError::RateLimited { .. } => "slow_down",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError(_) => "server_error",
        }
    }
}

impl From<DbError> for OAuthError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(e) => {
                tracing::error!(error = %e, "database unavailable");
                OAuthError::TemporarilyUnavailable
            }
            other => OAuthError::ServerError(anyhow::Error::new(other)),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: String,
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            OAuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let description = match self {
            OAuthError::ServerError(err) => {
                tracing::error!(error = ?err, "authorization server error");
                "an internal error occurred; quote the x-request-id response header when reporting it"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        response.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        match self {
            OAuthError::InvalidClient { basic: true, .. } => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"gatehouse\""),
                ));
            }
            OAuthError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        crate::cors::allow_any_origin(&mut response);
        response.json(ErrorBody {
            error: self.code(),
            error_description: description,
        })
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;
