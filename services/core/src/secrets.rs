//! Secrets: sealing credentials at rest (AES-256-GCM with a key id, for rotation), keys derived
//! once (HKDF-SHA256) from the platform's signing secret and from the dataplane secret, random
//! tokens and their hashes.
//!
//! Two separate roots, so that a dataplane holds only what it needs:
//! - the platform keys (`secrets.encryption_keys`, `secrets.signing_secret`): credentials at rest
//!   in the platform database, console cookies and CSRF tokens, OAuth state. Control API only.
//! - `secrets.dataplane_secret` ([`DataplaneKeys`]): MCP session ids, the internal-API token, and
//!   the key that seals the credentials inside configuration snapshots. Control API and dataplane.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::Mac;
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Format version of a sealed blob: `[version][kid length][kid bytes][12-byte nonce][ciphertext+tag]`.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// The keys that seal and open credentials at rest. The first key seals; every key opens, so keys
/// can rotate: add a new first key, re-seal, then drop the old one.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &ids)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key id {0:?}, which is not in the keyring")]
    UnknownKey(String),
    #[error("sealed value failed authentication (wrong key, wrong context or tampered)")]
    Inauthentic,
}

impl Keyring {
    /// Parses `"kid=base64,kid2=base64"`; each key must decode to exactly 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        let mut active = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, b64) = entry
                .split_once('=')
                .ok_or_else(|| "each key must look like `key-id=base64` (32 bytes)".to_owned())?;
            let kid = kid.trim();
            if kid.is_empty()
                || kid.len() > 64
                || !kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "key id {kid:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
                ));
            }
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|_| format!("key {kid:?} is not valid base64"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "key {kid:?} must be 32 bytes (it has {}); generate one with `openssl rand -base64 32`",
                    bytes.len()
                ));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| "invalid key length".to_owned())?;
            if keys.insert(kid.to_owned(), cipher).is_some() {
                return Err(format!("key id {kid:?} appears twice"));
            }
            active.get_or_insert_with(|| kid.to_owned());
        }
        let active = active.ok_or_else(|| {
            "is required: at least one `key-id=base64` AES-256 key (generate one with `openssl rand -base64 32`)"
                .to_owned()
        })?;
        Ok(Self { active, keys })
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Seals `plaintext`, binding it to `context` (e.g. `"org:<id>/server:<id>"`) so a sealed value
    /// copied to another row does not open there.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let cipher = &self.keys[&self.active];
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::fill(&mut nonce_bytes);
        let nonce = Nonce::try_from(&nonce_bytes[..]).expect("12-byte nonce");
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let kid = self.active.as_bytes();
        let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + ciphertext.len());
        out.push(SEALED_V1);
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
        if version != SEALED_V1 {
            return Err(SealError::Malformed);
        }
        let (&kid_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        let kid_len = kid_len as usize;
        if rest.len() < kid_len + NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let kid = std::str::from_utf8(&rest[..kid_len]).map_err(|_| SealError::Malformed)?;
        let nonce = Nonce::try_from(&rest[kid_len..kid_len + NONCE_LEN]).map_err(|_| SealError::Malformed)?;
        let ciphertext = &rest[kid_len + NONCE_LEN..];
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| SealError::UnknownKey(kid.to_owned()))?;
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Inauthentic)
    }

    /// A keyring of one key, for keys derived from a secret rather than configured. `kid` should
    /// name the key's origin so that a value sealed under another secret fails with a clear
    /// [`SealError::UnknownKey`].
    pub fn single(kid: &str, key: &[u8; 32]) -> Self {
        let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
        Self {
            active: kid.to_owned(),
            keys: HashMap::from([(kid.to_owned(), cipher)]),
        }
    }

    /// The key id a sealed value was sealed with (to find values that need re-sealing).
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let kid_len = *sealed.get(1)? as usize;
        std::str::from_utf8(sealed.get(2..2 + kid_len)?).ok()
    }
}

/// Keys derived once at start from `secrets.signing_secret` with HKDF-SHA256, one per purpose, so
/// that no request pays for key stretching and no two purposes share a key. Held by the control
/// API only: a dataplane never has them.
#[derive(Clone)]
pub struct DerivedKeys {
    /// Signs console CSRF tokens (bound to the session cookie).
    pub cookie: [u8; 32],
    /// Authenticates the state of an OAuth authorization in progress (login and consent forms).
    pub oauth_state: [u8; 32],
}

