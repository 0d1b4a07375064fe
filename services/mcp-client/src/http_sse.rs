//! The deprecated HTTP+SSE transport (2024-11-05), one connection and handshake per request.
//!
//! A server→client request (sampling, elicitation, roots) on such a connection can only be
//! answered on that connection's message endpoint. Its id is therefore replaced, before it is
//! relayed, by a sealed *reply route* (original id, message endpoint, server, time) that only this
//! deployment can open: the client's answer, arriving at any replica, is posted to that endpoint
//! while the call that opened the connection is still running.

use futures::StreamExt;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use gatehouse_core::ids::ServerId;

use gatehouse_core::sealed::Sealer;

use super::stream::is_response;
use super::wire::{HTTP_SSE_VERSION, initialize_request};
use super::{Client, Outbound, Reply, UpstreamError, response_on, unreachable};

const ROUTE_PREFIX: &str = "ghsse1.";
const ROUTE_AAD: &[u8] = b"gatehouse/http-sse-reply-route/v1";
/// An answer later than this finds its connection gone anyway (calls time out well before).
const ROUTE_MAX_AGE_SECS: i64 = 3600;

/// Where the answer to an HTTP+SSE upstream's server→client request goes.
#[derive(Serialize, Deserialize)]
struct ReplyRoute {
    /// The upstream's own request id.
    #[serde(rename = "i")]
    id: Value,
    /// The connection's message endpoint (path and query, on the server's origin).
    #[serde(rename = "e")]
    endpoint: String,
    #[serde(rename = "s")]
    server: ServerId,
    #[serde(rename = "t")]
    issued_at: i64,
}

/// Seals and opens reply routes (a key of their own).
#[derive(Clone)]
pub(super) struct ReplyRoutes {
    sealer: Sealer,
}

impl ReplyRoutes {
    pub(super) fn new(key: &[u8; 32]) -> Self {
        Self {
            sealer: Sealer::new(key, ROUTE_AAD, ROUTE_PREFIX),
        }
    }

    fn seal(&self, route: &ReplyRoute) -> String {
        self.sealer.seal(route)
    }

    /// The route an answer's id stands for, if it is one of ours, for `server`, and recent.
    fn open(&self, id: &Value, server: ServerId, now: i64) -> Option<ReplyRoute> {
        let route: ReplyRoute = self.sealer.open(id.as_str()?)?;
        (route.server == server && (0..=ROUTE_MAX_AGE_SECS).contains(&(now - route.issued_at)))
            .then_some(route)
    }
}

impl Client {
    /// The deprecated HTTP+SSE transport (2024-11-05): a GET stream announces a message endpoint
    /// (`event: endpoint`), messages are POSTed there and answers come back on the stream. Each
    /// forwarded request gets a connection of its own, with a fresh `initialize` handshake, so
    /// nothing about the upstream connection has to outlive the request (any replica serves any
    /// request). Server→client requests on the connection are relayed with a sealed reply route as
    /// their id (module docs).
    pub(super) async fn post_http_sse(&self, out: Outbound<'_>) -> Result<Reply, UpstreamError> {
        let upstream = out.upstream;
        if self.breaker_open(upstream.id) {
            return Err(UpstreamError::Unavailable("circuit breaker open".into()));
        }
        let message: Value = serde_json::from_slice(&out.body)
            .map_err(|_| UpstreamError::Unavailable("cannot relay a batch over HTTP+SSE".into()))?;
        let base = self.url(upstream)?;
        if is_response(&message) {
            return self.answer_http_sse(out, &base, message).await;
        }
        let mut headers = self.headers_for(upstream, None, None, out.caller).await?;
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let send = self.http.get(base.clone()).headers(headers.clone()).send();
        let response = match tokio::time::timeout(self.inner.timeout, send).await {
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                self.record(upstream.id, r.status().as_u16() < 500);
                return Err(UpstreamError::Status(r.status().as_u16()));
            }
            Ok(Err(e)) => {
                self.record(upstream.id, false);
                return Err(unreachable(&e));
            }
            Err(_) => {
                self.record(upstream.id, false);
                return Err(UpstreamError::Unavailable("no answer in time".into()));
            }
        };
        self.record(upstream.id, true);
        let mut events = self.sse_events(response);
        let endpoint = tokio::time::timeout(self.inner.timeout, async {
            while let Some(event) = events.next().await {
                let event = event.map_err(UpstreamError::Unavailable)?;
                if event.event.as_deref() == Some("endpoint") {
                    return Ok(event.data);
                }
            }
            Ok(None)
        })
        .await
        .unwrap_or(Ok(None))?
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
        // The connection was opened for this call: its endpoint answering 404 is a failing
        // upstream, not a session for the client to start again.
        let post = |body: Vec<u8>| {
            let sent = self.post_message(endpoint.clone(), headers.clone(), body);
            async move {
                sent.await.map_err(|e| match e {
                    UpstreamError::SessionGone => UpstreamError::Status(404),
                    e => e,
                })
            }
        };
        let is_request = message.get("method").is_some() && message.get("id").is_some();
        let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
        if !is_initialize {
            if !is_request {
                // Notifications and answers belong to a connection that no longer exists.
                return Ok(Reply::Accepted);
            }
            let capabilities = out.client_capabilities.cloned().unwrap_or_else(|| json!({}));
            let init_id = json!("gatehouse-sse-init");
            let init = initialize_request(&init_id, HTTP_SSE_VERSION, &capabilities, None);
            post(serde_json::to_vec(&init).expect("json")).await?;
            let initialized = tokio::time::timeout(self.inner.timeout, response_on(&mut events, &init_id))
                .await
                .is_ok_and(|answer| answer.is_ok_and(|v| v.get("result").is_some()));
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
        let routes = self.inner.reply_routes.clone();
        let server_id = upstream.id;
        let message_endpoint = match endpoint.query() {
            Some(q) => format!("{}?{q}", endpoint.path()),
            None => endpoint.path().to_owned(),
        };
        // The answer stream: messages until (and including) the response to our request, with
        // the upstream's own requests given reply routes as ids.
        let relayed = futures::stream::unfold((events, false, id), move |(mut events, done, id)| {
            let (routes, message_endpoint) = (routes.clone(), message_endpoint.clone());
            async move {
                if done {
                    return None;
                }
                loop {
                    match events.next().await? {
                        Ok(event) if event.event.as_deref().is_none_or(|e| e == "message") => {
                            let mut value = event
                                .data
                                .as_deref()
                                .and_then(|d| serde_json::from_str::<Value>(d).ok());
                            let finished = value
                                .as_ref()
                                .is_some_and(|v| v.get("method").is_none() && v.get("id") == id.as_ref());
                            let mut event = sse_stream::Sse { id: None, ..event };
                            if let Some(v) = value.as_mut().filter(|v| v.get("method").is_some())
                                && let Some(original) = v.get("id").cloned()
                            {
                                let route = ReplyRoute {
                                    id: original,
                                    endpoint: message_endpoint,
                                    server: server_id,
                                    issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
                                };
                                v["id"] = Value::String(routes.seal(&route));
                                event.data = Some(v.to_string());
                            }
                            return Some((Ok(event), (events, finished, id)));
                        }
                        Ok(_) => continue,
                        Err(e) => return Some((Err(e), (events, true, id))),
                    }
                }
            }
        });
        Ok(Reply::Stream {
            events: Box::pin(relayed),
            session_id: None,
        })
    }
}

