//! Client ID Metadata Documents: a client whose id is an https URL publishes its metadata there.
//! The document is fetched through the SSRF guard, validated (its `client_id` must be the URL),
//! and cached in `oauth_clients` for as long as its HTTP caching headers allow (within bounds).

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header;
use serde::Deserialize;
use time::OffsetDateTime;

use gatehouse_db::GlobalTx;
use gatehouse_db::repos::oauth_clients::{self, NewOAuthClient, OAuthClientRow};

use crate::OAuthState;
use crate::error::OAuthResult;
use crate::redirect::{self, AppType};

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Cache lifetime bounds: at least a minute (a client that says `no-store` is not refetched on
/// every request of one login), at most a day.
pub const MIN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime when the document says nothing.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Builds the HTTP client for metadata documents: the SSRF guard's, with no redirects (the
/// document must live at its client id) and the configured extra CA certificates.
pub fn http_client(cfg: &gatehouse_core::Config) -> anyhow::Result<reqwest::Client> {
    let egress = gatehouse_egress::Egress::from_config(&cfg.egress)?;
    let mut builder = egress
        .client_builder(gatehouse_egress::RedirectMode::SameOrigin)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(cfg.egress.request_timeout_ms.max(1)));
    let ca_file = &cfg.oauth.metadata_document_ca_file;
    if !ca_file.as_os_str().is_empty() {
        let pem = std::fs::read(ca_file).map_err(|e| {
            gatehouse_core::ConfigError::new(
                "oauth.metadata_document_ca_file",
                format!("cannot read {}: {e}", ca_file.display()),
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
            gatehouse_core::ConfigError::new(
                "oauth.metadata_document_ca_file",
                "is not a PEM bundle of certificates",
            )
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder.build()?)
}

/// Whether `client_id` has the form of a metadata document URL: https, a host, a path other than
/// `/`, no fragment, no user information, no dot segments.
pub fn is_document_url(client_id: &str) -> bool {
    let Ok(url) = url::Url::parse(client_id) else {
        return false;
    };
    url.scheme() == "https"
        && url.host_str().is_some()
        && url.path() != "/"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && url.as_str() == client_id
        && !client_id.contains("/./")
        && !client_id.contains("/../")
}

#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    application_type: Option<String>,
    client_secret: Option<serde_json::Value>,
    client_secret_expires_at: Option<serde_json::Value>,
}

/// Validates a fetched document for `url`.
fn validate(url: &str, body: &[u8]) -> Result<NewOAuthClient, String> {
    let raw: serde_json::Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_owned())?;
    let doc: Document =
        serde_json::from_value(raw.clone()).map_err(|e| format!("not client metadata: {e}"))?;
    if doc.client_id != url {
        return Err("its client_id is not the URL it was fetched from".into());
    }
    if doc.client_secret.is_some() || doc.client_secret_expires_at.is_some() {
        return Err("a metadata document must not carry a client secret".into());
    }
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(format!(
                "token_endpoint_auth_method {other} is not supported (none)"
            ));
        }
    }
    let grant_types = doc
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if grant_types
        .iter()
        .any(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err("grant_types may only be authorization_code and refresh_token".into());
    }
    let response_types = doc.response_types.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err("response_types may only be code".into());
    }
    if doc.redirect_uris.is_empty() || doc.redirect_uris.len() > 10 {
        return Err("redirect_uris must list 1 to 10 URIs".into());
    }
    let app = match doc.application_type.as_deref() {
        Some(s) => AppType::parse(s).ok_or("application_type must be web or native")?,
        None if redirect::looks_native(&doc.redirect_uris) => AppType::Native,
        None => AppType::Web,
    };
    for uri in &doc.redirect_uris {
        redirect::validate(uri, app).map_err(|why| format!("redirect URI {uri}: {why}"))?;
    }
    if let Some(name) = &doc.client_name
        && (name.chars().count() > 200 || name.chars().any(char::is_control))
    {
        return Err("client_name must be at most 200 printable characters".into());
    }
    let https = |v: &Option<String>| {
        v.as_deref()
            .is_none_or(|u| url::Url::parse(u).is_ok_and(|u| u.scheme() == "https"))
    };
    if !https(&doc.client_uri) || !https(&doc.logo_uri) {
        return Err("client_uri and logo_uri must be https URLs".into());
    }
    Ok(NewOAuthClient {
        client_id: doc.client_id,
        registration_type: "metadata_document",
        client_name: doc.client_name,
        client_uri: doc.client_uri,
        logo_uri: doc.logo_uri,
        redirect_uris: doc.redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: "none".into(),
        application_type: app.as_str().into(),
        client_secret_hash: None,
        metadata: raw,
        document_fetched_at: None,
        document_expires_at: None,
        document_etag: None,
    })
}

/// How long a response may be cached: `Cache-Control: max-age` (or `no-store`/`no-cache`:
/// the minimum), else `Expires`, else the default; within bounds.
pub fn cache_ttl(headers: &reqwest::header::HeaderMap) -> Duration {
    let ttl = if let Some(cc) = headers
        .get(header::CACHE_CONTROL.as_str())
        .and_then(|v| v.to_str().ok())
    {
        let directives: Vec<String> = cc.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
        if directives.iter().any(|d| d == "no-store" || d == "no-cache") {
            Some(MIN_TTL)
        } else {
            directives
                .iter()
                .find_map(|d| d.strip_prefix("max-age=").and_then(|v| v.parse::<u64>().ok()))
                .map(Duration::from_secs)
        }
    } else {
        None
    };
    let ttl = ttl.or_else(|| {
        let expires = headers.get(header::EXPIRES.as_str())?.to_str().ok()?;
        let at = OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc2822).ok()?;
        let secs = (at - OffsetDateTime::now_utc()).whole_seconds();
        Some(Duration::from_secs(secs.max(0) as u64))
    });
    ttl.unwrap_or(DEFAULT_TTL).clamp(MIN_TTL, MAX_TTL)
}