impl fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKeys([REDACTED])")
    }
}

impl DerivedKeys {
    pub fn derive(signing_secret_b64: &str) -> Result<Self, String> {
        let prk = hkdf_extract(b"gatehouse/v1", &decode_secret(signing_secret_b64)?);
        Ok(Self {
            cookie: hkdf_expand(&prk, b"console-cookies"),
            oauth_state: hkdf_expand(&prk, b"oauth-state"),
        })
    }
}

/// Keys derived once at start from `secrets.dataplane_secret`, one per purpose: everything a
/// dataplane holds. The control API derives the same keys to authenticate dataplanes and to seal
/// the credentials it hands them.
#[derive(Clone)]
pub struct DataplaneKeys {
    /// Encrypts MCP session ids (AES-256-GCM), so that any dataplane replica can read them; also
    /// the root of the caller-assertion key and of the HTTP+SSE reply-route key.
    pub mcp_session: [u8; 32],
    /// Authenticates the dataplane to the control API's internal endpoints.
    pub internal_token: String,
    /// Seals the credentials inside configuration snapshots (upstream credentials, backend
    /// connection strings and context keys), with the same contexts as at rest.
    pub snapshot: Keyring,
}

impl fmt::Debug for DataplaneKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataplaneKeys([REDACTED])")
    }
}

impl DataplaneKeys {
    pub fn derive(dataplane_secret_b64: &str) -> Result<Self, String> {
        let prk = hkdf_extract(b"gatehouse/dataplane/v1", &decode_secret(dataplane_secret_b64)?);
        let snapshot = hkdf_expand(&prk, b"snapshot-credentials");
        // The key id names the secret it comes from (a fingerprint, not the key), so a snapshot
        // sealed under another dataplane secret is reported as such.
        let kid = format!("snapshot-{}", hex::encode(&Sha256::digest(snapshot)[..4]));
        Ok(Self {
            mcp_session: hkdf_expand(&prk, b"mcp-session-ids"),
            internal_token: URL_SAFE_NO_PAD.encode(hkdf_expand(&prk, b"internal-api-token")),
            snapshot: Keyring::single(&kid, &snapshot),
        })
    }
}

/// Decodes a base64 secret of at least 32 bytes.
fn decode_secret(secret_b64: &str) -> Result<Vec<u8>, String> {
    if secret_b64.is_empty() {
        return Err(
            "is required: at least 32 random bytes, base64 (generate with `openssl rand -base64 48`)"
                .to_owned(),
        );
    }
    let secret = STANDARD
        .decode(secret_b64.trim())
        .map_err(|_| "is not valid base64".to_owned())?;
    if secret.len() < 32 {
        return Err(format!(
            "must decode to at least 32 bytes (it has {})",
            secret.len()
        ));
    }
    Ok(secret)
}

fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(salt).expect("HMAC accepts any key length");
    mac.update(ikm);
    mac.finalize().into_bytes().into()
}

/// HKDF-Expand for a single 32-byte block (RFC 5869, L = HashLen).
fn hkdf_expand(prk: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(prk).expect("HMAC accepts any key length");
    mac.update(info);
    mac.update(&[1u8]);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time HMAC verification.
pub fn hmac_sha256_verify(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.verify_slice(tag).is_ok()
}

/// SHA-256 of a token: what the database stores instead of the token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// `n` random bytes, base64url without padding (n = 32 gives 256 bits of entropy).
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality for secrets of possibly different lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Generates a fresh base64 AES-256 key (for `gatehouse up` and docs).
pub fn generate_key_b64() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    STANDARD.encode(bytes)
}

