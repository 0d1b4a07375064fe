//! The headers of a request to an upstream, built from scratch: the protocol revision and
//! session, the server's own credential and, if the server wants one and a caller is named, a
//! caller assertion. Nothing a client sent is copied.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use super::{Caller, Client, Credential, Upstream, UpstreamError};

impl Client {
    pub(super) async fn headers_for(
        &self,
        upstream: &Upstream,
        protocol_version: Option<&str>,
        session_id: Option<&str>,
        caller: Option<Caller<'_>>,
    ) -> Result<HeaderMap, UpstreamError> {
        let unusable = || UpstreamError::Refused("upstream credential is unusable");
        let mut headers = HeaderMap::new();
        if let Some(v) = protocol_version.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert("mcp-protocol-version", v);
        }
        if let Some(s) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert("mcp-session-id", s);
        }
        match upstream.credential.as_ref().map_err(|_| unusable())? {
            Credential::None => {}
            Credential::Bearer(token) => {
                let value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| unusable())?;
                headers.insert(reqwest::header::AUTHORIZATION, sensitive(value));
            }
            Credential::Header { name, value } => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unusable())?;
                let value = HeaderValue::from_str(value.expose_secret()).map_err(|_| unusable())?;
                headers.insert(name, sensitive(value));
            }
            Credential::OauthClientCredentials { .. } => {
                let token = self.oauth_token(upstream).await?;
                let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unusable())?;
                headers.insert(reqwest::header::AUTHORIZATION, sensitive(value));
            }
        }
        if upstream.send_caller_assertion
            && let Some(caller) = caller
            && let Some(signer) = &self.inner.assertion
            && let Some((name, value)) = signer.assertion(&upstream.url, &caller)
        {
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}
