//! Who is calling: bearer tokens verified locally.
//!
//! - Access tokens are JWTs from Gatehouse's authorization server (`typ: at+jwt`, EdDSA or ES256,
//!   `kid` from the control API's JWKS), bound to one endpoint by `aud` = its resource URL.
//!   Verified tokens are cached by the SHA-256 of the token until they expire; revocations in the
//!   org's snapshot are checked on every request, cached or not.
//! - Service tokens (`ghs_<org id hex>_<secret>`) are looked up by their SHA-256 in the org's
//!   snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use gatehouse_core::snapshot::RevocationKind;
use gatehouse_core::sync::{MutexExt, RwLockExt};
use gatehouse_events::SubjectKind;

use crate::store::{EndpointState, OrgState};

/// How long a token may be early or late against our clock.
const CLOCK_LEEWAY_SECS: u64 = 30;
/// An unknown `kid` refreshes the JWKS at most this often.
const JWKS_REFRESH_MIN: Duration = Duration::from_secs(60);
/// Bound on cached verified tokens; the cache is cleared when full (tokens are short-lived).
const TOKEN_CACHE_MAX: usize = 100_000;
const SERVICE_TOKEN_PREFIX: &str = "ghs_";

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Stable subject: the user id, `client:<client_id>` or `service_token:<id>`.
    pub subject: String,
    pub kind: SubjectKind,
    pub client_id: Option<String>,
    pub scopes: HashSet<String>,
    /// Until when the credential is valid (unix seconds), if it expires.
    pub expires_at: Option<u64>,
}

/// Why a bearer token was refused. The text goes into `error_description`, so it must not echo
/// the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("{0}")]
    Invalid(&'static str),
    /// A service token of the org whose hash its snapshot does not hold: revoked, or created
    /// after the snapshot was taken.
    #[error("unknown or expired service token")]
    UnknownServiceToken,
}

impl TokenError {
    /// What the `WWW-Authenticate` challenge says of it (`error_description`).
    pub fn description(&self) -> Option<&'static str> {
        match self {
            TokenError::Missing => None,
            TokenError::Invalid(why) => Some(why),
            TokenError::UnknownServiceToken => Some("unknown or expired service token"),
        }
    }
}

/// The claims of a Gatehouse access token.
#[derive(Clone, Debug, Deserialize)]
struct AccessClaims {
    sub: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    org_id: String,
    endpoint_id: String,
    #[serde(default)]
    jti: Option<String>,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    gh_kind: Option<String>,
}

/// A verified access token: its claims (revocations are checked against them on every request)
/// and the caller they describe, built once when the token is first seen.
#[derive(Clone)]
struct CachedToken {
    claims: Arc<AccessClaims>,
    principal: Arc<Principal>,
    audience: Arc<str>,
}

/// Verifies access tokens against the control API's JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    issuer: String,
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    last_fetch: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    cache: RwLock<HashMap<[u8; 32], CachedToken>>,
}

impl TokenVerifier {
    pub fn new(issuer: String, jwks_url: String, http: reqwest::Client) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                issuer,
                jwks_url,
                http,
                keys: RwLock::new(HashMap::new()),
                last_fetch: Mutex::new(None),
                fetch_lock: tokio::sync::Mutex::new(()),
                cache: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Authenticates the bearer `token` for `endpoint` of `org`.
    pub async fn authenticate(
        &self,
        token: &str,
        org: &OrgState,
        endpoint: &EndpointState,
    ) -> Result<Arc<Principal>, TokenError> {
        if let Some(rest) = token.strip_prefix(SERVICE_TOKEN_PREFIX) {
            return service_token(rest, token, org, endpoint).map(Arc::new);
        }
        let CachedToken {
            claims, principal, ..
        } = self.verify_jwt(token, &endpoint.snapshot.resource_url).await?;
        if !same_id(&claims.org_id, org.snapshot.org_id.as_uuid())
            || !same_id(&claims.endpoint_id, endpoint.id().as_uuid())
        {
            return Err(TokenError::Invalid("token was issued for another endpoint"));
        }
        let kind = principal.kind;
        let revoked = claims
            .jti
            .as_deref()
            .is_some_and(|j| org.is_revoked(RevocationKind::Jti, j))
            || claims
                .sid
                .as_deref()
                .is_some_and(|s| org.is_revoked(RevocationKind::Family, s))
            || claims
                .client_id
                .as_deref()
                .is_some_and(|c| org.is_revoked(RevocationKind::Client, c))
            || (kind == SubjectKind::User && org.revokes(RevocationKind::User, &claims.sub, claims.iat));
        if revoked {
            self.forget(token);
            return Err(TokenError::Invalid("token has been revoked"));
        }
        Ok(principal)
    }

