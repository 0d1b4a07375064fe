//! Each upstream's revision, learned and kept per server (and its URL): a server that answers a
//! 2026-07-28 `server/discover` is spoken to statelessly (dual-era servers too, for stateless
//! clients); one that does not is a session server, spoken to in sessions (`sessions`); an
//! HTTP+SSE server speaks 2024-11-05. What the upstream declared (its capabilities, server info
//! and instructions) is kept with it, for the answers a gateway gives itself (`server/discover`).
//! A learned wire is trusted for [`RELEARN_AFTER`], or until a request shows it wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::sync::MutexExt;
use gatehouse_core::upstream::UpstreamTransport;

use super::sessions::{ClientHello, HeldSession};
use super::{Caller, Client, Outbound, Reply, SseEvents, Upstream, UpstreamError};

/// The stateless revision.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The revision of the deprecated HTTP+SSE transport.
pub(super) const HTTP_SSE_VERSION: &str = "2024-11-05";
/// A learned wire is asked again after this long (a server upgraded to the stateless revision
/// is then spoken to in it).
const RELEARN_AFTER: Duration = Duration::from_secs(3600);

/// How an upstream is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// 2026-07-28: every request on its own, with the revision's headers and `_meta`.
    Stateless,
    /// 2025 era (or HTTP+SSE): requests inside a session opened with `initialize`.
    Session,
}

/// What was learned about an upstream.
#[derive(Clone, Debug)]
pub struct Learned {
    pub wire: Wire,
    /// The revision it speaks: [`STATELESS_VERSION`], or the session revision it negotiated.
    pub version: String,
    /// The capabilities it declared (`server/discover` or `initialize`).
    pub capabilities: Value,
    pub server_info: Option<Value>,
    pub instructions: Option<String>,
}

struct Known {
    url: String,
    learned: Arc<Learned>,
    at: Instant,
}

#[derive(Default)]
pub(super) struct Wires {
    known: Mutex<HashMap<ServerId, Known>>,
}

impl Client {
    /// What is known of `upstream`'s wire, learned now if nothing (or something stale) is.
    pub async fn learned(
        &self,
        upstream: &Upstream,
        caller: Option<Caller<'_>>,
    ) -> Result<Arc<Learned>, UpstreamError> {
        if let Some(known) = self.inner.wires.known.lock_or_recover().get(&upstream.id)
            && known.url == upstream.url
            && known.at.elapsed() < RELEARN_AFTER
        {
            return Ok(known.learned.clone());
        }
        self.relearn(upstream, caller).await
    }

    /// Learns `upstream`'s wire now, whatever is known, and keeps it.
    pub async fn relearn(
        &self,
        upstream: &Upstream,
        caller: Option<Caller<'_>>,
    ) -> Result<Arc<Learned>, UpstreamError> {
        let (learned, opened) = self.relearn_open(upstream, caller).await?;
        if let Some(held) = opened {
            self.delete_session(upstream, &held.version, &held.session_id)
                .await;
        }
        Ok(learned)
    }

    /// [`Client::relearn`], handing back the session learning opened with a session upstream
    /// (for the caller to use, then end with [`Client::delete_session`]).
    pub(super) async fn relearn_open(
        &self,
        upstream: &Upstream,
        caller: Option<Caller<'_>>,
    ) -> Result<(Arc<Learned>, Option<HeldSession>), UpstreamError> {
        let (learned, opened) = self.learn(upstream, caller).await?;
        let learned = Arc::new(learned);
        tracing::debug!(server_id = %upstream.id, wire = ?learned.wire, version = %learned.version, "learned an upstream's wire");
        self.inner.wires.known.lock_or_recover().insert(
            upstream.id,
            Known {
                url: upstream.url.clone(),
                learned: learned.clone(),
                at: Instant::now(),
            },
        );
        Ok((learned, opened))
    }

    /// Forgets what was learned of `server` (a request showed it wrong).
    pub fn forget_wire(&self, server: ServerId) {
        self.inner.wires.known.lock_or_recover().remove(&server);
    }

