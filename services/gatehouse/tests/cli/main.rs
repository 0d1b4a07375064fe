//! The `gatehouse` binary as an operator runs it: configuration errors, `migrate`, `up`.

mod config_errors;
mod dataplane_replicas;
mod infra;
mod migrate;
mod otlp;
mod sigterm;
mod up;
mod worker_process;

use std::process::Command;

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
        ("GATEHOUSE_MAIL__SMTP_URL", "smtp://127.0.0.1:1".into()),
        ("GATEHOUSE_TELEMETRY__LOG_FORMAT", "json".into()),
    ]
}