/// Generates a fresh base64 secret of 48 bytes (`secrets.signing_secret`,
/// `secrets.dataplane_secret`).
pub fn generate_signing_secret_b64() -> String {
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes);
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(spec).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let k = format!("k1={}", generate_key_b64());
        let kr = ring(&k);
        let sealed = kr.seal(b"upstream-token", "org:1/server:2");
        assert_eq!(kr.open(&sealed, "org:1/server:2").unwrap(), b"upstream-token");
        assert_eq!(kr.open(&sealed, "org:9/server:2"), Err(SealError::Inauthentic));
        assert_eq!(Keyring::key_id_of(&sealed), Some("k1"));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(kr.open(&tampered, "org:1/server:2"), Err(SealError::Inauthentic));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = format!("old={}", generate_key_b64());
        let sealed = ring(&old).seal(b"secret", "ctx");
        let rotated = ring(&format!("new={},{old}", generate_key_b64()));
        assert_eq!(rotated.active_key_id(), "new");
        assert_eq!(rotated.open(&sealed, "ctx").unwrap(), b"secret");
        let resealed = rotated.seal(b"secret", "ctx");
        assert_eq!(Keyring::key_id_of(&resealed), Some("new"));
        let without_old = ring(&format!("new={}", generate_key_b64()));
        assert!(matches!(without_old.open(&sealed, "ctx"), Err(SealError::UnknownKey(k)) if k == "old"));
    }

    #[test]
    fn keyring_errors_name_the_problem() {
        assert!(Keyring::parse("").unwrap_err().contains("required"));
        assert!(Keyring::parse("k1=aGVsbG8=").unwrap_err().contains("32 bytes"));
        assert!(Keyring::parse("k1").unwrap_err().contains("key-id=base64"));
    }

    #[test]
    fn derived_keys_differ_per_purpose_and_need_enough_entropy() {
        let keys = DerivedKeys::derive(&generate_signing_secret_b64()).unwrap();
        assert_ne!(keys.cookie, keys.oauth_state);
        assert!(DerivedKeys::derive("c2hvcnQ=").unwrap_err().contains("32 bytes"));
        let dataplane = DataplaneKeys::derive(&generate_signing_secret_b64()).unwrap();
        assert!(
            DataplaneKeys::derive("c2hvcnQ=")
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(!format!("{dataplane:?}").contains(&dataplane.internal_token));
        assert_ne!(
            URL_SAFE_NO_PAD.encode(dataplane.mcp_session),
            dataplane.internal_token
        );
    }

    #[test]
    fn one_secret_gives_different_keys_under_each_root() {
        // The same bytes configured as both secrets still give unrelated keys (distinct salts).
        let secret = generate_signing_secret_b64();
        let platform = DerivedKeys::derive(&secret).unwrap();
        let dataplane = DataplaneKeys::derive(&secret).unwrap();
        for key in [platform.cookie, platform.oauth_state] {
            assert_ne!(key, dataplane.mcp_session);
        }
    }

    #[test]
    fn snapshot_values_and_values_at_rest_do_not_open_with_each_other_keys() {
        let platform = ring(&format!("k1={}", generate_key_b64()));
        let dataplane = DataplaneKeys::derive(&generate_signing_secret_b64()).unwrap();
        let at_rest = platform.seal(b"token", "ctx");
        let in_snapshot = dataplane.snapshot.seal(b"token", "ctx");
        assert_eq!(dataplane.snapshot.open(&in_snapshot, "ctx").unwrap(), b"token");
        assert!(matches!(
            dataplane.snapshot.open(&at_rest, "ctx"),
            Err(SealError::UnknownKey(_))
        ));
        assert!(matches!(
            platform.open(&in_snapshot, "ctx"),
            Err(SealError::UnknownKey(_))
        ));
        // Another dataplane secret: same kind of key id, different key.
        let other = DataplaneKeys::derive(&generate_signing_secret_b64()).unwrap();
        assert!(other.snapshot.open(&in_snapshot, "ctx").is_err());
        // Even a keyring that reuses the key id does not open it.
        let kid = Keyring::key_id_of(&in_snapshot).unwrap().to_owned();
        let impostor = ring(&format!("{kid}={}", generate_key_b64()));
        assert_eq!(impostor.open(&in_snapshot, "ctx"), Err(SealError::Inauthentic));
    }

    #[test]
    fn hmac_verification() {
        let tag = hmac_sha256(b"k", b"m");
        assert!(hmac_sha256_verify(b"k", b"m", &tag));
        assert!(!hmac_sha256_verify(b"k", b"n", &tag));
    }
}
