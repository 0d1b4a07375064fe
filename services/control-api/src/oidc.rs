//! OpenID Connect relying party for org SSO: discovery, authorization code + PKCE (S256) with a
//! nonce, and ID token validation (signature against the provider's JWKS, issuer, audience,
//! expiry, nonce) by the `openidconnect` crate. All HTTP goes through [`OidcHttp`].

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::oidc_http::OidcHttp;

/// Why an OIDC step failed. Messages are safe to show to the user (no secrets, no tokens).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the issuer URL is not valid")]
    InvalidIssuer,
    #[error("the identity provider could not be reached or its discovery document is invalid: {0}")]
    Discovery(String),
    #[error("the identity provider refused the authorization code: {0}")]
    Exchange(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the ID token was rejected: {0}")]
    InvalidIdToken(String),
}

/// A provider's relying-party client, built from fresh discovery.
pub struct Provider {
    client: openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
}

/// What must be remembered between leaving for the provider and coming back.
pub struct AuthorizationStart {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The identity a validated ID token asserts.
#[derive(Clone, Debug)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl Provider {
    /// Discovers the provider at `issuer_url` (the metadata's `issuer` must equal it).
    pub async fn discover(
        http: &OidcHttp,
        issuer_url: &str,
        client_id: &str,
        client_secret: &str,
        redirect_url: &str,
    ) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(issuer_url.to_owned()).map_err(|_| OidcError::InvalidIssuer)?;
        let fetch = |req| http.execute(req);
        let metadata = CoreProviderMetadata::discover_async(issuer, &fetch)
            .await
            .map_err(|e| OidcError::Discovery(describe(&e)))?;
        let redirect = RedirectUrl::new(redirect_url.to_owned())
            .map_err(|_| OidcError::Discovery("invalid redirect URL".into()))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_owned()),
            Some(ClientSecret::new(client_secret.to_owned())),
        )
        .set_redirect_uri(redirect);
        Ok(Self { client })
    }

    /// The authorization request (code flow, PKCE S256, random state and nonce).
    pub fn authorize(&self) -> AuthorizationStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        AuthorizationStart {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// Redeems `code` and validates the ID token against `nonce`.
    pub async fn finish(
        &self,
        http: &OidcHttp,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity, OidcError> {
        let fetch = |req| http.execute(req);
        let request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| OidcError::Discovery("the provider has no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let response = request
            .request_async(&fetch)
            .await
            .map_err(|e| OidcError::Exchange(describe(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let verifier = self.client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
        Ok(VerifiedIdentity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        })
    }
}

/// An error and its causes on one line (the crate's top-level messages are terse).
fn describe(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
