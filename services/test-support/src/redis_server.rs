//! A private `redis-server` on a free port, with AOF on, for tests that stop, kill and restart
//! Redis (durability, outages). The shared Redis keeps nothing on disk and must not be stopped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    appendfsync: &'static str,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with `appendonly yes` and `appendfsync everysec` in a temporary directory.
    pub fn start() -> RedisServer {
        Self::start_with_appendfsync("everysec")
    }

    /// Starts a server with `appendonly yes` and the given `appendfsync` policy. With `everysec`
    /// Redis may acknowledge writes it has not yet written to the AOF (it postpones the write
    /// for up to 2 s while a background fsync is in progress), so a `kill -9` can lose them on a
    /// busy disk; tests that count every acknowledged write across kills use `always`.
    pub fn start_with_appendfsync(appendfsync: &'static str) -> RedisServer {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer {
            port,
            dir,
            appendfsync,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir.to_str().unwrap(),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (install the redis-server package)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// SIGKILL, like a crash: only what reached the AOF survives.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (replaying the AOF).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: the server hangs (the kernel still accepts connections, nothing answers), like
    /// a stalled host. [`RedisServer::resume`] continues it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} redis-server");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
