//! Session manager that lets a tool hang up its own SSE stream (SEP-1699).
//!
//! rmcp's [`LocalSessionManager`] can close the SSE stream of one POST request
//! and later replay it to a client that reconnects with `Last-Event-ID`, but it
//! identifies streams by an internal per-session counter that a tool handler
//! never sees. This wrapper delegates everything to the local manager and only
//! remembers which stream carries which JSON-RPC request, and notices when a
//! client resumes a stream, so `test_reconnection` can disconnect its caller
//! and wait for it to come back.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::Stream;
use rmcp::{
    model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage},
    transport::{
        WorkerTransport,
        streamable_http_server::session::{
            EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
            local::{LocalSessionManager, LocalSessionManagerError, LocalSessionWorker},
        },
    },
};
use tokio::sync::Notify;
use tokio_stream_shim::ReceiverStream;

/// The local session manager's own name for the POST stream of one request.
type StreamId = u64;

#[derive(Debug, Default)]
pub(crate) struct ResumableSessionManager {
    local: LocalSessionManager,
    /// Which stream each in-flight request of each session answers on.
    request_streams: Mutex<HashMap<(SessionId, RequestId), StreamId>>,
    /// Streams a client has re-attached to with `Last-Event-ID`.
    resumed_streams: Mutex<HashSet<(SessionId, StreamId)>>,
    resumed: Notify,
}

impl ResumableSessionManager {
    /// The stream that carries `request` in `session`, while it is in flight.
    pub(crate) fn stream_of_request(&self, session: &SessionId, request: &RequestId) -> Option<StreamId> {
        self.request_streams
            .lock()
            .expect("request stream map poisoned")
            .get(&(session.clone(), request.clone()))
            .copied()
    }

    /// Hang up the SSE stream `stream` of `session`, keeping its messages for
    /// replay. The client is told to come back after `retry`.
    pub(crate) async fn disconnect_stream(
        &self,
        session: &SessionId,
        stream: StreamId,
        retry: Duration,
    ) -> anyhow::Result<()> {
        let handle = self
            .local
            .sessions
            .read()
            .await
            .get(session)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("session {session} is gone"))?;
        handle.close_sse_stream(stream, Some(retry)).await?;
        Ok(())
    }

    /// Wait until the client resumes `stream` of `session`, or `timeout` passes.
    /// Returns whether it came back.
    pub(crate) async fn wait_for_resume(
        &self,
        session: &SessionId,
        stream: StreamId,
        timeout: Duration,
    ) -> bool {
        let key = (session.clone(), stream);
        let wait = async {
            loop {
                // Register interest before checking, so a resume that lands in
                // between is not missed.
                let notified = self.resumed.notified();
                if self
                    .resumed_streams
                    .lock()
                    .expect("resumed stream set poisoned")
                    .contains(&key)
                {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    async fn session_handle(
        &self,
        id: &SessionId,
    ) -> Result<
        rmcp::transport::streamable_http_server::session::local::LocalSessionHandle,
        LocalSessionManagerError,
    > {
        self.local
            .sessions
            .read()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))
    }

    fn forget_session(&self, id: &SessionId) {
        self.request_streams
            .lock()
            .expect("request stream map poisoned")
            .retain(|(session, _), _| session != id);
        self.resumed_streams
            .lock()
            .expect("resumed stream set poisoned")
            .retain(|(session, _)| session != id);
    }
}

/// `Last-Event-ID` values of request streams look like `<index>/<stream>`.
fn stream_of_event_id(last_event_id: &str) -> Option<StreamId> {
    last_event_id.split_once('/')?.1.parse().ok()
}

impl SessionManager for ResumableSessionManager {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.local.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.forget_session(id);
        self.local.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // Same steps as the local manager, plus remembering the stream id.
        let handle = self.session_handle(id).await?;
        let receiver = handle.establish_request_wise_channel().await?;
        if let (ClientJsonRpcMessage::Request(request), Some(stream)) = (&message, receiver.http_request_id) {
            self.request_streams
                .lock()
                .expect("request stream map poisoned")
                .insert((id.clone(), request.id.clone()), stream);
        }
        handle.push_message(message, receiver.http_request_id).await?;
        Ok(ReceiverStream::new(receiver.inner))
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let handle = self.session_handle(id).await?;
        let receiver = handle.establish_common_channel().await?;
        Ok(ReceiverStream::new(receiver.inner))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let handle = self.session_handle(id).await?;
        let event_id = last_event_id.parse()?;
        let receiver = handle.resume(event_id).await?;
        if let Some(stream) = stream_of_event_id(&last_event_id) {
            self.resumed_streams
                .lock()
                .expect("resumed stream set poisoned")
                .insert((id.clone(), stream));
            self.resumed.notify_waiters();
        }
        Ok(ReceiverStream::new(receiver.inner))
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.local.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

/// A tiny `Stream` over a tokio receiver, so the crate needs no
/// `tokio-stream` dependency just for this adapter.
mod tokio_stream_shim {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use futures::Stream;
    use tokio::sync::mpsc::Receiver;

    #[derive(Debug)]
    pub(crate) struct ReceiverStream<T>(Receiver<T>);

    impl<T> ReceiverStream<T> {
        pub(crate) fn new(receiver: Receiver<T>) -> Self {
            Self(receiver)
        }
    }

    impl<T> Stream for ReceiverStream<T> {
        type Item = T;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
