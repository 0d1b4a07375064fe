//! OAuth client-credentials tokens for upstreams that use them, cached per server until shortly
//! before they expire (one fetch at a time per server).

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use crate::store::{ServerState, UpstreamCredential};

use super::{UpstreamError, Upstreams, classify, refusal};

pub(super) struct OauthToken {
    token: String,
    valid_until: Instant,
}

impl Upstreams {
    /// An OAuth client-credentials token for `server`, cached until shortly before it expires.
    pub(super) async fn oauth_token(&self, server: &ServerState) -> Result<String, UpstreamError> {
        let cached = || {
            self.inner
                .oauth
                .lock()
                .expect("oauth cache")
                .get(&server.snapshot.id)
                .filter(|t| t.valid_until > Instant::now())
                .map(|t| t.token.clone())
        };
        if let Some(token) = cached() {
            return Ok(token);
        }
        // One fetch per server at a time: concurrent requests wait for it instead of each
        // asking the token endpoint.
        let gate = self
            .inner
            .oauth_fetch
            .lock()
            .expect("oauth fetch gates")
            .entry(server.snapshot.id)
            .or_default()
            .clone();
        let _one = gate.lock().await;
        if let Some(token) = cached() {
            return Ok(token);
        }
        let Ok(UpstreamCredential::OauthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        }) = &server.credential
        else {
            return Err(UpstreamError::Refused("upstream credential is unusable"));
        };
        let url = url::Url::parse(token_url).map_err(|_| UpstreamError::Refused("token URL is invalid"))?;
        self.inner.egress.check_url_syntax(&url).map_err(refusal)?;
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(scope) = scope {
            form.push(("scope", scope.clone()));
        }
        let response = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret.expose_secret()))
            .form(&form)
            .timeout(self.inner.timeout)
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("token endpoint: {}", classify(&e))))?;
        if !response.status().is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "token endpoint answered {}",
                response.status().as_u16()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|_| UpstreamError::Unavailable("token endpoint sent no token".into()))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300).saturating_sub(30).max(1));
        self.inner.oauth.lock().expect("oauth cache").insert(
            server.snapshot.id,
            OauthToken {
                token: token.access_token.clone(),
                valid_until: Instant::now() + lifetime,
            },
        );
        Ok(token.access_token)
    }
}
