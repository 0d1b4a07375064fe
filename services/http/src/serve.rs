//! Binding and running a server until shutdown, draining it within a grace period.
//!
//! Draining, in order, once shutdown begins ([`run_until_stopped`]):
//! 1. [`Draining`] is marked: `/readyz` answers 503 at once, every new request other than the
//!    operational ones (`/healthz`, `/readyz`, `/metrics`) is refused with the service's retryable
//!    refusal (503 with `Retry-After`), every response closes its connection, and whatever holds
//!    a [`Draining::token`] (long-lived notification streams) ends.
//! 2. Requests already admitted, streaming bodies included, finish; the process waits for them
//!    for up to the grace period, and not a moment longer than they take.
//! 3. The close hooks registered with [`Draining::on_close`] run (upstream sessions the service
//!    holds are ended there).
//! 4. The servers stop at once: nothing is in flight, and idle keep-alive connections are closed.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpResponse, web};
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ops::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};

/// Binds `addr` (port 0 picks a free port) with a clear error naming the setting.
pub fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("{setting}: cannot listen on {addr}: {e}"))
}

/// What a client is told to wait before retrying a request refused while draining (seconds): by
/// then a load balancer has taken this instance out, or another replica answers.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Close hooks get what remains of the grace period, and at least this long.
const MIN_CLOSE_TIME: Duration = Duration::from_secs(2);

type CloseHook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;
type Refusal = Arc<dyn Fn() -> HttpResponse + Send + Sync>;

/// One service's drain: whether it has begun, the requests in flight, the retryable answer to
/// requests that arrive meanwhile, and what to close before the process exits. Clones share it.
#[derive(Clone)]
pub struct Draining {
    inner: Arc<Inner>,
}

struct Inner {
    begun: CancellationToken,
    in_flight: AtomicUsize,
    idle: Notify,
    refusal: Refusal,
    hooks: Mutex<Vec<CloseHook>>,
}

impl Default for Draining {
    fn default() -> Self {
        Self::new()
    }
}

impl Draining {
    /// A drain whose refusal is a plain-text 503.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                begun: CancellationToken::new(),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                refusal: Arc::new(|| {
                    HttpResponse::ServiceUnavailable()
                        .content_type("text/plain; charset=utf-8")
                        .body("shutting down: retry the request")
                }),
                hooks: Mutex::default(),
            }),
        }
    }

    /// The same drain answering requests that arrive while draining with `refusal` (rendered by
    /// the service's own error type). The status is always 503 and `Retry-After` is added.
    pub fn refusing_with(self, refusal: impl Fn() -> HttpResponse + Send + Sync + 'static) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("refusing_with is called before the drain is shared"));
        Self {
            inner: Arc::new(Inner {
                refusal: Arc::new(refusal),
                ..inner
            }),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.inner.begun.is_cancelled()
    }

    /// Cancelled when draining begins. Long-lived streams that carry no call in flight end on
    /// it (so that they do not hold the process), and pools stop opening new upstream sessions.
    /// Cancelling the returned token does not start a drain.
    pub fn token(&self) -> CancellationToken {
        self.inner.begun.child_token()
    }

    /// Registers `close`, run once after the last in-flight request has finished (or the grace
    /// period ran out) and before the servers stop: ending upstream sessions the service holds,
    /// for example. Each hook runs once, concurrently with the others, bounded by what remains
    /// of the grace period (at least 2 s).
    pub fn on_close<F, Fut>(&self, close: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: CloseHook = Box::new(move || Box::pin(close()));
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Requests admitted and not yet answered in full.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Begins the drain (done by [`run_until_stopped`] on shutdown).
    pub fn start(&self) {
        self.inner.begun.cancel();
    }

    fn track(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Waits until no request is in flight.
    async fn settled(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }

    async fn run_close_hooks(&self, until: Instant) {
        let hooks = std::mem::take(&mut *self.inner.hooks.lock().unwrap_or_else(PoisonError::into_inner));
        if hooks.is_empty() {
            return;
        }
        let until = until.max(Instant::now() + MIN_CLOSE_TIME);
        let all = futures::future::join_all(hooks.into_iter().map(|hook| hook()));
        if tokio::time::timeout_at(until, all).await.is_err() {
            tracing::warn!("close hooks still running when their time ran out");
        }
    }
}

/// One request in flight, from admission until its response body is dropped (sent in full, or
/// the client went away).
struct InFlight(Draining);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.inner.idle.notify_waiters();
        }
    }
}

