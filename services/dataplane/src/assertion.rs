//! Caller assertions: a short-lived JWT Gatehouse signs for upstreams that want to know who is
//! calling (`send_caller_assertion`). It travels in the `Gatehouse-Caller-Assertion` header, never
//! the caller's own token.
//!
//! How an upstream verifies one (see docs/dataplane.md):
//! 1. fetch `{dataplane public URL}/.well-known/gatehouse/caller-assertion-jwks.json` (cache it);
//! 2. verify the EdDSA signature with the key named by `kid`, `typ` = `gatehouse-caller+jwt`;
//! 3. check `iss` = the dataplane public URL, `aud` = the upstream's own registered URL, `exp`
//!    (60 s lifetime) and, for replay protection, remember `jti` until `exp`;
//! 4. read `org_id`, `endpoint_id`, `sub`, `sub_kind` and `client_id`.
//!
//! The signing key is an Ed25519 key derived once from the dataplane secret, so every replica signs
//! with the same key and a rotation of the dataplane secret rotates it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const HEADER: &str = "gatehouse-caller-assertion";
pub const JWKS_PATH: &str = "/.well-known/gatehouse/caller-assertion-jwks.json";
pub const TYP: &str = "gatehouse-caller+jwt";
const LIFETIME: Duration = Duration::from_secs(60);

/// PKCS#8 v1 prefix of a bare Ed25519 private key (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Clone)]
pub struct AssertionSigner {
    inner: Arc<Inner>,
}

struct Inner {
    key: EncodingKey,
    kid: String,
    issuer: String,
    jwks: JwkSet,
}

#[derive(Serialize)]
pub struct CallerClaims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub sub_kind: &'a str,
    pub org_id: String,
    pub endpoint_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

impl AssertionSigner {
    /// `seed` must be 32 secret bytes derived for this purpose only.
    pub fn new(seed: [u8; 32], issuer: String) -> anyhow::Result<Self> {
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&ED25519_PKCS8_PREFIX);
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        let public = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x.clone(),
            _ => anyhow::bail!("unexpected key type"),
        };
        let kid = hex::encode(&Sha256::digest(public.as_bytes())[..8]);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                kid,
                issuer,
                jwks: JwkSet { keys: vec![jwk] },
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.inner.jwks
    }

    /// The issue and expiry times of an assertion signed now.
    pub fn times() -> (u64, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        (now, now + LIFETIME.as_secs())
    }

    /// Signs an assertion.
    pub fn sign(&self, claims: &CallerClaims<'_>) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TYP.to_owned());
        header.kid = Some(self.inner.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.inner.key).expect("Ed25519 signing cannot fail")
    }
}

/// The MCP client asks the signer for each request made for a caller to an upstream that wants
/// an assertion.
impl gatehouse_mcp_client::CallerAssertion for AssertionSigner {
    fn assertion(
        &self,
        audience: &str,
        caller: &gatehouse_mcp_client::Caller<'_>,
    ) -> Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
        let (iat, exp) = Self::times();
        let jwt = self.sign(&CallerClaims {
            iss: self.issuer(),
            aud: audience,
            sub: caller.subject,
            sub_kind: caller.subject_kind,
            org_id: caller.org.to_string(),
            endpoint_id: caller.endpoint.to_string(),
            client_id: caller.client_id,
            iat,
            exp,
            jti: uuid::Uuid::now_v7().to_string(),
        });
        let value = reqwest::header::HeaderValue::from_str(&jwt).ok()?;
        Some((reqwest::header::HeaderName::from_static(HEADER), value))
    }
}