    fn forget(&self, token: &str) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.inner.cache.write_or_recover().remove(&key);
    }

    async fn verify_jwt(&self, token: &str, audience: &str) -> Result<CachedToken, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.inner.cache.read_or_recover().get(&key).cloned() {
            if hit.claims.exp + CLOCK_LEEWAY_SECS > now && &*hit.audience == audience {
                return Ok(hit);
            }
            if hit.claims.exp + CLOCK_LEEWAY_SECS <= now {
                return Err(TokenError::Invalid("token has expired"));
            }
            return Err(TokenError::Invalid("token was issued for another resource"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("malformed token"))?;
        match header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("at+jwt") | Some("application/at+jwt") => {}
            _ => return Err(TokenError::Invalid("not an access token (typ must be at+jwt)")),
        }
        if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256) {
            return Err(TokenError::Invalid("unsupported signing algorithm"));
        }
        let kid = header.kid.ok_or(TokenError::Invalid("token has no key id"))?;
        let (decoding_key, key_alg) = self.key(&kid).await?;
        if key_alg != header.alg {
            return Err(TokenError::Invalid("signing algorithm does not match the key"));
        }
        let mut validation = Validation::new(key_alg);
        validation.leeway = CLOCK_LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[audience]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &decoding_key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            TokenError::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "token has expired",
                ErrorKind::ImmatureSignature => "token is not valid yet",
                ErrorKind::InvalidIssuer => "token was issued by another authorization server",
                ErrorKind::InvalidAudience => "token was issued for another resource",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                _ => "token is invalid",
            })
        })?;
        let verified = CachedToken {
            principal: Arc::new(principal_of(&data.claims)),
            claims: Arc::new(data.claims),
            audience: audience.into(),
        };
        let mut cache = self.inner.cache.write_or_recover();
        if cache.len() >= TOKEN_CACHE_MAX {
            cache.retain(|_, t| t.claims.exp + CLOCK_LEEWAY_SECS > now);
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, verified.clone());
        Ok(verified)
    }

    /// The key for `kid`, fetching the JWKS when it is unknown (at most once a minute).
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), TokenError> {
        if let Some(found) = self.inner.keys.read_or_recover().get(kid).cloned() {
            return Ok(found);
        }
        let _one_fetch = self.inner.fetch_lock.lock().await;
        if let Some(found) = self.inner.keys.read_or_recover().get(kid).cloned() {
            return Ok(found);
        }
        let may_fetch = self
            .inner
            .last_fetch
            .lock_or_recover()
            .is_none_or(|t| t.elapsed() >= JWKS_REFRESH_MIN);
        if may_fetch {
            *self.inner.last_fetch.lock_or_recover() = Some(Instant::now());
            match self.fetch_jwks().await {
                Ok(keys) => *self.inner.keys.write_or_recover() = keys,
                Err(e) => tracing::warn!(error = %e, "could not fetch the JWKS"),
            }
        }
        self.inner
            .keys
            .read_or_recover()
            .get(kid)
            .cloned()
            .ok_or(TokenError::Invalid("token signed with an unknown key"))
    }

    async fn fetch_jwks(&self) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let set: JwkSet = self
            .inner
            .http
            .get(&self.inner.jwks_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                AlgorithmParameters::EllipticCurve(ec)
                    if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                // Symmetric and RSA keys are never ours: ignoring them keeps HS256-with-the-public-key
                // and similar confusions impossible.
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        Ok(keys)
    }
}

/// The caller an access token's claims describe.
fn principal_of(claims: &AccessClaims) -> Principal {
    Principal {
        subject: claims.sub.clone(),
        kind: match claims.gh_kind.as_deref() {
            Some("client") => SubjectKind::OauthClient,
            _ => SubjectKind::User,
        },
        client_id: claims.client_id.clone(),
        scopes: claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect(),
        expires_at: Some(claims.exp),
    }
}

/// Whether a token's id claim names `id` (ids are issued in their canonical text form).
fn same_id(claim: &str, id: &uuid::Uuid) -> bool {
    claim == id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())
}

fn service_token(
    rest: &str,
    token: &str,
    org: &OrgState,
    endpoint: &EndpointState,
) -> Result<Principal, TokenError> {
    let invalid = TokenError::Invalid("unknown or expired service token");
    let (org_hex, _secret) = rest
        .split_once('_')
        .ok_or(TokenError::Invalid("malformed service token"))?;
    if org_hex.len() != 32
        || !org_hex.eq_ignore_ascii_case(&org.snapshot.org_id.as_uuid().simple().to_string())
    {
        return Err(invalid);
    }
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let found = org.service_token(&hash).ok_or(TokenError::UnknownServiceToken)?;
    if found.endpoint_id != endpoint.id() {
        return Err(TokenError::Invalid("unknown or expired service token"));
    }
    if found
        .expires_at
        .is_some_and(|at| at <= time::OffsetDateTime::now_utc())
    {
        return Err(TokenError::Invalid("unknown or expired service token"));
    }
    Ok(Principal {
        subject: format!("service_token:{}", found.id),
        kind: SubjectKind::ServiceToken,
        client_id: None,
        scopes: found.scopes.iter().cloned().collect(),
        expires_at: found.expires_at.map(|t| t.unix_timestamp().max(0) as u64),
    })
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
    let value = header.ok_or(TokenError::Missing)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(TokenError::Invalid("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token)
}