/// A response body that counts as in flight until dropped, and a little longer: the worker drops
/// a body as soon as it has yielded its last bytes, and writes those to the socket afterwards, in
/// the same turn. The release waits for that turn to end (a task on the worker's own
/// single-threaded runtime runs only after it), so that stopping the server once nothing is in
/// flight never cuts off the end of an answer.
struct Tracked {
    body: BoxBody,
    in_flight: Option<InFlight>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { drop(in_flight) });
        }
    }
}

impl MessageBody for Tracked {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

fn is_operational(path: &str) -> bool {
    [HEALTHZ_PATH, READYZ_PATH, METRICS_PATH].contains(&path)
}

/// Middleware: counts every request in flight until its response body is done and, once
/// draining, refuses new requests (other than the operational endpoints) with the service's
/// refusal, 503 and `Retry-After`, and closes every connection after its response. Register
/// `web::Data<Draining>` (the same one passed to [`run_until_stopped`]) and
/// `actix_web::middleware::from_fn(drain_requests)`; a service without it is not tracked.
pub async fn drain_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(draining) = req.app_data::<web::Data<Draining>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if draining.is_draining() && !is_operational(req.path()) {
        let mut refusal = (draining.inner.refusal)();
        *refusal.status_mut() = actix_web::http::StatusCode::SERVICE_UNAVAILABLE;
        refusal.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(RETRY_AFTER_SECS),
        );
        refusal.head_mut().set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(refusal));
    }
    let in_flight = draining.track();
    let mut response = next.call(req).await?;
    if draining.is_draining() {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response.map_body(|_, body| {
        BoxBody::new(Tracked {
            body: BoxBody::new(body),
            in_flight: Some(in_flight),
        })
    }))
}

/// Runs `server` until `shutdown` is cancelled, then drains it (see the module's documentation)
/// and returns once nothing is in flight, or when the grace period `grace` ends. Build the server
/// with `.disable_signals()`: signals are handled by the caller.
pub async fn run_until_stopped(
    server: Server,
    shutdown: CancellationToken,
    grace: Duration,
    draining: Draining,
) -> anyhow::Result<()> {
    run_all_until_stopped(vec![server], shutdown, grace, draining).await
}

/// Runs a service's public and internal servers, sharing one drain: both drain on `shutdown`,
/// and either one stopping on its own (an error) stops the other.
pub async fn run_both_until_stopped(
    servers: [Server; 2],
    shutdown: CancellationToken,
    grace: Duration,
    draining: Draining,
) -> anyhow::Result<()> {
    run_all_until_stopped(servers.into(), shutdown, grace, draining).await
}

async fn run_all_until_stopped(
    servers: Vec<Server>,
    shutdown: CancellationToken,
    grace: Duration,
    draining: Draining,
) -> anyhow::Result<()> {
    let handles: Vec<_> = servers.iter().map(Server::handle).collect();
    // One server stopping on its own drains the others. The stop commands are processed by the
    // server futures themselves: they are polled throughout, their outcomes collected at the end.
    let stop = shutdown.child_token();
    let running = futures::future::join_all(servers.into_iter().map(|server| {
        let stop = stop.clone();
        async move {
            let result = server.await;
            stop.cancel();
            result
        }
    }));
    let mut running = std::pin::pin!(running);
    tokio::select! {
        results = &mut running => return outcome(results),
        _ = stop.cancelled() => {}
    }
    let deadline = Instant::now() + grace;
    draining.start();
    tracing::info!(in_flight = draining.in_flight(), "draining");
    let settled = tokio::select! {
        results = &mut running => return outcome(results),
        settled = tokio::time::timeout_at(deadline, draining.settled()) => settled.is_ok(),
    };
    if !settled {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            in_flight = draining.in_flight(),
            "requests still running after the grace period; stopping"
        );
    }
    let hooks = draining.run_close_hooks(deadline);
    tokio::select! {
        results = &mut running => return outcome(results),
        () = hooks => {}
    }
    // Nothing is in flight (or its time is up): stop at once, closing idle connections.
    let stops: Vec<_> = handles.iter().map(|h| h.stop(false)).collect();
    let results = running.await;
    drop(stops);
    outcome(results)
}

fn outcome(results: Vec<std::io::Result<()>>) -> anyhow::Result<()> {
    results.into_iter().try_for_each(|r| r.map_err(Into::into))
}
