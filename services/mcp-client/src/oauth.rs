//! OAuth client-credentials tokens for upstreams that use them, cached per server until shortly
//! before they expire (one fetch at a time per server).
//!
//! Everything the token endpoint answers is the tenant's: its body is read within
//! `egress.max_document_bytes` and the timeout, and its `expires_in` (any JSON value) is clamped
//! to [`MAX_TOKEN_LIFETIME`] before any arithmetic. The cache is shared by every tenant's calls:
//! the expiry is computed before its lock is taken, and nothing done under it can panic.

use std::time::{Duration, Instant};

use gatehouse_core::sync::MutexExt;
use gatehouse_egress::EgressError;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{Client, Credential, Upstream, UpstreamError, refusal};

/// The longest a fetched token is cached, whatever `expires_in` says.
pub(super) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Assumed when the token endpoint says nothing (RFC 6749 makes `expires_in` optional).
const DEFAULT_LIFETIME_SECS: u64 = 300;
/// A token is dropped from the cache this long before the endpoint said it expires.
const EXPIRY_MARGIN_SECS: u64 = 30;

pub(super) struct OauthToken {
    /// Which credential the token was issued for ([`fingerprint`]): a server whose credential
    /// changed never gets the old one's token.
    fingerprint: u64,
    token: String,
    valid_until: Instant,
}

/// A fingerprint of a client-credentials credential (token endpoint, client, secret, scope), kept
/// in memory only.
fn fingerprint(credential: &Credential) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Credential::OauthClientCredentials {
        token_url,
        client_id,
        client_secret,
        scope,
    } = credential
    {
        (token_url, client_id, client_secret.expose_secret(), scope).hash(&mut hasher);
    }
    hasher.finish()
}

/// How long a token whose endpoint answered `expires_in` may be cached: the value (a number or
/// a numeric string, as endpoints send both), clamped to `[0, MAX_TOKEN_LIFETIME]`, minus the
/// margin, at least one second. Never overflows, whatever the value.
pub(super) fn token_lifetime(expires_in: Option<&Value>) -> Duration {
    let secs = match expires_in {
        None | Some(Value::Null) => Some(DEFAULT_LIFETIME_SECS),
        Some(Value::Number(n)) => n
            .as_u64()
            // Negative, fractional or huge: `as` saturates (NaN is not JSON).
            .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    }
    .unwrap_or(0);
    Duration::from_secs(
        secs.min(MAX_TOKEN_LIFETIME.as_secs())
            .saturating_sub(EXPIRY_MARGIN_SECS)
            .max(1),
    )
}

impl Client {
    /// An OAuth client-credentials token for `server`, cached until shortly before it expires.
    pub(super) async fn oauth_token(&self, upstream: &Upstream) -> Result<String, UpstreamError> {
        let Ok(credential) = &upstream.credential else {
            return Err(UpstreamError::Refused("upstream credential is unusable"));
        };
        let fingerprint = fingerprint(credential);
        let cached = || {
            self.inner
                .oauth
                .lock_or_recover()
                .get(&upstream.id)
                .filter(|t| t.fingerprint == fingerprint && t.valid_until > Instant::now())
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
            .lock_or_recover()
            .entry(upstream.id)
            .or_default()
            .clone();
        let _one = gate.lock().await;
        if let Some(token) = cached() {
            return Ok(token);
        }
        let Credential::OauthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } = credential
        else {
            return Err(UpstreamError::Refused("upstream credential is unusable"));
        };
        let url = url::Url::parse(token_url).map_err(|_| UpstreamError::Refused("token URL is invalid"))?;
        self.inner.egress.check_url_syntax(&url).map_err(refusal)?;
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(scope) = scope {
            form.push(("scope", scope.clone()));
        }
        let failed = |why: String| UpstreamError::TokenEndpoint(why);
        // RFC 6749 §2.3.1: the client id and secret are form-urlencoded before Basic encoding.
        let response = self
            .http
            .post(url)
            .basic_auth(
                form_urlencode(client_id),
                Some(form_urlencode(client_secret.expose_secret())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .timeout(self.inner.timeout)
            .send()
            .await
            .map_err(|e| failed(format!("could not be reached: {}", EgressError::from_reqwest(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!(
                "refused the client credentials (HTTP {})",
                status.as_u16()
            )));
        }
        let body = self
            .inner
            .egress
            .read_document(response)
            .await
            .map_err(|e| failed(format!("answer could not be read: {e}")))?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            token_type: Option<String>,
            #[serde(default)]
            expires_in: Option<Value>,
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .ok()
            .filter(|t: &TokenResponse| !t.access_token.is_empty())
            .ok_or_else(|| failed("answered without an access token".into()))?;
        if let Some(kind) = &token.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(failed(format!(
                "issued a {kind:?} token; only Bearer tokens are supported"
            )));
        }
        let now = Instant::now();
        let valid_until = now
            .checked_add(token_lifetime(token.expires_in.as_ref()))
            .unwrap_or(now);
        self.inner.oauth.lock_or_recover().insert(
            upstream.id,
            OauthToken {
                fingerprint,
                token: token.access_token.clone(),
                valid_until,
            },
        );
        Ok(token.access_token)
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
fn form_urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_expires_in_gives_a_bounded_lifetime() {
        let secs = |v: Option<Value>| token_lifetime(v.as_ref()).as_secs();
        assert_eq!(secs(None), 270);
        assert_eq!(secs(Some(json!(3600))), 3570);
        assert_eq!(secs(Some(json!("3600"))), 3570);
        let max = MAX_TOKEN_LIFETIME.as_secs() - EXPIRY_MARGIN_SECS;
        for absurd in [
            json!(u64::MAX),
            json!(18446744073709551615u64),
            json!(1e300),
            json!("18446744073709551615"),
        ] {
            assert_eq!(secs(Some(absurd.clone())), max, "{absurd}");
        }
        for tiny in [
            json!(0),
            json!(-5),
            json!(-1e300),
            json!(0.5),
            json!("soon"),
            json!([1]),
            json!(10),
        ] {
            assert_eq!(secs(Some(tiny.clone())), 1, "{tiny}");
        }
        // Whatever the lifetime, adding it to now cannot overflow.
        assert!(
            Instant::now()
                .checked_add(token_lifetime(Some(&json!(u64::MAX))))
                .is_some()
        );
    }
}