/// The client named by a metadata document URL, from the cache or freshly fetched. `None` when
/// the URL is not acceptable, the document cannot be fetched, or it is not valid (logged). A fetch
/// counts against the registration allowance of the caller's IP, `ip`
/// ([`crate::register::admit_registration`]); a cached document does not.
pub async fn resolve(
    state: &OAuthState,
    client_id: &str,
    ip: Option<IpAddr>,
) -> OAuthResult<Option<OAuthClientRow>> {
    if !is_document_url(client_id) {
        return Ok(None);
    }
    let mut tx = GlobalTx::begin(&state.db).await?;
    let cached = oauth_clients::find(&mut tx, client_id).await?;
    tx.commit().await?;
    let cached = cached.filter(|c| c.registration_type == "metadata_document");
    let now = OffsetDateTime::now_utc();
    if let Some(c) = &cached
        && c.document_expires_at.is_some_and(|e| e > now)
    {
        return Ok(cached);
    }
    crate::register::admit_registration(state, ip).await?;
    match fetch(
        state,
        client_id,
        cached.as_ref().and_then(|c| c.document_etag.as_deref()),
    )
    .await
    {
        Ok(Fetched::NotModified(ttl)) => {
            let mut tx = GlobalTx::begin(&state.db).await?;
            oauth_clients::touch_document(&mut tx, client_id, now, now + ttl).await?;
            tx.commit().await?;
            Ok(cached)
        }
        Ok(Fetched::Document(mut client, ttl)) => {
            client.document_fetched_at = Some(now);
            client.document_expires_at = Some(now + ttl);
            let mut tx = GlobalTx::begin(&state.db).await?;
            let row = oauth_clients::upsert(&mut tx, &client).await?;
            tx.commit().await?;
            tracing::info!(client_id, client_name = ?row.client_name, redirect_uris = ?row.redirect_uris, "oauth.client_metadata_document_fetched");
            Ok(Some(row))
        }
        Err(why) => {
            tracing::warn!(client_id, reason = %why, "client metadata document refused");
            Ok(None)
        }
    }
}

enum Fetched {
    Document(Box<NewOAuthClient>, Duration),
    NotModified(Duration),
}

async fn fetch(state: &OAuthState, url: &str, etag: Option<&str>) -> Result<Fetched, String> {
    let mut req = state
        .metadata_http
        .get(url)
        .header(header::ACCEPT.as_str(), "application/json");
    if let Some(etag) = etag {
        req = req.header(header::IF_NONE_MATCH.as_str(), etag);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| gatehouse_egress::EgressError::from_reqwest(&e).to_string())?;
    let ttl = cache_ttl(resp.headers());
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(Fetched::NotModified(ttl));
    }
    if !resp.status().is_success() {
        return Err(format!("the document answered HTTP {}", resp.status().as_u16()));
    }
    let new_etag = resp
        .headers()
        .get(header::ETAG.as_str())
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .map(str::to_owned);
    let limit = MAX_DOCUMENT_BYTES.min(state.cfg.egress.max_document_bytes);
    let deadline = Duration::from_millis(state.cfg.egress.request_timeout_ms.max(1));
    let body = gatehouse_egress::read_body(resp, limit, deadline)
        .await
        .map_err(|e| match e {
            gatehouse_egress::ReadError::TooLarge { .. } => {
                format!("the document is larger than {limit} bytes")
            }
            _ => "the document could not be read".to_owned(),
        })?;
    let mut client = validate(url, &body)?;
    client.document_etag = new_etag;
    Ok(Fetched::Document(Box::new(client), ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://app.example/oauth/client.json";

    fn doc(extra: serde_json::Value) -> Vec<u8> {
        let mut d = serde_json::json!({"client_id": URL, "client_name": "App", "redirect_uris": ["http://127.0.0.1/cb"]});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&d).unwrap()
    }

    #[test]
    fn documents_are_validated() {
        assert!(validate(URL, &doc(serde_json::json!({}))).is_ok());
        assert!(validate("https://other.example/c.json", &doc(serde_json::json!({}))).is_err());
        assert!(validate(URL, &doc(serde_json::json!({"client_secret": "s"}))).is_err());
        assert!(
            validate(
                URL,
                &doc(serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"}))
            )
            .is_err()
        );
        assert!(validate(URL, &doc(serde_json::json!({"redirect_uris": []}))).is_err());
        assert!(
            validate(
                URL,
                &doc(serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}))
            )
            .is_err()
        );
        assert!(
            validate(
                URL,
                &doc(serde_json::json!({"grant_types": ["client_credentials"]}))
            )
            .is_err()
        );
        assert!(validate(URL, b"not json").is_err());
    }

    #[test]
    fn document_urls() {
        assert!(is_document_url(URL));
        for bad in [
            "http://app.example/c.json",
            "https://app.example/",
            "https://app.example",
            "https://u@app.example/c",
            "https://app.example/c#f",
            "https://app.example/a/../c",
        ] {
            assert!(!is_document_url(bad), "{bad}");
        }
    }

    #[test]
    fn cache_lifetimes() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(cache_ttl(&h), DEFAULT_TTL);
        h.insert("cache-control", "public, max-age=600".parse().unwrap());
        assert_eq!(cache_ttl(&h), Duration::from_secs(600));
        h.insert("cache-control", "no-store".parse().unwrap());
        assert_eq!(cache_ttl(&h), MIN_TTL);
        h.insert("cache-control", "max-age=99999999".parse().unwrap());
        assert_eq!(cache_ttl(&h), MAX_TTL);
    }
}