impl Client {
    /// The client's answer to an HTTP+SSE upstream's request: posted, with the upstream's own id,
    /// to the message endpoint of the connection that asked (which the call keeps open).
    async fn answer_http_sse(
        &self,
        out: Outbound<'_>,
        base: &url::Url,
        mut message: Value,
    ) -> Result<Reply, UpstreamError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let route = message
            .get("id")
            .and_then(|id| self.inner.reply_routes.open(id, out.upstream.id, now))
            .ok_or(UpstreamError::Refused("answer to an unknown request"))?;
        let endpoint = base
            .join(&route.endpoint)
            .ok()
            .filter(|e| e.origin() == base.origin())
            .ok_or(UpstreamError::Refused("answer to an unknown request"))?;
        message["id"] = route.id;
        let mut headers = self.headers_for(out.upstream, None, None, out.caller).await?;
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.post_message(endpoint, headers, serde_json::to_vec(&message).expect("json"))
            .await
            .map(|()| Reply::Accepted)
    }

    /// POSTs one message to a connection's message endpoint; the answer comes on its stream.
    /// 404: the connection that endpoint belongs to has closed (`SessionGone`).
    async fn post_message(
        &self,
        endpoint: url::Url,
        headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
    ) -> Result<(), UpstreamError> {
        let send = self.http.post(endpoint).headers(headers).body(body).send();
        match tokio::time::timeout(self.inner.timeout, send).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) if r.status() == reqwest::StatusCode::NOT_FOUND => Err(UpstreamError::SessionGone),
            Ok(Ok(r)) => Err(UpstreamError::Status(r.status().as_u16())),
            Ok(Err(e)) => Err(unreachable(&e)),
            Err(_) => Err(UpstreamError::Unavailable("no answer in time".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(server: ServerId, issued_at: i64) -> ReplyRoute {
        ReplyRoute {
            id: json!(7),
            endpoint: "/messages?sessionId=abc".into(),
            server,
            issued_at,
        }
    }

    #[test]
    fn reply_routes_open_only_for_their_server_key_and_time() {
        let routes = ReplyRoutes::new(&[7; 32]);
        let server = ServerId::new();
        let sealed = Value::String(routes.seal(&route(server, 1_000)));
        let opened = routes.open(&sealed, server, 1_010).expect("opens");
        assert_eq!(
            (opened.id, opened.endpoint.as_str()),
            (json!(7), "/messages?sessionId=abc")
        );
        assert!(
            routes.open(&sealed, ServerId::new(), 1_010).is_none(),
            "another server"
        );
        assert!(
            routes
                .open(&sealed, server, 1_000 + ROUTE_MAX_AGE_SECS + 1)
                .is_none(),
            "too old"
        );
        assert!(
            ReplyRoutes::new(&[8; 32]).open(&sealed, server, 1_010).is_none(),
            "another key"
        );
        let mut tampered = sealed.as_str().unwrap().to_owned();
        tampered.push('A');
        assert!(
            routes.open(&Value::String(tampered), server, 1_010).is_none(),
            "tampered"
        );
        assert!(
            routes.open(&json!("gh.0.abc"), server, 1_010).is_none(),
            "not a route"
        );
    }
}
