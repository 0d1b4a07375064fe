//! The deprecated HTTP+SSE transport (2024-11-05), one connection and handshake per request.

use futures::StreamExt;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use super::{Outbound, Reply, UpstreamError, Upstreams, classify, sse_events};

impl Upstreams {
    /// The deprecated HTTP+SSE transport (2024-11-05): a GET stream announces a message endpoint
    /// (`event: endpoint`), messages are POSTed there and answers come back on the stream. Each
    /// forwarded request gets a connection of its own, with a fresh `initialize` handshake, so
    /// nothing about the upstream connection has to outlive the request (any replica serves any
    /// request). Server→client requests cannot be answered over this transport (their answer would
    /// need the same connection); the upstream sees them unanswered.
    pub(super) async fn post_http_sse(&self, out: Outbound<'_>) -> Result<Reply, UpstreamError> {
        const LEGACY_VERSION: &str = "2024-11-05";
        let server = out.server;
        if self.breaker_open(server.snapshot.id) {
            return Err(UpstreamError::Unavailable("circuit breaker open".into()));
        }
        let message: Value = serde_json::from_slice(&out.body)
            .map_err(|_| UpstreamError::Unavailable("cannot relay a batch over HTTP+SSE".into()))?;
        let base = self.url(server)?;
        let mut headers = self.headers_for(server, None, None, out.caller).await?;
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let send = self.inner.http.get(base.clone()).headers(headers.clone()).send();
        let response = match tokio::time::timeout(self.inner.timeout, send).await {
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                self.record(server.snapshot.id, r.status().as_u16() < 500);
                return Err(UpstreamError::Unavailable(format!(
                    "upstream answered {}",
                    r.status().as_u16()
                )));
            }
            Ok(Err(e)) => {
                self.record(server.snapshot.id, false);
                return Err(UpstreamError::Unavailable(classify(&e)));
            }
            Err(_) => {
                self.record(server.snapshot.id, false);
                return Err(UpstreamError::Unavailable("no answer in time".into()));
            }
        };
        self.record(server.snapshot.id, true);
        let mut events = sse_events(response);
        let endpoint = tokio::time::timeout(self.inner.timeout, async {
            while let Some(event) = events.next().await {
                let event = event.ok()?;
                if event.event.as_deref() == Some("endpoint") {
                    return event.data;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| UpstreamError::Unavailable("no message endpoint announced".into()))?;
        let endpoint = base
            .join(endpoint.trim())
            .map_err(|_| UpstreamError::Unavailable("invalid message endpoint".into()))?;
        if endpoint.origin() != base.origin() {
            return Err(UpstreamError::Refused("message endpoint on another origin"));
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.remove(reqwest::header::ACCEPT);
        let post = |body: Vec<u8>| {
            let request = self
                .inner
                .http
                .post(endpoint.clone())
                .headers(headers.clone())
                .body(body);
            async move {
                match tokio::time::timeout(self.inner.timeout, request.send()).await {
                    Ok(Ok(r)) if r.status().is_success() => Ok(()),
                    Ok(Ok(r)) => Err(UpstreamError::Unavailable(format!(
                        "upstream answered {}",
                        r.status().as_u16()
                    ))),
                    Ok(Err(e)) => Err(UpstreamError::Unavailable(classify(&e))),
                    Err(_) => Err(UpstreamError::Unavailable("no answer in time".into())),
                }
            }
        };
        let is_request = message.get("method").is_some() && message.get("id").is_some();
        let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
        if !is_initialize {
            if !is_request {
                // Notifications and answers belong to a connection that no longer exists.
                return Ok(Reply::Accepted);
            }
            let init_id = json!("gatehouse-sse-init");
            let init = json!({"jsonrpc": "2.0", "id": init_id, "method": "initialize", "params": {
                "protocolVersion": LEGACY_VERSION, "capabilities": {},
                "clientInfo": {"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")}}});
            post(serde_json::to_vec(&init).expect("json")).await?;
            let initialized = tokio::time::timeout(self.inner.timeout, async {
                while let Some(Ok(event)) = events.next().await {
                    if let Some(v) = event
                        .data
                        .as_deref()
                        .and_then(|d| serde_json::from_str::<Value>(d).ok())
                        && v.get("id") == Some(&init_id)
                    {
                        return v.get("result").is_some();
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            if !initialized {
                return Err(UpstreamError::Unavailable("initialize failed upstream".into()));
            }
            post(
                serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                    .expect("json"),
            )
            .await?;
        }
        post(out.body.to_vec()).await?;
        let id = message.get("id").cloned();
        // The answer stream: messages until (and including) the response to our request.
        let relayed = futures::stream::unfold((events, false, id), |(mut events, done, id)| async move {
            if done {
                return None;
            }
            loop {
                match events.next().await? {
                    Ok(event) if event.event.as_deref().is_none_or(|e| e == "message") => {
                        let finished = event
                            .data
                            .as_deref()
                            .and_then(|d| serde_json::from_str::<Value>(d).ok())
                            .is_some_and(|v| v.get("method").is_none() && v.get("id") == id.as_ref());
                        let event = sse_stream::Sse { id: None, ..event };
                        return Some((Ok(event), (events, finished, id)));
                    }
                    Ok(_) => continue,
                    Err(e) => return Some((Err(e), (events, true, id))),
                }
            }
        });
        Ok(Reply::Stream {
            events: Box::pin(relayed),
            session_id: None,
        })
    }
}
