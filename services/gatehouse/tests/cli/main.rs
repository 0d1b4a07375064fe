//! The `gatehouse` binary as an operator runs it: configuration errors, `migrate`, `up`, and the
//! quickstart in docs/ run as written.

mod admin;
mod chaos_smoke;
mod config_errors;
mod dataplane_replicas;
mod db_role;
mod drain;
mod infra;
mod migrate;
mod otlp;
mod quickstart;
mod sigterm;
mod up;
mod worker_process;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The binary under test, with an empty environment except what a process needs to run.
pub fn gatehouse() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env_clear();
    for var in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(value) = std::env::var(var) {
            cmd.env(var, value);
        }
    }
    cmd
}

/// Valid production settings for every service (tests remove or break one at a time).
pub fn valid_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "GATEHOUSE_DATABASE__URL",
            "postgres://svc:secret-pw@127.0.0.1:1/gatehouse".into(),
        ),
        (
            "GATEHOUSE_DATABASE__ADMIN_URL",
            "postgres://owner:owner-pw@127.0.0.1:1/gatehouse".into(),
        ),
        ("GATEHOUSE_REDIS__URL", "redis://127.0.0.1:1".into()),
        (
            "GATEHOUSE_SECRETS__ENCRYPTION_KEYS",
            "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
        (
            "GATEHOUSE_SECRETS__SIGNING_SECRET",
            "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZw==".into(),
        ),
        (
            "GATEHOUSE_SECRETS__DATAPLANE_SECRET",
            "ZGF0YXBsYW5lLXNlY3JldC1mb3ItdGVzdHMtb25seS0zMi1ieXRlcy1sb25n".into(),
        ),
        ("GATEHOUSE_MAIL__SMTP_URL", "smtp://127.0.0.1:1".into()),
        ("GATEHOUSE_TELEMETRY__LOG_FORMAT", "json".into()),
    ]
}

/// [`valid_env`] as `command` gets it: a dataplane holds only the dataplane secret, never the
/// platform's keys (it refuses to start with them).
pub fn valid_env_for(command: &str) -> Vec<(&'static str, String)> {
    valid_env()
        .into_iter()
        .filter(|(k, _)| {
            command != "dataplane"
                || !matches!(
                    *k,
                    "GATEHOUSE_SECRETS__ENCRYPTION_KEYS" | "GATEHOUSE_SECRETS__SIGNING_SECRET"
                )
        })
        .collect()
}

/// A spawned `gatehouse` service, killed when dropped; its log explains a failure to start.
pub struct ServiceProcess {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServiceProcess {
    /// Waits until `url` (its `/readyz`) answers 200; fails with the log if the process exits or
    /// is not ready within 40 s.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "{} exited ({exit}): {}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 40 s: {}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
