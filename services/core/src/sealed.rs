//! Values a service hands to clients and must get back intact and unread (the dataplane's session
//! ids, the MCP client's reply routes of HTTP+SSE upstreams): JSON sealed with AES-256-GCM under a key of one purpose,
//! that purpose bound as associated data, written `<prefix><base64url(nonce ‖ ciphertext)>`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Seals and opens one kind of value.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    /// Associated data: a value sealed for one purpose never opens as another.
    purpose: &'static [u8],
    prefix: &'static str,
}

impl Sealer {
    pub fn new(key: &[u8; 32], purpose: &'static [u8], prefix: &'static str) -> Self {
        Self {
            cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
            purpose,
            prefix,
        }
    }

    pub fn seal<T: Serialize>(&self, value: &T) -> String {
        let plain = serde_json::to_vec(value).expect("sealed values serialise");
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::try_from(&nonce[..]).expect("12 bytes"),
                Payload {
                    msg: &plain,
                    aad: self.purpose,
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{}{}", self.prefix, URL_SAFE_NO_PAD.encode(out))
    }

    /// The value `text` stands for, if it was sealed here for this purpose and is intact.
    pub fn open<T: DeserializeOwned>(&self, text: &str) -> Option<T> {
        let raw = URL_SAFE_NO_PAD.decode(text.strip_prefix(self.prefix)?).ok()?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                &Nonce::try_from(nonce).ok()?,
                Payload {
                    msg: sealed,
                    aad: self.purpose,
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }
}
