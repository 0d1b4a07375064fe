//! `tools/list` on an upstream, every page, in the revision it speaks: the one pager of the
//! platform (tool sync, the pin watcher), with one page limit ([`MAX_PAGES`]) and the caller's
//! bounds on the tools read ([`ToolLimits`]).

use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use gatehouse_core::upstream::UpstreamTransport;

use super::sessions::{ClientHello, HeldSession};
use super::wire::{Learned, Wire, stateless_meta};
use super::{Client, Outbound, Upstream, UpstreamError};

/// Pages of `tools/list` followed at most.
pub const MAX_PAGES: usize = 100;

/// Bounds on what one listing reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ToolLimits {
    /// Most tools accepted.
    pub max_tools: Option<usize>,
    /// Most bytes of tool definitions (as JSON) accepted, all pages together.
    pub max_bytes: Option<usize>,
}

/// What listing an upstream's tools found.
#[derive(Debug)]
pub enum Listing {
    /// Every tool, in the upstream's order.
    Tools(Vec<Value>),
    /// More tools than `max_tools`; reading stopped there.
    TooManyTools,
    /// More bytes of definitions than `max_bytes`; reading stopped there.
    TooLarge,
    /// The list did not end within [`MAX_PAGES`] pages.
    TooManyPages,
    /// The upstream named the same cursor twice in a row (a list that would never end).
    RepeatedCursor,
}

impl Client {
    /// Lists every tool of `upstream` in the revision it speaks (learned first, if it is not
    /// known), within `limits` and [`MAX_PAGES`]. A session upstream is listed in a session of
    /// its own, ended afterwards. A failure forgets the learned revision, so the next listing
    /// learns it again.
    pub async fn list_tools(
        &self,
        upstream: &Upstream,
        limits: ToolLimits,
    ) -> Result<(Arc<Learned>, Listing), UpstreamError> {
        let learned = self.learned(upstream, None).await?;
        let listed = self.list_tools_as(upstream, &learned, None, limits).await;
        if listed.is_err() {
            self.forget_wire(upstream.id);
        }
        Ok((learned, listed?))
    }

    /// [`Client::list_tools`] with the revision learned anew ([`Client::relearn`]); a session
    /// upstream is listed in the session learning opened.
    pub async fn list_tools_relearned(
        &self,
        upstream: &Upstream,
        limits: ToolLimits,
    ) -> Result<(Arc<Learned>, Listing), UpstreamError> {
        let (learned, opened) = self.relearn_open(upstream, None).await?;
        let listed = self.list_tools_as(upstream, &learned, opened, limits).await;
        if listed.is_err() {
            self.forget_wire(upstream.id);
        }
        Ok((learned, listed?))
    }

    async fn list_tools_as(
        &self,
        upstream: &Upstream,
        learned: &Learned,
        opened: Option<HeldSession>,
        limits: ToolLimits,
    ) -> Result<Listing, UpstreamError> {
        let capabilities = json!({});
        let hello = ClientHello {
            capabilities: &capabilities,
            client_info: None,
        };
        // An HTTP+SSE upstream gets a connection (and handshake) per request.
        let in_session = learned.wire == Wire::Session && upstream.transport != UpstreamTransport::HttpSse;
        let (session_id, version) = match opened {
            Some(held) => (Some(held.session_id), held.version),
            None if in_session => {
                let (session_id, version, _) = self.initialize(upstream, &hello, None).await?;
                (session_id, version)
            }
            None => (None, learned.version.clone()),
        };
        let listed = self
            .pages(
                upstream,
                learned.wire,
                &version,
                session_id.as_deref(),
                &hello,
                limits,
            )
            .await;
        if let Some(session_id) = &session_id {
            self.delete_session(upstream, &version, session_id).await;
        }
        listed
    }

    async fn pages(
        &self,
        upstream: &Upstream,
        wire: Wire,
        version: &str,
        session_id: Option<&str>,
        hello: &ClientHello<'_>,
        limits: ToolLimits,
    ) -> Result<Listing, UpstreamError> {
        let mut tools = Vec::new();
        let mut read = 0usize;
        let mut cursor: Option<Value> = None;
        for page in 0..MAX_PAGES {
            let id = json!(format!("gatehouse-tools-{page}"));
            let mut params = json!({});
            if wire == Wire::Stateless {
                params["_meta"] = stateless_meta(hello);
            }
            if let Some(c) = &cursor {
                params["cursor"] = c.clone();
            }
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let mcp_headers = match wire {
                Wire::Stateless => vec![(
                    HeaderName::from_static("mcp-method"),
                    HeaderValue::from_static("tools/list"),
                )],
                Wire::Session => vec![],
            };
            let out = Outbound {
                protocol_version: Some(version),
                session_id,
                mcp_headers,
                ..Outbound::message(upstream, &body)
            };
            let (answer, _) = self.request(out, &id).await?;
            if answer.get("error").is_some() {
                return Err(UpstreamError::Unavailable(
                    "tools/list was answered with a JSON-RPC error".into(),
                ));
            }
            let result = answer
                .get("result")
                .ok_or_else(|| UpstreamError::Unavailable("tools/list was not answered".into()))?;
            let list = result.get("tools").and_then(Value::as_array).ok_or_else(|| {
                UpstreamError::Unavailable("tools/list was answered without a tool list".into())
            })?;
            read = read.saturating_add(json_size(list));
            if limits.max_bytes.is_some_and(|max| read > max) {
                return Ok(Listing::TooLarge);
            }
            tools.extend(list.iter().cloned());
            if limits.max_tools.is_some_and(|max| tools.len() > max) {
                return Ok(Listing::TooManyTools);
            }
            match result.get("nextCursor").filter(|c| !c.is_null()) {
                Some(next) if Some(next) == cursor.as_ref() => return Ok(Listing::RepeatedCursor),
                Some(next) => cursor = Some(next.clone()),
                None => return Ok(Listing::Tools(tools)),
            }
        }
        Ok(Listing::TooManyPages)
    }
}

/// The size of `value` as JSON, without building the text.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a value that cannot be serialised counts as nothing.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
