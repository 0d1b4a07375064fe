//! Clients: finding the one a request names, and authenticating it at the token endpoint.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use gatehouse_core::ids::OrgId;
use gatehouse_core::secrets::{constant_time_eq, token_hash};
use gatehouse_db::repos::oauth_clients::{self, OAuthClientRow};
use gatehouse_db::repos::oauth_service_clients::{self, ServiceClientRow};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};

use crate::OAuthState;
use crate::error::{OAuthError, OAuthResult};
use crate::tokens;

/// Longest client id accepted anywhere (CIMD URLs included).
pub const MAX_CLIENT_ID_LEN: usize = 2000;

/// A public or confidential client registered globally (dynamic registration or metadata
/// document), as used by the authorization code and refresh token grants. `ip` is the caller's
/// address: fetching a metadata document counts against its registration allowance.
pub async fn find_registered(
    state: &OAuthState,
    client_id: &str,
    ip: Option<IpAddr>,
) -> OAuthResult<Option<OAuthClientRow>> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN {
        return Ok(None);
    }
    if client_id.starts_with("https://") {
        return crate::cimd::resolve(state, client_id, ip).await;
    }
    if !client_id.starts_with(tokens::DYNAMIC_CLIENT_PREFIX) {
        return Ok(None);
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let row = oauth_clients::find(&mut tx, client_id).await?;
    tx.commit().await?;
    Ok(row)
}

/// Client credentials as presented at the token, revocation or introspection endpoint.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    /// Presented with HTTP Basic (RFC 6749 §2.3.1).
    pub basic: bool,
    /// The caller's address (a metadata document fetch counts against its allowance).
    pub ip: Option<IpAddr>,
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Reads client credentials from `Authorization: Basic` or the form. Both at once is refused.
pub fn presented(
    req: &HttpRequest,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> OAuthResult<Presented> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")));
    if let Some(encoded) = basic {
        if form_secret.is_some() {
            return Err(OAuthError::InvalidRequest(
                "use one client authentication method, not both HTTP Basic and client_secret".into(),
            ));
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::InvalidClient {
                message: "malformed HTTP Basic credentials".into(),
                basic: true,
            })?;
        let (id, secret) = decoded.split_once(':').ok_or_else(|| OAuthError::InvalidClient {
            message: "malformed HTTP Basic credentials".into(),
            basic: true,
        })?;
        let (id, secret) = (form_decode(id), form_decode(secret));
        if form_client_id.is_some_and(|f| f != id) {
            return Err(OAuthError::InvalidRequest(
                "client_id differs from the HTTP Basic user".into(),
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            basic: true,
            ip: gatehouse_http::client_ip(req),
        });
    }
    let client_id = form_client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required (client_id)"))?;
    Ok(Presented {
        client_id: client_id.to_owned(),
        secret: form_secret.map(str::to_owned),
        basic: false,
        ip: gatehouse_http::client_ip(req),
    })
}

/// An authenticated client.
#[derive(Debug)]
pub enum Authenticated {
    /// A globally registered client (public, or confidential with a verified secret).
    Registered(Box<OAuthClientRow>),
    /// An org's service client (client credentials), verified.
    Service {
        org: OrgId,
        client: Box<ServiceClientRow>,
    },
}

impl Authenticated {
    pub fn client_id(&self) -> &str {
        match self {
            Authenticated::Registered(c) => &c.client_id,
            Authenticated::Service { client, .. } => &client.client_id,
        }
    }

    pub fn is_confidential(&self) -> bool {
        match self {
            Authenticated::Registered(c) => c.token_endpoint_auth_method != "none",
            Authenticated::Service { .. } => true,
        }
    }
}

fn secret_matches(secret: &str, hash: &[u8]) -> bool {
    constant_time_eq(&token_hash(secret), hash)
}

/// Authenticates the presented client: a public client must present no secret, a confidential
/// one its secret, by its registered method.
pub async fn authenticate(state: &OAuthState, p: &Presented) -> OAuthResult<Authenticated> {
    let fail = |message: &str| OAuthError::InvalidClient {
        message: message.to_owned(),
        basic: p.basic,
    };
    if let Some(org) = tokens::org_of(&p.client_id, tokens::SERVICE_CLIENT_PREFIX) {
        let secret = p
            .secret
            .as_deref()
            .ok_or_else(|| fail("this client must authenticate with its secret"))?;
        // The client id names the org; whether the client exists there is what we check next,
        // with nothing else readable.
        let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
        let client = oauth_service_clients::find_live_by_client_id(&mut tx, &p.client_id).await?;
        tx.commit().await?;
        let client = client.ok_or_else(|| fail("unknown client or wrong secret"))?;
        if !secret_matches(secret, &client.secret_hash) {
            return Err(fail("unknown client or wrong secret"));
        }
        return Ok(Authenticated::Service {
            org,
            client: Box::new(client),
        });
    }
    let client = find_registered(state, &p.client_id, p.ip)
        .await?
        .ok_or_else(|| fail("unknown client"))?;
    match (client.token_endpoint_auth_method.as_str(), p.secret.as_deref()) {
        ("none", None) => {}
        ("none", Some(_)) => return Err(fail("this is a public client; it has no secret")),
        (_, None) => return Err(fail("this client must authenticate with its secret")),
        (method, Some(secret)) => {
            let by_basic = method == "client_secret_basic";
            if by_basic != p.basic {
                return Err(fail(&format!("this client authenticates with {method}")));
            }
            let ok = client
                .client_secret_hash
                .as_deref()
                .is_some_and(|h| secret_matches(secret, h));
            if !ok {
                return Err(fail("unknown client or wrong secret"));
            }
        }
    }
    Ok(Authenticated::Registered(Box::new(client)))
}
