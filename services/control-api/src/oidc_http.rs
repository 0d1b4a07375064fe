//! The HTTP client for fetches of tenant-supplied OIDC URLs (discovery, JWKS, token endpoint),
//! shaped as the `openidconnect` crate's async client (an `Fn(HttpRequest) -> Future`).
//!
//! Every request goes through the SSRF guard (`gatehouse-egress`, `[egress]` settings): https
//! only unless `allow_http`, public destinations only unless `allow_private_networks` or
//! `allow_hosts`, names resolved once and connections pinned to the checked addresses. Redirects
//! are not followed at all (OAuth/OIDC endpoints must not redirect; following them is an SSRF
//! vector), and response bodies are read within `egress.max_document_bytes` and the timeout.

use std::time::Duration;

use gatehouse_core::config::EgressConfig;
use gatehouse_egress::{Egress, EgressError, ReadError, RedirectMode};

/// Why a fetch failed, in words safe to show to the admin who configured the provider.
#[derive(Debug, thiserror::Error)]
pub enum OidcHttpError {
    #[error("{0}")]
    Egress(#[from] EgressError),
    #[error("the response is too large")]
    TooLarge,
    #[error("the response could not be read")]
    Malformed,
}

#[derive(Clone, Debug)]
pub struct OidcHttp {
    egress: Egress,
    client: reqwest::Client,
}

impl OidcHttp {
    pub fn new(cfg: &EgressConfig) -> anyhow::Result<Self> {
        let egress = Egress::from_config(cfg)?;
        let client = egress
            .client_builder(RedirectMode::SameOrigin)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.request_timeout_ms.max(1)))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OIDC HTTP client: {e}"))?;
        Ok(Self { egress, client })
    }

    /// Checks a URL before anything is fetched (e.g. an issuer URL an admin submits).
    pub async fn check(&self, url: &url::Url) -> Result<(), EgressError> {
        self.egress.check_url(url).await
    }

    /// Performs one request under the guard.
    pub async fn execute(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, OidcHttpError> {
        let url = url::Url::parse(&request.uri().to_string()).map_err(|_| EgressError::InvalidUrl)?;
        self.egress.check_url_syntax(&url)?;
        let (parts, body) = request.into_parts();
        let mut outgoing = self.client.request(parts.method, url.as_str()).body(body);
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name, value);
        }
        let response = outgoing.send().await.map_err(|e| EgressError::from_reqwest(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.egress.read_document(response).await.map_err(|e| match e {
            ReadError::TooLarge { .. } => OidcHttpError::TooLarge,
            ReadError::Timeout => OidcHttpError::Egress(EgressError::Timeout),
            ReadError::Transport(e) => OidcHttpError::Egress(e),
        })?;
        let mut out = http::Response::builder().status(status);
        for (name, value) in &headers {
            out = out.header(name, value);
        }
        out.body(body.to_vec()).map_err(|_| OidcHttpError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(allow_http: bool, allow_private: bool) -> EgressConfig {
        EgressConfig {
            allow_http,
            allow_private_networks: allow_private,
            allow_hosts: vec![],
            request_timeout_ms: 1000,
            max_redirects: 3,
            max_document_bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn issuer_urls_pass_the_egress_guard() {
        let strict = OidcHttp::new(&cfg(false, false)).unwrap();
        for url in [
            "http://example.com/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest",
            "https://[::ffff:127.0.0.1]/",
            "https://localhost/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert!(strict.check(&parsed).await.is_err(), "{url} must be refused");
        }
        let local = OidcHttp::new(&cfg(true, true)).unwrap();
        assert!(
            local
                .check(&url::Url::parse("http://127.0.0.1:9/").unwrap())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn requests_to_refused_destinations_never_leave() {
        let strict = OidcHttp::new(&cfg(true, false)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let request = http::Request::builder()
            .uri(format!(
                "http://127.0.0.1:{port}/.well-known/openid-configuration"
            ))
            .body(Vec::new())
            .unwrap();
        let err = strict.execute(request).await.unwrap_err();
        assert!(
            matches!(err, OidcHttpError::Egress(EgressError::DestinationNotAllowed)),
            "{err:?}"
        );
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the guard let a connection through");
    }
}
