//! The headers of a request to an upstream, built from scratch: the MCP headers the dataplane
//! decided on, the server's own credential and, if configured, a caller assertion. Nothing the
//! client sent is copied.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use crate::assertion::{self, AssertionSigner, CallerClaims};
use crate::store::{ServerState, UpstreamCredential};

use super::{Caller, UpstreamError, Upstreams};

impl Upstreams {
    pub(super) async fn headers_for(
        &self,
        server: &ServerState,
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
        match server.credential.as_ref().map_err(|_| unusable())? {
            UpstreamCredential::None => {}
            UpstreamCredential::Bearer(token) => {
                let value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| unusable())?;
                headers.insert(reqwest::header::AUTHORIZATION, sensitive(value));
            }
            UpstreamCredential::Header { name, value } => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unusable())?;
                let value = HeaderValue::from_str(value.expose_secret()).map_err(|_| unusable())?;
                headers.insert(name, sensitive(value));
            }
            UpstreamCredential::OauthClientCredentials { .. } => {
                let token = self.oauth_token(server).await?;
                let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unusable())?;
                headers.insert(reqwest::header::AUTHORIZATION, sensitive(value));
            }
        }
        if server.snapshot.send_caller_assertion
            && let Some(caller) = caller
        {
            let sub_kind = match caller.principal.kind {
                gatehouse_events::SubjectKind::User => "user",
                gatehouse_events::SubjectKind::ServiceToken => "service_token",
                gatehouse_events::SubjectKind::OauthClient => "client",
                gatehouse_events::SubjectKind::Anonymous => "anonymous",
            };
            let (iat, exp) = AssertionSigner::times();
            let jwt = self.inner.signer.sign(&CallerClaims {
                iss: self.inner.signer.issuer(),
                aud: &server.snapshot.url,
                sub: &caller.principal.subject,
                sub_kind,
                org_id: caller.org.to_string(),
                endpoint_id: caller.endpoint.to_string(),
                client_id: caller.principal.client_id.as_deref(),
                iat,
                exp,
                jti: uuid::Uuid::now_v7().to_string(),
            });
            if let Ok(v) = HeaderValue::from_str(&jwt) {
                headers.insert(assertion::HEADER, v);
            }
        }
        Ok(headers)
    }
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}