    /// What `upstream` speaks, and the session learning opened if it is a session upstream.
    async fn learn(
        &self,
        upstream: &Upstream,
        caller: Option<Caller<'_>>,
    ) -> Result<(Learned, Option<HeldSession>), UpstreamError> {
        let hello = ClientHello {
            capabilities: &json!({}),
            client_info: None,
        };
        if upstream.transport == UpstreamTransport::HttpSse {
            let id = json!("gatehouse-initialize");
            let initialize = initialize_request(&id, HTTP_SSE_VERSION, &json!({}), None);
            let (answer, _) = self
                .request(
                    Outbound {
                        caller,
                        ..Outbound::message(upstream, &initialize)
                    },
                    &id,
                )
                .await?;
            let result = answer
                .get("result")
                .ok_or_else(|| UpstreamError::Unavailable("initialize refused upstream".into()))?;
            return Ok((learned_from(Wire::Session, HTTP_SSE_VERSION, result), None));
        }
        let id = json!("gatehouse-discover");
        let discover = json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {
            "_meta": stateless_meta(&hello)}});
        let out = Outbound {
            protocol_version: Some(STATELESS_VERSION),
            mcp_headers: vec![(
                HeaderName::from_static("mcp-method"),
                HeaderValue::from_static("server/discover"),
            )],
            caller,
            ..Outbound::message(upstream, &discover)
        };
        // Any answer but a result (a 400, a JSON-RPC error) is a server without the revision.
        match self.request(out, &id).await {
            Ok((answer, _)) if answer.get("result").is_some_and(Value::is_object) => {
                return Ok((
                    learned_from(Wire::Stateless, STATELESS_VERSION, &answer["result"]),
                    None,
                ));
            }
            Ok(_) => {}
            Err(UpstreamError::Status(status)) if (400..500).contains(&status) => {}
            Err(e) => return Err(e),
        }
        let (session_id, version, result) = self.initialize(upstream, &hello, None).await?;
        let learned = learned_from(Wire::Session, &version, &result);
        Ok((
            learned,
            session_id.map(|session_id| HeldSession { session_id, version }),
        ))
    }
}

impl Client {
    /// A stateless (2026-07-28) upstream's `subscriptions/listen` stream, opened for the client
    /// itself (no caller) for `notifications` (`{"toolsListChanged": true}`, say): the
    /// upstream's acknowledgement, then the notifications, until either side closes it.
    /// `Ok(None)` when the upstream answers without a stream (it does not offer listening).
    pub async fn listen(
        &self,
        upstream: &Upstream,
        notifications: Value,
    ) -> Result<Option<SseEvents>, UpstreamError> {
        let hello = ClientHello {
            capabilities: &json!({}),
            client_info: None,
        };
        let listen = json!({"jsonrpc": "2.0", "id": "gatehouse-listen", "method": "subscriptions/listen",
            "params": {"notifications": notifications, "_meta": stateless_meta(&hello)}});
        let out = Outbound {
            protocol_version: Some(STATELESS_VERSION),
            mcp_headers: vec![(
                HeaderName::from_static("mcp-method"),
                HeaderValue::from_static("subscriptions/listen"),
            )],
            ..Outbound::message(upstream, &listen)
        };
        match self.post(out).await? {
            Reply::Stream { events, .. } => Ok(Some(events)),
            _ => Ok(None),
        }
    }
}

fn learned_from(wire: Wire, version: &str, result: &Value) -> Learned {
    Learned {
        wire,
        version: version.to_owned(),
        capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        server_info: result.get("serverInfo").cloned(),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// The `_meta` a stateless request carries for a client: the revision, the client's name and
/// its capabilities.
pub fn stateless_meta(hello: &ClientHello<'_>) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientInfo": client_info(hello.client_info),
        "io.modelcontextprotocol/clientCapabilities": hello.capabilities,
    })
}

/// The `initialize` request (id `id`) that opens a session in `version`, for a client with
/// `capabilities` that named itself `client_info` (Gatehouse when it did not).
pub(super) fn initialize_request(
    id: &Value,
    version: &str,
    capabilities: &Value,
    client_info: Option<&Value>,
) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": capabilities,
        "clientInfo": self::client_info(client_info),
    }})
}

/// The client's name, or Gatehouse's own.
fn client_info(named: Option<&Value>) -> Value {
    named
        .cloned()
        .unwrap_or_else(|| json!({"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}))
}
