//! Sessions of the 2025-era protocol (`Mcp-Session-Id`), kept by the client, not by us: the id is
//! the session itself, sealed with AES-256-GCM under a key derived once from the dataplane secret.
//! It names the org, endpoint, authenticated subject, negotiated protocol version and each
//! upstream's own session id, so any replica can serve any session and no upstream session id is
//! ever readable by the client. A session presented with another subject's token is unknown (404).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use gatehouse_core::ids::{EndpointId, OrgId, ServerId};
use gatehouse_core::sync::MutexExt;

use gatehouse_core::sealed::Sealer;

const AAD: &[u8] = b"gatehouse/mcp-session/v1";
const VERSION_PREFIX: &str = "ghs1.";
/// A session older than this is gone (the client re-initializes).
pub const MAX_AGE_SECS: i64 = 24 * 3600;

/// What a session id carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "o")]
    pub org: OrgId,
    #[serde(rename = "e")]
    pub endpoint: EndpointId,
    #[serde(rename = "s")]
    pub subject: String,
    /// Negotiated protocol version.
    #[serde(rename = "v")]
    pub version: String,
    /// Upstream sessions, in the order events and request ids refer to them by index.
    #[serde(rename = "u")]
    pub upstreams: Vec<UpstreamSession>,
    /// Issued at (unix seconds).
    #[serde(rename = "t")]
    pub issued_at: i64,
    /// The capabilities the client declared at `initialize`, kept only when an upstream speaks
    /// the old HTTP+SSE transport: every request there opens a connection of its own, whose
    /// handshake must declare them again for the upstream to ask for sampling, elicitation or
    /// roots.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub client_capabilities: Option<Value>,
    /// Whether the client declared the elicitation capability at `initialize`: a destructive
    /// hosted SQL tool then asks the person through `elicitation/create`.
    #[serde(rename = "el", default, skip_serializing_if = "std::ops::Not::not")]
    pub elicitation: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSession {
    #[serde(rename = "i")]
    pub server: ServerId,
    /// The upstream's `Mcp-Session-Id`, if it keeps sessions.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The version the upstream negotiated.
    #[serde(rename = "v")]
    pub version: String,
}

/// Seals and opens session ids.
#[derive(Clone)]
pub struct SessionCodec {
    sealer: Sealer,
}

impl SessionCodec {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            sealer: Sealer::new(key, AAD, VERSION_PREFIX),
        }
    }

    pub fn seal(&self, session: &Session) -> String {
        self.sealer.seal(session)
    }

    /// The session an id stands for, if it is ours, intact and not too old.
    pub fn open(&self, id: &str, now: i64) -> Option<Session> {
        let session: Session = self.sealer.open(id)?;
        (now - session.issued_at <= MAX_AGE_SECS && session.issued_at <= now + 60).then_some(session)
    }
}

/// Sessions ended with DELETE, on this instance or (through the change notifier) on any other.
/// The id itself stays valid cryptographically, and upstream sessions are gone (so forwarded
/// requests get 404 from any replica); this makes requests the dataplane answers itself (ping,
/// tools/list) see the end too. Keyed by the SHA-256 of the id, which is also what replicas tell
/// each other.
#[derive(Clone, Default)]
pub struct EndedSessions {
    ended: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], i64>>>,
}

impl EndedSessions {
    const MAX: usize = 100_000;

    pub fn key(id: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(id.as_bytes()).into()
    }

    pub fn insert(&self, key: [u8; 32]) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut ended = self.ended.lock_or_recover();
        if ended.len() >= Self::MAX {
            ended.retain(|_, until| *until > now);
            if ended.len() >= Self::MAX {
                ended.clear();
            }
        }
        ended.insert(key, now + MAX_AGE_SECS);
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ended.lock_or_recover().contains_key(&Self::key(id))
    }

    /// Records the session ends other replicas announce, until `stop`.
    pub async fn follow(
        self,
        mut announced: tokio::sync::broadcast::Receiver<[u8; 32]>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                key = announced.recv() => match key {
                    Ok(key) => self.insert(key),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "missed session-end announcements");
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            client_capabilities: None,
            elicitation: false,
            org: OrgId::new(),
            endpoint: EndpointId::new(),
            subject: "user-1".into(),
            version: "2025-11-25".into(),
            upstreams: vec![UpstreamSession {
                server: ServerId::new(),
                session_id: Some("upstream-secret-session".into()),
                version: "2025-11-25".into(),
            }],
            issued_at: 1_000,
        }
    }

    #[test]
    fn round_trip_and_opacity() {
        let codec = SessionCodec::new(&[7u8; 32]);
        let session = sample();
        let id = codec.seal(&session);
        assert!(!id.contains("upstream-secret-session"));
        assert!(
            id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "visible ASCII only"
        );
        assert_eq!(codec.open(&id, 1_001), Some(session));
        assert_eq!(codec.open(&id, 1_000 + MAX_AGE_SECS + 1), None);
        assert_eq!(SessionCodec::new(&[8u8; 32]).open(&id, 1_001), None);
        let mut tampered = id.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(codec.open(std::str::from_utf8(&tampered).unwrap(), 1_001), None);
    }

    #[test]
    fn ids_are_unique() {
        let codec = SessionCodec::new(&[1u8; 32]);
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| codec.seal(&sample())).collect();
        assert_eq!(ids.len(), 10_000);
        // 10,000 random guesses open nothing.
        for _ in 0..10_000 {
            let guess = format!("{VERSION_PREFIX}{}", gatehouse_core::secrets::random_token(120));
            assert!(codec.open(&guess, 1_001).is_none());
        }
    }
}
