//! Binding and running a server until shutdown, draining in-flight requests within a grace period.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{Error, web};
use tokio_util::sync::CancellationToken;

/// Binds `addr` (port 0 picks a free port) with a clear error naming the setting.
pub fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("{setting}: cannot listen on {addr}: {e}"))
}

/// Set once shutdown begins. While draining, every response closes its connection, so that idle
/// keep-alive connections do not hold the process until the grace period ends.
#[derive(Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Middleware: `Connection: close` on every response once draining. Register
/// `web::Data<Draining>` (the same one passed to [`run_until_stopped`]) and
/// `actix_web::middleware::from_fn(close_connections_when_draining)`.
pub async fn close_connections_when_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let draining = req.app_data::<web::Data<Draining>>().cloned();
    let mut response = next.call(req).await?;
    if draining.is_some_and(|d| d.is_draining()) {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// Runs `server` until `shutdown` is cancelled, then stops accepting connections and lets
/// in-flight requests finish for up to `grace` before returning. Build the server with
/// `.disable_signals()` and `.shutdown_timeout(grace)`: signals are handled by the caller.
pub async fn run_until_stopped(
    server: Server,
    shutdown: CancellationToken,
    grace: Duration,
    draining: Draining,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(Into::into),
        _ = shutdown.cancelled() => {}
    }
    draining.start();
    // Graceful stop: actix waits for in-flight requests up to its shutdown timeout (= grace).
    // The stop command is processed by the server future itself, so keep polling it (awaiting the
    // handle's future instead would leave the command unprocessed until the timeout).
    let stop = handle.stop(true);
    let outcome = tokio::time::timeout(grace + Duration::from_secs(1), &mut server).await;
    drop(stop);
    match outcome {
        Ok(result) => result.map_err(Into::into),
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests still running after the grace period; exiting"
            );
            Ok(())
        }
    }
}

/// Runs a service's public and internal servers with [`run_until_stopped`]: both stop on
/// `shutdown`, and either one stopping on its own (an error) stops the other.
pub async fn run_both_until_stopped(
    servers: [Server; 2],
    shutdown: CancellationToken,
    grace: Duration,
    draining: Draining,
) -> anyhow::Result<()> {
    let stop = shutdown.child_token();
    let [a, b] = servers.map(|server| {
        let stop = stop.clone();
        let draining = draining.clone();
        async move {
            let result = run_until_stopped(server, stop.clone(), grace, draining).await;
            stop.cancel();
            result
        }
    });
    let (a, b) = tokio::join!(a, b);
    a.and(b)
}
