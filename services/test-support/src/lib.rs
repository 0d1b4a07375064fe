//! Test support: fresh databases, free ports, local Redis servers, log capture.
//! Dev-dependency only.

pub mod conformance;
pub mod console;
pub mod dns;
pub mod node_tools;
pub mod redis_server;
pub mod sdk_servers;
pub mod testdb;
pub mod tls;

pub use testdb::TestDb;

/// Installs the crypto provider and, with `TEST_LOG=1`, a log subscriber. Call at the start of
/// every test; idempotent.
pub fn init() {
    gatehouse_core::install_crypto_provider();
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("debug,sqlx=info,hyper=info,h2=info")
                }),
            )
            .with_test_writer()
            .try_init();
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A free port outside the kernel's ephemeral range, for a test that watches a port nothing
/// should listen on yet: no other test's `free_port` (or outgoing connection, which can connect
/// to itself on an ephemeral port) can take it meanwhile.
pub fn free_port_outside_ephemeral() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Each call tries the next candidates of one walk, started at a per-process offset.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919);
    loop {
        let port = 20_000 + (start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The Redis tests use unless they start their own: `TEST_REDIS_URL`, default the local one.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A fresh directory under the system temp dir, removed when dropped.
pub fn temp_dir(label: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("gatehouse-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    TempDir(dir)
}

pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique prefix for names on the shared Redis (which is never flushed: other tests use it).
pub fn unique(label: &str) -> String {
    format!("test:{label}:{}:", uuid::Uuid::new_v4().simple())
}
