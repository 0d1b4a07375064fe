//! Binding and running a server until shutdown, draining in-flight requests within a grace period.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use tokio_util::sync::CancellationToken;

/// Binds `addr` (port 0 picks a free port) with a clear error naming the setting.
pub fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("{setting}: cannot listen on {addr}: {e}"))
}

/// Runs `server` until `shutdown` is cancelled, then stops accepting connections and lets
/// in-flight requests finish for up to `grace` before returning. Build the server with
/// `.disable_signals()` and `.shutdown_timeout(grace)`: signals are handled by the caller.
pub async fn run_until_stopped(
    server: Server,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(Into::into),
        _ = shutdown.cancelled() => {}
    }
    // Graceful stop: actix waits for in-flight requests up to its shutdown timeout (= grace).
    // The server future itself processes the stop command, so it must be polled alongside the
    // stop future (awaiting the stop first would wait out the whole grace period every time).
    let stop = handle.stop(true);
    match tokio::time::timeout(grace + Duration::from_secs(1), async {
        let ((), result) = tokio::join!(stop, &mut server);
        result
    })
    .await
    {
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
