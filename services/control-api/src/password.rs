//! Password hashing with Argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1, the crate's
//! defaults), always off the async runtime: one hash costs tens of milliseconds of CPU.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Minimum and maximum password lengths (NIST SP 800-63B: at least 8, allow at least 64).
pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// A PHC hash computed for no password at all, so that verifying against an unknown account costs
/// the same time as against a known one (no user enumeration by timing).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y7v8oKk+K5Q2D3HQZp7xqjF1Vt0gC2c1rH1m9Qm8Pq4";

/// Hashes `password` on the blocking pool.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await?
}

/// Verifies `password` against a stored PHC hash on the blocking pool. With no stored hash, it
/// still does the work (against a dummy) and returns false.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    let has_hash = stored.is_some();
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && has_hash
    })
    .await
    .unwrap_or(false)
}

/// Checks a new password's length; the message names what is wrong.
pub fn check_policy(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if chars > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify("wrong".into(), Some(h)).await);
        assert!(!verify("anything".into(), None).await);
    }
}
