//! RFC 7591 dynamic client registration, kept for clients that predate Client ID Metadata
//! Documents. Rate-limited per client IP, together with metadata document fetches
//! ([`admit_registration`]).

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use gatehouse_core::secrets::token_hash;
use gatehouse_core::snapshot::Limit;
use gatehouse_db::GlobalTx;
use gatehouse_db::repos::oauth_clients::{self, NewOAuthClient};

use crate::error::{OAuthError, OAuthResult};
use crate::redirect::{self, AppType};
use crate::{OAuthState, tokens};

const MAX_REDIRECT_URIS: usize = 10;
const MAX_BODY: usize = 16 * 1024;

/// The metadata we act on; any other member is ignored (RFC 7591 §2).
#[derive(Debug, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub application_type: Option<String>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub scope: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
}

fn optional_https(field: &str, value: &Option<String>) -> OAuthResult<()> {
    if let Some(v) = value {
        let ok = v.len() <= 2000 && url::Url::parse(v).is_ok_and(|u| u.scheme() == "https");
        if !ok {
            return Err(OAuthError::InvalidClientMetadata(format!(
                "{field} must be an https URL"
            )));
        }
    }
    Ok(())
}

/// Validated registration, ready to store.
pub fn validate(req: &RegistrationRequest) -> OAuthResult<(NewOAuthClient, Option<String>)> {
    let grant_types = req
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    for g in &grant_types {
        if !matches!(g.as_str(), "authorization_code" | "refresh_token") {
            return Err(OAuthError::InvalidClientMetadata(format!(
                "grant type {g} is not available to registered clients (client_credentials clients are created by an org admin)"
            )));
        }
    }
    let response_types = req.response_types.clone().unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::InvalidClientMetadata(
            "only the response type code is supported".into(),
        ));
    }
    let method = req
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "client_secret_basic".into());
    if !matches!(
        method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(OAuthError::InvalidClientMetadata(format!(
            "token_endpoint_auth_method {method} is not supported (none, client_secret_basic, client_secret_post)"
        )));
    }
    if req.redirect_uris.is_empty() && grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OAuthError::InvalidRedirectUri("redirect_uris is required".into()));
    }
    if req.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::InvalidRedirectUri(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    // A client that does not say is taken to be native when none of its redirect URIs is https:
    // MCP clients of earlier protocol revisions register loopback redirects without the field.
    let app = match req.application_type.as_deref() {
        Some(s) => AppType::parse(s).ok_or_else(|| {
            OAuthError::InvalidClientMetadata("application_type must be web or native".into())
        })?,
        None if redirect::looks_native(&req.redirect_uris) => AppType::Native,
        None => AppType::Web,
    };
    for uri in &req.redirect_uris {
        redirect::validate(uri, app)
            .map_err(|why| OAuthError::InvalidRedirectUri(format!("{uri}: {why}")))?;
    }
    if let Some(name) = &req.client_name
        && (name.chars().count() > 200 || name.chars().any(char::is_control))
    {
        return Err(OAuthError::InvalidClientMetadata(
            "client_name must be at most 200 printable characters".into(),
        ));
    }
    optional_https("client_uri", &req.client_uri)?;
    optional_https("logo_uri", &req.logo_uri)?;
    let secret = (method != "none").then(tokens::new_client_secret);
    let mut metadata = json!({});
    for (k, v) in [
        ("scope", req.scope.clone().map(Value::from)),
        ("contacts", req.contacts.clone().map(Value::from)),
        ("software_id", req.software_id.clone().map(Value::from)),
        ("software_version", req.software_version.clone().map(Value::from)),
    ] {
        if let Some(v) = v {
            metadata[k] = v;
        }
    }
    Ok((
        NewOAuthClient {
            client_id: tokens::new_dynamic_client_id(),
            registration_type: "dynamic",
            client_name: req.client_name.clone(),
            client_uri: req.client_uri.clone(),
            logo_uri: req.logo_uri.clone(),
            redirect_uris: req.redirect_uris.clone(),
            grant_types,
            response_types,
            token_endpoint_auth_method: method,
            application_type: app.as_str().to_owned(),
            client_secret_hash: secret.as_deref().map(token_hash),
            metadata,
            document_fetched_at: None,
            document_expires_at: None,
            document_etag: None,
        },
        secret,
    ))
}

/// Admits one client registration from `ip`, or refuses it as rate-limited. Both ways a client
/// comes to exist count against the same allowance (`oauth.dynamic_registration_per_hour` per
/// client IP): a dynamic registration, and a fetch of a Client ID Metadata Document (each fetch
/// makes Gatehouse reach out to a URL the caller chose and store what it finds).
pub(crate) async fn admit_registration(state: &OAuthState, ip: Option<IpAddr>) -> OAuthResult<()> {
    let per_hour = state.cfg.oauth.dynamic_registration_per_hour.max(1);
    let limit = Limit {
        per_minute: per_hour.div_ceil(60),
        burst: per_hour - 1,
    };
    let decision = state
        .rate_limiter
        .check(
            &format!("oauth-register:{}", ip.map(|i| i.to_string()).unwrap_or_default()),
            limit,
        )
        .await;
    if !decision.allowed {
        return Err(OAuthError::RateLimited {
            retry_after_secs: decision.retry_after.as_secs().max(1),
        });
    }
    Ok(())
}

/// `POST /oauth/register`.
pub async fn register(
    state: web::Data<OAuthState>,
    req: HttpRequest,
    body: web::Bytes,
) -> OAuthResult<HttpResponse> {
    admit_registration(&state, gatehouse_http::client_ip(&req)).await?;
    if body.len() > MAX_BODY {
        return Err(OAuthError::InvalidClientMetadata(format!(
            "the registration is larger than {MAX_BODY} bytes"
        )));
    }
    let request: RegistrationRequest = serde_json::from_slice(&body).map_err(|e| {
        OAuthError::InvalidClientMetadata(format!("the body is not valid client metadata JSON: {e}"))
    })?;
    let (client, secret) = validate(&request)?;
    let mut tx = GlobalTx::begin(&state.db).await?;
    let row = oauth_clients::upsert(&mut tx, &client).await?;
    tx.commit().await?;
    // Registration is global (no org yet): it is logged here, and the org's audit trail records
    // the client, with its name and redirect URIs, when a member first consents to it.
    tracing::info!(client_id = %row.client_id, client_name = ?row.client_name, redirect_uris = ?row.redirect_uris,
        application_type = %row.application_type, "oauth.client_registered");
    let mut out = json!({
        "client_id": row.client_id,
        "client_id_issued_at": row.created_at.unix_timestamp(),
        "redirect_uris": row.redirect_uris,
        "grant_types": row.grant_types,
        "response_types": row.response_types,
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "application_type": row.application_type,
    });
    for (k, v) in [
        ("client_name", &row.client_name),
        ("client_uri", &row.client_uri),
        ("logo_uri", &row.logo_uri),
    ] {
        if let Some(v) = v {
            out[k] = json!(v);
        }
    }
    if let Some(scope) = row.metadata.get("scope") {
        out["scope"] = scope.clone();
    }
    if let Some(secret) = secret {
        out["client_secret"] = json!(secret);
        out["client_secret_expires_at"] = json!(0);
    }
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(out))
}
