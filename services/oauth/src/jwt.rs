//! Access tokens: RFC 9068 JWTs. [`AccessTokenClaims`] is the contract with the dataplane, which
//! validates them locally against the published JWKS.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The JWT `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Whose token it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A person, through an OAuth client (authorization code); `sub` is the user id.
    User,
    /// A service client (client credentials); `sub` is its client id.
    Client,
}

/// The claims of every access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// `Config::issuer()`.
    pub iss: String,
    /// The user id, or the service client's client id.
    pub sub: String,
    /// The endpoint's resource URL, exactly (`Config::endpoint_url`).
    pub aud: String,
    pub client_id: String,
    /// Granted scopes, space-separated (may be empty).
    pub scope: String,
    pub org_id: String,
    pub endpoint_id: String,
    /// UUIDv7.
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The refresh-token family (grant) the token belongs to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub gh_kind: SubjectKind,
}

impl AccessTokenClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("token type is not at+jwt")]
    WrongType,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("no kid, or a kid not in the JWKS")]
    UnknownKey,
    #[error("signature, issuer, audience or lifetime check failed: {0}")]
    Invalid(String),
}

/// Verifies access tokens against a JWKS, the way a resource server must: only the algorithms of
/// the published keys, `typ` = `at+jwt`, known `kid`, signature, `iss`, exact `aud`, `exp` and
/// `nbf` with leeway. Used by the introspection endpoint and by tests; the dataplane has its own.
pub struct AccessTokenVerifier {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    issuer: String,
    pub leeway_secs: u64,
}

impl AccessTokenVerifier {
    pub fn new(jwks: &JwkSet, issuer: &str) -> Self {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), jwk.common.key_algorithm) else {
                continue;
            };
            let alg = match alg {
                jsonwebtoken::jwk::KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                jsonwebtoken::jwk::KeyAlgorithm::ES256 => Algorithm::ES256,
                // Nothing else is ever published; never accept it.
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, key));
            }
        }
        Self {
            keys,
            issuer: issuer.to_owned(),
            leeway_secs: 30,
        }
    }

    /// Verifies `token` for `audience` (`None`: any audience, for introspection).
    pub fn verify(&self, token: &str, audience: Option<&str>) -> Result<AccessTokenClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let (alg, key) = self.keys.get(kid).ok_or(VerifyError::UnknownKey)?;
        // The key decides the algorithm, never the token.
        if header.alg != *alg {
            return Err(VerifyError::Algorithm);
        }
        let mut validation = Validation::new(*alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessTokenClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))
    }
}
