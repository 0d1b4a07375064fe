//! Each upstream's wire, learned on first use and kept per server (and its URL): a server that
//! answers a 2026-07-28 `server/discover` is spoken to statelessly (dual-era servers too, for
//! stateless clients); one that does not is a session server, spoken to in sessions the
//! dataplane opens (`sessions`). What the upstream declared (its capabilities, server info and
//! instructions) is kept with it, for the answers the dataplane gives itself (`server/discover`).
//! A learned wire is trusted for [`RELEARN_AFTER`], or until a request shows it wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;
use gatehouse_core::snapshot::UpstreamTransport;
use gatehouse_core::sync::MutexExt;

use crate::store::ServerState;

use super::sessions::ClientHello;
use super::{Caller, Outbound, UpstreamError, Upstreams};

/// The stateless revision.
pub const STATELESS_VERSION: &str = "2026-07-28";
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

impl Upstreams {
    /// What is known of `server`'s wire, learned now if nothing (or something stale) is.
    pub async fn learned(
        &self,
        server: &ServerState,
        caller: Option<Caller<'_>>,
    ) -> Result<Arc<Learned>, UpstreamError> {
        let id = server.snapshot.id;
        if let Some(known) = self.inner.wires.known.lock_or_recover().get(&id)
            && known.url == server.snapshot.url
            && known.at.elapsed() < RELEARN_AFTER
        {
            return Ok(known.learned.clone());
        }
        let learned = Arc::new(self.learn(server, caller).await?);
        tracing::debug!(server_id = %id, wire = ?learned.wire, "learned an upstream's wire");
        self.inner.wires.known.lock_or_recover().insert(
            id,
            Known {
                url: server.snapshot.url.clone(),
                learned: learned.clone(),
                at: Instant::now(),
            },
        );
        Ok(learned)
    }

    /// Forgets what was learned of `server` (a request showed it wrong).
    pub fn forget_wire(&self, server: ServerId) {
        self.inner.wires.known.lock_or_recover().remove(&server);
    }

    async fn learn(
        &self,
        server: &ServerState,
        caller: Option<Caller<'_>>,
    ) -> Result<Learned, UpstreamError> {
        let hello = ClientHello {
            capabilities: &json!({}),
            client_info: None,
        };
        if server.snapshot.transport == UpstreamTransport::HttpSse {
            let id = json!("gatehouse-initialize");
            let initialize = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
                "protocolVersion": "2024-11-05", "capabilities": {},
                "clientInfo": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}}});
            let (answer, _) = self
                .request(
                    Outbound {
                        server,
                        body: Bytes::from(serde_json::to_vec(&initialize).expect("json")),
                        protocol_version: None,
                        session_id: None,
                        mcp_headers: vec![],
                        caller,
                        client_capabilities: None,
                    },
                    &id,
                )
                .await?;
            let result = answer
                .get("result")
                .ok_or_else(|| UpstreamError::Unavailable("initialize refused upstream".into()))?;
            return Ok(learned_from(Wire::Session, result));
        }
        let id = json!("gatehouse-discover");
        let discover = json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {
            "_meta": stateless_meta(&hello)}});
        let out = Outbound {
            server,
            body: Bytes::from(serde_json::to_vec(&discover).expect("json")),
            protocol_version: Some(STATELESS_VERSION),
            session_id: None,
            mcp_headers: vec![(
                HeaderName::from_static("mcp-method"),
                HeaderValue::from_static("server/discover"),
            )],
            caller,
            client_capabilities: None,
        };
        // Any answer but a result (a 400, a JSON-RPC error) is a server without the revision.
        match self.request(out, &id).await {
            Ok((answer, _)) if answer.get("result").is_some_and(Value::is_object) => {
                return Ok(learned_from(Wire::Stateless, &answer["result"]));
            }
            Ok(_) => {}
            Err(UpstreamError::Unavailable(reason)) if reason.starts_with("upstream answered 4") => {}
            Err(e) => return Err(e),
        }
        let (held, result) = self.open_session(server, &hello, None).await?;
        self.delete_session(server, &held.version, &held.session_id).await;
        Ok(learned_from(Wire::Session, &result))
    }
}

fn learned_from(wire: Wire, result: &Value) -> Learned {
    Learned {
        wire,
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
        "io.modelcontextprotocol/clientInfo": hello.client_info.cloned()
            .unwrap_or_else(|| json!({"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")})),
        "io.modelcontextprotocol/clientCapabilities": hello.capabilities,
    })
}
